from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import hessian
from torch.func import functional_call

from unlearnkit.influence import flatten_dict, hvp, model_hvp, unflatten_dict

from .helpers import cnn_data, loader, make_cnn, make_mlp, max_rel_err, mlp_data


def _explicit_hessian(model, x, y, names):
    """Dense Hessian of the batch-mean CE w.r.t. the named parameters (others fixed)."""
    model.eval()
    params = dict(model.named_parameters())
    like = {n: params[n].detach() for n in names}
    rest = {n: p.detach() for n, p in params.items() if n not in names}
    buffers = dict(model.named_buffers())

    def f(flat: torch.Tensor) -> torch.Tensor:
        p = unflatten_dict(flat, like)
        return F.cross_entropy(functional_call(model, (p, rest, buffers), (x,)), y)

    return hessian(f, flatten_dict(like), vectorize=True), like


def _random_like(like, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in like.items()}


def test_model_hvp_matches_explicit_hessian() -> None:
    model = make_mlp()
    x, y = mlp_data(10)
    names = [n for n, _ in model.named_parameters()]
    H, like = _explicit_hessian(model, x, y, names)
    assert H.shape == (53, 53)
    torch.testing.assert_close(H, H.T, rtol=1e-10, atol=1e-12)
    v = _random_like(like)
    model.train()
    out = model_hvp(model, x, y, v)
    assert model.training
    ref = unflatten_dict(H @ flatten_dict(v), like)
    assert max_rel_err(out, ref) <= 1e-10


def test_model_hvp_param_subset_and_batchnorm_eval() -> None:
    model = make_cnn()  # train mode; HVP must use BatchNorm running stats (eval)
    x, y = cnn_data(6)
    names = ["conv.bias", "bn.weight", "head.bias"]
    H, like = _explicit_hessian(model, x, y, names)
    v = _random_like(like)
    v_reordered = {k: v[k] for k in reversed(names)}  # key order of the vector is irrelevant
    model.train()
    out = model_hvp(model, x, y, v_reordered, params=["conv.bias", "bn.weight", "head.bias"])
    assert model.training and model.bn.training
    assert list(out) == names
    ref = unflatten_dict(H @ flatten_dict(v), like)
    assert max_rel_err(out, ref) <= 1e-10


def test_model_hvp_loader_weights_batches_by_size() -> None:
    model = make_mlp()
    x, y = mlp_data(23)
    v = _random_like({n: p.detach() for n, p in model.named_parameters()})
    full = model_hvp(model, x, y, v)
    batched = model_hvp(model, loader(x, y, 5), None, v)  # 5,5,5,5,3
    assert max_rel_err(batched, full) <= 1e-10
    # Unweighted averaging of the 5 batch HVPs would be wrong by a visible amount.
    per_batch = [model_hvp(model, x[i : i + 5], y[i : i + 5], v) for i in range(0, 23, 5)]
    unweighted = {k: sum(b[k] for b in per_batch) / 5 for k in full}
    assert max_rel_err(unweighted, full) > 1e-3


def test_hvp_on_quadratic_dict_function() -> None:
    g = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=g, dtype=torch.float64)
    A = m @ m.T + torch.eye(5, dtype=torch.float64)
    params = {
        "a": torch.randn(2, generator=g, dtype=torch.float64),
        "b": torch.randn(3, generator=g, dtype=torch.float64),
    }
    vec = {
        "a": torch.randn(2, generator=g, dtype=torch.float64),
        "b": torch.randn(3, generator=g, dtype=torch.float64),
    }

    def f(p):
        z = torch.cat([p["a"], p["b"]])
        return 0.5 * z @ A @ z + torch.sin(z).sum() * 0  # Hessian is exactly A

    out = hvp(f, params, vec)
    ref = A @ torch.cat([vec["a"], vec["b"]])
    torch.testing.assert_close(torch.cat([out["a"], out["b"]]), ref, rtol=1e-12, atol=1e-12)


def test_vector_mismatch_and_bad_calls() -> None:
    model = make_mlp()
    x, y = mlp_data(4)
    v = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match="keys"):
        model_hvp(model, x, y, {k: v[k] for k in list(v)[:2]})
    with pytest.raises(ValueError, match="shape"):
        model_hvp(model, x, y, {**v, "fc2.bias": torch.zeros(7, dtype=torch.float64)})
    with pytest.raises(ValueError, match="targets"):
        model_hvp(model, x, None, v)
    with pytest.raises(ValueError, match="targets=None"):
        model_hvp(model, loader(x, y, 2), y, v)
    with pytest.raises(ValueError, match="no samples"):
        model_hvp(model, [], None, v)
