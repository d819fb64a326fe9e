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
from unlearnkit.reproduce.tables import tables_dir as shipped_tables_dir
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
    assert with_targets == [
        "baselines_cifar10_random",
        "baselines_fmnist_random",
        "iau_cifar10",
        "recsys_movielens",
        "ssd_fullclass_cifar10",
        "worstcase_cifar10",
        "worstcase_fmnist",
    ]
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


WORSTCASE_ROWS = ["FineTune", "GradientAscent", "NegGradPlus", "RandomLabel", "SSD", "L1Sparse"]


@pytest.mark.parametrize(
    ("table", "lower_epochs"), [("worstcase_fmnist", 1), ("worstcase_cifar10", 10)]
)
def test_worstcase_tables_parse_their_selector(table, lower_epochs):
    """Both worst-case specs: a searched and a random request, the same rows and checks (the
    CIFAR-10 one, for GPU users, is not smoke-run here: its search alone is minutes on a CPU)."""
    from unlearnkit.vision.worst_case import WorstCaseSelector

    spec = load_table(table)
    parser = run_parser()
    cfg = parser.parse_object({**spec.experiment, "forget": spec.forget, "arch": spec.archs[0]})
    init = parser.instantiate(cfg)
    searched, drawn = init.forget
    assert isinstance(searched.selector, WorstCaseSelector) and drawn.selector is None
    assert searched.selector.lower_epochs == lower_epochs and searched.selector.w_lr == 100.0
    assert searched.label == "worst_case 10 %" and spec.smoke["max_requests"] == 1
    assert [type(m).__name__ for m in init.methods] == [
        "Retrain",
        *WORSTCASE_ROWS,
        "SalUn",
        "SCRUB",
        "BoundaryShrink",
    ]
    assert {c["claim"] for c in spec.checks} == {
        c["claim"] for c in load_table("worstcase_fmnist").checks
    }
    assert {c.request for c in spec.paper_cells} == {"worst_case 10 %", "random 10 % (seed 0)"}
    assert {c.setting for c in spec.paper_cells} <= {*spec.archs, *spec.gpu_archs}


