"""Atomic file writes: a reader never sees a half-written file, a failed write leaves no trace.

Every cache entry, checkpoint, report and downloaded file of unlearnkit is written the same way:
to a temporary file in the destination's directory (so the rename stays on one file system), then
moved into place with :func:`os.replace`, which is atomic on POSIX and Windows. If writing fails,
the temporary file is removed and an existing destination is left untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_torch_save", "atomic_write_bytes"]


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a hidden temp file beside ``path`` (``.<name>.<random>.tmp``), then
    ``os.replace`` it onto ``path``; on any error remove the temp file and re-raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, then ``os.replace``).

    Args:
        path: Destination file; missing parent directories are created. An existing file is
            replaced only once the new content is completely written.
        data: The bytes to write.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: The directory cannot be created or written (the temp file is removed and
            ``path`` is unchanged).
    """
    return _atomic_write(path, lambda handle: handle.write(data))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically (temp file beside it, then ``os.replace``).

    Args:
        obj: Anything :func:`torch.save` accepts (state dicts, dicts of tensors, strings, lists).
        path: Destination file; missing parent directories are created. An existing file is
            replaced only once the new content is completely written.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: The directory cannot be created or written.
        Exception: Whatever :func:`torch.save` raises for an object it cannot pickle. In every
            failure the temp file is removed and ``path`` is unchanged.
    """
    return _atomic_write(path, lambda handle: torch.save(obj, handle))
