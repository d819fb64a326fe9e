"""In-memory image classification dataset on uint8 tensors, with CIFAR-style tensor augmentation."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

__all__ = ["TensorImageDataset", "class_indices", "dataset_labels", "with_superclasses"]

_CROP_PADDING = 4


class TensorImageDataset(Dataset):
    """Images and labels held as tensors; normalizes (and optionally augments) on access.

    Augmentation is the standard CIFAR recipe of "Deep Residual Learning for Image Recognition"
    (He et al., CVPR 2016, arXiv:1512.03385, Sec. 4.2): zero-pad 4 pixels, take a random crop of
    the original size, flip horizontally with probability 0.5. It uses ``torch``'s global RNG, so
    ``torch.manual_seed`` and DataLoader worker seeding make it reproducible.

    Args:
        images: Pixel values, uint8, shape ``(N, C, H, W)``.
        targets: Class ids, integer dtype, shape ``(N,)``, each in ``[0, len(classes))``.
        mean: Per-channel mean of the pixel values scaled to ``[0, 1]``, length ``C``.
        std: Per-channel standard deviation (same scale, all positive), length ``C``.
        classes: Class names; ``classes[k]`` names label ``k``.
        fine_targets: Optional finer labels, shape ``(N,)``; defaults to ``targets``.
        fine_classes: Names of the fine labels; defaults to ``classes``.
        augment: Apply random padded crop + horizontal flip in ``__getitem__``.
        attributes: Named per-sample attributes, each a tensor of shape ``(N,)`` (``index``,
            ``group``, ``identity``, ...); kept by :meth:`subset`.

    Shapes:
        ``dataset[i]`` is ``(x, y)`` with ``x`` float32 ``(C, H, W)`` equal to
        ``(images[i] / 255 - mean) / std`` (before augmentation) and ``y`` an int64 0-d tensor;
        with attributes, ``(x, y, {name: attributes[name][i]})``.

    Raises:
        TypeError: If ``images`` or ``targets`` is not a tensor.
        ValueError: On a wrong dtype or rank, mismatched lengths, labels out of range, or
            ``mean``/``std`` not matching the channel count.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        classes: Sequence[str],
        fine_targets: Tensor | None = None,
        fine_classes: Sequence[str] | None = None,
        augment: bool = False,
        attributes: Mapping[str, Tensor] | None = None,
    ) -> None:
        _check_images(images)
        self.images = images
        self.classes = [str(c) for c in classes]
        self.targets = _check_labels(targets, len(images), len(self.classes), "targets")
        self.fine_classes = self.classes if fine_classes is None else [str(c) for c in fine_classes]
        if fine_targets is None:
            self.fine_targets = self.targets
        else:
            n_fine = len(self.fine_classes)
            self.fine_targets = _check_labels(fine_targets, len(images), n_fine, "fine_targets")
        self.mean, self.std = _check_stats(mean, std, images.shape[1])
        self.augment = bool(augment)
        self.attributes = {
            name: _check_attribute(name, values, len(images))
            for name, values in (attributes or {}).items()
        }
        std_t = torch.tensor(self.std).view(-1, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = torch.tensor(self.mean).view(-1, 1, 1) / std_t

    @property
    def num_classes(self) -> int:
        """Number of classes of ``targets``."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        image = self.images[index]
        if self.augment:
            image = random_crop_flip(image, _CROP_PADDING)
        x = image.float() * self._scale - self._shift
        if self.attributes:
            return x, self.targets[index], {k: v[index] for k, v in self.attributes.items()}
        return x, self.targets[index]

    def with_attributes(self, **attributes: Tensor) -> TensorImageDataset:
        """A shallow copy with these per-sample attributes added (or replaced).

        Args:
            **attributes: name → ``(N,)`` tensor.

        Returns:
            A new dataset sharing the images; ``self`` is unchanged.

        Raises:
            ValueError: an attribute is not ``(N,)``.
        """
        other = copy.copy(self)
        other.attributes = {
            **self.attributes,
            **{k: _check_attribute(k, v, len(self)) for k, v in attributes.items()},
        }
        return other

    def with_superclasses(self, groups: Mapping[str, Sequence[int]]) -> TensorImageDataset:
        """:func:`with_superclasses` of this dataset (labels become superclass ids)."""
        return with_superclasses(self, groups)

    def __repr__(self) -> str:
        c, h, w = self.images.shape[1:]
        return (
            f"{type(self).__name__}(n={len(self)}, shape=({c}, {h}, {w}), "
            f"classes={self.num_classes}, augment={self.augment})"
        )

    def with_augment(self, flag: bool) -> TensorImageDataset:
        """Return a shallow copy (sharing all tensors) with augmentation switched on or off.

        Args:
            flag: Whether the copy augments.

        Returns:
            A new dataset object; ``self`` is unchanged.
        """
        other = copy.copy(self)
        other.augment = bool(flag)
        return other

    def subset(self, indices: Sequence[int] | Tensor) -> TensorImageDataset:
        """Return a new dataset holding only the selected rows (in the given order).

        Args:
            indices: Row indices in ``[0, len(self))``, or a boolean mask of length ``len(self)``.

        Returns:
            A dataset with the same classes, statistics and augment flag.

        Raises:
            ValueError: If an index is out of range, or a mask has the wrong length.
        """
        idx = _as_index(indices, len(self))
        return TensorImageDataset(
            self.images[idx],
            self.targets[idx],
            mean=self.mean,
            std=self.std,
            classes=self.classes,
            fine_targets=self.fine_targets[idx],
            fine_classes=self.fine_classes,
            augment=self.augment,
            attributes={k: v[idx] for k, v in self.attributes.items()},
        )


def with_superclasses(
    dataset: TensorImageDataset, groups: Mapping[str, Sequence[int]]
) -> TensorImageDataset:
    """Relabel a dataset with superclass ids, keeping the original labels as fine labels.

    This is the setting of sub-class forgetting in "Can Bad Teaching Induce Forgetting? Unlearning
    in Deep Networks Using an Incompetent Teacher" (Chundawat et al., AAAI 2023, arXiv:2205.08096,
    experiments section) and "Fast Machine Unlearning Without Retraining Through Selective Synaptic
    Dampening" (Foster et al., AAAI 2024, arXiv:2308.07707, experiments section): the model
    predicts the superclass while one fine class inside it is forgotten.

    Args:
        dataset: Dataset whose ``targets`` are the fine classes to group.
        groups: Superclass name -> ids of ``dataset.classes`` in it; every class exactly once.
            Superclass ids follow the mapping's order.

    Returns:
        A dataset sharing ``dataset.images`` with ``targets`` the superclass ids, ``classes`` the
        superclass names, ``fine_targets``/``fine_classes`` the original labels and names.

    Raises:
        ValueError: If the groups do not partition ``range(dataset.num_classes)``.
    """
    lookup = _superclass_lookup(groups, dataset.classes)
    return TensorImageDataset(
        dataset.images,
        lookup[dataset.targets],
        mean=dataset.mean,
        std=dataset.std,
        classes=list(groups),
        fine_targets=dataset.targets,
        fine_classes=dataset.classes,
        augment=dataset.augment,
        attributes=dataset.attributes,
    )


def random_crop_flip(image: Tensor, padding: int) -> Tensor:
    """Zero-pad ``padding`` pixels, crop back to the original size at a random offset, maybe flip.

    The CIFAR augmentation of He et al. (CVPR 2016, arXiv:1512.03385, Sec. 4.2), on tensors.

    Args:
        image: One image, any dtype, shape ``(C, H, W)``.
        padding: Pixels of zero padding on each side.

    Returns:
        The augmented image, same dtype and shape.
    """
    h, w = image.shape[-2:]
    dy, dx = torch.randint(0, 2 * padding + 1, (2,)).tolist()
    padded = F.pad(image, (padding, padding, padding, padding))
    out = padded[:, dy : dy + h, dx : dx + w]
    if torch.randint(0, 2, ()).item():
        out = out.flip(-1)
    return out


def _superclass_lookup(groups: Mapping[str, Sequence[int]], classes: Sequence[str]) -> Tensor:
    n = len(classes)
    lookup = torch.full((n,), -1, dtype=torch.long)
    for sid, (name, members) in enumerate(groups.items()):
        if len(members) == 0:
            raise ValueError(f"superclass {name!r} is empty; give every superclass >= 1 class id")
        for c in members:
            c = int(c)
            if not 0 <= c < n:
                raise ValueError(f"superclass {name!r} lists class {c}; class ids are 0..{n - 1}")
            if lookup[c] >= 0:
                other = list(groups)[int(lookup[c])]
                raise ValueError(
                    f"class {c} ({classes[c]!r}) is in superclasses {other!r} and {name!r}; "
                    "each class must be in exactly one"
                )
            lookup[c] = sid
    missing = [f"{c} ({classes[c]!r})" for c in (lookup < 0).nonzero().flatten().tolist()]
    if missing:
        raise ValueError(
            f"classes {', '.join(missing)} are in no superclass; the groups must cover all {n}"
        )
    return lookup


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 of shape (N, C, H, W), got {images.dtype} of shape "
            f"{tuple(images.shape)}; convert with (x * 255).round().to(torch.uint8)"
        )


def class_indices(labels: Any, num_classes: int, *, name: str = "labels") -> Tensor:
    """``labels`` as int64 class indices, checked to lie in ``0..num_classes - 1``.

    The boundary check of every method that reads labels (relabelling, FGSM neighbours) and of
    :class:`TensorImageDataset`, so a float or out-of-range label is one clear error instead of
    torch's ``cross_entropy`` / indexing errors.

    Args:
        labels: ``(N,)`` integer tensor, or anything ``torch.as_tensor`` accepts.
        num_classes: the classifier's number of outputs ``C`` (>= 1).
        name: what the labels are, for the message (e.g. ``"Amnesiac: D_f labels"``).

    Returns:
        ``labels`` as an int64 tensor, same shape and device.

    Raises:
        ValueError: not 1-D, a floating-point, complex or boolean dtype (class labels are
            integer indices), or a label outside ``0..num_classes - 1``.
    """
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D tensor of class indices, one per sample, got shape "
            f"{tuple(labels.shape)}; squeeze an (N, 1) tensor, argmax a one-hot one"
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(
            f"{name} must be integer class indices, got dtype {labels.dtype}; "
            "convert them with .long() if they are whole numbers"
        )
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must lie in 0..{num_classes - 1} for a model with {num_classes} outputs, "
            f"got range {int(labels.min())}..{int(labels.max())}; is the model built for this "
            "dataset's number of classes?"
        )
    return labels


def _check_labels(labels: Tensor, n: int, num_classes: int, name: str) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.shape != (n,):
        raise ValueError(
            f"{name} must have shape ({n},) to match images, got {tuple(labels.shape)}"
        )
    if num_classes == 0:
        raise ValueError(f"{name}: the class-name list is empty; pass one name per class")
    return class_indices(labels, num_classes, name=name)


def _check_attribute(name: str, values: Tensor, n: int) -> Tensor:
    values = torch.as_tensor(values)
    if values.shape != (n,):
        raise ValueError(
            f"attribute {name!r} must have shape ({n},), one value per image, got "
            f"{tuple(values.shape)}"
        )
    return values


def _check_stats(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean_t) != channels or len(std_t) != channels:
        raise ValueError(
            f"mean and std need one value per channel ({channels}), "
            f"got {len(mean_t)} and {len(std_t)}"
        )
    if min(std_t) <= 0:
        raise ValueError(f"std values must be positive, got {std_t}")
    return mean_t, std_t


def _as_index(indices: Sequence[int] | Tensor, n: int) -> Tensor:
    idx = torch.as_tensor(indices)
    if idx.dtype == torch.bool:
        if idx.shape != (n,):
            raise ValueError(f"a boolean mask must have shape ({n},), got {tuple(idx.shape)}")
        return idx.nonzero().flatten()
    if idx.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if idx.dtype.is_floating_point or idx.dtype.is_complex:
        raise ValueError(f"indices must be integers or a boolean mask, got dtype {idx.dtype}")
    idx = idx.long().flatten()
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ValueError(
            f"indices must lie in 0..{n - 1}, got range {int(idx.min())}..{int(idx.max())}"
        )
    return idx


def dataset_labels(dataset: Dataset) -> Tensor | None:
    """Per-sample class labels of a dataset, in dataset order, without loading its images where
    the labels are held apart (:class:`TensorImageDataset`, ``TensorDataset``, and ``Subset`` /
    ``ConcatDataset`` of them); other datasets are read item by item.

    Returns:
        ``(N,)`` labels, or ``None`` when an item's label is not a scalar class id.
    """
    if isinstance(dataset, TensorImageDataset):
        return dataset.targets
    if isinstance(dataset, TensorDataset):
        labels = dataset.tensors[1] if len(dataset.tensors) > 1 else None
        return labels if labels is not None and labels.ndim == 1 else None
    if isinstance(dataset, ConcatDataset):
        parts = [dataset_labels(d) for d in dataset.datasets]
        return None if any(p is None for p in parts) else torch.cat(parts)  # type: ignore[arg-type]
    if isinstance(dataset, Subset):
        base = dataset_labels(dataset.dataset)
        return (
            None if base is None else base[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
        )
    try:
        labels = torch.as_tensor([dataset[i][1] for i in range(len(dataset))])  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError, RuntimeError):
        return None
    return labels if labels.ndim == 1 else None