def test_worstcase_smoke_run_searches(tmp_path, capsys):
    rows = WORSTCASE_ROWS
    data = SHARED / "data" / "fashion-mnist"
    if not data.exists():
        pytest.skip(f"{data} absent (the real data lives in ../shared/data)")
    args = ["reproduce", "worstcase_fmnist", "--smoke", "--data_root", str(data)]
    args += ["--output", str(tmp_path / "runs"), "--cache_dir", str(tmp_path / "cache")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SMOKE run" in out and "| small_cnn | worst_case 10 % | retrain | UA | " in out
    assert "## Per forget request" not in out  # the smoke run has one request
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert {r["forget"] for r in result["rows"]} == {"worst_case 10 %"}
    assert {r["method"] for r in result["rows"]} == {
        "original",
        "retrain",
        *rows,
        "SalUn",
        "SCRUB",
        "BoundaryShrink",
    }
    (cell,) = run_dir.glob("*-small_cnn-seed0")
    saved = json.loads((cell / "forget_sets" / "worst_case_10_pct.json").read_text())
    assert len(saved["forget"]) == 30  # 10 % of the smoke run's 300 training images
    assert (cell / "forget_classes_worst_case_10_pct.png").is_file()


BASELINES = ["baselines_fmnist_random", "baselines_fmnist_class", "baselines_cifar10_random"]


def test_baseline_tables_cover_the_library_and_their_experiments_parse():
    from unlearnkit import list_methods

    parser = run_parser()
    for name in BASELINES:
        spec = load_table(name)
        cfg = parser.parse_object({**spec.experiment, "forget": spec.forget, "arch": spec.archs[0]})
        methods = [type(m).__name__ for m in parser.instantiate(cfg).methods]
        assert methods[0] == "Retrain" and spec.rows == ["original", "retrain", *methods[1:]]
        assert spec.seeds == [0, 1, 2] and len(spec.forget) == 1
        assert {"forget/ua", "retain/acc", "test/acc", "mia/efficacy", "gap/avg"} <= set(
            spec.columns
        )
        for cell in spec.paper_cells:
            assert cell.row in spec.rows and cell.metric in spec.columns, (name, cell)
    # the Fashion-MNIST tables run every vision method of the library
    every = set(list_methods()) - {"Retrain"}
    for name in BASELINES[:2]:
        assert set(load_table(name).rows[2:]) == every, name
    # the SalUn paper's random-forgetting rows, each with its four numbers (secondary, to verify)
    salun = load_table("baselines_fmnist_random")
    filled = {(c.row, c.metric): c for c in salun.filled_cells}
    assert filled[("retrain", "forget/ua")].value == 5.24
    assert filled[("SalUn", "mia/efficacy")].value == 14.39
    assert all(c.primary is False and "to verify" in c.source for c in filled.values())
    assert {r for r, _ in filled} == {
        "retrain",
        "FineTune",
        "RandomLabel",
        "GradientAscent",
        "IU",
        "BoundaryExpanding",
        "BoundaryShrink",
        "L1Sparse",
        "SalUn",
    }


def smoke_every_row(tmp_path: Path, capsys, table: str, data: Path) -> dict:
    """``unlearnkit reproduce <table> --smoke`` (skipped without the data): every row of the spec
    ran and none failed. Returns ``results.json``."""
    if not data.exists():
        pytest.skip(f"{data} absent (the real data lives in ../shared/data)")
    args = ["reproduce", table, "--smoke", "--data_root", str(data)]
    args += ["--output", str(tmp_path / "runs"), "--cache_dir", str(tmp_path / "cache")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SMOKE run" in out and "## Trend checks" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert {r["method"] for r in result["rows"]} == set(load_table(table).rows)
    assert not [r["method"] for r in result["rows"] if r.get("status") == "failed"]
    return result


def test_baselines_smoke_runs_every_method(tmp_path, capsys):
    data = SHARED / "data" / "fashion-mnist"
    result = smoke_every_row(tmp_path, capsys, "baselines_fmnist_random", data)
    for row in result["rows"]:
        if row["method"] != "original":
            assert 0.0 <= row["metrics"]["gap/avg"] <= 1.0, row["method"]


# -- per forget request: paper cells and trend checks of one request ------------------------------
def _two_request_spec():
    """``ssd_fullclass_fmnist`` with the requests of :func:`_rows` (and one that did not run)."""
    spec = load_table("ssd_fullclass_fmnist")
    spec.archs, spec.paper_comparison = ["a"], True
    spec.requests = ["class[0]", "class[1]", "class[2]"]
    return spec


def test_per_request_cells_and_tables_hand_computed():
    spec = _two_request_spec()
    spec.paper_cells = [
        PaperCell("a", "SSD", "forget/acc", 1.0, "Paper", False, "x", False, request="class[1]"),
        PaperCell("a", "SSD", "forget/acc", 2.5, "Paper", False, "x", True),
        PaperCell("a", "SSD", "test/acc", 80.0, "Paper", False, "x", True, request="class[2]"),
    ]
    spec.checks = []
    header = {"date": "d", "machine": "m", "seeds": [0, 1], "requests": ["r"], "mode": "test"}
    text = format_report(spec, _rows(), header=header)
    # SSD forget acc in class[1]: seeds 0.02 and 0.06 -> 4.00 ± 2.83 (sample std 0.04 / sqrt 2)
    assert (
        "| a | class[1] | SSD | D_f acc, train | 4.00 ± 2.83 | 1.00 | +3.00 | no: x "
        "| Paper (secondary) |" in text
    )
    # a cell without a request keeps the mean over the requests: (0.01 + 0.05) / 2 = 3.00
    assert (
        "| a | mean over requests | SSD | D_f acc, train | 3.00 ± 2.83 | 2.50 | +0.50 | no: x "
        "| Paper (primary) |" in text
    )
    # a request that did not run: no number of ours, no difference
    assert (
        "| a | class[2] | SSD | D_r acc, test | — | 80.00 | — | no: x | Paper (primary) |" in text
    )
    # one table per request, in the spec's order, between the main table and the comparison
    first, second = text.index("### a: class[0]"), text.index("### a: class[1]")
    assert text.index("## Per forget request") < first < second < text.index("## Paper comparison")
    # class[0] SSD: test acc 0.90 / 0.86, forget acc 0.00 / 0.04, time 1 s / 2 s
    row0 = "| SSD | 88.00 ± 2.83 | — | — | 2.00 ± 2.83 | — | 1.50 ± 0.71 |"
    row1 = "| SSD | 86.00 ± 2.83 | — | — | 4.00 ± 2.83 | — | 1.50 ± 0.71 |"
    assert first < text.index(row0) < second < text.index(row1)
    # one request: no per-request section (the main table is that request)
    one = [r for r in _rows() if r["forget"] == "class[0]"]
    assert "## Per forget request" not in format_report(spec, one, header=header)


def test_per_request_checks_hand_computed():
    spec = _two_request_spec()
    across = {"request": "class[1]", "of_request": "class[0]"}
    spec.checks = [
        {"row": "SSD", "metric": "forget/acc", **across, "at_least_ratio": 1.5, "claim": "up"},
        {"row": "SSD", "metric": "forget/acc", **across, "at_most_ratio": 1.5, "claim": "down"},
        {
            "row": "SSD",
            "metric": "test/acc",
            "request": "class[1]",
            "of_row": "original",
            "within": 0.03,
            "claim": "kept",
        },
        {
            "row": "SSD",
            "metric": "forget/acc",
            "request": "class[0]",
            "at_most": 0.01,
            "claim": "0",
        },
        {
            "row": "SSD",
            "metric": "forget/acc",
            "request": "class[2]",
            "at_most": 0.01,
            "claim": "?",
        },
    ]
    per_request = aggregate(_rows(), group=("arch", "forget", "method"))
    results = evaluate_checks(spec, aggregate(_rows()), "a", per_request=per_request)
    res = {r["claim"]: r for r in results}
    # SSD forget acc: class[1] (0.02 + 0.06) / 2 = 0.04, class[0] (0.00 + 0.04) / 2 = 0.02
    assert res["up"]["ours"] == "2" and res["up"]["status"] == "met"
    assert res["up"]["target"] == "SSD [class[1]] / SSD [class[0]] ≥ 1.5"
    assert res["down"]["status"] == "MISSED" and res["up"]["request"] == "class[1]"
    # class[1] SSD test acc (0.88 + 0.84) / 2 = 0.86 against the original's 0.91: -5 points
    assert res["kept"]["ours"] == "-5.00" and res["kept"]["status"] == "MISSED"
    assert res["kept"]["target"] == "abs(SSD − original) ≤ 3.00 (class[1])"
    assert res["0"]["ours"] == "2.00" and res["0"]["status"] == "MISSED"
    assert res["?"]["status"] == "n/a" and res["?"]["ours"] == "—"  # class[2] did not run
    with pytest.raises(ValueError, match="pass per_request="):
        evaluate_checks(spec, aggregate(_rows()), "a")


def _write_table(tmp_path, monkeypatch, *, checks=None, csv_lines=None, forget=None):
    """A copy of ``ssd_random_cifar10`` (one request, ``random 83 (seed 0)``) as table ``t``."""
    import yaml

    from unlearnkit.reproduce import tables

    doc = yaml.safe_load((shipped_tables_dir() / "ssd_random_cifar10.yaml").read_text())
    if checks is not None:
        doc["checks"] = checks
    if forget is not None:
        doc["grid"]["forget"] = forget
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc))
    if csv_lines is not None:
        (tmp_path / "t.csv").write_text("\n".join(csv_lines) + "\n")
    monkeypatch.setattr(tables, "tables_dir", lambda: tmp_path)
    return tables


