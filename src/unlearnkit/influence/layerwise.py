"""Layer-wise per-sample gradients from captured layer inputs and output gradients.

For a layer ``z = W a + b`` the gradient of sample ``i``'s loss w.r.t. ``W`` is the outer product
``dL_i/dz_i a_i^T`` and w.r.t. ``b`` it is ``dL_i/dz_i`` (Goodfellow, "Efficient Per-Example
Gradient Computations", arXiv 1510.01799, Sec. 2). A convolution is such a layer on the unfolded
input patches (Rochette, Manoel & Tramel, "Efficient Per-Example Gradient Computations in
Convolutional Neural Networks", arXiv 1912.06015, Sec. 3): ``g_W[i] = dL_i/dz_i unfold(a_i)^T``.
The same hook-based scheme is used by Opacus (``opacus/grad_sample/linear.py``, ``conv.py``) and
BackPACK (``BatchGrad``); we do not depend on either (Opacus has no BatchNorm rule and writes
``p.grad_sample``/``p.grad``; BackPACK needs a module conversion for residual networks), and the
rules below are written from the formulas, not from their code.

One forward of the whole batch records every handled layer's input ``a`` (forward hooks) and one
backward of ``sum_i loss_i`` delivers ``dL/dz`` at its output (tensor hooks). Because samples do not
interact in eval mode, ``d(sum_j L_j)/dz_i = dL_i/dz_i``: the summed backward yields the per-sample
output gradients. Handled layers and their rules:

* ``nn.Linear``: ``g_W[i] = sum_t dz[i, t] a[i, t]^T`` (``t`` runs over extra middle dimensions,
  which are assumed to come after the batch dimension), ``g_b[i] = sum_t dz[i, t]``;
* ``nn.Conv2d`` (any stride, padding incl. ``"same"``/``"valid"`` and non-zero padding modes,
  dilation, groups): ``g_W[i] = dz[i] unfold(a[i])^T`` per group, ``g_b[i] = sum_hw dz[i]``;
* ``nn.BatchNorm1d/2d/3d`` *in eval mode with running statistics* (an affine map then):
  ``g_gamma[i] = sum dz[i] * (a[i] - mu) / sqrt(var + eps)`` and ``g_beta[i] = sum dz[i]`` over the
  non-channel dimensions.

Everything else that holds selected parameters (LayerNorm, GroupNorm, embeddings, parameters used
outside their module's own ``forward``, BatchNorm in train mode or without running statistics) is
not handled here; :mod:`unlearnkit.influence.per_sample` computes those parameters with
``torch.func`` instead.

Only exact module types are handled (a subclass may override ``forward``). The backward is driven
by a zero "probe" added to each handled layer's output, so autograd computes output gradients but
no batch weight gradients, and never touches ``.grad``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

__all__ = ["LayerwiseUnsupportedError", "plan_layerwise", "layerwise_per_sample_grads"]

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_HANDLED_TYPES = (nn.Linear, nn.Conv2d, *_BATCH_NORMS)


class LayerwiseUnsupportedError(RuntimeError):
    """The layer-wise rules cannot give exact per-sample gradients for this call."""


def _statically_handled(module: nn.Module) -> bool:
    if type(module) not in _HANDLED_TYPES:
        return False
    if type(module) in _BATCH_NORMS:
        return bool(module.track_running_stats) and module.running_mean is not None
    return True


def plan_layerwise(
    model: nn.Module, selected: dict[str, nn.Parameter]
) -> tuple[dict[nn.Module, dict[str, str]], list[str]]:
    """Split the selected parameters into layer-wise-handled ones and the rest.

    A parameter is handled when every module that holds it (by identity, so tied weights are
    seen) is an exact ``nn.Linear``/``nn.Conv2d``/``nn.BatchNorm{1,2,3}d`` (with running
    statistics) holding it as ``weight`` or ``bias``.

    Args:
        model: The network.
        selected: ``name -> parameter`` from :func:`~unlearnkit.influence.select_params`.

    Returns:
        ``(handled, rest)``: ``handled`` maps each module to ``{"weight"|"bias": name}`` of its
        selected handled parameters; ``rest`` lists the other selected names in order.

    Shapes:
        Not applicable.

    Raises:
        Nothing.
    """
    name_of = {id(p): n for n, p in selected.items()}
    owners: dict[str, list[tuple[nn.Module, str]]] = {n: [] for n in selected}
    for module in model.modules():
        for attr, p in module._parameters.items():
            if p is not None and id(p) in name_of:
                owners[name_of[id(p)]].append((module, attr))
    handled: dict[nn.Module, dict[str, str]] = {}
    rest: list[str] = []
    for name, holders in owners.items():
        ok = bool(holders) and all(
            _statically_handled(m) and attr in ("weight", "bias") for m, attr in holders
        )
        if not ok:
            rest.append(name)
            continue
        for m, attr in holders:
            handled.setdefault(m, {})[attr] = name
    return handled, rest


def _conv2d_input(module: nn.Conv2d, a: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``a`` as ``module`` does; return it and the padding left for ``unfold``."""
    if module.padding_mode != "zeros":
        return F.pad(a, module._reversed_padding_repeated_twice, mode=module.padding_mode), (0, 0)
    if isinstance(module.padding, str):
        if module.padding == "valid":
            return a, (0, 0)
        # "same": total padding d * (k - 1) per side pair, the odd extra on the right/bottom.
        pads: list[int] = []
        for k, d in zip(reversed(module.kernel_size), reversed(module.dilation), strict=True):
            total = d * (k - 1)
            pads += [total // 2, total - total // 2]
        return F.pad(a, pads), (0, 0)
    return a, tuple(module.padding)  # type: ignore[return-value]


#: On CPU, a Conv2d with at least this many output positions and input patch entries
#: (``C_in * k_h * k_w``) gets its per-sample weight gradients from one weight-only
#: ``convolution_backward`` per sample (oneDNN's kernel) instead of ``unfold`` + ``bmm``, whose
#: ``im2col`` copy dominates there; measured 2-3x faster for ResNet-18's 32x32 and 16x16 stages on
#: one thread, slower for 4x4 maps and 1-channel inputs.
_LOOP_MIN_POSITIONS = 64
_LOOP_MIN_PATCH = 64


def _conv2d_weight_grads_loop(
    module: nn.Conv2d, a: Tensor, dz: Tensor, padding: tuple[int, int]
) -> Tensor:
    """Per-sample Conv2d weight gradients, one weight-only ``convolution_backward`` each."""
    weight = module.weight.detach()
    out = torch.empty((a.shape[0], *weight.shape), dtype=dz.dtype, device=dz.device)
    for i in range(a.shape[0]):
        out[i] = torch.ops.aten.convolution_backward(
            dz[i : i + 1],
            a[i : i + 1],
            weight,
            None,
            list(module.stride),
            list(padding),
            list(module.dilation),
            False,
            [0, 0],
            module.groups,
            [False, True, False],
        )[1]
    return out


def _weight_bias_contribs(module: nn.Module, a: Tensor, dz: Tensor) -> dict[str, Tensor]:
    """Per-sample ``{"weight": ..., "bias": ...}`` gradients of one call of ``module``."""
    b = a.shape[0]
    if type(module) is nn.Linear:
        if a.dim() == 2:
            return {"weight": torch.bmm(dz.unsqueeze(2), a.unsqueeze(1)), "bias": dz}
        a3 = a.reshape(b, -1, a.shape[-1])
        dz3 = dz.reshape(b, -1, dz.shape[-1])
        return {"weight": torch.bmm(dz3.transpose(1, 2), a3), "bias": dz3.sum(1)}
    if type(module) is nn.Conv2d:
        a, padding = _conv2d_input(module, a)
        c_out = dz.shape[1]
        dz3 = dz.reshape(b, c_out, -1)
        bias = dz3.sum(2)
        n_pos, patch = dz3.shape[2], module.weight[0].numel() * module.groups
        if a.device.type == "cpu" and n_pos >= _LOOP_MIN_POSITIONS and patch >= _LOOP_MIN_PATCH:
            return {"weight": _conv2d_weight_grads_loop(module, a, dz, padding), "bias": bias}
        cols = F.unfold(
            a, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride
        )
        g = module.groups
        if cols.shape[2] != n_pos:
            raise LayerwiseUnsupportedError(
                f"Conv2d: {cols.shape[2]} input patches for {n_pos} output positions"
            )
        if g == 1:
            w = torch.bmm(dz3, cols.transpose(1, 2))
        else:
            w = torch.einsum(
                "bgol,bgil->bgoi",
                dz3.reshape(b, g, c_out // g, -1),
                cols.reshape(b, g, cols.shape[1] // g, -1),
            )
        return {"weight": w.reshape(b, *module.weight.shape), "bias": bias}
    # BatchNorm in eval mode: z = gamma * (a - mu) / sqrt(var + eps) + beta, per channel.
    shape = (1, -1) + (1,) * (a.dim() - 2)
    x_hat = (a - module.running_mean.reshape(shape)) * torch.rsqrt(
        module.running_var.reshape(shape) + module.eps
    )
    dims = tuple(range(2, a.dim()))
    wg = dz * x_hat
    return {
        "weight": wg.sum(dims) if dims else wg,
        "bias": dz.sum(dims) if dims else dz,
    }


def layerwise_per_sample_grads(
    model: nn.Module,
    handled: dict[nn.Module, dict[str, str]],
    params: dict[str, nn.Parameter],
    inputs: Tensor,
    targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    strict_batch_first: bool,
) -> dict[str, Tensor]:
    """Per-sample gradients of the ``handled`` parameters from one forward and one backward.

    The model must already be in eval mode (BatchNorm on running statistics); the caller
    (:func:`~unlearnkit.influence.per_sample.make_per_sample_grad_fn`) takes care of that.

    Args:
        model: The network, called as ``model(inputs)`` on the whole batch.
        handled: From :func:`plan_layerwise`.
        params: ``name -> parameter`` for every handled name (for shapes and dtypes).
        inputs: Batch of inputs.
        targets: Batch of targets.
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` for a batch of ONE sample; mapped over
            the batch with ``torch.func.vmap`` to give the per-sample losses.
        strict_batch_first: If true, refuse ``nn.Linear`` inputs with more than 2 dimensions
            (their batch dimension cannot be checked to be the first one).

    Returns:
        ``{name: (B, *param.shape)}`` for every handled name; zeros for layers not on the loss's
        path.

    Shapes:
        ``inputs``: ``(B, ...)``; ``targets``: ``(B, ...)``.

    Raises:
        LayerwiseUnsupportedError: A handled BatchNorm is in train mode, a handled layer saw a
            tensor whose leading dimension is not the batch, a captured input was modified in
            place, or (``strict_batch_first``) a Linear input has more than 2 dimensions.
        ValueError: ``loss_fn`` does not return a scalar per sample.
    """
    b = inputs.shape[0]
    for m in handled:
        if type(m) in _BATCH_NORMS and m.training:
            raise LayerwiseUnsupportedError(
                "a BatchNorm layer is in train mode (batch statistics couple the samples)"
            )
    out_grads: dict[str, Tensor] = {}
    probes: list[Tensor] = []
    errors: list[str] = []

    def forward_hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        a = args[0] if args else None
        if not isinstance(a, Tensor) or not isinstance(output, Tensor):
            errors.append(f"{type(module).__name__} called without a tensor input/output")
            return None
        if a.dim() < 2 or a.shape[0] != b or output.shape[0] != b:
            errors.append(
                f"{type(module).__name__} saw input {tuple(a.shape)} / output "
                f"{tuple(output.shape)} for a batch of {b}"
            )
            return None
        if strict_batch_first and type(module) is nn.Linear and a.dim() > 2:
            errors.append(f"Linear input {tuple(a.shape)} has more than 2 dimensions")
            return None
        a = a.detach()
        version = a._version
        probe = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
        probes.append(probe)
        out = output + probe

        def tensor_hook(dz: Tensor) -> None:
            if a._version != version:
                errors.append(f"the input of a {type(module).__name__} was modified in place")
                return
            for attr, g in _weight_bias_contribs(module, a, dz.detach()).items():
                name = handled[module].get(attr)
                if name is None:
                    continue
                g = g.to(params[name].dtype)
                out_grads[name] = out_grads[name] + g if name in out_grads else g

        out.register_hook(tensor_hook)
        return out

    hooks = [m.register_forward_hook(forward_hook) for m in handled]
    try:
        with torch.enable_grad():
            outputs = model(inputs)
            if errors:
                raise LayerwiseUnsupportedError("; ".join(errors))

            def one(o: Tensor, t: Tensor) -> Tensor:
                return loss_fn(o.unsqueeze(0), t.unsqueeze(0))

            losses = vmap(one)(outputs, targets)
            if losses.shape != (b,):
                raise ValueError(
                    "per_sample_grads: loss_fn must return a scalar for a batch of one sample, "
                    f"got shape {tuple(losses.shape[1:])}"
                )
            if probes and losses.requires_grad:
                torch.autograd.grad(losses.sum(), probes, allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    if errors:
        raise LayerwiseUnsupportedError("; ".join(errors))
    names = [n for attrs in handled.values() for n in attrs.values()]
    result = {}
    for name in dict.fromkeys(names):
        g = out_grads.get(name)
        p = params[name]
        result[name] = (
            torch.zeros((b, *p.shape), dtype=p.dtype, device=p.device) if g is None else g
        )
    return result
