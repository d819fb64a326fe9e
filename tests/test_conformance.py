"""One conformance test per method in list_methods(): the Unlearner contract."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from _helpers import TinyMLP, non_default_kwargs
from unlearnkit import list_methods
from unlearnkit.base import LossUnlearner
from unlearnkit.streams import declared_streams

METHODS = sorted(list_methods())
FAST = {"epochs": 2, "lr": 0.05}
# Per-method settings for the tiny 3-blob problem. SSD/LF-SSD: D_f is a third of D here, so
# I_F <= ~3 I_D and the paper's alpha = 10 (meant for 1-5 % forget sets) selects nothing;
# alpha = 1 makes the one-shot dampening act on this toy.
# CF-k / EU-k: the toy MLP has 2 layers with parameters, so the last k = 1 (MUFAC's 3 needs more).
# BoundaryShrink: the blobs have unit noise per feature, so the reference's FGSM step 0.1 (meant
# for pixels in [0, 1]) moves few forget samples across a boundary; 1.0 moves most of them.
METHOD_KWARGS = {
    "BoundaryShrink": {"bound": 1.0},
    "SSD": {"alpha": 1.0},
    "LFSSD": {"alpha": 1.0},
    "CFk": {"k": 1},
    "EUk": {"k": 1},
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Methods that cache (SSD's I_D) write under tmp_path, never in the user's cache."""
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))


def make_method(name: str, **over):
    cls = list_methods()[name]
    params = inspect.signature(cls.__init__).parameters
    merged = {**FAST, **METHOD_KWARGS.get(name, {}), **over}
    kwargs = {k: v for k, v in merged.items() if k in params}
    return cls(**kwargs)


def fresh(state) -> TinyMLP:
    model = TinyMLP()
    model.load_state_dict(state)
    return model


def mean_loss(model, loader) -> float:
    model.eval()
    with torch.no_grad():
        return float(
            torch.cat([F.cross_entropy(model(x), y, reduction="none") for x, y in loader]).mean()
        )


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_methods_are_discovered():
    assert {"FineTune", "GradientAscent", "NegGradPlus", "RandomLabel", "Retrain"} <= set(METHODS)
    assert {"SSD", "LFSSD"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_returns_same_model_and_changes_it(name, trained_mlp, blob_splits):
    model = fresh(trained_mlp)
    before = flat(model).clone()
    out = make_method(name).unlearn(model, blob_splits["forget"], blob_splits["retain"])
    assert out is model
    assert not torch.allclose(flat(model), before)


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_result(name, trained_mlp, blob_splits):
    a, b = fresh(trained_mlp), fresh(trained_mlp)
    make_method(name, seed=3).unlearn(a, blob_splits["forget"], blob_splits["retain"])
    make_method(name, seed=3).unlearn(b, blob_splits["forget"], blob_splits["retain"])
    torch.testing.assert_close(flat(a), flat(b))


@pytest.mark.parametrize("name", METHODS)
def test_forget_loss_goes_up(name, trained_mlp, blob_splits):
    model = fresh(trained_mlp)
    before = mean_loss(model, blob_splits["forget_eval"])
    make_method(name, epochs=3).unlearn(model, blob_splits["forget"], blob_splits["retain"])
    after = mean_loss(model, blob_splits["forget_eval"])
    assert after > before + 0.05, f"{name}: forget loss {before:.3f} -> {after:.3f}"


@pytest.mark.parametrize("name", METHODS)
def test_missing_retain_set_is_an_error(name, trained_mlp, blob_splits):
    method = make_method(name)
    if not method.requires_retain:
        # It runs without D_r, changes the model, and does exactly what it does when given D_r.
        model, with_retain = fresh(trained_mlp), fresh(trained_mlp)
        assert method.unlearn(model, blob_splits["forget"], None) is model
        make_method(name).unlearn(with_retain, blob_splits["forget"], blob_splits["retain"])
        assert not torch.allclose(flat(model), flat(fresh(trained_mlp)))
        torch.testing.assert_close(flat(model), flat(with_retain), rtol=0, atol=0)
        return
    with pytest.raises(ValueError, match="needs a retain set"):
        method.unlearn(fresh(trained_mlp), blob_splits["forget"], None)


@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs(name, trained_mlp, blob_splits):
    method = make_method(name)
    empty = DataLoader(TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="forget set is empty"):
        method.unlearn(fresh(trained_mlp), empty, blob_splits["retain"])
    with pytest.raises(TypeError, match="nn.Module"):
        method.unlearn("not a model", blob_splits["forget"], blob_splits["retain"])
    with pytest.raises(TypeError, match="pass a DataLoader"):
        method.unlearn(fresh(trained_mlp), blob_splits["forget"].dataset, blob_splits["retain"])
    broken = fresh(trained_mlp)
    with torch.no_grad():
        next(broken.parameters())[0, 0] = float("nan")
    before = flat(broken).clone()
    with pytest.raises(ValueError, match="holds NaN or inf"):
        method.unlearn(broken, blob_splits["forget"], blob_splits["retain"])
    torch.testing.assert_close(flat(broken), before, equal_nan=True)  # left untouched


@pytest.mark.parametrize("name", METHODS)
def test_hyperparameters_stored_as_given(name):
    cls = list_methods()[name]
    kwargs = non_default_kwargs(cls)
    assert kwargs, name
    method = cls(**kwargs)
    for key, value in kwargs.items():
        assert getattr(method, key) == value, key
    if issubclass(cls, LossUnlearner):
        declared = declared_streams(method)
        standard = {s for s in declared if isinstance(s, str)}
        own = [s for s in declared if not isinstance(s, str)]  # method-defined Streams
        assert standard <= {"forget", "retain", "union"}
        assert all(s.name and set(s.parts) <= {"forget", "retain", "train"} for s in own)


def test_a_method_that_diverges_is_one_clear_error_not_a_nan_model(trained_mlp, blob_splits):
    """Gradient ascent with a huge step drives the weights to inf/NaN: unlearn says so (instead
    of returning a model whose NaN outputs fail later, e.g. inside the SVC attack)."""
    from unlearnkit.vision import GradientAscent

    model = fresh(trained_mlp)
    with pytest.raises(ValueError, match=r"holds NaN or inf after unlearning: the method diverged"):
        GradientAscent(lr=1e30, epochs=3).unlearn(model, blob_splits["forget"], None)
    for lr in (float("nan"), float("inf"), 0.0, -1e6):  # refused before any step
        with pytest.raises(ValueError, match="lr must be a finite number > 0"):
            GradientAscent(lr=lr).unlearn(fresh(trained_mlp), blob_splits["forget"], None)
    ok = GradientAscent(lr=1e-3, epochs=1).unlearn(fresh(trained_mlp), blob_splits["forget"], None)
    assert torch.isfinite(flat(ok)).all()
