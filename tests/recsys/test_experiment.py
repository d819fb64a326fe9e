"""`unlearnkit run` on recommender configs: end to end (tiny schedule), caching, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _helpers import (
    assert_second_run_hits_cache,
    first_run,
    row_names,
    run_args,
    run_failing,
    run_logged,
)
from unlearnkit.cli import main
from unlearnkit.data import ForgetSpec
from unlearnkit.datasets.interactions import InteractionData
from unlearnkit.jobs import data_class, data_class_path
from unlearnkit.module import default_trainer
from unlearnkit.recsys.data import RecDataModule
from unlearnkit.recsys.methods import ReverseBPR
from unlearnkit.recsys.models import LightGCNRecommender
from unlearnkit.recsys.module import RecUnlearningModule

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "data": {
        "class_path": "unlearnkit.recsys.data.MovieLensSmallDataModule",
        "init_args": {"batch_size": 4096, "forget_batch_size": 512},
    },
    "forget": [{"kind": "user", "fraction": 0.05, "seed": 0}],
    "model": {"arch": "lightgcn", "embedding_dim": 16, "num_layers": 1},
    "training": {"epochs": 3, "lr": 0.05},
    "methods": [
        {"class_path": "unlearnkit.recsys.methods.RecRetrain"},
        {"class_path": "unlearnkit.recsys.methods.RecGradientAscent", "init_args": {"epochs": 1}},
        {"class_path": "unlearnkit.recsys.methods.ReverseBPR", "init_args": {"epochs": 1}},
        {
            "class_path": "unlearnkit.recsys.methods.E2URec",
            "init_args": {"epochs": 1, "aux_epochs": 1},
        },
    ],
    "threads": 1,
}
REQUIRED = {
    "test/recall@10",
    "test/ndcg@10",
    "test/precision@10",
    "test/hit_rate@10",
    "test/recall@20",
    "test/ndcg@20",
    "forget/recall@20",
    "forget/mean_rank",
    "mia/auc",
    "score/js_to_retrain",
    "gap/forget_recall@20",
    "flag/over_unlearning",
    "params/trained",
    "params/total",
}


def test_run_writes_report_and_second_run_hits_cache(tmp_path, caplog, capsys):
    args, run, report = first_run(caplog, tmp_path, TINY)
    assert row_names(report) == ["retrain", "original", "GradientAscent", "ReverseBPR", "E2URec"]
    by = {r["method"]: r["metrics"] for r in report["rows"]}
    for name, metrics in by.items():
        assert (REQUIRED - {"time/unlearn_s"}) <= set(metrics), name
    assert by["retrain"]["score/js_to_retrain"] == pytest.approx(0.0, abs=1e-12)
    assert by["original"]["forget/recall@20"] > by["retrain"]["forget/recall@20"]  # memorised
    assert by["E2URec"]["params/trained"] == 16 * (659 + 2078 + 16)  # LoRA rank 16 on one table
    assert by["E2URec"]["params/total"] == (659 + 2078) * 16
    # speed-up = retraining seconds / unlearning seconds, from the times the same report records
    t_ret = by["retrain"]["time/unlearn_s"]
    assert by["retrain"]["time/speedup"] == 1.0
    for name in ("GradientAscent", "ReverseBPR", "E2URec"):
        t = by[name]["time/unlearn_s"]
        assert by[name]["time/speedup"] == pytest.approx(t_ret / t, rel=1e-12), name
    saved = json.loads((run / "forget_user_5_pct_seed_0.json").read_text())
    assert len(saved["forget"][0]) == report["rows"][0]["forget_edges"]
    assert list(run.glob("*.png")) and "| retrain" in (run / "report.md").read_text()
    out = capsys.readouterr().out
    assert out.index("\n retrain ") < out.index("\n original ") < out.index("\n E2URec ")
    table = [ln for ln in out.splitlines() if not ln.startswith("report written to")]
    assert max(len(line) for line in table) <= 100  # (the run dir's path may be longer)
    assert_second_run_hits_cache(caplog, args, run)
    # the saved edge file reproduces the request exactly
    again = run_args(
        tmp_path,
        TINY,
        forget=[{"kind": "indices", "indices_file": str(run / "forget_user_5_pct_seed_0.json")}],
        methods=[{"class_path": "unlearnkit.recsys.methods.RecRetrain"}],
    )
    assert "cache hit: loaded the retrained" in run_logged(caplog, again)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"forget": [{"kind": "user", "ids": [100000]}]}, "unknown user id 100000"),
        ({"forget": [{"kind": "item", "ids": [5000]}]}, "unknown item id 5000"),
        ({"forget": [{"kind": "indices", "indices_file": "BAD"}]}, "is not in the training graph"),
        ({"forget": [{"kind": "class", "classes": [0]}]}, "not for recommender data"),
        ({"methods": [{"class_path": "unlearnkit.vision.methods.FineTune"}]}, "is a vision method"),
    ],
)
def test_bad_input_exits_nonzero_and_writes_nothing(tmp_path, capsys, override, message):
    bad_edges = tmp_path / "edges.json"
    bad_edges.write_text(json.dumps({"forget": [[0], [2077]]}))  # user 0 never rated that movie
    if override.get("forget", [{}])[0].get("indices_file") == "BAD":
        override = {"forget": [{"kind": "indices", "indices_file": str(bad_edges)}]}
    # nothing under tmp_path changes: no run dir, no cache entry, no edge file touched
    code, err = run_failing(tmp_path, capsys, TINY, tmp_path, **override)
    assert code == 2
    assert message in err[-1] and err[-1].startswith("unlearnkit: error:")


def test_recsys_dispatch_reads_the_data_class():
    def is_recsys(argv):
        path = data_class_path(argv)
        return path is not None and issubclass(data_class(path), RecDataModule)

    for name in ("users", "items", "interactions"):
        assert is_recsys(["-c", str(ROOT / "configs" / "experiments" / f"movielens_{name}.yaml")])
    assert not is_recsys(["-c", str(ROOT / "configs" / "experiments" / "fashion_mnist_class.yaml")])
    assert is_recsys(["--data", "MovieLensSmallDataModule"])
    assert not is_recsys([])
    with pytest.raises(ValueError, match="cannot import the data class 'no_such_pkg.X'"):
        data_class("no_such_pkg.X")  # an ImportError is named, not routed to the vision job


@pytest.mark.parametrize("name", ["users", "items", "interactions"])
def test_shipped_configs_parse_and_instantiate(name):
    from unlearnkit.recsys.experiment import check_methods, run_parser

    parser = run_parser()
    cfg = parser.parse_args(
        ["-c", str(ROOT / "configs" / "experiments" / f"movielens_{name}.yaml")]
    )
    init = parser.instantiate_classes(cfg)
    assert isinstance(init.data, RecDataModule)
    assert [m.method_name or type(m).__name__ for m in init.methods] == [
        "Retrain",
        "FineTune",
        "GradientAscent",
        "ReverseBPR",
        "E2URec",
    ]
    check_methods(init.methods)
    assert init.forget[0].kind == name.rstrip("s")


class TinyRec(RecDataModule):
    """Two communities of 8 users over 10 items (every pair inside a community)."""

    def load(self) -> InteractionData:
        pairs = [(u, i) for u in range(16) for i in (range(0, 5) if u < 8 else range(5, 10))]
        edges = torch.tensor(pairs).t()
        test = edges[:, ::5].clone()
        keep = torch.ones(edges.size(1), dtype=torch.bool)
        keep[::5] = False
        return InteractionData(
            16,
            10,
            edges[:, keep],
            torch.empty(2, 0, dtype=torch.long),
            test,
            torch.arange(16),
            torch.arange(10),
            name="tiny",
        )


def test_module_fit_and_test_through_a_datamodule():
    torch.set_num_threads(1)
    dm = TinyRec(forget=ForgetSpec(kind="user", ids=[0]), batch_size=32, forget_batch_size=4)
    dm.setup()
    torch.manual_seed(0)
    model = LightGCNRecommender(16, 10, embedding_dim=8, num_layers=1).set_graph(dm.train_edges)
    module = RecUnlearningModule(model, ReverseBPR(epochs=2))
    trainer = default_trainer(2, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)  # the LightningCLI path: edges come from the datamodule
    torch.testing.assert_close(model.graph_edges, dm.retain_edges)
    trainer.test(module, datamodule=dm, verbose=False)
    metrics = trainer.callback_metrics
    assert {"test/recall@20", "forget/recall@20", "mia/auc"} <= set(metrics)
    assert 0.0 <= float(metrics["test/recall@20"]) <= 1.0


def test_reproduce_runs_the_recsys_table_through_the_recsys_runner(tmp_path, capsys):
    from unlearnkit.reproduce.tables import list_tables, load_table

    assert "recsys_movielens" in list_tables()
    spec = load_table("recsys_movielens")
    assert spec.rows == [
        "original",
        "retrain",
        "FineTune",
        "GradientAscent",
        "ReverseBPR",
        "E2URec",
    ]
    assert spec.seeds == [0, 1, 2]
    args = [
        "reproduce",
        "recsys_movielens",
        "--smoke",
        "--output",
        str(tmp_path / "out"),
        "--cache_dir",
        str(tmp_path / "cache"),
        "--threads",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| E2URec |" in out and "Trend checks" in out and "arXiv 2405.15328" in out
    run = next((tmp_path / "out").iterdir())
    results = json.loads((run / "results.json").read_text())
    methods = {r["method"] for r in results["rows"]}
    assert methods == set(spec.rows)
    assert (run / "table.md").is_file() and list(run.glob("*lightgcn-seed0/report.json"))
    code = main(
        ["reproduce", "recsys_movielens", "--train_limit", "100", "--output", str(tmp_path / "x")]
    )
    assert code == 2 and "not supported for recommender tables" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
