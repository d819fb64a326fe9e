"""CIFAR-10 / CIFAR-100 loaders: torchvision pickles, an image-folder tree, or a tarball of either."""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from unlearnkit.datasets._io import cached_tensors, default_data_dir, fingerprint
from unlearnkit.datasets.tensors import TensorImageDataset

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "cifar100_superclasses",
    "load_cifar10",
    "load_cifar100",
]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_MEAN: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, ...] = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: tuple[float, ...] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: tuple[float, ...] = (0.2673, 0.2564, 0.2762)

_CIFAR10_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
_CIFAR100_FILES = ("train", "test", "meta")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_SPLITS = ("train", "test")
_CACHE_VERSION = 1

Arrays = dict[str, Tensor]
"""``{train,test}_{images,targets}``: uint8 ``(N, 3, H, W)`` and int64 ``(N,)`` tensors."""


def load_cifar10(
    root: str | Path | None = None,
    *,
    download: bool = False,
    augment: bool = True,
    cache_dir: str | Path | None = None,
) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Load CIFAR-10 (50k train / 10k test, 32x32 RGB, 10 classes).

    Data: "Learning Multiple Layers of Features from Tiny Images" (Krizhevsky, tech. report,
    University of Toronto, 2009), Ch. 3. Accepted layouts, looked up in this order:
    torchvision's ``cifar-10-batches-py/`` pickles (in ``root`` or ``root`` itself); an image
    folder ``{train,test}/<class>/*.{jpg,png}`` (in ``root`` or one sub-directory down; class
    folders must be the 10 CIFAR-10 names, whose alphabetical order is the label order, files are
    taken in name order); a ``.tar.gz``/``.tgz``/``.tar`` of either layout (``root`` itself, or a
    ``cifar10*``/``cifar-10*`` tarball inside ``root``), read in memory without extracting.
    Decoded images from a folder or tarball are cached in ``cache_dir`` (a verified store entry
    ``cifar10-<tar|folder>/<hash>/tensors.pt``, see :func:`~unlearnkit.datasets._io.cached_tensors`),
    keyed by the source files' paths, sizes and modification times, and reused next time.

    Args:
        root: Where to look; None means ``$UNLEARNKIT_DATA/cifar10``.
        download: If nothing is found, fetch torchvision's copy into that directory.
        augment: Random padded crop + flip on the train split (the test split never augments).
        cache_dir: Where decoded tensors are cached; default ``$UNLEARNKIT_DATA/cache/datasets``.

    Returns:
        ``(train, test)`` datasets normalized with the CIFAR-10 mean/std.

    Shapes:
        ``images`` uint8 ``(N, 3, 32, 32)``; ``targets`` int64 ``(N,)`` in 0..9.

    Raises:
        FileNotFoundError: If no accepted layout is found and ``download`` is False.
        ValueError: If the files are malformed (wrong class folders, mixed image sizes, ...).
    """
    base = _base(root, "cifar10")
    source = _find_cifar10(base)
    if source is None and download:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(base), train=True, download=True)
        source = _find_cifar10(base)
    if source is None:
        raise FileNotFoundError(
            f"no CIFAR-10 data in {base} (looked for cifar-10-batches-py/, {{train,test}}/<class>/ "
            "image folders, cifar10*.tar.gz); pass root=... (e.g. "
            "../shared/data/cifar10-jpeg-q75.tar.gz) or download=True"
        )
    kind, path = source
    if kind == "pickle":
        arrays = _read_cifar10_pickles(path)
    else:
        arrays = _cached(kind, path, _cache_dir(cache_dir))
    return _datasets(arrays, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, augment)


def load_cifar100(
    root: str | Path | None = None, *, download: bool = False, augment: bool = True
) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Load CIFAR-100 (50k train / 10k test, 32x32 RGB) with its 100 fine labels as targets.

    Data: "Learning Multiple Layers of Features from Tiny Images" (Krizhevsky, tech. report,
    University of Toronto, 2009), Ch. 3. Reads torchvision's ``cifar-100-python/{train,test,meta}``
    pickles (in ``root`` or ``root`` itself). The 20 coarse labels are available through
    :func:`cifar100_superclasses` and :func:`~unlearnkit.datasets.tensors.with_superclasses`.
    The files are Python pickles: load only copies you trust.

    Args:
        root: Where to look; None means ``$UNLEARNKIT_DATA/cifar100``.
        download: If nothing is found, fetch torchvision's copy into that directory.
        augment: Random padded crop + flip on the train split (the test split never augments).

    Returns:
        ``(train, test)`` datasets normalized with the CIFAR-100 mean/std; ``classes`` are the
        fine label names.

    Shapes:
        ``images`` uint8 ``(N, 3, 32, 32)``; ``targets`` int64 ``(N,)`` in 0..99.

    Raises:
        FileNotFoundError: If the files are absent and ``download`` is False.
        ValueError: If a file is malformed.
    """
    folder = _cifar100_dir(root, download)
    meta = _unpickle(folder / "meta")
    arrays: Arrays = {}
    for split in _SPLITS:
        entry = _unpickle(folder / split)
        arrays[f"{split}_images"] = _rows_to_images(entry["data"], folder / split)
        arrays[f"{split}_targets"] = torch.as_tensor(entry["fine_labels"], dtype=torch.long)
    classes = meta["fine_label_names"]
    return _datasets(arrays, classes, CIFAR100_MEAN, CIFAR100_STD, augment)


def cifar100_superclasses(
    root: str | Path | None = None, *, download: bool = False
) -> dict[str, list[int]]:
    """Build CIFAR-100's coarse-label grouping from its own files.

    Data: Krizhevsky (2009), Ch. 3: each of the 100 fine classes belongs to one of 20 coarse
    classes ("superclasses"); the pairing is read from the train split's labels.

    Args:
        root: As for :func:`load_cifar100`.
        download: As for :func:`load_cifar100`.

    Returns:
        Coarse label name -> sorted fine class ids, in coarse-label order; a partition suitable
        for :func:`~unlearnkit.datasets.tensors.with_superclasses`.

    Raises:
        FileNotFoundError: If the files are absent and ``download`` is False.
        ValueError: If a fine class appears under two coarse labels.
    """
    folder = _cifar100_dir(root, download)
    names = _unpickle(folder / "meta")["coarse_label_names"]
    train = _unpickle(folder / "train")
    pairs = np.unique(np.stack([train["fine_labels"], train["coarse_labels"]], axis=1), axis=0)
    if len(np.unique(pairs[:, 0])) != len(pairs):
        raise ValueError(
            f"{folder / 'train'} maps some fine label to two coarse labels; re-copy it"
        )
    return {name: sorted(int(f) for f, c in pairs if c == k) for k, name in enumerate(names)}


def _base(root: str | Path | None, name: str) -> Path:
    return Path(root).expanduser() if root is not None else default_data_dir() / name


def _cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is None:
        return default_data_dir() / "cache" / "datasets"
    return Path(cache_dir).expanduser()


def _is_tar(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_TAR_SUFFIXES)


def _find_cifar10(root: Path) -> tuple[str, Path] | None:
    if _is_tar(root):
        return "tar", root
    if not root.is_dir():
        return None
    for folder in (root / "cifar-10-batches-py", root):
        if all((folder / f).is_file() for f in _CIFAR10_BATCHES):
            return "pickle", folder
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if all((folder / s).is_dir() for s in _SPLITS):
            return "folder", folder
    prefixes = ("cifar10", "cifar-10")
    tars = sorted(p for p in root.iterdir() if _is_tar(p) and p.name.lower().startswith(prefixes))
    return ("tar", tars[0]) if tars else None


def _cifar100_dir(root: str | Path | None, download: bool) -> Path:
    base = _base(root, "cifar100")
    candidates = (base / "cifar-100-python", base)
    found = next((d for d in candidates if all((d / f).is_file() for f in _CIFAR100_FILES)), None)
    if found is None and download:
        from torchvision.datasets import CIFAR100

        CIFAR100(str(base), train=True, download=True)
        return base / "cifar-100-python"
    if found is None:
        raise FileNotFoundError(
            f"CIFAR-100 files {list(_CIFAR100_FILES)} not found in {[str(d) for d in candidates]};"
            " pass root=... (the folder holding cifar-100-python/) or download=True"
        )
    return found


def _unpickle(path: Path) -> dict[str, Any]:
    return _loads(path.read_bytes(), str(path))


def _loads(data: bytes, source: str) -> dict[str, Any]:
    try:
        entry = pickle.loads(data, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{source} is not a CIFAR pickle ({err}); re-copy or re-download it"
        ) from err
    if not isinstance(entry, dict):
        raise ValueError(f"{source} holds a {type(entry).__name__}, not a CIFAR dict; re-copy it")
    return _Entry(source, {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()})


class _Entry(dict):
    """A CIFAR pickle's dict whose missing keys raise a ValueError naming the file."""

    def __init__(self, source: str, items: dict[str, Any]) -> None:
        super().__init__(items)
        self.source = source

    def __missing__(self, key: str) -> Any:
        raise ValueError(f"{self.source} has no {key!r} entry; is it the right CIFAR file?")


def _rows_to_images(data: Any, source: Path | str) -> Tensor:
    rows = np.asarray(data)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{source}: 'data' must be uint8 rows of 3072 values (CHW), got {rows.dtype} "
            f"{rows.shape}; re-copy or re-download it"
        )
    return torch.from_numpy(rows.reshape(-1, 3, 32, 32).copy())


def _read_cifar10_pickles(folder: Path) -> Arrays:
    entries = {name: _unpickle(folder / name) for name in _CIFAR10_BATCHES}
    return _cifar10_batches_to_arrays(entries, folder)


def _cifar10_batches_to_arrays(entries: dict[str, dict[str, Any]], source: Path) -> Arrays:
    arrays: Arrays = {}
    for split, names in (("train", _CIFAR10_BATCHES[:-1]), ("test", _CIFAR10_BATCHES[-1:])):
        images = [_rows_to_images(entries[n]["data"], source / n) for n in names]
        labels = [torch.as_tensor(entries[n]["labels"], dtype=torch.long) for n in names]
        arrays[f"{split}_images"] = torch.cat(images)
        arrays[f"{split}_targets"] = torch.cat(labels)
    return arrays


def _cached(kind: str, path: Path, cache_dir: Path) -> Arrays:
    files = [path] if kind == "tar" else _image_files(path)
    return cached_tensors(
        cache_dir,
        f"cifar10-{kind}",
        {"files": fingerprint(files), "version": _CACHE_VERSION},
        lambda: _read_tar(path) if kind == "tar" else _read_folder(path, files),
    )


def _image_files(folder: Path) -> list[Path]:
    files = (p for s in _SPLITS for p in (folder / s).glob("*/*") if p.is_file())
    return sorted(p for p in files if p.suffix.lower() in _IMAGE_SUFFIXES)


