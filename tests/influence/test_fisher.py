from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from unlearnkit.influence import fisher_diagonal, l2_output_loss

from .helpers import (
    cnn_data,
    linear_closed_form_grads,
    linear_model,
    loader,
    make_cnn,
    make_mlp,
    max_rel_err,
    mlp_data,
    slow_per_sample_grads,
    slow_ssd_importance,
)


def test_batch_empirical_matches_ssd_reference_loop() -> None:
    model = make_cnn()  # in train mode: fisher must use eval mode and restore train mode
    x, y = cnn_data(50)
    dl = loader(x, y, 16)  # 4 batches, the last one short (2 samples)
    fast = fisher_diagonal(model, dl)
    assert model.training and model.bn.training
    assert all(p.grad is None for p in model.parameters())
    slow = slow_ssd_importance(model, dl)
    assert max_rel_err(fast, slow) <= 1e-10


@pytest.mark.parametrize("loss", ["ce", "l2"])
@pytest.mark.parametrize("power", [2.0, 1.0])
def test_linear_model_both_definitions_match_closed_form(loss: str, power: float) -> None:
    # Hand-written per-sample gradients (no autograd, see helpers.linear_closed_form_grads):
    # per_sample = mean_i |g_i|^p; batch_empirical = mean over batches of |mean_{i in b} g_i|^p.
    model = linear_model()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(10, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=gen)
    loss_fn = torch.nn.functional.cross_entropy if loss == "ce" else l2_output_loss
    g = linear_closed_form_grads(model, x, y, loss=loss)
    per_sample = fisher_diagonal(
        model, loader(x, y, 4), definition="per_sample", loss_fn=loss_fn, power=power
    )
    assert max_rel_err(per_sample, {k: v.abs().pow(power).mean(0) for k, v in g.items()}) <= 1e-12
    batches = [slice(0, 4), slice(4, 8), slice(8, 10)]  # the last batch is short
    ref = {k: sum(v[b].mean(0).abs().pow(power) for b in batches) / 3 for k, v in g.items()}
    batch = fisher_diagonal(model, loader(x, y, 4), loss_fn=loss_fn, power=power)
    assert max_rel_err(batch, ref) <= 1e-12


def test_batch_empirical_divides_by_number_of_batches() -> None:
    # Two identical batches of 8: (g^2 + g^2) / 2 batches = g^2 (per-sample division: g^2 / 8).
    model = make_cnn()
    x, y = cnn_data(8)
    model.eval()
    g = torch.autograd.grad(
        torch.nn.functional.cross_entropy(model(x), y), list(model.parameters())
    )
    model.train()
    out = fisher_diagonal(model, [(x, y), (x, y)])
    ref = {n: gi**2 for (n, _), gi in zip(model.named_parameters(), g, strict=True)}
    assert max_rel_err(out, ref) <= 1e-10


def test_lf_ssd_power_one_with_l2_output() -> None:
    model = make_cnn()
    x, y = cnn_data(40)
    dl = loader(x, y, 8)
    fast = fisher_diagonal(model, dl, loss_fn=l2_output_loss, power=1.0)
    slow = slow_ssd_importance(model, dl, loss_fn=l2_output_loss, power=1.0)
    assert max_rel_err(fast, slow) <= 1e-10
    ssd = fisher_diagonal(model, dl)
    assert max_rel_err(ssd, fast) > 0.5  # a different importance, not the same numbers


def test_per_sample_matches_slow_loop_and_is_batch_size_invariant() -> None:
    model = make_cnn()
    x, y = cnn_data(64)
    slow_g = slow_per_sample_grads(model, x, y)
    slow = {k: (g**2).mean(0) for k, g in slow_g.items()}
    results = {
        bs: fisher_diagonal(model, loader(x, y, bs), definition="per_sample") for bs in (1, 7, 64)
    }
    assert max_rel_err(results[64], slow) <= 1e-10
    assert max_rel_err(results[1], results[64]) <= 1e-10
    assert max_rel_err(results[7], results[64]) <= 1e-10
    chunked = fisher_diagonal(model, loader(x, y, 64), definition="per_sample", chunk_size=5)
    assert max_rel_err(chunked, results[64]) <= 1e-10
    # ... whereas the SSD definition moves with the batch size, and equals per_sample at B = 1.
    be1 = fisher_diagonal(model, loader(x, y, 1))
    be16 = fisher_diagonal(model, loader(x, y, 16))
    assert max_rel_err(be1, results[64]) <= 1e-10
    assert float(be16["head.weight"].sum()) < 0.5 * float(be1["head.weight"].sum())


