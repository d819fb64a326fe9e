"""Amnesiac (as the SSD repository runs it): wrong labels by hand, fixed for the whole run, the
D_f ∪ all-of-D_r pass with one Adam, determinism, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from _helpers import TinyMLP
from unlearnkit.streams import LoaderSource
from unlearnkit.vision import Amnesiac, RandomLabel
from unlearnkit.vision.methods.amnesiac import RelabelledUnion


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 8, generator=g)
    y = torch.arange(30) % 3
    forget = DataLoader(TensorDataset(x[:10], y[:10]), batch_size=4, shuffle=True)
    retain = DataLoader(TensorDataset(x[10:], y[10:]), batch_size=6, shuffle=True)
    return forget, retain


def _labels_by_sample(loader):
    """{sample x as a tuple: (label, from_forget)} over one pass."""
    out = {}
    for x, y, attrs in loader:
        for xi, yi, fi in zip(x, y, attrs["from_forget"], strict=True):
            out[tuple(xi.tolist())] = (int(yi), bool(fi))
    return out


def test_wrong_labels_by_hand_never_the_true_one_and_fixed_across_epochs():
    forget, retain = _loaders()
    method = Amnesiac(seed=7)
    loader = RelabelledUnion().build(method, TinyMLP(), LoaderSource(forget, retain))
    y_f = forget.dataset.tensors[1]
    # by hand: the true label plus a uniform offset in {1, 2}, mod 3, from the seeded generator
    offsets = torch.randint(1, 3, (10,), generator=torch.Generator().manual_seed(7))
    assert method.forget_labels_.tolist() == ((y_f + offsets) % 3).tolist()
    assert bool((method.forget_labels_ != y_f).all())
    first, second = _labels_by_sample(loader), _labels_by_sample(loader)
    assert first == second  # the same wrong label at every visit (RandomLabel redraws)
    assert len(first) == 30  # all of D_f and all of D_r, each once per epoch
    for x, y in zip(forget.dataset.tensors[0], method.forget_labels_, strict=True):
        assert first[tuple(x.tolist())] == (int(y), True)
    for x, y in zip(*retain.dataset.tensors, strict=True):
        assert first[tuple(x.tolist())] == (int(y), False)  # D_r keeps its labels


class Recording(Amnesiac):
    def loss(self, model, batch, *, epoch):
        x, y = batch["relabelled_union"]
        self.seen.append((epoch, x, y))
        return super().loss(model, batch, epoch=epoch)


def test_defaults_and_schedule_three_epochs_of_one_adam():
    method = Amnesiac()
    assert (method.epochs, method.lr, method.optimizer, method.weight_decay) == (
        3,
        1e-4,
        "adam",
        0.0,
    )
    assert isinstance(method, RandomLabel)
    forget, retain = _loaders()
    torch.manual_seed(0)
    model = TinyMLP()
    replay = copy.deepcopy(model)
    method = Recording(lr=0.01)
    method.seen = []
    method.unlearn(model, forget, retain)
    assert [e for e, _, _ in method.seen] == [0] * 5 + [1] * 5 + [2] * 5  # 30 samples by 6
    opt = torch.optim.Adam(replay.parameters(), lr=0.01)  # one optimizer for all epochs
    for _, x, y in method.seen:
        opt.zero_grad()
        F.cross_entropy(replay(x), y).backward()
        opt.step()
    for a, b in zip(model.parameters(), replay.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_same_seed_same_labels_and_model_other_seed_other_labels():
    forget, retain = _loaders()
    runs = []
    for seed in (1, 1, 2):
        torch.manual_seed(0)
        model = TinyMLP()
        method = Amnesiac(lr=0.01, seed=seed)
        method.unlearn(model, forget, retain)
        runs.append((method.forget_labels_, torch.cat([p.flatten() for p in model.parameters()])))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0])


def test_a_single_output_model_is_an_error():
    forget, retain = _loaders()
    with pytest.raises(ValueError, match="at least 2 classes"):
        Amnesiac().unlearn(nn.Linear(8, 1), forget, retain)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (torch.arange(10) % 3 + 0.0, "integer class indices"),  # float labels
        ((torch.arange(10) % 3).reshape(10, 1), r"(1-D tensor of class indices|scalar class id)"),
        # beyond the 3 outputs
        (torch.arange(10) % 3 + 2, r"must lie in 0\.\.2 .* got range [0-2]\.\.4"),
    ],
)
def test_bad_forget_labels_are_one_clear_error(labels, match):
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    forget = DataLoader(TensorDataset(x, labels), batch_size=4)
    _, retain = _loaders()
    for method in (Amnesiac(seed=0), RandomLabel(seed=0)):
        with pytest.raises(ValueError, match=match):
            if isinstance(method, Amnesiac):
                RelabelledUnion().build(method, TinyMLP(), LoaderSource(forget, retain))
            else:
                method.unlearn(TinyMLP(), forget, retain)


def test_amnesiac_checks_the_retain_labels_too():
    forget, _ = _loaders()
    x = torch.randn(6, 8)
    retain = DataLoader(TensorDataset(x, torch.tensor([0, 1, 2, 0, 1, 9])), batch_size=3)
    with pytest.raises(ValueError, match=r"Amnesiac: D_r's labels must lie in 0\.\.2"):
        RelabelledUnion().build(Amnesiac(), TinyMLP(), LoaderSource(forget, retain))
