"""IU: influence unlearning, one Newton / influence-function step towards the retrained model."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from unlearnkit.base import Unlearner, init_arguments
from unlearnkit.influence import (
    conjugate_gradient,
    eval_mode,
    lissa,
    make_per_sample_grad_fn,
    mean_gradient,
    model_hvp,
    select_params,
    woodfisher,
)
from unlearnkit.influence.tree import _norm

__all__ = ["IU"]

Solver = Literal["cg", "lissa", "woodfisher"]
#: With ``damping=0`` an iterative solve whose relative residual ``||H x - v|| / ||v||`` stays
#: above this is taken as a singular or indefinite Hessian (a ValueError suggesting damping).
_UNDAMPED_RESIDUAL_TOL = 1e-3
#: WoodFisher materialises at most this many per-sample gradients per vmap call.
_CHUNK = 64


class IU(Unlearner):
    """IU (influence unlearning): ``θ_u = θ_o + α · (H_r + λI)^{-1} · v``, one-shot.

    Sources: Koh & Liang, "Understanding Black-box Predictions via Influence Functions", ICML
    2017 (arXiv 1703.04730, Sec. 2.1: removing a sample ``z`` moves the minimiser by
    ``(1/n) H^{-1} ∇ℓ(z; θ)``); Izzo, Smart, Chaudhuri & Zou, "Approximate Data Deletion from
    Machine Learning Models", AISTATS 2021 (arXiv 2002.10077, the Newton removal step with the
    Hessian of the remaining data); the IU baseline of Jia et al., "Model Sparsity Can Simplify
    Machine Unlearning", NeurIPS 2023 (arXiv 2304.04934), reference ``unlearn/Wfisher.py`` in
    github.com/OPTML-Group/Unlearn-Sparse.

    The step. With ``ḡ_f``, ``ḡ_r`` the gradients of the MEAN loss over D_f and D_r at θ_o (eval
    mode, :func:`~unlearnkit.influence.mean_gradient`), ``n_f = |D_f|``, ``n_r = |D_r|``,
    ``n = n_f + n_r``, and ``H_r`` the Hessian of the mean loss over D_r at θ_o::

        v   = (n_f / n) · (ḡ_f − ḡ_r)  =  ∇L̄_train(θ_o) − ∇L̄_r(θ_o)
        θ_u = θ_o + α · (H_r + λI)^{-1} v

    ``v`` is the reference's ``forget_grad − retain_grad`` (``Σ_f ∇ℓ / n − n_f/(n·n_r) Σ_r ∇ℓ``):
    the change of the sample weights from the train mean (1/n each) to the retain mean (1/n_r on
    D_r, 0 on D_f), so ``(H_r + λI)^{-1} v`` is exactly one Newton step on the retain objective
    ``L̄_r(θ) + (λ/2)||θ||²`` from a stationary point of ``L̄_train + (λ/2)||θ||²`` (an L2
    regulariser cancels out of ``v``; its Hessian is the damping ``λI``). At an unregularised
    stationary point (``Σ_train ∇ℓ = 0``) ``v = (1/n_r) Σ_{z∈D_f} ∇ℓ(z; θ_o)``: the normalisation
    ``n`` of Koh & Liang's removal formula is then ``n_r = |D_r|``, because ``H_r`` is a mean over
    D_r. The reference keeps the ``ḡ_r`` term, so the step does not assume θ_o is exactly
    stationary; so do we.

    Solvers of ``(H_r + λI) x = v``:

    * ``"cg"``: conjugate gradient on exact Hessian-vector products over D_r
      (:func:`~unlearnkit.influence.conjugate_gradient`, :func:`~unlearnkit.influence.model_hvp`:
      one batched forward-over-reverse HVP per retain batch and CG iteration);
    * ``"lissa"``: the LiSSA recursion (:func:`~unlearnkit.influence.lissa`) on the same HVPs,
      with ``scale`` above the largest eigenvalue of ``H_r + λI`` and ``depth`` steps;
    * ``"woodfisher"`` (default): ``H_r`` replaced by the empirical Fisher of the first
      ``woodfisher_samples`` retain samples in dataset order, ``(1/m) Σ g_i g_iᵀ + λI``, inverted
      exactly (:func:`~unlearnkit.influence.woodfisher`, Woodbury). This is the reference's
      choice (``woodfisher``: ``N = 1000`` samples at batch size 1, unshuffled, dampening 1 as
      the identity it starts from: our defaults). The reference's
      recursion updates with the FIRST sample's (shrinking) gradient direction in place of
      ``F_{k-1}^{-1} g_k`` and never adds the first sample itself, which is not the WoodFisher
      inverse; we compute the inverse it approximates. It is the default because it is
      positive definite for any model: at θ_o the D_r Hessian of a network is usually
      indefinite (θ_o minimises the D_train loss, not the D_r one), and CG/LiSSA then need a
      damping above its most negative eigenvalue, found by trial (they raise until it is).

    Args:
        alpha: step scale α (the reference's ``--alpha``, tuned per experiment there; 1 is the
            plain Newton/influence step).
        solver: ``"cg"``, ``"lissa"`` or ``"woodfisher"``.
        damping: λ ≥ 0 added to the Hessian or Fisher (the reference's WoodFisher: 1). With
            ``cg``/``lissa`` and a network, expect to need λ of the order of the Hessian's most
            negative eigenvalue (Koh & Liang, Sec. 4.2, damp for non-convex models); with
            ``damping=0`` a non-PSD or singular ``H_r`` is a ValueError.
        scale: LiSSA's scale ``s`` (> λ_max(H_r) + λ).
        depth: LiSSA's number of recursion steps.
        max_iter: CG's maximum number of iterations.
        tol: CG's relative residual tolerance.
        woodfisher_samples: retain samples in the WoodFisher Fisher (reference: 1000).
        layers: name prefixes of the parameters updated (the others are fixed and not in
            ``H_r``); ``None``: every parameter with ``requires_grad``.

    Attributes:
        n_forget_, n_retain_: ``n_f``, ``n_r``.
        update_norm_: ``||θ_u − θ_o||₂`` of the applied update.

    Shapes:
        Loaders yield ``(x, y)`` (extra entries ignored): ``x`` (B, ...), ``y`` (B,) int64. The
        update has the selected parameters' shapes; memory: a few parameter-sized vectors
        (``woodfisher``: ``woodfisher_samples × #params`` more).

    Raises:
        ValueError: no retain set; bad hyper-parameters; ``damping=0`` with a Hessian that is
            not positive definite or singular (one line, suggesting damping); a non-finite
            inverse-HVP (NaN/Inf, e.g. from NaN inputs), in which case the weights are untouched.
    """

    streams: ClassVar[tuple[str, ...]] = ("forget", "retain")

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        solver: Solver = "woodfisher",
        damping: float = 1.0,
        scale: float = 10.0,
        depth: int = 1000,
        max_iter: int = 100,
        tol: float = 1e-6,
        woodfisher_samples: int = 1000,
        layers: list[str] | None = None,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def apply(
        self, model: nn.Module, loaders: Mapping[str, Iterable], *, trainer: Any | None = None
    ) -> nn.Module:
        """Apply the IU step to ``model`` in place (see the class docstring)."""
        self._check_hyperparameters()
        forget, retain = loaders["forget"], loaders["retain"]
        selected = select_params(model, self.layers)
        names = list(selected)
        chosen = set(names)

        def pick(name: str, _: nn.Parameter) -> bool:
            return name in chosen

        g_f, n_f = mean_gradient(model, forget, params=pick)
        g_r, n_r = mean_gradient(model, retain, params=pick)
        n = n_f + n_r
        v = {k: (g_f[k] - g_r[k]).mul_(n_f / n) for k in names}
        if not all(bool(torch.isfinite(t).all()) for t in v.values()):
            raise ValueError(
                "IU: the forget/retain gradients hold NaN/Inf (check the inputs and weights); "
                "the model is unchanged"
            )
        delta = self._solve(model, retain, v, pick)
        bad = [k for k, t in delta.items() if not bool(torch.isfinite(t).all())]
        if bad:
            raise ValueError(
                f"IU: the inverse-HVP holds NaN/Inf (parameter {bad[0]!r}); increase damping or "
                "check the inputs; the model is unchanged"
            )
        with torch.no_grad():
            for k, param in selected.items():
                param.add_(delta[k].to(param.dtype), alpha=float(self.alpha))
        self.n_forget_, self.n_retain_ = n_f, n_r
        self.update_norm_ = abs(float(self.alpha)) * _norm(delta)
        return model

    # -- pieces ----------------------------------------------------------------------------------
    def _check_hyperparameters(self) -> None:
        if self.solver not in ("cg", "lissa", "woodfisher"):
            raise ValueError(
                f"IU: solver must be 'cg', 'lissa' or 'woodfisher', got {self.solver!r}"
            )
        for name in ("alpha", "damping", "scale", "tol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(f"IU: {name} must be a finite number, got {value!r}")
        if self.damping < 0:
            raise ValueError(f"IU: damping must be >= 0, got {self.damping!r}")
        for name in ("depth", "max_iter", "woodfisher_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"IU: {name} must be a positive int, got {value!r}")

    def _solve(
        self, model: nn.Module, retain: Iterable, v: dict[str, Tensor], pick: Any
    ) -> dict[str, Tensor]:
        """``(H_r + damping·I)^{-1} v`` with the configured solver."""
        damping = float(self.damping)
        if self.solver == "woodfisher":
            if damping == 0.0:
                raise ValueError(
                    "IU: solver='woodfisher' needs damping > 0 (the empirical Fisher of "
                    f"{self.woodfisher_samples} samples is singular); pass e.g. damping=1.0"
                )
            return woodfisher(self._retain_grads(model, retain, pick), v, damping=damping)

        def hvp_fn(u: dict[str, Tensor]) -> dict[str, Tensor]:
            return model_hvp(model, retain, None, u, params=pick)

        try:
            with warnings.catch_warnings():
                if damping == 0.0:  # non-convergence is judged below by the residual
                    warnings.simplefilter("ignore", RuntimeWarning)
                if self.solver == "cg":
                    x = conjugate_gradient(
                        hvp_fn, v, damping=damping, max_iter=self.max_iter, tol=float(self.tol)
                    )
                else:
                    x = lissa(hvp_fn, v, damping=damping, scale=float(self.scale), depth=self.depth)
        except ValueError as err:
            if damping == 0.0:
                raise ValueError(_undamped_message(str(err))) from err
            raise ValueError(f"IU: {err}") from err
        if damping == 0.0 and all(bool(torch.isfinite(t).all()) for t in x.values()):
            hx = hvp_fn(x)
            residual = _norm({k: hx[k] - v[k] for k in v}) / max(_norm(v), 1e-300)
            if residual > _UNDAMPED_RESIDUAL_TOL:
                raise ValueError(
                    _undamped_message(f"relative residual ||H x - v|| / ||v|| = {residual:.3g}")
                )
        return x

    def _retain_grads(self, model: nn.Module, retain: Iterable, pick: Any) -> dict[str, Tensor]:
        """Per-sample gradients of the first ``woodfisher_samples`` retain samples, in order."""
        dataset = getattr(retain, "dataset", None)
        if dataset is not None:  # dataset order, as the reference (shuffle=False)
            retain = DataLoader(
                dataset,
                batch_size=getattr(retain, "batch_size", None) or _CHUNK,
                shuffle=False,
                num_workers=getattr(retain, "num_workers", 0),
                collate_fn=getattr(retain, "collate_fn", None),
            )
        selected = select_params(model, pick)
        device = next(iter(selected.values())).device
        grad_fn = make_per_sample_grad_fn(model, selected)
        parts: list[dict[str, Tensor]] = []
        left = int(self.woodfisher_samples)
        with eval_mode(model):
            for batch in retain:
                x, y = batch[0], batch[1]
                x, y = x[:left].to(device), y[:left].to(device)
                for start in range(0, x.shape[0], _CHUNK):
                    parts.append(grad_fn(x[start : start + _CHUNK], y[start : start + _CHUNK]))
                left -= x.shape[0]
                if left <= 0:
                    break
        return {k: torch.cat([p[k] for p in parts]) for k in selected}


def _undamped_message(detail: str) -> str:
    return (
        f"IU: with damping=0 the retain Hessian is not positive definite or is singular "
        f"({detail}); pass damping > 0 (e.g. damping=0.01)"
    )
