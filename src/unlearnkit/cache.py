"""On-disk cache of trained originals and retrained references, keyed by a hash of their config.

Built on :class:`~unlearnkit.store.ArtifactStore`: a model is the entry ``<root>/models/<hash>/``
holding ``model.pt`` (weights + architecture) and ``manifest.json`` (the full config that was
hashed, the SHA-256 of ``model.pt``, the training time in seconds, creation time, versions).
Entries are written atomically, claimed so two processes never train one config twice, verified
before loading, and never overwritten by a different config; a corrupt entry is moved to
``<root>/corrupt/`` with one warning line and the model is trained again.

Evaluations of cached models (their outputs and metrics on one forget request) are kept in the
same store as ``<root>/evaluations/<hash>/`` (see :meth:`ModelCache.get_or_evaluate`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.checkpoint import load_checkpoint, save_checkpoint
from unlearnkit.store import ArtifactStore, config_hash

__all__ = ["ModelCache", "config_hash", "default_cache_dir"]

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
RESULT_FILE = "result.pt"


def default_cache_dir() -> Path:
    """``$UNLEARNKIT_CACHE``, else ``$UNLEARNKIT_DATA/cache``, else ``~/.cache/unlearnkit/cache``."""
    if os.environ.get("UNLEARNKIT_CACHE"):
        return Path(os.environ["UNLEARNKIT_CACHE"])
    base = os.environ.get("UNLEARNKIT_DATA") or Path.home() / ".cache" / "unlearnkit"
    return Path(base) / "cache"


class ModelCache:
    """Trained-model cache on an :class:`~unlearnkit.store.ArtifactStore`.

    Args:
        root: cache directory (default :func:`default_cache_dir`).

    Attributes:
        artifacts: the underlying store (namespaces ``models`` and ``evaluations``).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.artifacts = ArtifactStore(self.root)

    def entry(self, config: dict[str, Any]) -> Path:
        """The entry directory of ``config`` (``<root>/models/<config_hash>``), existing or not."""
        return self.artifacts.path("models", config)

    def checksum(self, config: dict[str, Any]) -> str | None:
        """SHA-256 (hex) of the cached ``model.pt`` of ``config``, as recorded when it was written.

        Reads only the manifest (no re-hash); :meth:`load` / :meth:`get_or_train` verified the
        file against it. Identical weights saved twice give the same checksum, so keying a
        result on it ties the result to the weights, not to when they were written.

        Args:
            config: the model's config.

        Returns:
            64 hex digits, or ``None`` when there is no entry.
        """
        manifest = self.artifacts.manifest("models", config)
        if manifest is None:
            return None
        return manifest.get("files", {}).get(MODEL_FILE)

    def load(self, model: nn.Module, config: dict[str, Any]) -> dict[str, Any] | None:
        """Load the cached weights for ``config`` into ``model``; ``None`` on a miss.

        The entry is verified first; a corrupt one is moved aside (one warning line) and
        reported as a miss.

        Args:
            model: a model of the cached architecture (weights are replaced).
            config: the model's config.

        Returns:
            ``{"config", "train_seconds", "created", "checksum"}`` or ``None``.

        Raises:
            ValueError: the entry's stored config differs from ``config`` (hash collision or a
                tampered entry): it is left untouched.
        """
        entry = self.artifacts.get("models", config)
        if entry is None:
            return None
        return self._load(model, entry)

    @staticmethod
    def _load(model: nn.Module, entry: Any) -> dict[str, Any]:
        load_checkpoint(model, entry.file(MODEL_FILE))
        return {
            "config": entry.manifest["key"],
            "train_seconds": float(entry.meta.get("train_seconds", 0.0)),
            "created": entry.manifest["created"],
            "checksum": entry.checksums[MODEL_FILE],
        }

    def store(self, model: nn.Module, config: dict[str, Any], *, train_seconds: float) -> Path:
        """Write an entry atomically; an existing entry for the same config is kept as is.

        Args:
            model: the trained model.
            config: its config.
            train_seconds: how long training took (recorded in the manifest).

        Returns:
            The entry directory.
        """
        return self.artifacts.put(
            "models",
            config,
            lambda d: save_checkpoint(model, d / MODEL_FILE),
            meta={"train_seconds": train_seconds},
        ).path

    def get_or_train(
        self,
        model: nn.Module,
        config: dict[str, Any],
        train: Callable[[nn.Module], None],
        *,
        what: str = "model",
    ) -> tuple[float, bool]:
        """Load ``model`` from the cache or train it (in place) and store it.

        Another process training the same config is waited for (its entry is then loaded);
        a corrupt entry is moved aside and the model trained again.

        Args:
            model: a freshly built model (weights are replaced).
            config: everything that determines the trained weights.
            train: trains ``model`` in place.
            what: name used in log messages ("original", "retrained").

        Returns:
            ``(train_seconds, hit)``: the (cached) training time in seconds and whether the
            cache was hit. The weights' checksum is then :meth:`checksum`.

        Raises:
            ValueError: the entry holds another config (left untouched).
        """

        def build() -> float:
            log.info("cache miss: training the %s model", what)
            start = time.perf_counter()
            train(model)
            return time.perf_counter() - start

        seconds, entry, hit = self.artifacts.get_or_create(
            "models",
            config,
            build,
            save=lambda _, d: save_checkpoint(model, d / MODEL_FILE),
            load=lambda e: self._load(model, e)["train_seconds"],
            meta=lambda s: {"train_seconds": s},
        )
        if hit:
            log.info("cache hit: loaded the %s model from %s", what, entry.path)
        return float(seconds), hit

    def get_or_evaluate(
        self,
        config: dict[str, Any],
        evaluate: Callable[[], Any],
        *,
        allowed: tuple[type, ...] = (),
        what: str = "model",
    ) -> tuple[Any, bool]:
        """Load a stored evaluation for ``config`` or run ``evaluate()`` and store its result.

        The result is the entry ``<root>/evaluations/<hash>/result.pt``, written with
        :func:`torch.save` (atomically, checksummed, never over an existing entry) and read back
        with ``weights_only=True``: only tensors, plain containers and the classes in
        ``allowed`` (e.g. :class:`~unlearnkit.evaluation.collect.Outputs`) can come out of it.

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

        def load(entry: Any) -> Any:
            with torch.serialization.safe_globals(list(allowed)):
                return torch.load(entry.file(RESULT_FILE), map_location="cpu", weights_only=True)

        result, entry, hit = self.artifacts.get_or_create(
            "evaluations",
            config,
            evaluate,
            save=lambda r, d: torch.save(r, d / RESULT_FILE),
            load=load,
        )
        if hit:
            log.info("cache hit: loaded the %s evaluation from %s", what, entry.path)
        return result, hit
