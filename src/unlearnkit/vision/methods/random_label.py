"""Random labels (RL)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.base import LossUnlearner, UnlearnBatch, init_arguments


def random_wrong_labels(y: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """Uniformly random labels different from ``y``.

    Shapes: ``y`` (B,) int64 → (B,) int64, each entry in ``[0, num_classes) \\ {y_i}``.
    """
    offset = torch.randint(1, num_classes, y.shape, generator=generator, device="cpu").to(y.device)
    return (y + offset) % num_classes


class RandomLabel(LossUnlearner):
    """RL: train on D_f relabelled at random, together with D_r.

    Source: Golatkar, Achille & Soatto, "Eternal Sunshine of the Spotless Net", CVPR 2020
    (arXiv 1911.04933) and Graves, Nagisetty & Ganesh, "Amnesiac Machine Learning", AAAI 2021
    (arXiv 2010.10981), as the RL baseline of Jia et al. (arXiv 2304.04934) and Fan et al.,
    "SalUn", ICLR 2024 (arXiv 2310.12508): ``L = CE(f(x_f), ỹ_f) + CE(f(x_r), y_r)``.
    Here each forget sample gets a fresh wrong label ỹ ≠ y every time it is visited (seeded),
    which never reinforces the true label.

    Args: see :class:`~unlearnkit.base.LossUnlearner` (defaults: 5 epochs, SGD lr 0.01).

    Raises:
        ValueError: no retain loader; a model whose output has fewer than 2 classes.
    """

    requires_retain: ClassVar[bool] = True
    uses: ClassVar[tuple[str, ...]] = ("forget", "retain")

    def __init__(
        self,
        *,
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
        self.generator_ = torch.Generator().manual_seed(self.seed)

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        (xf, yf), (xr, yr) = batch.forget, batch.retain  # type: ignore[misc]
        logits_f = model(xf)
        num_classes = logits_f.shape[-1]
        if num_classes < 2:
            raise ValueError("RandomLabel needs a classifier with at least 2 classes")
        fake = random_wrong_labels(yf, num_classes, self.generator_)
        return F.cross_entropy(logits_f, fake) + F.cross_entropy(model(xr), yr)
