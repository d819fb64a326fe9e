"""Full-ranking top-K evaluation of recommenders, and forget-set metrics for recommendation unlearning.

Protocol (He et al., "LightGCN", SIGIR 2020, arXiv:2002.02126, Sec. 4.1.1; full ranking rather
than sampled negatives, as argued by Krichene & Rendle, "On Sampled Metrics for Item
Recommendation", KDD 2020): every user is ranked against ALL items; items the user interacted with in the mask set (training, plus
validation when evaluating test) are removed from the ranking; Recall@K, Precision@K, Hit-rate@K
and NDCG@K are averaged over users that have at least one evaluation item (users without any are
excluded, not counted as zero).

All metrics are vectorised over a batch of users: one ``(B, I)`` score matrix, one ``topk``, and a
dense boolean ``(B, I)`` ground-truth matrix per batch.

A *score source* is either a recommender with ``embeddings() -> (user_emb, item_emb)`` (scores are
dot products; propagation runs once per call), an object with ``full_scores(users)``, or a
callable ``users (B,) -> scores (B, I)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unlearnkit.datasets.interactions import check_edges
from unlearnkit.evaluation.metrics import js_divergence, kl_divergence

__all__ = [
    "forget_metrics",
    "forgotten_pair_ranks",
    "hit_rate_at_k",
    "membership_auc",
    "ndcg_at_k",
    "precision_at_k",
    "rank_metrics",
    "recall_at_k",
    "score_divergence",
]

ScoreSource = Any  # recommender with embeddings()/full_scores(), or Callable[[Tensor], Tensor]


# ------------------------------------------------------------------------------------------
# Pure per-batch metrics on a score matrix
# ------------------------------------------------------------------------------------------
def _check_matrix(scores: Tensor, ground_truth: Tensor, mask: Tensor | None) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be a (B, I) matrix, got shape {tuple(scores.shape)}")
    if ground_truth.shape != scores.shape or ground_truth.dtype != torch.bool:
        raise ValueError(
            f"ground_truth must be a bool matrix of the scores' shape {tuple(scores.shape)}, got "
            f"{ground_truth.dtype} {tuple(ground_truth.shape)}"
        )
    if mask is not None and (mask.shape != scores.shape or mask.dtype != torch.bool):
        raise ValueError(
            f"mask must be a bool matrix of the scores' shape {tuple(scores.shape)}, got "
            f"{mask.dtype} {tuple(mask.shape)}"
        )


def _topk_hits(
    scores: Tensor, ground_truth: Tensor, mask: Tensor | None, k: int, *, masked: bool = False
) -> Tensor:
    """``(B, min(k, I))`` bool: whether the r-th ranked unmasked item is relevant.

    ``masked=True`` says ``scores`` already hold ``-inf`` at ``mask``.
    """
    if mask is not None and not masked:
        scores = scores.masked_fill(mask, -math.inf)
    k = min(k, scores.size(1))
    top = torch.topk(scores, k, dim=1).indices
    hits = ground_truth.gather(1, top)
    if mask is not None:  # a masked item ranked in (fewer than k unmasked items) never counts
        hits &= ~mask.gather(1, top)
    return hits


def _check_k(k: int) -> None:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _nan_where_empty(values: Tensor, n_relevant: Tensor) -> Tensor:
    return torch.where(n_relevant > 0, values, torch.full_like(values, math.nan))


def _metrics_from_hits(hits: Tensor, n_relevant: Tensor, k: int) -> dict[str, Tensor]:
    """Per-user recall, precision, hit-rate and NDCG at ``k`` from ranked hits."""
    h = hits[:, :k].to(torch.float64)
    n_hit = h.sum(1)
    n = n_relevant.to(torch.float64)
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=h.device))
    dcg = (h * discounts[: h.size(1)]).sum(1)
    ideal = torch.cumsum(discounts, 0)
    idcg = ideal[(n.clamp(min=1, max=k) - 1).long()]
    out = {
        "recall": n_hit / n.clamp(min=1),
        "precision": n_hit / k,
        "hit_rate": (n_hit > 0).to(torch.float64),
        "ndcg": dcg / idcg,
    }
    return {name: _nan_where_empty(v, n_relevant) for name, v in out.items()}


def _per_user(
    metric: str, scores: Tensor, ground_truth: Tensor, k: int, mask: Tensor | None
) -> Tensor:
    _check_k(k)
    _check_matrix(scores, ground_truth, mask)
    relevant = ground_truth if mask is None else ground_truth & ~mask
    hits = _topk_hits(scores, ground_truth, mask, k)
    return _metrics_from_hits(hits, relevant.sum(1), k)[metric]


def recall_at_k(
    scores: Tensor, ground_truth: Tensor, k: int, *, mask: Tensor | None = None
) -> Tensor:
    """Per-user Recall@K: relevant items in the top ``k`` / number of relevant items.

    Args:
        scores: Scores of each user (row) for every item (column).
        ground_truth: Relevant (held-out) items.
        k: Cut-off.
        mask: Items removed from the ranking (seen in training); a masked item is never relevant.

    Returns:
        Recall per user; ``NaN`` for users with no relevant item (excluded from means).

    Shapes:
        scores: ``(B, I)`` float; ground_truth, mask: ``(B, I)`` bool. Returns ``(B,)`` float64.

    Raises:
        ValueError: On mismatched shapes / dtypes or ``k < 1``.
    """
    return _per_user("recall", scores, ground_truth, k, mask)


def precision_at_k(
    scores: Tensor, ground_truth: Tensor, k: int, *, mask: Tensor | None = None
) -> Tensor:
    """Per-user Precision@K: relevant items in the top ``k`` / ``k``.

    Args, Shapes and Raises: as :func:`recall_at_k`.

    Returns:
        Precision per user; ``NaN`` for users with no relevant item.
    """
    return _per_user("precision", scores, ground_truth, k, mask)


def hit_rate_at_k(
    scores: Tensor, ground_truth: Tensor, k: int, *, mask: Tensor | None = None
) -> Tensor:
    """Per-user Hit-rate@K: 1 if any relevant item is in the top ``k``, else 0.

    Args, Shapes and Raises: as :func:`recall_at_k`.

    Returns:
        Hit indicator per user; ``NaN`` for users with no relevant item.
    """
    return _per_user("hit_rate", scores, ground_truth, k, mask)


def ndcg_at_k(
    scores: Tensor, ground_truth: Tensor, k: int, *, mask: Tensor | None = None
) -> Tensor:
    """Per-user NDCG@K with binary relevance.

    ``DCG = sum_{r <= k} rel_r / log2(r + 1)``; the ideal DCG places ``min(k, n_relevant)``
    relevant items first (Jarvelin & Kekalainen, "Cumulated Gain-Based Evaluation of IR
    Techniques", ACM TOIS 2002; as computed in LightGCN's evaluation, arXiv:2002.02126).

    Args, Shapes and Raises: as :func:`recall_at_k`.

    Returns:
        NDCG per user in ``[0, 1]``; ``NaN`` for users with no relevant item.
    """
    return _per_user("ndcg", scores, ground_truth, k, mask)


# ------------------------------------------------------------------------------------------
# Score sources and per-user grouping
# ------------------------------------------------------------------------------------------
class _Scorer:
    """Uniform ``users -> (B, I)`` scoring over the accepted score sources."""

    def __init__(self, source: ScoreSource) -> None:
        self.num_users: int | None = getattr(source, "num_users", None)
        self.num_items: int | None = getattr(source, "num_items", None)
        self._emb: tuple[Tensor, Tensor] | None = None
        self.owns_output = False  # True when __call__ returns a fresh tensor we may modify
        if callable(getattr(source, "embeddings", None)):
            self.owns_output = True
            with torch.no_grad():
                self._emb = source.embeddings()
            self.device = self._emb[0].device
            self.num_items = self._emb[1].size(0)
            self._fn: Callable[[Tensor], Tensor] | None = None
        elif callable(getattr(source, "full_scores", None)):
            self._fn = source.full_scores
        elif callable(source):
            self._fn = source
        else:
            raise TypeError(
                f"expected a recommender with embeddings()/full_scores() or a callable users -> "
                f"(B, I) scores, got {type(source).__name__}"
            )
        if self._fn is not None:
            params = getattr(source, "parameters", None)
            first = next(iter(params()), None) if callable(params) else None
            self.device = first.device if first is not None else torch.device("cpu")

    @torch.no_grad()
    def __call__(self, users: Tensor) -> Tensor:
        users = users.to(self.device)
        if self._emb is not None:
            return self._emb[0][users] @ self._emb[1].t()
        scores = self._fn(users)  # type: ignore[misc]
        if scores.dim() != 2 or scores.size(0) != users.numel():
            raise ValueError(
                f"the score function returned shape {tuple(scores.shape)} for {users.numel()} "
                "users; it must return a (B, num_items) matrix"
            )
        if self.num_items is None:
            self.num_items = scores.size(1)
        elif scores.size(1) != self.num_items:
            raise ValueError(
                f"the score function returned {scores.size(1)} item columns, expected "
                f"{self.num_items}"
            )
        return scores


class _Grouped:
    """Edges grouped by the row of their user in a sorted array of users (CSR-like).

    ``rows``/``items``/``cols`` list the edges whose user is in ``users``, sorted by row;
    ``cols`` are the edges' column indices in the input tensor; ``bounds[r]:bounds[r+1]`` is the
    slice of row ``r``.
    """

    def __init__(self, edges: Tensor, users: np.ndarray) -> None:
        u = edges[0].cpu().numpy()
        size = max(int(u.max()) + 1 if u.size else 0, int(users[-1]) + 1 if users.size else 0)
        row_of = np.full(size, -1, dtype=np.int64)
        row_of[users] = np.arange(len(users))
        rows = row_of[u]
        cols = np.flatnonzero(rows >= 0)
        cols = cols[np.argsort(rows[cols], kind="stable")]
        self.cols = torch.from_numpy(cols)
        self.rows = torch.from_numpy(rows[cols])
        self.items = edges[1].cpu()[self.cols]
        self.bounds = np.searchsorted(rows[cols], np.arange(len(users) + 1))

    def slice(self, start: int, stop: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(rows - start, items, cols)`` of the edges of rows ``start..stop-1``."""
        lo, hi = self.bounds[start], self.bounds[stop]
        return self.rows[lo:hi] - start, self.items[lo:hi], self.cols[lo:hi]

    def dense(self, start: int, stop: int, num_items: int, device: torch.device) -> Tensor:
        """Bool ``(stop - start, I)`` matrix of the items of rows ``start..stop-1``."""
        rows, items, _ = self.slice(start, stop)
        out = torch.zeros(stop - start, num_items, dtype=torch.bool, device=device)
        out[rows.to(device), items.to(device)] = True
        return out


def _validate(edges: Tensor | None, scorer: _Scorer, name: str) -> None:
    if edges is None:
        return
    try:
        check_edges(edges, scorer.num_users, scorer.num_items)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def _user_batches(
    scorer: _Scorer,
    eval_edges: Tensor,
    mask_edges: Tensor | None,
    batch_size: int,
) -> Iterator[tuple[int, int, Tensor, Tensor, Tensor | None, _Grouped]]:
    """Yield ``(start, stop, scores, ground_truth, mask, grouped_eval)`` per batch of users.

    Only users with at least one eval edge are scored, in increasing id order.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _validate(eval_edges, scorer, "eval_edges")
    _validate(mask_edges, scorer, "mask_edges")
    users = np.unique(eval_edges[0].cpu().numpy())
    gt = _Grouped(eval_edges, users)
    seen = _Grouped(mask_edges, users) if mask_edges is not None else None
    users_t = torch.from_numpy(users)
    for start in range(0, len(users), batch_size):
        stop = min(start + batch_size, len(users))
        item_bound_known = scorer.num_items is not None
        scores = scorer(users_t[start:stop])
        if not item_bound_known:  # a plain score function: item ids checkable only now
            _validate(eval_edges, scorer, "eval_edges")
            _validate(mask_edges, scorer, "mask_edges")
        num_items, device = scores.size(1), scores.device
        truth = gt.dense(start, stop, num_items, device)
        mask = seen.dense(start, stop, num_items, device) if seen is not None else None
        yield start, stop, scores, truth, mask, gt


def rank_metrics(
    model: ScoreSource,
    eval_edges: Tensor,
    mask_edges: Tensor | None = None,
    *,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Full-ranking Recall / NDCG / Precision / Hit-rate at each K, averaged over users.

    LightGCN's protocol, arXiv:2002.02126, Sec. 4.1.1 (all-item ranking, training items removed).

    Args:
        model: Score source (see the module docstring); evaluated under ``torch.no_grad``.
        eval_edges: Held-out (user, item) pairs: the ground truth.
        mask_edges: Pairs removed from each user's ranking: the training (retained) items, plus
            validation items when evaluating test. Pairs of users without eval edges are ignored.
        ks: Cut-offs.
        batch_size: Users per score matrix.

    Returns:
        ``{"recall@K", "ndcg@K", "precision@K", "hit_rate@K"}`` for every K, averaged over the
        users having at least one eval pair that is not masked; ``NaN`` values if there is none.

    Shapes:
        eval_edges, mask_edges: ``(2, E)`` int64.

    Raises:
        ValueError: On an unknown user / item id, ``k < 1`` or ``batch_size < 1``.
        TypeError: If ``model`` is not a score source.
    """
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks is empty; pass cut-offs such as (10, 20)")
    for k in ks:
        _check_k(k)
    scorer = _Scorer(model)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision", "hit_rate")}
    count = 0
    _validate(eval_edges, scorer, "eval_edges")
    if eval_edges.size(1):  # a duplicate pair is one relevant item
        e = eval_edges.detach().cpu().long().numpy()
        width = int(e[1].max()) + 1
        keys = np.unique(e[0] * width + e[1])
        eval_edges = torch.from_numpy(np.stack([keys // width, keys % width]))
    batches = _user_batches(scorer, eval_edges, mask_edges, batch_size)
    for start, stop, scores, truth, mask, grouped in batches:
        rows, items, _ = grouped.slice(start, stop)
        rows = rows.to(scores.device)
        if mask is not None:  # masked eval pairs are not relevant
            rows = rows[~mask[rows, items.to(scores.device)]]
            if scorer.owns_output:
                scores.masked_fill_(mask, -math.inf)
            else:
                scores = scores.masked_fill(mask, -math.inf)
        n_rel = torch.bincount(rows, minlength=stop - start)
        hits = _topk_hits(scores, truth, mask, ks[-1], masked=True)
        for k in ks:
            for name, values in _metrics_from_hits(hits, n_rel, k).items():
                sums[f"{name}@{k}"] += float(torch.nansum(values))
        count += int((n_rel > 0).sum())
    return {key: (value / count if count else math.nan) for key, value in sums.items()}


# ------------------------------------------------------------------------------------------
# Forget-set metrics
# ------------------------------------------------------------------------------------------
def forgotten_pair_ranks(
    model: ScoreSource,
    forget_edges: Tensor,
    mask_edges: Tensor | None = None,
    *,
    batch_size: int = 1024,
    return_scores: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Rank of each forgotten item in its user's full ranking, retained items masked.

    ``rank(u, i) = 1 + |{j : j not masked for u, s_uj > s_ui}|`` (1 = top; ties resolved in the
    item's favour). Other forgotten items of the same user stay in the ranking. After good
    unlearning a forgotten item should rank like it does under the retrained model (typically
    like a never-seen item), not near the top.

    Args:
        model: Score source (see the module docstring).
        forget_edges: Forgotten (user, item) pairs.
        mask_edges: Items removed from each user's ranking (the retained training items).
        batch_size: Users per score matrix, and pairs per comparison chunk.
        return_scores: Also return the score of each forgotten pair.

    Returns:
        Ranks (and scores), aligned with ``forget_edges``'s columns.

    Shapes:
        forget_edges: ``(2, F)`` int64. Returns ``(F,)`` int64 (and ``(F,)`` float).

    Raises:
        ValueError: On an unknown user / item id or ``batch_size < 1``.
        TypeError: If ``model`` is not a score source.
    """
    scorer = _Scorer(model)
    _validate(forget_edges, scorer, "forget_edges")
    num_pairs = forget_edges.size(1)
    ranks = torch.zeros(num_pairs, dtype=torch.long)
    pair_scores = torch.zeros(num_pairs, dtype=torch.float64)
    batches = _user_batches(scorer, forget_edges, mask_edges, batch_size)
    for start, stop, scores, _, mask, grouped in batches:
        rows, items, cols = grouped.slice(start, stop)
        ranked = scores if mask is None else scores.masked_fill(mask, -math.inf)
        rows, items = rows.to(scores.device), items.to(scores.device)
        # Pair chunks of batch_size keep the (pairs, I) comparison matrix bounded.
        for lo in range(0, rows.numel(), batch_size):
            r, i = rows[lo : lo + batch_size], items[lo : lo + batch_size]
            own = scores[r, i]
            greater = (ranked[r] > own[:, None]).sum(1)
            idx = cols[lo : lo + batch_size]
            ranks[idx] = 1 + greater.cpu()
            pair_scores[idx] = own.double().cpu()
    return (ranks, pair_scores) if return_scores else ranks


def forget_metrics(
    model: ScoreSource,
    forget_edges: Tensor,
    retain_edges: Tensor | None = None,
    *,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Forget-set ranking metrics: Recall/NDCG@K of forgotten pairs, their mean rank and score.

    Recall@K here treats the forgotten pairs as the ground truth of a full ranking with the
    retained items masked (lower after unlearning = forgotten; compare with the retrained model).

    Args:
        model: Score source (see the module docstring).
        forget_edges: Forgotten (user, item) pairs ``D_f``.
        retain_edges: Retained training pairs ``D_r`` (masked).
        ks: Cut-offs.
        batch_size: Users (pairs) per score matrix.

    Returns:
        ``{"recall@K", "ndcg@K", "mean_rank", "mean_score"}``; ranks are 1-based, means are over
        pairs.

    Shapes:
        forget_edges, retain_edges: ``(2, E)`` int64.

    Raises:
        ValueError: On an empty forget set or an unknown id.
        TypeError: If ``model`` is not a score source.
    """
    if forget_edges.dim() != 2 or forget_edges.size(-1) == 0:
        raise ValueError("forget_edges is empty; pass the (2, F) forgotten pairs")
    full = rank_metrics(model, forget_edges, retain_edges, ks=ks, batch_size=batch_size)
    out = {k: v for k, v in full.items() if k.startswith(("recall@", "ndcg@"))}
    ranks, scores = forgotten_pair_ranks(
        model, forget_edges, retain_edges, batch_size=batch_size, return_scores=True
    )
    out["mean_rank"] = float(ranks.double().mean())
    out["mean_score"] = float(scores.double().mean())
    return out


def membership_auc(
    scores_forgotten_pairs: Tensor | np.ndarray, scores_never_interacted_pairs: Tensor | np.ndarray
) -> float:
    """ROC-AUC of separating forgotten pairs (positives) from never-interacted pairs by score.

    A membership-inference view of interaction unlearning: 0.5 means the model scores forgotten
    interactions like pairs it never saw (the retrained model's behaviour); near 1 means they are
    still recognisable. Computed with ``sklearn.metrics.roc_auc_score`` (ties count one half).

    Args:
        scores_forgotten_pairs: Model scores of the forgotten (user, item) pairs.
        scores_never_interacted_pairs: Model scores of pairs absent from all splits (e.g. drawn
            with :func:`unlearnkit.recsys.bpr.sample_negatives` against all edges).

    Returns:
        AUC in ``[0, 1]``.

    Shapes:
        Both 1-D float, any lengths ``>= 1``.

    Raises:
        ValueError: If either set is empty or contains NaN.
    """
    from sklearn.metrics import roc_auc_score

    pos = np.asarray(torch.as_tensor(scores_forgotten_pairs).detach().cpu(), dtype=np.float64)
    neg = np.asarray(
        torch.as_tensor(scores_never_interacted_pairs).detach().cpu(), dtype=np.float64
    )
    pos, neg = pos.reshape(-1), neg.reshape(-1)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("membership_auc needs at least one forgotten and one never-seen score")
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise ValueError("membership_auc got NaN scores; check the model's outputs")
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    return float(roc_auc_score(labels, np.concatenate([pos, neg])))


def score_divergence(scores_a: Tensor, scores_b: Tensor) -> dict[str, float]:
    """Mean KL and JS divergence between two models' per-user softmax distributions over items.

    Each row (user) is turned into a distribution over all items with a softmax; the KL(a || b)
    and Jensen-Shannon divergences (nats) are averaged over users, via
    :func:`unlearnkit.evaluation.metrics.kl_divergence` / ``js_divergence`` (float64). Used to
    compare an unlearned recommender with the retrained one on the forget users ("KL/JS to
    retrained", DESIGN.md Sec. 4).

    Args:
        scores_a: Full score matrix of the first model (e.g. unlearned).
        scores_b: Same users and items from the second model (e.g. retrained).

    Returns:
        ``{"kl": ..., "js": ...}``; JS lies in ``[0, ln 2]``.

    Shapes:
        Both ``(B, I)`` float.

    Raises:
        ValueError: If the shapes differ or the matrices are empty / not 2-D.
    """
    return {
        "kl": kl_divergence(scores_a.detach(), scores_b.detach()),
        "js": js_divergence(scores_a.detach(), scores_b.detach()),
    }
