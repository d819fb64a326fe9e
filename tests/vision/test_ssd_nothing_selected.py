"""SSD that dampens nothing says so, with the alpha that would select something."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.vision.methods import SSD


def _setup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 5, generator=g)
    y = torch.arange(3).repeat(16)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    forget = DataLoader(TensorDataset(x[y == 0], y[y == 0]), batch_size=8)
    retain = DataLoader(TensorDataset(x[y != 0], y[y != 0]), batch_size=8)
    return model, forget, retain


def _slow_ratio(model, forget, retain) -> float:
    """max I_F / I_D by hand: squared batch gradients summed over batches, / number of batches."""

    def importance(batches):
        total = [torch.zeros_like(p) for p in model.parameters()]
        n = 0
        for x, y in batches:
            model.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            for t, p in zip(total, model.parameters(), strict=True):
                t += p.grad.detach() ** 2
            n += 1
        return [t / n for t in total]

    # D = D_r sorted by label, then D_f (SSD's reference order), batches of 64
    xr = torch.cat([b[0] for b in retain])
    yr = torch.cat([b[1] for b in retain])
    order = torch.argsort(yr, stable=True)
    xf = torch.cat([b[0] for b in forget])
    yf = torch.cat([b[1] for b in forget])
    xd, yd = torch.cat([xr[order], xf]), torch.cat([yr[order], yf])
    train = [(xd[i : i + 64], yd[i : i + 64]) for i in range(0, len(xd), 64)]
    i_d = importance(train)
    i_f = importance([(xf[i : i + 64], yf[i : i + 64]) for i in range(0, len(xf), 64)])
    return max(float((f[d > 0] / d[d > 0]).max()) for f, d in zip(i_f, i_d, strict=True))


def test_ssd_warns_when_it_dampens_nothing_and_names_the_alpha_that_would():
    model, forget, retain = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    expected = _slow_ratio(model, forget, retain)
    with pytest.warns(
        UserWarning, match=r"dampened 0 of the model.s parameters at alpha=1000000.0"
    ):
        SSD(alpha=1e6, cache=False).unlearn(model, forget, retain)
    for a, b in zip(before, model.parameters(), strict=True):
        assert torch.equal(a, b)  # unchanged, as the warning says
    with pytest.warns(UserWarning) as record:
        SSD(alpha=1e6, cache=False).unlearn(model, forget, retain)
    shown = float(re.search(r"the largest I_F/I_D is ([0-9.e+-]+)", str(record[0].message))[1])
    assert shown == pytest.approx(expected, rel=1e-2)  # printed to 3 significant digits
    method = SSD(alpha=0.9 * expected, cache=False)
    method.unlearn(model, forget, retain)
    assert method.n_selected_ >= 1  # just below the named alpha, something is selected
