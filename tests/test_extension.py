"""The platform is open: a method reading group attributes, a method with its own stream, a forget
selector and a metric are each written here, outside the package, and run through the same code
as `unlearnkit run` (no core file knows them)."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from unlearnkit.base import LossUnlearner, Stream
from unlearnkit.data import ForgetSelector, ForgetSpec
from unlearnkit.datasets import DigitsDataModule
from unlearnkit.evaluation import Evaluator, Metric, default_metrics
from unlearnkit.vision.experiment import TrainSchedule, run_experiment


class GroupWeightedFineTune(LossUnlearner):
    """Fine-tunes on D_r, weighting each sample by its group (reads the `group` attribute)."""

    streams: ClassVar[tuple[str, ...]] = ("retain",)

    def __init__(self, *, epochs: int = 1, lr: float = 0.01, seed: int = 0) -> None:
        super().__init__(epochs=epochs, lr=lr, seed=seed)

    def loss(self, model, batch, *, epoch):
        x, y = batch.retain
        group = batch.retain.attr("group")
        self.groups_seen_ = getattr(self, "groups_seen_", set()) | set(group.tolist())
        weights = 1.0 + group.float()
        return (weights * F.cross_entropy(model(x), y, reduction="none")).mean()


class HardestForget(Stream):
    """The k forget samples with the largest loss under the current model."""

    name = "hardest"

    def __init__(self, k: int) -> None:
        self.k = k

    def build(self, method, model, source):
        loader = source.stream_loader("forget")
        dataset = loader.dataset
        with torch.no_grad():
            xs = torch.stack([dataset[i][0] for i in range(len(dataset))])
            ys = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])
            losses = F.cross_entropy(model.eval()(xs), ys, reduction="none")
        top = torch.topk(losses, min(self.k, len(losses))).indices
        method.hardest_ = sorted(top.tolist())
        return DataLoader(torch.utils.data.Subset(dataset, top.tolist()), batch_size=8)


class AscendHardest(LossUnlearner):
    """Gradient ascent on the hardest forget samples only (a method-defined stream)."""

    streams: ClassVar[tuple] = (HardestForget(k=5),)

    def __init__(self, *, epochs: int = 2, lr: float = 0.05, seed: int = 0) -> None:
        super().__init__(epochs=epochs, lr=lr, seed=seed)

    def loss(self, model, batch, *, epoch):
        x, y = batch["hardest"]
        self.batches_ = getattr(self, "batches_", 0) + 1
        return -F.cross_entropy(model(x), y)


class FirstOfClassSelector(ForgetSelector):
    """Selects the `size` training samples of class `label` the model is least sure about."""

    def __init__(self, label: int = 1) -> None:
        self.label = label

    def select(self, model, data, *, size):
        self.calls_ = getattr(self, "calls_", 0) + 1
        loader = data.full_train_dataloader(shuffle=False)
        conf, index = [], []
        with torch.no_grad():
            for x, y, attrs in loader:
                p = torch.softmax(model(x), -1).gather(1, y[:, None]).squeeze(1)
                p[y != self.label] = 2.0  # other classes last
                conf.append(p)
                index.append(attrs["index"])
        conf, index = torch.cat(conf), torch.cat(index)
        return index[torch.argsort(conf)[:size]]


class ForgetLossGap(Metric):
    """Mean forget loss minus mean test loss (a metric object outside the package)."""

    splits: ClassVar[tuple[str, ...]] = ("forget", "test")

    def compute(self, outputs, context):
        gap = outputs["forget"].losses.mean() - outputs["test"].losses.mean()
        return {"forget/loss_gap": float(gap)}


@pytest.fixture()
def digits_with_groups():
    """Digits whose samples carry a `group` attribute (the parity of the label)."""

    class GroupedDigits(DigitsDataModule):
        def load(self):
            train, test = super().load()
            return (
                train.with_attributes(group=train.targets % 2),
                test.with_attributes(group=test.targets % 2),
            )

    return GroupedDigits


def _run(tmp_path, data, forget, methods, evaluator=None):
    return run_experiment(
        data,
        forget,
        methods,
        training=TrainSchedule(epochs=2, lr=0.05),
        cache_dir=tmp_path / "cache",
        output=tmp_path / "runs",
        evaluator=evaluator,
        write=True,
    )


def test_method_reading_group_attributes_and_group_metric(tmp_path, digits_with_groups):
    from unlearnkit.evaluation import WorstGroupAccuracy

    method = GroupWeightedFineTune()
    evaluator = Evaluator(metrics=[*default_metrics(), WorstGroupAccuracy(), ForgetLossGap()])
    result = _run(
        tmp_path,
        digits_with_groups(),
        [ForgetSpec(kind="random", count=100, seed=0)],
        [method],
        evaluator,
    )
    row = next(r for r in result.rows if r["method"] == "GroupWeightedFineTune")
    assert method.groups_seen_ == {0, 1}  # both groups reached the loss through the batches
    # worst-group accuracy by hand from the test outputs: min over parity groups
    assert 0.0 <= row["metrics"]["test/worst_group_acc"] <= row["metrics"]["test/acc"] + 1e-12
    assert "forget/loss_gap" in row["metrics"]
    original = next(r for r in result.rows if r["method"] == "original")
    assert original["metrics"]["forget/loss_gap"] < 0.5  # a random D_f is not special


def test_group_metric_without_the_attribute_is_a_one_line_error(tmp_path):
    from unlearnkit.evaluation import WorstGroupAccuracy

    with pytest.raises(ValueError, match="no attribute 'group'.*provides it"):
        _run(
            tmp_path,
            DigitsDataModule(),
            [ForgetSpec(kind="random", count=50)],
            [],
            Evaluator(metrics=[WorstGroupAccuracy()]),
        )


def test_group_weighted_method_sees_the_group_attribute(digits_with_groups):
    data = digits_with_groups(forget=ForgetSpec(kind="random", count=100))
    data.setup()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    method = GroupWeightedFineTune()
    method.unlearn_from(model, data)
    assert method.groups_seen_ == {0, 1}


def test_method_with_its_own_stream_reads_only_that_subset():
    data = DigitsDataModule(forget=ForgetSpec(kind="class", classes=[3]))
    data.setup()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    forget_set = data.forget_dataloader(shuffle=False).dataset
    forget_x = torch.stack([forget_set[i][0] for i in range(5)])
    before = model(forget_x).detach().clone()
    method = AscendHardest()
    method.unlearn_from(model, data)
    assert len(method.hardest_) == 5
    assert method.batches_ == 2  # 5 samples, batch 8, 2 epochs: one batch each
    assert not torch.equal(before, model(forget_x).detach())


def test_forget_selector_resolves_caches_and_saves(tmp_path):
    selector = FirstOfClassSelector(label=1)
    spec = ForgetSpec(kind="least_confident", count=20, selector=selector)
    data = DigitsDataModule()
    result = _run(tmp_path, data, [spec], [])
    assert data.split.forget.numel() == 20
    assert (data.train_set.targets[data.split.forget] == 1).all()  # what the selector chose
    saved = list((result.run_dir / "forget_sets").glob("*.json"))
    assert len(saved) == 1 and "least_confident" in saved[0].name
    first = data.split.forget.clone()
    again = _run(tmp_path, DigitsDataModule(), [spec], [])  # cached: select() not called again
    assert selector.calls_ == 1
    assert again.rows[0]["forget"] == "least_confident 20"
    changed = ForgetSpec(kind="least_confident", count=20, selector=FirstOfClassSelector(label=2))
    data2 = DigitsDataModule()
    _run(tmp_path, data2, [changed], [])
    assert (data2.train_set.targets[data2.split.forget] == 2).all()
    assert not torch.equal(first, data2.split.forget)


def test_selector_bad_size_fails_before_training(tmp_path):
    spec = ForgetSpec(kind="least_confident", count=10**6, selector=FirstOfClassSelector())
    with pytest.raises(ValueError, match="count must be in"):
        _run(tmp_path, DigitsDataModule(), [spec], [])
    assert not (tmp_path / "cache").exists()
