"""Normalized bipartite adjacency, edge removal and the symmetric sparse product."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.recsys.graph import (
    bipartite_adjacency,
    bipartite_edge_index,
    remove_edges,
    symmetric_csr_matmul,
    symmetric_spmm,
)

# 2 users, 2 items: (u0,i0), (u0,i1), (u1,i0). Degrees: u0=2, u1=1, i0=2, i1=1.
EDGES = torch.tensor([[0, 0, 1], [0, 1, 0]])


def test_adjacency_by_hand():
    adj = bipartite_adjacency(EDGES, 2, 2, dtype=torch.float64)
    assert adj.layout == torch.sparse_csr and adj.shape == (4, 4)
    # node order: u0, u1, i0 (=2), i1 (=3)
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[0, 2] = expected[2, 0] = 1 / math.sqrt(2 * 2)
    expected[0, 3] = expected[3, 0] = 1 / math.sqrt(2 * 1)
    expected[1, 2] = expected[2, 1] = 1 / math.sqrt(1 * 2)
    assert torch.allclose(adj.to_dense(), expected, rtol=0, atol=1e-15)
    # duplicates are merged: same matrix
    dup = torch.cat([EDGES, EDGES[:, :1]], dim=1)
    assert torch.allclose(bipartite_adjacency(dup, 2, 2, dtype=torch.float64).to_dense(), expected)


def test_edge_index_both_directions():
    ei = bipartite_edge_index(EDGES, 2, 2)
    got = {(int(a), int(b)) for a, b in ei.t()}
    assert got == {(0, 2), (2, 0), (0, 3), (3, 0), (1, 2), (2, 1)}


def test_removing_a_users_edges_gives_zero_rows_not_nan():
    retained = remove_edges(EDGES, torch.tensor([[1], [0]]))
    assert retained.tolist() == [[0, 0], [0, 1]]
    dense = bipartite_adjacency(retained, 2, 2).to_dense()
    assert not torch.isnan(dense).any()
    assert dense[1].abs().sum() == 0 and dense[:, 1].abs().sum() == 0  # user 1: degree 0
    # u0 now has degree 2, i0 degree 1: weight 1/sqrt(2)
    assert dense[0, 2] == pytest.approx(1 / math.sqrt(2))
    # a graph with no edges at all is the zero matrix
    empty = bipartite_adjacency(EDGES[:, :0], 2, 2).to_dense()
    assert empty.abs().sum() == 0 and not torch.isnan(empty).any()


def test_remove_edges_errors_and_duplicates():
    with pytest.raises(ValueError, match=r"\(user=1, item=1\) is not in the graph"):
        remove_edges(EDGES, torch.tensor([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match=r"shape \(2, E\)"):
        remove_edges(EDGES, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        remove_edges(EDGES, torch.tensor([[0.0], [1.0]]))
    both = torch.cat([EDGES, EDGES[:, :1]], dim=1)  # (0,0) twice
    assert remove_edges(both, torch.tensor([[0], [0]])).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="num_items=1"):
        bipartite_adjacency(EDGES, 2, 1)


def test_symmetric_spmm_grad_and_hvp_match_dense():
    gen = torch.Generator().manual_seed(0)
    edges = torch.stack(
        [torch.randint(5, (12,), generator=gen), torch.randint(4, (12,), generator=gen)]
    )
    adj = bipartite_adjacency(edges, 5, 4, dtype=torch.float64)
    dense = adj.to_dense()
    x = torch.randn(9, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(9, 3, dtype=torch.float64, generator=gen)

    def loss(fn):
        y = fn(x)
        return (fn(y) * w).sum() ** 2  # two products and a square: non-trivial second order

    ours = loss(lambda z: symmetric_spmm(adj, z))
    ref = loss(lambda z: dense @ z)
    assert torch.allclose(ours, ref, rtol=1e-12)
    g_ours = torch.autograd.grad(ours, x, create_graph=True)[0]
    g_ref = torch.autograd.grad(ref, x, create_graph=True)[0]
    assert torch.allclose(g_ours, g_ref, rtol=1e-10)
    v = torch.randn(9, 3, dtype=torch.float64, generator=gen)
    hvp_ours = torch.autograd.grad((g_ours * v).sum(), x)[0]
    hvp_ref = torch.autograd.grad((g_ref * v).sum(), x)[0]
    assert torch.allclose(hvp_ours, hvp_ref, rtol=1e-10)
    # torch.func works through it as well (functional grad, as influence code uses)
    parts = adj.crow_indices(), adj.col_indices(), adj.values()  # dense parts: func-friendly
    fgrad = torch.func.grad(lambda z: (symmetric_csr_matmul(*parts, z) * w).sum())(x.detach())
    assert torch.allclose(fgrad, dense @ w, rtol=1e-12)


def test_symmetric_spmm_under_vmap_matches_loop():
    adj = bipartite_adjacency(EDGES, 2, 2, dtype=torch.float64)
    xs = torch.randn(3, 4, 2, dtype=torch.float64)
    parts = adj.crow_indices(), adj.col_indices(), adj.values()
    batched = torch.func.vmap(lambda z: symmetric_csr_matmul(*parts, z))(xs)
    assert torch.allclose(batched, torch.stack([adj.to_dense() @ z for z in xs]), rtol=1e-12)
    with pytest.raises(ValueError, match="square sparse"):
        symmetric_spmm(adj.to_dense(), xs[0])
