"""Saving and loading model weights safely: atomic writes, architecture checks, no overwrites."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.atomic import atomic_torch_save

__all__ = ["atomic_torch_save", "load_checkpoint", "model_arch", "save_checkpoint"]

#: What :func:`torch.load` raises on a truncated (zip reader ``RuntimeError``), empty
#: (``EOFError``), garbled (``KeyError``/``UnicodeDecodeError``/``UnpicklingError``...) file.
_UNREADABLE = (
    EOFError,
    RuntimeError,
    pickle.UnpicklingError,
    KeyError,
    IndexError,
    ValueError,
    zipfile.BadZipFile,
)


def model_arch(model: nn.Module) -> str:
    """The architecture name recorded in checkpoints: ``model.arch`` or the class name."""
    return str(getattr(model, "arch", type(model).__name__))


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save ``model``'s weights with its architecture name.

    Args:
        model: the model to save.
        path: destination ``.pt`` file.
        meta: extra JSON-able information stored beside the weights.
        overwrite: allow replacing an existing file (off by default: nothing is lost).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another path (never overwritten)")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_torch_save(
        {"arch": model_arch(model), "state_dict": state, "meta": meta or {}}, path
    )


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights from ``path`` into ``model`` in place (the file is only read).

    Accepts files written by :func:`save_checkpoint`, Lightning checkpoints (``state_dict`` with
    a ``model.`` prefix) and plain ``state_dict`` files.

    Returns:
        The checkpoint's ``meta`` dict (empty for plain state dicts).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable checkpoint (truncated, empty, garbled, or a
            pickle of arbitrary objects), the checkpoint was saved for another architecture, or
            its tensors do not match the model's names/shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} not found; pass the path of a saved model (.pt)"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(
            f"checkpoint {path} is not a readable checkpoint (truncated or corrupt?): "
            f"{type(err).__name__}: {reason}; save it again or pass another file"
        ) from None
    arch = blob.get("arch") if isinstance(blob, dict) else None
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
    if arch is not None and arch != model_arch(model):
        raise ValueError(
            f"checkpoint {path} was saved for architecture {arch!r} but the model is "
            f"{model_arch(model)!r}; build the model with arch={arch!r} or pass a matching checkpoint"
        )
    if any(k.startswith("model.") for k in state) and not any(
        k in model.state_dict() for k in state
    ):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        first = (missing or unexpected or bad_shape)[0]
        raise ValueError(
            f"checkpoint {path} does not fit {model_arch(model)} (e.g. tensor {first!r}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(bad_shape)} wrong shape); "
            "pass a checkpoint saved for this architecture and number of classes"
        )
    model.load_state_dict(state)
    return blob.get("meta", {}) if isinstance(blob, dict) else {}
