"""Datasets (pure, in-memory) and one thin DataModule each."""

from unlearnkit.datasets.cifar import (
    CIFAR10_CLASSES,
    cifar100_superclasses,
    load_cifar10,
    load_cifar100,
)
from unlearnkit.datasets.digits import load_digits
from unlearnkit.datasets.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from unlearnkit.datasets.superclasses import (
    CIFAR10_SUPERCLASSES,
    FASHION_MNIST_SUPERCLASSES,
    superclass_groups,
)
from unlearnkit.datasets.tensors import TensorImageDataset, with_superclasses
from unlearnkit.datasets.vision import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "CIFAR10_CLASSES",
    "CIFAR10_SUPERCLASSES",
    "CIFAR100DataModule",
    "DigitsDataModule",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SUPERCLASSES",
    "FashionMNISTDataModule",
    "TensorImageDataset",
    "cifar100_superclasses",
    "load_cifar10",
    "load_cifar100",
    "load_digits",
    "load_fashion_mnist",
    "superclass_groups",
    "with_superclasses",
]