def test_csv_request_column_is_optional_and_validated(tmp_path, monkeypatch):
    from unlearnkit.reproduce import tables

    old = ",".join(tables.CSV_COLUMNS)  # the header without a request column still loads
    cell = "SSD,forget/acc,12.5,https://example.org/paper,no,no,other data"
    _write_table(tmp_path, monkeypatch, csv_lines=[old, f"t,compact_cifar,{cell}"])
    (loaded,) = load_table("t").paper_cells
    assert loaded.request is None and loaded.value == 12.5
    new = ",".join(tables.CSV_COLUMNS_WITH_REQUEST)
    lines = [new, f"t,compact_cifar,random 83 (seed 0),{cell}", f"t,compact_cifar,,{cell}"]
    _write_table(tmp_path, monkeypatch, csv_lines=lines)
    spec = load_table("t")
    assert [c.request for c in spec.paper_cells] == ["random 83 (seed 0)", None]
    assert spec.paper_cell("compact_cifar", "SSD", "forget/acc", "random 83 (seed 0)").value == 12.5
    _write_table(tmp_path, monkeypatch, csv_lines=[new, f"t,compact_cifar,random 10 %,{cell}"])
    with pytest.raises(ValueError) as err:
        load_table("t")
    message = str(err.value)
    assert "t.csv:2: request 'random 10 %' is not a forget request" in message
    assert "valid requests: 'random 83 (seed 0)'" in message and "\n" not in message
    lines = [new, f"t,compact_cifar,,{cell}", f"t,compact_cifar,,{cell}"]
    _write_table(tmp_path, monkeypatch, csv_lines=lines)
    with pytest.raises(ValueError, match="t.csv:3: a second cell"):
        load_table("t")


