"""SCRUB: a student that moves away from the original model on D_f and stays close on D_r."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader

from unlearnkit.base import LossUnlearner, Stream, UnlearnBatch, init_arguments
from unlearnkit.streams import Flagged, StreamSource, TwoPassBatchSampler


def distill_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.'s distillation loss as SCRUB's ``DistillKL``: ``T² · KL(p_t ‖ p_s)``
    summed over classes and averaged over the batch, ``p = softmax(logits / T)``.

    Shapes: both ``(B, C)``; returns a 0-d tensor (nats).
    """
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_s, p_t, reduction="sum") * temperature**2 / student_logits.shape[0]


class ForgetThenRetain(Stream):
    """Each epoch: every D_f batch (``attrs["from_forget"]`` true), then every D_r batch — the
    reference's separate max pass over D_f and min pass over D_r, in one stream."""

    name = "forget_then_retain"
    parts = ("forget", "retain")

    def build(self, method: Any, model: nn.Module, source: StreamSource) -> DataLoader:
        forget, retain = source.stream_loader("forget"), source.stream_loader("retain")
        sizes = (int(forget.batch_size or 1), int(retain.batch_size or 1))  # type: ignore[union-attr]
        data = ConcatDataset([Flagged(forget.dataset, True), Flagged(retain.dataset, False)])  # type: ignore[union-attr]
        sampler = TwoPassBatchSampler(
            len(forget.dataset),
            len(retain.dataset),
            sizes,
            int(method.seed),  # type: ignore[union-attr, arg-type]
        )
        return DataLoader(data, batch_sampler=sampler)


class SCRUB(LossUnlearner):
    """SCRUB: max-steps away from θ_o on D_f, min-steps towards θ_o and the labels on D_r.

    Source: Kurmanji, Triantafillou, Hayes & Triantafillou, "Towards Unbounded Machine
    Unlearning", NeurIPS 2023 (arXiv 2302.09880), §3 (Eq. 1–3), with the reference code
    (meghdadk/SCRUB) as the SSD repository runs it (``scrub(...)`` in its strategies): teacher =
    frozen θ_o, student = the model. Each epoch, while ``epoch < msteps``, a pass over D_f
    minimising ``−DistillKL(student, teacher)`` (the max-step), then always a pass over D_r
    minimising ``gamma · CE + alpha · DistillKL`` (the min-step; the reference's ``beta`` term is
    0). Both passes share one SGD optimizer (lr 5e-4, momentum 0.9, weight decay 5e-4), as there.
    The reference's lr decay epochs [5, 8, 9] never come within its 3 epochs: no decay here
    (``lr_schedule`` is available).

    Args:
        msteps: epochs with a max-step pass over D_f (reference 2).
        kd_T: distillation temperature (reference 4).
        gamma: weight of the cross-entropy in the min-step (reference 0.99).
        alpha: weight of the distillation term in the min-step (reference 0.001).
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults 3 epochs, SGD lr 5e-4,
        momentum 0.9, weight decay 5e-4.)

    Raises:
        ValueError: no retain loader; ``kd_T <= 0`` or ``msteps < 0`` (before the first step).
    """

    streams: ClassVar[tuple[Stream, ...]] = (ForgetThenRetain(),)

    def __init__(
        self,
        *,
        msteps: int = 2,
        kd_T: float = 4.0,
        gamma: float = 0.99,
        alpha: float = 0.001,
        epochs: int = 3,
        lr: float = 5e-4,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def setup(self, model: nn.Module) -> None:
        if not self.kd_T > 0:
            raise ValueError(f"SCRUB kd_T must be > 0, got {self.kd_T}")
        if not self.msteps >= 0:
            raise ValueError(f"SCRUB msteps must be >= 0, got {self.msteps}")
        self.teacher_ = copy.deepcopy(model).eval().requires_grad_(False)

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor | None:
        part = batch["forget_then_retain"]
        x, y = part
        forget_pass = bool(part.attr("from_forget")[0])
        if forget_pass and epoch >= self.msteps:
            return None  # the max-steps stop after msteps epochs
        with torch.no_grad():
            teacher = self.teacher_(x)
        logits = model(x)
        divergence = distill_kl(logits, teacher, float(self.kd_T))
        if forget_pass:
            return -divergence
        return self.gamma * F.cross_entropy(logits, y) + self.alpha * divergence
