"""Small file helpers shared by the dataset loaders: default data dir, verified tensor caches."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import Tensor

from unlearnkit.atomic import atomic_torch_save
from unlearnkit.store import ArtifactStore

__all__ = ["atomic_torch_save", "cached_tensors", "default_data_dir", "fingerprint"]

_TENSORS_FILE = "tensors.pt"


def default_data_dir() -> Path:
    """Return the root directory for downloads and caches.

    Returns:
        ``$UNLEARNKIT_DATA`` when set, else ``~/.cache/unlearnkit``. The directory is not created.
    """
    env = os.environ.get("UNLEARNKIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unlearnkit"


def fingerprint(paths: Iterable[Path]) -> str:
    """Hash the resolved path, size and modification time of each file into a short cache key.

    Args:
        paths: Files whose identity defines the cache entry (order matters).

    Returns:
        A 16-character hexadecimal key that changes when any file is moved, resized or touched.
    """
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cached_tensors(
    cache_dir: Path,
    namespace: str,
    key: dict[str, object],
    build: Callable[[], dict[str, Tensor]],
) -> dict[str, Tensor]:
    """Decoded dataset tensors from a verified store entry, or ``build()`` them and store them.

    The entry is ``<cache_dir>/<namespace>/<hash of key>/tensors.pt`` of an
    :class:`~unlearnkit.store.ArtifactStore`: written atomically with its SHA-256, verified
    before loading; a corrupt entry (truncated, emptied, bit-flipped) is moved to
    ``<cache_dir>/corrupt/`` with one warning line and rebuilt. Two processes decoding the same
    data at once decode it once.

    Args:
        cache_dir: the store's root directory.
        namespace: e.g. ``"cifar10-tar"``.
        key: everything the tensors depend on (source fingerprint, cache format version).
        build: decodes the source into a dict name → tensor.

    Returns:
        The dict name → tensor (on CPU).

    Raises:
        ValueError: the entry's manifest holds another key (left untouched).
        Exception: whatever ``build`` raises for a bad source (nothing is stored then).
    """
    store = ArtifactStore(cache_dir)
    tensors, _, _ = store.get_or_create(
        namespace,
        key,
        build,
        save=lambda value, directory: torch.save(value, directory / _TENSORS_FILE),
        load=lambda entry: torch.load(
            entry.file(_TENSORS_FILE), map_location="cpu", weights_only=True
        ),
    )
    return tensors