def test_check_requests_are_validated(tmp_path, monkeypatch):
    base = {"row": "SSD", "metric": "forget/acc"}
    valid = "random 83 (seed 0)"
    bad = [
        ({**base, "request": "class 0", "at_most": 0.1}, "names request 'class 0'"),
        (
            {**base, "request": valid, "of_request": "nope", "at_most_ratio": 1.0},
            "names of_request 'nope'",
        ),
        ({**base, "of_request": valid, "within": 0.1}, "has of_request but no request"),
        ({**base, "request": valid, "of_request": valid, "within": 0.1}, "with itself"),
        ({**base, "request": valid, "of_request": valid, "at_most": 0.1}, "needs a comparison"),
        ({**base, "at_least_ratio": 2.0}, "needs of_row or of_request"),
    ]
    for check, match in bad:
        _write_table(tmp_path, monkeypatch, checks=[check])
        with pytest.raises(ValueError) as err:
            load_table("t")
        message = str(err.value)
        assert match in message and "t.yaml" in message and "\n" not in message, message
    _write_table(tmp_path, monkeypatch, checks=[bad[0][0]])
    with pytest.raises(ValueError, match=r"valid requests: 'random 83 \(seed 0\)'"):
        load_table("t")
    twice = [{"kind": "random", "count": 83, "seed": 0}] * 2
    _write_table(tmp_path, monkeypatch, checks=[], forget=twice)
    with pytest.raises(ValueError, match="several requests labelled 'random 83 \\(seed 0\\)'"):
        load_table("t")
    ok = {**base, "request": valid, "of_row": "retrain", "within": 0.05}
    _write_table(tmp_path, monkeypatch, checks=[ok])
    assert load_table("t").checks == [ok]


