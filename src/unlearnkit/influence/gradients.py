"""Whole-split mean gradients and the gradient-restriction (GR) training loss.

:func:`mean_gradient` is the gradient of the mean loss over every sample a loader yields,
accumulated batch by batch (one backward per batch, weighted by its size), so it equals the
gradient of the split forwarded as ONE batch, which is how the IAU reference code forms its
update, and is what influence-style updates (IU, IAU) read. :func:`gradient_restriction_loss` is
IAU's training-time regulariser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.influence.per_sample import (
    LossFn,
    ParamSelector,
    _check_unwrapped,
    _functional_parts,
    _model_device,
    _split_batch,
    batch_loss_gradients,
    eval_mode,
    select_params,
)

__all__ = ["gradient_restriction_loss", "mean_gradient"]


def mean_gradient(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    loss_fn: LossFn | None = None,
    params: ParamSelector = None,
    device: torch.device | str | None = None,
) -> tuple[dict[str, Tensor], int]:
    """Gradient of the mean loss over all samples of ``loader``, ``(1/N) sum_i grad l(z_i)``.

    Each batch ``b`` of ``n_b`` samples contributes ``n_b * grad loss_fn(model(x_b), y_b)`` (the
    batch MEAN loss), and the sum is divided by ``N = sum_b n_b``. For a loss that is a mean of
    per-sample terms this is exactly the gradient of the loss of the whole split forwarded as one
    batch (up to floating-point summation order), whatever the batching, a short last batch
    included. The model runs in eval mode (BatchNorm with running statistics, so samples do not
    interact and the batching cannot matter; dropout off) and every submodule's flag is restored;
    parameters' ``.grad`` are not touched.

    Args:
        model: The network; called as ``model(x)``.
        loader: Iterable of ``(x, y)`` / ``(x, y, *rest)`` batches.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss; default
            ``torch.nn.functional.cross_entropy``.
        params: Which parameters to differentiate; see :func:`~unlearnkit.influence.select_params`.
        device: Device the batches are moved to; default the model's.

    Returns:
        ``(gradient, N)``: dict ``name -> mean gradient`` for the selected parameters, in
        ``named_parameters()`` order, and the number of samples.

    Shapes:
        Each value has ``param.shape`` and dtype; units of loss per parameter unit.

    Raises:
        ValueError: The loader yields no sample, or ``loss_fn`` does not return a scalar.
        TypeError: A batch is not ``(x, y, *rest)``, or ``model`` is a DDP/DataParallel wrapper.
    """
    _check_unwrapped(model, "mean_gradient")
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    selected = select_params(model, params)
    _, frozen, buffers = _functional_parts(model, selected)
    dev = torch.device(device) if device is not None else _model_device(model)
    total = {n: torch.zeros(p.shape, dtype=p.dtype, device=dev) for n, p in selected.items()}
    count = 0
    with eval_mode(model):
        for batch in loader:
            x, y = _split_batch(batch)
            x, y = x.to(dev), y.to(dev)
            b = x.shape[0]
            if b == 0:
                continue
            grads = batch_loss_gradients(
                model, selected, frozen, buffers, x, y, loss_fn, "mean_gradient"
            )
            for t, g in zip(total.values(), grads, strict=True):
                if g is not None:
                    t.add_(g, alpha=b)
            count += b
    if count == 0:
        raise ValueError("mean_gradient: the loader yielded no samples; pass a non-empty loader")
    return {n: t.div_(count) for n, t in total.items()}, count


def gradient_restriction_loss(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    alpha: float = 0.005,
    loss_fn: LossFn | None = None,
    params: ParamSelector = None,
) -> Tensor:
    """IAU's gradient-restriction (GR) training loss, ``l + alpha * sum_k ||grad_{theta_k} l||_2``.

    Liu, Wu, Lian & Chen, "Efficient Machine Unlearning via Influence Approximation", arXiv
    2507.23257 (the GR loss ``l_GR(z, theta) = l(z, theta) + alpha * ||grad_theta l(z, theta)||_2``);
    reference ``train_model.py`` (``model_fix_flag=1``) in github.com/Lolo1222/IAU. As there, ``l``
    is the MEAN loss of the batch, its gradient is taken with ``create_graph=True`` (so the
    returned loss back-propagates through the gradient norm: a double backward), and the norm is
    the SUM over parameter tensors of each tensor's Euclidean norm (``sum(torch.norm(g) for g in
    grads)``), not the norm of the concatenated gradient. The model runs in whatever mode it is
    in (this is a training loss). A parameter the loss does not reach contributes 0.

    Args:
        model: The network being trained.
        inputs: A batch of inputs.
        targets: Its targets.
        alpha: The GR weight (the reference's default 0.005); ``>= 0``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` batch-mean loss; default
            ``torch.nn.functional.cross_entropy``.
        params: The parameters whose gradient norms are penalised (default: all that require
            grad); see :func:`~unlearnkit.influence.select_params`.

    Returns:
        The scalar GR loss, differentiable w.r.t. the model's parameters.

    Shapes:
        ``inputs``: ``(B, ...)``; ``targets``: ``(B,)``; returns ``()``.

    Raises:
        ValueError: ``alpha`` is negative or not finite, or the loss is not a scalar.
    """
    if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(
            f"gradient_restriction_loss: alpha must be a finite number >= 0, got {alpha!r}"
        )
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    loss = loss_fn(model(inputs), targets)
    if loss.dim() != 0:
        raise ValueError(
            f"gradient_restriction_loss: loss_fn must return a scalar, got shape {tuple(loss.shape)}"
        )
    if alpha == 0:
        return loss
    selected = list(select_params(model, params).values())
    grads = torch.autograd.grad(loss, selected, create_graph=True, allow_unused=True)
    penalty = sum(torch.linalg.vector_norm(g) for g in grads if g is not None)
    return loss + alpha * penalty
