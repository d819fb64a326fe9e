"""SSD / LF-SSD: hand-computed dampening, parity with a slow reference, I_D cache, DDP."""

from __future__ import annotations

import functools
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset

from influence.helpers import slow_per_sample_grads, slow_ssd_importance
from unlearnkit.data import ForgetSpec, UnlearningDataModule
from unlearnkit.datasets.tensors import TensorImageDataset
from unlearnkit.vision.methods import LFSSD, SSD
from unlearnkit.vision.methods.ssd import (
    dataset_fingerprint,
    model_fingerprint,
    sort_by_label,
    ssd_dampening_factors,
)

WORLD = 2


# -- tiny models and data --------------------------------------------------------------------
class Net(nn.Module):
    """Conv -> BatchNorm -> ReLU -> Dropout -> Linear on (1, 6, 6) images, plus an unused
    parameter (its importance is exactly 0 on every set). Counts forward calls (= batches)."""

    arch = "ssd_test_net"

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4 * 3 * 3, n_classes)
        self.unused = nn.Parameter(torch.ones(5))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.head(self.drop(h.flatten(1)))


@functools.cache
def _trained_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = Net().double()
    x, y = data()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    for _ in range(15):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return {k: v.clone() for k, v in net.state_dict().items()}


def make_net(seed: int = 0) -> Net:
    """A float64 Net trained a little on `data()` (so importances are class-specific), in
    train mode."""
    net = Net().double()
    net.load_state_dict(_trained_state(seed))
    return net


def data(n: int = 150, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 6x6 images, each lighting up its own band of rows (float64)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat(n // 3)[torch.randperm(n, generator=g)]
    x = 0.3 * torch.randn(n, 1, 6, 6, generator=g, dtype=torch.float64)
    for c in range(3):
        x[y == c, 0, 2 * c : 2 * c + 2, :] += 1.5
    return x, y


def loaders(batch_size: int = 32) -> dict[str, DataLoader]:
    x, y = data()
    f = y == 0
    mk = lambda m, s: DataLoader(TensorDataset(x[m], y[m]), batch_size=batch_size, shuffle=s)  # noqa: E731
    return {
        "train": DataLoader(TensorDataset(x, y), batch_size=batch_size),
        "forget": mk(f, True),
        "retain": mk(~f, True),
    }


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# -- slow, obviously-correct reference -------------------------------------------------------
def by_label(dataset):
    """Python's (stable) sort of the sample indices by label: the reference's class-wise order."""
    order = sorted(range(len(dataset)), key=lambda i: int(dataset[i][1]))
    return Subset(dataset, order)


def slow_importance(model, dataset, batch_size, loss_fn=F.cross_entropy, power=2.0, sort=True):
    """The reference loop over the label-sorted (class-wise) data, batch by batch."""
    dl = DataLoader(by_label(dataset) if sort else dataset, batch_size=batch_size, shuffle=False)
    return slow_ssd_importance(model, dl, loss_fn, power)


def slow_ssd(model, forget_ds, train_ds, alpha, lam, batch_size=64, **kw):
    """Element by element: select iff I_F > alpha I_D, multiply by min(lam I_D / I_F, 1)."""
    i_f = slow_importance(model, forget_ds, batch_size, **kw)
    i_d = slow_importance(model, train_ds, batch_size, **kw)
    with torch.no_grad():
        for n, p in model.named_parameters():
            flat_p, f, d = p.view(-1), i_f[n].view(-1), i_d[n].view(-1)
            for i in range(flat_p.numel()):
                if f[i] > alpha * d[i]:
                    flat_p[i] *= min(lam * float(d[i]) / float(f[i]), 1.0)
    return i_f, i_d


# -- the dampening rule ------------------------------------------------------------------------
def test_dampening_factors_hand_computed():
    i_f = {"w": torch.tensor([0.0, 1.0, 4.0, 2.0, 0.0, 3.0])}
    i_d = {"w": torch.tensor([0.0, 0.0, 0.2, 1.0, 3.0, 0.1])}
    beta = ssd_dampening_factors(i_f, i_d, alpha=2.0, lam=1.0)["w"]
    # 0: I_F = 0 -> never selected; 1: I_D = 0 < I_F -> beta 0; 2: 0.2/4; 3: 2 > 2 is false;
    # 4: I_F = 0; 5: 0.1/3
    torch.testing.assert_close(beta, torch.tensor([1.0, 0.0, 0.05, 1.0, 1.0, 0.1 / 3]))
    # the bound: lam * I_D / I_F > 1 never scales a selected parameter up
    beta = ssd_dampening_factors(i_f, i_d, alpha=2.0, lam=100.0)["w"]
    torch.testing.assert_close(beta, torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0, 1.0]))
    assert bool(torch.isfinite(beta).all())


