from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnkit.influence import eval_mode, l2_output_loss, per_sample_grads, select_params

from .helpers import (
    cnn_data,
    linear_closed_form_grads,
    linear_model,
    make_cnn,
    make_mlp,
    max_rel_err,
    mlp_data,
    slow_per_sample_grads,
)


def test_mlp_matches_per_sample_autograd_loop() -> None:
    model = make_mlp()
    x, y = mlp_data(9)
    fast = per_sample_grads(model, x, y)
    slow = slow_per_sample_grads(model, x, y)
    assert {k: v.shape for k, v in fast.items()} == {
        "fc1.weight": (9, 5, 6),
        "fc1.bias": (9, 5),
        "fc2.weight": (9, 3, 5),
        "fc2.bias": (9, 3),
    }
    assert fast["fc1.weight"].dtype == torch.float64
    assert max_rel_err(fast, slow) <= 1e-10
    # Per-sample grads differ between samples (not a broadcast batch gradient).
    assert not torch.allclose(fast["fc2.weight"][0], fast["fc2.weight"][1])


@pytest.mark.parametrize("loss", ["ce", "l2"])
def test_linear_model_matches_closed_form(loss: str) -> None:
    # Reference written by hand, no autograd: grad_W = (softmax(z) - onehot(y)) x^T for softmax-CE,
    # 2 z x^T for ||z||^2, with z = W x + b.
    model = linear_model()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(11, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (11,), generator=g)
    loss_fn = torch.nn.functional.cross_entropy if loss == "ce" else l2_output_loss
    fast = per_sample_grads(model, x, y, loss_fn=loss_fn)
    ref = linear_closed_form_grads(model, x, y, loss=loss)
    assert list(fast) == ["weight", "bias"]
    assert max_rel_err(fast, ref) <= 1e-12


def test_l2_output_loss_value() -> None:
    out = torch.tensor([[1.0, 2.0], [3.0, -4.0]], dtype=torch.float64)
    # mean over rows of the row's squared norm: (1 + 4 + 9 + 16) / 2
    assert float(l2_output_loss(out)) == 15.0
    assert float(l2_output_loss(out.view(2, 1, 2), None)) == 15.0


def test_cnn_batchnorm_uses_running_stats_and_restores_modes() -> None:
    model = make_cnn()
    model.bn.eval()  # mixed mode: must come back exactly like this
    running_mean = model.bn.running_mean.clone()
    tracked = int(model.bn.num_batches_tracked)
    x, y = cnn_data(7)
    fast = per_sample_grads(model, x, y)
    assert model.training and not model.bn.training and model.drop.training
    assert torch.equal(model.bn.running_mean, running_mean)
    assert int(model.bn.num_batches_tracked) == tracked
    slow = slow_per_sample_grads(model, x, y)  # switches to eval itself
    assert max_rel_err(fast, slow) <= 1e-10
    # The mean of per-sample grads is the eval-mode batch gradient.
    model.eval()
    batch = torch.autograd.grad(
        torch.nn.functional.cross_entropy(model(x), y), list(model.parameters())
    )
    for (n, _), g in zip(model.named_parameters(), batch, strict=True):
        torch.testing.assert_close(fast[n].mean(0), g, rtol=1e-10, atol=1e-12)


def test_grad_fields_untouched() -> None:
    model = make_mlp()
    sentinel = torch.full_like(model.fc1.weight, 7.0)
    model.fc1.weight.grad = sentinel.clone()
    x, y = mlp_data(4)
    per_sample_grads(model, x, y)
    assert torch.equal(model.fc1.weight.grad, sentinel)
    assert model.fc2.weight.grad is None


def test_custom_loss_l2_output() -> None:
    model = make_mlp()
    x, y = mlp_data(5)
    fast = per_sample_grads(model, x, y, loss_fn=l2_output_loss)
    slow = slow_per_sample_grads(model, x, y, loss_fn=l2_output_loss)
    assert max_rel_err(fast, slow) <= 1e-10


def test_parameter_filter_prefix_and_predicate() -> None:
    model = make_cnn()
    x, y = cnn_data(3)
    full = per_sample_grads(model, x, y)
    by_prefix = per_sample_grads(model, x, y, params=["head", "bn"])
    assert list(by_prefix) == ["bn.weight", "bn.bias", "head.weight", "head.bias"]
    for k, v in by_prefix.items():
        torch.testing.assert_close(v, full[k], rtol=1e-12, atol=0)
    by_pred = per_sample_grads(model, x, y, params=lambda n, p: n.endswith("weight"))
    assert list(by_pred) == ["conv.weight", "bn.weight", "head.weight"]
    torch.testing.assert_close(by_pred["conv.weight"], full["conv.weight"], rtol=1e-12, atol=0)


class _Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(2, 2)
        self.layer10 = nn.Linear(2, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_select_params_rules() -> None:
    m = _Named()
    assert list(select_params(m)) == [
        "layer1.weight",
        "layer1.bias",
        "layer10.weight",
        "layer10.bias",
    ]
    assert list(select_params(m, ["layer1"])) == ["layer1.weight", "layer1.bias"]
    assert list(select_params(m, "layer10.")) == ["layer10.weight", "layer10.bias"]
    assert list(select_params(m, ["frozen.weight"])) == ["frozen.weight"]  # explicit wins
    with pytest.raises(ValueError, match="layer2"):
        select_params(m, ["layer1", "layer2"])
    with pytest.raises(ValueError, match="no parameter"):
        select_params(m, lambda n, p: False)
    with pytest.raises(TypeError):
        select_params(m, 3)  # type: ignore[arg-type]


def test_eval_mode_restores_after_exception() -> None:
    model = make_cnn()
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model.training and not model.bn.training
        raise RuntimeError("boom")
    assert model.training and model.bn.training


def test_bad_inputs() -> None:
    model = make_mlp()
    x, y = mlp_data(4)
    with pytest.raises(ValueError, match="targets"):
        per_sample_grads(model, x, y[:3])
    with pytest.raises(ValueError, match="empty"):
        per_sample_grads(model, x[:0], y[:0])
    with pytest.raises(TypeError):
        per_sample_grads(model, x.tolist(), y)  # type: ignore[arg-type]


def test_data_parallel_wrapper_rejected() -> None:
    from unlearnkit.influence import fisher_diagonal, model_hvp

    model = make_mlp()
    x, y = mlp_data(4)
    wrapped = torch.nn.DataParallel(model)
    with pytest.raises(TypeError, match="model.module"):
        per_sample_grads(wrapped, x, y)
    with pytest.raises(TypeError, match="model.module"):
        fisher_diagonal(wrapped, [(x, y)])
    with pytest.raises(TypeError, match="model.module"):
        model_hvp(wrapped, x, y, {})
