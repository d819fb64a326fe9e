from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.influence import random_projection

P = 2500  # not a multiple of the 1024-row block


def test_deterministic_and_chunking_invariant() -> None:
    g = torch.randn(6, P, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = random_projection(g, 64, seed=3)
    assert a.shape == (6, 64) and a.dtype == torch.float64
    assert torch.equal(a, random_projection(g, 64, seed=3))
    torch.testing.assert_close(
        a, random_projection(g, 64, seed=3, blocks_per_chunk=1), rtol=1e-12, atol=1e-12
    )
    assert not torch.allclose(a, random_projection(g, 64, seed=4))
    assert not torch.allclose(a, random_projection(g, 64, seed=3, kind="gaussian"))
    # Row blocks of R do not depend on P: zero-padding the columns changes nothing, and the
    # projection of a row subset is the subset of the projection.
    padded = torch.cat([g, torch.zeros(6, 1700, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(random_projection(padded, 64, seed=3), a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        random_projection(g[2:4], 64, seed=3), a[2:4], rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_matrix_entries_have_the_right_law(kind: str) -> None:
    dim = 256
    R = random_projection(torch.eye(P, dtype=torch.float64), dim, seed=1, kind=kind) * math.sqrt(
        dim
    )
    assert R.shape == (P, dim)
    if kind == "rademacher":
        assert set(R.unique().tolist()) == {-1.0, 1.0}
    else:
        assert len(R.unique()) > 0.99 * R.numel()
    # 640k entries: mean within 5 sigma (sigma = 1/800) of 0, variance within 1 %.
    assert abs(float(R.mean())) < 5 / 800
    assert abs(float(R.var()) - 1.0) < 0.01


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_johnson_lindenstrauss_norms_and_inner_products(kind: str) -> None:
    gen = torch.Generator().manual_seed(7)
    dense = torch.randn(10, P, generator=gen, dtype=torch.float64)
    tail_onehot = torch.zeros(5, P, dtype=torch.float64)
    tail_onehot[torch.arange(5), torch.tensor([P - 1, P - 7, 2100, 1500, 3])] = 1.0
    heavy = torch.randn(5, P, generator=gen, dtype=torch.float64) ** 3
    X = torch.cat([dense, tail_onehot, heavy]) * 3.0
    dim = 2048
    Y = random_projection(X, dim, seed=11, kind=kind)
    ratio = Y.pow(2).sum(1) / X.pow(2).sum(1)
    # E[ratio] = 1 with std ~ sqrt(2/dim) = 0.031: a missing or wrong 1/sqrt(dim) scale, a
    # truncation to the first columns or a low-rank R would land far outside this band.
    assert float((ratio - 1).abs().max()) < 0.15
    Xn = X / X.norm(dim=1, keepdim=True)
    Yn = Y / X.norm(dim=1, keepdim=True)
    err = (Yn @ Yn.T - Xn @ Xn.T).abs()
    assert float(err.max()) < 0.15


def test_bad_arguments() -> None:
    g = torch.randn(3, 10)
    with pytest.raises(ValueError, match="2-D"):
        random_projection(g[0], 4, seed=0)
    with pytest.raises(ValueError, match="2-D float"):
        random_projection(torch.ones(3, 10, dtype=torch.int64), 4, seed=0)
    with pytest.raises(ValueError, match="dim"):
        random_projection(g, 0, seed=0)
    with pytest.raises(ValueError, match="kind"):
        random_projection(g, 4, seed=0, kind="sparse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        random_projection(g, 4, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        random_projection(g, 4, seed=1.5)  # type: ignore[arg-type]
