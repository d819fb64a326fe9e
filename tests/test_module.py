"""UnlearningModule under a plain Lightning Trainer: fit runs the method, test the Evaluator."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import RandomSampler

from unlearnkit.base import Unlearner
from unlearnkit.data import ForgetSpec
from unlearnkit.datasets import DigitsDataModule
from unlearnkit.evaluation import Evaluator
from unlearnkit.module import UnlearningModule, default_trainer
from unlearnkit.vision import SSD, FineTune, GradientAscent, SmallCNN
from unlearnkit.vision.experiment import with_params


def trainer(max_epochs: int) -> L.Trainer:
    return default_trainer(max_epochs)  # the project's quiet single-CPU Trainer


def test_fit_then_test_reports_metrics_that_match_the_evaluator():
    torch.manual_seed(0)
    dm = DigitsDataModule(forget=ForgetSpec(kind="class", classes=[3]))
    model = SmallCNN(in_channels=1, num_classes=10)
    module = UnlearningModule(model, GradientAscent(epochs=1, lr=0.01))
    before = [p.detach().clone() for p in model.parameters()]
    trainer(1).fit(module, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    logged = trainer(1).test(module, datamodule=dm, verbose=False)[0]
    expected = Evaluator().evaluate(model, dm.eval_dataloaders())
    for key in ("forget/acc", "retain/acc", "test/acc", "test_forget/acc", "mia/efficacy"):
        assert abs(logged[key] - expected[key]) < 1e-6, key
    # accuracies also recounted here, independently of the Evaluator: argmax == label per split
    model.eval()
    for split, loader in dm.eval_dataloaders().items():
        with torch.no_grad():
            hits = [(model(x).argmax(1) == y) for x, y, *_ in loader]
        acc = float(torch.cat(hits).double().mean())
        assert abs(logged[f"{split}/acc"] - acc) < 1e-6, split  # logged as float32


class _Recorder(Unlearner):
    """A one-shot method that records what it was given and scales the weights by 0.5."""

    streams = ("forget", "retain", "train")

    def apply(self, model, loaders, *, trainer=None):
        forget, retain, train = loaders["forget"], loaders["retain"], loaders["train"]
        self.seen = {
            "forget": len(forget.dataset),
            "retain": len(retain.dataset),
            "train": None if train is None else len(train.dataset),
            "train_shuffled": None if train is None else isinstance(train.sampler, RandomSampler),
        }
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        return model


def test_fit_runs_a_one_shot_method_with_forget_retain_and_unshuffled_train():
    dm = DigitsDataModule(forget=ForgetSpec(kind="class", classes=[3]))
    model = SmallCNN(in_channels=1, num_classes=10)
    before = [p.detach().clone() for p in model.parameters()]
    method = _Recorder()
    trainer(0).fit(UnlearningModule(model, method), datamodule=dm)
    split = dm.split
    n_forget, n_retain = len(split.forget), len(split.retain)
    assert method.seen == {
        "forget": n_forget,
        "retain": n_retain,
        "train": n_forget + n_retain,  # SSD's I_D over D_train, reusable across requests
        "train_shuffled": False,
    }
    for a, b in zip(before, model.parameters(), strict=True):
        torch.testing.assert_close(b, 0.5 * a)


def test_with_params_binds_the_run_cache_dir_only_where_the_method_has_none(tmp_path):
    own = SSD(cache_dir="mine")
    unset = SSD(alpha=3.0)
    bound = with_params(unset, cache_dir=str(tmp_path), seed=7)
    assert bound is not unset and bound.cache_dir == str(tmp_path) and bound.alpha == 3.0
    assert with_params(own, cache_dir=str(tmp_path)).cache_dir == "mine"
    ft = FineTune(epochs=2)
    assert with_params(ft, cache_dir=str(tmp_path)) is ft  # FineTune has no cache
    assert with_params(ft, seed=5).seed == 5 and with_params(ft, seed=5).epochs == 2


def test_union_loader_is_one_seeded_shuffled_pass_over_forget_and_retain():
    from torch.utils.data import DataLoader, TensorDataset

    from unlearnkit.streams import union_loader

    forget = DataLoader(TensorDataset(torch.arange(5.0), torch.zeros(5, dtype=torch.long)))
    retain = DataLoader(
        TensorDataset(torch.arange(100.0, 117.0), torch.ones(17, dtype=torch.long)), batch_size=4
    )
    batches = list(union_loader(forget, retain, seed=3))
    assert [len(b[0]) for b in batches] == [4, 4, 4, 4, 4, 2]  # the retain loader's batch size
    x = torch.cat([b[0] for b in batches])
    flag = torch.cat([b[2]["from_forget"] for b in batches])
    assert sorted(x.tolist()) == list(range(5)) + list(range(100, 117))  # each sample once
    assert flag.dtype == torch.bool and (flag == (x < 100)).all()  # flags mark D_f exactly
    assert x[:5].tolist() != list(range(5))  # shuffled ...
    again = torch.cat([b[0] for b in union_loader(forget, retain, seed=3)])
    assert torch.equal(x, again)  # ... and seeded


def test_random_label_never_trains_a_forget_sample_on_its_true_label(monkeypatch):
    from types import SimpleNamespace

    import unlearnkit.vision.methods.random_label as rl
    from unlearnkit.base import UnlearnBatch

    method = rl.RandomLabel(seed=0)
    model = torch.nn.Linear(3, 4)
    method.setup(model)
    x, y = torch.randn(64, 3), torch.randint(0, 4, (64,))
    from_forget = torch.arange(64) % 2 == 0
    seen = {}
    cross_entropy = torch.nn.functional.cross_entropy

    def record(logits, target):
        seen["target"] = target
        return cross_entropy(logits, target)

    monkeypatch.setattr(rl, "F", SimpleNamespace(cross_entropy=record))
    batch = UnlearnBatch({"union": (x, y, {"from_forget": from_forget})})
    loss = method.loss(model, batch, epoch=0)
    target = seen["target"]
    assert torch.equal(target[~from_forget], y[~from_forget])  # D_r keeps its labels
    assert (target[from_forget] != y[from_forget]).all()  # D_f never gets its true label
    torch.testing.assert_close(loss, cross_entropy(model(x), target))  # one mean over the batch


def test_distributed_outputs_drop_the_samplers_padding():
    """3 forget samples on 2 ranks: a DistributedSampler pads to 4 (sample 0 twice); the gathered
    outputs keep each sample once, so forget accuracy is 2/3 (not 3/4 or 1/2)."""
    from types import SimpleNamespace

    from unlearnkit.evaluation import Outputs, accuracy

    module = UnlearningModule(torch.nn.Identity(), GradientAscent())
    # rank 0 saw samples [0, 2], rank 1 saw [1, 0] (the padding repeats sample 0)
    per_rank = {
        "logits": [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])],
        "targets": [torch.tensor([0, 0]), torch.tensor([0, 0])],
        "index": [torch.tensor([0, 2]), torch.tensor([1, 0])],
    }
    stacked = {k: torch.stack(v) for k, v in per_rank.items()}

    def all_gather(t):
        for key, value in stacked.items():
            if torch.equal(t, per_rank[key][0]):
                return value
        raise AssertionError("unexpected tensor")

    module.all_gather = all_gather
    module._trainer = SimpleNamespace(world_size=2)
    logits, targets, attrs = module._gather(
        per_rank["logits"][0], per_rank["targets"][0], {"index": per_rank["index"][0]}
    )
    assert attrs["index"].tolist() == [0, 1, 2]
    out = Outputs(logits=logits, targets=targets, losses=torch.zeros(3))
    assert accuracy(out) == pytest.approx(2 / 3)  # samples 0 and 1 right, sample 2 wrong
    with pytest.raises(ValueError, match="sample index"):
        module._gather(logits, targets, {})
