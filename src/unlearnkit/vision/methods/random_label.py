"""Random labels (RL)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.base import LossUnlearner, UnlearnBatch, init_arguments
from unlearnkit.datasets.tensors import class_indices


def random_wrong_labels(
    y: Tensor, num_classes: int, generator: torch.Generator, *, name: str = "labels"
) -> Tensor:
    """Uniformly random labels different from ``y``.

    Shapes: ``y`` (B,) int64 → (B,) int64, each entry in ``[0, num_classes) \\ {y_i}``.

    Raises:
        ValueError: ``y`` is not ``(B,)`` integer class indices in ``0..num_classes - 1``
            (:func:`~unlearnkit.datasets.tensors.class_indices`; ``name`` says whose).
    """
    y = class_indices(y, num_classes, name=name)
    offset = torch.randint(1, num_classes, y.shape, generator=generator, device="cpu").to(y.device)
    return (y + offset) % num_classes


class RandomLabel(LossUnlearner):
    """RL: train on D_f relabelled at random, together with D_r.

    Source: Golatkar, Achille & Soatto, "Eternal Sunshine of the Spotless Net", CVPR 2020
    (arXiv 1911.04933) and Graves, Nagisetty & Ganesh, "Amnesiac Machine Learning", AAAI 2021
    (arXiv 2010.10981), as the RL baseline of Jia et al. (arXiv 2304.04934, Sec. 5) and Fan et al.,
    "SalUn", ICLR 2024 (arXiv 2310.12508, Sec. 4): minimise
    ``E_{D_f}[CE(f(x), ỹ)] + E_{D_r}[CE(f(x), y)]``. As in their code
    (``unlearn/RL.py``: a ``ConcatDataset`` of the relabelled D_f and D_r), each epoch is one
    shuffled pass over D_f ∪ D_r and each batch mixes both sets: the loss is the mean
    cross-entropy over the batch, with ỹ in place of y for the D_f samples. Unlike their
    ``randint`` labels, ỹ ≠ y here (drawn afresh, seeded, at every visit), so a forget sample is
    never trained on its true label.

    Args: see :class:`~unlearnkit.base.LossUnlearner` (defaults: 5 epochs, SGD lr 0.01).

    Raises:
        ValueError: no retain loader; a model whose output has fewer than 2 classes.
    """

    streams: ClassVar[tuple[str, ...]] = ("union",)

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
        x, y = batch.union
        from_forget = batch.union.attr("from_forget")
        logits = model(x)
        num_classes = logits.shape[-1]
        if num_classes < 2:
            raise ValueError("RandomLabel needs a classifier with at least 2 classes")
        # labels of the D_f ∪ D_r batch (each checked; ỹ is used for the D_f rows only)
        fake = random_wrong_labels(
            y, num_classes, self.generator_, name="RandomLabel: the D_f/D_r batch's labels"
        )
        return F.cross_entropy(logits, torch.where(from_forget.to(y.device), fake, y))