@pytest.mark.parametrize(
    ("i_f", "i_d", "message"),
    [
        ([float("nan"), 1.0], [1.0, 1.0], "I_F holds NaN/Inf for parameter 'layer.w'"),
        ([1.0, 1.0], [1.0, float("inf")], "I_D holds NaN/Inf for parameter 'layer.w'"),
        ([1.0, -1.0], [1.0, 1.0], "negative for parameter 'layer.w'"),
    ],
)
def test_dampening_factors_reject_bad_importances(i_f, i_d, message):
    with pytest.raises(ValueError, match=message):
        ssd_dampening_factors(
            {"layer.w": torch.tensor(i_f)}, {"layer.w": torch.tensor(i_d)}, alpha=10, lam=1
        )


def test_dampening_factors_reject_bad_arguments():
    one = {"w": torch.ones(2)}
    with pytest.raises(ValueError, match="alpha"):
        ssd_dampening_factors(one, one, alpha=0.0, lam=1.0)
    with pytest.raises(ValueError, match="lam"):
        ssd_dampening_factors(one, one, alpha=1.0, lam=-1.0)
    with pytest.raises(ValueError, match="different parameters"):
        ssd_dampening_factors(one, {"v": torch.ones(2)}, alpha=1.0, lam=1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        ssd_dampening_factors(one, {"w": torch.ones(3)}, alpha=1.0, lam=1.0)


# -- the method ------------------------------------------------------------------------------
@pytest.mark.parametrize("use_train", [True, False])
def test_unlearn_matches_slow_reference(use_train, tmp_path):
    dl = loaders()
    model, ref = make_net(), make_net()
    ref.train()
    kwargs = {"train": dl["train"]} if use_train else {}
    method = SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    method.unlearn(model, dl["forget"], dl["retain"], **kwargs)
    train_ds = (
        dl["train"].dataset
        if use_train
        else ConcatDataset([dl["retain"].dataset, dl["forget"].dataset])
    )
    i_f, i_d = slow_ssd(ref, dl["forget"].dataset, train_ds, alpha=2.0, lam=1.0)
    for n in i_f:
        torch.testing.assert_close(method.importance_forget_[n], i_f[n], rtol=1e-10, atol=1e-15)
        torch.testing.assert_close(method.importance_train_[n], i_d[n], rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(flat(model), flat(ref), rtol=1e-10, atol=1e-12)
    assert 0 < method.n_selected_ < method.n_eligible_  # a real, partial dampening
    assert method.selected_["unused"] == 0  # I_F = I_D = 0 there: not selected, no NaN
    assert bool(torch.isfinite(flat(model)).all())
    assert model.training and model.bn.training  # flags restored


@pytest.mark.parametrize("order", ["by_label", "as_given"])
def test_forgets_the_forget_class_keeps_the_rest(order, tmp_path):
    # With class-wise batches I_D >= (share of D_f batches) * I_F = I_F / 3 here, so only
    # alpha < 3 can select, and beta >= lam / 3; mixed batches let class gradients cancel in I_D.
    dl = loaders()
    x, y = data()
    model = make_net().eval()
    with torch.no_grad():
        before = (model(x).argmax(1) == y).double()
    alpha, lam = (1.0, 0.3) if order == "by_label" else (2.0, 1.0)
    SSD(alpha=alpha, lam=lam, order=order, cache_dir=str(tmp_path)).unlearn(
        model, dl["forget"], dl["retain"], train=dl["train"]
    )
    model.eval()
    with torch.no_grad():
        after = (model(x).argmax(1) == y).double()
    assert before[y == 0].mean() > 0.9 and before[y != 0].mean() > 0.9
    assert after[y == 0].mean() < before[y == 0].mean() - 0.5, after[y == 0].mean()
    assert after[y != 0].mean() > 0.8, after[y != 0].mean()


def test_by_label_order_is_a_stable_sort_and_it_matters(tmp_path):
    x = torch.arange(6, dtype=torch.float64).view(6, 1)
    y = torch.tensor([2, 0, 1, 0, 2, 1])
    ds = sort_by_label(TensorDataset(x, y))
    assert [int(ds[i][0]) for i in range(6)] == [1, 3, 2, 5, 0, 4]
    dl = loaders()
    sorted_run, given_run = (
        SSD(alpha=2.0, cache=False, order="by_label"),
        SSD(alpha=2.0, cache=False, order="as_given"),
    )
    sorted_run.unlearn(make_net(), dl["forget"], train=dl["train"])
    given_run.unlearn(make_net(), dl["forget"], train=dl["train"])
    ref = slow_importance(make_net(), dl["train"].dataset, 64, sort=False)
    for n, v in ref.items():
        torch.testing.assert_close(given_run.importance_train_[n], v, rtol=1e-10, atol=1e-15)
    # the batches differ, so does the batch-empirical I_D
    w = "head.weight"
    assert not torch.allclose(
        given_run.importance_train_[w], sorted_run.importance_train_[w], rtol=0.1, atol=0
    )
    with pytest.raises(ValueError, match="order must be"):
        SSD(order="random").unlearn(make_net(), dl["forget"], dl["retain"])


def test_missing_training_data_is_an_error():
    dl = loaders()
    with pytest.raises(ValueError, match="needs a retain set or a train set"):
        SSD(cache=False).unlearn(make_net(), dl["forget"], None)
    # train= alone is enough for the orders that read it
    SSD(cache=False, alpha=2.0, order="by_label").unlearn(
        make_net(), dl["forget"], train=dl["train"]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": -1.0}, "alpha"),
        ({"lam": float("nan")}, "lam"),
        ({"importance": "exact"}, "importance must be"),
        ({"loss": "mse"}, "loss must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"power": 0}, "power"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    dl = loaders()
    model = make_net()
    before = flat(model).clone()
    with pytest.raises(ValueError, match=message):
        SSD(cache=False, **kwargs).unlearn(model, dl["forget"], dl["retain"])
    assert torch.equal(flat(model), before)


def test_nan_weight_is_an_error_naming_the_parameter():
    dl = loaders()
    model = make_net()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    # refused before any importance is computed (every method checks the weights first)
    with pytest.raises(ValueError, match=r"parameter 'head\.weight' holds NaN or inf"):
        SSD(cache=False).unlearn(model, dl["forget"], dl["retain"], train=dl["train"])
    # a NaN that reaches an importance (e.g. a corrupted cache entry) names its parameter too
    from unlearnkit.vision.methods.ssd import ssd_dampening_factors

    good = {"conv.weight": torch.ones(3), "head.weight": torch.ones(2)}
    bad = {**good, "conv.weight": torch.tensor([1.0, float("nan"), 1.0])}
    with pytest.raises(ValueError, match=r"I_D holds NaN/Inf for parameter 'conv\.weight'"):
        ssd_dampening_factors(good, bad, alpha=10.0, lam=1.0)


def test_layers_limits_what_is_dampened(tmp_path):
    dl = loaders()
    model, orig = make_net(), make_net()
    method = SSD(alpha=1.0, layers=["head"], cache_dir=str(tmp_path))
    method.unlearn(model, dl["forget"], dl["retain"], train=dl["train"])
    assert set(method.importance_forget_) == {"head.weight", "head.bias"}
    assert method.n_selected_ > 0
    for (name, p), q in zip(model.named_parameters(), orig.parameters(), strict=True):
        assert torch.equal(p, q) != name.startswith("head."), name
    for b, c in zip(model.buffers(), orig.buffers(), strict=True):  # eval mode: BN stats kept
        assert torch.equal(b, c)


def test_per_sample_definition_is_the_exact_empirical_fisher(tmp_path):
    dl = loaders()
    model = make_net()
    # mean over D_f of the squared per-sample gradients, one autograd call per sample
    x, y = dl["forget"].dataset.tensors
    ref = {n: (g**2).mean(0) for n, g in slow_per_sample_grads(make_net(), x, y).items()}
    method = SSD(importance="per_sample", alpha=2.0, cache=False)
    method.unlearn(model, dl["forget"], dl["retain"], train=dl["train"])
    assert list(method.importance_forget_) == list(ref)
    for n, v in ref.items():
        torch.testing.assert_close(method.importance_forget_[n], v, rtol=1e-10, atol=1e-15)


def test_lfssd_is_label_free_and_uses_the_output_norm():
    dl = loaders()
    x, y = data()
    f = y == 0
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    relabeled = {
        "forget": DataLoader(TensorDataset(x[f], shuffled[f]), batch_size=32),
        "train": DataLoader(TensorDataset(x, shuffled), batch_size=32),
    }
    assert LFSSD().loss == "l2_output" and LFSSD().power == 1.0 and LFSSD().alpha == 10.0
    results = {}
    for name, cls in (("lfssd", LFSSD), ("ssd", SSD)):
        for labels, dls in (("true", dl), ("shuffled", relabeled)):
            model = make_net()
            method = cls(alpha=2.0, cache=False, order="as_given")  # labels do not even order
            method.unlearn(model, dls["forget"], train=dls["train"])
            results[name, labels] = (flat(model), method)
    torch.testing.assert_close(results["lfssd", "true"][0], results["lfssd", "shuffled"][0])
    assert not torch.allclose(results["ssd", "true"][0], results["ssd", "shuffled"][0])

    def l2_output(out, _targets):  # ||f(x)||^2 averaged over the batch, written out here
        return (out**2).sum(1).mean()

    ref = slow_importance(
        make_net(), dl["forget"].dataset, 64, loss_fn=l2_output, power=1.0, sort=False
    )
    for n, v in ref.items():
        torch.testing.assert_close(
            results["lfssd", "true"][1].importance_forget_[n], v, rtol=1e-10, atol=1e-15
        )


def test_augmentation_is_switched_off_for_the_importances():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 6, 6), dtype=torch.uint8, generator=g)
    targets = torch.arange(40) % 3
    ds = TensorImageDataset(
        images, targets, mean=[0.5], std=[0.25], classes=list("abc"), augment=True
    )
    forget = DataLoader(ds.subset(targets == 0), batch_size=8, shuffle=True)
    train = DataLoader(ds, batch_size=8)
    outs = []
    for seed in (1, 2):
        torch.manual_seed(0)
        model = Net()
        torch.manual_seed(seed)  # the augmentation's RNG: must not matter
        SSD(alpha=1.0, cache=False, order="by_label").unlearn(model, forget, train=train)
        outs.append(flat(model))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


# -- fingerprints and the I_D cache --------------------------------------------------------------
class ListDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i].numpy(), int(self.y[i])


def test_fingerprints_follow_content_and_order():
    x, y = data()
    base = dataset_fingerprint(TensorDataset(x, y))
    assert base == dataset_fingerprint(TensorDataset(x.clone(), y.clone()))
    x2 = x.clone()
    x2[7, 0, 0, 0] += 1e-9
    assert dataset_fingerprint(TensorDataset(x2, y)) != base
    assert dataset_fingerprint(TensorDataset(x.flip(0), y.flip(0))) != base
    generic = dataset_fingerprint(ListDataset(x, y))
    assert generic == dataset_fingerprint(ListDataset(x.clone(), y.clone()))
    assert generic != dataset_fingerprint(ListDataset(x2, y))
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    img = TensorImageDataset(
        images, torch.zeros(4, dtype=torch.long), mean=[0], std=[1], classes=["a"]
    )
    other = TensorImageDataset(
        images, torch.zeros(4, dtype=torch.long), mean=[0], std=[2], classes=["a"]
    )
    assert dataset_fingerprint(img) != dataset_fingerprint(other)  # normalisation changes x
    model = make_net()
    fp = model_fingerprint(model)
    model.bn.running_mean += 1  # a buffer counts: it changes eval-mode gradients
    assert model_fingerprint(model) != fp


def test_second_request_reuses_cached_train_importance(tmp_path):
    x, y = data()
    train = DataLoader(TensorDataset(x, y), batch_size=32)
    forget = {c: DataLoader(TensorDataset(x[y == c], y[y == c]), batch_size=32) for c in range(3)}
    n_train_batches = -(-len(x) // 64)

    first_model = make_net()
    first = SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    first.unlearn(first_model, forget[0], train=train)
    files = list((tmp_path / "importance").glob("*/importance.pt"))
    assert not first.cache_hit_ and len(files) == 1 and files[0] == first.cache_path_
    stamp = files[0].stat().st_mtime_ns
    assert first_model.calls == n_train_batches + -(-int((y == 0).sum()) // 64)

    model = make_net()  # same original weights: a second forget request
    second = SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    second.unlearn(model, forget[1], train=train)
    assert second.cache_hit_ and second.cache_path_ == files[0]
    assert model.calls == -(-int((y == 1).sum()) // 64)  # only the D_f pass ran
    for n, v in first.importance_train_.items():
        torch.testing.assert_close(second.importance_train_[n], v, rtol=0, atol=0)
    uncached = make_net()
    SSD(alpha=2.0, order="by_label", cache=False).unlearn(uncached, forget[1], train=train)
    torch.testing.assert_close(flat(model), flat(uncached), rtol=0, atol=0)
    assert files[0].stat().st_mtime_ns == stamp  # never rewritten

    # Another original model, other data, another definition: other keys, new entries.
    SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path)).unlearn(
        make_net(seed=5), forget[0], train=train
    )
    SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path), batch_size=32).unlearn(
        make_net(), forget[0], train=train
    )
    half = DataLoader(TensorDataset(x[:100], y[:100]), batch_size=32)
    SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path)).unlearn(
        make_net(), forget[0], train=half
    )
    lf = LFSSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    lf.unlearn(make_net(), forget[0], train=train)
    assert not lf.cache_hit_
    assert len(list((tmp_path / "importance").glob("*/importance.pt"))) == 5
    assert files[0].stat().st_mtime_ns == stamp
    assert not list((tmp_path / "importance").glob(".*"))  # no temp directories left


