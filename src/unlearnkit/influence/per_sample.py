"""Per-sample gradients: ``torch.func`` (``vmap(grad(...))``) or layer-wise rules.

Per-sample gradients are the building block of the exact empirical Fisher
(:func:`~unlearnkit.influence.fisher_diagonal` with ``definition="per_sample"``), of influence
scores and of TRAK-style datamodels. Following Goodfellow, "Efficient Per-Example Gradient
Computations" (arXiv 1510.01799), they are obtained in one vectorised pass instead of ``B``
backward passes; the vectorisation is done either by ``torch.func.vmap`` or, for Linear,
Conv2d and eval-mode BatchNorm layers, by the layer-wise rules of
:mod:`unlearnkit.influence.layerwise` (see :func:`per_sample_grads`, ``method``).

**Mode.** A per-sample gradient is only defined when the outputs of different samples do not
depend on each other. BatchNorm in train mode normalises with batch statistics (coupling the
samples) and dropout draws fresh masks; both are therefore evaluated in eval mode. The functions
here *switch the whole model to eval mode for the duration of the call and restore every
submodule's previous ``training`` flag afterwards* (see :func:`eval_mode`), rather than raising,
so callers do not have to manage modes; BatchNorm then uses its running statistics, which are
passed through unchanged as buffers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from unlearnkit.influence.layerwise import (
    LayerwiseUnsupportedError,
    layerwise_per_sample_grads,
    plan_layerwise,
)

__all__ = [
    "LossFn",
    "ParamSelector",
    "PerSampleMethod",
    "eval_mode",
    "make_per_sample_grad_fn",
    "per_sample_grads",
    "select_params",
]

#: How to choose parameters: a predicate ``(name, param) -> bool``, name prefixes, or ``None``
#: (all parameters with ``requires_grad=True``).
ParamSelector = Callable[[str, nn.Parameter], bool] | Sequence[str] | None
#: ``loss_fn(outputs, targets) -> scalar``: the MEAN loss over the leading batch dimension.
LossFn = Callable[[Tensor, Tensor], Tensor]
#: How per-sample gradients are computed; see :func:`per_sample_grads`.
PerSampleMethod = Literal["auto", "layerwise", "functorch"]


def select_params(model: nn.Module, params: ParamSelector = None) -> dict[str, nn.Parameter]:
    """Select named parameters of ``model`` by predicate or by name prefix.

    Args:
        model: The module whose ``named_parameters()`` are filtered.
        params: ``None`` selects every parameter with ``requires_grad=True``. A callable
            ``(name, param) -> bool`` keeps the parameters for which it returns ``True``. A sequence
            of strings (or one string) keeps parameters whose name equals a prefix or starts with
            ``prefix + "."`` (so ``"layer1"`` matches ``"layer1.0.conv1.weight"`` but not
            ``"layer10.weight"``); a prefix ending in ``"."`` is matched as given. Explicitly
            selected parameters are kept even if ``requires_grad`` is ``False``.

    Returns:
        Dict ``name -> parameter`` in ``named_parameters()`` order (the parameters themselves,
        not copies).

    Shapes:
        Values keep the parameter shapes and dtypes.

    Raises:
        ValueError: If nothing is selected, or a name prefix matches no parameter (likely a typo).
        TypeError: If ``params`` is of an unsupported type.
    """
    named = dict(model.named_parameters())
    if params is None:
        selected = {n: p for n, p in named.items() if p.requires_grad}
        how = "requires_grad=True"
    elif callable(params):
        selected = {n: p for n, p in named.items() if params(n, p)}
        how = "the predicate"
    elif isinstance(params, str | Sequence):
        prefixes = [params] if isinstance(params, str) else list(params)
        if not all(isinstance(p, str) for p in prefixes):
            raise TypeError("select_params: params must be a callable, a sequence of str, or None")

        def _match(name: str, prefix: str) -> bool:
            return name == prefix or name.startswith(
                prefix if prefix.endswith(".") else prefix + "."
            )

        unmatched = [pf for pf in prefixes if not any(_match(n, pf) for n in named)]
        if unmatched:
            raise ValueError(
                f"select_params: prefix(es) {unmatched} match no parameter; valid names start "
                f"with e.g. {sorted({n.split('.')[0] for n in named})[:8]}"
            )
        selected = {n: p for n, p in named.items() if any(_match(n, pf) for pf in prefixes)}
        how = f"prefixes {prefixes}"
    else:
        raise TypeError(
            f"select_params: params must be a callable, a sequence of str, or None, "
            f"got {type(params).__name__}"
        )
    if not selected:
        raise ValueError(
            f"select_params: no parameter of {type(model).__name__} selected by {how}; "
            "loosen the filter or unfreeze parameters"
        )
    return selected


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put every submodule in eval mode, restoring each one's own flag on exit.

    Restoring per submodule (not ``model.train(old)``) keeps mixed states intact, e.g. a model in
    train mode whose frozen BatchNorm layers were put in eval mode by the user.

    Args:
        model: Module to switch.

    Returns:
        A context manager yielding ``model``.

    Shapes:
        Not applicable.

    Raises:
        Nothing itself; exceptions from the body propagate after the modes are restored.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def _check_unwrapped(model: nn.Module, what: str) -> None:
    """Reject DDP/DataParallel wrappers: functional calls must go to the wrapped module."""
    if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        raise TypeError(
            f"{what}: got a {type(model).__name__} wrapper; pass the wrapped network "
            "(`model.module`) -- the result is all-reduced across ranks without DDP's hooks"
        )


def _split_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """Return ``(x, y)`` from a loader batch ``(x, y)`` or ``(x, y, *rest)``.

    Args:
        batch: A tuple or list whose first two entries are tensors.

    Returns:
        The inputs and targets; any further entries are ignored.

    Shapes:
        ``x``: ``(B, ...)``; ``y``: ``(B, ...)`` (class ids ``(B,)`` int64 for cross-entropy).

    Raises:
        TypeError: If the batch is not a tuple/list of at least two tensors.
    """
    if not isinstance(batch, tuple | list) or len(batch) < 2:
        raise TypeError(
            f"loader batches must be (x, y) or (x, y, *rest) tuples, got {type(batch).__name__}; "
            "wrap the dataset so that it yields (input, target, ...)"
        )
    x, y = batch[0], batch[1]
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(
            f"loader batches must hold tensors (x, y), got ({type(x).__name__}, {type(y).__name__})"
        )
    return x, y


def _model_device(model: nn.Module) -> torch.device:
    """Device of the first parameter (or buffer) of ``model``; CPU if it has neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _functional_parts(
    model: nn.Module, selected: dict[str, nn.Parameter]
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Detached (selected, frozen, buffers) dicts for ``functional_call``."""
    sel = {n: p.detach() for n, p in selected.items()}
    frozen = {n: p.detach() for n, p in model.named_parameters() if n not in selected}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    return sel, frozen, buffers


def batch_loss_gradients(
    model: nn.Module,
    selected: dict[str, nn.Parameter],
    frozen: dict[str, Tensor],
    buffers: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    loss_fn: LossFn,
    caller: str,
) -> tuple[Tensor | None, ...]:
    """Gradient of one batch's scalar loss ``loss_fn(f(x), y)`` w.r.t. ``selected``.

    The model runs through ``torch.func.functional_call`` on fresh leaves of the selected
    parameters (the frozen ones and the buffers as given by :func:`_functional_parts`), so the
    model's own ``.grad`` is never touched. Shared by :func:`~unlearnkit.influence.fisher.fisher_diagonal`
    (``batch_empirical``) and :func:`~unlearnkit.influence.gradients.mean_gradient`.

    Returns:
        One gradient per selected parameter, in ``selected``'s order (``None`` where unused).

    Raises:
        ValueError: ``loss_fn`` did not return a scalar (``caller`` names the public function).
    """
    leaves = {n: p.detach().requires_grad_(True) for n, p in selected.items()}
    with torch.enable_grad():
        loss = loss_fn(functional_call(model, (leaves, frozen, buffers), (x,)), y)
        if loss.dim() != 0:
            raise ValueError(
                f"{caller}: loss_fn must return a scalar (mean over the batch), "
                f"got shape {tuple(loss.shape)}"
            )
        return torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)


def _functorch_grad_fn(
    model: nn.Module, selected: dict[str, nn.Parameter], loss_fn: LossFn
) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """``vmap(grad(...))`` over ``functional_call`` on batches of one sample."""
    sel, frozen, buffers = _functional_parts(model, selected)

    def sample_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(model, (p, frozen, buffers), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    batched = vmap(grad(sample_loss), in_dims=(None, 0, 0))

    def fn(inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return batched(sel, inputs, targets)

    return fn


def make_per_sample_grad_fn(
    model: nn.Module,
    selected: dict[str, nn.Parameter],
    loss_fn: LossFn | None = None,
    *,
    method: PerSampleMethod = "auto",
) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """Build ``(inputs, targets) -> per-sample grads`` for repeated use on many batches.

    The returned function does *not* switch modes; wrap its calls in :func:`eval_mode`.

    Args:
        model: The network.
        selected: Parameters to differentiate (from :func:`select_params`).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` applied to a batch of ONE sample
            (``outputs`` of shape ``(1, ...)``); default ``F.cross_entropy``.
        method: ``"functorch"``, ``"layerwise"`` or ``"auto"``; see :func:`per_sample_grads`.

    Returns:
        A function mapping ``(inputs (B, ...), targets (B, ...))`` to ``{name: (B, *param.shape)}``
        in ``selected``'s order.

    Shapes:
        See :func:`per_sample_grads`.

    Raises:
        ValueError: If ``method`` is unknown (at build time); with ``method="layerwise"``, when
            called on a batch the layer rules cannot handle (e.g. a BatchNorm in train mode).
            Errors of ``loss_fn``/``model`` surface when called.
    """
    if method not in ("auto", "layerwise", "functorch"):
        raise ValueError(
            f"per_sample_grads: method must be 'auto', 'layerwise' or 'functorch', got {method!r}"
        )
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    functorch_fn = _functorch_grad_fn(model, selected, loss_fn)
    if method == "functorch":
        return functorch_fn
    handled, rest = plan_layerwise(model, selected)
    if method == "auto" and (rest or not handled):
        return functorch_fn
    handled_names = [n for n in selected if n not in rest]
    handled_params = {n: selected[n] for n in handled_names}
    rest_fn = _functorch_grad_fn(model, {n: selected[n] for n in rest}, loss_fn) if rest else None

    def fn(inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        try:
            fast = layerwise_per_sample_grads(
                model,
                handled,
                handled_params,
                inputs,
                targets,
                loss_fn,
                strict_batch_first=method == "auto",
            )
        except LayerwiseUnsupportedError as err:
            if method == "auto":
                return functorch_fn(inputs, targets)
            raise ValueError(
                f"per_sample_grads: method='layerwise' cannot handle this batch ({err}); use "
                "method='functorch' (or 'auto', which falls back by itself)"
            ) from err
        slow = rest_fn(inputs, targets) if rest_fn is not None else {}
        return {n: fast[n] if n in fast else slow[n] for n in selected}

    return fn


def per_sample_grads(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    params: ParamSelector = None,
    method: PerSampleMethod = "auto",
) -> dict[str, Tensor]:
    """Gradient of each sample's loss w.r.t. the selected parameters, in one vectorised pass.

    Computes ``g_i = d loss_fn(model(x_i), y_i) / d theta`` for every ``i`` (Goodfellow,
    "Efficient Per-Example Gradient Computations", arXiv 1510.01799), by one of two methods that
    agree to float rounding:

    * ``"functorch"``: ``torch.func.vmap(torch.func.grad(...))`` over
      ``torch.func.functional_call`` on batches of one sample; works for any model whose forward
      ``torch.func`` can trace, but its batched convolution weight gradients become grouped
      convolutions, slow on CPU.
    * ``"layerwise"``: one forward of the batch and one backward of ``sum_i loss_i``, with the
      per-sample gradients of ``nn.Linear``, ``nn.Conv2d`` and eval-mode ``nn.BatchNorm*d``
      parameters assembled from the captured layer inputs and output gradients (see
      :mod:`unlearnkit.influence.layerwise`); every other selected parameter (LayerNorm,
      embeddings, ...) is computed with ``"functorch"`` in a second pass. It assumes the samples
      do not interact in the forward pass, which holds in eval mode for standard networks (it
      does not for BatchNorm without running statistics, which is therefore left to
      ``"functorch"``), and that the batch is the first dimension of every handled layer's
      input. Roughly 5-10x faster than ``"functorch"`` for CNNs on CPU
      (``benchmarks/bench_per_sample.py``).
    * ``"auto"`` (default): ``"layerwise"`` when it handles every selected parameter and, at call
      time, every handled BatchNorm is in eval mode and every handled layer input is
      ``(B, ...)`` (``nn.Linear`` inputs exactly ``(B, features)``); ``"functorch"`` otherwise.

    The model is run in eval mode (BatchNorm uses running statistics, dropout is off) and every
    submodule's ``training`` flag is restored afterwards; see the module docstring for why. Buffers
    are passed through unchanged; ``.grad`` of the parameters is never touched.

    Args:
        model: The network; called as ``model(x)`` on a batch of one sample.
        inputs: Batch of inputs.
        targets: Batch of targets, one per input.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` for ONE sample, called with
            ``outputs`` of shape ``(1, ...)`` and ``targets`` of shape ``(1, ...)``; default
            ``torch.nn.functional.cross_entropy``. A mean-reduced batch loss (such as
            :func:`~unlearnkit.influence.l2_output_loss`) therefore works unchanged.
        params: Which parameters to differentiate; see :func:`select_params`.
        method: ``"auto"``, ``"layerwise"`` or ``"functorch"`` (see above).

    Returns:
        Dict ``name -> per-sample gradients`` for the selected parameters.

    Shapes:
        ``inputs``: ``(B, ...)``; ``targets``: ``(B, ...)`` (int64 class ids ``(B,)`` for the
        default loss); each value: ``(B, *param.shape)`` in the parameter dtype, units of
        loss per parameter unit. Memory is ``B`` times the selected parameter count.

    Raises:
        TypeError: If ``inputs`` or ``targets`` is not a tensor, or ``model`` is a
            ``DistributedDataParallel``/``DataParallel`` wrapper (pass ``model.module``).
        ValueError: If the batch is empty, the batch sizes differ, nothing is selected, ``method``
            is unknown, or ``method="layerwise"`` cannot handle the batch (a handled layer saw an
            input whose first dimension is not the batch).
    """
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("per_sample_grads: inputs and targets must be torch.Tensor batches")
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError("per_sample_grads: inputs is an empty batch; pass at least one sample")
    if targets.dim() == 0 or targets.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"per_sample_grads: inputs has {inputs.shape[0]} samples but targets has shape "
            f"{tuple(targets.shape)}; pass one target per input along dim 0"
        )
    _check_unwrapped(model, "per_sample_grads")
    selected = select_params(model, params)
    with eval_mode(model):
        return make_per_sample_grad_fn(model, selected, loss_fn, method=method)(inputs, targets)
