"""SCRUB: the distillation loss by hand, the max/min pass order, msteps, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.streams import LoaderSource
from unlearnkit.vision import SCRUB
from unlearnkit.vision.methods.scrub import ForgetThenRetain, distill_kl


def test_distill_kl_by_hand():
    student = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    teacher = torch.tensor([[0.0, 2.0], [2.0, 0.0]], dtype=torch.float64)
    t = 2.0  # logits / T: student [0, 0], [1, 0]; teacher [0, 1], [1, 0]
    p_t0 = [1 / (1 + math.e), math.e / (1 + math.e)]
    kl0 = sum(p * math.log(p / 0.5) for p in p_t0)  # sample 1: identical, KL 0
    expected = t**2 * (kl0 + 0.0) / 2
    assert float(distill_kl(student, teacher, t)) == pytest.approx(expected, abs=1e-12)


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 4, generator=g)
    y = (x[:, 0] > 0).long()
    forget = DataLoader(TensorDataset(x[:6], y[:6]), batch_size=4)
    retain = DataLoader(TensorDataset(x[6:], y[6:]), batch_size=16)
    return forget, retain


def test_each_epoch_is_the_forget_pass_then_the_retain_pass():
    forget, retain = _loaders()
    loader = ForgetThenRetain().build(SCRUB(seed=1), None, LoaderSource(forget, retain))
    for _epoch in range(2):
        flags = [bool(b[2]["from_forget"][0]) for b in loader]
        sizes = [len(b[0]) for b in loader]
        assert flags == [True, True, False, False, False]  # 6 = 4 + 2, then 34 = 16 + 16 + 2
        assert sizes == [4, 2, 16, 16, 2]
    assert len(loader) == 5


def test_max_steps_stop_after_msteps_and_the_student_leaves_the_teacher_on_forget():
    forget, retain = _loaders()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    method = SCRUB(msteps=1, epochs=2, lr=0.05)
    seen = []
    original_loss = SCRUB.loss

    def spy(self, model, batch, *, epoch):
        out = original_loss(self, model, batch, epoch=epoch)
        part = batch["forget_then_retain"]
        seen.append((epoch, bool(part.attr("from_forget")[0]), out is None))
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SCRUB, "loss", spy)
        method.unlearn(model, forget, retain)
    # epoch 0: 2 max-step batches run; epoch 1: both forget batches skipped (msteps = 1)
    assert [s for s in seen if s[1]] == [
        (0, True, False),
        (0, True, False),
        (1, True, True),
        (1, True, True),
    ]
    assert sum(1 for s in seen if not s[1]) == 6  # 3 retain batches per epoch, always run
    x_f = torch.cat([b[0] for b in forget])
    with torch.no_grad():
        gap = distill_kl(model(x_f), method.teacher_(x_f), 1.0)
    assert float(gap) > 1e-3  # the student moved away from θ_o on D_f


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"kd_T": 0.0}, "kd_T"), ({"msteps": -1}, "msteps")]
)
def test_bad_hyperparameters(kwargs, message):
    forget, retain = _loaders()
    with pytest.raises(ValueError, match=message):
        SCRUB(**kwargs).unlearn(nn.Linear(4, 2), forget, retain)