def test_cache_entry_with_another_key_is_refused(tmp_path):
    dl = loaders()
    method = SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    method.unlearn(make_net(), dl["forget"], train=dl["train"])
    manifest = method.cache_path_.parent / "manifest.json"
    blob = json.loads(manifest.read_text())
    blob["key"]["model"] = "0" * 64
    manifest.write_text(json.dumps(blob))
    before = manifest.read_bytes()
    with pytest.raises(ValueError, match="holds another config"):
        SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path)).unlearn(
            make_net(), dl["forget"], train=dl["train"]
        )
    assert manifest.read_bytes() == before


def test_cache_off_writes_nothing_and_default_dir_is_used(tmp_path, monkeypatch):
    dl = loaders()
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "default"))
    SSD(alpha=2.0, order="by_label", cache=False).unlearn(
        make_net(), dl["forget"], train=dl["train"]
    )
    assert not (tmp_path / "default").exists()
    method = SSD(alpha=2.0, order="by_label")
    method.unlearn(make_net(), dl["forget"], train=dl["train"])
    assert method.cache_path_.parent.parent == tmp_path / "default" / "importance"
    assert method.cache_path_.is_file()


# -- unlearnkit run / LightningCLI accept SSD and LF-SSD ------------------------------------------
def test_run_config_resolves_ssd_and_lfssd():
    from unlearnkit.vision.experiment import run_parser

    parser = run_parser()
    cfg = parser.parse_object(
        {
            "data": {"class_path": "unlearnkit.datasets.DigitsDataModule"},
            "forget": [{"kind": "class", "classes": [0]}],
            "methods": [
                {"class_path": "SSD", "init_args": {"alpha": 5.0, "layers": ["head"]}},
                {"class_path": "LFSSD"},
            ],
        }
    )
    methods = parser.instantiate(cfg).methods
    assert type(methods[0]) is SSD and methods[0].alpha == 5.0 and methods[0].layers == ["head"]
    assert type(methods[1]) is LFSSD and methods[1].loss == "l2_output"


