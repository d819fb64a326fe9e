from __future__ import annotations

import pytest
import torch

from unlearnkit.influence import conjugate_gradient, flatten_dict, lissa, unflatten_dict

N = 20


def _spd(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(eigs) @ q.T


def _problem(seed: int = 0):
    eigs = torch.linspace(0.5, 10.0, N, dtype=torch.float64)
    A = _spd(eigs, seed)
    b = torch.randn(N, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    like = {"w": torch.zeros(4, 3, dtype=torch.float64), "b": torch.zeros(8, dtype=torch.float64)}
    v = unflatten_dict(b, like)  # the quadratic 0.5 x^T A x - b^T x over a 2-tensor pytree

    def hvp_fn(u):
        return unflatten_dict(A @ flatten_dict(u), u)

    return A, b, v, hvp_fn


def _rel(x, ref) -> float:
    return float((flatten_dict(x) - ref).norm() / ref.norm())


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_cg_solves_damped_quadratic(damping: float) -> None:
    A, b, v, hvp_fn = _problem()
    x = conjugate_gradient(hvp_fn, v, damping=damping, max_iter=100, tol=1e-10)
    assert list(x) == ["w", "b"] and x["w"].shape == (4, 3)
    ref = torch.linalg.solve(A + damping * torch.eye(N, dtype=torch.float64), b)
    assert _rel(x, ref) <= 1e-10
    # The minimiser of 0.5 x^T (A + lambda I) x - b^T x: gradient is zero there.
    assert (
        float(((A + damping * torch.eye(N, dtype=torch.float64)) @ flatten_dict(x) - b).norm())
        < 1e-8
    )


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_lissa_solves_damped_quadratic(damping: float) -> None:
    A, b, v, hvp_fn = _problem(seed=2)
    # scale > lambda_max(A) + damping = 10.3; contraction 1 - (0.5 + damping)/12 per step.
    x = lissa(hvp_fn, v, damping=damping, scale=12.0, depth=1000)
    ref = torch.linalg.solve(A + damping * torch.eye(N, dtype=torch.float64), b)
    assert _rel(x, ref) <= 1e-10
    # Too shallow a recursion is visibly not converged (the test can tell the difference).
    short = lissa(hvp_fn, v, damping=damping, scale=12.0, depth=5)
    assert _rel(short, ref) > 1e-2


def test_lissa_repeats_average_and_stochastic_hvp() -> None:
    A, b, v, hvp_fn = _problem(seed=3)
    one = lissa(hvp_fn, v, scale=12.0, depth=300)
    three = lissa(hvp_fn, v, scale=12.0, depth=300, repeats=3)
    assert _rel(three, flatten_dict(one)) <= 1e-12
    # Stochastic HVP (a random half of a least-squares design per call, unbiased): the averaged
    # estimate lands near the exact solution.
    g = torch.Generator().manual_seed(0)
    X = torch.randn(400, N, generator=g, dtype=torch.float64)
    H = X.T @ X / 400

    def noisy(u):
        idx = torch.randperm(400, generator=g)[:200]
        xb = X[idx]
        return {"x": xb.T @ (xb @ u["x"]) / 200}

    vb = {"x": b}
    est = lissa(noisy, vb, damping=0.1, scale=5.0, depth=300, repeats=4)
    ref = torch.linalg.solve(H + 0.1 * torch.eye(N, dtype=torch.float64), b)
    assert float((est["x"] - ref).norm() / ref.norm()) < 0.1


def test_cg_non_positive_curvature_raises_and_damping_fixes_it() -> None:
    eigs = torch.tensor([-3.0, 1.0, 2.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    A = _spd(eigs, seed=4)
    hvp_fn = lambda u: {"x": A @ u["x"]}  # noqa: E731
    neg = torch.linalg.eigh(A).eigenvectors[:, 0]
    with pytest.raises(ValueError, match="damping"):
        conjugate_gradient(hvp_fn, {"x": neg})  # fails at iteration 0
    b = torch.randn(6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with pytest.raises(ValueError, match="non-positive curvature"):
        conjugate_gradient(hvp_fn, {"x": b}, max_iter=50)  # generic b: within n steps
    x = conjugate_gradient(hvp_fn, {"x": b}, damping=3.5, tol=1e-12)
    ref = torch.linalg.solve(A + 3.5 * torch.eye(6, dtype=torch.float64), b)
    assert float((x["x"] - ref).norm() / ref.norm()) <= 1e-10


def test_lissa_divergence_raises() -> None:
    A, b, v, hvp_fn = _problem()
    with pytest.raises(ValueError, match="scale"):
        lissa(hvp_fn, v, scale=4.0, depth=200)  # lambda_max = 10 > 2 * scale
    eigs = torch.tensor([-1.0, 1.0, 2.0], dtype=torch.float64)
    A3 = _spd(eigs, seed=6)
    with pytest.raises(ValueError, match="diverged"):
        lissa(lambda u: {"x": A3 @ u["x"]}, {"x": torch.ones(3, dtype=torch.float64)}, scale=5.0)


def test_cg_not_converged_warns_and_zero_rhs() -> None:
    A, b, v, hvp_fn = _problem()
    with pytest.warns(RuntimeWarning, match="not converged"):
        conjugate_gradient(hvp_fn, v, max_iter=2, tol=1e-12)
    zero = {k: torch.zeros_like(t) for k, t in v.items()}
    out = conjugate_gradient(hvp_fn, zero)
    assert all(float(t.abs().max()) == 0.0 for t in out.values())


def test_argument_validation() -> None:
    _, _, v, hvp_fn = _problem()
    with pytest.raises(ValueError, match="damping"):
        conjugate_gradient(hvp_fn, v, damping=-1.0)
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(hvp_fn, v, max_iter=0)
    with pytest.raises(ValueError, match="scale"):
        lissa(hvp_fn, v, scale=0.0)
    with pytest.raises(ValueError, match="depth"):
        lissa(hvp_fn, v, depth=0)
    with pytest.raises(TypeError):
        conjugate_gradient(hvp_fn, torch.ones(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keys"):
        conjugate_gradient(lambda u: {"other": u["w"]}, v)
    with pytest.raises(TypeError, match="hvp_fn must return"):
        lissa(lambda u: flatten_dict(u), v)


def test_flatten_unflatten_roundtrip() -> None:
    tree = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([7.0])}
    flat = flatten_dict(tree)
    torch.testing.assert_close(flat, torch.tensor([0.0, 1, 2, 3, 4, 5, 7]))
    back = unflatten_dict(flat, tree)
    assert list(back) == ["a", "b"] and torch.equal(back["a"], tree["a"])
    with pytest.raises(ValueError, match="elements"):
        unflatten_dict(flat[:-1], tree)
    with pytest.raises(ValueError, match="dtype"):
        flatten_dict({"a": torch.zeros(2), "b": torch.zeros(2, dtype=torch.float64)})
