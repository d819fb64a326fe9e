"""Per-sample gradients with ``torch.func`` (``functional_call`` + ``vmap(grad(...))``).

Per-sample gradients are the building block of the exact empirical Fisher
(:func:`~unlearnkit.influence.fisher_diagonal` with ``definition="per_sample"``), of influence
scores and of TRAK-style datamodels. Following Goodfellow, "Efficient Per-Example Gradient
Computations" (arXiv 1510.01799), they are obtained in one vectorised pass instead of ``B``
backward passes; here the vectorisation is done by ``torch.func.vmap``.

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
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

__all__ = [
    "LossFn",
    "ParamSelector",
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


def make_per_sample_grad_fn(
    model: nn.Module,
    selected: dict[str, nn.Parameter],
    loss_fn: LossFn | None = None,
) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
    """Build ``(inputs, targets) -> per-sample grads`` for repeated use on many batches.

    The returned function does *not* switch modes; wrap its calls in :func:`eval_mode`.

    Args:
        model: Network evaluated with ``torch.func.functional_call``.
        selected: Parameters to differentiate (from :func:`select_params`).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` applied to a batch of ONE sample
            (``outputs`` of shape ``(1, ...)``); default ``F.cross_entropy``.

    Returns:
        A function mapping ``(inputs (B, ...), targets (B, ...))`` to ``{name: (B, *param.shape)}``.

    Shapes:
        See :func:`per_sample_grads`.

    Raises:
        Nothing at build time; errors of ``loss_fn``/``model`` surface when called.
    """
    loss_fn = F.cross_entropy if loss_fn is None else loss_fn
    sel, frozen, buffers = _functional_parts(model, selected)

    def sample_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(model, (p, frozen, buffers), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    batched = vmap(grad(sample_loss), in_dims=(None, 0, 0))

    def fn(inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return batched(sel, inputs, targets)

    return fn


def per_sample_grads(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    loss_fn: LossFn | None = None,
    params: ParamSelector = None,
) -> dict[str, Tensor]:
    """Gradient of each sample's loss w.r.t. the selected parameters, in one vectorised pass.

    Computes ``g_i = d loss_fn(model(x_i), y_i) / d theta`` for every ``i`` with
    ``torch.func.vmap(torch.func.grad(...))`` over ``torch.func.functional_call`` (Goodfellow,
    "Efficient Per-Example Gradient Computations", arXiv 1510.01799, computes the same quantity).

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

    Returns:
        Dict ``name -> per-sample gradients`` for the selected parameters.

    Shapes:
        ``inputs``: ``(B, ...)``; ``targets``: ``(B, ...)`` (int64 class ids ``(B,)`` for the
        default loss); each value: ``(B, *param.shape)`` in the parameter dtype, units of
        loss per parameter unit. Memory is ``B`` times the selected parameter count.

    Raises:
        TypeError: If ``inputs`` or ``targets`` is not a tensor, or ``model`` is a
            ``DistributedDataParallel``/``DataParallel`` wrapper (pass ``model.module``).
        ValueError: If the batch is empty, the batch sizes differ, or nothing is selected.
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
        return make_per_sample_grad_fn(model, selected, loss_fn)(inputs, targets)
