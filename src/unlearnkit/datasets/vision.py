"""Thin LightningDataModules over the in-memory vision datasets (one per dataset)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from unlearnkit.data import UnlearningDataModule


class DigitsDataModule(UnlearningDataModule):
    """scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes): the embedded default.

    Ships with scikit-learn, so it needs no download. Split: stratified, seeded.

    Args:
        test_fraction: share of the 1,797 images held out as D_test.
        split_seed: seed of the train/test split.
        batch_size: training batch size. 64 here (128 in the other DataModules): declared in the
            signature, so a YAML that omits it, ``--help`` and ``DigitsDataModule()`` all get the
            default experiment's 64 (the same cached original).
        **kwargs: see :class:`~unlearnkit.data.UnlearningDataModule`.
    """

    def __init__(
        self,
        *,
        test_fraction: float = 0.25,
        split_seed: int = 0,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.test_fraction = test_fraction
        self.split_seed = split_seed

    def load(self) -> tuple[Dataset, Dataset]:
        from unlearnkit.datasets.digits import load_digits

        return load_digits(test_fraction=self.test_fraction, seed=self.split_seed)

    def cache_key(self) -> dict[str, Any]:
        return {
            **super().cache_key(),
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
        }


class _RootDataModule(UnlearningDataModule):
    """A DataModule reading files under ``root`` (or downloading them when ``download``)."""

    def __init__(self, *, root: str | None = None, download: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.download = download


class FashionMNISTDataModule(_RootDataModule):
    """Fashion-MNIST (60k/10k, 28×28 gray, 10 classes) from IDX files under ``root``.

    ``root`` may be ``../shared/data/fashion-mnist``, ``/usr/share/datasets/fashion-mnist``
    (Debian's ``dataset-fashion-mnist``) or a torchvision root; ``download=True`` fetches it with
    torchvision when online. Superclasses for ``subclass`` forgetting: tops, footwear, other.
    """

    def load(self) -> tuple[Dataset, Dataset]:
        from unlearnkit.datasets.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(self.root, download=self.download)

    def superclass_groups(self) -> dict[str, list[int]]:
        from unlearnkit.datasets.superclasses import FASHION_MNIST_SUPERCLASSES

        return {k: list(v) for k, v in FASHION_MNIST_SUPERCLASSES.items()}


class CIFAR10DataModule(_RootDataModule):
    """CIFAR-10 (50k/10k, 32×32 RGB) from torchvision's format, an ImageFolder tree or its .tar.gz.

    Training images are augmented (random crop + flip); evaluation loaders never are.
    Superclasses for ``subclass`` forgetting: vehicles, animals.
    """

    def load(self) -> tuple[Dataset, Dataset]:
        from unlearnkit.datasets.cifar import load_cifar10

        return load_cifar10(self.root, download=self.download)

    def superclass_groups(self) -> dict[str, list[int]]:
        from unlearnkit.datasets.superclasses import CIFAR10_SUPERCLASSES

        return {k: list(v) for k, v in CIFAR10_SUPERCLASSES.items()}


class CIFAR100DataModule(_RootDataModule):
    """CIFAR-100 (50k/10k, 100 fine classes) from torchvision's format; its 20 coarse labels
    serve as superclasses for ``subclass`` forgetting."""

    def load(self) -> tuple[Dataset, Dataset]:
        from unlearnkit.datasets.cifar import load_cifar100

        return load_cifar100(self.root, download=self.download)

    def superclass_groups(self) -> dict[str, list[int]]:
        from unlearnkit.datasets.cifar import cifar100_superclasses

        return cifar100_superclasses(self.root)
