"""Full-ranking top-K evaluation of recommenders, and forget-set metrics for recommendation unlearning.

Protocol (He et al., "LightGCN", SIGIR 2020, arXiv:2002.02126, Sec. 4.1.1; full ranking rather
than sampled negatives, as argued by Krichene & Rendle, "On Sampled Metrics for Item
Recommendation", KDD 2020): every user is ranked against ALL items; items the user interacted with in the mask set (training, plus
validation when evaluating test) are removed from the ranking; Recall@K, Precision@K, Hit-rate@K
and NDCG@K are averaged over users that have at least one evaluation item (users without any are
excluded, not counted as zero).

Ties are resolved by expectation, never by item id: every metric is its expected value when the
items of each group of equal scores are put in a uniformly random order (McSherry & Najork,
"Computing Information Retrieval Performance Measures Efficiently in the Presence of Tied
Scores", ECIR 2008). A relevant item with ``a`` unmasked items scoring higher and ``t`` scoring
the same (itself included) lies uniformly in positions ``a+1 .. a+t``, so

- ``P(in top K) = clip(K - a, 0, t) / t`` (Recall@K and Precision@K are sums of these),
- ``E[gain@K] = (sum_{p=a+1}^{min(a+t, K)} 1 / log2(p + 1)) / t`` (DCG@K is their sum),
- Hit-rate@K is 1 if some relevant item has ``a + t <= K``; otherwise the tie group straddling
  the cut-off (``a < K < a + t``), holding ``r`` relevant items, puts ``K - a`` of its ``t``
  items in the top K and ``P(hit) = 1 - C(t - r, K - a) / C(t, K - a)``.

Without ties these are the usual values. A scorer giving all 100 items one score has
Recall@10 = 0.1 for a single relevant item, whatever its id.

All metrics are vectorised over a batch of users: one ``(B, I)`` score matrix, one ``topk`` for
the items that can reach the top K, and one row scan per such relevant item for its tie group.

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


def _check_k(k: int) -> None:
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def _nan_where_empty(values: Tensor, n_relevant: Tensor) -> Tensor:
    return torch.where(n_relevant > 0, values, torch.full_like(values, math.nan))


def _tie_groups(
    scores: Tensor,
    rows: Tensor,
    items: Tensor,
    mask: Tensor | None,
    k_max: int,
    chunk: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tie group of each relevant pair that may reach the top ``k_max``.

    For a pair ``(r, i)`` with score ``s = scores[r, i]``: ``above`` = unmasked items of row ``r``
    scoring ``> s``, ``tied`` = unmasked items scoring ``== s`` (``i`` included), so ``i`` lies
    uniformly in positions ``above + 1 .. above + tied``. Only pairs with ``above < k_max`` can
    reach the top ``k_max``: for them every higher item is among the ``k_max`` largest scores,
    so ``above`` is counted on one ``topk``, and so is ``tied`` unless ``s`` equals the
    ``k_max``-th score (then the row is scanned, ``chunk`` pairs at a time).

    ``scores`` already hold ``-inf`` at ``mask``. Returns ``(index, above, tied)``: the positions
    in ``rows`` of those pairs, and their counts (int64).
    """
    k_max = min(k_max, scores.size(1))
    own = scores[rows, items]
    if torch.isnan(own).any():
        raise ValueError("scores contain NaN for a relevant item; check the model's outputs")
    bottom = torch.topk(scores, k_max, dim=1).values  # (B, k_max), descending
    index = torch.nonzero(own >= bottom[rows, -1]).flatten()
    rows_c, own_c = rows[index], own[index]
    above = (bottom[rows_c] > own_c[:, None]).sum(1)
    # Above the k_max-th score, the whole tie group is among the top-k values; at it, the group
    # may extend below the cut: scan those rows.
    tied = (bottom[rows_c] == own_c[:, None]).sum(1)
    at_cut = torch.nonzero(own_c == bottom[rows_c, -1]).flatten()
    for lo in range(0, at_cut.numel(), chunk):
        sel = at_cut[lo : lo + chunk]
        r = rows_c[sel]
        equal = scores[r] == own_c[sel, None]
        if mask is not None:  # masked items sit at -inf: they never tie with a relevant item
            equal &= ~mask[r]
        tied[sel] = equal.sum(1)
    return index, above, tied


