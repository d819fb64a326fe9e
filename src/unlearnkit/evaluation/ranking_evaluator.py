"""Ranking evaluation of recommender unlearning: :class:`RecEvaluator` and :class:`RecOutputs`.

The twin of the classification :class:`~unlearnkit.evaluation.Evaluator`, on the same protocol
(:class:`~unlearnkit.evaluation.metric.EvaluatorProtocol`): ``collect_from(model, datamodule)``
runs a model once on the datamodule's current forget request and ``metrics_from_outputs(outputs,
reference=, reference_metrics=)`` scores it against the retrained model. It computes the
full-ranking metrics of :mod:`unlearnkit.evaluation.ranking` (LightGCN's protocol, He et al.,
SIGIR 2020, arXiv:2002.02126, Sec. 4.1.1) on the test set, the forget-set metrics, a
membership-inference AUC and, against the retrained model, the score-distribution divergence and
the over-unlearning flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from unlearnkit.datasets.interactions import InteractionData, sample_negatives
from unlearnkit.evaluation.metrics import OVER_UNLEARNING_TOLERANCE, over_unlearning
from unlearnkit.evaluation.ranking import (
    forget_metrics,
    forgotten_pair_ranks,
    membership_auc,
    rank_metrics,
    score_divergence,
)

__all__ = ["RecEvaluator", "RecOutputs"]

ForgetEdges = Any  # unlearnkit.recsys.data.ForgetEdges (the evaluation does not import recsys)


@dataclass
class RecOutputs:
    """What one model produced on one forget request (computed once, compared afterwards).

    Attributes:
        metrics: the model's own metrics (test ranking, forget set, MIA AUC), ``{key: float}``.
        affected_users: users whose scores enter the divergence, ``(B,)`` int64.
        affected_scores: their scores for every item, ``(B, I)`` float32.
        forgotten_scores: scores of the forgotten pairs, ``(F,)`` float64.
        never_scores: scores of never-interacted pairs of the same users, ``(F,)`` float64.
        extra: ``rank_percentile``: ``(rank - 1) / I`` of each forgotten pair, ``(F,)`` float64.
    """

    metrics: dict[str, float]
    affected_users: Tensor
    affected_scores: Tensor
    forgotten_scores: Tensor
    never_scores: Tensor
    extra: dict[str, Any] = field(default_factory=dict)


class RecEvaluator:
    """Ranking evaluation of a recommender after unlearning, keyed ``split/metric``.

    Metrics (fractions in ``[0, 1]``, ranks 1-based, divergences in nats):

    - ``test/{recall,ndcg,precision,hit_rate}@K``: full ranking over all items with each user's
      retained training and validation items masked (LightGCN, arXiv:2002.02126, Sec. 4.1.1;
      :func:`~unlearnkit.evaluation.ranking.rank_metrics`). Test pairs of users or items whose
      every training interaction was forgotten (``user``/``item`` requests) are left out: they
      left the system.
    - ``forget/{recall,ndcg}@K``, ``forget/mean_rank``, ``forget/mean_score``: how high the
      forgotten items still rank for their users (retained items masked;
      :func:`~unlearnkit.evaluation.ranking.forget_metrics`).
    - ``mia/auc``: ROC-AUC separating forgotten pairs from never-interacted pairs of the same
      users by score (:func:`~unlearnkit.evaluation.ranking.membership_auc`); the target is the
      retrained model's value, not 0.5.
    - with a reference (the retrained model): ``score/js_to_retrain`` and ``score/kl_to_retrain``
      (mean over affected users of JS / KL between per-user softmax distributions over items,
      :func:`~unlearnkit.evaluation.ranking.score_divergence`), ``gap/forget_recall@K``
      (unlearned minus retrained forget recall; negative = forgot more than retraining) and
      ``flag/over_unlearning`` (1.0 when forget recall@K is more than
      ``over_unlearning_tolerance`` below the retrained model's,
      :func:`~unlearnkit.evaluation.metrics.over_unlearning`).

    Args:
        ks: cut-offs K.
        batch_size: users per score matrix.
        mia_seed: seed of the never-interacted pairs.
        over_unlearning_tolerance: allowed shortfall of forget recall@max(K) below the
            retrained model's, as a fraction (default
            :data:`~unlearnkit.evaluation.metrics.OVER_UNLEARNING_TOLERANCE`, shared with the
            classification evaluator).
        max_divergence_users: at most this many affected users (a seeded draw) enter the
            divergence.
    """

    def __init__(
        self,
        *,
        ks: Sequence[int] = (10, 20),
        batch_size: int = 1024,
        mia_seed: int = 0,
        over_unlearning_tolerance: float = OVER_UNLEARNING_TOLERANCE,
        max_divergence_users: int = 4096,
    ) -> None:
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self.mia_seed = mia_seed
        self.over_unlearning_tolerance = over_unlearning_tolerance
        self.max_divergence_users = max_divergence_users

    @property
    def main_k(self) -> int:
        """The largest cut-off, used for the gap and the over-unlearning flag."""
        return max(self.ks)

    def test_edges(self, data: InteractionData, split: ForgetEdges) -> tuple[Tensor, Tensor]:
        """``(eval_edges, mask_edges)`` of the test ranking for this request.

        Returns:
            Test pairs without removed users/items, and the retained training + validation
            pairs to mask; both ``(2, ·)`` int64.
        """
        test = data.test_edges
        gone_users, gone_items = split.removed_users(), split.removed_items()
        keep = ~(torch.isin(test[0], gone_users) | torch.isin(test[1], gone_items))
        mask = torch.cat([split.retain, data.val_edges], dim=1)
        return test[:, keep], mask

    def never_interacted(self, data: InteractionData, split: ForgetEdges) -> Tensor:
        """One never-interacted item per forgotten pair's user (seeded), ``(2, F)`` int64."""
        seen = torch.cat([data.train_edges, data.val_edges, data.test_edges], dim=1)
        gen = torch.Generator().manual_seed(int(self.mia_seed))
        users = split.forget[0]
        return torch.stack([users, sample_negatives(users, seen, data.num_items, gen)])

    def affected_users(self, split: ForgetEdges) -> Tensor:
        """Users with forgotten pairs (at most ``max_divergence_users``, seeded draw)."""
        users = split.affected_users()
        if users.numel() > self.max_divergence_users:
            gen = torch.Generator().manual_seed(int(self.mia_seed))
            pick = torch.randperm(users.numel(), generator=gen)[: self.max_divergence_users]
            users = users[pick.sort().values]
        return users

    @torch.no_grad()
    def collect(self, model: nn.Module, data: InteractionData, split: ForgetEdges) -> RecOutputs:
        """Evaluate ``model`` once on this request (its own metrics and what comparisons need).

        Args:
            model: a recommender with ``embeddings()`` and ``score(users, items)``, its graph set.
            data: the dataset (test and validation edges).
            split: the forget request's edges.

        Returns:
            The :class:`RecOutputs`.

        Raises:
            ValueError: the model and the data disagree on the number of users or items.
        """
        for attr in ("num_users", "num_items"):
            if getattr(model, attr, getattr(data, attr)) != getattr(data, attr):
                raise ValueError(
                    f"the model has {attr}={getattr(model, attr)} but the data has "
                    f"{getattr(data, attr)}; build the model for this dataset"
                )
        was_training = model.training
        model.eval()
        user_emb, item_emb = (t.detach() for t in model.embeddings())  # type: ignore[operator]

        def scores(users: Tensor) -> Tensor:
            return user_emb[users] @ item_emb.t()

        eval_edges, mask = self.test_edges(data, split)
        metrics: dict[str, float] = {}
        for key, value in rank_metrics(
            scores, eval_edges, mask, ks=self.ks, batch_size=self.batch_size
        ).items():
            metrics[f"test/{key}"] = value
        for key, value in forget_metrics(
            scores, split.forget, split.retain, ks=self.ks, batch_size=self.batch_size
        ).items():
            metrics[f"forget/{key}"] = value
        ranks = forgotten_pair_ranks(scores, split.forget, split.retain, batch_size=self.batch_size)
        forgotten = (user_emb[split.forget[0]] * item_emb[split.forget[1]]).sum(-1).double()
        never = self.never_interacted(data, split)
        never_scores = (user_emb[never[0]] * item_emb[never[1]]).sum(-1).double()
        metrics["mia/auc"] = membership_auc(forgotten, never_scores)
        users = self.affected_users(split)
        if was_training:
            model.train()
        return RecOutputs(
            metrics=metrics,
            affected_users=users,
            affected_scores=scores(users).float(),
            forgotten_scores=forgotten,
            never_scores=never_scores,
            extra={"rank_percentile": (ranks.double() - 1.0) / float(data.num_items)},
        )

    def collect_from(self, model: nn.Module, datamodule: Any) -> RecOutputs:
        """:meth:`collect` on a ``RecDataModule``'s data and current forget request."""
        return self.collect(model, datamodule.data, datamodule.split)

    def metrics_from_outputs(
        self,
        outputs: RecOutputs,
        reference: RecOutputs | None = None,
        *,
        reference_metrics: Any = None,
    ) -> dict[str, float]:
        """The flat metric dict of one model, compared with the reference when given.

        Args:
            outputs: from :meth:`collect` for the model.
            reference: from :meth:`collect` for the retrained model (or ``None``).
            reference_metrics: unused (the reference outputs carry their metrics); accepted
                for the shared evaluator protocol.

        Returns:
            ``{key: float}`` (see the class docstring).

        Raises:
            ValueError: the reference was collected on other users.
        """
        metrics = dict(outputs.metrics)
        if reference is None:
            return metrics
        if not torch.equal(outputs.affected_users, reference.affected_users):
            raise ValueError("reference outputs were collected for another forget request")
        div = score_divergence(outputs.affected_scores, reference.affected_scores)
        metrics["score/js_to_retrain"] = div["js"]
        metrics["score/kl_to_retrain"] = div["kl"]
        key = f"forget/recall@{self.main_k}"
        mine, ref = metrics.get(key, math.nan), reference.metrics.get(key, math.nan)
        metrics[f"gap/forget_recall@{self.main_k}"] = mine - ref
        flagged = (
            math.isfinite(mine)
            and math.isfinite(ref)
            and over_unlearning(mine, ref, tolerance=self.over_unlearning_tolerance)
        )
        metrics["flag/over_unlearning"] = float(flagged)
        return metrics
