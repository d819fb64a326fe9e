"""One keyed, verified, crash-safe store for every artifact unlearnkit caches.

Trained models, their evaluations, SSD importances, decoded dataset tensors (and, as they come,
searched forget sets and ensemble members) are all kept the same way. An artifact is addressed by
a **namespace** (``"models"``, ``"evaluations"``, ``"importance"``, ...; any new name works, no
edit here) and a **key**: the JSON-able config that determines it. Its entry is a directory::

    <root>/<namespace>/<config_hash(key)>/
        manifest.json   # {"format", "key", "files": {name: sha256}, "created", "environment",
                        #  "meta"}
        <the files the caller wrote>

The guarantees:

* **Atomic writes.** An entry is written into a hidden temp directory beside its final place;
  every file and the directory are ``fsync``-ed, the manifest is written last, then the directory
  is renamed into place and its parent ``fsync``-ed. A reader sees a complete entry or none; an
  existing entry is never overwritten.
* **Verified loads.** The SHA-256 of every file is recorded in the manifest at write time and
  checked by :meth:`ArtifactStore.get` before anything is read from the entry. A **corrupt**
  entry (unreadable manifest, missing file, checksum mismatch — a truncated, emptied or bit-flipped
  file) is never loaded: it is moved to ``<root>/corrupt/<namespace>/<name>.<timestamp>``, reported
  in one warning line naming the bad file, and treated as a miss so the caller rebuilds it.
* **One writer per entry.** :meth:`ArtifactStore.claim` takes an exclusive lock
  (:class:`filelock.FileLock`: ``flock`` on POSIX, released by the kernel when its process dies,
  so a crashed writer never blocks anyone) on ``<root>/.locks/<namespace>/<name>.lock``.
  :meth:`ArtifactStore.get_or_create` looks up, claims, looks up again (another process may have
  written the entry while this one waited), and only then builds: two processes asking for one
  key build it once and both get the same entry. Locks need a local file system (or an NFS with
  working ``flock``). The ranks of one distributed job (``WORLD_SIZE`` > 1, or an initialised
  ``torch.distributed`` group) build *together* (a DDP fit needs every rank), so there
  :meth:`~ArtifactStore.get_or_create` does not claim: each rank builds, and the first complete
  entry renamed into place is kept.

An entry whose manifest records another key than the one asked for (a hash collision or an edited
manifest) is not corrupt but foreign: it raises :class:`ValueError` and is left untouched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from unlearnkit.atomic import fsync_directory, umask_mode

__all__ = ["ArtifactStore", "Entry", "canonical_json", "config_hash", "file_sha256"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MANIFEST = "manifest.json"
#: Version of the manifest layout; entries of another format are treated as corrupt.
FORMAT = 1
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_RESERVED = {"corrupt"}


def canonical_json(config: Any) -> str:
    """The canonical JSON text of ``config``: sorted keys, non-JSON values as ``str``.

    Args:
        config: a JSON-able value (dicts, lists, strings, numbers; other values are ``str``-ed).

    Returns:
        The JSON text two equal configs share whatever their key order.
    """
    return json.dumps(config, sort_keys=True, default=str)


def config_hash(config: Any) -> str:
    """SHA-256 (first 20 hex digits) of :func:`canonical_json` of ``config``: an entry's name.

    Args:
        config: a JSON-able key.

    Returns:
        20 lowercase hexadecimal characters.
    """
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:20]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks.

    Args:
        path: the file.

    Returns:
        64 lowercase hexadecimal characters.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _environment() -> dict[str, str]:
    env = {"python": platform.python_version()}
    for package in ("torch", "unlearnkit"):
        try:
            env[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            env[package] = "unknown"
    return env


def _in_distributed_job() -> bool:
    """Whether this process is one rank of a multi-process job (its ranks must build together)."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return True
    except ValueError:
        pass
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CorruptEntry(Exception):
    """Internal: why an entry failed verification (never escapes :class:`ArtifactStore`)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Entry:
    """A verified store entry.

    Attributes:
        path: the entry directory.
        manifest: its manifest: ``key`` (the config), ``files`` (name → SHA-256 hex digest),
            ``created`` (Unix time, seconds), ``environment`` (python/torch/unlearnkit versions),
            ``meta`` (what the writer added).
    """

    path: Path

    manifest: dict[str, Any]

    @property
    def meta(self) -> dict[str, Any]:
        """The writer's extra JSON data (``put(..., meta=...)``)."""
        return dict(self.manifest.get("meta", {}))

    @property
    def checksums(self) -> dict[str, str]:
        """File name → SHA-256 hex digest, as recorded at write time (and verified)."""
        return dict(self.manifest["files"])

    def file(self, name: str) -> Path:
        """The path of one of the entry's files.

        Args:
            name: a file name listed in the manifest.

        Returns:
            ``path / name``.

        Raises:
            KeyError: the entry has no such file.
        """
        if name not in self.manifest["files"]:
            raise KeyError(f"{self.path} has no file {name!r}; it holds {sorted(self.checksums)}")
        return self.path / name


