"""ReverseBPR: MMRecUn's reverse BPR on forgotten pairs plus forward BPR on retained pairs."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from unlearnkit.base import UnlearnBatch, init_arguments
from unlearnkit.recsys.bpr import bpr_loss
from unlearnkit.recsys.methods.base import RecLossUnlearner, triple_scores

__all__ = ["ReverseBPR", "reverse_bpr_loss"]


def reverse_bpr_loss(pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
    """Reverse BPR: ``mean softplus(s_ui - s_uj) = -mean log sigma(s_uj - s_ui)``.

    Sinha, Mandal & Kankanhalli, "Multi-Modal Recommendation Unlearning for Legal, Licensing, and
    Modality Constraints" (MMRecUn), AAAI 2025, arXiv:2405.15328, Sec. 3: BPR (Rendle et al.,
    UAI 2009) with the roles of the forgotten item ``i`` and the sampled negative ``j``
    exchanged, so minimising it ranks ``j`` above ``i``. It is bounded: its gradient
    ``sigma(s_ui - s_uj)`` vanishes once ``i`` has dropped well below ``j``, unlike gradient
    ascent on BPR.

    Args:
        pos_scores: scores of the forgotten pairs ``(u, i)``.
        neg_scores: scores of ``(u, j)`` with ``j`` a sampled non-interacted item.

    Returns:
        Scalar loss.

    Shapes:
        pos_scores, neg_scores: ``(B,)`` float.

    Raises:
        ValueError: the shapes differ or the batch is empty.
    """
    return bpr_loss(neg_scores, pos_scores)


class ReverseBPR(RecLossUnlearner):
    """MMRecUn: reverse BPR on the forget set, forward BPR on the retain set.

    Sinha, Mandal & Kankanhalli, "Multi-Modal Recommendation Unlearning for Legal, Licensing, and
    Modality Constraints", AAAI 2025, arXiv:2405.15328, Sec. 3 (the reverse BPR objective
    attenuates the forgotten interactions while the forward BPR objective keeps the retained
    ones; both on the graph recommender's embeddings, with an L2 regulariser). Ported here to
    LightGCN / BPR-MF; the model propagates over ``D_r`` from the first step.

    Loss per step, forget pairs ``(u, i)`` with negatives ``j`` outside ``D_train`` and retain
    pairs ``(v, k)`` with negatives ``l`` outside ``D_r``::

        forget_weight * mean softplus(s_ui - s_uj) + retain_weight * mean softplus(s_vl - s_vk)
            + reg_weight * (||E0 rows of the forget triples||^2 + ||... retain triples||^2) / B

    An epoch is one pass over the forget loader with as many retain batches drawn at random
    (``epoch_over = "forget"``), so the cost scales with ``|D_f|``, not ``|D_r|``.

    Note on the defaults: the paper's coefficients were not available to us offline (only its
    abstract: up to 1.3x faster than retraining). Plain SGD (no momentum) is the default because
    its step is proportional to the gradient: the well-ranked retained pairs barely move while the
    forgotten pairs (high reverse loss) move most; Adam's per-coordinate normalisation moved every
    embedding in the batch by ~lr and cost 10 % test recall on MovieLens at the same forgetting.
    ``lr`` applies to batch means (``forget_batch_size`` = 512 pairs on MovieLens). How far to push
    depends on the request: users / items need lr 100-200, interactions (whose retrained forget
    recall stays high, so pushing below random negatives over-unlearns) about 10
    (configs/experiments/movielens_*.yaml, benchmarks/RESULTS.md).

    Args:
        forget_weight: weight of the reverse BPR term.
        retain_weight: weight of the forward BPR term.
        (others: see :class:`~unlearnkit.recsys.methods.base.RecLossUnlearner`; defaults 5
        epochs, SGD lr 100 without momentum, L2 1e-4)

    Raises:
        ValueError: no retain loader; a negative weight (at setup).
    """

    streams: ClassVar[tuple[str, ...]] = ("forget", "retain")
    epoch_over: ClassVar[Literal["longest", "forget"]] = "forget"

    def __init__(
        self,
        *,
        forget_weight: float = 1.0,
        retain_weight: float = 1.0,
        epochs: int = 5,
        lr: float = 100.0,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        reg_weight: float = 1e-4,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def setup(self, model: nn.Module) -> None:
        if self.forget_weight < 0 or self.retain_weight < 0:
            raise ValueError(
                f"ReverseBPR weights must be >= 0, got forget_weight={self.forget_weight}, "
                f"retain_weight={self.retain_weight}"
            )
        super().setup(model)

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        (fu, fi), (ru, ri) = batch.forget, batch.retain  # type: ignore[misc]
        fj = self.negatives(fu, avoid="train")
        rj = self.negatives(ru, avoid="retain")
        user_emb, item_emb = model.embeddings()
        reverse = reverse_bpr_loss(*triple_scores(user_emb, item_emb, fu, fi, fj))
        forward = bpr_loss(*triple_scores(user_emb, item_emb, ru, ri, rj))
        loss = self.forget_weight * reverse + self.retain_weight * forward
        if self.reg_weight:
            user0, item0 = model.ego_embeddings()
            reg = sum(
                e.pow(2).sum()
                for e in (user0[fu], item0[fi], item0[fj], user0[ru], item0[ri], item0[rj])
            )
            loss = loss + self.reg_weight * reg / (fu.numel() + ru.numel())
        return loss
