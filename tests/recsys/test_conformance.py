"""The Unlearner contract for every recommender method in list_methods("recsys")."""

from __future__ import annotations

import inspect

import pytest
import torch

from _helpers import non_default_kwargs, tiny_graph, trained_lightgcn
from unlearnkit import list_methods
from unlearnkit.base import LossUnlearner
from unlearnkit.data import ForgetSpec
from unlearnkit.module import default_trainer
from unlearnkit.recsys.data import edge_loader, resolve_forget_edges
from unlearnkit.recsys.models import LightGCNRecommender

METHODS = sorted(list_methods("recsys"))
FAST = {"epochs": 2}
# Schedules strong enough to move a tiny, well-fitted graph (the defaults are for MovieLens).
METHOD_KWARGS = {
    "RecRetrain": {"epochs": 20, "lr": 0.05},
    "RecFineTune": {"lr": 0.01},
    "RecGradientAscent": {"epochs": 5, "lr": 0.1},
    "E2URec": {"epochs": 3, "aux_epochs": 10},
}
NUM_USERS, NUM_ITEMS = 16, 12


EDGES = tiny_graph(NUM_USERS, NUM_ITEMS)  # users < 8 like items 0..6, the others items 5..11
SPLIT = resolve_forget_edges(ForgetSpec(kind="user", ids=[0, 1]), EDGES, NUM_USERS, NUM_ITEMS)


@pytest.fixture(scope="module")
def original_state():
    return trained_lightgcn(EDGES, NUM_USERS, NUM_ITEMS, epochs=40).state_dict()


def fresh(state) -> LightGCNRecommender:
    model = LightGCNRecommender(NUM_USERS, NUM_ITEMS, embedding_dim=8, num_layers=2)
    model.load_state_dict(state)
    return model.set_graph(EDGES).eval()


def make_method(name: str, **over):
    cls = list_methods("recsys")[name]
    params = inspect.signature(cls.__init__).parameters
    merged = {**FAST, **METHOD_KWARGS.get(name, {}), **over}
    return cls(**{k: v for k, v in merged.items() if k in params})


def run(method, model, *, retain=True):
    forget = edge_loader(SPLIT.forget, 8)
    retain_loader = edge_loader(SPLIT.retain, 32) if retain else None
    trainer = default_trainer(method.epochs, enable_progress_bar=False, enable_model_summary=False)
    return method.unlearn(model, forget, retain_loader, trainer=trainer)


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def mean_forgotten_rank(model) -> float:
    """Mean rank (1 = top) of the forgotten items among each forgotten user's non-retained items."""
    with torch.no_grad():
        scores = model.full_scores(SPLIT.forget[0])
    own = scores.gather(1, SPLIT.forget[1][:, None])
    return float((scores > own).sum(1).double().mean() + 1)


def test_methods_are_discovered():
    assert set(METHODS) == {
        "E2URec",
        "RecFineTune",
        "RecGradientAscent",
        "RecRetrain",
        "ReverseBPR",
    }
    assert all(
        cls.__module__.startswith("unlearnkit.recsys.methods")
        for cls in list_methods("recsys").values()
    )


@pytest.mark.parametrize("name", METHODS)
def test_returns_same_model_changes_it_and_drops_forgotten_edges(name, original_state):
    model = fresh(original_state)
    before = flat(model).clone()
    out = run(make_method(name), model)
    assert out is model
    assert not torch.allclose(flat(model), before)
    # the graph is D_r: no forgotten pair propagates, in either direction
    torch.testing.assert_close(model.graph_edges, SPLIT.retain)
    adj = model.adjacency().to_dense()
    u, i = SPLIT.forget[0], SPLIT.forget[1] + NUM_USERS
    assert adj[u, i].abs().sum() == 0 and adj[i, u].abs().sum() == 0
    assert adj.abs().sum() > 0


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_result(name, original_state):
    a, b = fresh(original_state), fresh(original_state)
    run(make_method(name, seed=3), a)
    run(make_method(name, seed=3), b)
    torch.testing.assert_close(flat(a), flat(b))


def mean_forgotten_score(model) -> float:
    with torch.no_grad():
        return float(model.score(SPLIT.forget[0], SPLIT.forget[1]).mean())


@pytest.mark.parametrize("name", METHODS)
def test_forgotten_pairs_mean_score_goes_down(name, original_state):
    before = mean_forgotten_score(fresh(original_state))
    model = run(make_method(name), fresh(original_state))
    assert mean_forgotten_score(model) < before - 0.1, name


@pytest.mark.parametrize(
    "name", [m for m in METHODS if "forget" in list_methods("recsys")[m].streams]
)
def test_forget_readers_sink_the_items_below_edge_removal_alone(name, original_state):
    """Methods that read D_f do more than drop the edges: the forgotten items sink in the ranking."""
    baseline = fresh(original_state).set_graph(SPLIT.retain)
    model = run(make_method(name), fresh(original_state))
    assert mean_forgotten_rank(model) > mean_forgotten_rank(baseline) + 1.0, name


@pytest.mark.parametrize("name", METHODS)
def test_missing_retain_set(name, original_state):
    method = make_method(name)
    if not method.requires_retain:
        # It runs without D_r, changes the model, and does exactly what it does when given D_r.
        model = fresh(original_state)
        assert run(method, model, retain=False) is model
        torch.testing.assert_close(model.graph_edges, SPLIT.retain)  # D_train minus D_f
        with_retain = run(make_method(name), fresh(original_state))
        assert not torch.allclose(flat(model), flat(fresh(original_state)))
        torch.testing.assert_close(flat(model), flat(with_retain), rtol=0, atol=0)
        return
    with pytest.raises(ValueError, match="needs a retain set"):
        run(method, fresh(original_state), retain=False)


@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs(name, original_state):
    method = make_method(name)
    empty = edge_loader(torch.empty(2, 0, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="forget set is empty"):
        method.unlearn(fresh(original_state), empty, edge_loader(SPLIT.retain, 32))
    with pytest.raises(TypeError, match="nn.Module"):
        method.unlearn("not a model", edge_loader(SPLIT.forget, 4), edge_loader(SPLIT.retain, 32))
    model = fresh(original_state)
    with pytest.raises(ValueError, match="is not in the graph"):
        method.unlearn(
            model, edge_loader(torch.tensor([[0], [11]]), 4), edge_loader(SPLIT.retain, 32)
        )
    torch.testing.assert_close(model.graph_edges, EDGES)  # untouched


@pytest.mark.parametrize("name", METHODS)
def test_hyperparameters_stored_as_given(name):
    cls = list_methods("recsys")[name]
    kwargs = non_default_kwargs(cls)
    assert kwargs, name
    method = cls(**kwargs)
    for key, value in kwargs.items():
        assert getattr(method, key) == value, key
    assert issubclass(cls, LossUnlearner) and set(cls.streams) <= {"forget", "retain"}
