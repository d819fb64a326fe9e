"""Dict-of-tensors ("pytree") helpers shared by the influence numerics.

Every function in :mod:`unlearnkit.influence` that takes or returns a set of parameter-shaped
tensors uses ``dict[str, Tensor]`` keyed by parameter name (the names of
``model.named_parameters()``), so results of :func:`~unlearnkit.influence.fisher_diagonal`,
:func:`~unlearnkit.influence.model_hvp` and the inverse-HVP solvers can be combined key by key.
:func:`flatten_dict` / :func:`unflatten_dict` convert to and from one flat vector when a flat view
is needed (e.g. for random projection or for a dense linear-algebra check).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["flatten_dict", "unflatten_dict"]


def flatten_dict(tree: Mapping[str, Tensor]) -> Tensor:
    """Concatenate the tensors of a dict into one flat vector, in the dict's key order.

    Args:
        tree: Non-empty mapping from names to tensors of one dtype and device.

    Returns:
        A 1-D tensor holding ``tree[k].reshape(-1)`` for every key ``k`` in iteration order.

    Shapes:
        ``tree[k]``: any shape ``S_k``; returns ``(sum_k prod(S_k),)`` with the common dtype.

    Raises:
        ValueError: If ``tree`` is empty or its tensors disagree in dtype or device.
        TypeError: If a value is not a tensor.
    """
    _check_tree(tree, "tree")
    return torch.cat([v.reshape(-1) for v in tree.values()])


def unflatten_dict(flat: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector back into a dict shaped like ``like`` (inverse of :func:`flatten_dict`).

    Args:
        flat: 1-D tensor with exactly as many elements as ``like`` holds in total.
        like: Template mapping; only its keys, order and shapes are used.

    Returns:
        A new dict with the keys of ``like`` whose values are views of ``flat`` reshaped to
        ``like[k].shape``.

    Shapes:
        ``flat``: ``(P,)`` with ``P = sum_k like[k].numel()``; values have ``like[k].shape`` and the
        dtype of ``flat``.

    Raises:
        ValueError: If ``flat`` is not 1-D or its length does not match ``like``.
        TypeError: If ``flat`` is not a tensor.
    """
    if not isinstance(flat, Tensor):
        raise TypeError(f"unflatten_dict: flat must be a torch.Tensor, got {type(flat).__name__}")
    if flat.dim() != 1:
        raise ValueError(f"unflatten_dict: flat must be 1-D, got shape {tuple(flat.shape)}")
    sizes = [v.numel() for v in like.values()]
    if flat.numel() != sum(sizes):
        raise ValueError(
            f"unflatten_dict: flat has {flat.numel()} elements but the template holds "
            f"{sum(sizes)}; pass the dict it was flattened from as `like`"
        )
    parts = torch.split(flat, sizes)
    return {k: p.view(v.shape) for (k, v), p in zip(like.items(), parts, strict=True)}


def _check_tree(tree: Mapping[str, Tensor], what: str) -> None:
    if not isinstance(tree, Mapping):
        raise TypeError(f"{what} must be a dict[str, Tensor], got {type(tree).__name__}")
    if len(tree) == 0:
        raise ValueError(f"{what} is empty; pass at least one named tensor")
    first = None
    for k, v in tree.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"{what}[{k!r}] must be a torch.Tensor, got {type(v).__name__}")
        if first is None:
            first = v
        elif v.dtype != first.dtype or v.device != first.device:
            raise ValueError(
                f"{what}[{k!r}] has dtype/device {v.dtype}/{v.device} but others have "
                f"{first.dtype}/{first.device}; cast all tensors to one dtype and device"
            )


def _check_same_keys(a: Mapping[str, Tensor], b: Mapping[str, Tensor], what: str) -> None:
    if set(a.keys()) != set(b.keys()):
        missing = [k for k in a if k not in b]
        extra = [k for k in b if k not in a]
        raise ValueError(
            f"{what}: keys do not match the parameters (missing {missing[:3]}, extra {extra[:3]}); "
            "build it with the same keys as the parameter dict"
        )
    for k in a:
        if a[k].shape != b[k].shape:
            raise ValueError(
                f"{what}[{k!r}] has shape {tuple(b[k].shape)}, expected {tuple(a[k].shape)}"
            )


def _dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    return torch.stack([torch.vdot(a[k].reshape(-1), b[k].reshape(-1)) for k in a]).sum()


def _norm(a: Mapping[str, Tensor]) -> float:
    return float(torch.sqrt(_dot(a, a)))
