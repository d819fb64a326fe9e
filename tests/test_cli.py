"""`unlearnkit run` end to end on digits (tiny schedule), caching, and bad input handling."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from _helpers import SHARED
from unlearnkit.cli import default_experiment_path, main

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data": {"class_path": "unlearnkit.datasets.DigitsDataModule", "init_args": {"batch_size": 64}},
    "forget": [{"kind": "class", "classes": [0]}],
    "arch": "small_cnn",
    "training": {"epochs": 8, "lr": 0.05},
    "methods": [
        {"class_path": "Retrain"},
        {"class_path": "FineTune", "init_args": {"epochs": 2, "lr": 0.02}},
        {"class_path": "GradientAscent", "init_args": {"epochs": 1, "lr": 0.001}},
    ],
}
REQUIRED_KEYS = {
    "forget/acc",
    "retain/acc",
    "test/acc",
    "mia/efficacy",
    "gap/avg",
    "time/unlearn_s",
}


def write_config(tmp_path: Path, **over) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY, **over}))
    return path


def snapshot(path: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in path.rglob("*")} if path.exists() else {}


def test_run_writes_report_and_second_run_hits_cache(tmp_path, caplog, capsys):
    cfg = write_config(tmp_path)
    args = [
        "run",
        "-c",
        str(cfg),
        "--output",
        str(tmp_path / "runs"),
        "--cache_dir",
        str(tmp_path / "cache"),
    ]
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        assert main(args) == 0
    assert "cache miss: training the original" in caplog.text
    runs = sorted((tmp_path / "runs").iterdir())
    report = json.loads((runs[0] / "report.json").read_text())
    assert [r["method"] for r in report["rows"]] == [
        "retrain",
        "original",
        "FineTune",
        "GradientAscent",
    ]
    for row in report["rows"]:
        assert set(row["metrics"]) >= REQUIRED_KEYS, row["method"]
    by = {r["method"]: r["metrics"] for r in report["rows"]}
    assert by["retrain"]["forget/acc"] <= 0.01
    assert by["original"]["forget/acc"] >= 0.9
    assert by["original"]["test/acc"] >= 0.85
    assert list(runs[0].glob("*.png")), "no plot written"
    assert (runs[0] / "report.md").read_text().index("| retrain") < (
        runs[0] / "report.md"
    ).read_text().index("| original")
    assert "| retrain" in capsys.readouterr().out

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        assert main(args) == 0
    assert "cache hit: loaded the original" in caplog.text
    assert "cache hit: loaded the retrained" in caplog.text
    assert len(list((tmp_path / "runs").iterdir())) == 2  # a new run dir; the first one untouched
    assert json.loads((runs[0] / "report.json").read_text()) == report


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"forget": [{"kind": "class", "classes": [12]}]}, "out of range"),
        ({"forget": [{"kind": "indices", "indices_file": "/nonexistent/f.json"}]}, "not found"),
        (
            {
                "data": {
                    "class_path": "unlearnkit.datasets.FashionMNISTDataModule",
                    "init_args": {"root": "/nonexistent/fmnist"},
                }
            },
            "fashion",
        ),
    ],
)
def test_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, override, message):
    cfg = write_config(tmp_path, **override)
    before = snapshot(tmp_path / "cache")
    code = main(
        [
            "run",
            "-c",
            str(cfg),
            "--output",
            str(tmp_path / "runs"),
            "--cache_dir",
            str(tmp_path / "cache"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert message.lower() in err.lower()
    assert len([ln for ln in err.strip().splitlines() if ln.startswith("unlearnkit: error")]) == 1
    assert snapshot(tmp_path / "cache") == before
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_default_experiment_is_digits_with_five_baselines():
    cfg = yaml.safe_load(default_experiment_path().read_text())
    assert cfg["data"]["class_path"].endswith("DigitsDataModule")
    assert [f["kind"] for f in cfg["forget"]] == ["class", "random"]
    assert {m["class_path"] for m in cfg["methods"]} == {
        "Retrain",
        "FineTune",
        "GradientAscent",
        "NegGradPlus",
        "RandomLabel",
    }


FIT_FRAGMENTS = [
    "configs/trainer/cpu.yaml",
    "configs/data/digits.yaml",
    "configs/model/small_cnn.yaml",
]


@pytest.mark.parametrize(
    "method", sorted(p.name for p in (ROOT / "configs" / "method").glob("*.yaml"))
)
def test_method_configs_fast_dev_run(method, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))  # SSD's I_D cache
    args = ["fit"]
    for frag in [*FIT_FRAGMENTS, f"configs/method/{method}"]:
        args += ["-c", frag]
    assert (
        main([*args, "--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path)])
        == 0
    )


def test_test_subcommand_logs_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = ["test"]
    for frag in [*FIT_FRAGMENTS, "configs/method/finetune.yaml"]:
        args += ["-c", frag]
    assert main([*args, "--trainer.default_root_dir", str(tmp_path)]) == 0


def test_fit_rejects_checkpoint_of_another_architecture(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.chdir(ROOT)
    ckpt = tmp_path / "other.pt"
    torch.save({"arch": "resnet18_cifar", "state_dict": {}}, ckpt)
    stamp = ckpt.stat().st_mtime_ns
    args = ["fit"]
    for frag in [*FIT_FRAGMENTS, "configs/method/finetune.yaml"]:
        args += ["-c", frag]
    code = main(
        [
            *args,
            "--model.checkpoint",
            str(ckpt),
            "--trainer.fast_dev_run",
            "true",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "saved for architecture 'resnet18_cifar'" in capsys.readouterr().err
    assert ckpt.stat().st_mtime_ns == stamp


@pytest.mark.skipif(
    not (SHARED / "data" / "fashion-mnist").is_dir(), reason="../shared/data/fashion-mnist absent"
)
def test_fashion_mnist_experiment_config_smoke(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = [
        "run",
        "-c",
        "configs/experiments/fashion_mnist_class.yaml",
        "--output",
        str(tmp_path / "runs"),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--training.epochs",
        "1",
        "--data.init_args.train_limit",
        "1500",
        "--data.init_args.test_limit",
        "500",
        "--data.init_args.root",
        str(SHARED / "data" / "fashion-mnist"),
    ]
    assert main(args) == 0
    report = json.loads(next((tmp_path / "runs").iterdir()).joinpath("report.json").read_text())
    assert len(report["rows"]) == 6
