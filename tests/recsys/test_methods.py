"""Recommender unlearning methods and forget requests: hand-checked values and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from _helpers import tiny_graph, trained_lightgcn
from unlearnkit.data import ForgetSpec
from unlearnkit.module import default_trainer
from unlearnkit.recsys.data import EdgeDataset, ForgetEdges, edge_loader, resolve_forget_edges
from unlearnkit.recsys.methods import E2URec, RecFineTune, RecGradientAscent, ReverseBPR
from unlearnkit.recsys.methods.e2urec import LoRAEmbeddingDelta, forgetting_teacher_scores
from unlearnkit.recsys.methods.reverse_bpr import reverse_bpr_loss
from unlearnkit.recsys.models import MFRecommender
from unlearnkit.recsys.module import RecEvaluator, count_parameters


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def score(model, user: int, item: int) -> float:
    return model.score(torch.tensor([user]), torch.tensor([item])).detach().item()


def loaders(split: ForgetEdges, batch: int = 8):
    return edge_loader(split.forget, batch), edge_loader(split.retain, 64)


def quiet(epochs: int):
    return default_trainer(epochs, enable_progress_bar=False, enable_model_summary=False)


# -- pure formulas ------------------------------------------------------------------------------
def test_reverse_bpr_loss_by_hand():
    pos, neg = (
        torch.tensor([2.0, 0.0], dtype=torch.float64),
        torch.tensor([1.0, 3.0], dtype=torch.float64),
    )
    # softplus(2 - 1) and softplus(0 - 3): the forgotten item above its negative costs the most
    expected = (math.log1p(math.e) + math.log1p(math.exp(-3.0))) / 2
    assert float(reverse_bpr_loss(pos, neg)) == pytest.approx(expected, rel=1e-12)
    assert float(reverse_bpr_loss(pos, neg)) == pytest.approx(
        0.6809245195, rel=1e-9
    )  # (1.3132617 + 0.0485874) / 2


def test_forgetting_teacher_formula_by_hand():
    z_o = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]])
    z_a = torch.tensor([[2.0, 1.0, 3.5], [0.0, 1.0, 3.0]])
    # z_F = z_O - 2 relu(z_A - z_O): only what A added is subtracted, twice
    expected = torch.tensor([[-1.0, 2.0, 2.0], [0.0, -5.0, 4.0]])
    torch.testing.assert_close(forgetting_teacher_scores(z_o, z_a, alpha=2.0), expected)
    torch.testing.assert_close(forgetting_teacher_scores(z_o, z_a, alpha=0.0), z_o)
    with pytest.raises(ValueError, match="same shape"):
        forgetting_teacher_scores(z_o, z_a[:, :2])


def test_lora_delta_starts_at_zero_and_is_low_rank():
    gen = torch.Generator().manual_seed(0)
    delta = LoRAEmbeddingDelta(10, 4, rank=2, alpha=4.0, generator=gen)
    weight = torch.randn(10, 4)
    torch.testing.assert_close(delta(weight), weight)  # A = 0 at init
    with torch.no_grad():
        delta.lora_A.fill_(1.0)
    change = delta(weight) - weight
    assert torch.linalg.matrix_rank(change) == 1  # all rows equal: scaling * 1^T B
    torch.testing.assert_close(change[0], 2.0 * delta.lora_B.sum(0))  # scaling 4 / 2 = 2
    with pytest.raises(ValueError, match="rank"):
        LoRAEmbeddingDelta(10, 4, rank=0)


# -- one ReverseBPR step ----------------------------------------------------------------------
def test_one_reverse_bpr_step_lowers_the_forgotten_score_by_hand():
    """MF with 1-d factors: u0 = 1, i0 = 0, i1 = 1; forget (0, 1); the only negative is item 0.

    reverse loss softplus(s01 - s00) = softplus(1); gradients sigma(1) on u0 and on i1, so one
    SGD step of lr 0.5 gives u0 = i1 = 1 - 0.5 sigma(1) and s01 = (1 - 0.5 sigma(1))^2 = 0.402553.
    """
    model = MFRecommender(2, 2, embedding_dim=1)
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0], [1.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[0.0], [1.0]]))
    train = torch.tensor([[0, 1], [1, 0]])  # user 0 - item 1 (forgotten), user 1 - item 0
    model.set_graph(train)
    method = ReverseBPR(
        epochs=1, lr=0.5, optimizer="sgd", momentum=0.0, retain_weight=0.0, reg_weight=0.0
    )
    forget, retain = edge_loader(train[:, :1], 1), edge_loader(train[:, 1:], 1)
    assert score(model, 0, 1) == pytest.approx(1.0)
    method.unlearn(model, forget, retain, trainer=quiet(1))
    expected = (1 - 0.5 * sigmoid(1.0)) ** 2
    assert score(model, 0, 1) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.402553, rel=1e-5)
    torch.testing.assert_close(model.graph_edges, train[:, 1:])


def test_one_reverse_bpr_step_lowers_a_forgotten_pair_on_lightgcn():
    edges = tiny_graph()
    model = trained_lightgcn(edges)
    split = resolve_forget_edges(ForgetSpec(kind="interaction", ids=[0]), edges, 16, 12)
    u, i = split.forget[:, :1]
    before = model.set_graph(split.retain).score(u, i).item()  # the graph change alone
    model.set_graph(edges)
    method = ReverseBPR(epochs=1, lr=1.0, reg_weight=0.0)
    method.unlearn(
        model, edge_loader(split.forget, 1), edge_loader(split.retain, 64), trainer=quiet(1)
    )
    assert model.score(u, i).detach().item() < before - 1e-3


# -- forget requests --------------------------------------------------------------------------
def test_resolve_user_item_interaction_by_hand():
    edges = torch.tensor([[0, 0, 1, 1, 2, 3], [0, 1, 1, 2, 0, 2]])
    by_user = resolve_forget_edges(ForgetSpec(kind="user", ids=[1]), edges, 4, 3)
    torch.testing.assert_close(by_user.forget, torch.tensor([[1, 1], [1, 2]]))
    torch.testing.assert_close(by_user.forget_index, torch.tensor([2, 3]))
    torch.testing.assert_close(by_user.retain, torch.tensor([[0, 0, 2, 3], [0, 1, 0, 2]]))
    assert by_user.removed_users().tolist() == [1] and by_user.removed_items().tolist() == []
    by_item = resolve_forget_edges(ForgetSpec(kind="item", ids=[2]), edges, 4, 3)
    assert by_item.forget.t().tolist() == [[1, 2], [3, 2]]
    assert by_item.removed_items().tolist() == [2] and by_item.removed_users().tolist() == [3]
    by_edge = resolve_forget_edges(ForgetSpec(kind="interaction", ids=[5, 0]), edges, 4, 3)
    assert by_edge.forget.t().tolist() == [[0, 0], [3, 2]]
    # seeded draws: same seed same set, counts as asked
    a = resolve_forget_edges(ForgetSpec(kind="interaction", count=3, seed=4), edges, 4, 3)
    b = resolve_forget_edges(ForgetSpec(kind="interaction", count=3, seed=4), edges, 4, 3)
    assert a.fingerprint() == b.fingerprint() and a.forget.size(1) == 3
    users = resolve_forget_edges(ForgetSpec(kind="user", fraction=0.5, seed=1), edges, 4, 3)
    assert users.affected_users().numel() == 2  # half of the 4 users, all their edges
    assert users.forget.size(1) + users.retain.size(1) == 6


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ForgetSpec(kind="user", ids=[7]), "unknown user id 7: valid user ids are 0..3"),
        (ForgetSpec(kind="item", ids=[-1]), "unknown item id -1"),
        (ForgetSpec(kind="interaction", ids=[6]), "unknown interaction id 6"),
        (ForgetSpec(kind="user", ids=[]), "forget set is empty"),
        (ForgetSpec(kind="class", classes=[0]), "not for recommender data"),
        (ForgetSpec(kind="user"), "exactly one of fraction"),
        (ForgetSpec(kind="interaction", fraction=1.5), "fraction must be in"),
    ],
)
def test_bad_requests_are_one_line_value_errors(spec, message):
    edges = torch.tensor([[0, 0, 1, 1, 2, 3], [0, 1, 1, 2, 0, 2]])
    with pytest.raises(ValueError, match=message) as info:
        resolve_forget_edges(spec, edges, 4, 3)
    assert "\n" not in str(info.value)


def test_forget_edge_file_round_trip_and_refusals(tmp_path):
    edges = torch.tensor([[0, 0, 1, 1, 2, 3], [0, 1, 1, 2, 0, 2]])
    split = resolve_forget_edges(ForgetSpec(kind="user", ids=[1]), edges, 4, 3)
    path = split.save(tmp_path / "f.json")
    assert split.save(path) == path  # same split: kept as is
    loaded = resolve_forget_edges(ForgetSpec(kind="indices", indices_file=str(path)), edges, 4, 3)
    assert loaded.fingerprint() == split.fingerprint()
    other = resolve_forget_edges(ForgetSpec(kind="user", ids=[0]), edges, 4, 3)
    before = path.read_text()
    with pytest.raises(FileExistsError, match="different forget set"):
        other.save(path)
    assert path.read_text() == before  # never overwritten
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"num_users": 4, "num_items": 3, "forget": [[3], [0]]}))
    with pytest.raises(
        ValueError, match=r"forget pair \(user=3, item=0\) is not in the training graph"
    ):
        resolve_forget_edges(ForgetSpec(kind="indices", indices_file=str(bad)), edges, 4, 3)
    bad.write_text(json.dumps({"forget": [[9], [0]]}))
    with pytest.raises(ValueError, match="unknown user id 9"):
        resolve_forget_edges(ForgetSpec(kind="indices", indices_file=str(bad)), edges, 4, 3)
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_forget_edges(
            ForgetSpec(kind="indices", indices_file=str(tmp_path / "no.json")), edges, 4, 3
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "f.json"]


def test_vision_resolve_rejects_recsys_kinds():
    with pytest.raises(ValueError, match="recommender data"):
        ForgetSpec(kind="user", fraction=0.1).resolve(torch.tensor([0, 1, 1]))


def test_edge_dataset_and_loader_batches():
    edges = torch.tensor([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    batches = list(edge_loader(edges, 2, shuffle=False))
    assert [b[0].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert [b[1].tolist() for b in batches] == [[4, 3], [2, 1], [0]]
    assert EdgeDataset(edges)[3] == (torch.tensor(3), torch.tensor(1))
    drawn = list(edge_loader(edges, 4, num_samples=12, seed=0))
    assert [len(b[0]) for b in drawn] == [4, 4, 4]


# -- bad input to unlearn ------------------------------------------------------------------------
def test_forget_edge_not_in_graph_or_unknown_id_is_a_value_error():
    edges = tiny_graph()
    model = trained_lightgcn(edges)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    retain = edge_loader(edges, 64)
    missing = torch.tensor([[0], [11]])  # user 0 is in the first community: never saw item 11
    assert not ((edges[0] == 0) & (edges[1] == 11)).any()
    with pytest.raises(ValueError, match=r"forget pair \(user=0, item=11\) is not in the graph"):
        ReverseBPR().unlearn(model, edge_loader(missing, 4), retain)
    with pytest.raises(ValueError, match="unknown user id 99"):
        ReverseBPR().unlearn(model, edge_loader(torch.tensor([[99], [0]]), 4), retain)
    with pytest.raises(TypeError, match="recommender"):
        ReverseBPR().unlearn(torch.nn.Linear(2, 2), edge_loader(edges, 4), retain)
    for key, value in model.state_dict().items():  # nothing changed
        torch.testing.assert_close(value, state[key])
    torch.testing.assert_close(model.graph_edges, edges)


# -- users / items left with no edges ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["user", "item"])
def test_entity_left_without_edges_runs_and_evaluates(kind):
    from unlearnkit.datasets.interactions import InteractionData

    edges = tiny_graph()
    model = trained_lightgcn(edges)
    split = resolve_forget_edges(ForgetSpec(kind=kind, ids=[0]), edges, 16, 12)
    removed = split.removed_users() if kind == "user" else split.removed_items()
    assert removed.tolist() == [0]
    for method in (
        ReverseBPR(epochs=1),
        E2URec(epochs=1, aux_epochs=1),
        RecGradientAscent(),
        RecFineTune(epochs=1),
    ):
        m = trained_lightgcn(edges)
        forget, retain = loaders(split)
        method.unlearn(m, forget, retain, trainer=quiet(method.epochs))
        user_emb, item_emb = m.embeddings()
        assert torch.isfinite(user_emb).all() and torch.isfinite(item_emb).all()
        torch.testing.assert_close(m.graph_edges, split.retain)
    data = InteractionData(
        num_users=16,
        num_items=12,
        train_edges=edges,
        val_edges=torch.empty(2, 0, dtype=torch.long),
        test_edges=torch.tensor([[0, 1, 9], [11, 11, 0]]),
        user_ids=torch.arange(16),
        item_ids=torch.arange(12),
    )
    evaluator = RecEvaluator(ks=(5,))
    eval_edges, mask = evaluator.test_edges(data, split)
    gone = eval_edges[0] == 0 if kind == "user" else eval_edges[1] == 0
    assert not gone.any()  # test pairs of the removed entity are left out
    out = evaluator.collect(model.set_graph(split.retain), data, split)
    metrics = evaluator.metrics_from_outputs(out, out)
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["score/js_to_retrain"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["flag/over_unlearning"] == 0.0


def test_e2urec_trains_only_lora_and_merges_it():
    edges = tiny_graph()
    model = trained_lightgcn(edges)
    names = set(model.state_dict())
    split = resolve_forget_edges(ForgetSpec(kind="user", ids=[0, 1]), edges, 16, 12)
    method = E2URec(rank=4, epochs=2, aux_epochs=1)
    method.unlearn(model, *loaders(split), trainer=quiet(2))
    # one table of 16 + 12 rows, width 8: rank * (N + D) LoRA parameters of 28 * 8 in all
    assert method.trained_parameters_ == 4 * (28 + 8)
    assert count_parameters(model) == 28 * 8
    assert set(model.state_dict()) == names  # merged back: same architecture
    assert all(p.requires_grad for p in model.parameters())


def test_over_unlearning_flag_against_the_reference():
    from unlearnkit.recsys.module import RecOutputs

    users = torch.tensor([0])
    ref = RecOutputs(
        {"forget/recall@20": 0.30}, users, torch.zeros(1, 3), torch.zeros(1), torch.zeros(1)
    )
    low = RecOutputs(
        {"forget/recall@20": 0.10}, users, torch.zeros(1, 3), torch.zeros(1), torch.zeros(1)
    )
    near = RecOutputs(
        {"forget/recall@20": 0.27}, users, torch.zeros(1, 3), torch.zeros(1), torch.zeros(1)
    )
    evaluator = RecEvaluator()
    flagged = evaluator.metrics_from_outputs(low, ref)
    assert flagged["flag/over_unlearning"] == 1.0
    assert flagged["gap/forget_recall@20"] == pytest.approx(-0.20)
    assert evaluator.metrics_from_outputs(near, ref)["flag/over_unlearning"] == 0.0
