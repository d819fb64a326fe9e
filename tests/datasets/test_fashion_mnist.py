"""load_fashion_mnist / read_idx on IDX fixtures (plain and gzipped) and, if present, real data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnkit.datasets import fashion_mnist as fm
from unlearnkit.datasets.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, read_idx

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "fashion-mnist"
NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray, *, type_code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_arrays(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", 20), ("test", 10)):
        out[split] = (rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10)
    return out


def write_fixture(folder: Path, *, gz: bool, seed: int = 0) -> dict:
    arrays = make_arrays(seed)
    for split, (images, labels) in arrays.items():
        write_idx(folder / NAMES[split][0], images, gz=gz)
        write_idx(folder / NAMES[split][1], labels, gz=gz)
    return arrays


def check(datasets, arrays) -> None:
    for ds, split in zip(datasets, ("train", "test"), strict=True):
        images, labels = arrays[split]
        assert ds.images.shape == (len(labels), 1, 28, 28) and ds.images.dtype == torch.uint8
        assert np.array_equal(ds.images[:, 0].numpy(), images)
        assert ds.targets.tolist() == labels.tolist() and ds.targets.dtype == torch.int64
        assert ds.classes == list(FASHION_MNIST_CLASSES) and not ds.augment
        expected = (images[3, 10, 12] / 255 - 0.2860) / 0.3530
        assert float(ds[3][0][0, 10, 12]) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_files_directly_in_root(tmp_path: Path, gz: bool) -> None:
    arrays = write_fixture(tmp_path, gz=gz)
    check(load_fashion_mnist(tmp_path), arrays)
    check(load_fashion_mnist(str(tmp_path)), arrays)


def test_reads_torchvision_raw_layout(tmp_path: Path) -> None:
    arrays = write_fixture(tmp_path / "FashionMNIST" / "raw", gz=True)
    check(load_fashion_mnist(tmp_path), arrays)


def test_default_root_comes_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "absent")
    arrays = write_fixture(tmp_path / "fashion-mnist", gz=False)
    check(load_fashion_mnist(), arrays)


def test_default_root_falls_back_to_debian_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "debian")
    arrays = write_fixture(tmp_path / "debian", gz=True)
    check(load_fashion_mnist(), arrays)


def test_missing_files_error_names_files_dirs_and_fixes(tmp_path: Path, monkeypatch) -> None:
    write_idx(tmp_path / NAMES["train"][0], np.zeros((1, 28, 28)), gz=True)
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte" in message and "t10k-images-idx3-ubyte" in message
    assert "'train-images-idx3-ubyte'" not in message  # present, so not reported missing
    assert str(tmp_path) in message and str(tmp_path / "FashionMNIST" / "raw") in message
    assert "download=True" in message and "apt-get install dataset-fashion-mnist" in message
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "debian")
    with pytest.raises(FileNotFoundError, match="debian"):
        load_fashion_mnist()


def test_download_uses_torchvision_then_reads_raw_files(tmp_path: Path, monkeypatch) -> None:
    calls = []

    class FakeFashionMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            write_fixture(Path(root) / "FashionMNIST" / "raw", gz=False, seed=5)

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist(tmp_path)
    assert calls == []
    check(load_fashion_mnist(tmp_path, download=True), make_arrays(5))
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]


@pytest.mark.parametrize(("type_code", "ndim", "match"), [(0x0B, 3, "magic"), (0x08, 1, "magic")])
def test_read_idx_rejects_bad_magic(tmp_path: Path, type_code: int, ndim: int, match: str) -> None:
    path = tmp_path / "x-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3)), type_code=type_code))
    with pytest.raises(ValueError, match=match):
        read_idx(path, ndim=ndim)


def test_corrupt_magic_in_dataset_file_is_a_value_error(tmp_path: Path) -> None:
    write_fixture(tmp_path, gz=False)
    (tmp_path / NAMES["test"][1]).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path)


def test_read_idx_rejects_truncated_and_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "short-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3)))[:-1])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path, ndim=3)
    bad = tmp_path / "bad-ubyte.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="gzip"):
        read_idx(bad, ndim=3)


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / "a-ubyte", array, gz=True)
    out = read_idx(tmp_path / "a-ubyte.gz", ndim=3)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4) and (out == array).all()


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real Fashion-MNIST not found at {REAL}")
def test_real_fashion_mnist() -> None:
    train, test = load_fashion_mnist(REAL)
    assert (len(train), len(test)) == (60000, 10000)
    assert torch.bincount(train.targets).tolist() == [6000] * 10
    assert torch.bincount(test.targets).tolist() == [1000] * 10
    pixels = train.images.double() / 255
    assert float(pixels.mean()) == pytest.approx(0.2860, abs=5e-5)
    assert float(pixels.std()) == pytest.approx(0.3530, abs=5e-5)


def test_datamodule_class_names_label_the_report_plots(tmp_path: Path) -> None:
    from unlearnkit.datasets import DigitsDataModule, FashionMNISTDataModule

    write_fixture(tmp_path, gz=True)
    names = FashionMNISTDataModule(root=str(tmp_path)).class_names
    assert names == list(FASHION_MNIST_CLASSES) and names[9] == "Ankle boot"
    assert DigitsDataModule().class_names == [str(i) for i in range(10)]