class ArtifactStore:
    """A directory of keyed, checksummed, atomically written entries (see the module docstring).

    Args:
        root: the store's directory (created on the first write).

    Example:
        >>> store = ArtifactStore(tmp)                                          # doctest: +SKIP
        >>> value, hit = store.get_or_create(
        ...     "squares", {"n": 4}, build=lambda: 16,
        ...     save=lambda v, d: (d / "v.txt").write_text(str(v)),
        ...     load=lambda e: int(e.file("v.txt").read_text()))               # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    # -- addressing ---------------------------------------------------------------------------
    def path(self, namespace: str, key: Any) -> Path:
        """The entry directory of ``key`` in ``namespace`` (whether or not it exists).

        Args:
            namespace: lower-case name (letters, digits, ``_.-``); ``corrupt`` is reserved.
            key: the JSON-able config that determines the artifact.

        Returns:
            ``root / namespace / config_hash(key)``.

        Raises:
            ValueError: ``namespace`` is not a plain lower-case name, or is reserved.
        """
        if not _NAMESPACE.fullmatch(namespace) or namespace in _RESERVED:
            raise ValueError(
                f"store namespace {namespace!r} is invalid; use a lower-case name of letters, "
                "digits and _.- other than 'corrupt'"
            )
        return self.root / namespace / config_hash(key)

    # -- reading ------------------------------------------------------------------------------
    def get(self, namespace: str, key: Any) -> Entry | None:
        """The verified entry of ``key``, or ``None`` when there is none or it was corrupt.

        Every file's SHA-256 is recomputed and compared with the manifest. A corrupt entry is
        moved aside (:meth:`quarantine`) with one warning line and ``None`` is returned.

        Args:
            namespace: see :meth:`path`.
            key: the config.

        Returns:
            The :class:`Entry`, or ``None`` (miss).

        Raises:
            ValueError: the entry's manifest records another key (it is left untouched), or
                ``namespace`` is invalid.
        """
        path = self.path(namespace, key)
        if not path.is_dir():
            return None
        try:
            return self._verify(path, key)
        except CorruptEntry as bad:
            self.quarantine(path, f"{bad.path} ({bad.reason})")
            return None

    def manifest(self, namespace: str, key: Any) -> dict[str, Any] | None:
        """The manifest of ``key``'s entry as written, **without** re-hashing its files.

        Cheap (one small JSON read); use it for what a just-verified entry recorded, e.g. a
        model's checksum. Use :meth:`get` before trusting the files themselves.

        Args:
            namespace: see :meth:`path`.
            key: the config.

        Returns:
            The manifest dict, or ``None`` when the entry or its manifest is missing/unreadable.
        """
        try:
            manifest = json.loads((self.path(namespace, key) / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def verify(self, namespace: str, key: Any) -> bool:
        """Whether ``key`` has a sound entry (a corrupt one is moved aside, as in :meth:`get`).

        Args:
            namespace: see :meth:`path`.
            key: the config.

        Returns:
            ``True`` when the entry exists and every checksum matches.

        Raises:
            ValueError: as :meth:`get`.
        """
        return self.get(namespace, key) is not None

    def _verify(self, path: Path, key: Any) -> Entry:
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise CorruptEntry(manifest_path, "missing: an unfinished or pre-store entry")
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
            ok = manifest["format"] == FORMAT and isinstance(files, dict) and "key" in manifest
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CorruptEntry(manifest_path, f"unreadable manifest: {err}") from None
        if not ok:
            raise CorruptEntry(manifest_path, "manifest of another format")
        if canonical_json(manifest["key"]) != canonical_json(key):
            raise ValueError(
                f"cache entry {path} holds another config (hash collision or an edited manifest); "
                "remove it by hand"
            )
        for name, digest in files.items():
            file = path / name
            try:
                actual = file_sha256(file)
            except FileNotFoundError:
                raise CorruptEntry(file, "missing") from None
            except OSError as err:  # e.g. a directory where a file should be
                raise CorruptEntry(file, f"unreadable: {err}") from None
            if actual != digest:
                raise CorruptEntry(
                    file,
                    f"checksum mismatch: sha256 {actual[:12]}… but {digest[:12]}… was written",
                )
        return Entry(path, manifest)

    def quarantine(self, path: Path, reason: str) -> Path | None:
        """Move a bad entry directory to ``<root>/corrupt/`` and log one warning line.

        Args:
            path: the entry directory.
            reason: what is wrong (names the bad file).

        Returns:
            Where it was moved, or ``None`` when another process moved it first.
        """
        rel = path.relative_to(self.root)
        target = self.root / "corrupt" / rel.parent / f"{rel.name}.{time.strftime('%Y%m%dT%H%M%S')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        while target.exists():
            target = target.with_name(target.name + "_")
        try:
            path.rename(target)
        except FileNotFoundError:
            return None
        log.warning("corrupt cache entry %s: moved to %s and rebuilt", reason, target)
        return target

    # -- writing ------------------------------------------------------------------------------
    def put(
        self,
        namespace: str,
        key: Any,
        write: Callable[[Path], object],
        *,
        meta: dict[str, Any] | None = None,
    ) -> Entry:
        """Write an entry atomically; an existing entry of ``key`` is kept, never overwritten.

        ``write(directory)`` creates the entry's files in a hidden temp directory; their
        checksums and the manifest are recorded, everything is ``fsync``-ed, and the directory
        is renamed into place. If ``write`` raises, nothing is left behind.

        Args:
            namespace: see :meth:`path`.
            key: the config.
            write: writes the files (flat, no sub-directories) into the directory it is given.
            meta: extra JSON-able data for the manifest (e.g. a training time in seconds).

        Returns:
            The written entry, or the one already there (another writer's) unverified.

        Raises:
            ValueError: ``write`` wrote no files or a sub-directory, or ``namespace`` is invalid.
            OSError: the store cannot be written.
        """
        path = self.path(namespace, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            write(tmp)
            names = sorted(p.name for p in tmp.iterdir())
            if not names or any(not (tmp / n).is_file() for n in names) or MANIFEST in names:
                raise ValueError(
                    f"an entry of {namespace!r} must be one or more plain files other than "
                    f"{MANIFEST}; got {names}"
                )
            for name in names:
                _fsync_file(tmp / name)
            manifest = {
                "format": FORMAT,
                "key": json.loads(canonical_json(key)),
                "files": {n: file_sha256(tmp / n) for n in names},
                "created": time.time(),
                "environment": _environment(),
                "meta": meta or {},
            }
            with open(tmp / MANIFEST, "w") as handle:
                json.dump(manifest, handle, indent=2, default=str)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, umask_mode(directory=True))  # mkdtemp made it 0700; honour the umask
            fsync_directory(tmp)
            try:
                os.rename(tmp, path)
            except OSError:  # an entry appeared meanwhile (a writer that did not claim): keep it
                if not path.is_dir():
                    raise
                return Entry(path, self.manifest(namespace, key) or manifest)
            fsync_directory(path.parent)
            return Entry(path, manifest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def claim(self, namespace: str, key: Any) -> Iterator[None]:
        """Hold the exclusive right to write ``key``'s entry (blocks while another holds it).

        The lock is ``<root>/.locks/<namespace>/<name>.lock``, taken with ``flock`` (Windows:
        ``msvcrt.locking``); the kernel releases it when the holding process exits or dies, so a
        stale claim never blocks. Do not nest two claims of one key in one process.

        Args:
            namespace: see :meth:`path`.
            key: the config.

        Yields:
            Nothing; the claim is held inside the ``with`` block.
        """
        path = self.path(namespace, key)
        lock_path = self.root / ".locks" / namespace / f"{path.name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_path)
        try:
            lock.acquire(timeout=0)
        except TimeoutError:
            log.info("waiting for another process writing %s", path)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def get_or_create(
        self,
        namespace: str,
        key: Any,
        build: Callable[[], T],
        save: Callable[[T, Path], object],
        load: Callable[[Entry], T],
        *,
        meta: Callable[[T], dict[str, Any]] | None = None,
    ) -> tuple[T, Entry, bool]:
        """Load ``key``'s artifact, or build and store it — once across processes.

        Look up (verified); on a miss claim the key, look up again, and only if still missing
        call ``build()``, ``put`` it with ``save(value, directory)`` and return the built value.
        Inside a distributed job no claim is taken (see the module docstring): every rank that
        misses builds, and one rank's entry is kept.

        Args:
            namespace: see :meth:`path`.
            key: the config.
            build: computes the artifact (called at most once per key over all processes that
                share ``root``, unless an entry is later found corrupt).
            save: writes a value's files into the directory it is given.
            load: reads the value back from a verified :class:`Entry`.
            meta: extra manifest data computed from the built value.

        Returns:
            ``(value, entry, hit)``: ``hit`` is ``True`` when the value was loaded.

        Raises:
            ValueError: as :meth:`get`.
        """
        entry = self.get(namespace, key)
        if entry is not None:
            return load(entry), entry, True
        with nullcontext() if _in_distributed_job() else self.claim(namespace, key):
            entry = self.get(namespace, key)
            if entry is not None:
                return load(entry), entry, True
            value = build()
            entry = self.put(
                namespace,
                key,
                lambda directory: save(value, directory),
                meta=meta(value) if meta is not None else None,
            )
        return value, entry, False
