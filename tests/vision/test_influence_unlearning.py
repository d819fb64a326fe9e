"""IU: closed form with the exact Hessian, leave-out retrain to first order, solvers, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.influence import flatten_dict, unflatten_dict
from unlearnkit.vision import IU

LAM = 0.05  # L2 regulariser of the convex problem (= IU's damping)


def _data(n: int = 60, d: int = 4, c: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g, dtype=torch.float64)
    y = torch.arange(c).repeat(n // c)
    x = centers[y] + 1.5 * torch.randn(len(y), d, generator=g, dtype=torch.float64)
    return x, y


def _loader(x, y, bs: int = 16, shuffle: bool = False) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=shuffle)


def _objective(model: nn.Module, x, y, lam: float):
    """θ (flat) -> mean CE over (x, y) + (lam/2)||θ||², for autograd.functional.hessian."""
    like = {k: p.detach() for k, p in model.named_parameters()}

    def f(theta):
        p = unflatten_dict(theta, like)
        return (
            F.cross_entropy(functional_call(model, p, (x,)), y) + 0.5 * lam * theta.square().sum()
        )

    return f, flatten_dict(like).clone()


def _newton_minimise(model: nn.Module, x, y, lam: float, theta0) -> torch.Tensor:
    """Exact Newton to convergence (the problem is strictly convex)."""
    f, _ = _objective(model, x, y, lam)
    theta = theta0.clone()
    for _ in range(50):
        g = torch.autograd.functional.jacobian(f, theta)
        if float(g.norm()) < 1e-13:
            break
        theta = theta - torch.linalg.solve(torch.autograd.functional.hessian(f, theta), g)
    return theta


def _set(model: nn.Module, theta) -> None:
    like = dict(model.named_parameters())
    with torch.no_grad():
        for k, t in unflatten_dict(theta, like).items():
            like[k].copy_(t)


def _flat(model: nn.Module) -> torch.Tensor:
    return flatten_dict({k: p.detach() for k, p in model.named_parameters()}).clone()


@pytest.fixture(scope="module")
def convex():
    """Multinomial logistic regression (float64) at the optimum of the L2-regularised D_train
    objective; D_f = the first 6 samples."""
    x, y = _data()
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    theta_o = _newton_minimise(model, x, y, LAM, _flat(model))
    forget = torch.zeros(len(y), dtype=torch.bool)
    forget[:6] = True
    return model, theta_o, x, y, forget


def _unlearned(convex, **kwargs) -> torch.Tensor:
    model, theta_o, x, y, forget = convex
    _set(model, theta_o)
    IU(**kwargs).unlearn(
        model, _loader(x[forget], y[forget], 4, True), _loader(x[~forget], y[~forget], 16, True)
    )
    return _flat(model)


def _closed_form(convex, hessian: torch.Tensor | None = None, damping: float = LAM):
    """θ_o + (H_r + λI)^{-1} (n_f/n)(ḡ_f − ḡ_r) with the exact Hessian of the D_r mean CE."""
    model, theta_o, x, y, forget = convex
    _set(model, theta_o)
    f_r, _ = _objective(model, x[~forget], y[~forget], 0.0)
    f_f, _ = _objective(model, x[forget], y[forget], 0.0)
    g_r = torch.autograd.functional.jacobian(f_r, theta_o)
    g_f = torch.autograd.functional.jacobian(f_f, theta_o)
    n_f, n = int(forget.sum()), len(y)
    v = n_f / n * (g_f - g_r)
    h = torch.autograd.functional.hessian(f_r, theta_o) if hessian is None else hessian
    return theta_o + torch.linalg.solve(h + damping * torch.eye(len(v), dtype=v.dtype), v), v


def test_cg_equals_the_closed_form_with_the_exact_hessian(convex) -> None:
    theta_u = _unlearned(convex, solver="cg", damping=LAM, tol=1e-12, max_iter=200)
    expected, _ = _closed_form(convex)
    assert float((theta_u - expected).abs().max()) < 1e-8
    assert float((theta_u - convex[1]).norm()) > 1e-2  # the step is not trivially small


def test_v_is_one_over_n_r_times_the_forget_gradient_sum_at_a_stationary_point(convex) -> None:
    # Unregularised stationarity is not what the fixture has, so check the identity directly:
    # v = (1/n)Σ_f g − n_f/(n·n_r) Σ_r g, the reference's forget_grad − retain_grad.
    model, theta_o, x, y, forget = convex
    _, v = _closed_form(convex)
    _set(model, theta_o)
    per = []
    for i in range(len(y)):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        per.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    per = torch.stack(per)
    n, n_f = len(y), int(forget.sum())
    n_r = n - n_f
    ref = per[forget].sum(0) / n - n_f / (n * n_r) * per[~forget].sum(0)
    torch.testing.assert_close(v, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n_forget", [2, 6, 12])
def test_matches_the_leave_out_retrain_to_first_order(convex, n_forget) -> None:
    model, theta_o, x, y, _ = convex
    forget = torch.zeros(len(y), dtype=torch.bool)
    forget[:n_forget] = True
    theta_retrain = _newton_minimise(model, x[~forget], y[~forget], LAM, theta_o)
    theta_u = _unlearned(
        (model, theta_o, x, y, forget), solver="cg", damping=LAM, tol=1e-12, max_iter=200
    )
    moved = float((theta_retrain - theta_o).norm())
    err = float((theta_u - theta_retrain).norm())
    assert moved > 0.05
    # A Newton step's error is second order: err <= C·moved² (C ≈ 0.4 here for every size, so
    # the relative error shrinks with the step), and well below the distance itself.
    assert err < 0.6 * moved**2, (err, moved)
    assert err < 0.15 * moved, (err, moved)
    # ... and the sign matters: the opposite step is further off than not moving at all.
    assert float((2 * theta_o - theta_u - theta_retrain).norm()) > 1.5 * moved


def test_lissa_equals_the_closed_form(convex) -> None:
    # damping 0.5, scale 2 (> λ_max(H_r) + 0.5): the recursion contracts by <= 0.75 per step.
    theta_u = _unlearned(convex, solver="lissa", damping=0.5, scale=2.0, depth=150)
    expected, _ = _closed_form(convex, damping=0.5)
    assert float((theta_u - expected).abs().max()) < 1e-8


def test_woodfisher_equals_the_dense_fisher_inverse(convex) -> None:
    model, theta_o, x, y, forget = convex
    m = 20
    theta_u = _unlearned(convex, solver="woodfisher", damping=0.5, woodfisher_samples=m)
    # Dense empirical Fisher of the first m retain samples in dataset order, by hand.
    _set(model, theta_o)
    xr, yr = x[~forget][:m], y[~forget][:m]
    rows = []
    for i in range(m):
        model.zero_grad()
        F.cross_entropy(model(xr[i : i + 1]), yr[i : i + 1]).backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    g = torch.stack(rows)
    fisher = g.T @ g / m
    expected, _ = _closed_form(convex, hessian=fisher, damping=0.5)
    assert float((theta_u - expected).abs().max()) < 1e-10


def test_alpha_scales_the_step(convex) -> None:
    theta_o = convex[1]
    one = _unlearned(convex, solver="cg", damping=LAM, tol=1e-12)
    half = _unlearned(convex, solver="cg", damping=LAM, tol=1e-12, alpha=0.5)
    torch.testing.assert_close(half - theta_o, 0.5 * (one - theta_o), rtol=1e-9, atol=1e-12)


def test_layers_leave_the_others_bit_identical(convex) -> None:
    model, theta_o, x, y, forget = convex
    _set(model, theta_o)
    bias = model.bias.detach().clone()
    weight = model.weight.detach().clone()
    IU(layers=["weight"], solver="cg", damping=LAM).unlearn(
        model, _loader(x[forget], y[forget]), _loader(x[~forget], y[~forget])
    )
    assert torch.equal(model.bias, bias)
    assert not torch.allclose(model.weight, weight)


def _singular_problem():
    """D_r never sees feature 0, D_f does: H_r is singular along the feature-0 weights and v has a
    component there (no solution without damping)."""
    x, y = _data()
    x = x.clone()
    forget = torch.zeros(len(y), dtype=torch.bool)
    forget[:6] = True
    x[~forget, 0] = 0.0
    torch.manual_seed(0)
    return nn.Linear(4, 3).double(), x, y, forget


@pytest.mark.parametrize("solver", ["cg", "lissa", "woodfisher"])
def test_singular_hessian_without_damping_is_a_one_line_error(solver) -> None:
    model, x, y, forget = _singular_problem()
    before = _flat(model)
    f, r = _loader(x[forget], y[forget]), _loader(x[~forget], y[~forget])
    with pytest.raises(ValueError, match="damping") as info:
        IU(solver=solver, damping=0.0, scale=5.0, depth=40).unlearn(model, f, r)
    assert "\n" not in str(info.value)
    assert torch.equal(_flat(model), before)
    IU(solver=solver, damping=0.1, scale=5.0, depth=40).unlearn(model, f, r)  # damping repairs it
    assert not torch.equal(_flat(model), before)


def test_indefinite_hessian_without_damping_is_an_error() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # far from any minimum: the CE Hessian has negative eigenvalues
    x, y = _data()
    before = _flat(model)
    with pytest.raises(ValueError, match="damping"):
        IU(solver="cg", damping=0.0).unlearn(model, _loader(x[:6], y[:6]), _loader(x[6:], y[6:]))
    assert torch.equal(_flat(model), before)


@pytest.mark.parametrize("solver", ["cg", "woodfisher"])
def test_non_finite_inputs_leave_the_weights_untouched(solver) -> None:
    model, x, y, forget = _singular_problem()
    x = x.clone()
    x[0, 1] = float("nan")
    before = _flat(model)
    with pytest.raises(ValueError, match="NaN"):
        IU(solver=solver, damping=0.1).unlearn(
            model, _loader(x[forget], y[forget]), _loader(x[~forget], y[~forget])
        )
    assert torch.equal(_flat(model), before)


def test_defaults_are_the_reference_woodfisher() -> None:
    method = IU()
    assert (method.solver, method.damping, method.woodfisher_samples) == ("woodfisher", 1.0, 1000)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"solver": "newton"}, "solver"),
        ({"solver": "woodfisher", "damping": 0.0}, "damping"),
        ({"damping": -1.0}, "damping"),
        ({"max_iter": 0}, "max_iter"),
        ({"alpha": float("nan")}, "alpha"),
    ],
)
def test_bad_hyperparameters(kwargs, match, convex) -> None:
    model, theta_o, x, y, forget = convex
    _set(model, theta_o)
    with pytest.raises(ValueError, match=match):
        IU(**kwargs).unlearn(model, _loader(x[forget], y[forget]), _loader(x[~forget], y[~forget]))