def _read_folder(folder: Path, files: list[Path]) -> Arrays:
    entries = ((p.relative_to(folder).as_posix(), p.read_bytes()) for p in files)
    return _decode_tree(entries, folder)


def _read_tar(path: Path) -> Arrays:
    batches: dict[str, dict[str, Any]] = {}
    images: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:  # one forward pass: random access into a .gz is quadratic
                base = PurePosixPath(member.name).name
                if not member.isfile():
                    continue
                if base in _CIFAR10_BATCHES:
                    data = archive.extractfile(member).read()
                    batches[base] = _loads(data, f"{path}:{member.name}")
                elif base.lower().endswith(_IMAGE_SUFFIXES):
                    images.append((member.name, archive.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable tar archive ({err}); re-copy it") from err
    if len(batches) == len(_CIFAR10_BATCHES):
        return _cifar10_batches_to_arrays(batches, path)
    return _decode_tree(iter(images), path)


def _decode_tree(entries: Iterator[tuple[str, bytes]], source: Path) -> Arrays:
    """Decode ``(relative path, file bytes)`` pairs laid out as ``.../{split}/{class}/{file}``."""
    found: dict[str, list[tuple[int, str, bytes]]] = {s: [] for s in _SPLITS}
    for name, data in entries:
        parts = PurePosixPath(name).parts
        if len(parts) < 3 or parts[-3] not in _SPLITS:
            continue
        if PurePosixPath(name).suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        found[parts[-3]].append((_class_id(parts[-2], source), name, data))
    arrays: Arrays = {}
    for split, items in found.items():
        if not items:
            raise ValueError(f"{source} has no {split}/<class>/*.jpg images; check the layout")
        items.sort(key=lambda item: (item[0], PurePosixPath(item[1]).name))
        images = [_decode_named(name, data, source) for _, name, data in items]
        arrays[f"{split}_images"] = _stack(images, source)
        arrays[f"{split}_targets"] = torch.tensor([c for c, _, _ in items], dtype=torch.long)
    return arrays


def _class_id(name: str, source: Path) -> int:
    if name not in CIFAR10_CLASSES:
        raise ValueError(
            f"{source}: class folder {name!r} is not a CIFAR-10 class; expected folders named "
            f"{', '.join(CIFAR10_CLASSES)}"
        )
    return CIFAR10_CLASSES.index(name)


def _decode_image(data: bytes) -> Tensor:
    """Decode one encoded image (JPEG/PNG bytes) to uint8 ``(3, H, W)`` RGB with Pillow."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)


def _decode_named(name: str, data: bytes, source: Path) -> Tensor:
    try:
        return _decode_image(data)
    except OSError as err:  # PIL.UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"{source}: cannot decode {name} ({err}); re-copy it") from err


def _stack(images: list[Tensor], source: Path) -> Tensor:
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) != 1:
        raise ValueError(f"{source} mixes image sizes {sorted(shapes)}; all must be equal")
    return torch.stack(images)


def _datasets(
    arrays: Arrays,
    classes: Any,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: bool,
) -> tuple[TensorImageDataset, TensorImageDataset]:
    return tuple(
        TensorImageDataset(
            arrays[f"{split}_images"],
            arrays[f"{split}_targets"],
            mean=mean,
            std=std,
            classes=list(classes),
            augment=augment and split == "train",
        )
        for split in _SPLITS
    )
