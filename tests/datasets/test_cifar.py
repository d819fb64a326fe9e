"""CIFAR-10 (pickles, image folder, tarballs, cache) and CIFAR-100 (pickles, coarse labels)."""

from __future__ import annotations

import logging
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unlearnkit.datasets import cifar
from unlearnkit.datasets.cifar import (
    CIFAR10_CLASSES,
    cifar100_superclasses,
    load_cifar10,
    load_cifar100,
)
from unlearnkit.datasets.superclasses import superclass_groups
from unlearnkit.datasets.tensors import with_superclasses


def write_png(image: torch.Tensor, path: str) -> None:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, format="PNG")


def write_jpeg(image: torch.Tensor, path: str, quality: int) -> None:
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, format="JPEG", quality=quality)


BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10_pickles(folder: Path, *, bytes_keys: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    data, labels = {}, {}
    for i, name in enumerate(BATCHES):
        data[name], labels[name] = rows(3, i), [(i + k) % 10 for k in range(3)]
        entry = {"data": data[name], "labels": labels[name], "batch_label": name}
        if bytes_keys:
            entry = {k.encode(): v for k, v in entry.items()}
        (folder / name).write_bytes(pickle.dumps(entry))
    return {
        "train_rows": np.concatenate([data[n] for n in BATCHES[:5]]),
        "train_labels": np.concatenate([labels[n] for n in BATCHES[:5]]),
        "test_rows": data["test_batch"],
        "test_labels": np.array(labels["test_batch"]),
    }


def check_pickled(train, test, expected) -> None:
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    # CHW row layout: value (c, h, w) sits at column c * 1024 + h * 32 + w
    assert int(train.images[4, 2, 5, 7]) == int(expected["train_rows"][4, 2 * 1024 + 5 * 32 + 7])
    assert torch.equal(train.images.flatten(1), torch.from_numpy(expected["train_rows"]))
    assert train.targets.tolist() == expected["train_labels"].tolist()
    assert test.targets.tolist() == expected["test_labels"].tolist()
    assert train.classes == list(CIFAR10_CLASSES)
    assert train.mean == cifar.CIFAR10_MEAN and train.std == cifar.CIFAR10_STD


def test_torchvision_pickles_in_root_or_root_itself(tmp_path: Path) -> None:
    expected = write_cifar10_pickles(tmp_path / "cifar-10-batches-py")
    train, test = load_cifar10(tmp_path)
    check_pickled(train, test, expected)
    assert train.augment and not test.augment
    train, test = load_cifar10(tmp_path / "cifar-10-batches-py", augment=False)
    check_pickled(train, test, expected)
    assert not train.augment


def test_pickles_with_bytes_keys(tmp_path: Path) -> None:
    expected = write_cifar10_pickles(tmp_path, bytes_keys=True)
    check_pickled(*load_cifar10(tmp_path), expected)


def test_malformed_pickles(tmp_path: Path) -> None:
    write_cifar10_pickles(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"labels": [0]}))
    with pytest.raises(ValueError, match="no 'data' entry"):
        load_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a CIFAR pickle"):
        load_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({"data": rows(2, 0)[:, :100], "labels": []}))
    with pytest.raises(ValueError, match="3072"):
        load_cifar10(tmp_path)


def write_folder(root: Path, *, fmt: str = "png", classes=CIFAR10_CLASSES) -> dict:
    """Two train images and one test image per class; returns the expected (label, image) lists."""
    gen = torch.Generator().manual_seed(0)
    expected = {"train": [], "test": []}
    for split, count in (("train", 2), ("test", 1)):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for k in range(count):
                if fmt == "png":
                    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=gen)
                else:  # flat colours survive JPEG almost exactly
                    image = torch.full((3, 32, 32), 20 * label + 5 * k, dtype=torch.uint8)
                expected[split].append((label, image))
            for k in reversed(range(count)):  # written in reverse: the loader must sort by name
                path = str(root / split / name / f"{k:04d}.{fmt}")
                image = expected[split][-count + k][1]
                write_png(image, path) if fmt == "png" else write_jpeg(image, path, quality=95)
    return expected


def check_folder(datasets, expected, *, exact: bool = True) -> None:
    for ds, split in zip(datasets, ("train", "test"), strict=True):
        labels = [label for label, _ in expected[split]]
        images = torch.stack([image for _, image in expected[split]])
        assert ds.targets.tolist() == labels
        assert ds.images.shape == images.shape and ds.images.dtype == torch.uint8
        error = (ds.images.int() - images.int()).abs().max()
        assert int(error) == 0 if exact else int(error) <= 2
        assert ds.classes == list(CIFAR10_CLASSES)


