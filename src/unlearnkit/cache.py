"""On-disk cache of trained originals and retrained references, keyed by a hash of their config.

An entry is ``<root>/models/<hash>/`` holding ``model.pt`` (weights + architecture) and
``meta.json`` (the full config that was hashed, the training time in seconds). Entries are written
atomically (a temp directory renamed into place) and never overwritten by a different config.

Evaluations of cached models (their outputs and metrics on one forget request) are kept beside
them as ``<root>/evaluations/<hash>.pt`` (see :meth:`ModelCache.get_or_evaluate`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.atomic import atomic_torch_save
from unlearnkit.checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$UNLEARNKIT_CACHE``, else ``$UNLEARNKIT_DATA/cache``, else ``~/.cache/unlearnkit/cache``."""
    if os.environ.get("UNLEARNKIT_CACHE"):
        return Path(os.environ["UNLEARNKIT_CACHE"])
    base = os.environ.get("UNLEARNKIT_DATA") or Path.home() / ".cache" / "unlearnkit"
    return Path(base) / "cache"


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 (first 20 hex chars) of the canonical JSON of ``config`` (sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class ModelCache:
    """Trained-model cache.

    Args:
        root: cache directory (default :func:`default_cache_dir`).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, config: dict[str, Any]) -> Path:
        return self.root / "models" / config_hash(config)

    def load(self, model: nn.Module, config: dict[str, Any]) -> dict[str, Any] | None:
        """Load the cached weights for ``config`` into ``model``; ``None`` on a miss.

        Raises:
            ValueError: the entry's stored config differs from ``config`` (hash collision or a
                tampered entry): it is left untouched.
        """
        entry = self.entry(config)
        meta_path = entry / "meta.json"
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        if json.dumps(meta["config"], sort_keys=True, default=str) != json.dumps(
            config, sort_keys=True, default=str
        ):
            raise ValueError(f"cache entry {entry} holds another config; remove it by hand")
        load_checkpoint(model, entry / "model.pt")
        return meta

    def store(self, model: nn.Module, config: dict[str, Any], *, train_seconds: float) -> Path:
        """Write an entry atomically; an existing entry for the same config is kept as is."""
        entry = self.entry(config)
        if (entry / "meta.json").is_file():
            return entry
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}."))
        try:
            save_checkpoint(model, tmp / "model.pt")
            meta = {"config": config, "train_seconds": train_seconds, "created": time.time()}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
            try:
                os.rename(tmp, entry)
            except OSError:  # another process won the race: keep its entry
                if not (entry / "meta.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return entry

    def get_or_train(
        self,
        model: nn.Module,
        config: dict[str, Any],
        train: Callable[[nn.Module], None],
        *,
        what: str = "model",
    ) -> tuple[float, bool]:
        """Load ``model`` from the cache or train it (in place) and store it.

        Args:
            model: a freshly built model (weights are replaced).
            config: everything that determines the trained weights.
            train: trains ``model`` in place.
            what: name used in log messages ("original", "retrained").

        Returns:
            ``(train_seconds, hit)``: the (cached) training time in seconds and whether the
            cache was hit.
        """
        meta = self.load(model, config)
        if meta is not None:
            log.info("cache hit: loaded the %s model from %s", what, self.entry(config))
            return float(meta["train_seconds"]), True
        log.info("cache miss: training the %s model", what)
        start = time.perf_counter()
        train(model)
        seconds = time.perf_counter() - start
        self.store(model, config, train_seconds=seconds)
        return seconds, False

    def get_or_evaluate(
        self,
        config: dict[str, Any],
        evaluate: Callable[[], Any],
        *,
        allowed: tuple[type, ...] = (),
        what: str = "model",
    ) -> tuple[Any, bool]:
        """Load a stored evaluation for ``config`` or run ``evaluate()`` and store its result.

        The result is written with :func:`torch.save` (atomically, never over an existing entry)
        and read back with ``weights_only=True``: only tensors, plain containers and the classes
        in ``allowed`` (e.g. :class:`~unlearnkit.evaluation.collect.Outputs`) can come out of it.

        Args:
            config: everything the evaluation depends on (models, split, evaluator, code).
            evaluate: computes the result (tensors, dicts, lists, numbers, ``allowed`` classes).
            allowed: dataclasses the result may contain.
            what: name used in log messages.

        Returns:
            ``(result, hit)``.

        Raises:
            ValueError: the stored entry holds another config (it is left untouched).
        """
        path = self.root / "evaluations" / f"{config_hash(config)}.pt"
        if path.is_file():
            with torch.serialization.safe_globals(list(allowed)):
                stored = torch.load(path, weights_only=True)
            if json.dumps(stored["config"], sort_keys=True, default=str) != json.dumps(
                config, sort_keys=True, default=str
            ):
                raise ValueError(f"cache entry {path} holds another config; remove it by hand")
            log.info("cache hit: loaded the %s evaluation from %s", what, path)
            return stored["result"], True
        result = evaluate()
        plain = json.loads(json.dumps(config, sort_keys=True, default=str))
        if not path.is_file():
            atomic_torch_save({"config": plain, "result": result}, path)
        return result, False
