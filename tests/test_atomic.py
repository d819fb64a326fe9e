"""unlearnkit.atomic: the one atomic-write helper behind checkpoints, caches, reports, downloads."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from unlearnkit.atomic import atomic_torch_save, atomic_write_bytes


def _files(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_write_bytes_creates_parents_and_leaves_only_the_file(tmp_path):
    path = atomic_write_bytes(tmp_path / "a" / "b" / "out.bin", b"\x00\x01hello")
    assert path == tmp_path / "a" / "b" / "out.bin"
    assert path.read_bytes() == b"\x00\x01hello"
    assert _files(tmp_path) == ["out.bin"]


def test_write_bytes_replaces_an_existing_file_on_success(tmp_path):
    path = tmp_path / "report.md"
    path.write_bytes(b"old")
    atomic_write_bytes(str(path), b"new content")  # str paths are accepted too
    assert path.read_bytes() == b"new content"
    assert _files(tmp_path) == ["report.md"]


def test_failed_write_removes_the_temp_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "report.md"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "text, not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert _files(tmp_path) == ["report.md"]


def test_failed_rename_removes_the_temp_file(tmp_path, monkeypatch):
    seen = []

    def refuse(src, dst):
        seen.append(src)
        raise PermissionError(f"cannot replace {dst}")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    # the temp file was complete and sat beside the target, hidden, before it was cleaned up
    assert len(seen) == 1 and os.path.dirname(seen[0]) == str(tmp_path)
    assert os.path.basename(seen[0]).startswith(".x.bin.")
    assert _files(tmp_path) == []


def test_torch_save_round_trip_and_replace(tmp_path):
    path = tmp_path / "cache" / "w.pt"
    assert atomic_torch_save({"w": torch.arange(3.0)}, path) == path
    atomic_torch_save({"w": torch.tensor([7.0]), "note": "second"}, path)
    blob = torch.load(path, weights_only=True)
    assert blob["note"] == "second" and blob["w"].tolist() == [7.0]
    assert _files(tmp_path) == ["w.pt"]


def test_torch_save_of_an_unpicklable_object_keeps_the_old_file(tmp_path):
    path = tmp_path / "w.pt"
    atomic_torch_save({"w": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        atomic_torch_save({"f": lambda: 0}, path)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["w.pt"]


def test_old_import_paths_are_the_shared_functions():
    from unlearnkit.checkpoint import atomic_torch_save as from_checkpoint
    from unlearnkit.datasets._io import atomic_torch_save as from_io
    from unlearnkit.evaluation.plots import atomic_write_bytes as from_plots
    from unlearnkit.evaluation.report import atomic_write_bytes as from_report

    assert from_checkpoint is from_io is atomic_torch_save
    assert from_plots is from_report is atomic_write_bytes
