"""Fisher forgetting: the exact added noise against a by-hand reference on a tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.influence import expected_fisher_diagonal
from unlearnkit.vision import FisherForgetting
from unlearnkit.vision.methods.fisher_forgetting import fisher_forgetting_variance


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def _setup(forget_class: bool):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(18, 3, generator=g, dtype=torch.float64)
    y = torch.arange(3).repeat(6)
    torch.manual_seed(0)
    model = Tiny().double()
    forget = y == 0 if forget_class else torch.arange(18) < 4
    make = lambda m: DataLoader(TensorDataset(x[m], y[m]), batch_size=5, shuffle=True)  # noqa: E731
    return model, x, y, forget, make(forget), make(~forget)


def _fisher_by_hand(model: nn.Module, x, y):
    """The reference's hessian(): batch size 1, every class, prob-weighted squared gradients."""
    acc = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        out = model(x[i : i + 1])
        prob = F.softmax(out, dim=-1).detach()
        for c in range(out.shape[1]):
            model.zero_grad()
            F.cross_entropy(out, torch.tensor([c])).backward(retain_graph=True)
            for n, p in model.named_parameters():
                acc[n] += prob[0, c] * p.grad.pow(2)
    return {n: a / len(x) for n, a in acc.items()}


def _expected_update(model, fisher, alpha, seed, forgotten):
    """get_mean_var + the noise, by hand (head = 'head.*', first dim = 3 classes)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for n, p in model.named_parameters():
        var = torch.clamp(1.0 / (fisher[n] + 1e-8), max=1e3)
        is_head = n.startswith("head.")
        if is_head:
            var = torch.clamp(var, max=1e2)
        var = alpha * var
        if p.ndim > 1:
            var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
        mu = p.detach().clone()
        if is_head:
            for c in forgotten:
                mu[c] = 0
                var[c] = 1e-4
            var = var * 10
        elif p.ndim == 1:
            var = var * 10
        eps = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        out[n] = (mu + var.sqrt() * eps, var.sqrt())
    return out


@pytest.mark.parametrize("forget_class", [False, True])
def test_exact_added_noise_against_the_reference_by_hand(forget_class) -> None:
    model, x, y, forget, f_loader, r_loader = _setup(forget_class)
    fisher = _fisher_by_hand(model, x[~forget], y[~forget])
    alpha = 1e-3  # large enough that the clamps bind on some entries and not on others
    expected = _expected_update(model, fisher, alpha, 7, [0] if forget_class else [])
    method = FisherForgetting(alpha=alpha, seed=7)
    method.unlearn(model, f_loader, r_loader)
    assert method.head_ == ["head.bias", "head.weight"]
    assert method.forgotten_classes_ == ([0] if forget_class else [])
    for n, p in model.named_parameters():
        torch.testing.assert_close(method.fisher_[n], fisher[n], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(method.std_[n], expected[n][1], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(p.detach(), expected[n][0], rtol=1e-10, atol=1e-14)


def test_variance_clamps_and_factors() -> None:
    f = torch.tensor([0.0, 1e-5, 0.5], dtype=torch.float64)
    var, keep = fisher_forgetting_variance(f, alpha=2.0, head=False)
    # 1/(F+1e-8) clamped at 1e3, times alpha, times 10 for a 1-D tensor
    torch.testing.assert_close(var, torch.tensor([2e4, 2e4, 2.0 * 10 / (0.5 + 1e-8)]).double())
    assert torch.equal(keep, torch.ones(3, dtype=torch.float64))
    var, keep = fisher_forgetting_variance(f, alpha=2.0, head=True, forgotten_classes=[2])
    # head: clamp at 1e2; class 2's row reset to mean 0, variance 1e-4; times 10
    torch.testing.assert_close(var, torch.tensor([2e3, 2e3, 1e-3]).double())
    assert keep.tolist() == [1.0, 1.0, 0.0]
    w = torch.tensor([[1.0, 0.25], [1e-9, 1.0]], dtype=torch.float64)
    var, _ = fisher_forgetting_variance(w, alpha=1.0, head=False)
    # ndim > 1: one variance per row (mean over dim 1), no factor 10
    torch.testing.assert_close(
        var[:, 0], torch.tensor([(1 + 4) / 2, (1e3 + 1) / 2]).double(), rtol=1e-6, atol=0
    )
    assert torch.equal(var[:, 0], var[:, 1])


def test_same_seed_same_noise_other_seed_other_noise() -> None:
    states = []
    for seed in (1, 1, 2):
        model, _, _, _, f_loader, r_loader = _setup(False)
        FisherForgetting(seed=seed, alpha=1e-4).unlearn(model, f_loader, r_loader)
        states.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(states[0], states[1])
    assert not torch.equal(states[0], states[2])


def test_layers_restrict_the_noise() -> None:
    model, _, _, _, f_loader, r_loader = _setup(False)
    body = model.body.weight.detach().clone()
    FisherForgetting(layers=["head"]).unlearn(model, f_loader, r_loader)
    assert torch.equal(model.body.weight, body)


def test_expected_fisher_diagonal_is_independent_of_the_batching() -> None:
    model, x, y, *_ = _setup(False)
    by_hand = _fisher_by_hand(model, x, y)
    for bs in (1, 7, 18):
        got = expected_fisher_diagonal(
            model, DataLoader(TensorDataset(x, y), batch_size=bs), chunk_size=4
        )
        for n in by_hand:
            torch.testing.assert_close(got[n], by_hand[n], rtol=1e-10, atol=1e-14)


def test_bad_alpha() -> None:
    model, _, _, _, f_loader, r_loader = _setup(False)
    with pytest.raises(ValueError, match="alpha"):
        FisherForgetting(alpha=-1.0).unlearn(model, f_loader, r_loader)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        FisherForgetting(alpha=0.0).unlearn(model, f_loader, r_loader)
