"""Gradient ascent (GA) and NegGrad+ on the forget set."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.base import LossUnlearner, UnlearnBatch, init_arguments


class GradientAscent(LossUnlearner):
    """GA: maximise the loss on D_f (minimise ``-CE(f(x_f), y_f)``).

    Source: Thudi et al., "Unrolling SGD: Understanding Factors Influencing Machine Unlearning",
    EuroS&P 2022 (arXiv 2109.13398); the GA baseline of Jia et al., NeurIPS 2023
    (arXiv 2304.04934), §5: a few epochs with a small learning rate (1e-5 – 1e-3 for ResNets).
    GA is unbounded: too many steps drive forget accuracy to zero (over-unlearning).

    Args: see :class:`~unlearnkit.base.LossUnlearner` (defaults: 5 epochs, SGD lr 1e-3).
    """

    streams: ClassVar[tuple[str, ...]] = ("forget",)

    def __init__(
        self,
        *,
        epochs: int = 5,
        lr: float = 1e-3,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        x, y = batch.forget  # type: ignore[misc]
        return -F.cross_entropy(model(x), y)


class NegGradPlus(LossUnlearner):
    """NegGrad+: descend on D_r while ascending on D_f.

    Source: Kurmanji, Triantafillou, Hayes & Triantafillou, "Towards Unbounded Machine
    Unlearning", NeurIPS 2023 (arXiv 2302.09880), §5 baselines:
    ``L = α · CE(f(x_r), y_r) − (1 − α) · CE(f(x_f), y_f)``. The paper tunes α per setting;
    our default α = 0.99.

    Args:
        alpha: weight of the retain term in [0, 1].
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults 5 epochs, SGD lr 0.01)

    Raises:
        ValueError: no retain loader; ``alpha`` outside [0, 1] (at the first step).
    """

    streams: ClassVar[tuple[str, ...]] = ("forget", "retain")

    def __init__(
        self,
        *,
        alpha: float = 0.99,
        epochs: int = 5,
        lr: float = 0.01,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def setup(self, model: nn.Module) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"NegGradPlus alpha must be in [0, 1], got {self.alpha}")

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        (xf, yf), (xr, yr) = batch.forget, batch.retain  # type: ignore[misc]
        retain = F.cross_entropy(model(xr), yr)
        forget = F.cross_entropy(model(xf), yf)
        return self.alpha * retain - (1.0 - self.alpha) * forget
