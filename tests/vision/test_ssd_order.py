"""SSD's batch order for I_D: the reference's D_r-then-D_f default, the other orders, and what
happens to a shuffled ``train=`` loader.

The reference code (github.com/if-loops/selective-synaptic-dampening, ``forget_full_class_main.py``)
builds ``full_train_dl = DataLoader(ConcatDataset((retain_train, forget_train)), batch_size)``,
unshuffled, with ``retain_train`` filled class by class (``build_retain_forget_sets``). The
reference importances below are plain loops over loaders built here, independently of SSD's code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from unlearnkit.vision.methods import LFSSD, SSD

N_CLASSES, PER_CLASS, FORGET = 4, 50, 0


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(6, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def make_net() -> Net:
    torch.manual_seed(0)
    return Net().double()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """200 samples of 4 classes in mixed (index) order, each class shifting its own features."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(N_CLASSES).repeat(PER_CLASS)[
        torch.randperm(N_CLASSES * PER_CLASS, generator=g)
    ]
    x = torch.randn(len(y), 8, generator=g, dtype=torch.float64)
    x[torch.arange(len(y)), 2 * y] += 2.0
    return x, y


def split():
    """D_train, D_r and D_f as the project passes them: D_r/D_f in index order, shuffled loaders."""
    x, y = data()
    f = y == FORGET
    return {
        "x": x,
        "y": y,
        "train": DataLoader(TensorDataset(x, y), batch_size=32),
        "forget": DataLoader(TensorDataset(x[f], y[f]), batch_size=32, shuffle=True),
        "retain": DataLoader(TensorDataset(x[~f], y[~f]), batch_size=32, shuffle=True),
    }


def loop_importance(model: nn.Module, loader) -> dict[str, torch.Tensor]:
    """The reference's ``calc_importance``: per batch, squared grad of the batch-mean CE loss,
    summed, then divided by the number of batches; eval mode."""
    model.eval()
    imp = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = 0
    for x, y in loader:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for n, p in model.named_parameters():
            imp[n] += p.grad.detach() ** 2
        batches += 1
    model.zero_grad()
    return {n: v / batches for n, v in imp.items()}


def reference_sets(x, y):
    """``build_retain_forget_sets``: retain = every other class in ascending order, then forget."""
    retain = [
        (x[i], y[i]) for c in range(N_CLASSES) if c != FORGET for i in range(len(y)) if y[i] == c
    ]
    forget = [(x[i], y[i]) for i in range(len(y)) if y[i] == FORGET]
    return retain, forget


def assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=1e-10, atol=1e-15)


def differs(a: dict, b: dict, name: str = "fc2.weight") -> float:
    return float(((a[name] - b[name]).abs() / b[name].abs().clamp_min(1e-30)).max())


# -- the default is the reference's order --------------------------------------------------------
def test_default_order_is_retain_by_class_then_forget():
    s = split()
    assert SSD().order == "reference" and LFSSD().order == "reference"
    method = SSD(cache=False)
    method.unlearn(make_net(), s["forget"], s["retain"], train=s["train"])
    retain, forget = reference_sets(s["x"], s["y"])
    full_train_dl = DataLoader(ConcatDataset([retain, forget]), batch_size=64)
    forget_train_dl = DataLoader(forget, batch_size=64)
    # 150 retained samples then 50 forget samples: batches 0-63, 64-127, 128-191, 192-199
    assert [len(b[1]) for b in full_train_dl] == [64, 64, 64, 8]
    assert_same(method.importance_train_, loop_importance(make_net(), full_train_dl))
    assert_same(method.importance_forget_, loop_importance(make_net(), forget_train_dl))
    # the same without train=: I_D never needed it
    no_train = SSD(cache=False)
    no_train.unlearn(make_net(), s["forget"], s["retain"])
    assert_same(no_train.importance_train_, method.importance_train_)