def test_image_folder_png_exact(tmp_path: Path) -> None:
    expected = write_folder(tmp_path / "data")
    datasets = load_cifar10(tmp_path / "data", cache_dir=tmp_path / "cache")
    check_folder(datasets, expected)
    assert datasets[0].augment and not datasets[1].augment


def test_image_folder_jpeg_one_level_down(tmp_path: Path) -> None:
    expected = write_folder(tmp_path / "data" / "cifar10-jpeg", fmt="jpg")
    check_folder(load_cifar10(tmp_path / "data", cache_dir=tmp_path / "c"), expected, exact=False)


def make_tar(source: Path, tar_path: Path) -> Path:
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.add(source, arcname=source.name)
    return tar_path


def test_tarball_of_image_folder(tmp_path: Path) -> None:
    expected = write_folder(tmp_path / "src" / "cifar10-mini")
    tar_path = make_tar(tmp_path / "src" / "cifar10-mini", tmp_path / "cifar10-mini.tar.gz")
    check_folder(load_cifar10(tar_path, cache_dir=tmp_path / "cache"), expected)
    # a directory holding the tarball works too, and nothing is extracted next to it
    check_folder(load_cifar10(tmp_path, cache_dir=tmp_path / "cache"), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "cifar10-mini.tar.gz", "src"]


def test_tarball_of_torchvision_pickles(tmp_path: Path) -> None:
    expected = write_cifar10_pickles(tmp_path / "src" / "cifar-10-batches-py")
    tar_path = make_tar(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tgz")
    check_pickled(*load_cifar10(tar_path, cache_dir=tmp_path / "cache"), expected)


def test_decoded_images_are_cached_and_invalidated(tmp_path: Path, monkeypatch) -> None:
    expected = write_folder(tmp_path / "src" / "cifar10-mini")
    tar_path = make_tar(tmp_path / "src" / "cifar10-mini", tmp_path / "cifar10-mini.tar.gz")
    cache = tmp_path / "cache"
    decoded = []
    real_decode = cifar._decode_image
    monkeypatch.setattr(cifar, "_decode_image", lambda b: decoded.append(1) or real_decode(b))
    load_cifar10(tar_path, cache_dir=cache)
    assert len(decoded) == 30 and len(list(cache.glob("cifar10-tar/*/tensors.pt"))) == 1

    def fail(data: bytes) -> torch.Tensor:
        raise AssertionError("decoder called although the cache is valid")

    monkeypatch.setattr(cifar, "_decode_image", fail)
    check_folder(load_cifar10(tar_path, cache_dir=cache), expected)
    stat = tar_path.stat()
    os.utime(tar_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoder called"):
        load_cifar10(tar_path, cache_dir=cache)


def test_folder_cache_and_default_cache_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path / "home"))
    expected = write_folder(tmp_path / "data")
    load_cifar10(tmp_path / "data")
    assert (
        len(list((tmp_path / "home" / "cache" / "datasets").glob("cifar10-folder/*/tensors.pt")))
        == 1
    )
    monkeypatch.setattr(cifar, "_decode_image", lambda b: 1 / 0)
    check_folder(load_cifar10(tmp_path / "data"), expected)
    # adding a file changes the key
    write_png(torch.zeros(3, 32, 32, dtype=torch.uint8), str(tmp_path / "data/test/cat/9.png"))
    with pytest.raises(ZeroDivisionError):
        load_cifar10(tmp_path / "data")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_cache_is_detected_moved_aside_and_rebuilt(
    tmp_path: Path, monkeypatch, caplog, damage: str
) -> None:
    expected = write_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    load_cifar10(tmp_path / "data", cache_dir=cache)
    (entry,) = cache.glob("cifar10-folder/*/tensors.pt")
    good = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(good[: len(good) // 2])
    else:  # same size, one byte of image data changed: only the checksum can tell
        entry.write_bytes(good[:-2000] + bytes([good[-2000] ^ 0xFF]) + good[-1999:])
    decoded = []
    real_decode = cifar._decode_image
    monkeypatch.setattr(cifar, "_decode_image", lambda b: decoded.append(1) or real_decode(b))
    with caplog.at_level(logging.WARNING, logger="unlearnkit"):
        check_folder(load_cifar10(tmp_path / "data", cache_dir=cache), expected)
    assert len(decoded) == 30  # rebuilt from the images, not loaded
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(entry) in warning and "corrupt" in warning and "\n" not in warning
    (moved,) = (cache / "corrupt" / "cifar10-folder").iterdir()
    assert len((moved / "tensors.pt").read_bytes()) == (
        len(good) // 2 if damage == "truncate" else len(good)
    )
    assert entry.read_bytes() == good  # the rebuilt entry holds the same tensors


def test_bad_image_folders(tmp_path: Path) -> None:
    write_folder(tmp_path / "a", classes=[*CIFAR10_CLASSES[:9], "lorry"])
    with pytest.raises(ValueError, match="'lorry' is not a CIFAR-10 class"):
        load_cifar10(tmp_path / "a", cache_dir=tmp_path / "cache")
    write_folder(tmp_path / "b")
    write_png(torch.zeros(3, 16, 16, dtype=torch.uint8), str(tmp_path / "b/train/cat/big.png"))
    with pytest.raises(ValueError, match="mixes image sizes"):
        load_cifar10(tmp_path / "b", cache_dir=tmp_path / "cache")
    (tmp_path / "c" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "c" / "test").mkdir()
    with pytest.raises(ValueError, match="no train/<class>"):
        load_cifar10(tmp_path / "c", cache_dir=tmp_path / "cache")
    write_folder(tmp_path / "e")
    (tmp_path / "e/test/cat/0000.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot decode test/cat/0000.png"):
        load_cifar10(tmp_path / "e", cache_dir=tmp_path / "cache")
    gray = tmp_path / "e/test/cat/0000.png"
    Image.fromarray(torch.full((32, 32), 9, dtype=torch.uint8).numpy()).save(gray)
    (_, test) = load_cifar10(tmp_path / "e", cache_dir=tmp_path / "cache")
    assert test.images[3].tolist() == torch.full((3, 32, 32), 9).tolist()  # gray -> RGB
    bad_tar = tmp_path / "d.tar.gz"
    bad_tar.write_bytes(b"not a tarball")
    with pytest.raises(ValueError, match="not a readable tar"):
        load_cifar10(bad_tar, cache_dir=tmp_path / "cache")


def test_missing_cifar10(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="root=.*download=True"):
        load_cifar10(tmp_path / "nowhere")
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "cifar10")):
        load_cifar10()


