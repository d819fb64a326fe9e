"""Files and directories unlearnkit writes honour the user's umask (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest
import torch

from unlearnkit.atomic import atomic_torch_save, atomic_write_bytes, current_umask, umask_mode
from unlearnkit.evaluation.report import write_report
from unlearnkit.store import ArtifactStore


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_reads_without_changing_it(umask_022) -> None:
    assert current_umask() == 0o022
    assert current_umask() == 0o022  # reading did not change it
    assert umask_mode() == 0o644 and umask_mode(directory=True) == 0o755
    os.umask(0o077)
    assert umask_mode() == 0o600 and umask_mode(directory=True) == 0o700


def test_atomic_writes_get_the_umask_mode(tmp_path, umask_022) -> None:
    assert mode(atomic_write_bytes(tmp_path / "a.bin", b"x")) == 0o644
    assert mode(atomic_torch_save({"w": torch.ones(2)}, tmp_path / "m.pt")) == 0o644
    os.umask(0o027)
    assert mode(atomic_write_bytes(tmp_path / "b.bin", b"x")) == 0o640


def test_report_files_and_store_entries_are_0644_and_0755(tmp_path, umask_022) -> None:
    rows = [
        {"method": "retrain", "metrics": {"forget/acc": 0.0, "test/acc": 0.9}},
        {"method": "SSD", "metrics": {"forget/acc": 0.1, "test/acc": 0.8}},
    ]
    written = write_report(tmp_path / "run", {}, rows)
    assert {mode(path) for path in written.values()} == {0o644}
    plot = next(v for k, v in written.items() if k.startswith("forget_vs_test"))
    assert mode(written["json"]) == 0o644 and mode(plot) == 0o644

    entry = ArtifactStore(tmp_path / "store").put(
        "models", {"seed": 0}, lambda d: (d / "value.txt").write_text("1")
    )
    assert mode(entry.path) == 0o755
    assert mode(entry.path / "value.txt") == 0o644
