"""`unlearnkit reproduce`: table specs, aggregation, report, errors, a smoke run per table."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from _helpers import SHARED
from unlearnkit.cli import main
from unlearnkit.data import ForgetSpec
from unlearnkit.reproduce import aggregate, format_report, list_tables, load_table
from unlearnkit.reproduce.runner import evaluate_checks
from unlearnkit.reproduce.tables import PaperCell
from unlearnkit.vision.experiment import run_parser

TABLES = [
    "ssd_fullclass_cifar10",
    "ssd_fullclass_fmnist",
    "ssd_random_cifar10",
    "ssd_subclass_fmnist",
]
DATA = {
    "ssd_fullclass_fmnist": SHARED / "data" / "fashion-mnist",
    "ssd_subclass_fmnist": SHARED / "data" / "fashion-mnist",
    "ssd_fullclass_cifar10": SHARED / "data" / "cifar10-jpeg-q75.tar.gz",
    "ssd_random_cifar10": SHARED / "data" / "cifar10-jpeg-q75.tar.gz",
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small runs: intra-op threads only add contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_table_loads_and_its_experiment_parses(capsys):
    assert set(TABLES) <= set(list_tables())  # (recsys tables live here too)
    parser = run_parser()
    for name in TABLES:
        spec = load_table(name)
        assert spec.seeds == [0, 1, 2] and spec.forget and spec.rows[:2] == ["original", "retrain"]
        assert {"SSD", "LFSSD"} <= set(spec.rows)
        assert spec.smoke["seeds"] == [0] and spec.smoke["max_requests"] == 1
        for request in spec.forget:
            ForgetSpec(**request)
        cfg = parser.parse_object({**spec.experiment, "forget": spec.forget, "arch": spec.archs[0]})
        methods = [type(m).__name__ for m in parser.instantiate(cfg).methods]
        assert methods == ["Retrain", "FineTune", "SSD", "LFSSD"], name
        assert spec.paper_cells, name
        for cell in spec.paper_cells:
            assert cell.row in spec.rows and cell.metric in spec.columns
            assert cell.source and (cell.setting_matches or cell.note)
            assert cell.setting in [*spec.archs, *spec.gpu_archs]
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in TABLES:
        assert f"| {name} |" in out


def _rows():
    """Two seeds x two requests; SSD forget acc 0.0/0.02 (seed 0) and 0.04/0.06 (seed 1)."""
    rows = []
    for seed, base in ((0, 0.0), (1, 0.04)):
        for k, forget in enumerate(("class[0]", "class[1]")):
            f = base + 0.02 * k
            rows += [
                {
                    "arch": "a",
                    "seed": seed,
                    "forget": forget,
                    "method": "SSD",
                    "metrics": {
                        "forget/acc": f,
                        "test/acc": 0.90 - f,
                        "time/unlearn_s": 1.0 + seed,
                    },
                },
                {
                    "arch": "a",
                    "seed": seed,
                    "forget": forget,
                    "method": "original",
                    "metrics": {"forget/acc": 0.95, "test/acc": 0.91, "time/unlearn_s": None},
                },
                {
                    "arch": "a",
                    "seed": seed,
                    "forget": forget,
                    "method": "retrain",
                    "metrics": {"forget/acc": 0.0, "test/acc": 0.90, "time/unlearn_s": 10.0},
                },
            ]
    return rows


def test_aggregate_is_mean_and_std_over_seeds_of_request_means():
    stats = aggregate(_rows())
    ssd = stats["a", "SSD"]["forget/acc"]
    # seed means: (0 + 0.02) / 2 = 0.01 and (0.04 + 0.06) / 2 = 0.05
    assert ssd.values == pytest.approx([0.01, 0.05])
    assert ssd.mean == pytest.approx(0.03) and ssd.n == 2
    assert ssd.std == pytest.approx(0.02 * 2**0.5)  # sample std of (0.01, 0.05)
    assert "time/unlearn_s" not in stats["a", "original"]  # None values are skipped
    per_request = aggregate(_rows(), group=("arch", "method", "forget"))
    assert per_request["a", "SSD", "class[1]"]["forget/acc"].mean == pytest.approx(0.04)


def test_report_shows_paper_numbers_differences_and_checks():
    spec = load_table("ssd_fullclass_fmnist")
    spec.archs, spec.paper_comparison = ["a"], True
    spec.paper_cells = [
        PaperCell("a", "SSD", "forget/acc", 1.5, "Paper, Table 9", False, "other data"),
        PaperCell("a", "SSD", "test/acc", None, "Paper, Table 9", True, ""),
    ]
    spec.checks = [
        {"row": "SSD", "metric": "forget/acc", "at_most": 0.01, "claim": "D_f ~ 0"},
        {
            "row": "SSD",
            "metric": "test/acc",
            "of_row": "original",
            "within": 0.03,
            "claim": "D_r kept",
        },
        {
            "row": "SSD",
            "metric": "time/unlearn_s",
            "of_row": "retrain",
            "at_most_ratio": 0.2,
            "claim": "fast",
        },
    ]
    header = {
        "date": "2026-01-01",
        "machine": "m",
        "seeds": [0, 1],
        "requests": ["class[0]"],
        "mode": "test",
    }
    text = format_report(spec, _rows(), header=header)
    # columns: D_r test, D_f test, D_r train, D_f train, MIA, time (percent / seconds)
    assert "| SSD | 87.00 ± 2.83 | — | — | 3.00 ± 2.83 | — | 1.50 ± 0.71 |" in text
    assert (
        "| a | mean over requests | SSD | D_f acc, train | 3.00 ± 2.83 | 1.50 | +1.50 "
        "| no: other data | Paper, Table 9 |" in text
    )
    assert "1 of the 2 paper cells" in text
    # an empty cell is printed, with the paper column saying why it is empty
    assert (
        "| a | mean over requests | SSD | D_r acc, test | 87.00 ± 2.83 "
        "| n/a (not available offline) | — | yes | Paper, Table 9 |" in text
    )
    checks = {c["claim"]: c for c in evaluate_checks(spec, aggregate(_rows()), "a")}
    assert checks["D_f ~ 0"]["status"] == "MISSED" and checks["D_f ~ 0"]["ours"] == "3.00"
    assert checks["D_r kept"]["status"] == "MISSED" and checks["D_r kept"]["ours"] == "-4.00"
    assert checks["fast"]["status"] == "met" and checks["fast"]["ours"] == "0.15"
    assert "| a | D_f ~ 0 | 3.00 | ≤ 1.00 | MISSED |" in text


def test_within_check_hand_computed():
    spec = load_table("ssd_fullclass_fmnist")
    spec.checks = [{"row": "SSD", "metric": "test/acc", "of_row": "original", "within": 0.03}]
    (res,) = evaluate_checks(spec, aggregate(_rows()), "a")
    # SSD test acc mean 0.87, original 0.91: difference -4 points > 3 points
    assert res["ours"] == "-4.00" and res["status"] == "MISSED"
    spec.checks[0]["within"] = 0.05
    assert evaluate_checks(spec, aggregate(_rows()), "a")[0]["status"] == "met"


def reproduce_without_data(tmp_path: Path, *extra: str) -> int:
    """``unlearnkit reproduce ssd_fullclass_fmnist`` with a data root that does not exist."""
    nope, runs = str(tmp_path / "nope"), str(tmp_path / "runs")
    return main(
        ["reproduce", "ssd_fullclass_fmnist", "--data_root", nope, "--output", runs, *extra]
    )


def test_missing_data_and_unknown_table_are_clear_errors(tmp_path, capsys):
    code = reproduce_without_data(tmp_path, "--cache_dir", str(tmp_path / "cache"))
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "--data_root" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()
    assert main(["reproduce", "no_such_table"]) == 2
    err = capsys.readouterr().err
    assert "unknown table 'no_such_table'; available: " in err and "ssd_fullclass_fmnist" in err


@pytest.mark.parametrize("table", TABLES)
def test_smoke_runs_the_whole_path(table, tmp_path, caplog, capsys):
    if not DATA[table].exists():
        pytest.skip(f"{DATA[table]} absent (the real data lives in ../shared/data)")
    args = [
        "reproduce",
        table,
        "--smoke",
        "--data_root",
        str(DATA[table]),
        "--output",
        str(tmp_path / "runs"),
        "--cache_dir",
        str(tmp_path / "cache"),
    ]
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "SMOKE run" in out and "## Trend checks" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith(f"reproduce-{table}")
    result = json.loads((run_dir / "results.json").read_text())
    methods = {r["method"] for r in result["rows"]}
    assert methods == {"original", "retrain", "FineTune", "SSD", "LFSSD"}
    assert {r["seed"] for r in result["rows"]} == {0}
    ssd = next(r for r in result["rows"] if r["method"] == "SSD")
    keys = ["forget/acc", "retain/acc", "test/acc", "mia/entropy_lr"]
    keys += ["test_forget/acc"] if "test_forget/acc" in load_table(table).columns else []
    for key in keys:
        assert 0.0 <= ssd["metrics"][key] <= 1.0, key
    retrain = next(r for r in result["rows"] if r["method"] == "retrain")
    t_ret, t_ssd = retrain["metrics"]["time/unlearn_s"], ssd["metrics"]["time/unlearn_s"]
    assert ssd["metrics"]["time/speedup"] == pytest.approx(t_ret / t_ssd, rel=1e-9)
    assert (run_dir / "table.md").read_text().startswith(f"# `{table}`")
    assert list(run_dir.glob("*-small_cnn-seed0")) or list(run_dir.glob("*-compact_cifar-seed0"))
    assert list((tmp_path / "cache" / "importance").glob("*/importance.pt"))  # SSD: --cache_dir
    assert "cache miss: training the original" in caplog.text

    if table != "ssd_fullclass_fmnist":
        return
    caplog.clear()  # a second run: originals, retrained models and I_D all come from the cache
    with caplog.at_level(logging.INFO, logger="unlearnkit"):
        assert main(args) == 0
    assert "cache hit: loaded the original" in caplog.text
    assert "cache hit: loaded the retrained" in caplog.text
    assert "SSD: I_D cache hit" in caplog.text
    assert len(list((tmp_path / "runs").iterdir())) == 2  # a new run dir, the first untouched
    assert json.loads((run_dir / "results.json").read_text()) == result


def test_failed_run_leaves_the_output_untouched(tmp_path):
    (tmp_path / "runs").mkdir()
    marker = tmp_path / "runs" / "keep.txt"
    marker.write_text("x")
    code = reproduce_without_data(tmp_path)
    assert code == 2 and marker.read_text() == "x"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["keep.txt"]


def test_paths_are_package_data():
    from unlearnkit.reproduce.tables import tables_dir

    files = sorted(p.name for p in Path(tables_dir()).iterdir())
    for name in TABLES:
        assert f"{name}.yaml" in files and f"{name}.csv" in files


# -- paper cells: every claimed comparison has a number, empty ones print as n/a ------------------
def test_every_table_claiming_a_paper_comparison_has_a_filled_cell():
    with_targets = []
    for name in list_tables():
        spec = load_table(name)
        for cell in spec.filled_cells:  # a filled cell says where it was read and of what kind
            assert cell.primary is not None and cell.source, (name, cell)
            assert "http" in cell.source or ".py" in cell.source or ".md" in cell.source, cell
        if spec.paper_comparison:
            assert spec.filled_cells, f"{name} claims a paper comparison but has no filled cell"
            with_targets.append(name)
    # what the README promises: these tables print paper numbers (the others print n/a)
    assert with_targets == ["recsys_movielens", "ssd_fullclass_cifar10"]
    cifar = load_table("ssd_fullclass_cifar10")
    ssd = cifar.paper_cell("resnet18_cifar", "SSD", "test/acc")
    # mean of the five per-class retain accuracies the source lists for classes 0-4
    assert ssd.value == pytest.approx((83.38 + 94.62 + 90.06 + 90.00 + 95.26) / 5, abs=0.005)
    assert ssd.primary is False


def test_report_without_paper_numbers_prints_na_everywhere():
    spec = load_table("ssd_random_cifar10")
    assert not spec.paper_comparison and not spec.filled_cells
    spec.paper_cells = [PaperCell("a", "SSD", "forget/acc", None, "Paper, Table 2", False, "x")]
    header = {"date": "d", "machine": "m", "seeds": [0], "requests": ["r"], "mode": "test"}
    text = format_report(spec, _rows(), header=header)
    assert "compares nothing with the paper" in text
    assert (
        "| a | mean over requests | SSD | D_f acc, train | 3.00 ± 2.83 "
        "| n/a (not available offline) | — |" in text
    )


def test_csv_primary_tag_is_validated(tmp_path, monkeypatch):
    from unlearnkit.reproduce import tables

    spec_text = (tables.tables_dir() / "ssd_random_cifar10.yaml").read_text()
    (tmp_path / "t.yaml").write_text(spec_text)
    monkeypatch.setattr(tables, "tables_dir", lambda: tmp_path)
    head = ",".join(tables.CSV_COLUMNS)
    line = "t,compact_cifar,SSD,forget/acc,{v},https://example.org/paper,{p},no,other data"
    (tmp_path / "t.csv").write_text(f"{head}\n{line.format(v='12.5', p='')}\n")
    with pytest.raises(ValueError, match="primary must be 'yes' or 'no' for a filled cell"):
        load_table("t")
    (tmp_path / "t.csv").write_text(f"{head}\n{line.format(v='', p='yes')}\n")
    with pytest.raises(ValueError, match="primary must be '' for an empty cell"):
        load_table("t")
    (tmp_path / "t.csv").write_text(f"{head}\n{line.format(v='12.5', p='no')}\n")
    (cell,) = load_table("t").paper_cells
    assert cell.value == 12.5 and cell.primary is False


def test_among_smallest_check_ranks_the_methods_rows_by_hand():
    spec = load_table("ssd_fullclass_fmnist")  # rows: original, retrain, FineTune, SSD, LFSSD
    gaps = {"original": 0.01, "retrain": 0.0, "FineTune": 0.05, "SSD": 0.03, "LFSSD": 0.02}
    rows = [
        {"arch": "a", "seed": 0, "forget": "r", "method": m, "metrics": {"gap/avg": g}}
        for m, g in gaps.items()
    ]
    spec.checks = [{"row": "SSD", "metric": "gap/avg", "among_smallest": 2}]
    (res,) = evaluate_checks(spec, aggregate(rows), "a")
    # among FineTune 5, SSD 3, LFSSD 2 (original and retrain left out) SSD is 2nd
    assert res["ours"] == "rank 2 of 3 (3.00)" and res["status"] == "met"
    spec.checks[0]["among_smallest"] = 1
    assert evaluate_checks(spec, aggregate(rows), "a")[0]["status"] == "MISSED"


def test_worstcase_table_parses_its_selector_and_its_smoke_run_searches(tmp_path, capsys):
    from unlearnkit.vision.worst_case import WorstCaseSelector

    spec = load_table("worstcase_fmnist")
    parser = run_parser()
    cfg = parser.parse_object({**spec.experiment, "forget": spec.forget, "arch": spec.archs[0]})
    init = parser.instantiate(cfg)
    searched, drawn = init.forget
    assert isinstance(searched.selector, WorstCaseSelector) and drawn.selector is None
    assert searched.label == "worst_case 10 %" and spec.smoke["max_requests"] == 1
    rows = ["FineTune", "GradientAscent", "NegGradPlus", "RandomLabel", "SSD", "L1Sparse"]
    assert [type(m).__name__ for m in init.methods] == ["Retrain", *rows, "SalUn", "SCRUB"]
    data = SHARED / "data" / "fashion-mnist"
    if not data.exists():
        pytest.skip(f"{data} absent (the real data lives in ../shared/data)")
    args = ["reproduce", "worstcase_fmnist", "--smoke", "--data_root", str(data)]
    args += ["--output", str(tmp_path / "runs"), "--cache_dir", str(tmp_path / "cache")]
    assert main(args) == 0
    assert "SMOKE run" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert {r["forget"] for r in result["rows"]} == {"worst_case 10 %"}
    assert {r["method"] for r in result["rows"]} == {"original", "retrain", *rows, "SalUn", "SCRUB"}
    (cell,) = run_dir.glob("*-small_cnn-seed0")
    saved = json.loads((cell / "forget_sets" / "worst_case_10_pct.json").read_text())
    assert len(saved["forget"]) == 30  # 10 % of the smoke run's 300 training images
    assert (cell / "forget_classes_worst_case_10_pct.png").is_file()
