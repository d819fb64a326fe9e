"""ForgetSpec / ForgetSplit: explicit, saved, validated forget sets."""

from __future__ import annotations

import json

import pytest
import torch

from unlearnkit.data import ForgetSpec, ForgetSplit

TARGETS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def test_class_forgetting_selects_exactly_that_class():
    split = ForgetSpec(kind="class", classes=[0]).resolve(TARGETS, num_classes=3)
    assert split.forget.tolist() == [0, 3, 6, 9]
    assert split.retain.tolist() == [1, 2, 4, 5, 7, 8]
    assert split.num_train == 10


def test_subclass_uses_fine_labels():
    coarse = torch.tensor([0, 0, 1, 1, 0])
    fine = torch.tensor([0, 1, 2, 3, 1])
    split = ForgetSpec(kind="subclass", classes=[1]).resolve(
        coarse, fine_targets=fine, num_classes=2, num_fine_classes=4
    )
    assert split.forget.tolist() == [1, 4]


def test_random_is_seeded_and_sized():
    a = ForgetSpec(kind="random", fraction=0.3, seed=1).resolve(TARGETS)
    b = ForgetSpec(kind="random", fraction=0.3, seed=1).resolve(TARGETS)
    c = ForgetSpec(kind="random", fraction=0.3, seed=2).resolve(TARGETS)
    assert a.forget.tolist() == b.forget.tolist()
    assert len(a.forget) == 3
    assert a.forget.tolist() != c.forget.tolist() or a.retain.tolist() != c.retain.tolist()
    assert ForgetSpec(kind="random", count=4).resolve(TARGETS).forget.numel() == 4


def test_save_load_roundtrip(tmp_path):
    split = ForgetSpec(kind="random", fraction=0.2, seed=5).resolve(TARGETS)
    path = split.save(tmp_path / "forget.json")
    again = ForgetSpec(kind="indices", indices_file=str(path)).resolve(TARGETS)
    assert again.forget.tolist() == split.forget.tolist()
    assert again.fingerprint() == split.fingerprint()
    assert json.loads(path.read_text())["spec"]["kind"] == "random"


def test_save_never_overwrites_another_split(tmp_path):
    path = ForgetSpec(kind="class", classes=[0]).resolve(TARGETS).save(tmp_path / "f.json")
    before = path.read_text()
    with pytest.raises(FileExistsError):
        ForgetSpec(kind="class", classes=[1]).resolve(TARGETS).save(path)
    assert path.read_text() == before


def test_save_of_an_unserialisable_spec_leaves_nothing_behind(tmp_path):
    split = ForgetSplit.from_indices([1, 2], num_train=10, spec={"note": object()})
    with pytest.raises(TypeError):
        split.save(tmp_path / "f.json")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ForgetSpec(kind="class", classes=[7]), "out of range"),
        (ForgetSpec(kind="class", classes=[]), "needs classes"),
        (ForgetSpec(kind="random", fraction=1.5), "fraction must be in"),
        (ForgetSpec(kind="random"), "exactly one of"),
        (ForgetSpec(kind="random", count=10), "count must be in"),
    ],
)
def test_bad_requests(spec, message):
    with pytest.raises(ValueError, match=message):
        spec.resolve(TARGETS, num_classes=3)


def test_empty_class_is_an_empty_forget_set():
    with pytest.raises(ValueError, match="forget set is empty"):
        ForgetSpec(kind="class", classes=[2]).resolve(torch.tensor([0, 1, 0, 1]), num_classes=3)


def test_index_validation(tmp_path):
    with pytest.raises(ValueError, match="outside the training set"):
        ForgetSplit.from_indices([0, 10], num_train=10)
    with pytest.raises(ValueError, match="duplicates"):
        ForgetSplit.from_indices([1, 1], num_train=10)
    with pytest.raises(ValueError, match="covers all"):
        ForgetSplit.from_indices(list(range(10)), num_train=10)
    path = ForgetSplit.from_indices([1, 2], num_train=10).save(tmp_path / "s.json")
    with pytest.raises(ValueError, match="made for a training set of 10"):
        ForgetSplit.load(path, num_train=12)
    with pytest.raises(FileNotFoundError, match="not found"):
        ForgetSplit.load(tmp_path / "missing.json", num_train=10)
