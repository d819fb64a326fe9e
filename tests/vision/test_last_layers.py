"""CF-k / EU-k: only the last k layers move; EU-k re-draws them first."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.vision import CFk, EUk
from unlearnkit.vision.methods.last_layers import last_layers


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return (
        DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8),
        DataLoader(TensorDataset(x[8:], y[8:]), batch_size=8),
    )


def test_last_layers_are_the_modules_owning_parameters_from_the_output():
    model = _model()
    assert last_layers(model, 2) == [model[2], model[4]]  # the ReLUs own nothing
    with pytest.raises(ValueError, match=r"k must be in 1..3"):
        last_layers(model, 4)


@pytest.mark.parametrize("cls", [CFk, EUk])
def test_only_the_last_k_layers_change(cls):
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cls(k=2, epochs=2, lr=0.05, weight_decay=0.1).unlearn(model, *_loaders())
    assert torch.equal(model[0].weight, before["0.weight"])  # frozen: bit-identical
    assert torch.equal(model[0].bias, before["0.bias"])
    assert not torch.equal(model[2].weight, before["2.weight"])
    assert not torch.equal(model[4].weight, before["4.weight"])


def test_eu_k_starts_the_last_layers_from_a_fresh_seeded_init():
    model = _model()
    method = EUk(k=1, epochs=1)
    method.setup(model)  # the re-initialisation alone
    torch.manual_seed(0)
    fresh = nn.Linear(8, 2)  # nn.Linear's own init, seed 0 (as EUk's default seed)
    assert torch.equal(model[4].weight, fresh.weight) and torch.equal(model[4].bias, fresh.bias)