def test_per_sample_power_and_param_filter() -> None:
    model = make_mlp()
    x, y = mlp_data(30)
    g = slow_per_sample_grads(model, x, y)
    g = {k: v for k, v in g.items() if k.startswith("fc2.")}
    out = fisher_diagonal(
        model, loader(x, y, 8), definition="per_sample", params=["fc2"], power=1.5
    )
    assert list(out) == ["fc2.weight", "fc2.bias"]
    ref = {k: v.abs().pow(1.5).mean(0) for k, v in g.items()}
    assert max_rel_err(out, ref) <= 1e-10


class _Triples(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i  # (x, y, *rest)


def test_extra_batch_entries_ignored() -> None:
    model = make_mlp()
    x, y = mlp_data(20)
    a = fisher_diagonal(model, DataLoader(_Triples(x, y), batch_size=6), definition="per_sample")
    b = fisher_diagonal(model, loader(x, y, 6), definition="per_sample")
    assert max_rel_err(a, b) <= 1e-12


def test_empty_loader_raises() -> None:
    model = make_mlp()
    x, y = mlp_data(0)
    for definition in ("batch_empirical", "per_sample"):
        with pytest.raises(ValueError, match="no (batches|samples)"):
            fisher_diagonal(model, loader(x, y, 4), definition=definition)
        with pytest.raises(ValueError, match="no (batches|samples)"):
            fisher_diagonal(model, [], definition=definition)


def test_nan_raises_naming_parameter() -> None:
    model = make_mlp()
    x, y = mlp_data(8)
    with torch.no_grad():
        model.fc2.weight[0, 0] = float("nan")
    for definition in ("batch_empirical", "per_sample"):
        with pytest.raises(ValueError, match="'fc1.weight'"):
            fisher_diagonal(model, loader(x, y, 4), definition=definition)
        with pytest.raises(ValueError, match="'fc2.weight'"):
            fisher_diagonal(model, loader(x, y, 4), definition=definition, params=["fc2"])
    assert model.training  # restored even when raising


def test_inf_input_raises() -> None:
    model = make_mlp()
    x, y = mlp_data(8)
    x[3, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        fisher_diagonal(model, loader(x, y, 4))


def test_argument_validation() -> None:
    model = make_mlp()
    x, y = mlp_data(8)
    dl = loader(x, y, 4)
    with pytest.raises(ValueError, match="definition"):
        fisher_diagonal(model, dl, definition="true")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power"):
        fisher_diagonal(model, dl, power=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        fisher_diagonal(model, dl, definition="per_sample", chunk_size=0)
    with pytest.raises(TypeError, match="batches"):
        fisher_diagonal(model, [{"x": x, "y": y}])
    with pytest.raises(ValueError, match="scalar"):
        fisher_diagonal(model, dl, loss_fn=lambda o, t: o.sum(1))


def test_float32_model_and_dataset_defaults() -> None:
    model64 = make_mlp()
    model = make_mlp().float()
    x, y = mlp_data(12)
    out = fisher_diagonal(model, DataLoader(TensorDataset(x.float(), y), batch_size=5))
    assert all(
        v.dtype == torch.float32 and v.shape == p.shape
        for v, p in zip(out.values(), model.parameters(), strict=True)
    )
    # Same weights in float64 through the slow loop; the float32 run carries float32 rounding
    # (eps 1.2e-7, a few dozen operations), hence 1e-5 rather than the float64 1e-10.
    ref = slow_ssd_importance(model64, loader(x, y, 5))
    assert max_rel_err({k: v.double() for k, v in out.items()}, ref) <= 1e-5
