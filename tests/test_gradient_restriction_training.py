"""``training.gradient_restriction``: the original θ_o trained with IAU's GR loss, keyed apart."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.cache import ModelCache, config_hash
from unlearnkit.data import ForgetSpec
from unlearnkit.datasets import DigitsDataModule
from unlearnkit.evaluation.evaluator import Evaluator
from unlearnkit.module import fit_method
from unlearnkit.recsys.experiment import RecTrainSchedule
from unlearnkit.vision.experiment import Experiment, TrainSchedule
from unlearnkit.vision.methods import CFk, FineTune, L1Sparse, Retrain

from ._helpers import first_run, run_args, run_logged

#: The keys computed by the code before ``gradient_restriction`` existed (commit 352f836):
#: ``config_hash(asdict(TrainSchedule()))`` and the original's key of :func:`_digits_experiment`.
OLD_DEFAULT_SCHEDULE_HASH = "ad2e09ea5fa4dd42a0b6"
OLD_ORIGINAL_KEY_HASH = "01d7a74f20aadbcf1114"
OLD_REC_SCHEDULE_HASH = "c020d75267c90d551f8d"
OLD_FIELDS = (
    "epochs",
    "lr",
    "momentum",
    "weight_decay",
    "lr_schedule",
    "optimizer",
    "retrain_init",
)


def _digits_experiment(tmp_path, training: TrainSchedule) -> Experiment:
    spec = ForgetSpec(kind="random", count=30, seed=0)
    data = DigitsDataModule(batch_size=64, train_limit=300, forget=spec)
    data.set_forget(spec)
    return Experiment(
        data,
        arch="small_cnn",
        training=training,
        seed=0,
        cache=ModelCache(tmp_path / "cache"),
        trainer={},
        evaluator=Evaluator(),
    )


def test_a_default_schedule_keeps_the_key_it_had_before_the_option():
    assert config_hash(TrainSchedule().cache_record("original")) == OLD_DEFAULT_SCHEDULE_HASH
    assert config_hash(TrainSchedule().cache_record("retrained")) == OLD_DEFAULT_SCHEDULE_HASH
    assert config_hash(RecTrainSchedule().cache_record("original")) == OLD_REC_SCHEDULE_HASH
    sched = TrainSchedule(epochs=3, lr=0.1)
    old = {k: v for k, v in asdict(sched).items() if k in OLD_FIELDS}  # the old record
    assert sched.cache_record("original") == old == sched.cache_record("retrained")


def test_the_experiment_keys_are_unchanged_at_0_and_differ_for_the_original_only(tmp_path):
    exp = _digits_experiment(tmp_path, TrainSchedule(epochs=1))
    model = exp._build(0)
    key = exp._key("original", model)
    assert config_hash(key) == OLD_ORIGINAL_KEY_HASH
    assert "gradient_restriction" not in key["schedule"]

    restricted = _digits_experiment(tmp_path, TrainSchedule(epochs=1, gradient_restriction=0.005))
    gr_key = restricted._key("original", model)
    assert gr_key["schedule"]["gradient_restriction"] == 0.005
    assert config_hash(gr_key) != config_hash(key)
    # θ_r is trained with plain CE either way: one key, one cache entry for both schedules
    assert restricted._key("retrained", model, forget="f") == exp._key(
        "retrained", model, forget="f"
    )


def test_the_schedule_passes_alpha_to_the_original_only():
    sched = TrainSchedule(epochs=2, gradient_restriction=0.005)
    original = sched.method(seed=3, from_scratch=False)
    assert type(original) is FineTune and original.gradient_restriction == 0.005
    retrained = sched.method(seed=3, from_scratch=True)
    assert type(retrained) is Retrain and retrained.gradient_restriction == 0.0
    assert TrainSchedule().method(seed=0, from_scratch=False).gradient_restriction == 0.0


def _tiny() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Tanh(), nn.Linear(5, 3, bias=False))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 4, generator=g)
    y = torch.randint(0, 3, (8,), generator=g)
    return net, x, y


def _by_hand_step(
    net: nn.Module, x, y, *, alpha: float, lr: float, wd: float
) -> list[torch.Tensor]:
    """One SGD step on ``CE + alpha (||dCE/dW1|| + ||dCE/dW2||)``, the first derivative written
    out (z = W2 tanh(W1 x)), its own gradient by autograd (the double backward)."""
    w1, w2 = (p.detach().clone().requires_grad_(True) for p in (net[0].weight, net[2].weight))
    h = torch.tanh(x @ w1.T)
    z = h @ w2.T
    dz = (torch.softmax(z, dim=1) - F.one_hot(y, 3).float()) / len(y)
    d_w2 = dz.T @ h
    d_w1 = ((dz @ w2) * (1 - h**2)).T @ x
    loss = F.cross_entropy(z, y) + alpha * (d_w1.norm() + d_w2.norm())
    g1, g2 = torch.autograd.grad(loss, [w1, w2])
    # SGD's first step: the momentum buffer is the gradient itself, so momentum does not show
    return [(w - lr * (g + wd * w)).detach() for w, g in ((w1, g1), (w2, g2))]


@pytest.mark.parametrize("cls", [FineTune, L1Sparse, CFk])
def test_one_training_step_with_gr_equals_a_by_hand_double_backward_step(cls):
    net, x, y = _tiny()
    alpha, lr, wd = 0.5, 0.1, 5e-4  # a large alpha, so a missing penalty cannot hide
    extra = {"alpha": 0.0} if cls is L1Sparse else {"k": 2} if cls is CFk else {}
    method = cls(epochs=1, lr=lr, weight_decay=wd, gradient_restriction=alpha, **extra)
    expected = _by_hand_step(net, x, y, alpha=alpha, lr=lr, wd=wd)
    plain = _by_hand_step(net, x, y, alpha=0.0, lr=lr, wd=wd)
    model = copy.deepcopy(net)
    fit_method(method, model, {"retain": DataLoader(TensorDataset(x, y), batch_size=8)})
    got = [model[0].weight.detach(), model[2].weight.detach()]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert max(float((a - b).abs().max()) for a, b in zip(got, plain, strict=True)) > 1e-4


def test_alpha_0_is_the_plain_step_and_a_negative_alpha_is_refused():
    net, x, y = _tiny()
    model = copy.deepcopy(net)
    fit_method(FineTune(epochs=1, lr=0.1), model, {"retain": DataLoader(TensorDataset(x, y), 8)})
    expected = _by_hand_step(net, x, y, alpha=0.0, lr=0.1, wd=5e-4)
    torch.testing.assert_close(model[2].weight.detach(), expected[1], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        fit_method(
            FineTune(epochs=1, gradient_restriction=-0.1),
            copy.deepcopy(net),
            {"retain": DataLoader(TensorDataset(x, y), 8)},
        )


GR_RUN = {
    "data": {
        "class_path": "unlearnkit.datasets.DigitsDataModule",
        "init_args": {"batch_size": 64, "train_limit": 300},
    },
    "forget": [{"kind": "random", "count": 30, "seed": 0}],
    "arch": "small_cnn",
    "training": {"epochs": 1, "lr": 0.05},
    "methods": [{"class_path": "Retrain"}, {"class_path": "IAU"}],
}


def _entries(cache) -> dict[str, list[dict]]:
    """The cached models' manifests (``key``, ``files``: SHA-256 of ``model.pt``), by kind."""
    out: dict[str, list[dict]] = {}
    for path in sorted((cache / "models").glob("*/manifest.json")):
        manifest = json.loads(path.read_text())
        out.setdefault(manifest["key"]["kind"], []).append(manifest)
    return out


