"""UNSIR: the noise objective and one Adam step by hand, the noise's effect, the impair-then-repair
schedule (which batches each epoch trains on, the optimizer restart), determinism, bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _helpers import TinyMLP
from unlearnkit.streams import LoaderSource
from unlearnkit.vision import UNSIR
from unlearnkit.vision.methods.unsir import NoiseThenRetain, learn_noise, unsir_noise_loss


def _linear(weight, bias) -> nn.Linear:
    model = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weight))
        model.bias.copy_(torch.tensor(bias))
    return model


W, B = [[1.0, -2.0], [0.5, 1.5], [-1.0, 0.0]], [0.1, -0.2, 0.3]


def _by_hand(noise: list[list[float]], label: int, lam: float):
    """−CE + λ·mean_b Σ n² (−CE = mean log p_label) and its gradient in n, in float64 Python."""
    value, grads = 0.0, []
    n = len(noise)
    for x in noise:
        z = [
            sum(w * xi for w, xi in zip(row, x, strict=True)) + b
            for row, b in zip(W, B, strict=True)
        ]
        m = max(z)
        s = sum(math.exp(v - m) for v in z)
        p = [math.exp(v - m) / s for v in z]
        value += math.log(p[label]) / n + lam * sum(xi * xi for xi in x) / n
        err = [pk - (k == label) for k, pk in enumerate(p)]  # d CE / d z
        grads.append(
            [
                -sum(err[k] * W[k][j] for k in range(3)) / n + 2 * lam * x[j] / n
                for j in range(len(x))
            ]
        )
    return value, grads


def test_noise_objective_and_one_adam_step_by_hand():
    model = _linear(W, B)
    noise = [[0.3, -1.2], [2.0, 0.7]]
    value, grads = _by_hand(noise, label=1, lam=0.1)
    t = torch.tensor(noise)
    assert float(unsir_noise_loss(model(t), t, 1, 0.1)) == pytest.approx(value, abs=1e-6)

    # learn_noise draws N(0, 1) from the generator, then Adam: the first step moves each entry by
    # lr * g / (|g| + eps) (bias-corrected moments m = g, v = g²)
    start = torch.randn((2, 2), generator=torch.Generator().manual_seed(5)).tolist()
    _, g = _by_hand(start, label=1, lam=0.1)
    expected = [
        [x - 0.1 * gi / (abs(gi) + 1e-8) for x, gi in zip(r, gr, strict=True)]
        for r, gr in zip(start, g, strict=True)
    ]
    got = learn_noise(
        model,
        1,
        (2,),
        batch_size=2,
        steps=1,
        lr=0.1,
        l2_weight=0.1,
        generator=torch.Generator().manual_seed(5),
    )
    torch.testing.assert_close(got, torch.tensor(expected), rtol=0, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # only the noise got gradients


def test_the_noise_raises_the_models_loss_on_the_forget_label(trained_mlp, blob_splits):
    model = TinyMLP()
    model.load_state_dict(trained_mlp)
    before = copy.deepcopy(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    start = torch.randn((32, 8), generator=torch.Generator().manual_seed(0))
    noise = learn_noise(
        model, 0, (8,), batch_size=32, steps=25, lr=0.1, l2_weight=0.1, generator=gen
    )
    zeros = torch.zeros(32, dtype=torch.long)
    with torch.no_grad():
        ce_start = F.cross_entropy(model(start), zeros)
        ce_noise = F.cross_entropy(model(noise), zeros)
        x_f = torch.cat([x for x, _ in blob_splits["forget_eval"]])
        ce_forget = F.cross_entropy(model(x_f), torch.zeros(len(x_f), dtype=torch.long))
    assert ce_noise > ce_start + 1.0 and ce_noise > ce_forget + 1.0
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])  # θ_o untouched


def _loaders(n_forget=6, n_retain=12, forget_labels=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_forget + n_retain, 8, generator=g)
    y_f = torch.zeros(n_forget, dtype=torch.long) if forget_labels is None else forget_labels
    y_r = torch.arange(n_retain) % 2 + 1  # labels 1, 2, 1, 2, ...
    forget = DataLoader(TensorDataset(x[:n_forget], y_f), batch_size=4, shuffle=True)
    retain = DataLoader(TensorDataset(x[n_forget:], y_r), batch_size=4, shuffle=True)
    return forget, retain


SMALL = {
    "noise_batch_size": 4,
    "noise_steps": 3,
    "noise_copies": 2,
    "retain_per_class": 3,
    "impair_batch_size": 5,
    "repair_batch_size": 4,
}


def test_the_stream_is_the_impair_batches_then_the_repair_batches():
    forget, retain = _loaders()
    method = UNSIR(**SMALL)
    loader = NoiseThenRetain().build(method, TinyMLP(), LoaderSource(forget, retain))
    # the retain subset: the first 3 samples of each label of D_r, in D_r's order
    assert method.retain_subset_.tolist() == [0, 1, 2, 3, 4, 5]
    subset = retain.dataset.tensors[0][:6]
    batches = list(loader)
    impair = [b for b in batches if bool(b[2]["impair"][0])]
    assert [bool(b[2]["impair"][0]) for b in batches] == [True] * 3 + [False] * 2
    assert [len(b[0]) for b in batches] == [5, 5, 4, 4, 2]  # (2·4 noise + 6) by 5, then 6 by 4
    for b in batches:  # one phase per batch
        assert bool((b[2]["impair"] == b[2]["impair"][0]).all())
    x_imp = torch.cat([b[0] for b in impair])
    y_imp = torch.cat([b[1] for b in impair])
    from_noise = torch.cat([b[2]["from_noise"] for b in impair])
    assert int(from_noise.sum()) == 8 and bool((y_imp[from_noise] == 0).all())  # forget label
    noise = method.noise_[0]
    for row in x_imp[from_noise]:  # each noise sample, copies times
        assert any(torch.equal(row, n) for n in noise)
    assert sorted(map(tuple, x_imp[~from_noise].tolist())) == sorted(map(tuple, subset.tolist()))
    x_rep = torch.cat([b[0] for b in batches[3:]])
    assert sorted(map(tuple, x_rep.tolist())) == sorted(map(tuple, subset.tolist()))
    assert not any(bool(b[2]["from_noise"].any()) for b in batches[3:])


class Recording(UNSIR):
    """UNSIR that records every batch it is handed: (epoch, impair?, trained?, x, y, lr)."""

    def loss(self, model, batch, *, epoch):
        out = super().loss(model, batch, epoch=epoch)
        part = batch["noise_then_retain"]
        lr = self.torch_optimizer_.param_groups[0]["lr"]
        self.seen.append((epoch, bool(part.attr("impair")[0]), out is not None, part.x, part.y, lr))
        return out


def test_epoch_0_impairs_epoch_1_repairs_each_with_a_fresh_adam():
    forget, retain = _loaders()
    torch.manual_seed(0)
    model = TinyMLP()
    start = copy.deepcopy(model)
    method = Recording(**SMALL, lr=0.01, repair_lr=0.003, seed=2)
    method.seen = []
    method.unlearn(model, forget, retain)
    trained = [s for s in method.seen if s[2]]
    assert {(s[0], s[1]) for s in method.seen} == {(0, True), (0, False), (1, True), (1, False)}
    assert [(s[0], s[1]) for s in trained] == [(0, True)] * 3 + [(1, False)] * 2
    assert [s[5] for s in trained] == [0.01] * 3 + [0.003] * 2
    # replay: the reference's two fit_one_unlearning_cycle calls, each a new Adam
    replay = start
    for epoch, lr in ((0, 0.01), (1, 0.003)):
        opt = torch.optim.Adam(replay.parameters(), lr=lr)
        for _, _, _, x, y, _ in (s for s in trained if s[0] == epoch):
            opt.zero_grad()
            F.cross_entropy(replay(x), y).backward()
            opt.step()
    for a, b in zip(model.parameters(), replay.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_more_epochs_repair_longer_with_one_restart():
    forget, retain = _loaders()
    method = Recording(**SMALL, epochs=3, impair_epochs=1)
    method.seen = []
    method.unlearn(TinyMLP(), forget, retain)
    trained = [(s[0], s[1]) for s in method.seen if s[2]]
    assert trained == [(0, True)] * 3 + [(1, False)] * 2 + [(2, False)] * 2


def test_random_forgetting_learns_one_noise_per_label_of_the_forget_set():
    forget, retain = _loaders(forget_labels=torch.tensor([0, 2, 0, 2, 0, 0]))
    method = UNSIR(**SMALL)
    loader = NoiseThenRetain().build(method, TinyMLP(), LoaderSource(forget, retain))
    assert sorted(method.noise_) == [0, 2]
    y_noise = torch.cat([b[1][b[2]["from_noise"]] for b in loader])
    assert torch.bincount(y_noise, minlength=3).tolist() == [8, 0, 8]  # 2 copies of 4, per label


def test_same_seed_same_noise_and_model_other_seed_other_noise():
    forget, retain = _loaders()
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)
        model = TinyMLP()
        method = UNSIR(**SMALL, lr=0.01, seed=seed)
        method.unlearn(model, forget, retain)
        runs.append((method.noise_[0], torch.cat([p.flatten() for p in model.parameters()])))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"noise_batch_size": 0}, "noise_batch_size"),
        ({"noise_copies": 0}, "noise_copies"),
        ({"retain_per_class": 0}, "retain_per_class"),
        ({"repair_batch_size": 0}, "repair_batch_size"),
        ({"noise_steps": -1}, "noise_steps"),
        ({"l2_weight": -0.1}, "l2_weight"),
        ({"impair_epochs": 3}, "impair_epochs"),
        ({"impair_epochs": 0}, "impair_epochs"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    forget, retain = _loaders()
    with pytest.raises(ValueError, match=message):
        UNSIR(**kwargs).unlearn(TinyMLP(), forget, retain)


def test_a_forget_label_the_model_does_not_have_is_an_error():
    forget, retain = _loaders(forget_labels=torch.full((6,), 5))
    with pytest.raises(ValueError, match="forget label 5 is not a class of the model"):
        UNSIR(**SMALL).unlearn(TinyMLP(), forget, retain)