# -- DDP: 2 CPU processes (gloo) through Lightning's ddp strategy ---------------------------------
class TinyImages(UnlearningDataModule):
    """D_train = 150 uint8 6x6 images in 3 classes (class 0 forgotten)."""

    def load(self):
        x, y = data()
        images = ((x - x.min()) / (x.max() - x.min()) * 255).round().to(torch.uint8)
        ds = TensorImageDataset(images, y, mean=[0.5], std=[0.25], classes=["a", "b", "c"])
        return ds, ds.subset(torch.arange(30))


def _single_process(tmp: str) -> tuple[dict, dict, torch.Tensor]:
    dm = TinyImages(forget=ForgetSpec(kind="class", classes=[0]), batch_size=16)
    dm.setup()
    model = make_net().float()
    method = SSD(alpha=2.0, batch_size=16, cache_dir=tmp)
    # what UnlearningModule.on_fit_start passes: I_D over the unshuffled D_train
    train = dm.full_train_dataloader(shuffle=False)
    method.unlearn(model, dm.forget_dataloader(), dm.retain_dataloader(), train=train)
    return method.importance_forget_, method.importance_train_, flat(model)


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:

    from unlearnkit.module import UnlearningModule, default_trainer

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        NODE_RANK="0",
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
    )  # as Lightning's launcher sets
    torch.set_num_threads(1)
    dm = TinyImages(forget=ForgetSpec(kind="class", classes=[0]), batch_size=16)
    model = make_net().float()
    method = SSD(alpha=2.0, batch_size=16, cache_dir=str(Path(out_dir) / "cache"))
    trainer = default_trainer(0, strategy="ddp", devices=WORLD)
    trainer.fit(UnlearningModule(model, method), datamodule=dm)
    out = {
        "forget": method.importance_forget_,
        "train": method.importance_train_,
        "weights": flat(model),
        "calls": model.calls,
        "hit": method.cache_hit_,
    }
    # The same request again on the same original: every rank must agree on the cache hit.
    again = SSD(alpha=2.0, batch_size=16, cache_dir=str(Path(out_dir) / "cache"))
    train = dm.full_train_dataloader(shuffle=False)
    again.unlearn(make_net().float(), dm.forget_dataloader(), dm.retain_dataloader(), train=train)
    out["second_hit"] = again.cache_hit_
    torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_importances_equal_single_process(tmp_path):
    # fork: the workers inherit the imported modules (spawn would re-import Lightning twice)
    mp.start_processes(
        _ddp_worker,
        args=(_free_port(), str(tmp_path)),
        nprocs=WORLD,
        join=True,
        start_method="fork",
    )
    i_f, i_d, weights = _single_process(str(tmp_path / "single"))
    n_batches = -(-150 // 16) + -(-50 // 16)  # I_D over D_train, I_F over D_f
    calls = []
    for rank in range(WORLD):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for n in i_f:
            torch.testing.assert_close(out["forget"][n], i_f[n], rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(out["train"][n], i_d[n], rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(out["weights"], weights, rtol=1e-5, atol=1e-7)
        assert not out["hit"] and out["second_hit"]
        calls.append(out["calls"])
    assert not torch.allclose(weights, flat(make_net().float()))  # the update is not trivial
    # Each rank ran about half of the batches: the work is split, not repeated.
    assert sum(calls) == n_batches and max(calls) - min(calls) <= 2, calls