def test_by_label_is_kept_and_moves_the_batch_boundaries():
    s = split()
    by_label = SSD(cache=False, order="by_label")
    by_label.unlearn(make_net(), s["forget"], s["retain"], train=s["train"])
    x, y = s["x"], s["y"]
    ordered = [(x[i], y[i]) for c in range(N_CLASSES) for i in range(len(y)) if y[i] == c]
    want = loop_importance(make_net(), DataLoader(ordered, batch_size=64))
    assert_same(by_label.importance_train_, want)
    reference = SSD(cache=False)
    reference.unlearn(make_net(), s["forget"], s["retain"], train=s["train"])
    # same samples, classes 1,2,3,0 instead of 0,1,2,3: another batch-empirical I_D
    assert differs(reference.importance_train_, by_label.importance_train_) > 0.05


def test_retain_then_forget_and_as_given_keep_the_datasets_order():
    s = split()
    x, y = s["x"], s["y"]
    f = y == FORGET
    concat = ConcatDataset([TensorDataset(x[~f], y[~f]), TensorDataset(x[f], y[f])])
    rtf = SSD(cache=False, order="retain_then_forget")
    rtf.unlearn(make_net(), s["forget"], s["retain"], train=s["train"])
    assert_same(rtf.importance_train_, loop_importance(make_net(), DataLoader(concat, 64)))
    given = SSD(cache=False, order="as_given")
    given.unlearn(make_net(), s["forget"], train=s["train"])
    whole = DataLoader(TensorDataset(x, y), batch_size=64)
    assert_same(given.importance_train_, loop_importance(make_net(), whole))


# -- a shuffled train= loader: refused where it would be rebuilt, honoured with batch_size=None ---
def shuffled_train(seed: int = 0) -> DataLoader:
    x, y = data()
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=gen)


@pytest.mark.parametrize("order", ["by_label", "as_given"])
def test_shuffled_train_is_refused_when_it_would_be_rebuilt(order):
    s = split()
    with pytest.raises(ValueError, match="train= is not an unshuffled DataLoader"):
        SSD(cache=False, order=order).unlearn(make_net(), s["forget"], train=shuffled_train())


@pytest.mark.parametrize("order", ["reference", "by_label", "as_given"])
def test_shuffled_train_is_honoured_as_given_with_batch_size_none(order):
    s = split()
    method = SSD(cache=False, order=order, batch_size=None)
    method.unlearn(make_net(), s["forget"], s["retain"], train=shuffled_train(seed=7))
    # the same permutation and batches of 32, replayed by a loader with the same seed
    assert_same(method.importance_train_, loop_importance(make_net(), shuffled_train(seed=7)))


def test_reference_order_checks_train_and_needs_retain():
    s = split()
    # shuffled or not, train= is not read in the reference order: the result is the reference's
    a, b = SSD(cache=False), SSD(cache=False)
    a.unlearn(make_net(), s["forget"], s["retain"], train=shuffled_train())
    b.unlearn(make_net(), s["forget"], s["retain"])
    assert_same(a.importance_train_, b.importance_train_)
    with pytest.raises(ValueError, match="needs retain="):
        SSD(cache=False).unlearn(make_net(), s["forget"], train=s["train"])
    x, y = data()
    short = DataLoader(TensorDataset(x[:100], y[:100]), batch_size=32)
    with pytest.raises(ValueError, match=r"holds 100 samples, not \|D_r\| \+ \|D_f\| = 150 \+ 50"):
        SSD(cache=False).unlearn(make_net(), s["forget"], s["retain"], train=short)
    with pytest.raises(ValueError, match="order must be one of"):
        SSD(cache=False, order="sorted").unlearn(make_net(), s["forget"], s["retain"])


def test_label_free_data_needs_a_label_free_order():
    x, _ = data()
    vectors = torch.zeros(len(x), 2)  # a target that is no class id: nothing to sort by
    forget = DataLoader(TensorDataset(x[:50], vectors[:50]), batch_size=32)
    retain = DataLoader(TensorDataset(x[50:], vectors[50:]), batch_size=32)
    with pytest.raises(ValueError, match="pass order='retain_then_forget'"):
        LFSSD(cache=False).unlearn(make_net(), forget, retain)
    LFSSD(cache=False, alpha=2.0, order="retain_then_forget").unlearn(make_net(), forget, retain)
