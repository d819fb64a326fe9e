"""IAU: influence approximation unlearning, one Adam step along ∇L̄(D_r) − ∇L̄(D_f)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from unlearnkit.base import Unlearner, init_arguments
from unlearnkit.influence import mean_gradient, select_params

__all__ = ["IAU"]


class IAU(Unlearner):
    """IAU: ``steps`` Adam steps along ``g = ∇L̄_r(θ) − w · ∇L̄_f(θ)``, one-shot.

    Source: Liu, Wu, Lian & Chen, "Efficient Machine Unlearning via Influence Approximation",
    arXiv 2507.23257 (the unlearning update: incremental learning on D_r combined with the
    gradient-correction of the forgotten samples, the influence of removing ``z`` approximated by
    that of adding it with the opposite gradient), reference ``IAU_unlearn.py`` in
    github.com/Lolo1222/IAU: ``loss1 = CE(D_r)`` and ``loss2 = -CE(D_f)``, each the MEAN loss of
    the whole split forwarded as one batch, both back-propagated into the same ``.grad``, then one
    ``Adam(lr=1e-3).step()``.

    Here each mean gradient is accumulated over the loaders' batches
    (:func:`~unlearnkit.influence.mean_gradient`, batch gradients weighted by batch size), which
    equals the one-batch gradient without holding a split in memory. ``L̄`` is the mean
    cross-entropy. The gradients are taken in eval mode (the reference's LeNet-style CNN has no
    BatchNorm or dropout, so its train-mode forward is the same; with BatchNorm, train-mode
    statistics would make the result depend on the batching). The reference's original model is
    trained with the gradient-restriction loss
    (:func:`~unlearnkit.influence.gradient_restriction_loss`, α = 0.005), which keeps per-sample
    gradients small so that one step suffices; this method works on any original model (an
    experiment trains such an original with ``training: {gradient_restriction: 0.005}``).

    A FRESH Adam's (torch defaults β = (0.9, 0.999), ε = 1e-8) first step is ``lr · m̂ / (sqrt(v̂) + ε)`` with the bias-corrected moments
    ``m̂ = g`` and ``v̂ = g²``, i.e. ``lr · g / (|g| + ε) ≈ lr · sign(g)``: with ``steps=1`` (the
    reference) every parameter with a non-negligible gradient moves by about ``lr``, whatever
    the gradient's magnitude; only the signs of ``g`` matter, and ``forget_weight`` acts by
    flipping the sign where the forget term dominates. Later steps (``steps > 1``, gradients
    recomputed at the new point, one Adam for all steps) use the running moments.

    Args:
        lr: Adam learning rate (reference 1e-3).
        steps: number of Adam steps (reference 1).
        forget_weight: gradient-correction weight ``w`` of the D_f term (reference 1).
        layers: name prefixes of the parameters updated (``None``: all with ``requires_grad``);
            the others stay bit-identical.

    Attributes:
        grad_norm_: ``||g||₂`` at θ_o (the first step's direction).

    Shapes:
        Loaders yield ``(x, y)``, ``y`` (B,) int64 class ids.

    Raises:
        ValueError: no retain set; ``lr``/``forget_weight`` not finite or ``lr <= 0``;
            ``steps < 1``; a non-finite gradient (at the first step the model is unchanged).
    """

    streams: ClassVar[tuple[str, ...]] = ("forget", "retain")

    def __init__(
        self,
        *,
        lr: float = 1e-3,
        steps: int = 1,
        forget_weight: float = 1.0,
        layers: list[str] | None = None,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def apply(
        self, model: nn.Module, loaders: Mapping[str, Iterable], *, trainer: Any | None = None
    ) -> nn.Module:
        """Run the IAU update on ``model`` in place (see the class docstring)."""
        self._check_hyperparameters()
        selected = select_params(model, self.layers)
        chosen = set(selected)

        def pick(name: str, _: nn.Parameter) -> bool:
            return name in chosen

        optimizer = torch.optim.Adam(
            list(selected.values()), lr=float(self.lr)
        )  # torch's default betas (0.9, 0.999) and eps 1e-8, as the reference
        saved = [p.grad for p in selected.values()]
        try:
            for step in range(self.steps):
                g_r, _ = mean_gradient(model, loaders["retain"], params=pick)
                g_f, _ = mean_gradient(model, loaders["forget"], params=pick)
                g = {n: g_r[n].sub_(g_f[n], alpha=float(self.forget_weight)) for n in selected}
                bad = [n for n, t in g.items() if not bool(torch.isfinite(t).all())]
                if bad:
                    raise ValueError(
                        f"IAU: the gradient holds NaN/Inf at step {step} (parameter {bad[0]!r}); "
                        "check the inputs and weights"
                    )
                if step == 0:
                    self.grad_norm_ = math.sqrt(sum(float(t.square().sum()) for t in g.values()))
                for n, p in selected.items():
                    p.grad = g[n].to(p.dtype)
                optimizer.step()
        finally:
            for p, grad in zip(selected.values(), saved, strict=True):
                p.grad = grad
        return model

    def _check_hyperparameters(self) -> None:
        for name in ("lr", "forget_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f"IAU: {name} must be a finite number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"IAU: lr must be > 0, got {self.lr!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"IAU: steps must be a positive int, got {self.steps!r}")
