"""SalUn: the saliency mask by hand, masked weights bit-identical through momentum and weight
decay (the reference's issue #32), the CLI path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.vision import SalUn
from unlearnkit.vision.methods.salun import saliency_mask


def test_mask_is_the_global_top_share_of_the_summed_negative_ce_gradient():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(6, 3)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    # by hand: for softmax CE, d(-CE_mean)/dW = -(softmax(Wx + b) - onehot) x^T / B per batch
    grad_w, grad_b = torch.zeros(2, 3), torch.zeros(2)
    for xb, yb in batches:
        with torch.no_grad():
            p = torch.softmax(model(xb), 1)
        err = -(p - F.one_hot(yb, 2).float()) / len(xb)
        grad_w += err.t() @ xb
        grad_b += err.sum(0)
    scores = torch.cat([grad_w.abs().flatten(), grad_b.abs()])
    top = set(torch.argsort(scores, descending=True)[:4].tolist())  # ratio 0.5 of 8 entries
    mask = saliency_mask(model, batches, ratio=0.5)
    got = torch.cat([mask["weight"].flatten(), mask["bias"]])
    assert set(got.nonzero().flatten().tolist()) == top
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())  # cleared
    with pytest.raises(ValueError, match="ratio"):
        saliency_mask(model, batches, ratio=0.0)


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=g)
    y = (x[:, 0] > 0).long()
    forget = DataLoader(TensorDataset(x[:8], y[:8]), batch_size=8)
    retain = DataLoader(TensorDataset(x[8:], y[8:]), batch_size=8)
    return forget, retain


def test_masked_out_weights_stay_bit_identical_through_momentum_and_weight_decay():
    forget, retain = _loaders()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method = SalUn(epochs=3, lr=0.05, momentum=0.9, weight_decay=0.1, mask_ratio=0.3)
    method.unlearn(model, forget, retain)
    changed_inside = 0
    for name, param in model.named_parameters():
        mask = method.mask_[name]
        assert torch.equal(param[~mask], before[name][~mask]), name  # bit-identical
        changed_inside += int((param[mask] != before[name][mask]).sum())
    assert changed_inside > 0  # the salient weights did move
    total = sum(m.numel() for m in method.mask_.values())
    assert sum(int(m.sum()) for m in method.mask_.values()) == round(0.3 * total)
