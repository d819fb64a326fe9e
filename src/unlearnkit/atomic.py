"""Atomic file writes: a reader never sees a half-written file, a failed write leaves no trace.

Every cache entry, checkpoint, report and downloaded file of unlearnkit is written the same way:
to a temporary file in the destination's directory (so the rename stays on one file system), then
moved into place with :func:`os.replace`, which is atomic on POSIX and Windows. The temporary file
is ``fsync``-ed before the rename and the directory after it, so after a crash or power loss the
destination holds either the old or the complete new content, never a truncated file. If writing
fails, the temporary file is removed and an existing destination is left untouched.

:func:`tempfile.mkstemp` creates its file with mode ``0600`` whatever the umask, and the rename
keeps that mode; the temp file is therefore given ``0o666 & ~umask`` (the mode :func:`open` would
have given it) before the rename, so reports, plots and cached models honour the user's umask.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "atomic_torch_save",
    "atomic_write_bytes",
    "current_umask",
    "fsync_directory",
    "umask_mode",
]


def current_umask() -> int:
    """The process's umask, e.g. ``0o022``.

    Read from ``/proc/self/status`` where it exists (Linux), which leaves the umask untouched;
    elsewhere by setting and restoring it with :func:`os.umask`.

    Returns:
        The umask bits (``0`` to ``0o777``).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def umask_mode(directory: bool = False) -> int:
    """The mode a new file (``0o666``) or directory (``0o777``) gets under the current umask.

    Args:
        directory: the mode of a directory instead of a file.

    Returns:
        E.g. ``0o644`` for a file and ``0o755`` for a directory under umask ``0o022``.
    """
    return (0o777 if directory else 0o666) & ~current_umask()


def fsync_directory(path: str | Path) -> None:
    """Flush a directory's entries (a rename or a new file in it) to disk.

    Args:
        path: the directory.

    Raises:
        OSError: the directory cannot be opened. Where directories cannot be fsync-ed
            (Windows), nothing is done.
    """
    if os.name == "nt":  # pragma: no cover - directories cannot be opened for fsync there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write`` on a hidden temp file beside ``path`` (``.<name>.<random>.tmp``), fsync it,
    ``os.replace`` it onto ``path`` and fsync the directory; on any error remove the temp file
    and re-raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, umask_mode())  # mkstemp made it 0600; give it the mode open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
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
