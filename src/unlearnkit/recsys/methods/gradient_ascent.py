"""Gradient ascent (GA) on the forgotten interactions of a recommender.

Named ``RecGradientAscent`` (see :mod:`unlearnkit.recsys.methods.finetune` for why the class
name differs from the vision one); reports call it ``GradientAscent``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from unlearnkit.base import UnlearnBatch, init_arguments
from unlearnkit.recsys.bpr import bpr_loss
from unlearnkit.recsys.methods.base import RecLossUnlearner, triple_scores


class RecGradientAscent(RecLossUnlearner):
    """GA: maximise the BPR loss of the forgotten pairs (minimise the negated BPR loss).

    Source: Thudi et al., "Unrolling SGD", EuroS&P 2022 (arXiv:2109.13398), applied to the BPR
    objective (Rendle et al., UAI 2009, arXiv:1205.2618) as the NegGrad baseline of
    recommendation unlearning (e.g. Wang et al., E2URec, arXiv:2403.03536, Sec. 4 baselines).
    Negatives are drawn among each user's items outside ``D_train``. The model propagates over
    ``D_r``. GA is unbounded: ``-softplus(s_uj - s_ui)`` keeps falling as ``s_ui`` drops, so too
    many steps over-unlearn (the forgotten items sink below never-seen ones).

    Loss per step: ``-mean softplus(s_uj - s_ui)`` over forget pairs ``(u, i)``.

    Args: see :class:`~unlearnkit.recsys.methods.base.RecLossUnlearner` (defaults: 3 epochs,
        Adam lr 1e-2; ``reg_weight`` is not used).
    """

    method_name: ClassVar[str] = "GradientAscent"
    streams: ClassVar[tuple[str, ...]] = ("forget",)

    def __init__(
        self,
        *,
        epochs: int = 3,
        lr: float = 1e-2,
        optimizer: Literal["sgd", "adam"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        reg_weight: float = 0.0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        users, items = batch.forget  # type: ignore[misc]
        neg = self.negatives(users, avoid="train")
        user_emb, item_emb = model.embeddings()
        return -bpr_loss(*triple_scores(user_emb, item_emb, users, items, neg))
