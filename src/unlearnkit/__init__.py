"""unlearnkit: machine unlearning for vision classifiers and graph recommenders.

The top-level names are imported lazily (PEP 562), so ``import unlearnkit`` stays cheap; e.g.
``from unlearnkit import ForgetSpec`` loads :mod:`unlearnkit.data` on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ForgetSpec": "unlearnkit.data",
    "ForgetSplit": "unlearnkit.data",
    "UnlearningDataModule": "unlearnkit.data",
    "LossUnlearner": "unlearnkit.base",
    "UnlearnBatch": "unlearnkit.base",
    "Unlearner": "unlearnkit.base",
    "list_methods": "unlearnkit.base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'unlearnkit' has no attribute {name!r}")