def _expected_metrics(
    scores: Tensor,
    rows: Tensor,
    items: Tensor,
    mask: Tensor | None,
    n_relevant: Tensor,
    ks: Sequence[int],
    *,
    chunk: int = 1024,
) -> dict[int, dict[str, Tensor]]:
    """Per-user tie-aware recall, precision, hit-rate and NDCG at each ``k`` (see module doc).

    ``scores`` hold ``-inf`` at ``mask``; ``(rows, items)`` are the relevant, unmasked pairs
    (unique). Returns ``{k: {"recall", "precision", "hit_rate", "ndcg"}}``, each ``(B,)`` float64
    with ``NaN`` for rows without relevant items.
    """
    num_rows = scores.size(0)
    device = scores.device
    index, above, tied = _tie_groups(scores, rows, items, mask, max(ks), chunk)
    rows_c = rows[index]
    a, t = above.to(torch.float64), tied.to(torch.float64)
    n = n_relevant.to(device=device, dtype=torch.float64)
    k_top = max(ks)
    discounts = 1.0 / torch.log2(torch.arange(2, k_top + 2, dtype=torch.float64, device=device))
    cum = torch.cat([discounts.new_zeros(1), torch.cumsum(discounts, 0)])  # cum[m] = sum_{p<=m}
    zeros = torch.zeros(num_rows, dtype=torch.float64, device=device)
    out: dict[int, dict[str, Tensor]] = {}
    for k in ks:
        # P(position <= k) for a uniform position in [a + 1, a + t]
        inside = (k - a).clamp(min=0.0).minimum(t) / t
        hits = zeros.index_add(0, rows_c, inside)
        # E[1 / log2(position + 1)] restricted to positions <= k
        hi = (above + tied).clamp(max=k)
        lo = above.clamp(max=k)
        dcg = zeros.index_add(0, rows_c, (cum[hi] - cum[lo]) / t)
        idcg = cum[n.clamp(min=1, max=k).long()]
        # Hit-rate: 1 if a relevant item is surely in the top k; else the (unique) tie group
        # straddling the cut-off holds r relevant of t items, k - a of which enter the top k:
        # P(none enters) = C(t - r, k - a) / C(t, k - a) (hypergeometric).
        sure = torch.zeros(num_rows, dtype=torch.bool, device=device)
        sure[rows_c[(above + tied) <= k]] = True
        cross = (above < k) & (above + tied > k)
        r_cross = zeros.index_add(0, rows_c[cross], torch.ones_like(a[cross]))
        t_cross = zeros.clone()
        t_cross[rows_c[cross]] = t[cross]
        m_cross = zeros.clone()
        m_cross[rows_c[cross]] = k - a[cross]
        free = t_cross - r_cross
        lgamma = torch.lgamma
        log_none = (
            lgamma(free.clamp(min=0) + 1)
            - lgamma((free - m_cross).clamp(min=0) + 1)
            - lgamma(t_cross + 1)
            + lgamma(t_cross - m_cross + 1)
        )
        p_none = torch.where(free >= m_cross, torch.exp(log_none), zeros)
        hit = torch.where(sure, 1.0, torch.where(r_cross > 0, 1.0 - p_none, 0.0))
        values = {
            "recall": hits / n.clamp(min=1),
            "precision": hits / k,
            "hit_rate": hit,
            "ndcg": dcg / idcg,
        }
        out[k] = {name: _nan_where_empty(v, n) for name, v in values.items()}
    return out


def _per_user(
    metric: str, scores: Tensor, ground_truth: Tensor, k: int, mask: Tensor | None
) -> Tensor:
    _check_k(k)
    _check_matrix(scores, ground_truth, mask)
    relevant = ground_truth if mask is None else ground_truth & ~mask
    if mask is not None:
        scores = scores.masked_fill(mask, -math.inf)
    rows, items = torch.nonzero(relevant, as_tuple=True)
    return _expected_metrics(scores, rows, items, mask, relevant.sum(1), [int(k)])[int(k)][metric]


