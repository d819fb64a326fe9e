"""Inverse Hessian-vector products: solve ``(H + damping * I) x = v`` with only HVP access.

Both solvers work on dict-of-tensors pytrees (``dict[str, Tensor]`` keyed by parameter name, as
returned by :func:`~unlearnkit.influence.model_hvp`); wrap a flat vector as ``{"x": vec}`` or use
:func:`~unlearnkit.influence.flatten_dict` / :func:`~unlearnkit.influence.unflatten_dict`.
``hvp_fn(u)`` must return ``H u`` (without the damping, which the solvers add).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from unlearnkit.influence.tree import _check_same_keys, _check_tree, _dot, _norm

__all__ = ["conjugate_gradient", "lissa", "woodfisher"]

HvpFn = Callable[[dict[str, Tensor]], Mapping[str, Tensor]]


def _apply(hvp_fn: HvpFn, u: dict[str, Tensor], damping: float, what: str) -> dict[str, Tensor]:
    hu = hvp_fn(u)
    if not isinstance(hu, Mapping):
        raise TypeError(
            f"{what}: hvp_fn must return a dict[str, Tensor] keyed like v, got {type(hu).__name__}"
        )
    _check_same_keys(u, hu, f"{what}: hvp_fn output")
    if damping == 0.0:
        return {k: hu[k] for k in u}
    return {k: hu[k] + damping * u[k] for k in u}


def _check_damping(damping: float, what: str) -> float:
    if not (isinstance(damping, int | float) and math.isfinite(damping) and damping >= 0):
        raise ValueError(f"{what}: damping must be a finite number >= 0, got {damping!r}")
    return float(damping)


def conjugate_gradient(
    hvp_fn: HvpFn,
    v: Mapping[str, Tensor],
    *,
    damping: float = 0.0,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> dict[str, Tensor]:
    """Solve ``(H + damping * I) x = v`` by the conjugate-gradient method.

    Hestenes & Stiefel, "Methods of Conjugate Gradients for Solving Linear Systems", J. Res. NBS
    49(6), 1952 (Algorithm, Sec. 3); used for inverse-HVPs in deep nets by Martens, "Deep learning
    via Hessian-free optimization", ICML 2010, and for influence functions by Koh & Liang,
    "Understanding Black-box Predictions via Influence Functions", ICML 2017, arXiv 1703.04730,
    Sec. 3. CG needs ``H + damping*I`` symmetric positive definite; a neural network's Hessian
    often is not, which ``damping`` repairs.

    Starts from ``x = 0`` and stops when ``||r|| <= tol * ||v||`` (relative residual). If that is
    not reached in ``max_iter`` iterations a ``RuntimeWarning`` is emitted and the last iterate is
    returned.

    Args:
        hvp_fn: ``u -> H u`` on dicts keyed like ``v`` (must be linear and symmetric).
        v: Right-hand side.
        damping: ``lambda >= 0`` added to the diagonal.
        max_iter: Maximum number of CG iterations (each costs one ``hvp_fn`` call); ``>= 1``.
        tol: Relative residual tolerance; ``> 0``.

    Returns:
        ``x`` with the keys, shapes and dtypes of ``v``.

    Shapes:
        Each value has ``v[k].shape``; units of ``v`` divided by those of ``H``.

    Raises:
        ValueError: If CG meets non-positive curvature ``p^T (H + damping I) p <= 0`` (the matrix
            is not positive definite along ``p``; increase ``damping``), if the iterates become
            non-finite, or if an argument is out of range.
    """
    what = "conjugate_gradient"
    _check_tree(v, f"{what}: v")
    damping = _check_damping(damping, what)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"{what}: max_iter must be a positive int, got {max_iter!r}")
    if not (isinstance(tol, int | float) and tol > 0):
        raise ValueError(f"{what}: tol must be > 0, got {tol!r}")

    v = dict(v)
    x = {k: torch.zeros_like(t) for k, t in v.items()}
    r = {k: t.clone() for k, t in v.items()}
    p = {k: t.clone() for k, t in v.items()}
    v_norm = _norm(v)
    if v_norm == 0.0:
        return x
    rs = _dot(r, r)
    for it in range(max_iter):
        ap = _apply(hvp_fn, p, damping, what)
        pap = float(_dot(p, ap))
        if not math.isfinite(pap):
            raise ValueError(
                f"{what}: non-finite curvature p^T(H+damping*I)p at iteration {it}; check hvp_fn"
            )
        if pap <= 0.0:
            raise ValueError(
                f"{what}: non-positive curvature p^T(H+damping*I)p = {pap:.3g} at iteration {it}, "
                f"so H + {damping:g}*I is not positive definite; increase damping (e.g. above "
                "the magnitude of H's most negative eigenvalue) or use lissa"
            )
        alpha = rs / pap
        for k in x:
            x[k].add_(p[k], alpha=float(alpha))
            r[k].sub_(ap[k], alpha=float(alpha))
        rs_new = _dot(r, r)
        if math.sqrt(float(rs_new)) <= tol * v_norm:
            return x
        beta = float(rs_new / rs)
        for k in p:
            p[k].mul_(beta).add_(r[k])
        rs = rs_new
    warnings.warn(
        f"{what}: not converged after {max_iter} iterations (relative residual "
        f"{math.sqrt(float(rs)) / v_norm:.3g} > tol={tol:g}); raise max_iter or damping",
        RuntimeWarning,
        stacklevel=2,
    )
    return x


def lissa(
    hvp_fn: HvpFn,
    v: Mapping[str, Tensor],
    *,
    damping: float = 0.0,
    scale: float = 10.0,
    depth: int = 1000,
    repeats: int = 1,
) -> dict[str, Tensor]:
    """Approximate ``(H + damping * I)^{-1} v`` by the LiSSA truncated Neumann-series recursion.

    Agarwal, Bullins & Hazan, "Second-Order Stochastic Optimization for Machine Learning in Linear
    Time", JMLR 18, 2017, arXiv 1602.03943, Sec. 3.1 (Algorithm 1); as used for influence functions
    by Koh & Liang, ICML 2017, arXiv 1703.04730, Sec. 3.

    With ``A = H + damping * I`` and ``s = scale``, the recursion (written for ``x_j``, the
    estimate after ``j`` steps) is::

        x_0 = v / s
        x_j = v / s + (I - A / s) x_{j-1}          # = (1/s) sum_{i<=j} (I - A/s)^i v

    which converges to ``A^{-1} v`` iff the spectral radius of ``I - A/s`` is < 1, i.e. iff all
    eigenvalues of ``A`` lie in ``(0, 2s)``; in practice choose ``scale`` larger than the largest
    eigenvalue of ``H + damping*I`` (so ``A/s`` has spectral radius < 1). The error after ``depth``
    steps decays like ``(1 - lambda_min(A)/s) ** depth``. (Koh & Liang's code writes the same
    recursion on ``h = s * x`` and applies ``damping`` before the division by ``s``; here
    ``damping`` is the plain ``lambda`` of ``H + lambda I``.) When ``hvp_fn`` is stochastic (e.g.
    each call uses the next minibatch, as in the paper), ``repeats`` independent recursions are
    averaged; with a deterministic ``hvp_fn`` repeats give identical results.

    Args:
        hvp_fn: ``u -> H u`` (or an unbiased minibatch estimate of it) on dicts keyed like ``v``.
        v: Right-hand side.
        damping: ``lambda >= 0`` added to the diagonal.
        scale: ``s > 0``; must exceed ``lambda_max(H) + damping`` / 2 for convergence (choose it
            above ``lambda_max(H) + damping``).
        depth: Number of recursion steps (one ``hvp_fn`` call each); ``>= 1``.
        repeats: Number of independent recursions averaged; ``>= 1``.

    Returns:
        ``x`` with the keys, shapes and dtypes of ``v``.

    Shapes:
        Each value has ``v[k].shape``; units of ``v`` divided by those of ``H``.

    Raises:
        ValueError: If an argument is out of range, or the recursion diverges (non-finite or
            exploding iterates: ``scale`` is too small for the spectrum of ``H + damping*I``, or
            ``H + damping*I`` has a non-positive eigenvalue; increase ``scale`` or ``damping``).
    """
    what = "lissa"
    _check_tree(v, f"{what}: v")
    damping = _check_damping(damping, what)
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"{what}: scale must be a finite number > 0, got {scale!r}")
    for name, val in (("depth", depth), ("repeats", repeats)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"{what}: {name} must be a positive int, got {val!r}")
    scale = float(scale)

    v = dict(v)
    v_s = {k: t / scale for k, t in v.items()}
    v_norm = _norm(v)
    total = {k: torch.zeros_like(t) for k, t in v.items()}
    for _ in range(repeats):
        x = {k: t.clone() for k, t in v_s.items()}
        for j in range(depth):
            ax = _apply(hvp_fn, x, damping, what)
            x_new = {k: v_s[k] + x[k] - ax[k] / scale for k in x}
            if j % 10 == 9 or j == depth - 1:
                # s * (x_j - x_{j-1}) = v - A x_{j-1} is the residual of the previous iterate. It
                # equals (I - A/s)^j v, so its norm stays <= ||v|| when the spectral radius of
                # I - A/s is < 1 and grows geometrically otherwise.
                res = scale * _norm({k: x_new[k] - x[k] for k in x})
                if not math.isfinite(res) or res > 2.0 * v_norm:
                    raise ValueError(
                        f"{what}: the recursion diverged at step {j + 1} (residual {res:.3g} > "
                        f"2*||v|| = {2 * v_norm:.3g}); increase scale above the largest eigenvalue "
                        "of H + damping*I, or increase damping if H has negative eigenvalues"
                    )
            x = x_new
        for k in total:
            total[k].add_(x[k])
    return {k: t / repeats for k, t in total.items()}


def woodfisher(
    grads: Mapping[str, Tensor],
    v: Mapping[str, Tensor],
    *,
    damping: float,
) -> dict[str, Tensor]:
    """Solve ``(damping * I + (1/m) G^T G) x = v`` exactly, ``G`` the ``m`` per-sample gradients.

    The WoodFisher inverse (Singh & Alistarh, "WoodFisher: Efficient Second-Order Approximation
    for Neural Network Compression", NeurIPS 2020, arXiv 2004.14340, Sec. 3): the empirical
    Fisher ``(1/m) sum_i g_i g_i^T`` of ``m`` samples plus a dampening ``damping * I``, inverted
    by the Woodbury identity (the closed form of WoodFisher's ``m`` Sherman-Morrison rank-one
    updates)::

        x = (1/damping) * (v - G^T (m * damping * I_m + G G^T)^{-1} G v)

    which needs the ``m x m`` Gram matrix ``G G^T`` and one ``m x m`` solve (in float64), never a
    ``P x P`` matrix.

    Args:
        grads: Per-sample gradients, name -> ``(m, *param.shape)`` (as
            :func:`~unlearnkit.influence.per_sample_grads` returns), keys matching ``v``.
        v: Right-hand side.
        damping: ``> 0`` (``G^T G`` has rank ``<= m``, so without damping the system is singular).

    Returns:
        ``x`` with the keys, shapes and dtypes of ``v``.

    Shapes:
        ``G`` is ``(m, P)`` with ``P`` the total size of ``v``; memory ``m * P`` for it (the
        caller holds ``grads``) and ``m^2`` for the Gram matrix.

    Raises:
        ValueError: ``damping <= 0``, ``grads`` and ``v`` disagree in keys/shapes, or ``m = 0``.
    """
    what = "woodfisher"
    _check_tree(v, f"{what}: v")
    damping = _check_damping(damping, what)
    if damping == 0.0:
        raise ValueError(
            f"{what}: damping must be > 0: the empirical Fisher of m samples has rank <= m and "
            "is singular without it; pass e.g. damping=1.0"
        )
    if set(grads) != set(v):
        raise ValueError(f"{what}: grads and v have different keys; build both from one model")
    m = None
    for k in v:
        if grads[k].shape[1:] != v[k].shape:
            raise ValueError(
                f"{what}: grads[{k!r}] has shape {tuple(grads[k].shape)}, expected "
                f"(m, {', '.join(map(str, v[k].shape))})"
            )
        m = grads[k].shape[0] if m is None else m
        if grads[k].shape[0] != m:
            raise ValueError(f"{what}: grads disagree on the number of samples m")
    if not m:
        raise ValueError(f"{what}: grads hold no sample; pass at least one per-sample gradient")
    keys = list(v)
    g = torch.cat([grads[k].reshape(m, -1) for k in keys], dim=1)  # (m, P)
    vec = torch.cat([v[k].reshape(-1) for k in keys])
    gram = (g @ g.T).double()
    gram.diagonal().add_(m * damping)
    gv = (g @ vec).double()
    coef = torch.linalg.solve(gram, gv).to(g.dtype)
    x = (vec - g.T @ coef) / damping
    parts = torch.split(x, [v[k].numel() for k in keys])
    return {k: p.view(v[k].shape) for k, p in zip(keys, parts, strict=True)}
