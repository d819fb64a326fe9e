"""Shared fixtures: tiny synthetic classification data and models (fast, offline, CPU)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from _helpers import TinyMLP, blobs

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

# One intra-op thread for the whole session (set here once, not per test directory): the tests'
# models are tiny, and on a shared 2-core machine two spinning OpenMP threads per process made
# each step up to 100x slower (measured: 8 ms vs 1 s per step).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def blob_splits():
    """forget = class 0, retain = classes 1-2 (loaders with batch 32)."""
    x, y = blobs()
    forget = y == 0
    make = lambda m, shuffle: DataLoader(TensorDataset(x[m], y[m]), batch_size=32, shuffle=shuffle)  # noqa: E731
    return {
        "train": make(torch.ones_like(forget), True),
        "forget": make(forget, True),
        "retain": make(~forget, True),
        "forget_eval": make(forget, False),
        "retain_eval": make(~forget, False),
    }


@pytest.fixture(scope="session")
def trained_mlp(blob_splits):
    """An original TinyMLP trained on all three blobs (state_dict)."""
    from unlearnkit.vision.methods import FineTune

    torch.manual_seed(0)
    model = TinyMLP()
    FineTune(epochs=5, lr=0.05).unlearn(model, blob_splits["train"], blob_splits["train"])
    return model.state_dict()