def test_worstcase_table_compares_per_request_cells_and_checks():
    spec = load_table("worstcase_fmnist")
    worst, rand = "worst_case 10 %", "random 10 % (seed 0)"
    assert spec.requests == [worst, rand] and spec.paper_comparison
    assert len(spec.filled_cells) == len(spec.paper_cells) == 10
    for cell in spec.paper_cells:
        assert cell.request in (worst, rand) and cell.primary is False
        assert "secondary source" in cell.source and "to verify" in cell.note
    paper = {
        ("retrain", "forget/ua"): (5.28, 0.00),
        ("retrain", "mia/efficacy"): (12.86, 0.00),
        ("RandomLabel", "gap/avg"): (4.38, 24.88),
        ("SalUn", "gap/avg"): (1.89, 24.51),
        ("FineTune", "gap/avg"): (2.00, 1.37),
    }
    for (row, metric), (on_random, on_worst) in paper.items():
        assert spec.paper_cell("small_cnn", row, metric, rand).value == on_random
        assert spec.paper_cell("small_cnn", row, metric, worst).value == on_worst
        assert spec.paper_cell("small_cnn", row, metric) is None  # no mean-over-requests cell
    # the paper's own numbers meet the spec's checks (ratios worst / random)
    rows = [
        {"arch": "small_cnn", "seed": 0, "forget": req, "method": row, "metrics": {metric: v / 100}}
        for (row, metric), values in paper.items()
        for req, v in zip((rand, worst), values, strict=True)
    ]
    per_request = aggregate(rows, group=("arch", "forget", "method"))
    results = evaluate_checks(spec, aggregate(rows), "small_cnn", per_request=per_request)
    assert [r["status"] for r in results] == ["met"] * 5
    # RandomLabel 24.88 / 4.38 = 5.68; FineTune 1.37 / 2.00 = 0.685
    assert [r["ours"] for r in results] == ["0", "0", "5.68", "13", "0.685"]


# -- iau_cifar10: the original trained with IAU's gradient-restriction loss ----------------------
def test_iau_table_trains_a_gr_original_and_training_overrides_reach_the_config(tmp_path):
    from unlearnkit.reproduce.runner import ReproduceOptions, build_config

    spec = load_table("iau_cifar10")
    assert spec.archs == ["lenet5"] and spec.seeds == [0, 1, 2]
    assert spec.forget == [{"kind": "random", "fraction": 0.05, "seed": 0}]
    parser = run_parser()
    cfg = parser.parse_object({**spec.experiment, "forget": spec.forget, "arch": "lenet5"})
    init = parser.instantiate(cfg)
    assert init.training.gradient_restriction == 0.005
    methods = [type(m).__name__ for m in init.methods]
    assert methods == ["Retrain", *spec.rows[2:]]
    for check in spec.checks:
        assert check["row"] in spec.rows and check.get("of_row", "original") in spec.rows
    cells = {(c.row, c.metric): c for c in spec.paper_cells}
    assert {k: c.value for k, c in cells.items()} == {
        ("IAU", "time/unlearn_s"): 13.0,
        ("FisherForgetting", "time/unlearn_s"): 1294.0,
    }
    assert all(not c.primary and "arxiv.org/abs/2507.23257" in c.source for c in cells.values())

    data = str(tmp_path)  # any existing root: build_config only checks it exists
    config, *_, mode = build_config(spec, ReproduceOptions(data_root=data))
    assert (
        config["training"]["gradient_restriction"] == 0.005 and mode == "full setting of the spec"
    )
    plain = ReproduceOptions(data_root=data, training={"gradient_restriction": 0.0})
    config, *_, mode = build_config(spec, plain)
    assert config["training"]["gradient_restriction"] == 0.0 and config["training"]["epochs"] == 15
    assert "training override (gradient_restriction=0.0): not the table's schedule" in mode
    assert spec.experiment["training"]["gradient_restriction"] == 0.005  # the spec is left as is
    with pytest.raises(ValueError, match="--training must be a YAML mapping"):
        build_config(spec, ReproduceOptions(data_root=data, training=[1]))  # type: ignore[arg-type]


def test_iau_smoke_runs_every_row_from_a_gr_original(tmp_path, capsys, caplog):
    data = SHARED / "data" / "cifar10-jpeg-q75.tar.gz"
    smoke_every_row(tmp_path, capsys, "iau_cifar10", data)
    keys = [
        json.loads(m.read_text())["key"]
        for m in (tmp_path / "cache").glob("models/*/manifest.json")
    ]
    schedules = {k["kind"]: k["schedule"] for k in keys}
    assert schedules["original"]["gradient_restriction"] == 0.005
    assert "gradient_restriction" not in schedules["retrained"]  # θ_r: plain CE
