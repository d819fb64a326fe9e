"""Where the retrained reference θ_r starts: θ_o's initial weights ("original") or seed + 1."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from unlearnkit.cache import ModelCache
from unlearnkit.data import ForgetSpec
from unlearnkit.datasets import DigitsDataModule
from unlearnkit.evaluation.evaluator import Evaluator
from unlearnkit.recsys.data import edge_loader
from unlearnkit.recsys.experiment import RecTrainSchedule
from unlearnkit.recsys.methods import RecFineTune, RecRetrain
from unlearnkit.recsys.models import MFRecommender
from unlearnkit.vision.experiment import Experiment, TrainSchedule
from unlearnkit.vision.methods import FineTune, Retrain


def _initial_weights(monkeypatch) -> dict[str, dict[str, torch.Tensor]]:
    """Record each model's weights when its training starts (after Retrain's re-init)."""
    seen: dict[str, dict[str, torch.Tensor]] = {}
    for cls, kind in ((FineTune, "original"), (Retrain, "retrained")):
        setup = cls.setup

        def record(self, model, _setup=setup, _kind=kind):
            _setup(self, model)
            seen[_kind] = copy.deepcopy(model.state_dict())

        monkeypatch.setattr(cls, "setup", record)
    return seen


def _experiment(tmp_path, retrain_init: str) -> Experiment:
    data = DigitsDataModule(batch_size=256, forget=ForgetSpec(kind="class", classes=[0]))
    data.set_forget(ForgetSpec(kind="class", classes=[0]))
    return Experiment(
        data,
        arch="small_cnn",
        training=TrainSchedule(epochs=1, retrain_init=retrain_init),  # type: ignore[arg-type]
        seed=0,
        cache=ModelCache(tmp_path / retrain_init),
        trainer={},
        evaluator=Evaluator(),
    )


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_retrain_init_original_starts_from_the_originals_initial_weights(tmp_path, monkeypatch):
    seen = _initial_weights(monkeypatch)
    exp = _experiment(tmp_path, "original")
    original, _, _ = exp.original()
    retrained, _, _ = exp.retrained()
    assert _equal(seen["original"], seen["retrained"])
    # ... but not the original's trained weights, and it was trained on D_r
    assert not _equal(original.state_dict(), seen["retrained"])
    assert not _equal(retrained.state_dict(), seen["retrained"])


def test_retrain_init_fresh_uses_seed_plus_one_deterministically(tmp_path, monkeypatch):
    seen = _initial_weights(monkeypatch)
    _experiment(tmp_path, "fresh").retrained()
    first = seen["retrained"]
    assert not _equal(first, _experiment(tmp_path, "original")._build(0).state_dict())
    # seed + 1 with the model's own init: a second experiment (own cache) gets the same start
    _experiment(tmp_path / "again", "fresh").retrained()
    assert _equal(first, seen["retrained"])


def test_retrain_init_is_in_the_schedule_the_cache_key_and_the_method():
    sched = TrainSchedule(retrain_init="fresh")
    assert sched.init_seed(4, "retrained") == 5 and sched.init_seed(4, "original") == 4
    assert TrainSchedule().init_seed(4, "retrained") == 4  # default "original"
    method = sched.method(seed=4, from_scratch=True)
    assert isinstance(method, Retrain) and method.init_seed == 5 and method.seed == 4
    assert type(sched.method(seed=4, from_scratch=False)) is FineTune
    rec = RecTrainSchedule(retrain_init="fresh").method(seed=2, from_scratch=True)
    assert isinstance(rec, RecRetrain) and rec.init_seed == 3
    assert isinstance(RecTrainSchedule().method(seed=2, from_scratch=False), RecFineTune)


def test_retrained_mf_starts_from_its_xavier_init_not_n01(monkeypatch):
    """The MF reference used to restart from nn.Embedding's N(0, 1) (test Recall@20 0.04)."""
    num_users, num_items, dim = 300, 120, 32
    gen = torch.Generator().manual_seed(0)
    keys = torch.randperm(num_users * num_items, generator=gen)[:3000]
    edges = torch.stack([keys // num_items, keys % num_items])
    model = MFRecommender(num_users, num_items, embedding_dim=dim).set_graph(edges)
    with torch.no_grad():  # pretend it was trained to a large scale
        model.user_embedding.weight.mul_(30)
    starts = []
    setup = RecRetrain.setup

    def record(self, m):
        setup(self, m)
        starts.append(m.user_embedding.weight.detach().clone())

    monkeypatch.setattr(RecRetrain, "setup", record)
    forget, retain = edge_loader(edges[:, :50], 64), edge_loader(edges[:, 50:], 512)
    for init_seed in (7, 7, 8):
        RecRetrain(epochs=1, init_seed=init_seed).unlearn(copy.deepcopy(model), forget, retain)
    xavier_std = math.sqrt(2.0 / (num_users + dim))  # 0.0776
    assert float(starts[0].std()) == pytest.approx(xavier_std, rel=0.05)
    assert torch.equal(starts[0], starts[1]) and not torch.equal(starts[0], starts[2])
