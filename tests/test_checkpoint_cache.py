"""Checkpoints (architecture checks, no overwrite) and the config-hash model cache."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from types import SimpleNamespace

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
        time.sleep(0.05)  # a measurable training time
        with torch.no_grad():
            m.head.bias.fill_(1.5)

    cfg = {"data": "blobs", "seed": 0}
    seconds, hit = cache.get_or_train(TinyMLP(), cfg, train)
    assert not hit and len(calls) == 1 and 0.05 <= seconds < 5.0
    again, _ = cache.get_or_train(TinyMLP(), cfg, train)
    assert again == seconds  # a hit reports the stored training time, not the load time
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
    from unlearnkit.runs import _code_fingerprint
    from unlearnkit.vision.experiment import Experiment

    ours = _code_fingerprint(Experiment, Evaluator)
    assert ours == _code_fingerprint(Experiment, Evaluator)  # stable
    assert ours != _code_fingerprint(Experiment, int)  # int has no source file: its name counts
    assert _code_fingerprint(int) != _code_fingerprint(float)


# -- the cache on the artifact store: checksums, corrupt entries, evaluation keys ---------------
def _train_bias(value: float, calls: list):
    def train(m):
        calls.append(1)
        with torch.no_grad():
            m.head.bias.fill_(value)

    return train


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip"])
def test_corrupt_cached_model_is_reported_moved_aside_and_retrained(tmp_path, caplog, damage):
    cache, cfg, calls = ModelCache(tmp_path), {"data": "blobs", "seed": 0}, []
    cache.get_or_train(TinyMLP(), cfg, _train_bias(1.5, calls))
    weights = cache.entry(cfg) / "model.pt"
    good = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        weights.write_bytes(b"")
    else:  # same size, a few bits of the stored bias flipped: torch.load alone would accept it
        blob = torch.load(weights, weights_only=True)
        raw = blob["state_dict"]["head.bias"].numpy().tobytes()
        at = good.index(raw)
        weights.write_bytes(good[:at] + bytes(b ^ 0x40 for b in raw[:4]) + good[at + 4 :])
        assert len(weights.read_bytes()) == len(good)
        bad = TinyMLP()
        load_checkpoint(bad, weights)  # loadable, silently different: only the checksum tells
        assert bad.head.bias[0].item() != 1.5
    model = TinyMLP()
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        _, hit = cache.get_or_train(model, cfg, _train_bias(1.5, calls))
    assert not hit and len(calls) == 2  # retrained, never loaded
    assert torch.all(model.head.bias == 1.5)
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(weights) in line and "\n" not in line
    assert "Traceback" not in caplog.text
    (moved,) = (tmp_path / "corrupt" / "models").iterdir()
    assert (moved / "model.pt").read_bytes() != good
    assert cache.artifacts.get("models", cfg).checksums["model.pt"] == cache.checksum(cfg)
    again = TinyMLP()
    _, hit = cache.get_or_train(again, cfg, _train_bias(1.5, calls))
    assert hit and len(calls) == 2 and torch.all(again.head.bias == 1.5)


def test_manifest_records_the_weights_checksum(tmp_path):
    cache, cfg = ModelCache(tmp_path), {"a": 1}
    assert cache.checksum(cfg) is None
    cache.get_or_train(TinyMLP(), cfg, _train_bias(0.5, []))
    entry = cache.entry(cfg)
    expected = hashlib.sha256((entry / "model.pt").read_bytes()).hexdigest()
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["files"] == {"model.pt": expected}
    assert manifest["key"] == cfg and manifest["meta"]["train_seconds"] >= 0
    assert cache.checksum(cfg) == expected
    assert cache.load(TinyMLP(), cfg)["checksum"] == expected


class _Split:
    def fingerprint(self) -> str:
        return "split0"


def _evaluation_key(cache: ModelCache, original: nn.Module, retrained: nn.Module) -> dict:
    """ExperimentBase._evaluation_key on a stand-in experiment (only what the key reads)."""
    from unlearnkit.runs import ExperimentBase

    fake = SimpleNamespace(
        _key=lambda kind, model, **extra: {"kind": kind, "arch": "tiny_mlp", **extra},
        data=SimpleNamespace(split=_Split()),
        cache=cache,
        evaluator=SimpleNamespace(k=1),
    )
    return ExperimentBase._evaluation_key(fake, original, retrained)  # type: ignore[arg-type]


def test_evaluation_key_follows_the_weights_not_the_creation_time(tmp_path):
    cache = ModelCache(tmp_path)
    original, retrained = TinyMLP(), TinyMLP()
    cache.get_or_train(original, {"kind": "original", "arch": "tiny_mlp"}, _train_bias(1.0, []))
    retrained_cfg = {"kind": "retrained", "arch": "tiny_mlp", "forget": "split0"}
    cache.get_or_train(retrained, retrained_cfg, _train_bias(2.0, []))
    key = _evaluation_key(cache, original, retrained)
    assert key["weights"]["retrained"] == cache.checksum(retrained_cfg) is not None

    # the same weights written again later (new creation time): the same key
    created = json.loads((cache.entry(retrained_cfg) / "manifest.json").read_text())["created"]
    shutil.rmtree(cache.entry(retrained_cfg))
    time.sleep(0.05)
    cache.store(retrained, retrained_cfg, train_seconds=1.0)
    manifest = json.loads((cache.entry(retrained_cfg) / "manifest.json").read_text())
    assert manifest["created"] > created
    assert _evaluation_key(cache, original, retrained) == key

    # other weights under the same config: another key
    shutil.rmtree(cache.entry(retrained_cfg))
    with torch.no_grad():
        retrained.head.bias.fill_(3.0)
    cache.store(retrained, retrained_cfg, train_seconds=1.0)
    other = _evaluation_key(cache, original, retrained)
    assert other["weights"]["retrained"] != key["weights"]["retrained"]
    assert config_hash(other) != config_hash(key)
    assert other["weights"]["original"] == key["weights"]["original"]


@pytest.mark.parametrize(
    "content",
    [b"", b"not a checkpoint at all", "truncate"],
    ids=["empty", "garbled", "truncated"],
)
def test_unreadable_user_checkpoint_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "user.pt"
    save_checkpoint(TinyMLP(), path)
    data = path.read_bytes()[:300] if content == "truncate" else content
    path.write_bytes(data)
    with pytest.raises(ValueError) as err:
        load_checkpoint(TinyMLP(), path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"checkpoint {path} is not a readable checkpoint (truncated or corrupt?)"
    )
    assert path.read_bytes() == data  # only read
