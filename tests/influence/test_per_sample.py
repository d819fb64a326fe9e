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


# --- layer-wise path (method="layerwise") against torch.func (method="functorch") ---


class _ConvZoo(nn.Module):
    """Strided, padded, dilated, 'same'-padded, reflect-padded and grouped convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=2, dilation=2, bias=False)
        self.c3 = nn.Conv2d(4, 6, (2, 3), padding="same")
        self.c4 = nn.Conv2d(6, 6, 3, padding=1, padding_mode="reflect", groups=3)
        self.c5 = nn.Conv2d(6, 3, 1, stride=(1, 2))
        self.head = nn.Linear(3 * 5 * 3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.c1, self.c2, self.c3, self.c4, self.c5):
            x = torch.tanh(conv(x))
        return self.head(x.flatten(1))


def _both(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kw):
    return (
        per_sample_grads(model, x, y, method="layerwise", **kw),
        per_sample_grads(model, x, y, method="functorch", **kw),
    )


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_layerwise_conv_variants_match_functorch() -> None:
    torch.manual_seed(0)
    model = _ConvZoo().double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 2, 10, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (5,), generator=g)
    lw, ft = _both(model, x, y)
    assert list(lw) == list(ft) == [n for n, _ in model.named_parameters()]
    assert lw["c4.weight"].shape == (5, 6, 2, 3, 3)
    assert max_rel_err(lw, ft) <= 1e-12
    assert max_rel_err(lw, slow_per_sample_grads(model, x, y)) <= 1e-12


def test_layerwise_cpu_conv_loop_and_unfold_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # Large maps take the per-sample convolution_backward loop on CPU; force unfold for parity.
    from unlearnkit.influence import layerwise

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, padding=1, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 81, 3)
    ).double()
    x = torch.randn(3, 8, 9, 9, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    looped = per_sample_grads(model, x, y, method="layerwise")
    monkeypatch.setattr(layerwise, "_LOOP_MIN_POSITIONS", 10**9)
    unfolded = per_sample_grads(model, x, y, method="layerwise")
    assert max_rel_err(looped, unfolded) <= 1e-12
    assert max_rel_err(looped, per_sample_grads(model, x, y, method="functorch")) <= 1e-12


def test_layerwise_small_cnn_and_resnet_block() -> None:
    from torchvision.models.resnet import BasicBlock

    from unlearnkit.vision.models import build_model

    torch.manual_seed(0)
    cnn = build_model("small_cnn", num_classes=3, in_channels=1).double()
    block = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),  # in-place ops after hooked outputs
        BasicBlock(
            4, 8, stride=2, downsample=nn.Sequential(nn.Conv2d(4, 8, 1, 2), nn.BatchNorm2d(8))
        ),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).double()
    for model, shape in ((cnn, (1, 12, 12)), (block, (2, 8, 8))):
        with torch.no_grad():  # non-trivial running statistics
            model.train()
            model(torch.randn(16, *shape, dtype=torch.float64) * 2 + 1)
        x = torch.randn(6, *shape, dtype=torch.float64)
        y = torch.randint(0, 3, (6,))
        lw, ft = _both(model, x, y)
        assert model.training  # modes restored
        assert max_rel_err(lw, ft) <= 1e-12
        auto = per_sample_grads(model, x, y)
        assert max_rel_err(auto, ft) <= 1e-12


class _WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.norm = nn.LayerNorm(3 * 6 * 6)
        self.scale = nn.Parameter(torch.tensor(1.5))  # used outside any handled module
        self.head = nn.Linear(3 * 6 * 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.relu(self.conv(x)).flatten(1))) * self.scale


def test_layerwise_falls_back_to_functorch_for_other_parameters() -> None:
    from unlearnkit.influence.layerwise import plan_layerwise

    torch.manual_seed(0)
    model = _WithLayerNorm().double()
    handled, rest = plan_layerwise(model, select_params(model))
    assert rest == ["scale", "norm.weight", "norm.bias"]
    assert {m: sorted(v) for m, v in handled.items()} == {
        model.conv: ["bias", "weight"],
        model.head: ["bias", "weight"],
    }
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1])
    lw, ft = _both(model, x, y)
    assert list(lw) == list(ft)
    assert max_rel_err(lw, ft) <= 1e-12
    assert max_rel_err(per_sample_grads(model, x, y), ft) <= 1e-12  # auto -> functorch


def test_layerwise_tied_weights_and_reused_module() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight  # tied
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.a(x))
            h = torch.tanh(self.a(h))  # module called twice
            return self.out(torch.tanh(self.b(h)))

    torch.manual_seed(0)
    model = Tied().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    lw, ft = _both(model, x, y)
    assert list(lw) == ["a.weight", "a.bias", "out.weight", "out.bias"]
    assert max_rel_err(lw, ft) <= 1e-12


def test_layerwise_l2_loss_param_filter_and_unused_layer() -> None:
    model = make_mlp()
    model.unused = nn.Linear(2, 2).double()
    x, y = mlp_data(6)
    lw, ft = _both(model, x, y, loss_fn=l2_output_loss, params=["fc2", "unused"])
    assert list(lw) == ["fc2.weight", "fc2.bias", "unused.weight", "unused.bias"]
    assert torch.equal(lw["unused.weight"], torch.zeros(6, 2, 2, dtype=torch.float64))
    assert (
        max_rel_err(
            {k: lw[k] for k in ("fc2.weight", "fc2.bias")},
            {k: ft[k] for k in ("fc2.weight", "fc2.bias")},
        )
        <= 1e-12
    )
    ref = linear_closed_form_grads(model.fc2, torch.tanh(model.fc1(x)).detach(), y, loss="l2")
    torch.testing.assert_close(lw["fc2.weight"], ref["weight"], rtol=1e-12, atol=1e-14)


def test_layerwise_train_mode_batchnorm_and_bad_method() -> None:
    from unlearnkit.influence import make_per_sample_grad_fn

    model = make_cnn()  # train mode: make_per_sample_grad_fn does not switch modes
    x, y = cnn_data(4)
    selected = select_params(model)
    with pytest.raises(ValueError, match="train mode"):
        make_per_sample_grad_fn(model, selected, method="layerwise")(x, y)
    # auto hands the call to torch.func, which (as before this path existed) refuses the
    # running-statistics update of a train-mode BatchNorm
    with pytest.raises(RuntimeError, match="in-place"):
        make_per_sample_grad_fn(model, selected)(x, y)
    with pytest.raises(ValueError, match="method"):
        per_sample_grads(model, x, y, method="opacus")  # type: ignore[arg-type]


def test_layerwise_sequence_linear_auto_vs_explicit() -> None:
    # Linear on (B, T, D): explicit layerwise assumes batch-first (correct here); auto refuses the
    # unverifiable layout and uses torch.func.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Flatten(), nn.Linear(8, 2)).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 0, 1])
    lw, ft = _both(model, x, y)
    assert max_rel_err(lw, ft) <= 1e-12
    assert max_rel_err(per_sample_grads(model, x, y), ft) <= 1e-12
