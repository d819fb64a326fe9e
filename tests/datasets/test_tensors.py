"""TensorImageDataset: normalization, augmentation, subsets, superclass relabelling, validation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from unlearnkit.datasets.tensors import TensorImageDataset, random_crop_flip, with_superclasses

MEAN, STD = (0.25, 0.5), (0.5, 0.25)


def make(n: int = 6, *, augment: bool = False, size: int = 5) -> TensorImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 2, size, size), dtype=torch.uint8, generator=gen)
    targets = torch.arange(n) % 3
    return TensorImageDataset(
        images, targets, mean=MEAN, std=STD, classes=["a", "b", "c"], augment=augment
    )


def normalized(image: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(MEAN).view(-1, 1, 1), torch.tensor(STD).view(-1, 1, 1)
    return (image.double() / 255 - mean) / std


def test_getitem_normalizes_per_channel() -> None:
    ds = make()
    x, y = ds[4]
    assert x.dtype == torch.float32 and x.shape == (2, 5, 5)
    torch.testing.assert_close(x.double(), normalized(ds.images[4]), atol=1e-5, rtol=0)
    assert y.dtype == torch.int64 and y.ndim == 0 and int(y) == 1
    # hand-computed corners: pixel 0 -> -mean/std, pixel 255 -> (1 - mean)/std
    corner = TensorImageDataset(
        torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1),
        torch.tensor([0]),
        mean=MEAN,
        std=STD,
        classes=["a"],
    )[0][0].flatten()
    torch.testing.assert_close(corner, torch.tensor([-0.5, 2.0]))


def test_attributes_and_dataloader_batches() -> None:
    ds = make()
    assert ds.num_classes == 3 and ds.classes == ["a", "b", "c"] and len(ds) == 6
    assert ds.fine_targets is ds.targets and ds.fine_classes == ds.classes
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 2, 5, 5) and x.dtype == torch.float32
    assert y.tolist() == [0, 1, 2, 0] and y.dtype == torch.int64


def all_crops(image: torch.Tensor, pad: int = 4) -> list[torch.Tensor]:
    """Slow reference: every padded crop and its mirror."""
    h, w = image.shape[-2:]
    padded = torch.zeros(image.shape[0], h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    crops = [
        padded[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)
    ]
    return crops + [c.flip(-1) for c in crops]


def test_augment_draws_are_padded_crops_and_flips() -> None:
    ds = make(augment=True, size=8)
    image = ds.images[0]
    candidates = torch.stack([normalized(c) for c in all_crops(image)])
    torch.manual_seed(0)
    hits = set()
    for _ in range(60):
        x = ds[0][0].double()
        matches = ((candidates - x).abs().amax(dim=(1, 2, 3)) < 1e-5).nonzero().flatten()
        assert len(matches) >= 1
        hits.add(int(matches[0]))
    assert len(hits) > 20  # many different offsets and both flips are drawn
    assert any(h < 81 for h in hits) and any(h >= 81 for h in hits)
    # unaugmented copy returns the plain image
    torch.testing.assert_close(
        ds.with_augment(False)[0][0].double(), normalized(image), atol=1e-5, rtol=0
    )


def test_augment_is_reproducible_under_seed() -> None:
    ds = make(augment=True, size=8)
    torch.manual_seed(3)
    a = torch.stack([ds[i][0] for i in range(6)])
    torch.manual_seed(3)
    b = torch.stack([ds[i][0] for i in range(6)])
    torch.testing.assert_close(a, b)


def test_random_crop_flip_zero_pads() -> None:
    image = torch.full((1, 4, 4), 7, dtype=torch.uint8)
    torch.manual_seed(0)
    outs = [random_crop_flip(image, 4) for _ in range(40)]
    assert all(o.shape == (1, 4, 4) and o.dtype == torch.uint8 for o in outs)
    assert any((o == 0).any() for o in outs) and any((o == 7).all() for o in outs)


def test_with_augment_shares_tensors_and_leaves_original() -> None:
    ds = make()
    aug = ds.with_augment(True)
    assert aug.augment and not ds.augment
    assert aug.images is ds.images and aug.targets is ds.targets


def test_subset_selects_rows_in_order() -> None:
    ds = make()
    sub = ds.subset([5, 1, 1])
    assert torch.equal(sub.images, ds.images[[5, 1, 1]])
    assert sub.targets.tolist() == [2, 1, 1] and sub.classes == ds.classes
    mask = torch.tensor([True, False, True, False, False, True])
    assert make().subset(mask).targets.tolist() == [0, 2, 2]
    assert len(ds.subset([])) == 0
    assert ds.with_augment(True).subset(torch.tensor([0])).augment


@pytest.mark.parametrize(
    ("indices", "match"),
    [([0, 6], "0..5"), ([-1], "0..5"), ([0.5], "integers"), (torch.ones(3, dtype=bool), "mask")],
)
def test_subset_rejects_bad_indices(indices, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make().subset(indices)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": torch.zeros(2, 1, 3, 3)}, ValueError, "uint8"),
        ({"images": torch.zeros(2, 3, 3, dtype=torch.uint8)}, ValueError, "N, C, H, W"),
        ({"images": [[0]]}, TypeError, "torch.Tensor"),
        ({"targets": torch.tensor([0, 1, 0])}, ValueError, "shape"),
        ({"targets": torch.tensor([0, 3])}, ValueError, "0..2"),
        ({"targets": torch.tensor([0.0, 1.0])}, ValueError, "integer class indices"),
        ({"mean": (0.5, 0.5)}, ValueError, "one value per channel"),
        ({"std": (0.0,)}, ValueError, "positive"),
        ({"fine_targets": torch.tensor([0, 5]), "fine_classes": ["x", "y"]}, ValueError, "0..1"),
    ],
)
def test_constructor_validation(kwargs: dict, error: type, match: str) -> None:
    args = {
        "images": torch.zeros(2, 1, 3, 3, dtype=torch.uint8),
        "targets": torch.tensor([0, 2]),
        "mean": (0.5,),
        "std": (0.5,),
        "classes": ["a", "b", "c"],
    }
    args.update(kwargs)
    images, targets = args.pop("images"), args.pop("targets")
    with pytest.raises(error, match=match):
        TensorImageDataset(images, targets, **args)


def test_with_superclasses_relabels_and_keeps_fine_labels() -> None:
    images = torch.zeros(5, 1, 2, 2, dtype=torch.uint8)
    fine = torch.tensor([0, 1, 2, 3, 2])
    ds = TensorImageDataset(images, fine, mean=(0.0,), std=(1.0,), classes=list("abcd"))
    sup = with_superclasses(ds, {"odd": [1, 3], "even": [2, 0]})
    assert sup.targets.tolist() == [1, 0, 1, 0, 1]
    assert sup.classes == ["odd", "even"] and sup.num_classes == 2
    assert sup.fine_targets.tolist() == fine.tolist() and sup.fine_classes == list("abcd")
    assert sup.images is ds.images and int(sup[3][1]) == 0
    assert sup.subset([2, 3]).fine_targets.tolist() == [2, 3]


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ({"x": [0, 1], "y": [1, 2, 3]}, "exactly one"),
        ({"x": [0, 1], "y": [2]}, "no superclass"),
        ({"x": [0, 1, 2, 3, 4]}, "0..3"),
        ({"x": [0, 1, 2, 3], "y": []}, "empty"),
    ],
)
def test_with_superclasses_requires_a_partition(groups: dict, match: str) -> None:
    ds = TensorImageDataset(
        torch.zeros(4, 1, 2, 2, dtype=torch.uint8),
        torch.arange(4),
        mean=(0.0,),
        std=(1.0,),
        classes=list("abcd"),
    )
    with pytest.raises(ValueError, match=match):
        with_superclasses(ds, groups)
