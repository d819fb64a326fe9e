"""mean_gradient (batching-invariant whole-split gradient) and the gradient-restriction loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.influence import gradient_restriction_loss, mean_gradient

from .helpers import cnn_data, loader, make_cnn


def test_mean_gradient_equals_the_one_batch_gradient_for_any_batching() -> None:
    model = make_cnn()  # BatchNorm + dropout, left in train mode: evaluated in eval mode
    x, y = cnn_data(13)
    model.eval()
    ref = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    model.train()
    for bs in (1, 4, 13):
        got, n = mean_gradient(model, loader(x, y, bs))
        assert n == 13 and model.training
        for g, r in zip(got.values(), ref, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-13)
    assert all(p.grad is None for p in model.parameters())


def test_mean_gradient_empty_loader() -> None:
    with pytest.raises(ValueError, match="no samples"):
        mean_gradient(make_cnn(), [])


def test_gradient_restriction_loss_against_a_by_hand_double_backward() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Tanh(), nn.Linear(5, 3, bias=False))
    net = net.double()
    w1, w2 = net[0].weight, net[2].weight
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    alpha = 0.005

    # First derivative written out (no autograd): z = W2 tanh(W1 x), CE mean over the batch.
    h = torch.tanh(x @ w1.T)
    z = h @ w2.T
    dz = (torch.softmax(z, dim=1) - F.one_hot(y, 3).double()) / len(y)
    d_w2 = dz.T @ h
    d_w1 = ((dz @ w2) * (1 - h**2)).T @ x
    by_hand = F.cross_entropy(z, y) + alpha * (d_w1.norm() + d_w2.norm())  # per-tensor norms
    expected = torch.autograd.grad(by_hand, [w1, w2])

    loss = gradient_restriction_loss(net, x, y, alpha=alpha)
    torch.testing.assert_close(loss, by_hand, rtol=1e-12, atol=0)
    got = torch.autograd.grad(loss, [w1, w2])
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    # the penalty's own gradient is not negligible: the test would see it missing
    plain = torch.autograd.grad(F.cross_entropy(net(x), y), [w1, w2])
    assert float((got[0] - plain[0]).abs().max()) > 1e-5
    # alpha = 0 is the plain loss; the norm of the concatenation would differ
    torch.testing.assert_close(
        gradient_restriction_loss(net, x, y, alpha=0.0), F.cross_entropy(z, y)
    )
    concat = F.cross_entropy(z, y) + alpha * torch.cat([d_w1.flatten(), d_w2.flatten()]).norm()
    assert abs(float((loss - concat).detach())) > 1e-6


def test_gradient_restriction_loss_bad_alpha() -> None:
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="alpha"):
        gradient_restriction_loss(
            net, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), alpha=-1
        )
