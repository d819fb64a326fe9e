"""scikit-learn's 8x8 handwritten digits (ships with scikit-learn, no download)."""

from __future__ import annotations

import numpy as np
import sklearn.datasets
import torch
from sklearn.model_selection import train_test_split

from unlearnkit.datasets.tensors import TensorImageDataset

__all__ = ["DIGITS_CLASSES", "load_digits"]

DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


def load_digits(
    *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Load the UCI optical-recognition digits as a stratified, seeded train/test split.

    Data: "Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak, UCI ML Repository,
    1998), the copy bundled with scikit-learn (1797 images, 8x8 pixels, values 0..16).

    Args:
        test_fraction: Share of the images put in the test split, in ``(0, 1)``.
        seed: Seed of the stratified split (``sklearn.model_selection.train_test_split``).

    Returns:
        ``(train, test)`` datasets without augmentation; the normalization mean/std are those of
        the train split's pixels scaled to ``[0, 1]``.

    Shapes:
        ``images`` uint8 ``(N, 1, 8, 8)``, values ``round(v * 255 / 16)`` for raw ``v`` in 0..16;
        ``targets`` int64 ``(N,)`` in 0..9.

    Raises:
        ValueError: If ``test_fraction`` is not strictly between 0 and 1.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sklearn.datasets.load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = torch.from_numpy(pixels).unsqueeze(1)
    targets = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(targets)), test_size=test_fraction, stratify=bunch.target, random_state=seed
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    scaled = images[train_idx].double() / 255.0
    stats = {"mean": [scaled.mean().item()], "std": [scaled.std().item()]}
    return tuple(
        TensorImageDataset(images[idx], targets[idx], classes=DIGITS_CLASSES, **stats)
        for idx in (train_idx, test_idx)
    )
