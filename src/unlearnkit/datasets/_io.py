"""Small file helpers shared by the dataset loaders: default data dir, atomic cache writes."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from unlearnkit.atomic import atomic_torch_save

__all__ = ["atomic_torch_save", "default_data_dir", "fingerprint", "load_tensor_cache"]


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


def load_tensor_cache(path: Path) -> dict[str, Any] | None:
    """Load a cache file written by :func:`atomic_torch_save`, or return None if absent/unreadable.

    Args:
        path: Cache file.

    Returns:
        The stored dict, or None when the file does not exist or cannot be unpickled safely (a
        corrupt entry is then rebuilt by the caller and atomically replaced).
    """
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file can fail in many ways; it is just rebuilt
        return None