def test_download_cifar10_through_torchvision(tmp_path: Path, monkeypatch) -> None:
    calls = []

    class FakeCIFAR10:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            write_cifar10_pickles(Path(root) / "cifar-10-batches-py")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    monkeypatch.setenv("UNLEARNKIT_DATA", str(tmp_path))
    train, _ = load_cifar10(download=True)
    assert calls == [(str(tmp_path / "cifar10"), True, True)] and len(train) == 15


COARSE = [f"coarse{k}" for k in range(20)]
FINE = [f"fine{k:02d}" for k in range(100)]


def coarse_of(fine: np.ndarray) -> np.ndarray:
    return (fine * 7) % 20  # any many-to-one map; fine classes f, f+20, ... share a coarse label


def write_cifar100(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, seed in (("train", 200, 1), ("test", 30, 2)):
        fine = np.arange(n) % 100
        out[split] = fine
        entry = {
            "data": rows(n, seed),
            "fine_labels": fine.tolist(),
            "coarse_labels": coarse_of(fine).tolist(),
        }
        (folder / split).write_bytes(pickle.dumps(entry))
    meta = {"fine_label_names": FINE, "coarse_label_names": COARSE}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return out


def test_cifar100_fine_targets_and_superclasses(tmp_path: Path) -> None:
    labels = write_cifar100(tmp_path / "cifar-100-python")
    train, test = load_cifar100(tmp_path)
    assert train.images.shape == (200, 3, 32, 32) and len(test) == 30
    assert train.targets.tolist() == labels["train"].tolist() and train.classes == FINE
    assert train.augment and not test.augment and train.mean == cifar.CIFAR100_MEAN
    groups = cifar100_superclasses(tmp_path)
    assert list(groups) == COARSE
    assert groups["coarse0"] == [0, 20, 40, 60, 80] and groups["coarse7"] == [1, 21, 41, 61, 81]
    assert superclass_groups("cifar100", tmp_path) == groups
    coarse = with_superclasses(test, groups)
    assert coarse.targets.tolist() == coarse_of(labels["test"]).tolist()
    assert coarse.fine_targets.tolist() == labels["test"].tolist() and coarse.classes == COARSE


def test_cifar100_inconsistent_coarse_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    entry = pickle.loads((tmp_path / "train").read_bytes())
    entry["coarse_labels"][100] = (entry["coarse_labels"][0] + 1) % 20  # fine 0 in two groups
    (tmp_path / "train").write_bytes(pickle.dumps(entry))
    with pytest.raises(ValueError, match="two coarse labels"):
        cifar100_superclasses(tmp_path)


def test_missing_cifar100_and_download(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-100-python.*download=True"):
        load_cifar100(tmp_path)
    calls = []

    class FakeCIFAR100:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            write_cifar100(Path(root) / "cifar-100-python")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    train, _ = load_cifar100(tmp_path, download=True, augment=False)
    assert calls == [(str(tmp_path), True, True)] and len(train) == 200 and not train.augment