def recall_at_k(
    scores: Tensor, ground_truth: Tensor, k: int, *, mask: Tensor | None = None
) -> Tensor:
    """Per-user Recall@K: relevant items in the top ``k`` / number of relevant items.

    Tie-aware: the expected value over uniformly random orders of tied items (McSherry & Najork,
    ECIR 2008; see the module docstring), as are :func:`precision_at_k`, :func:`hit_rate_at_k`
    and :func:`ndcg_at_k`.

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
        ValueError: On mismatched shapes / dtypes, ``k < 1`` or a NaN score of a relevant item.
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
    """Per-user NDCG@K with binary relevance, tie-aware (expected DCG over random tie orders).

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
) -> Iterator[tuple[int, int, Tensor, Tensor | None, _Grouped]]:
    """Yield ``(start, stop, scores, mask, grouped_eval)`` per batch of users.

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
        mask = seen.dense(start, stop, num_items, device) if seen is not None else None
        yield start, stop, scores, mask, gt


def rank_metrics(
    model: ScoreSource,
    eval_edges: Tensor,
    mask_edges: Tensor | None = None,
    *,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
) -> dict[str, float]:
    """Full-ranking Recall / NDCG / Precision / Hit-rate at each K, averaged over users.

    LightGCN's protocol, arXiv:2002.02126, Sec. 4.1.1 (all-item ranking, training items removed);
    tied scores count by their expected value over random tie orders (McSherry & Najork,
    ECIR 2008; see the module docstring), so no item id is favoured.

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
        ValueError: On an unknown user / item id, ``k < 1``, ``batch_size < 1`` or a NaN score
            of a relevant item.
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
    for start, stop, scores, mask, grouped in batches:
        rows, items, _ = grouped.slice(start, stop)
        rows, items = rows.to(scores.device), items.to(scores.device)
        if mask is not None:  # masked eval pairs are not relevant
            keep = ~mask[rows, items]
            rows, items = rows[keep], items[keep]
            if scorer.owns_output:
                scores.masked_fill_(mask, -math.inf)
            else:
                scores = scores.masked_fill(mask, -math.inf)
        n_rel = torch.bincount(rows, minlength=stop - start)
        per_k = _expected_metrics(scores, rows, items, mask, n_rel, ks, chunk=batch_size)
        for k, metrics in per_k.items():
            for name, values in metrics.items():
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
    """Expected rank of each forgotten item in its user's full ranking, retained items masked.

    ``rank(u, i) = 1 + |{j : s_uj > s_ui}| + |{j != i : s_uj = s_ui}| / 2`` over the unmasked
    items ``j``: the mean position of ``i`` when tied items are ordered uniformly at random
    (McSherry & Najork, "Computing Information Retrieval Performance Measures Efficiently in the
    Presence of Tied Scores", ECIR 2008), so the rank never depends on item ids (1 = top). Other
    forgotten items of the same user stay in the ranking. After good unlearning a forgotten item
    should rank like it does under the retrained model (typically like a never-seen item), not
    near the top.

    Args:
        model: Score source (see the module docstring).
        forget_edges: Forgotten (user, item) pairs.
        mask_edges: Items removed from each user's ranking (the retained training items).
        batch_size: Users per score matrix, and pairs per comparison chunk.
        return_scores: Also return the score of each forgotten pair.

    Returns:
        Expected ranks (and scores), aligned with ``forget_edges``'s columns; integers when no
        item ties with the forgotten one, halves possible otherwise.

    Shapes:
        forget_edges: ``(2, F)`` int64. Returns ``(F,)`` float64 (and ``(F,)`` float64).

    Raises:
        ValueError: On an unknown user / item id or ``batch_size < 1``.
        TypeError: If ``model`` is not a score source.
    """
    scorer = _Scorer(model)
    _validate(forget_edges, scorer, "forget_edges")
    num_pairs = forget_edges.size(1)
    ranks = torch.zeros(num_pairs, dtype=torch.float64)
    pair_scores = torch.zeros(num_pairs, dtype=torch.float64)
    batches = _user_batches(scorer, forget_edges, mask_edges, batch_size)
    for start, stop, scores, mask, grouped in batches:
        rows, items, cols = grouped.slice(start, stop)
        rows, items = rows.to(scores.device), items.to(scores.device)
        # Pair chunks of batch_size keep the (pairs, I) comparison matrix bounded.
        for lo in range(0, rows.numel(), batch_size):
            r, i = rows[lo : lo + batch_size], items[lo : lo + batch_size]
            row = scores[r]
            own = row.gather(1, i[:, None])
            greater, equal = row > own, row == own
            if mask is not None:
                greater &= ~mask[r]
                equal &= ~mask[r]
            others_tied = equal.sum(1) - equal.gather(1, i[:, None]).squeeze(1).long()
            idx = cols[lo : lo + batch_size]
            ranks[idx] = (1.0 + greater.sum(1) + 0.5 * others_tied).double().cpu()
            pair_scores[idx] = own.squeeze(1).double().cpu()
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
