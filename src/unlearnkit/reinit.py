"""Re-initialise a model with its own initialisation, and check that nothing was left trained.

Retraining from scratch (the gold standard θ_r of exact unlearning; Bourtoule et al., "Machine
Unlearning", IEEE S&P 2021, arXiv:1912.03817) must start from the model's *own* initial
distribution: ``nn.Embedding.reset_parameters`` draws N(0, 1), not the Xavier init of a BPR-MF
table, and a ViT's ``cls_token`` / ``pos_embed`` belong to no submodule with a
``reset_parameters``, so calling every submodule's reset would silently keep them trained.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["reinitialize", "reset_submodules"]


def reset_submodules(model: nn.Module) -> None:
    """Call ``reset_parameters()`` of every submodule, outermost first; a reset covers its children.

    A submodule whose ancestor has a ``reset_parameters`` is skipped (the ancestor's own reset
    is trusted for it, e.g. PyG's ``LightGCN`` re-initialises its table with Xavier, not with
    ``nn.Embedding``'s N(0, 1)); ``model``'s own method is not called. Submodules are visited in
    registration order, the order their constructors drew random numbers.

    Args:
        model: The module whose submodules are reset in place.
    """
    done: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in done):
            continue
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
            done.append(name)


def _checked(model: nn.Module) -> list[tuple[str, Tensor]]:
    """Parameters and persistent floating-point buffers: what a re-initialisation must write."""
    persistent = set(model.state_dict(keep_vars=True))
    out = [(name, p) for name, p in model.named_parameters()]
    out += [
        (name, b)
        for name, b in model.named_buffers()
        if b.is_floating_point() and name in persistent and b.numel()
    ]
    return out


@torch.no_grad()
def reinitialize(model: nn.Module, *, seed: int) -> nn.Module:
    """Re-initialise ``model`` in place with its own initialisation, seeded, and verify it.

    Calls ``model.reset_parameters()`` when the model's class defines one (the model's own
    init), else :func:`reset_submodules`. Before that, ``torch.manual_seed(seed)`` reseeds
    torch's global generators (CPU and CUDA), so the same seed gives the same weights, and the
    global random state afterwards is a function of ``seed``.

    Every parameter and every persistent floating-point buffer (e.g. batch-norm running
    statistics) must be rewritten: they are first filled with NaN, and any tensor still holding
    a NaN afterwards was not re-initialised (it would have stayed trained); then the old values
    are restored and a ``ValueError`` names it. Non-persistent buffers (a recommender's graph,
    item side features) are data, not weights, and are left alone.

    Args:
        model: The model, modified in place.
        seed: Seed of the initialisation.

    Returns:
        ``model``.

    Raises:
        ValueError: If a parameter or persistent buffer was not re-initialised (define
            ``reset_parameters()`` on the model so it covers it).
    """
    tensors = _checked(model)
    saved = [t.detach().clone() for _, t in tensors]
    for _, t in tensors:
        t.fill_(float("nan"))
    torch.manual_seed(int(seed))
    reset = getattr(model, "reset_parameters", None)
    if callable(reset):
        reset()
    else:
        reset_submodules(model)
    missed = [name for name, t in tensors if torch.isnan(t).any()]
    if missed:
        for (_, t), old in zip(tensors, saved, strict=True):
            t.copy_(old)
        more = f" (and {len(missed) - 1} more)" if len(missed) > 1 else ""
        raise ValueError(
            f"{type(model).__name__}: parameter or buffer {missed[0]!r}{more} was not "
            "re-initialised (it would keep its trained value); define reset_parameters() on the "
            "model so that it re-initialises every parameter"
        )
    return model
