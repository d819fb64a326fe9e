"""User-item interaction graphs: normalized bipartite adjacency, edge removal, propagation.

The graph convolution of LightGCN propagates embeddings with the symmetric-normalized adjacency
of the user-item bipartite graph (He et al., "LightGCN: Simplifying and Powering Graph Convolution
Network for Recommendation", SIGIR 2020, arXiv:2002.02126, Sec. 3.1, light graph convolution and
its matrix form):

    A = [[0, R], [R^T, 0]],    Â = D^{-1/2} A D^{-1/2},

with ``R`` the (users x items) interaction matrix and ``D`` the node degrees. Nodes are ordered
users first (ids ``0..U-1``), then items (ids ``U..U+I-1``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from unlearnkit.datasets.interactions import check_edges

__all__ = [
    "bipartite_adjacency",
    "bipartite_edge_index",
    "remove_edges",
    "symmetric_csr_matmul",
    "symmetric_spmm",
]


def _unique_pairs(edges: Tensor) -> np.ndarray:
    """Sorted, de-duplicated (user, item) pairs as a ``(2, E')`` int64 array (NumPy: fast and
    independent of torch's intra-op thread pool for these one-off index builds)."""
    pairs = edges.detach().cpu().long().numpy()
    return np.unique(pairs, axis=1) if pairs.shape[1] else pairs


def bipartite_edge_index(edges: Tensor, num_users: int, num_items: int) -> Tensor:
    """Undirected edge index of the user-item bipartite graph, both directions, items offset by U.

    Args:
        edges: Interaction pairs (duplicates are merged).
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.

    Returns:
        ``edge_index`` in PyG's (source, target) convention containing ``u -> U+i`` and
        ``U+i -> u`` for every interaction ``(u, i)``.

    Shapes:
        edges: ``(2, E)`` int64. Returns ``(2, 2E')`` int64 with ``E'`` unique pairs.

    Raises:
        TypeError: If ``edges`` is not an integer tensor.
        ValueError: If ``edges`` has the wrong shape or out-of-range ids.
    """
    check_edges(edges, num_users, num_items)
    pairs = _unique_pairs(edges)
    u, i = pairs[0], pairs[1] + num_users
    both = np.concatenate([np.stack([u, i]), np.stack([i, u])], axis=1)
    return torch.from_numpy(np.ascontiguousarray(both)).to(edges.device)


def bipartite_adjacency(
    edges: Tensor, num_users: int, num_items: int, *, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Symmetric-normalized adjacency ``D^-1/2 A D^-1/2`` of the user-item bipartite graph.

    LightGCN, SIGIR 2020, arXiv:2002.02126, Sec. 3.1 (matrix form). Nodes with no edge (a user whose
    interactions were all forgotten) have degree 0; their rows and columns are all zero instead of
    NaN, so their propagated embedding is zero at every layer > 0.

    Args:
        edges: Interaction pairs (duplicates are merged, each pair counts once).
        num_users: Number of users ``U``.
        num_items: Number of items ``I``.
        dtype: Floating dtype of the values.

    Returns:
        Sparse CSR tensor ``Â`` with sorted column indices; ``Â[u, U+i] = Â[U+i, u] =
        1/sqrt(deg(u) deg(i))``.

    Shapes:
        edges: ``(2, E)`` int64. Returns ``(N, N)`` sparse CSR with ``N = U + I``.

    Raises:
        TypeError: If ``edges`` is not an integer tensor.
        ValueError: If ``edges`` has the wrong shape or out-of-range ids.
    """
    check_edges(edges, num_users, num_items)
    n = num_users + num_items
    pairs = _unique_pairs(edges)
    u, i = pairs[0], pairs[1] + num_users
    deg = np.bincount(np.concatenate([u, i]), minlength=n).astype(np.float64)
    inv_sqrt = np.zeros(n)
    np.divide(1.0, np.sqrt(deg), out=inv_sqrt, where=deg > 0)
    row = np.concatenate([u, i])
    col = np.concatenate([i, u])
    order = np.lexsort((col, row))  # by row, then column: sorted CSR column indices
    row, col = row[order], col[order]
    values = torch.from_numpy(inv_sqrt[row] * inv_sqrt[col]).to(dtype)
    crow = np.zeros(n + 1, dtype=np.int64)
    crow[1:] = np.cumsum(np.bincount(row, minlength=n))
    return torch.sparse_csr_tensor(
        torch.from_numpy(crow).to(edges.device),
        torch.from_numpy(col).to(edges.device),
        values.to(edges.device),
        (n, n),
        check_invariants=False,
    )


def remove_edges(edges: Tensor, forget_edges: Tensor) -> Tensor:
    """Remove exact (user, item) pairs from an edge list.

    Used to build the retain graph ``D_r = D_train \\ D_f`` for interaction, user and item
    unlearning; rebuilding the adjacency from the result drops each pair in both directions.

    Args:
        edges: The graph's interaction pairs.
        forget_edges: Pairs to remove; every pair must be present in ``edges``. Duplicates in
            ``forget_edges`` are allowed; every copy of a removed pair leaves ``edges``.

    Returns:
        The retained pairs, in their original order.

    Shapes:
        edges: ``(2, E)`` int64; forget_edges: ``(2, F)`` int64. Returns ``(2, E - F')`` int64.

    Raises:
        TypeError: If either tensor is not an integer tensor.
        ValueError: If a shape is wrong or a forget pair is not in ``edges`` (the first such pair
            is named).
    """
    check_edges(edges)
    check_edges(forget_edges)
    if forget_edges.size(1) == 0:
        return edges.clone()
    width = int(max(int(edges[1].max()) if edges.numel() else 0, int(forget_edges[1].max()))) + 1
    keys = edges[0].long() * width + edges[1].long()
    fkeys = forget_edges[0].long() * width + forget_edges[1].long()
    present = torch.isin(fkeys, keys)
    if not bool(present.all()):
        j = int((~present).nonzero()[0])
        u, i = int(forget_edges[0, j]), int(forget_edges[1, j])
        raise ValueError(
            f"forget pair (user={u}, item={i}) is not in the graph; forget only training edges"
        )
    return edges[:, ~torch.isin(keys, fkeys)]


class _SymmetricCSRMatmul(torch.autograd.Function):
    """``Â @ X`` for a constant symmetric CSR ``Â`` given by its parts, with backward ``Â @ G``.

    PyTorch's generic sparse-dense backward transposes the CSR matrix at every call; since the
    normalized bipartite adjacency is symmetric the gradient is another product with ``Â``.
    Backward calls this function again, so higher-order gradients (Hessian-vector products for
    influence-based unlearning) stay exact. Passing the CSR parts (dense tensors) instead of a
    sparse tensor lets ``torch.func.grad`` and ``torch.func.vmap`` trace through it.
    """

    @staticmethod
    def forward(crow: Tensor, col: Tensor, values: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        n = crow.numel() - 1
        adj = torch.sparse_csr_tensor(crow, col, values.to(x.dtype), (n, n), check_invariants=False)
        return torch.sparse.mm(adj, x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        crow, col, values, _ = inputs
        ctx.save_for_backward(crow, col, values)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, None, Tensor]:  # type: ignore[override]
        crow, col, values = ctx.saved_tensors
        return None, None, None, _SymmetricCSRMatmul.apply(crow, col, values, grad)

    @staticmethod
    def vmap(info, in_dims, crow, col, values, x):  # type: ignore[override]
        if any(d is not None for d in in_dims[:3]):
            raise ValueError("symmetric_csr_matmul: vmap over the adjacency is not supported")
        x = x.movedim(in_dims[3], 1)  # (N, batch, ...)
        out = _SymmetricCSRMatmul.apply(crow, col, values, x.reshape(x.size(0), -1))
        return out.reshape(x.shape), 1


def symmetric_csr_matmul(crow: Tensor, col: Tensor, values: Tensor, x: Tensor) -> Tensor:
    """``Â @ x`` for a constant symmetric CSR matrix ``Â`` given by its parts.

    Differentiable in ``x`` only (``values`` are treated as constants), to any order, and usable
    under ``torch.func.grad`` / ``vmap``. Symmetry is assumed, not checked: the backward pass
    multiplies by ``Â`` instead of ``Â^T``.

    Args:
        crow: CSR row pointers.
        col: CSR column indices.
        values: CSR values (cast to ``x.dtype``).
        x: Dense right-hand side.

    Returns:
        ``Â @ x``.

    Shapes:
        crow: ``(N + 1,)`` int64; col, values: ``(nnz,)``; x: ``(N, D)`` float. Returns ``(N, D)``.
    """
    return _SymmetricCSRMatmul.apply(crow, col, values, x)


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """Multiply a constant symmetric sparse matrix with a dense matrix, differentiably in ``x``.

    See :func:`symmetric_csr_matmul` (this wrapper takes the sparse tensor itself). Under
    ``torch.func`` transforms call :func:`symmetric_csr_matmul` with the CSR parts extracted
    outside the transform: functorch cannot read a sparse tensor's indices.

    Args:
        adj: Symmetric sparse matrix (CSR or COO), e.g. from :func:`bipartite_adjacency`. It is
            treated as a constant: no gradient flows to it. Symmetry is not checked.
        x: Dense features.

    Returns:
        ``adj @ x``.

    Shapes:
        adj: ``(N, N)`` sparse; x: ``(N, D)`` float. Returns ``(N, D)``.

    Raises:
        ValueError: If ``adj`` is not a square sparse matrix.
    """
    if adj.layout == torch.sparse_coo:
        adj = adj.coalesce().to_sparse_csr()
    if adj.layout != torch.sparse_csr or adj.dim() != 2 or adj.size(0) != adj.size(1):
        raise ValueError(
            f"adj must be a square sparse CSR/COO matrix, got layout {adj.layout} and shape "
            f"{tuple(adj.shape)}; build it with bipartite_adjacency"
        )
    return symmetric_csr_matmul(adj.crow_indices(), adj.col_indices(), adj.values(), x)
