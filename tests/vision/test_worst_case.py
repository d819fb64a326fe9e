"""Worst-case forget sets (Fan et al., ECCV 2024): the capped-simplex projection against an exact
sort-based reference, one search iteration by hand, the selection on a hand-made problem, the
experiment path (cache, saved indices, class histogram), YAML, bad input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.data import ForgetSpec
from unlearnkit.datasets import DigitsDataModule
from unlearnkit.evaluation.plots import plot_forget_class_histogram
from unlearnkit.vision import PaperWorstCaseSelector, WorstCaseSelector, worst_case_forget_set
from unlearnkit.vision.experiment import TrainSchedule, run_experiment, run_parser
from unlearnkit.vision.worst_case import project_capped_simplex, top_m


# -- projection -----------------------------------------------------------------------------
def _exact_projection(v: np.ndarray, m: float) -> np.ndarray:
    """Sort-based exact projection: f(mu) = sum clip(v - mu, 0, 1) is piecewise linear with kinks
    at v_i and v_i - 1; find the segment where f crosses m and interpolate on it."""
    kinks = np.unique(np.concatenate([v, v - 1.0]))
    f = np.array([np.clip(v - k, 0.0, 1.0).sum() for k in kinks])  # non-increasing in mu
    j = np.nonzero(f <= m)[0][0]  # first kink with f <= m (f(max v) = 0 <= m)
    if f[j] == m or j == 0:
        mu = kinks[j]
    else:  # linear between kinks[j-1] (f > m) and kinks[j] (f <= m)
        a, b, fa, fb = kinks[j - 1], kinks[j], f[j - 1], f[j]
        mu = a + (fa - m) * (b - a) / (fa - fb)
    return np.clip(v - mu, 0.0, 1.0)


def test_projection_equals_the_exact_sort_based_one_and_satisfies_kkt():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 40))
        v = rng.normal(scale=float(rng.choice([0.1, 1.0, 10.0])), size=n)
        m = float(rng.integers(1, n)) if trial % 2 else float(rng.uniform(0.1, n - 0.1))
        w = project_capped_simplex(torch.from_numpy(v), m)
        assert w.dtype == torch.float64
        np.testing.assert_allclose(w.numpy(), _exact_projection(v, m), atol=1e-9)
        assert abs(float(w.sum()) - m) < 1e-9
        assert float(w.min()) >= 0.0 and float(w.max()) <= 1.0
        # KKT: w = clip(v - mu, 0, 1) for one mu (read off a free coordinate, else bracketed)
        free = (w > 1e-12) & (w < 1 - 1e-12)
        if free.any():
            mus = (torch.from_numpy(v) - w)[free]
            assert float(mus.max() - mus.min()) < 1e-9
            mu = float(mus.mean())
            np.testing.assert_allclose(w.numpy(), np.clip(v - mu, 0, 1), atol=1e-9)
        else:  # all at the bounds: some mu separates the ones from the zeros
            assert v[w.numpy() > 0.5].min() - 1 >= v[w.numpy() < 0.5].max() - 1e-9
        again = project_capped_simplex(w, m)  # idempotent
        np.testing.assert_allclose(again.numpy(), w.numpy(), atol=1e-12)
    feasible = torch.tensor([0.0, 0.25, 1.0, 0.75, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(project_capped_simplex(feasible, 3.0), feasible, atol=1e-12)


def test_projection_bad_input_is_a_one_line_value_error():
    for v, m, match in [
        (torch.tensor([0.0, float("nan")]), 1.0, "finite"),
        (torch.tensor([0.0, 1.0]), 3.0, "0 <= m <= N"),
        (torch.tensor([0.0, 1.0]), -0.5, "0 <= m <= N"),
    ]:
        with pytest.raises(ValueError, match=match) as err:
            project_capped_simplex(v, m)
        assert "\n" not in str(err.value)


def test_top_m_breaks_ties_towards_the_lower_index():
    assert top_m(torch.tensor([0.5, 1.0, 0.5, 0.5, 0.0]), 3).tolist() == [0, 1, 2]


# -- the search -----------------------------------------------------------------------------
def _line_model() -> nn.Linear:
    """logit_1 - logit_0 = 2 x_0: a hand-made classifier of the sign of the first coordinate."""
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        model.bias.zero_()
    return model


def _line_data() -> TensorDataset:
    """Indices 0-3: far, duplicated, easy points; 4-11: near the boundary; 12-15: label noise."""
    xs = [-8, -8, 8, 8, -1, -1.5, -2, -2.5, 1, 1.5, 2, 2.5, -1.5, -2, 1.5, 2]
    ys = [0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    return TensorDataset(torch.tensor([[float(v), 0.0] for v in xs]), torch.tensor(ys))


def test_one_upper_iteration_by_hand():
    model = _line_model()
    g = torch.Generator().manual_seed(0)  # no symmetry: no gradient entry is zero up to rounding
    x, y = torch.randn(16, 2, generator=g), torch.randint(0, 2, (16,), generator=g)
    data = TensorDataset(x, y)
    n, m, w_lr, theta_lr, gamma = 16, 4, 0.5, 0.01, 0.1
    selector = WorstCaseSelector(
        upper_iterations=1,
        lower_epochs=1,
        batch_size=n,  # one batch: one signSGD step
        w_lr=w_lr,
        theta_lr=theta_lr,
        gamma=gamma,
        init="uniform",
    )
    chosen = selector.select(model, data, size=m)
    # by hand: d/dW sum_i (1 - w_i) CE_i = sum_i (1 - w_i) (softmax_i - onehot_i) x_i^T
    w0 = torch.full((n,), m / n, dtype=torch.float64)
    with torch.no_grad():
        err = (torch.softmax(model(x), 1) - F.one_hot(y, 2)) * (1 - w0.float())[:, None]
        weight = model.weight - theta_lr * (err.t() @ x).sign()
        bias = model.bias - theta_lr * err.sum(0).sign()
        losses = F.cross_entropy(x @ weight.t() + bias, y, reduction="none").double()
    w1 = project_capped_simplex(w0 - w_lr * (losses + 2 * gamma * w0), m)
    assert selector.objective_ == pytest.approx([float((w1 * losses).sum())], rel=1e-6)
    assert chosen.tolist() == top_m(w1, m).tolist()
    assert selector.weights_.tolist() == [1.0 if i in chosen.tolist() else 0.0 for i in range(n)]


@pytest.mark.parametrize("kwargs", [{"w_lr": 100.0}, {"init": "uniform"}])
def test_hardest_selects_the_points_fitted_best_easiest_the_noisy_ones(kwargs):
    model, data = _line_model(), _line_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    common = {"upper_iterations": 10, "lower_epochs": 2, "batch_size": 4, "seed": 1, **kwargs}
    hardest = WorstCaseSelector(mode="hardest", **common)
    assert hardest.select(model, data, size=4).tolist() == [0, 1, 2, 3]  # far, duplicated
    easiest = WorstCaseSelector(mode="easiest", **common)
    assert easiest.select(model, data, size=4).tolist() == [12, 13, 14, 15]  # label noise
    for key, value in model.state_dict().items():  # θ_o untouched
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left as it was
    assert hardest.objective_[-1] < easiest.objective_[-1]


def test_with_the_codes_step_size_small_losses_never_leave_the_random_start():
    """The reference's dynamics: from a binary start, a point changes sides only once
    w_lr * (accumulated loss difference) exceeds 1; w_lr = 0.01 over 10 iterations on losses
    below 10 keeps the seeded random initial set."""
    model, data = _line_model(), _line_data()
    chosen = WorstCaseSelector(lower_epochs=1, batch_size=4, seed=3).select(model, data, size=4)
    start = torch.randperm(16, generator=torch.Generator().manual_seed(3))[:4].sort().values
    assert chosen.tolist() == start.tolist()


def test_same_seed_same_set_and_the_function_is_the_selector():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 2, generator=g), torch.randint(0, 3, (60,), generator=g)
    data = TensorDataset(x, y)
    params = {"upper_iterations": 3, "lower_epochs": 2, "batch_size": 16, "w_lr": 5.0}
    a = WorstCaseSelector(seed=7, **params)
    b = WorstCaseSelector(seed=7, **params)
    first, second = a.select(model, data, size=10), b.select(model, data, size=10)
    assert torch.equal(first, second) and torch.equal(a.weights_, b.weights_)
    assert a.objective_ == b.objective_
    loader = DataLoader(data, batch_size=5, shuffle=True)  # re-batched: its order is not used
    assert torch.equal(worst_case_forget_set(model, loader, size=10, seed=7, **params), first)
    other = WorstCaseSelector(seed=8, **params).select(model, data, size=10)
    assert not torch.equal(other, first)


def test_paper_preset_and_cache_keys():
    paper = PaperWorstCaseSelector()
    assert (paper.w_lr, paper.gamma, paper.upper_iterations) == (1e-3, 1e-4, 20)
    assert (paper.theta_lr, paper.lower_epochs, paper.batch_size) == (0.01, 10, 256)
    code = WorstCaseSelector()
    assert (code.w_lr, code.theta_lr, code.gamma, code.upper_iterations) == (0.01, 0.01, 0.0, 10)
    assert (code.lower_epochs, code.batch_size, code.binarize_every) == (10, 256, 20)
    assert WorstCaseSelector.paper(seed=2).seed == 2
    assert paper.cache_key() != code.cache_key()
    assert code.cache_key()["params"]["w_lr"] == 0.01


def test_bad_input_is_a_one_line_value_error():
    model, data = _line_model(), _line_data()
    for size in (0, -1, 16, 17):
        with pytest.raises(ValueError, match="size must be in 1..15") as err:
            WorstCaseSelector(upper_iterations=1, lower_epochs=1).select(model, data, size=size)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="w_lr must be > 0"):
        WorstCaseSelector(w_lr=0.0).select(model, data, size=4)
    x, y = data.tensors
    x = x.clone()
    x[5, 0] = float("nan")
    with pytest.raises(ValueError, match="sample 5 is not finite.*lower theta_lr") as err:
        WorstCaseSelector(upper_iterations=1, lower_epochs=1).select(
            model, TensorDataset(x, y), size=4
        )
    assert "\n" not in str(err.value)


# -- through the experiment -----------------------------------------------------------------
def _fast(seed: int = 0, **changes) -> WorstCaseSelector:
    return WorstCaseSelector(
        upper_iterations=2, lower_epochs=1, batch_size=128, w_lr=50.0, seed=seed, **changes
    )


def _run(tmp_path, spec, name):
    data = DigitsDataModule(train_limit=200, test_limit=60)
    result = run_experiment(
        data,
        [spec],
        [],
        training=TrainSchedule(epochs=1, lr=0.05),
        cache_dir=tmp_path / "cache",
        output=tmp_path / "runs",
        name=name,
        progress="quiet",
        logger="none",
    )
    return data, result


def _saved(result) -> list[int]:
    (path,) = (result.run_dir / "forget_sets").glob("*.json")
    return json.loads(path.read_text())["forget"]


def _cache_files(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def test_experiment_caches_the_search_saves_it_and_plots_its_classes(tmp_path):
    selector = _fast()
    spec = ForgetSpec(kind="worst_case", count=30, selector=selector)
    data, result = _run(tmp_path, spec, "first")
    assert data.split.forget.tolist() == selector.indices_.tolist() == _saved(result)
    assert len(selector.objective_) == 2  # the search ran
    assert (result.run_dir / "forget_classes_worst_case_30.png").is_file()
    row = result.rows[0]
    counts = row["forget_class_counts"]
    assert list(counts) == ["worst_case 30", "random (same size, seed 0)"]
    targets = data.train_set.targets
    assert (
        counts["worst_case 30"] == torch.bincount(targets[data.split.forget], minlength=10).tolist()
    )
    assert sum(counts["random (same size, seed 0)"]) == 30

    again = _fast()  # same settings, a fresh object: the cached set, no search
    data2, result2 = _run(tmp_path, ForgetSpec(kind="worst_case", count=30, selector=again), "2")
    assert not hasattr(again, "objective_")
    assert data2.split.forget.tolist() == selector.indices_.tolist() == _saved(result2)

    changed = _fast(seed=1)  # a changed setting searches again
    data3, result3 = _run(tmp_path, ForgetSpec(kind="worst_case", count=30, selector=changed), "3")
    assert len(changed.objective_) == 2
    assert data3.split.forget.tolist() == changed.indices_.tolist() == _saved(result3)
    assert changed.indices_.tolist() != selector.indices_.tolist()


def test_a_failed_search_writes_nothing_to_the_cache(tmp_path):
    _run(tmp_path, ForgetSpec(kind="worst_case", count=30, selector=_fast()), "ok")
    before = _cache_files(tmp_path / "cache")
    diverging = _fast(theta_lr=1e30)  # the lower level blows up: non-finite losses
    with pytest.raises(ValueError, match="not finite"):
        _run(tmp_path, ForgetSpec(kind="worst_case", count=30, selector=diverging), "bad")
    assert _cache_files(tmp_path / "cache") == before
    with pytest.raises(ValueError, match="count must be in"):  # m >= N fails before training
        _run(tmp_path, ForgetSpec(kind="worst_case", count=200, selector=_fast()), "big")
    assert _cache_files(tmp_path / "cache") == before


def test_the_yaml_form_builds_the_selector():
    parser = run_parser()
    request = {
        "kind": "worst_case",
        "fraction": 0.1,
        "selector": {
            "class_path": "unlearnkit.vision.worst_case.WorstCaseSelector",
            "init_args": {"seed": 3, "mode": "easiest"},
        },
    }
    paper = {**request, "selector": {"class_path": "PaperWorstCaseSelector"}}
    cfg = parser.parse_object(
        {
            "data": {"class_path": "unlearnkit.datasets.DigitsDataModule"},
            "forget": [request, paper],
            "methods": [{"class_path": "FineTune"}],
        }
    )
    forget = parser.instantiate(cfg).forget
    assert isinstance(forget[0].selector, WorstCaseSelector)
    assert (forget[0].selector.seed, forget[0].selector.mode) == (3, "easiest")
    assert forget[0].selector.w_lr == 0.01 and forget[0].label == "worst_case 10 %"
    assert type(forget[1].selector) is PaperWorstCaseSelector
    assert forget[1].selector.w_lr == 1e-3


def test_class_histogram_plot(tmp_path):
    path = plot_forget_class_histogram(
        {"worst_case 10 %": [3, 0, 1], "random": [1, 2, 1]}, ["a", "b", "c"], tmp_path / "h.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one count per class"):
        plot_forget_class_histogram({"x": [1, 2]}, ["a", "b", "c"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="at least one"):
        plot_forget_class_histogram({}, ["a"], tmp_path / "bad.png")
