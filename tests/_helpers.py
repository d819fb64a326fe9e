"""Test helpers: tiny synthetic data and models."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def blobs(n_per_class: int = 60, num_classes: int = 3, dim: int = 8, seed: int = 0):
    """Well-separated Gaussian blobs: x (N, dim) float32, y (N,) int64."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=gen) * 0.8
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centers[y] + torch.randn(len(y), dim, generator=gen)
    return x, y


class TinyMLP(nn.Module):
    arch = "tiny_mlp"

    def __init__(self, dim: int = 8, num_classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, 32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
