"""LightGCN / MF recommenders: propagation parity, PyG parity, API and errors."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearnkit.recsys.graph import bipartite_edge_index, remove_edges
from unlearnkit.recsys.models import LightGCNRecommender, MFRecommender

NU, NI = 7, 9


def _edges(seed: int = 0, n: int = 25) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    e = torch.stack(
        [torch.randint(NU, (n,), generator=gen), torch.randint(NI, (n,), generator=gen)]
    )
    return torch.unique(e, dim=1)


def _pair(item_features=None, num_layers=3):
    torch.manual_seed(0)
    csr = LightGCNRecommender(
        NU, NI, embedding_dim=5, num_layers=num_layers, item_features=item_features
    ).double()
    ei = LightGCNRecommender(
        NU, NI, embedding_dim=5, num_layers=num_layers, propagation="edge_index",
        item_features=item_features,
    ).double()  # fmt: skip
    ei.load_state_dict(csr.state_dict())
    edges = _edges()
    return csr.set_graph(edges), ei.set_graph(edges)


def _dense_lightgcn(ego: torch.Tensor, edges: torch.Tensor, num_layers: int) -> torch.Tensor:
    """LightGCN written out with a dense matrix (He et al., SIGIR 2020, eqs. 7-8):
    A = [[0, R], [R^T, 0]], A_hat = D^-1/2 A D^-1/2 (0 for a degree-0 node), E_k = A_hat E_{k-1},
    E = mean_{k=0..K} E_k."""
    n = NU + NI
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edges[0], NU + edges[1]] = 1.0
    a[NU + edges[1], edges[0]] = 1.0
    deg = a.sum(1)
    inv_sqrt = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    a_hat = inv_sqrt[:, None] * a * inv_sqrt[None, :]
    layers = [ego]
    for _ in range(num_layers):
        layers.append(a_hat @ layers[-1])
    return torch.stack(layers).mean(0)


@pytest.mark.parametrize("with_features", [False, True])
def test_csr_and_edge_index_paths_match_dense_reference(with_features):
    feats = torch.rand(NI, 4, dtype=torch.float64) if with_features else None
    csr, ei = _pair(feats)
    ego = csr.lightgcn.embedding.weight.detach().clone()
    if with_features:
        ego[NU:] += feats @ csr.item_projection.weight.detach().t()
    ref = _dense_lightgcn(ego, csr.graph_edges, num_layers=3)
    for model in (csr, ei):
        user_emb, item_emb = model.embeddings()
        assert user_emb.dtype == torch.float64
        torch.testing.assert_close(user_emb, ref[:NU], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(item_emb, ref[NU:], rtol=1e-10, atol=1e-12)
    users = torch.tensor([0, 3, 6])
    s_csr, s_ei = csr.full_scores(users), ei.full_scores(users)
    torch.testing.assert_close(s_csr, ref[users] @ ref[NU:].t(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s_ei, ref[users] @ ref[NU:].t(), rtol=1e-10, atol=1e-12)
    # gradients agree with autograd through the dense reference (the custom symmetric backward)
    w = torch.randn_like(s_csr)
    params = dict(csr.named_parameters())
    ego_ref = params["lightgcn.embedding.weight"]
    if with_features:
        ego_ref = torch.cat(
            [ego_ref[:NU], ego_ref[NU:] + feats @ params["item_projection.weight"].t()]
        )
    dense = _dense_lightgcn(ego_ref, csr.graph_edges, num_layers=3)
    g_ref = torch.autograd.grad(((dense[users] @ dense[NU:].t()) * w).sum(), list(params.values()))
    g_csr = torch.autograd.grad((s_csr * w).sum(), list(csr.parameters()))
    g_ei = torch.autograd.grad((s_ei * w).sum(), list(ei.parameters()))
    for a, b, r in zip(g_csr, g_ei, g_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(b, r, rtol=1e-10, atol=1e-12)


def test_matches_pyg_lightgcn_get_embedding():
    csr, _ = _pair()
    edge_index = bipartite_edge_index(csr.graph_edges, NU, NI)
    ref = csr.lightgcn.get_embedding(edge_index)
    user_emb, item_emb = csr.embeddings()
    assert torch.allclose(torch.cat([user_emb, item_emb]), ref, rtol=1e-10)
    # scoring uses the same embeddings as PyG's forward (dot product of endpoints)
    label = torch.tensor([[0, 2], [NU + 1, NU + 8]])
    torch.testing.assert_close(
        csr.score(torch.tensor([0, 2]), torch.tensor([1, 8])),
        csr.lightgcn(edge_index, label),
        rtol=1e-12,
        atol=1e-15,
    )


def test_isolated_user_keeps_only_its_layer0_share():
    csr, ei = _pair()
    user = int(csr.graph_edges[0, 0])
    forget = csr.graph_edges[:, csr.graph_edges[0] == user]
    for model in (csr, ei):
        model.set_graph(remove_edges(model.graph_edges, forget))
        user_emb, item_emb = model.embeddings()
        assert torch.isfinite(user_emb).all() and torch.isfinite(item_emb).all()
        ego = model.lightgcn.embedding.weight[user]
        # alpha_0 = 1/(K+1) = 1/4 and every propagated layer is zero for a degree-0 node
        assert torch.allclose(user_emb[user], ego / 4, rtol=1e-12)


def test_feature_aware_projection_matters_and_learns():
    feats = torch.rand(NI, 4, dtype=torch.float64)
    csr, _ = _pair(feats)
    items0 = csr.ego_embeddings()[1]
    expected = csr.lightgcn.embedding.weight[NU:] + feats @ csr.item_projection.weight.t()
    torch.testing.assert_close(items0, expected, rtol=1e-12, atol=1e-15)
    score = csr.score(torch.tensor([1]), torch.tensor([2])).sum()
    (grad,) = torch.autograd.grad(score, csr.item_projection.weight)
    assert grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"num_items=9"):
        LightGCNRecommender(NU, NI, item_features=torch.rand(NI + 1, 4))


def test_score_full_scores_consistency_and_errors():
    csr, _ = _pair()
    users = torch.tensor([0, 0, 5])
    items = torch.tensor([1, 8, 3])
    user_emb, item_emb = csr.embeddings()
    by_hand = (user_emb[users] * item_emb[items]).sum(1)  # a dot product of the endpoints
    torch.testing.assert_close(csr.score(users, items), by_hand, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(
        csr.full_scores(users)[torch.arange(3), items], by_hand, rtol=1e-12, atol=1e-15
    )
    torch.testing.assert_close(csr(users, items), by_hand, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="unknown user id 7"):
        csr.full_scores(torch.tensor([7]))
    with pytest.raises(ValueError, match="unknown item id 9"):
        csr.score(torch.tensor([0]), torch.tensor([9]))
    with pytest.raises(RuntimeError, match="set_graph"):
        LightGCNRecommender(NU, NI).embeddings()
    with pytest.raises(ValueError, match="propagation"):
        LightGCNRecommender(NU, NI, propagation="dense")
    with pytest.raises(ValueError, match="unknown item id"):
        LightGCNRecommender(NU, NI).set_graph(torch.tensor([[0], [NI]]))


def test_deepcopy_state_dict_and_arch():
    csr, _ = _pair()
    clone = copy.deepcopy(csr)
    assert torch.equal(clone.full_scores(torch.arange(NU)), csr.full_scores(torch.arange(NU)))
    keys = set(csr.state_dict())
    assert "lightgcn.embedding.weight" in keys and not any("adj" in k for k in keys)
    assert isinstance(csr.lightgcn.embedding, torch.nn.Embedding)
    assert csr.arch == "lightgcn" and MFRecommender.arch == "mf"


def test_mf_api():
    torch.manual_seed(0)
    mf = MFRecommender(NU, NI, embedding_dim=3).set_graph(_edges())
    user_emb, item_emb = mf.embeddings()
    assert user_emb.shape == (NU, 3) and item_emb.shape == (NI, 3)
    assert torch.allclose(mf.full_scores(torch.tensor([2])), user_emb[2:3] @ item_emb.t())
    assert torch.allclose(
        mf.score(torch.tensor([2]), torch.tensor([4])), (user_emb[2] * item_emb[4]).sum()
    )
    assert isinstance(mf.user_embedding, torch.nn.Embedding)
    feats = torch.rand(NI, 2)
    mf_f = MFRecommender(NU, NI, embedding_dim=3, item_features=feats)
    assert torch.allclose(
        mf_f.embeddings()[1], mf_f.item_embedding.weight + feats @ mf_f.item_projection.weight.t()
    )


def test_functional_call_grad_matches_autograd():
    """torch.func (used by influence-based unlearning) traces through the CSR propagation."""
    csr, _ = _pair()
    params = {k: v.detach() for k, v in csr.named_parameters()}
    users, items = torch.tensor([0, 4]), torch.tensor([2, 5])

    def loss(p):
        return torch.func.functional_call(csr, p, (users, items)).pow(2).sum()

    fgrads = torch.func.grad(loss)(params)
    agrads = torch.autograd.grad(csr(users, items).pow(2).sum(), list(csr.parameters()))
    for (name, _), g in zip(csr.named_parameters(), agrads, strict=True):
        assert torch.allclose(fgrads[name], g, rtol=1e-12), name
