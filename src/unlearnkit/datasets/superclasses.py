"""Superclass groupings for sub-class forgetting (forget one fine class, predict its superclass)."""

from __future__ import annotations

from pathlib import Path

from unlearnkit.datasets.cifar import cifar100_superclasses

__all__ = ["CIFAR10_SUPERCLASSES", "FASHION_MNIST_SUPERCLASSES", "superclass_groups"]

#: Fashion-MNIST: tops {T-shirt/top, Pullover, Coat, Shirt}; footwear {Sandal, Sneaker,
#: Ankle boot}; other {Trouser, Dress, Bag}.
FASHION_MNIST_SUPERCLASSES: dict[str, list[int]] = {
    "tops": [0, 2, 4, 6],
    "footwear": [5, 7, 9],
    "other": [1, 3, 8],
}

#: CIFAR-10: vehicles {airplane, automobile, ship, truck}; animals {bird, cat, deer, dog, frog,
#: horse}.
CIFAR10_SUPERCLASSES: dict[str, list[int]] = {
    "vehicles": [0, 1, 8, 9],
    "animals": [2, 3, 4, 5, 6, 7],
}

_STATIC = {"fashion_mnist": FASHION_MNIST_SUPERCLASSES, "cifar10": CIFAR10_SUPERCLASSES}
_KNOWN = ("fashion_mnist", "cifar10", "cifar100")


def superclass_groups(dataset_name: str, root: str | Path | None = None) -> dict[str, list[int]]:
    """Return the superclass grouping of a dataset, for :func:`with_superclasses`.

    Sub-class forgetting as in "Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks
    Using an Incompetent Teacher" (Chundawat et al., AAAI 2023, arXiv:2205.08096, experiments
    section), there on CIFAR-100's 20 coarse labels. Fashion-MNIST and CIFAR-10 use the fixed
    groupings above; CIFAR-100 reads its coarse labels from the dataset files.

    Args:
        dataset_name: One of ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"`` (case and
            ``-``/``_`` are ignored).
        root: Only for ``"cifar100"``: where its files are (see :func:`load_cifar100`).

    Returns:
        A fresh dict superclass name -> class ids (callers may modify it).

    Raises:
        ValueError: For an unknown dataset name.
        FileNotFoundError: For ``"cifar100"`` when its files are absent.
    """
    key = dataset_name.lower().replace("-", "_")
    if key == "cifar100":
        return cifar100_superclasses(root)
    if key not in _STATIC:
        raise ValueError(f"no superclass grouping for {dataset_name!r}; known: {', '.join(_KNOWN)}")
    return {name: list(ids) for name, ids in _STATIC[key].items()}
