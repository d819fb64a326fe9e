"""load_digits: split sizes, stratification, pixel scaling, statistics, seeding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import sklearn.datasets
import torch

from unlearnkit.datasets.digits import load_digits


@pytest.fixture(scope="module")
def raw():
    return sklearn.datasets.load_digits()


def test_split_sizes_and_shapes() -> None:
    train, test = load_digits()
    assert (len(train), len(test)) == (1347, 450)  # sklearn rounds the test share up
    assert train.images.shape == (1347, 1, 8, 8) and train.images.dtype == torch.uint8
    assert train.targets.dtype == torch.int64 and train.classes == [str(d) for d in range(10)]
    assert not train.augment and not test.augment


def test_split_is_stratified(raw) -> None:
    train, test = load_digits(test_fraction=0.25)
    per_class = np.bincount(raw.target, minlength=10)
    test_counts = torch.bincount(test.targets, minlength=10).numpy()
    assert np.abs(test_counts - 0.25 * per_class).max() <= 1
    assert (torch.bincount(train.targets, minlength=10).numpy() + test_counts == per_class).all()


def test_pixels_are_scaled_copies_of_the_whole_set(raw) -> None:
    train, test = load_digits()
    scaled = np.rint(raw.images * 255 / 16).astype(np.uint8)
    expected = Counter((bytes(img), int(t)) for img, t in zip(scaled, raw.target, strict=True))
    images = torch.cat([train.images, test.images]).squeeze(1).numpy()
    targets = torch.cat([train.targets, test.targets]).tolist()
    assert Counter((bytes(img), t) for img, t in zip(images, targets, strict=True)) == expected
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_normalization_uses_train_statistics() -> None:
    train, test = load_digits()
    pixels = train.images.double() / 255
    assert train.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-9)
    assert train.std[0] == pytest.approx(float(pixels.std()), abs=1e-9)
    assert test.mean == train.mean and test.std == train.std
    x = torch.stack([train[i][0] for i in range(len(train))]).double()
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-4)


def test_seed_controls_the_split() -> None:
    a, _ = load_digits(seed=0)
    b, _ = load_digits(seed=0)
    c, _ = load_digits(seed=1)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    small, test = load_digits(test_fraction=0.5)
    assert len(small) == 898 and len(test) == 899


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=fraction)
