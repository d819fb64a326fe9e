"""ℓ1-sparse: the γ schedule of the reference code and the loss, by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.base import UnlearnBatch
from unlearnkit.vision import L1Sparse


def test_l1_weight_decays_linearly_as_the_reference():
    m = L1Sparse(alpha=0.5, epochs=10, no_l1_epochs=2)  # decay over 8 epochs, then 0
    assert [m.l1_weight(e) for e in range(10)] == [
        0.5,
        0.4375,
        0.375,
        0.3125,
        0.25,
        0.1875,
        0.125,
        0.0625,
        0.0,
        0.0,
    ]
    assert L1Sparse(alpha=0.5, epochs=3, no_l1_epochs=3).l1_weight(1) == 0.5  # E == no_l1
    assert L1Sparse(alpha=0.5, epochs=4).l1_weight(0) == 0.5


def test_loss_is_cross_entropy_plus_weighted_l1_by_hand():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
        model.bias.copy_(torch.tensor([0.25, -0.75]))
    x, y = torch.tensor([[1.0, 1.0]]), torch.tensor([1])
    # logits: [1 - 2 + 0.25, 0.5 + 0 - 0.75] = [-0.75, -0.25]; CE(y=1) = log(1 + e^(-0.5))
    ce = math.log(1.0 + math.exp(-0.5))
    l1 = 1.0 + 2.0 + 0.5 + 0.0 + 0.25 + 0.75  # 4.5
    method = L1Sparse(alpha=0.1, epochs=4)
    loss = method.loss(model, UnlearnBatch({"retain": (x, y)}), epoch=2)  # γ = 0.1 * (1 - 2/4)
    assert float(loss) == pytest.approx(ce + 0.05 * l1, abs=1e-6)


def test_the_penalty_shrinks_weights_more_than_fine_tuning():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    forget = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)
    retain = DataLoader(TensorDataset(x[8:], y[8:]), batch_size=16)

    def l1_after(alpha: float) -> float:
        torch.manual_seed(0)
        model = nn.Linear(4, 2)
        L1Sparse(alpha=alpha, epochs=3, lr=0.05, weight_decay=0.0).unlearn(model, forget, retain)
        return float(sum(p.abs().sum() for p in model.parameters()))

    assert l1_after(0.05) < l1_after(0.0) - 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"alpha": -1.0}, "alpha"), ({"no_l1_epochs": 5}, "no_l1_epochs")]
)
def test_bad_hyperparameters(kwargs, message):
    x, y = torch.randn(8, 2), torch.zeros(8, dtype=torch.long)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    with pytest.raises(ValueError, match=message):
        L1Sparse(epochs=2, **kwargs).unlearn(nn.Linear(2, 2), loader, loader)
