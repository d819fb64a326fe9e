"""IAU: the one-batch reference update, accumulation over batches, Adam's sign-like first step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.vision import IAU


def _setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(23, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (23,), generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    forget = torch.arange(23) < 7
    return model, x, y, forget


def _reference(model, x, y, forget, steps: int = 1, w: float = 1.0):
    """IAU_unlearn.py: each split as ONE batch, loss1 + (-loss2) backward, Adam(1e-3).step()."""
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x[~forget]), y[~forget]).backward()
        (-w * F.cross_entropy(model(x[forget]), y[forget])).backward()
        opt.step()
    return model


def _loaders(x, y, forget, bs: int):
    make = lambda m: DataLoader(TensorDataset(x[m], y[m]), batch_size=bs, shuffle=True)  # noqa: E731
    return make(forget), make(~forget)


@pytest.mark.parametrize("bs", [3, 5, 100])
def test_batched_accumulation_equals_the_one_batch_reference(bs) -> None:
    model, x, y, forget = _setup()
    expected = _reference(model, x, y, forget)
    IAU().unlearn(model, *_loaders(x, y, forget, bs))
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_steps_and_forget_weight_follow_the_reference() -> None:
    model, x, y, forget = _setup()
    expected = _reference(model, x, y, forget, steps=3, w=0.5)
    IAU(steps=3, forget_weight=0.5).unlearn(model, *_loaders(x, y, forget, 4))
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_a_fresh_adam_step_is_about_lr_times_sign() -> None:
    model, x, y, forget = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    g_r = torch.autograd.grad(F.cross_entropy(model(x[~forget]), y[~forget]), model.parameters())
    g_f = torch.autograd.grad(F.cross_entropy(model(x[forget]), y[forget]), model.parameters())
    IAU(lr=1e-3).unlearn(model, *_loaders(x, y, forget, 8))
    for p, b, gr, gf in zip(model.parameters(), before, g_r, g_f, strict=True):
        g = gr - gf
        big = g.abs() > 1e-4  # |g| >> eps: the step is lr * sign(g) to within lr * eps / |g|
        torch.testing.assert_close((p - b)[big], -1e-3 * g.sign()[big], rtol=1e-3, atol=0)
        assert bool(((p - b).abs() <= 1e-3 * (1 + 1e-9)).all())


def test_layers_leave_others_bit_identical_and_grads_untouched() -> None:
    model, x, y, forget = _setup()
    first = model[0].weight.detach().clone()
    model[0].weight.grad = torch.ones_like(first)
    IAU(layers=["2"]).unlearn(model, *_loaders(x, y, forget, 8))
    assert torch.equal(model[0].weight, first)
    assert torch.equal(model[0].weight.grad, torch.ones_like(first))
    assert model[2].weight.grad is None


def test_bad_hyperparameters() -> None:
    model, x, y, forget = _setup()
    for kwargs, match in [({"lr": 0.0}, "lr"), ({"steps": 0}, "steps")]:
        with pytest.raises(ValueError, match=match):
            IAU(**kwargs).unlearn(model, *_loaders(x, y, forget, 8))
