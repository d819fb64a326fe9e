"""Checkpoints (architecture checks, no overwrite) and the config-hash model cache."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _helpers import TinyMLP
from unlearnkit.cache import ModelCache, config_hash
from unlearnkit.checkpoint import load_checkpoint, save_checkpoint


def test_roundtrip_and_no_overwrite(tmp_path):
    torch.manual_seed(0)
    model = TinyMLP()
    path = save_checkpoint(model, tmp_path / "m.pt", meta={"epochs": 3})
    other = TinyMLP()
    assert load_checkpoint(other, path) == {"epochs": 3}
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
    stamp = path.stat().st_mtime_ns
    with pytest.raises(FileExistsError):
        save_checkpoint(other, path)
    assert path.stat().st_mtime_ns == stamp


def test_wrong_architecture_is_a_clear_error(tmp_path):
    path = save_checkpoint(TinyMLP(), tmp_path / "m.pt")
    linear = nn.Linear(8, 3)
    with pytest.raises(ValueError, match="saved for architecture 'tiny_mlp'"):
        load_checkpoint(linear, path)
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(TinyMLP(num_classes=5), path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(TinyMLP(), tmp_path / "nope.pt")


def test_plain_state_dict_loads(tmp_path):
    model = TinyMLP()
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    assert load_checkpoint(TinyMLP(), tmp_path / "plain.pt") == {}


def test_cache_trains_once_then_hits(tmp_path):
    cache = ModelCache(tmp_path)
    calls = []

    def train(m):
        calls.append(1)
        with torch.no_grad():
            m.head.bias.fill_(1.5)

    cfg = {"data": "blobs", "seed": 0}
    seconds, hit = cache.get_or_train(TinyMLP(), cfg, train)
    assert not hit and len(calls) == 1 and seconds >= 0
    model = TinyMLP()
    _, hit = cache.get_or_train(model, cfg, train)
    assert hit and len(calls) == 1
    assert torch.all(model.head.bias == 1.5)
    _, hit = cache.get_or_train(TinyMLP(), {**cfg, "seed": 1}, train)
    assert not hit and len(calls) == 2


def test_cache_refuses_entry_with_other_config(tmp_path):
    cache = ModelCache(tmp_path)
    cache.store(TinyMLP(), {"a": 1}, train_seconds=1.0)
    entry = cache.entry({"a": 1})
    manifest = (entry / "manifest.json").read_text().replace('"a": 1', '"a": 2')
    (entry / "manifest.json").write_text(manifest)
    with pytest.raises(ValueError, match="holds another config"):
        cache.load(TinyMLP(), {"a": 1})
    assert (entry / "manifest.json").read_text() == manifest  # left untouched
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_code_fingerprint_changes_with_the_classes_and_accepts_classes_without_a_file():
    from unlearnkit.evaluation.evaluator import Evaluator
    from unlearnkit.experiment import Experiment
    from unlearnkit.runs import _code_fingerprint

    ours = _code_fingerprint(Experiment, Evaluator)
    assert ours == _code_fingerprint(Experiment, Evaluator)  # stable
    assert ours != _code_fingerprint(Experiment, int)  # int has no source file: its name counts
    assert _code_fingerprint(int) != _code_fingerprint(float)
