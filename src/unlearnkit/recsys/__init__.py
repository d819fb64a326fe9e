"""Graph-recommender unlearning: LightGCN / BPR-MF models, BPR, forget requests, methods, runner.

``from unlearnkit.recsys import ReverseBPR`` works in anyone's training code: every method is an
:class:`~unlearnkit.base.Unlearner` with ``unlearn(model, forget_loader, retain_loader)`` over
``(users, items)`` edge loaders (:func:`unlearnkit.recsys.data.edge_loader`). Names are resolved
lazily, so ``import unlearnkit.recsys.data`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "E2URec": "unlearnkit.recsys.methods",
    "RecFineTune": "unlearnkit.recsys.methods",
    "RecGradientAscent": "unlearnkit.recsys.methods",
    "RecRetrain": "unlearnkit.recsys.methods",
    "ReverseBPR": "unlearnkit.recsys.methods",
    "LightGCNRecommender": "unlearnkit.recsys.models",
    "MFRecommender": "unlearnkit.recsys.models",
    "EdgeDataset": "unlearnkit.recsys.data",
    "ForgetEdges": "unlearnkit.recsys.data",
    "MovieLensSmallDataModule": "unlearnkit.recsys.data",
    "RecDataModule": "unlearnkit.recsys.data",
    "edge_loader": "unlearnkit.recsys.data",
    "resolve_forget_edges": "unlearnkit.recsys.data",
    "RecEvaluator": "unlearnkit.recsys.module",
    "RecUnlearningModule": "unlearnkit.recsys.module",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'unlearnkit.recsys' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