def test_a_restricted_experiment_caches_its_own_original_and_shares_the_retrained(tmp_path, caplog):
    plain_args, _, plain = first_run(caplog, tmp_path, GR_RUN)
    cache = tmp_path / "cache"
    assert {k: len(v) for k, v in _entries(cache).items()} == {"original": 1, "retrained": 1}

    restricted = {**GR_RUN, "training": {**GR_RUN["training"], "gradient_restriction": 0.005}}
    (tmp_path / "gr").mkdir()
    args = run_args(tmp_path / "gr", restricted)
    args[args.index("--cache_dir") + 1] = str(cache)  # the same cache as the plain run
    text = run_logged(caplog, args)
    assert "cache miss: training the original" in text
    assert "cache hit: loaded the retrained" in text  # θ_r: plain CE in both
    entries = _entries(cache)
    assert len(entries["original"]) == 2 and len(entries["retrained"]) == 1
    schedules = [m["key"]["schedule"] for m in entries["original"]]
    assert sorted(s.get("gradient_restriction", 0.0) for s in schedules) == [0.0, 0.005]
    assert "gradient_restriction" not in entries["retrained"][0]["key"]["schedule"]
    weights = {m["files"]["model.pt"] for m in entries["original"]}
    assert len(weights) == 2  # the GR loss trained other weights
    (run,) = (tmp_path / "gr" / "runs").iterdir()
    report = json.loads((run / "report.json").read_text())
    by = {r["method"]: r["metrics"] for r in report["rows"]}
    old = {r["method"]: r["metrics"] for r in plain["rows"]}
    assert by["retrain"] == old["retrain"]  # the same θ_r

    again = run_logged(caplog, args)  # the restricted original now comes from the cache
    assert "cache hit: loaded the original" in again
    assert "cache hit: loaded the retrained" in again
    assert len(_entries(cache)["original"]) == 2
    assert plain_args != args
