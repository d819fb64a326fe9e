"""Bayesian Personalized Ranking (BPR) training pieces for dot-product recommenders.

Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009,
arXiv:1205.2618, Sec. 4 (BPR-Opt) and the LightGCN variant with L2 on the batch's layer-0
embeddings (He et al., "LightGCN", SIGIR 2020, arXiv:2002.02126, Sec. 3.2, model training).

The per-batch loss is :func:`bpr_batch_loss`; a LightningModule's ``training_step`` can call it
directly with a batch from :func:`bpr_epoch_batches`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from unlearnkit.datasets.interactions import (  # noqa: F401  (re-exported: the sampler's old home)
    _sample_unseen,
    _seen_keys,
    _unique_keys,
    check_edges,
    sample_negatives,
)

if TYPE_CHECKING:
    from unlearnkit.datasets.interactions import InteractionData
    from unlearnkit.recsys.models import DotProductRecommender

__all__ = [
    "bpr_batch_loss",
    "bpr_epoch_batches",
    "bpr_loss",
    "bpr_train_epoch",
    "sample_negatives",
    "seen_item_csr",
    "train_bpr",
]


def bpr_loss(
    pos_scores: Tensor,
    neg_scores: Tensor,
    *,
    reg_embeddings: Sequence[Tensor] | None = None,
    reg_weight: float = 1e-4,
) -> Tensor:
    """Mean BPR loss ``mean softplus(neg - pos) = -mean log sigma(pos - neg)`` plus optional L2.

    BPR, UAI 2009, arXiv:1205.2618, Sec. 4; L2 term as LightGCN, arXiv:2002.02126, Sec. 3.2:
    ``reg_weight * sum_t ||E_t||_F^2 / B`` over the batch's layer-0 embeddings ``E_t`` (user,
    positive item, negative item rows), divided by the batch size ``B``.

    Args:
        pos_scores: Scores of the observed (user, positive item) pairs.
        neg_scores: Scores of the sampled (user, negative item) pairs, aligned with ``pos_scores``.
        reg_embeddings: Layer-0 embedding rows of the batch to regularize; ``None`` for no L2.
        reg_weight: L2 strength ``lambda``.

    Returns:
        Scalar loss.

    Shapes:
        pos_scores, neg_scores: ``(B,)`` float. reg_embeddings: tensors ``(B, D)``.

    Raises:
        ValueError: If the score shapes differ or the batch is empty.
    """
    if pos_scores.shape != neg_scores.shape:
        raise ValueError(
            f"pos_scores and neg_scores must have the same shape, got {tuple(pos_scores.shape)} "
            f"and {tuple(neg_scores.shape)}"
        )
    if pos_scores.numel() == 0:
        raise ValueError("empty BPR batch: pass at least one (user, pos, neg) triple")
    loss = F.softplus(neg_scores - pos_scores).mean()
    if reg_embeddings is not None and reg_weight != 0:
        reg = sum(e.pow(2).sum() for e in reg_embeddings)
        loss = loss + reg_weight * reg / pos_scores.size(0)
    return loss


def bpr_batch_loss(
    model: DotProductRecommender,
    users: Tensor,
    pos: Tensor,
    neg: Tensor,
    *,
    reg_weight: float = 1e-4,
) -> Tensor:
    """BPR loss of one (users, positive items, negative items) batch for a recommender.

    Propagates once (``model.embeddings()``), scores both pairs, and regularizes the batch's
    layer-0 embeddings (``model.ego_embeddings()``), as LightGCN, arXiv:2002.02126, Sec. 3.2.

    Args:
        model: A recommender with ``embeddings()`` and ``ego_embeddings()`` (LightGCN, MF).
        users: User ids.
        pos: Their observed items.
        neg: Sampled non-interacted items.
        reg_weight: L2 strength ``lambda`` (0 disables it).

    Returns:
        Scalar loss, differentiable w.r.t. the model's parameters.

    Shapes:
        users, pos, neg: ``(B,)`` int64.

    Raises:
        ValueError: If the batch tensors differ in shape or are empty.
        RuntimeError: If a graph model has no graph (call ``set_graph`` first).
    """
    if not (users.shape == pos.shape == neg.shape):
        raise ValueError(
            f"users, pos and neg must have the same shape, got {tuple(users.shape)}, "
            f"{tuple(pos.shape)}, {tuple(neg.shape)}"
        )
    user_emb, item_emb = model.embeddings()
    u = user_emb[users]
    pos_scores = (u * item_emb[pos]).sum(-1)
    neg_scores = (u * item_emb[neg]).sum(-1)
    reg = None
    if reg_weight != 0:
        user0, item0 = model.ego_embeddings()
        reg = (user0[users], item0[pos], item0[neg])
    return bpr_loss(pos_scores, neg_scores, reg_embeddings=reg, reg_weight=reg_weight)


def seen_item_csr(edges: Tensor, num_users: int, num_items: int) -> Tensor:
    """Binary user x item CSR matrix of interacted items (sorted columns, duplicates merged).

    Args:
        edges: Interaction pairs.
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.

    Returns:
        Sparse CSR matrix with ones at interacted pairs.

    Shapes:
        edges: ``(2, E)`` int64. Returns ``(U, I)`` sparse CSR float32.

    Raises:
        TypeError: If ``edges`` is not an integer tensor.
        ValueError: If ``edges`` has the wrong shape or out-of-range ids.
    """
    check_edges(edges, num_users, num_items)
    keys = _unique_keys(edges[0], edges[1], num_items)
    rows, cols = keys // num_items, keys % num_items
    crow = torch.zeros(num_users + 1, dtype=torch.long, device=edges.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=num_users), 0)
    values = torch.ones(keys.numel(), device=edges.device)
    with warnings.catch_warnings():  # torch's "Sparse CSR tensor support is in beta"
        warnings.filterwarnings("ignore", message=r"Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow, cols, values, (num_users, num_items), check_invariants=False
        )


def bpr_epoch_batches(
    train_edges: Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
    *,
    num_items: int,
    seen: Tensor | None = None,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One BPR epoch: every training edge once, shuffled, with one sampled negative each.

    As LightGCN's reference training (one (u, i, j) triple per observed interaction per epoch,
    uniform negatives).

    Args:
        train_edges: Observed interactions (the positives).
        batch_size: Triples per batch (the last batch may be smaller).
        generator: Random generator for the shuffle and the negatives.
        num_items: Number of items ``I``.
        seen: Interactions the negatives must avoid (default: ``train_edges``); pass the full
            train set here when ``train_edges`` is a subset.

    Yields:
        ``(users, pos, neg)`` int64 tensors.

    Shapes:
        train_edges: ``(2, E)`` int64. Each yielded tensor: ``(b,)`` with ``b <= batch_size``.

    Raises:
        ValueError: If ``batch_size < 1`` or the edges are malformed.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check_edges(train_edges, None, num_items)
    keys, counts = _seen_keys(train_edges if seen is None else seen, num_items)
    device = train_edges.device
    perm = torch.randperm(train_edges.size(1), generator=generator, device=device)
    for start in range(0, perm.numel(), batch_size):
        idx = perm[start : start + batch_size]
        users, pos = train_edges[0, idx].long(), train_edges[1, idx].long()
        yield users, pos, _sample_unseen(users, keys, counts, num_items, generator)


def bpr_train_epoch(
    model: DotProductRecommender,
    optimizer: torch.optim.Optimizer,
    train_edges: Tensor,
    *,
    batch_size: int = 2048,
    generator: torch.Generator | None = None,
    reg_weight: float = 1e-4,
    seen: Tensor | None = None,
) -> float:
    """Run one BPR epoch over ``train_edges`` on the model's current graph.

    Args:
        model: Recommender (its graph must already be set for LightGCN).
        optimizer: Optimizer over the model's parameters.
        train_edges: Positives; negatives avoid them.
        batch_size: Triples per step.
        generator: Random generator (shuffle and negatives).
        reg_weight: L2 strength on layer-0 embeddings.
        seen: Interactions the negatives must avoid (default: ``train_edges``), as in
            :func:`bpr_epoch_batches`.

    Returns:
        Mean batch loss of the epoch.

    Shapes:
        train_edges: ``(2, E)`` int64.

    Raises:
        ValueError: On malformed edges or ``batch_size < 1``.
    """
    model.train()
    total, batches = 0.0, 0
    for users, pos, neg in bpr_epoch_batches(
        train_edges, batch_size, generator, num_items=model.num_items, seen=seen
    ):
        optimizer.zero_grad(set_to_none=True)
        loss = bpr_batch_loss(model, users, pos, neg, reg_weight=reg_weight)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        batches += 1
    return total / max(batches, 1)


def train_bpr(
    model: DotProductRecommender,
    data: InteractionData | Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 2048,
    seed: int = 0,
    reg_weight: float = 1e-4,
) -> DotProductRecommender:
    """Train a recommender with BPR and Adam (LightGCN's standard schedule) in place.

    Adam with learning rate 1e-3 and L2 1e-4 on layer-0 embeddings, as in LightGCN's experiments
    (arXiv:2002.02126, Sec. 4). The model's graph is set to the training edges first.

    Args:
        model: LightGCN or MF recommender.
        data: :class:`~unlearnkit.datasets.interactions.InteractionData` (its ``train_edges`` are
            used) or a ``(2, E)`` edge tensor (e.g. the retain set when retraining).
        epochs: Number of epochs (0 only sets the graph).
        lr: Adam learning rate.
        batch_size: Triples per step.
        seed: Seeds the shuffle and negative sampling (initialization is the caller's).
        reg_weight: L2 strength on layer-0 embeddings.

    Returns:
        The same model, trained.

    Shapes:
        data (tensor form): ``(2, E)`` int64.

    Raises:
        ValueError: If ``epochs < 0`` or the edges are malformed / out of range.
    """
    if int(epochs) < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    edges = data if isinstance(data, Tensor) else data.train_edges
    device = next(model.parameters()).device
    edges = edges.to(device)
    model.set_graph(edges)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    for _ in range(int(epochs)):
        bpr_train_epoch(
            model,
            optimizer,
            edges,
            batch_size=batch_size,
            generator=generator,
            reg_weight=reg_weight,
        )
    return model
