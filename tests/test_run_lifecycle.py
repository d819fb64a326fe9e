"""`unlearnkit run` as a researcher follows and keeps it: progress, logs, models, partial
results and resume, several seeds (tiny digits schedule; one model cache for the module)."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from unlearnkit.base import LossUnlearner, init_arguments
from unlearnkit.checkpoint import load_checkpoint
from unlearnkit.cli import main
from unlearnkit.data import ForgetSpec
from unlearnkit.datasets import DigitsDataModule
from unlearnkit.evaluation import Evaluator
from unlearnkit.vision.models import build_model

FINETUNE = {"class_path": "FineTune", "init_args": {"epochs": 2, "lr": 0.02}}
ASCENT = {"class_path": "GradientAscent", "init_args": {"epochs": 1, "lr": 0.001}}
TINY = {
    "data": {"class_path": "unlearnkit.datasets.DigitsDataModule", "init_args": {"batch_size": 64}},
    "forget": [{"kind": "class", "classes": [0]}],
    "arch": "small_cnn",
    "training": {"epochs": 3, "lr": 0.05},
    "methods": [{"class_path": "Retrain"}, FINETUNE],
}


class Explodes(LossUnlearner):
    """A method whose loss raises: the run must record it and go on."""

    streams: ClassVar[tuple[str, ...]] = ("forget",)

    def __init__(self, *, epochs: int = 1, lr: float = 0.01, seed: int = 0):
        super().__init__(**init_arguments(locals()))

    def loss(self, model, batch, *, epoch):
        raise RuntimeError("boom in loss")


class Interrupts(Explodes):
    """Ctrl-C in the middle of a method."""

    def loss(self, model, batch, *, epoch):
        raise KeyboardInterrupt


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _args(tmp_path: Path, cache: Path, config: dict, *extra: str) -> list[str]:
    path = tmp_path / f"exp{len(list(tmp_path.glob('exp*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    out = str(tmp_path / "runs")
    return ["run", "-c", str(path), "--output", out, "--cache_dir", str(cache), *extra]


def _report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def _rows(run: Path) -> dict[str, dict]:
    return {row["method"]: row for row in _report(run)["rows"]}


def test_quiet_run_prints_only_the_table_and_keeps_logs_and_models(tmp_path, cache, capsys):
    assert main(_args(tmp_path, cache, TINY, "--quiet")) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.lstrip().startswith("Forget request: class 0")  # the table, nothing before it
    assert "[unlearnkit]" not in out  # no phase lines; the run dir is named (the result)
    assert out.rstrip().splitlines()[-1].startswith("report written to ")
    (run,) = (tmp_path / "runs").iterdir()
    rows = _rows(run)

    # a CSV series per trained model and request, with a row per step
    with (run / "logs" / "class_0" / "FineTune" / "metrics.csv").open() as f:
        series = list(csv.DictReader(f))
    steps = {int(r["step"]) for r in series if r.get("unlearn/loss")}
    assert len(steps) == len(series) > 1  # the retain set has 19 batches, 2 epochs
    assert all(float(r["unlearn/loss"]) >= 0 for r in series)
    for model in ("original", "retrained"):  # trained in this run (the cache was empty)
        with (run / "logs" / "class_0" / model / "metrics.csv").open() as f:
            assert len(list(csv.DictReader(f))) > 1, model

    # every model of the row table is loadable from models/<request>/ and gives the row's TA
    data = DigitsDataModule(batch_size=64)
    data.set_forget(ForgetSpec(kind="class", classes=[0]))
    expected = {
        "original": rows["original"],
        "retrained": rows["retrain"],
        "FineTune": rows["FineTune"],
    }
    assert (run / "models" / "class_0" / "original.pt").is_symlink()
    for name, row in expected.items():
        model = build_model("small_cnn", num_classes=10, in_channels=1)
        load_checkpoint(model, run / "models" / "class_0" / f"{name}.pt")
        outputs = Evaluator().collect_from(model.eval(), data)
        acc = Evaluator().metrics_from_outputs(outputs)["test/acc"]
        assert acc == pytest.approx(row["metrics"]["test/acc"], abs=1e-12), name

    # a second run, not quiet: one line per phase start and end on stderr (not a terminal)
    assert main(_args(tmp_path, cache, TINY)) == 0
    out, err = capsys.readouterr()
    assert "[unlearnkit] original: loaded from the cache" in err
    assert "[unlearnkit] class 0: FineTune ..." in err
    lines = [ln for ln in err.splitlines() if ln.startswith("[unlearnkit] class 0: FineTune:")]
    assert len(lines) == 1 and lines[0].endswith(" s)") and ": done (" in lines[0]
    assert "[unlearnkit] class 0: evaluating FineTune: done" in err
    assert "report written to" in out
    second = max((tmp_path / "runs").iterdir())
    assert (second / "logs" / "class_0" / "FineTune" / "metrics.csv").is_file()
    assert not (second / "logs" / "class_0" / "original").exists()  # loaded: no series


def test_a_failing_method_is_a_failed_row_and_the_run_goes_on(tmp_path, cache, capsys):
    config = {
        **TINY,
        "forget": [*TINY["forget"], {"kind": "class", "classes": [1]}],
        "methods": [{"class_path": f"{__name__}.Explodes"}, FINETUNE],
    }
    assert main(_args(tmp_path, cache, config, "--quiet")) == 1
    err = capsys.readouterr().err
    assert "2 method(s) failed" in err and "class 1: Explodes: RuntimeError: boom in loss" in err
    (run,) = (tmp_path / "runs").iterdir()
    report = _report(run)
    names = ["retrain", "original", "Explodes", "FineTune"]
    assert [r["method"] for r in report["rows"]] == names * 2
    # the plots of the reports rewritten during the first request (one request: no suffix)
    # do not outlive the final report, whose plots are per request
    assert sorted(p.name for p in run.glob("forget_vs_test*.png")) == [
        "forget_vs_test_class_0.png",
        "forget_vs_test_class_1.png",
    ]
    failed = report["rows"][2]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: boom in loss"
    assert failed["metrics"] == {}
    assert report["rows"][3]["metrics"]["test/acc"] > 0.5
    assert not (run / "models" / "class_0" / "Explodes.pt").exists()
    assert (run / "models" / "class_0" / "FineTune.pt").is_file()


def test_resume_runs_only_the_missing_rows(tmp_path, cache, capsys, caplog):
    import logging

    assert main(_args(tmp_path, cache, TINY, "--quiet")) == 0  # the "interrupted" run: [FineTune]
    (run,) = (tmp_path / "runs").iterdir()
    before = _rows(run)
    finetune_log = (run / "logs" / "class_0" / "FineTune" / "metrics.csv").read_bytes()
    model_file = (run / "models" / "class_0" / "FineTune.pt").read_bytes()
    capsys.readouterr()
    more = {**TINY, "methods": [*TINY["methods"], ASCENT]}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        assert main([*_args(tmp_path, cache, more), "--resume", str(run)]) == 0
    assert "cache miss" not in caplog.text  # nothing trained again
    assert "cache hit: loaded the original" in caplog.text
    assert "unlearning class 0 with FineTune" not in caplog.text  # done already
    assert "unlearning class 0 with GradientAscent" in caplog.text
    assert len(list((tmp_path / "runs").iterdir())) == 1  # written into the same directory
    after = _report(run)
    assert [r["method"] for r in after["rows"]] == [
        "retrain",
        "original",
        "FineTune",
        "GradientAscent",
    ]
    assert _rows(run)["FineTune"] == before["FineTune"]
    assert after["config"]["methods"][-1]["class_path"].endswith("GradientAscent")
    assert (run / "logs" / "class_0" / "FineTune" / "metrics.csv").read_bytes() == finetune_log
    assert (run / "models" / "class_0" / "FineTune.pt").read_bytes() == model_file
    assert (run / "models" / "class_0" / "GradientAscent.pt").is_file()


def test_resume_of_a_directory_without_report_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["run", "--resume", str(tmp_path / "empty")]) == 2
    assert "has no report.json; --resume needs" in capsys.readouterr().err


def test_seeds_report_mean_and_std_over_seeds(tmp_path, cache, capsys):
    assert main(_args(tmp_path, cache, TINY, "--quiet", "--seeds", "0", "1")) == 0
    out = capsys.readouterr().out
    (parent,) = (tmp_path / "runs").iterdir()
    runs = sorted(p for p in parent.iterdir() if p.is_dir())
    assert [p.name.rsplit("-", 1)[-1] for p in runs] == ["seed0", "seed1"]
    per_seed = [_rows(run)["FineTune"]["metrics"]["test/acc"] for run in runs]
    assert [_report(run)["config"]["seed"] for run in runs] == [0, 1]
    document = json.loads((parent / "seeds.json").read_text())
    (cell,) = [
        a
        for a in document["aggregate"]
        if a["method"] == "FineTune" and a["metric"] == "test/acc" and a["forget"] == "class 0"
    ]
    assert cell["per_seed"] == per_seed
    assert cell["mean"] == pytest.approx((per_seed[0] + per_seed[1]) / 2)
    assert cell["std"] == pytest.approx(statistics.stdev(per_seed))
    assert cell["n"] == 2
    assert "±" in out and " FineTune " in out and "Forget request: class 0" in out
    assert torch.tensor(per_seed).unique().numel() == 2  # two seeds, two models


@pytest.mark.parametrize("words", [["--logger", "wandb"], ["--trainer", "{logger: wandb}"]])
def test_a_logger_that_is_not_installed_is_one_line_before_any_work(
    tmp_path, cache, capsys, words, monkeypatch
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    assert main(_args(tmp_path, tmp_path / "no-cache", TINY, *words)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["unlearnkit: error: logger 'wandb' needs the wandb package: pip install wandb"]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "no-cache").exists()


def test_an_interrupted_run_keeps_the_rows_computed_before(tmp_path, cache):
    config = {**TINY, "methods": [FINETUNE, {"class_path": f"{__name__}.Interrupts"}]}
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns Ctrl-C into exit 1
        main(_args(tmp_path, cache, config, "--quiet"))
    (run,) = (tmp_path / "runs").iterdir()
    report = _report(run)
    assert [r["method"] for r in report["rows"]] == ["retrain", "original", "FineTune"]
    assert report["rows"][2]["metrics"]["test/acc"] > 0.5
    assert not (run / "report.json.previous").exists()
    assert "| FineTune |" in (run / "report.md").read_text()
