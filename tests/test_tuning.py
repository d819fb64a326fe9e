"""`unlearnkit tune`: grid expansion, scoring and the choice by hand, the fragment it writes,
and the whole command on digits (every candidate an ordinary run, the models from the cache)."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from unlearnkit.cli import main
from unlearnkit.tuning import Candidate, choose, expand_grid, name_candidates, score
from unlearnkit.vision.methods import FineTune, GradientAscent, Retrain

TINY = {
    "data": {
        "class_path": "unlearnkit.datasets.DigitsDataModule",
        "init_args": {"batch_size": 64, "train_limit": 600, "test_limit": 200},
    },
    "forget": [{"kind": "random", "fraction": 0.1, "seed": 0}],
    "arch": "small_cnn",
    "training": {"epochs": 3, "lr": 0.05},
    "methods": [
        {"class_path": "Retrain"},
        {"class_path": "FineTune", "init_args": {"epochs": 1}},
        {"class_path": "GradientAscent", "init_args": {"epochs": 1, "lr": 0.001}},
    ],
}


def test_grid_is_the_full_product_in_order_and_untuned_methods_run_once():
    methods = [Retrain(), FineTune(epochs=2, weight_decay=0.03), GradientAscent()]
    grid = {"FineTune": {"lr": [0.01, 0.02], "epochs": [1, 3]}}
    candidates = expand_grid(methods, grid)
    assert [c.base for c in candidates] == ["Retrain"] + ["FineTune"] * 4 + ["GradientAscent"]
    tuned = [c for c in candidates if c.changes]
    assert [c.changes for c in tuned] == [
        {"lr": 0.01, "epochs": 1},
        {"lr": 0.01, "epochs": 3},
        {"lr": 0.02, "epochs": 1},
        {"lr": 0.02, "epochs": 3},
    ]
    for c in tuned:  # the grid changes only its own values; the configured ones are kept
        assert c.method.lr == c.changes["lr"] and c.method.epochs == c.changes["epochs"]
        assert c.method.weight_decay == 0.03
    assert candidates[0].method is methods[0] and candidates[-1].method is methods[2]
    name_candidates(candidates, Retrain)
    assert [c.name for c in candidates] == [
        "retrain",
        "FineTune",
        "FineTune#2",
        "FineTune#3",
        "FineTune#4",
        "GradientAscent",
    ]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"SalUn": {"lr": [0.1]}}, "not among the experiment's methods"),
        ({"FineTune": {"learning_rate": [0.1]}}, "no hyper-parameter 'learning_rate'"),
        ({"FineTune": {"lr": []}}, "non-empty list"),
        ({"FineTune": {"lr": "0.1"}}, "non-empty list"),
    ],
)
def test_bad_grids_are_one_line_errors(grid, message):
    with pytest.raises(ValueError, match=message):
        expand_grid([Retrain(), FineTune()], grid)
    with pytest.raises(ValueError, match="listed 2 times"):
        expand_grid([FineTune(), FineTune(lr=0.1)], {"FineTune": {"lr": [0.1]}})


def _candidates() -> list[Candidate]:
    cands = expand_grid([Retrain(), FineTune()], {"FineTune": {"lr": [0.01, 0.02, 0.05]}})
    name_candidates(cands, Retrain)
    return cands


def _row(method: str, request: str, gap: float, test: float) -> dict:
    return {"method": method, "forget": request, "metrics": {"gap/avg": gap, "test/acc": test}}


def test_objective_is_the_mean_over_requests_and_seeds_and_the_smallest_wins():
    cands = _candidates()
    seed0 = [
        _row("retrain", "r", 0.0, 0.9),
        _row("FineTune", "r", 0.10, 0.80),
        _row("FineTune#2", "r", 0.02, 0.85),
        _row("FineTune#3", "r", 0.04, 0.95),
    ]
    seed1 = [
        _row("FineTune", "r", 0.20, 0.70),
        _row("FineTune#2", "r", 0.08, 0.75),
        {"method": "FineTune#3", "forget": "r", "status": "failed", "error": "boom", "metrics": {}},
    ]
    score(cands, seed0, "gap/avg")
    score(cands, seed1, "gap/avg")
    by = {c.name: c for c in cands}
    assert by["FineTune"].objective == pytest.approx(0.15)  # (0.10 + 0.20) / 2
    assert by["FineTune#2"].objective == pytest.approx(0.05)
    assert by["FineTune#2"].metrics["test/acc"] == pytest.approx(0.80)
    assert by["FineTune#3"].failed == "boom" and math.isnan(by["FineTune#3"].objective)
    assert choose(cands)["FineTune"] is by["FineTune#2"]  # the failed one is never chosen
    assert "Retrain" not in choose(cands)  # run as configured: nothing to choose
    # by a metric to maximise: FineTune's test/acc 0.75 vs FineTune#2's 0.80
    maxed = _candidates()
    score(maxed, seed0 + seed1, "test/acc")
    assert choose(maxed, maximize=True)["FineTune"].name == "FineTune#2"


def test_ties_go_to_the_first_grid_point_and_a_missing_objective_is_an_error():
    cands = _candidates()
    score(
        cands,
        [_row(n, "r", 0.03, 0.9) for n in ("FineTune", "FineTune#2", "FineTune#3")],
        "gap/avg",
    )
    assert choose(cands)["FineTune"].changes == {"lr": 0.01}
    with pytest.raises(ValueError, match="no row has the objective 'gap/mean'.*gap/avg"):
        score(_candidates(), [_row("FineTune", "r", 0.1, 0.9)], "gap/mean")


def test_tune_command_on_digits_chooses_the_argmin_and_writes_a_usable_fragment(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(TINY))
    words = ["-c", str(config), "--output", str(tmp_path / "runs")]
    words += ["--cache_dir", str(tmp_path / "cache"), "--quiet"]
    grid = "{FineTune: {lr: [0.001, 0.1]}, GradientAscent: {lr: [0.0001, 0.01]}}"
    assert main(["tune", *words, "--grid", grid]) == 0
    (tune_dir,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in tune_dir.iterdir()} >= {
        "tune.md",
        "tune.json",
        "tune.png",
        "tuned_methods.yaml",
    }
    document = json.loads((tune_dir / "tune.json").read_text())
    (seed_run,) = [p for p in tune_dir.iterdir() if p.is_dir()]
    report = json.loads((seed_run / "report.json").read_text())
    rows = {r["method"]: r["metrics"] for r in report["rows"]}
    assert set(rows) == {"retrain", "original", "FineTune", "FineTune#2"} | {
        "GradientAscent",
        "GradientAscent#2",
    }
    # the choice is the argmin of the ordinary run's gap/avg rows, read independently here
    for base, names, lrs in (
        ("FineTune", ("FineTune", "FineTune#2"), (0.001, 0.1)),
        ("GradientAscent", ("GradientAscent", "GradientAscent#2"), (0.0001, 0.01)),
    ):
        gaps = [rows[n]["gap/avg"] for n in names]
        best_lr = lrs[gaps.index(min(gaps))]
        (chosen,) = [c for c in document["candidates"] if c["method"] == base and c["chosen"]]
        assert chosen["changes"] == {"lr": best_lr}
        assert chosen["objective"] == pytest.approx(min(gaps))
    # only the original and the retrained model were trained: one cache entry each
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 2
    # the fragment is a methods: list `run -c exp.yaml -c tuned_methods.yaml` takes as it is
    fragment = yaml.safe_load((tune_dir / "tuned_methods.yaml").read_text())
    paths = [m["class_path"].rsplit(".", 1)[1] for m in fragment["methods"]]
    assert paths == ["Retrain", "FineTune", "GradientAscent"]
    from unlearnkit.vision.experiment import run_parser

    parser = run_parser()
    init = parser.instantiate(
        parser.parse_args(["-c", str(config), "-c", str(tune_dir / "tuned_methods.yaml")])
    )
    by_class = {type(m).__name__: m for m in init.methods}
    for c in document["candidates"]:
        if c["chosen"]:
            assert by_class[c["method"]].lr == c["changes"]["lr"]
    assert by_class["FineTune"].epochs == 1  # the configured, untuned values are kept
    out = capsys.readouterr().out
    assert "chosen" in out and "tuned_methods.yaml" in out


def test_tune_without_a_grid_or_with_resume_is_one_line(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["tune", "-c", str(config), "--output", str(tmp_path / "runs")]) == 2
    assert "tune needs a --grid" in capsys.readouterr().err
    bad = ["tune", "-c", str(config), "--grid", "{SalUn: {lr: [0.1]}}"]
    assert main([*bad, "--output", str(tmp_path / "runs")]) == 2
    assert "not among the experiment's methods" in capsys.readouterr().err
    grid = ["--grid", "{FineTune: {lr: [0.1]}}"]
    for objective in ("avg_gap", "gap/", "gap/avg "):  # not split/metric: refused before any run
        argv = ["tune", "-c", str(config), *grid, "--objective", objective]
        assert main([*argv, "--output", str(tmp_path / "runs")]) == 2
        assert f"--objective {objective!r} is not a metric key" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing written, nothing trained
    from unlearnkit.tuning import check_objective

    for objective in ("tow", "gap/avg", "test/recall@20"):  # real keys pass the check
        check_objective(objective)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"Retrain": {"lr": [0.1]}}, "the reference every candidate is scored against"),
        ({"FineTune": {"lr": ["abc"]}}, "'abc' is not a valid value for `lr: float`"),
        ({"FineTune": {"epochs": [1.5]}}, "1.5 is not a valid value for `epochs: int`"),
        ({"FineTune": {"optimizer": ["rmsprop"]}}, "'rmsprop' is not a valid value"),
    ],
)
def test_grids_that_cannot_run_are_refused_before_any_work(grid, message):
    with pytest.raises(ValueError, match=message):
        expand_grid([Retrain(), FineTune()], grid, reference=Retrain)


def test_a_grid_key_may_be_the_full_class_path_and_an_all_failed_method_keeps_its_settings():
    from unlearnkit.tuning import tuned_methods_yaml

    cands = expand_grid(
        [Retrain(), FineTune(lr=0.07)], {"unlearnkit.vision.FineTune": {"lr": [0.1]}}
    )
    assert [c.changes for c in cands] == [{}, {"lr": 0.1}]
    name_candidates(cands, Retrain)
    score(cands, [{"method": "FineTune", "status": "failed", "error": "boom", "metrics": {}}], "x")
    assert choose(cands) == {}
    fragment = yaml.safe_load(tuned_methods_yaml(cands, {}, header="h"))
    assert fragment["methods"][1]["init_args"]["lr"] == 0.07  # as configured, not the failed 0.1
