"""Fashion-MNIST read straight from its IDX files (plain or gzipped)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from unlearnkit.datasets._io import default_data_dir
from unlearnkit.datasets.tensors import TensorImageDataset

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "load_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_MEAN: tuple[float] = (0.2860,)
FASHION_MNIST_STD: tuple[float] = (0.3530,)

#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08


def load_fashion_mnist(
    root: str | Path | None = None, *, download: bool = False
) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Load Fashion-MNIST (60k train / 10k test, 28x28 gray, 10 classes).

    Data: "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms"
    (Xiao, Rasul & Vollgraf, 2017, arXiv:1708.07747). Files are looked up (``.gz`` or plain) in
    ``root`` and ``root/FashionMNIST/raw`` (torchvision's layout); with ``root=None`` in
    ``$UNLEARNKIT_DATA/fashion-mnist`` (and its ``FashionMNIST/raw``) and
    ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``). The IDX files are
    parsed here, not by torchvision, because Debian's recompressed ``.gz`` files fail
    torchvision's MD5 check.

    Args:
        root: Directory holding the four IDX files, or None for the default locations.
        download: If the files are absent, fetch them with ``torchvision.datasets.FashionMNIST``
            into ``root`` (default ``$UNLEARNKIT_DATA/fashion-mnist``).

    Returns:
        ``(train, test)`` datasets without augmentation, normalized with mean/std 0.2860/0.3530.

    Shapes:
        ``images`` uint8 ``(N, 1, 28, 28)``; ``targets`` int64 ``(N,)`` in 0..9.

    Raises:
        FileNotFoundError: If files are missing and ``download`` is False.
        ValueError: If a file is not a valid IDX file of the expected kind.
    """
    dirs = _search_dirs(root)
    found = _locate(dirs)
    if None in found.values() and download:
        _download(Path(root) if root is not None else dirs[0])
        found = _locate(dirs)
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files {missing} (.gz or plain) not found in "
            f"{[str(d) for d in dirs]}; pass root=... (e.g. ../shared/data/fashion-mnist), "
            "download=True, or `apt-get install dataset-fashion-mnist`"
        )
    return tuple(_split(found, split) for split in ("train", "test"))


def read_idx(path: str | Path, *, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (the MNIST format), plain or gzipped.

    Format: "Gradient-Based Learning Applied to Document Recognition" (LeCun et al., Proc. IEEE
    1998); file layout as documented on the MNIST page: magic ``00 00 08 <ndim>``, then ``ndim``
    big-endian uint32 sizes, then the data.

    Args:
        path: File path; a ``.gz`` suffix means gzip-compressed.
        ndim: Expected number of dimensions (3 for images, 1 for labels).

    Returns:
        A read-only uint8 array of the stored shape.

    Raises:
        ValueError: If the file is not gzip as its name says, the magic number is wrong, or its
            length does not match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    magic = bytes([0, 0, _UBYTE, ndim])
    if raw[:4] != magic:
        raise ValueError(
            f"{path} is not an IDX uint8 file with {ndim} dims: magic {raw[:4].hex()} != "
            f"{magic.hex()}; re-copy or re-download it"
        )
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != int(np.prod(dims)):
        raise ValueError(
            f"{path} holds {len(raw) - header} data bytes but its header says {dims}; "
            "the file is truncated or corrupt, re-copy or re-download it"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path} is not a valid gzip file ({err}); re-copy or re-download it"
        ) from err


def _search_dirs(root: str | Path | None) -> list[Path]:
    base = Path(root).expanduser() if root is not None else default_data_dir() / "fashion-mnist"
    dirs = [base, base / "FashionMNIST" / "raw"]
    return dirs if root is not None else [*dirs, SYSTEM_DIR]


def _locate(dirs: list[Path]) -> dict[str, Path | None]:
    found: dict[str, Path | None] = {}
    for name in (n for pair in _FILES.values() for n in pair):
        candidates = (d / f for d in dirs for f in (name, name + ".gz"))
        found[name] = next((p for p in candidates if p.is_file()), None)
    return found


def _download(root: Path) -> None:
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(str(root), train=train, download=True)


def _split(found: dict[str, Path | None], split: str) -> TensorImageDataset:
    image_file, label_file = _FILES[split]
    images = read_idx(found[image_file], ndim=3)
    labels = read_idx(found[label_file], ndim=1)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} files disagree: images {images.shape}, labels {labels.shape}; "
            "expected (N, 28, 28) and (N,), re-copy them"
        )
    return TensorImageDataset(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD,
        classes=FASHION_MNIST_CLASSES,
    )
