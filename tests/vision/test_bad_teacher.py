"""Bad Teacher: the loss by hand, the teachers, and the D_f ∪ 30 % D_r stream."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.streams import LoaderSource
from unlearnkit.vision import BadTeacher
from unlearnkit.vision.methods.bad_teacher import ForgetAndRetainSample, bad_teacher_loss


def test_loss_by_hand_picks_the_teacher_per_sample():
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    competent = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # p = [1/4, 3/4], [1/2, 1/2]
    incompetent = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = [1/2, 1/2], [3/4, 1/4]
    from_forget = torch.tensor([True, False])  # sample 0: incompetent; sample 1: competent

    def kl(p, q):  # KL(p || q) summed over classes
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))

    q1 = [math.e / (math.e + 1), 1 / (math.e + 1)]
    expected = (kl([0.5, 0.5], [0.5, 0.5]) + kl([0.5, 0.5], q1)) / 4  # mean over B*C = 4 entries
    got = bad_teacher_loss(student, competent, incompetent, from_forget)
    assert float(got) == pytest.approx(expected, abs=1e-7)
    # temperature 2 divides every logit by 2 before the softmaxes
    t2 = bad_teacher_loss(student, competent, incompetent, from_forget, temperature=2.0)
    same = bad_teacher_loss(student / 2, competent / 2, incompetent / 2, from_forget)
    assert float(t2) == pytest.approx(float(same), abs=1e-7)


def _loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=g)
    y = (x[:, 0] > 0).long()
    forget = DataLoader(TensorDataset(x[:10], y[:10]), batch_size=8)
    retain = DataLoader(TensorDataset(x[10:], y[10:]), batch_size=8)
    return forget, retain


def test_the_stream_is_the_forget_set_and_a_seeded_30_percent_of_the_retain_set():
    forget, retain = _loaders()
    method = BadTeacher(seed=4)
    loader = ForgetAndRetainSample().build(method, None, LoaderSource(forget, retain))
    batches = list(loader)
    flags = torch.cat([b[2]["from_forget"] for b in batches])
    assert int(flags.sum()) == 10 and int((~flags).sum()) == 15  # 30 % of 50
    again = torch.cat(
        [b[0] for b in ForgetAndRetainSample().build(method, None, LoaderSource(forget, retain))]
    )
    assert torch.equal(torch.cat([b[0] for b in batches]), again)  # seeded


def test_teachers_are_frozen_copies_and_the_student_forgets():
    forget, retain = _loaders()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.detach().clone() for p in model.parameters()]
    method = BadTeacher(epochs=3, lr=0.05, retain_fraction=1.0)
    method.unlearn(model, forget, retain)
    for a, b in zip(before, method.competent_.parameters(), strict=True):
        assert torch.equal(a, b) and not b.requires_grad  # θ_o, frozen
    assert not any(p.requires_grad for p in method.incompetent_.parameters())
    x_f = torch.cat([b[0] for b in forget])
    with torch.no_grad():
        p_student = torch.softmax(model(x_f), 1)
        p_bad = torch.softmax(method.incompetent_(x_f), 1)
        p_orig = torch.softmax(method.competent_(x_f), 1)
    # on D_f the student moved towards the incompetent teacher, away from θ_o
    assert (p_student - p_bad).abs().mean() < (p_orig - p_bad).abs().mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"retain_fraction": 0.0}, "retain_fraction"), ({"temperature": 0.0}, "temperature")],
)
def test_bad_hyperparameters(kwargs, message):
    forget, retain = _loaders()
    with pytest.raises(ValueError, match=message):
        BadTeacher(**kwargs).unlearn(nn.Linear(4, 2), forget, retain)
