"""Bad Teacher: knowledge distillation from an incompetent and a competent teacher."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from unlearnkit.base import LossUnlearner, Stream, UnlearnBatch, init_arguments
from unlearnkit.reinit import reinitialize
from unlearnkit.streams import StreamSource, union_loader


class ForgetAndRetainSample(Stream):
    """One shuffled pass over D_f ∪ a seeded sample of D_r (``retain_fraction`` of it), each
    batch mixing both with ``attrs["from_forget"]`` marking D_f — the reference code's
    ``UnLearningData(forget_data, retain_data)`` over ``random.sample(retain, 30 %)``."""

    name = "forget_and_retain_sample"
    parts = ("forget", "retain")

    def build(self, method: Any, model: nn.Module, source: StreamSource) -> DataLoader:
        forget, retain = source.stream_loader("forget"), source.stream_loader("retain")
        n = len(retain.dataset)  # type: ignore[union-attr, arg-type]
        k = min(n, max(1, round(float(method.retain_fraction) * n)))
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(int(method.seed)))[:k]
        sample = DataLoader(
            Subset(retain.dataset, pick.sort().values.tolist()),  # type: ignore[union-attr]
            batch_size=retain.batch_size,  # type: ignore[union-attr]
        )
        return union_loader(forget, sample, seed=int(method.seed))  # type: ignore[arg-type]


def bad_teacher_loss(
    student_logits: Tensor,
    competent_logits: Tensor,
    incompetent_logits: Tensor,
    from_forget: Tensor,
    *,
    temperature: float = 1.0,
) -> Tensor:
    """KL from the per-sample teacher (incompetent on D_f, competent on D_r) to the student.

    Chundawat et al., AAAI 2023 (arXiv 2205.08096), §3, Eq. 3–4; as the reference code's
    ``UnlearnerLoss``: teacher ``p = softmax(t / T)`` of the incompetent teacher where
    ``from_forget`` else of the competent one, and ``F.kl_div(log_softmax(s / T), p)`` with
    PyTorch's default ``reduction="mean"`` (the mean over all ``B·C`` entries, as the code has it).

    Shapes:
        logits ``(B, C)``, ``from_forget`` ``(B,)`` bool; returns a 0-d tensor (nats / entry).
    """
    mask = from_forget.to(student_logits.device).unsqueeze(1).float()
    competent = F.softmax(competent_logits / temperature, dim=1)
    incompetent = F.softmax(incompetent_logits / temperature, dim=1)
    teacher = mask * incompetent + (1.0 - mask) * competent
    # the elementwise mean (kl_div's reduction="mean", written out: torch warns on that one)
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_p, teacher, reduction="sum") / teacher.numel()


class BadTeacher(LossUnlearner):
    """Bad Teacher: distil an incompetent teacher on D_f and the original model on D_r.

    Source: Chundawat, Tarun, Mandal & Kankanhalli, "Can Bad Teaching Induce Forgetting?
    Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023 (arXiv 2205.08096), §3;
    reference code ``vikram2000b/bad-teaching-unlearning`` (``blindspot_unlearner``): the student
    starts as θ_o; the competent teacher is a frozen copy of θ_o, the incompetent one a frozen,
    randomly initialised model of the same architecture (here the model's own init,
    :func:`unlearnkit.reinit.reinitialize`, seeded); one pass over D_f ∪ 30 % of D_r
    (:class:`ForgetAndRetainSample`), loss :func:`bad_teacher_loss` at temperature 1, Adam lr
    1e-4, 1 epoch.

    Args:
        retain_fraction: share of D_r distilled from the competent teacher (reference 0.3).
        temperature: KD temperature ``T`` (reference 1).
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults 1 epoch, Adam lr 1e-4,
        no weight decay.)

    Raises:
        ValueError: no retain loader; ``retain_fraction`` outside (0, 1] or ``temperature <= 0``
            (before the first step).
    """

    streams: ClassVar[tuple[Stream, ...]] = (ForgetAndRetainSample(),)

    def __init__(
        self,
        *,
        retain_fraction: float = 0.3,
        temperature: float = 1.0,
        epochs: int = 1,
        lr: float = 1e-4,
        optimizer: Literal["sgd", "adam"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def setup(self, model: nn.Module) -> None:
        if not 0.0 < self.retain_fraction <= 1.0:
            raise ValueError(
                f"BadTeacher retain_fraction must be in (0, 1], got {self.retain_fraction}"
            )
        if not self.temperature > 0:
            raise ValueError(f"BadTeacher temperature must be > 0, got {self.temperature}")
        self.competent_ = copy.deepcopy(model).eval().requires_grad_(False)
        incompetent = copy.deepcopy(model)
        reinitialize(incompetent, seed=int(self.seed) + 1)
        self.incompetent_ = incompetent.eval().requires_grad_(False)

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        part = batch["forget_and_retain_sample"]
        x, _ = part
        with torch.no_grad():
            competent, incompetent = self.competent_(x), self.incompetent_(x)
        return bad_teacher_loss(
            model(x),
            competent,
            incompetent,
            part.attr("from_forget"),
            temperature=float(self.temperature),
        )
