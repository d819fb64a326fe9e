"""Hessian-vector products by forward-over-reverse differentiation (``torch.func.jvp`` of ``grad``).

Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural Computation 6(1), 1994: ``H v`` is
the directional derivative of the gradient along ``v``, computable at the cost of a few gradient
evaluations without forming ``H``. Forward-over-reverse (a JVP of the reverse-mode gradient) is
the variant recommended by the ``torch.func`` documentation for memory and speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp

from unlearnkit.influence.per_sample import (
    LossFn,
    ParamSelector,
    _check_unwrapped,
    _functional_parts,
    _split_batch,
    eval_mode,
    select_params,
)
from unlearnkit.influence.tree import _check_same_keys, _check_tree

__all__ = ["hvp", "model_hvp"]


def hvp(
    loss_fn_of_params: Callable[[dict[str, Tensor]], Tensor],
    params: Mapping[str, Tensor],
    vector: Mapping[str, Tensor],
) -> dict[str, Tensor]:
    """Hessian-vector product ``H v`` of a scalar function of a dict of tensors.

    Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural Computation 1994; computed as
    ``torch.func.jvp(torch.func.grad(f), (params,), (vector,))`` (forward-over-reverse).

    Args:
        loss_fn_of_params: ``f(params_dict) -> scalar`` tensor, twice differentiable and written
            with ``torch`` operations (``torch.func`` traces through it).
        params: Point at which the Hessian is taken.
        vector: Direction, with the same keys and shapes as ``params``.

    Returns:
        Dict with the keys of ``params`` holding ``(H v)[k] = sum_j d^2 f / d p_k d p_j  v_j``.

    Shapes:
        Each value has ``params[k].shape`` and dtype; units of ``f`` per (param unit)^2 times the
        unit of ``vector``.

    Raises:
        ValueError: If ``params`` is empty or ``vector`` does not match its keys/shapes.
        TypeError: If a value is not a tensor.
    """
    _check_tree(params, "hvp: params")
    _check_tree(vector, "hvp: vector")
    _check_same_keys(params, vector, "hvp: vector")
    tangent = {k: vector[k] for k in params}  # same key order as params
    _, out = jvp(grad(loss_fn_of_params), (dict(params),), (tangent,))
    return out


def model_hvp(
    model: nn.Module,
    inputs: Tensor | Iterable[Any],
    targets: Tensor | None,
    vector: Mapping[str, Tensor],
    *,
    loss_fn: LossFn | None = None,
    params: ParamSelector = None,
) -> dict[str, Tensor]:
    """Hessian-vector product of a model's mean training loss w.r.t. (selected) parameters.

    Pearlmutter (Neural Computation 1994) via :func:`hvp`. For one batch the Hessian is that of
    ``loss_fn(model(inputs), targets)`` (a batch MEAN). For a loader the Hessian is that of the mean
    loss over all samples, ``H = sum_b (n_b / N) H_b``, i.e. each batch's HVP is weighted by its
    size ``n_b`` (exact for mean-reduced losses, also with a short last batch). The model is
    evaluated in eval mode (BatchNorm with running statistics) and every submodule's flag is
    restored afterwards; parameters' ``.grad`` is not touched.

    Args:
        model: The network; called as ``model(x)``.
        inputs: A batch tensor, or an iterable of ``(x, y)`` / ``(x, y, *rest)`` batches (then
            ``targets`` must be ``None``).
        targets: Targets of the batch ``inputs``; ``None`` when ``inputs`` is a loader.
        vector: Direction, with the keys and shapes of the selected parameters.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss; default
            ``torch.nn.functional.cross_entropy``.
        params: Which parameters span the Hessian; see :func:`~unlearnkit.influence.select_params`.

    Returns:
        Dict ``name -> (H v)[name]`` for the selected parameters.

    Shapes:
        ``inputs``: ``(B, ...)``; ``targets``: ``(B, ...)``; every value has the parameter's shape
        and dtype.

    Raises:
        ValueError: If ``vector`` does not match the selected parameters, the loader is empty, or
            ``targets`` is given together with a loader (or missing for a tensor batch).
        TypeError: If a loader batch is not ``(x, y, *rest)`` of tensors, or ``model`` is a
            ``DistributedDataParallel``/``DataParallel`` wrapper (pass ``model.module``).
    """
    _check_unwrapped(model, "model_hvp")
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    selected = select_params(model, params)
    sel, frozen, buffers = _functional_parts(model, selected)
    _check_tree(vector, "model_hvp: vector")
    _check_same_keys(sel, vector, "model_hvp: vector")
    if isinstance(inputs, Tensor):
        if targets is None:
            raise ValueError("model_hvp: targets is None for a tensor batch; pass the targets")
        batches: Iterable[Any] = [(inputs, targets)]
    else:
        if targets is not None:
            raise ValueError(
                "model_hvp: pass targets=None when inputs is a loader of (x, y) batches"
            )
        batches = inputs
    dev = next(iter(sel.values())).device

    total: dict[str, Tensor] | None = None
    n_total = 0
    with eval_mode(model):
        for batch in batches:
            x, y = _split_batch(batch)
            x, y = x.to(dev), y.to(dev)
            n = x.shape[0]
            if n == 0:
                continue

            def f(p: dict[str, Tensor], x: Tensor = x, y: Tensor = y) -> Tensor:
                return loss_fn(functional_call(model, (p, frozen, buffers), (x,)), y)

            hv = hvp(f, sel, vector)
            if total is None:
                total = {k: v.mul(n) for k, v in hv.items()}
            else:
                for k, v in hv.items():
                    total[k].add_(v, alpha=n)
            n_total += n
    if total is None:
        raise ValueError("model_hvp: the loader yielded no samples; pass a non-empty loader")
    return {k: v.div_(n_total) for k, v in total.items()}
