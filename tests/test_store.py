"""ArtifactStore: manifest checksums, corrupt entries moved aside, atomic claims across processes."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.store import ArtifactStore, config_hash
from unlearnkit.vision.methods import SSD

KEY = {"data": "blobs", "seed": 0}


def write_text(text: str):
    return lambda directory: (directory / "value.txt").write_text(text)


def read_text(entry) -> str:
    return entry.file("value.txt").read_text()


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_put_records_checksums_and_get_returns_the_entry(tmp_path):
    store = ArtifactStore(tmp_path)
    assert store.get("things", KEY) is None
    entry = store.put("things", KEY, write_text("forty-two"), meta={"seconds": 1.5})
    assert entry.path == tmp_path / "things" / config_hash(KEY)
    manifest = json.loads((entry.path / "manifest.json").read_text())
    assert manifest["files"] == {"value.txt": hashlib.sha256(b"forty-two").hexdigest()}
    assert manifest["key"] == KEY and manifest["meta"] == {"seconds": 1.5}
    assert set(manifest["environment"]) == {"python", "torch", "unlearnkit"}
    env = manifest["environment"]
    assert env["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert env["python"] == platform.python_version()
    assert abs(manifest["created"] - time.time()) < 60
    again = store.get("things", {"seed": 0, "data": "blobs"})  # key order does not matter
    assert again is not None and read_text(again) == "forty-two" and again.meta["seconds"] == 1.5
    assert sorted(p.name for p in (tmp_path / "things").iterdir()) == [config_hash(KEY)]


def test_put_never_overwrites_and_a_failed_write_leaves_nothing(tmp_path):
    store = ArtifactStore(tmp_path)
    store.put("things", KEY, write_text("first"))
    store.put("things", KEY, write_text("second"))
    assert read_text(store.get("things", KEY)) == "first"

    def fail(directory: Path) -> None:
        (directory / "half.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.put("things", {"other": 1}, fail)
    assert sorted(p.name for p in (tmp_path / "things").iterdir()) == [config_hash(KEY)]
    with pytest.raises(ValueError, match="plain files"):
        store.put("things", {"empty": 1}, lambda d: None)


@pytest.mark.parametrize(
    ("damage", "bad_file"),
    [
        ("truncate", "value.txt"),
        ("empty", "value.txt"),
        ("flip", "value.txt"),
        ("delete", "value.txt"),
        ("garble_manifest", "manifest.json"),
        ("delete_manifest", "manifest.json"),
    ],
)
def test_corrupt_entry_is_moved_aside_with_one_line_and_is_a_miss(
    tmp_path, caplog, damage, bad_file
):
    store = ArtifactStore(tmp_path)
    entry = store.put("things", KEY, write_text("0123456789"))
    value, manifest = entry.path / "value.txt", entry.path / "manifest.json"
    if damage == "truncate":
        value.write_text("01234")
    elif damage == "empty":
        value.write_bytes(b"")
    elif damage == "flip":  # same size, one bit: only the checksum can tell
        value.write_text("0123456788")
    elif damage == "delete":
        value.unlink()
    elif damage == "garble_manifest":
        manifest.write_text(manifest.read_text()[:20])
    else:
        manifest.unlink()
    with caplog.at_level(logging.WARNING, logger="unlearnkit"):
        assert store.get("things", KEY) is None
    (line,) = warnings(caplog)
    assert str(entry.path / bad_file) in line and "corrupt" in line and "\n" not in line
    assert not entry.path.exists()
    (moved,) = (tmp_path / "corrupt" / "things").iterdir()
    assert moved.name.startswith(entry.path.name + ".") and str(moved) in line
    # the caller rebuilds it: a fresh entry, verified again
    value_, _, hit = store.get_or_create("things", KEY, lambda: "rebuilt", _save, _load)
    assert (value_, hit) == ("rebuilt", False)
    assert store.get_or_create("things", KEY, _fail_build, _save, _load)[::2] == ("rebuilt", True)


def test_entry_of_another_key_is_refused_and_left_untouched(tmp_path):
    store = ArtifactStore(tmp_path)
    entry = store.put("things", KEY, write_text("x"))
    manifest = entry.path / "manifest.json"
    edited = manifest.read_text().replace('"seed": 0', '"seed": 1')
    manifest.write_text(edited)
    with pytest.raises(ValueError, match="holds another config"):
        store.get("things", KEY)
    assert manifest.read_text() == edited and (entry.path / "value.txt").read_text() == "x"


@pytest.mark.parametrize("namespace", ["corrupt", "Models", "../up", "", ".locks"])
def test_bad_namespace_is_refused(tmp_path, namespace):
    with pytest.raises(ValueError, match="namespace"):
        ArtifactStore(tmp_path).path(namespace, KEY)


def test_a_new_namespace_needs_no_store_edit(tmp_path):
    store = ArtifactStore(tmp_path)
    value, entry, hit = store.get_or_create("forget_sets", {"k": 1}, lambda: "idx", _save, _load)
    assert (value, hit) == ("idx", False) and entry.path.parent.name == "forget_sets"
    assert store.verify("forget_sets", {"k": 1}) and not store.verify("ensembles", {"k": 1})


# -- claims across processes (spawned, so nothing is shared but the file system) ----------------
def _save(value: str, directory: Path) -> None:
    (directory / "value.txt").write_text(value)


def _load(entry) -> str:
    return entry.file("value.txt").read_text()


def _fail_build() -> str:
    raise AssertionError("built although a sound entry exists")


def _build_counted(counter: str) -> str:
    with open(counter, "a") as handle:  # one line per build, whichever process runs it
        handle.write(f"{os.getpid()}\n")
    time.sleep(1.5)  # long enough for the other process to arrive and wait on the claim
    return f"built by {os.getpid()}"


def _worker(root: str, counter: str, barrier, results) -> None:
    barrier.wait()
    value, _, hit = ArtifactStore(root).get_or_create(
        "things", KEY, lambda: _build_counted(counter), _save, _load
    )
    results.put((value, hit))


def test_two_processes_build_one_key_once_and_get_the_same_result(tmp_path):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    counter = tmp_path / "builds.txt"
    procs = [
        ctx.Process(target=_worker, args=(str(tmp_path), str(counter), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(counter.read_text().splitlines()) == 1  # build ran exactly once
    assert got[0][0] == got[1][0] and got[0][0].startswith("built by ")
    assert sorted(hit for _, hit in got) == [False, True]


def _hold_claim_forever(root: str, held) -> None:
    with ArtifactStore(root).claim("things", KEY):
        held.set()
        time.sleep(600)


def _claim_and_build(root: str, results) -> None:
    value, _, hit = ArtifactStore(root).get_or_create("things", KEY, lambda: "fresh", _save, _load)
    results.put((value, hit))


def test_a_claim_held_by_a_killed_process_does_not_block(tmp_path):
    ctx = mp.get_context("spawn")
    held, results = ctx.Event(), ctx.Queue()
    holder = ctx.Process(target=_hold_claim_forever, args=(str(tmp_path), held))
    holder.start()
    assert held.wait(timeout=120)
    lock = tmp_path / ".locks" / "things" / f"{config_hash(KEY)}.lock"
    assert lock.exists()
    waiter = ctx.Process(target=_claim_and_build, args=(str(tmp_path), results))
    waiter.start()
    time.sleep(2.0)
    assert waiter.is_alive() and results.empty()  # blocked by the live claim
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(timeout=30)
    assert results.get(timeout=60) == ("fresh", False)  # the dead holder's claim is gone
    waiter.join(timeout=30)
    assert waiter.exitcode == 0


# -- SSD's I_D entry ----------------------------------------------------------------------------
class _Net(nn.Module):
    arch = "store_net"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def test_corrupt_ssd_importance_entry_is_rebuilt_not_loaded(tmp_path, caplog):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=g), torch.arange(3).repeat(20)
    train = DataLoader(TensorDataset(x, y), batch_size=16)
    forget = DataLoader(TensorDataset(x[y == 0], y[y == 0]), batch_size=16)
    first = SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    first.unlearn(_Net(), forget, train=train)
    path = first.cache_path_
    good = path.read_bytes()
    # same size, a few flipped bits inside the stored tensors' bytes
    flipped = bytearray(good)
    for i in range(len(good) - 1200, len(good) - 1190):
        flipped[i] ^= 0x10
    path.write_bytes(bytes(flipped))
    second = SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="unlearnkit"):
        second.unlearn(_Net(), forget, train=train)
    assert not second.cache_hit_  # recomputed, not loaded
    (line,) = warnings(caplog)
    assert str(path) in line and "checksum mismatch" in line
    for name, value in first.importance_train_.items():
        torch.testing.assert_close(second.importance_train_[name], value, rtol=0, atol=0)
    assert path.read_bytes() == good  # the rebuilt entry holds the same I_D
    assert len(list((tmp_path / "corrupt" / "importance").iterdir())) == 1
    third = SSD(alpha=2.0, order="by_label", cache_dir=str(tmp_path))
    third.unlearn(_Net(), forget, train=train)
    assert third.cache_hit_


def test_ranks_of_a_distributed_job_do_not_claim(tmp_path, monkeypatch):
    """A DDP fit needs every rank: rank 1 must not wait for rank 0's claim (it would deadlock)."""
    ctx = mp.get_context("spawn")
    held = ctx.Event()
    holder = ctx.Process(target=_hold_claim_forever, args=(str(tmp_path), held))
    holder.start()
    try:
        assert held.wait(timeout=120)
        monkeypatch.setenv("WORLD_SIZE", "2")  # what Lightning's DDP launcher sets for its ranks
        got = []
        store = ArtifactStore(tmp_path)
        worker = threading.Thread(
            target=lambda: got.append(
                store.get_or_create("things", KEY, lambda: "rank1", _save, _load)
            ),
            daemon=True,
        )
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "blocked on another rank's claim"
        assert got[0][0] == "rank1" and not got[0][2]
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=30)
