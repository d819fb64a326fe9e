"""`unlearnkit run` end to end on digits (tiny schedule), caching, and bad input handling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from _helpers import (
    SHARED,
    assert_second_run_hits_cache,
    first_run,
    row_names,
    run_args,
    run_failing,
    run_logged,
)
from unlearnkit.cli import main
from unlearnkit.jobs import default_experiment_path

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
REQUIRED = {"forget/acc", "retain/acc", "test/acc", "mia/efficacy", "gap/avg", "time/unlearn_s"}


def test_run_writes_report_and_second_run_hits_cache(tmp_path, caplog, capsys):
    args, run, report = first_run(caplog, tmp_path, TINY)
    assert row_names(report) == ["retrain", "original", "FineTune", "GradientAscent"]
    for row in report["rows"]:
        assert set(row["metrics"]) >= REQUIRED, row["method"]
        assert row["class_names"] == [str(i) for i in range(10)]  # the per-class plot's ticks
    by = {r["method"]: r["metrics"] for r in report["rows"]}
    assert by["retrain"]["forget/acc"] <= 0.01
    assert by["original"]["forget/acc"] >= 0.9
    assert by["original"]["test/acc"] >= 0.85
    assert list(run.glob("*.png")), "no plot written"
    assert (run / "report.md").read_text().index("| retrain") < (
        run / "report.md"
    ).read_text().index("| original")
    out = capsys.readouterr().out  # the rich console table: retrain first, 100 columns
    assert out.index("\n retrain ") < out.index("\n original ")
    table = [ln for ln in out.splitlines() if not ln.startswith("report written to")]
    assert max(len(line) for line in table) <= 100  # (the run dir's path may be longer)
    assert_second_run_hits_cache(caplog, args, run)
    # ... and reads the two reference rows' evaluation back instead of evaluating them again
    assert "cache hit: loaded the original and retrained evaluation" in caplog.text
    (second,) = [d for d in (tmp_path / "runs").iterdir() if d != run]
    again = json.loads((second / "report.json").read_text())
    for old, new in zip(report["rows"][:2], again["rows"][:2], strict=True):
        assert new["metrics"] == old["metrics"], old["method"]
        assert new["per_class_accuracy"] == old["per_class_accuracy"]
    assert len(list((tmp_path / "cache" / "evaluations").iterdir())) == 1


def test_stored_evaluation_of_another_config_is_refused(tmp_path):
    from unlearnkit.cache import ModelCache, config_hash

    cache = ModelCache(tmp_path)
    result, hit = cache.get_or_evaluate({"a": 1}, lambda: {"acc": torch.tensor([0.5])})
    assert not hit and result["acc"].item() == 0.5
    result, hit = cache.get_or_evaluate({"a": 1}, lambda: pytest.fail("must not re-evaluate"))
    assert hit and result["acc"].item() == 0.5
    stored = tmp_path / "evaluations" / config_hash({"a": 1})
    other = tmp_path / "evaluations" / config_hash({"a": 2})
    shutil.copytree(stored, other)  # an entry whose content is for another config
    with pytest.raises(ValueError, match="holds another config"):
        cache.get_or_evaluate({"a": 2}, lambda: {})
    assert (other / "result.pt").read_bytes() == (stored / "result.pt").read_bytes()  # untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"forget": [{"kind": "class", "classes": [12]}]}, "out of range"),
        ({"forget": [{"kind": "indices", "indices_file": "/nonexistent/f.json"}]}, "not found"),
        (
            {"methods": [{"class_path": "GradientAscnet"}]},
            "unknown method 'GradientAscnet': did you mean GradientAscent?",
        ),
        (
            {"methods": [{"class_path": "unlearnkit.vision.methods.FineTuen"}]},
            "module 'unlearnkit.vision.methods' has no class 'FineTuen': did you mean FineTune?",
        ),
        (
            {"methods": [{"class_path": "no_such_module.Method"}]},
            "cannot import module 'no_such_module'",
        ),
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
    code, err = run_failing(tmp_path, capsys, TINY, tmp_path / "cache", **override)
    assert code == 2
    assert message.lower() in "\n".join(err).lower()
    assert len([ln for ln in err if ln.startswith("unlearnkit: error")]) == 1


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


def test_default_run_meets_the_class_forgetting_acceptance_bar(tmp_path, caplog):
    # README command (a): `unlearnkit run` with the embedded default, into an empty cache
    args = ["run", "--output", str(tmp_path / "runs"), "--cache_dir", str(tmp_path / "cache")]
    run_logged(caplog, args)
    (run,) = (tmp_path / "runs").iterdir()
    rows = json.loads((run / "report.json").read_text())["rows"]
    by = {r["method"]: r["metrics"] for r in rows if r["forget"] == "class 0"}
    assert by["retrain"]["forget/acc"] <= 0.01
    assert by["original"]["forget/acc"] >= 0.95
    halfway = (by["original"]["forget/acc"] + by["retrain"]["forget/acc"]) / 2
    for name in ("FineTune", "RandomLabel", "NegGradPlus"):
        assert by[name]["forget/acc"] <= halfway, name
        assert abs(by[name]["test/acc"] - by["original"]["test/acc"]) <= 0.05, name
    assert {r["forget"] for r in rows} == {"class 0", "random 10 % (seed 0)"}


FIT_FRAGMENTS = [  # absolute: `fit` writes runs/<time>-fit/ into the working directory
    str(ROOT / "configs" / "trainer" / "cpu.yaml"),
    str(ROOT / "configs" / "data" / "digits.yaml"),
    str(ROOT / "configs" / "model" / "small_cnn.yaml"),
]


@pytest.mark.parametrize(
    "method", sorted(p.name for p in (ROOT / "configs" / "method").glob("*.yaml"))
)
def test_method_configs_fast_dev_run(method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))  # SSD's I_D cache
    args = ["fit"]
    for frag in [*FIT_FRAGMENTS, str(ROOT / "configs" / "method" / method)]:
        args += ["-c", frag]
    assert (
        main([*args, "--trainer.fast_dev_run", "true", "--trainer.default_root_dir", str(tmp_path)])
        == 0
    )


def test_test_subcommand_logs_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["test"]
    for frag in [*FIT_FRAGMENTS, str(ROOT / "configs" / "method" / "finetune.yaml")]:
        args += ["-c", frag]
    assert main([*args, "--trainer.default_root_dir", str(tmp_path)]) == 0


def test_fit_rejects_checkpoint_of_another_architecture(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "other.pt"
    torch.save({"arch": "resnet18_cifar", "state_dict": {}}, ckpt)
    stamp = ckpt.stat().st_mtime_ns
    args = ["fit"]
    for frag in [*FIT_FRAGMENTS, str(ROOT / "configs" / "method" / "finetune.yaml")]:
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


def test_run_under_ddp_trains_on_two_ranks_and_rank_zero_alone_reports(tmp_path):
    # A subprocess: Lightning's launcher starts rank 1 as a copy of the command line
    # (`python -m unlearnkit.cli run ...`), which a pytest process could not be.
    import os
    import subprocess
    import sys

    config = {**TINY, "training": {"epochs": 2, "lr": 0.05}}
    args = run_args(tmp_path, config)[1:]
    ddp = "{strategy: ddp, accelerator: cpu, devices: 2, enable_progress_bar: false}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "unlearnkit.cli", "run", *args, "--trainer", ddp],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()  # one report, written by rank 0 only
    report = json.loads((run / "report.json").read_text())
    assert row_names(report) == ["retrain", "original", "FineTune", "GradientAscent"]
    assert done.stdout.count("report written to") == 1
    assert "MEMBER: 2/2" in done.stderr  # rank 1 joined ...
    assert done.stderr.count("unlearning class 0 with FineTune") == 2  # ... and ran the job too
    by = {r["method"]: r["metrics"] for r in report["rows"]}
    assert by["retrain"]["forget/acc"] <= 0.05 and by["original"]["forget/acc"] >= 0.5


def test_help_lists_every_subcommand_and_version(capsys):
    from unlearnkit.cli import COMMANDS

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("run", "reproduce", "fit", "validate", "test", "predict"):
        assert f"  {name} " in out and name in COMMANDS
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "unlearnkit 0.1.0"
    assert main(["runn"]) == 2
    assert "did you mean `unlearnkit run`?" in capsys.readouterr().err


def test_a_method_reading_an_undeclared_stream_is_one_line(tmp_path, capsys):
    args = run_args(tmp_path, TINY, methods=[{"class_path": "_helpers.ReadsUndeclaredRetain"}])
    assert main(args) == 1  # a failing method is a failed row; the run goes on, then exits 1
    err = capsys.readouterr().err.strip().splitlines()
    message = (
        "ReadsUndeclaredRetain reads the 'retain' stream but does not declare "
        "it: add 'retain' to its class attribute streams (now ('forget',))"
    )
    assert err[-2:] == [
        "1 method(s) failed (rows marked failed in the report):",
        f"  class 0: ReadsUndeclaredRetain: UndeclaredStreamError: {message}",
    ]
    (run,) = (tmp_path / "runs").iterdir()
    (row,) = [
        r for r in json.loads((run / "report.json").read_text())["rows"] if r["metrics"] == {}
    ]
    assert row["status"] == "failed" and row["error"].endswith(message)


def _fit_args(method: str = "finetune.yaml") -> list[str]:
    args = []
    for frag in [*FIT_FRAGMENTS, str(ROOT / "configs" / "method" / method)]:
        args += ["-c", frag]
    return args


def test_train_fit_test_is_a_path_from_an_original_to_an_evaluated_unlearned_model(
    tmp_path, monkeypatch, capsys
):
    from unlearnkit.checkpoint import load_checkpoint
    from unlearnkit.datasets import DigitsDataModule
    from unlearnkit.evaluation import Evaluator
    from unlearnkit.vision.models import SmallCNN

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    assert main(["train", "--out", "original.pt", "--training.epochs", "2"]) == 0
    assert "trained in" in capsys.readouterr().out
    # the same experiment again: the cached original, and an existing file is never replaced
    stamp = (tmp_path / "original.pt").stat().st_mtime_ns
    assert main(["train", "--out", "original.pt", "--training.epochs", "2"]) == 2
    assert "original.pt already exists" in capsys.readouterr().err
    assert (tmp_path / "original.pt").stat().st_mtime_ns == stamp
    assert main(["train", "--out", "again.pt", "--training.epochs", "2"]) == 0
    assert "from the model cache" in capsys.readouterr().out
    original = SmallCNN()
    assert load_checkpoint(original, tmp_path / "original.pt")["training"]["epochs"] == 2

    fit = ["fit", *_fit_args(), "--model.checkpoint", "original.pt"]
    assert main(fit) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-fit")
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.json", "unlearned.pt"]
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["checkpoint"] == "original.pt"
    assert not (tmp_path / "config.yaml").exists()  # nothing left in the working directory
    unlearned = SmallCNN()
    meta = load_checkpoint(unlearned, run / "unlearned.pt")
    assert meta == {"kind": "unlearned", "method": "FineTune", "original": "original.pt"}
    assert any(
        not torch.equal(a, b)
        for a, b in zip(
            original.state_dict().values(), unlearned.state_dict().values(), strict=True
        )
    )
    # metrics.json holds the Evaluator's metrics of exactly that checkpoint
    record = json.loads((run / "metrics.json").read_text())
    data = DigitsDataModule()
    data.setup()
    expected = Evaluator().metrics_from_outputs(Evaluator().collect_from(unlearned.eval(), data))
    assert record["metrics"].keys() == expected.keys()
    for name, value in expected.items():
        assert record["metrics"][name] == pytest.approx(float(value), abs=1e-6), name
    # a second fit: its own run directory (no `config.yaml expected to NOT exist`)
    assert main(fit) == 0
    assert len(list((tmp_path / "runs").iterdir())) == 2
    capsys.readouterr()

    assert main(["test", *_fit_args(), "--model.checkpoint", str(run / "unlearned.pt")]) == 0
    out = capsys.readouterr().out
    assert f"test: {run / 'unlearned.pt'}" in out
    assert f"forget/acc      │ {record['metrics']['forget/acc']:.4f}" in out
    assert f"test/acc        │ {record['metrics']['test/acc']:.4f}" in out
    assert not (tmp_path / "config.yaml").exists()


def test_train_refuses_a_recommender_experiment(tmp_path, capsys):
    config = str(ROOT / "configs" / "experiments" / "movielens_users.yaml")
    assert main(["train", "-c", config, "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "saves classification originals" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["run", "train", "fit", "test"])
def test_a_missing_gpu_is_one_line_before_any_work(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    args = {
        "run": ["run", "--trainer", "{accelerator: gpu}"],
        "train": ["train", "--out", "o.pt", "--trainer", "{accelerator: gpu}"],
        "fit": ["fit", *_fit_args(), "--trainer.accelerator", "gpu"],
        "test": ["test", *_fit_args(), "--trainer.accelerator", "gpu"],
    }[command]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "unlearnkit: error: accelerator 'gpu' is not available on this machine (no CUDA or MPS "
        "device); use accelerator: cpu or auto"
    ]
    assert list(tmp_path.iterdir()) == []  # no cache, run directory or model written


def test_check_trainer_arguments_counts_cuda_devices(monkeypatch):
    from unlearnkit.module import check_trainer_arguments

    check_trainer_arguments({"accelerator": "cpu", "devices": 4})
    check_trainer_arguments({})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_trainer_arguments({"accelerator": "gpu", "devices": 1})
    with pytest.raises(ValueError, match=r"^devices: 2 asks for more GPUs than this machine has"):
        check_trainer_arguments({"accelerator": "cuda", "devices": 2})


def test_ctrl_c_during_evaluation_is_one_line_and_the_cache_survives(
    tmp_path, monkeypatch, capsys, caplog
):
    from unlearnkit.evaluation.evaluator import Evaluator

    config = {**TINY, "training": {"epochs": 1, "lr": 0.05}, "methods": [{"class_path": "Retrain"}]}
    args = run_args(tmp_path, config)

    def interrupted(self, model, loaders):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Evaluator, "collect", interrupted)
        assert main(args) == 130
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == "unlearnkit: interrupted"  # after the phases
    assert "Traceback" not in captured.out + captured.err
    (run,) = (tmp_path / "runs").iterdir()  # kept: what was trained is there (--resume)
    assert (run / "models").is_dir() and not (run / "report.json").exists()
    text = run_logged(caplog, args)  # the models trained before the interrupt are reused
    assert "cache hit: loaded the original" in text
    assert "cache hit: loaded the retrained" in text


def test_run_help_shows_the_embedded_experiments_values(capsys):
    default = yaml.safe_load(default_experiment_path().read_text())
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    help_of = out[out.index("--training.epochs EPOCHS\n") :].split("\n  --")[0]
    assert f"default: {default['training']['epochs']})" in help_of


def test_an_omitted_batch_size_trains_the_default_experiments_original(tmp_path):
    from unlearnkit.cache import ModelCache
    from unlearnkit.evaluation import Evaluator
    from unlearnkit.vision.experiment import Experiment, run_parser
    from unlearnkit.vision.models import SmallCNN

    text = default_experiment_path().read_text()
    assert "    batch_size: 64\n" in text
    omitted = tmp_path / "omitted.yaml"
    omitted.write_text(text.replace("  init_args:\n    batch_size: 64\n", "  init_args: {}\n"))
    parser = run_parser()
    keys = []
    for path in (default_experiment_path(), omitted):
        init = parser.instantiate(parser.parse_args(["-c", str(path)]))
        exp = Experiment(
            init.data,
            arch=init.arch,
            training=init.training,
            seed=init.seed,
            cache=ModelCache(tmp_path / "cache"),
            trainer={},
            evaluator=Evaluator(),
        )
        keys.append(exp._key("original", SmallCNN()))
    assert keys[0]["batch_size"] == 64
    assert keys[0] == keys[1]


def test_the_cli_and_its_help_import_no_heavy_optional_library():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from unlearnkit.cli import main\n"
        "assert main(['--help']) == 0\n"
        "print(sorted(m for m in ('torch_geometric', 'timm', 'matplotlib', 'torch', 'lightning')"
        " if m in sys.modules))\n"
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_fit_runs_the_methods_own_epochs_and_refuses_another_max_epochs(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    unsir = str(ROOT / "configs" / "method" / "unsir.yaml")  # impair + repair: 2 epochs
    args = ["fit"] + [w for frag in [*FIT_FRAGMENTS, unsir] for w in ("-c", frag)]
    assert main([*args, "--trainer.max_epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "UNSIR runs 2 epochs (its `epochs`) but --trainer.max_epochs is 1" in err
    assert not (tmp_path / "runs").exists()  # refused before the run directory
    from jsonargparse import Namespace

    from unlearnkit.cli import _match_epochs

    config = Namespace(
        trainer=Namespace(max_epochs=None, fast_dev_run=False),
        model=Namespace(
            method=Namespace(class_path="unlearnkit.vision.UNSIR", init_args=Namespace(epochs=3))
        ),
    )
    _match_epochs(config)
    assert config.trainer.max_epochs == 3  # unset: taken from the method
    config.model.method = Namespace(class_path="unlearnkit.vision.SSD", init_args=Namespace())
    config.trainer.max_epochs = None
    _match_epochs(config)
    assert config.trainer.max_epochs == 0  # one-shot


def test_fit_of_a_method_that_diverges_fails_and_saves_no_nan_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ga = str(ROOT / "configs" / "method" / "gradient_ascent.yaml")
    args = ["fit"] + [w for frag in [*FIT_FRAGMENTS, ga] for w in ("-c", frag)]
    assert main([*args, "--model.method.init_args.lr", "1e30"]) == 2
    err = capsys.readouterr().err
    assert "GradientAscent (fit): the model's " in err and "the method diverged" in err
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-fit-failed")  # set aside: runs/*-fit names only good fits
    assert not (run / "unlearned.pt").exists()
