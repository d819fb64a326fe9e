"""Superclass groupings: match the class names in shared/data/README.md and partition the classes."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.datasets.cifar import CIFAR10_CLASSES
from unlearnkit.datasets.fashion_mnist import FASHION_MNIST_CLASSES
from unlearnkit.datasets.superclasses import (
    CIFAR10_SUPERCLASSES,
    FASHION_MNIST_SUPERCLASSES,
    superclass_groups,
)
from unlearnkit.datasets.tensors import TensorImageDataset, with_superclasses

# the groupings by name, as written in shared/data/README.md
FASHION_BY_NAME = {
    "tops": {"T-shirt/top", "Pullover", "Coat", "Shirt"},
    "footwear": {"Sandal", "Sneaker", "Ankle boot"},
    "other": {"Trouser", "Dress", "Bag"},
}
CIFAR10_BY_NAME = {
    "vehicles": {"airplane", "automobile", "ship", "truck"},
    "animals": {"bird", "cat", "deer", "dog", "frog", "horse"},
}


@pytest.mark.parametrize(
    ("groups", "classes", "by_name"),
    [
        (FASHION_MNIST_SUPERCLASSES, FASHION_MNIST_CLASSES, FASHION_BY_NAME),
        (CIFAR10_SUPERCLASSES, CIFAR10_CLASSES, CIFAR10_BY_NAME),
    ],
)
def test_groups_match_the_names(groups, classes, by_name) -> None:
    assert {k: {classes[i] for i in ids} for k, ids in groups.items()} == by_name
    ds = TensorImageDataset(
        torch.zeros(10, 1, 1, 1, dtype=torch.uint8),
        torch.arange(10),
        mean=(0.0,),
        std=(1.0,),
        classes=classes,
    )
    sup = with_superclasses(ds, groups)  # raises unless the groups partition the 10 classes
    names = [sup.classes[t] for t in sup.targets.tolist()]
    assert all(classes[i] in by_name[n] for i, n in enumerate(names))


def test_sneaker_is_footwear_and_ship_is_a_vehicle() -> None:
    fashion = superclass_groups("fashion_mnist")
    assert FASHION_MNIST_CLASSES.index("Sneaker") in fashion["footwear"]
    assert FASHION_MNIST_CLASSES.index("Bag") in fashion["other"]
    assert CIFAR10_CLASSES.index("ship") in superclass_groups("cifar10")["vehicles"]
    assert superclass_groups("Fashion-MNIST") == fashion


def test_returns_fresh_copies() -> None:
    groups = superclass_groups("cifar10")
    groups["vehicles"].append(99)
    assert CIFAR10_SUPERCLASSES["vehicles"] == [0, 1, 8, 9]


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ValueError, match="known: fashion_mnist, cifar10, cifar100"):
        superclass_groups("cifar20")


def test_cifar100_without_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="download=True"):
        superclass_groups("cifar100", tmp_path)
