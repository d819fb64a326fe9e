"""Report writer: JSON schema, Markdown order and formatting, run directories, PNG plots."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from unlearnkit.evaluation import report
from unlearnkit.evaluation.plots import (
    plot_forget_vs_test,
    plot_mia_histogram,
    plot_per_class_accuracy,
)
from unlearnkit.evaluation.report import (
    file_slug,
    format_markdown_table,
    format_value,
    new_run_dir,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows() -> list[dict]:
    return [
        {
            "method": "SSD",
            "metrics": {
                "forget/acc": 0.93251,
                "retain/acc": 0.99,
                "test/acc": 0.9,
                "mia/efficacy": 0.125,
                "gap/avg": 0.0123,
                "time/unlearn_s": 12.3456,
                "test/js": 0.0123456,
            },
            "per_class_accuracy": [0.9, 0.8, float("nan")],
            "mia_scores": {"retain": np.linspace(0.5, 1, 50), "forget": np.linspace(0, 1, 20)},
            "hparams": {"alpha": 10.0},
        },
        {"method": "original", "metrics": {"forget/acc": 1.0, "retain/acc": 1.0, "test/acc": 0.91}},
        {
            "method": "retrain",
            "metrics": {"forget/acc": 0.92, "retain/acc": 1.0, "test/acc": 0.905, "gap/avg": 0.0},
            "per_class_accuracy": [0.95, 0.85, 0.5],
        },
        {"method": "FT", "metrics": {"forget/acc": 0.5, "test/acc": float("nan")}},
    ]


def _table_lines(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_write_report_json_schema(tmp_path: Path) -> None:
    paths = write_report(tmp_path / "run", {"seed": 3, "lr": 0.5, "bad": float("nan")}, _rows())
    document = json.loads(paths["json"].read_text())
    assert set(document) == {"config", "environment", "rows"}
    assert document["config"] == {"seed": 3, "lr": 0.5, "bad": None}
    methods = [row["method"] for row in document["rows"]]
    assert methods == ["SSD", "original", "retrain", "FT"]  # JSON keeps the given order
    ssd = document["rows"][0]
    assert ssd["metrics"]["forget/acc"] == 0.93251  # a JSON number, as a fraction
    assert ssd["metrics"]["time/unlearn_s"] == 12.3456  # stored unrounded (the table rounds)
    assert ssd["per_class_accuracy"] == [0.9, 0.8, None]  # NaN -> null
    assert ssd["hparams"] == {"alpha": 10.0}
    assert "mia_scores" not in ssd  # plotted, not stored
    assert document["rows"][3]["metrics"]["test/acc"] is None
    assert "NaN" not in paths["json"].read_text()


def test_write_report_markdown_order_and_formatting(tmp_path: Path) -> None:
    paths = write_report(tmp_path, {}, _rows())
    table = _table_lines(paths["markdown"].read_text())
    header, body = table[0], table[2:]
    assert header[:7] == [
        "method",
        "forget/acc (%)",
        "retain/acc (%)",
        "test/acc (%)",
        "mia/efficacy (%)",
        "gap/avg (%)",
        "time/unlearn_s (s)",
    ]
    assert header[7] == "test/js"
    assert [row[0] for row in body] == ["retrain", "original", "SSD", "FT"]
    ssd = body[2]
    assert ssd[1:8] == ["93.25", "99.00", "90.00", "12.50", "1.23", "12.35", "0.01235"]
    assert body[0][1] == "92.00" and body[0][4] == "—"  # retrain has no MIA value
    assert body[3][3] == "NaN"
    text = paths["markdown"].read_text()
    assert "over-unlearning" in text and "`FT`" in text  # FT: 50% vs retrain 92%
    assert "`SSD` forget accuracy" not in text


def test_write_report_plots_are_valid_pngs(tmp_path: Path) -> None:
    paths = write_report(tmp_path, {"class_names": ["cat", "dog", "frog"]}, _rows())
    slug = file_slug(_rows()[0].get("forget", ""))
    names = {k: v.name for k, v in paths.items() if k.endswith("_" + slug)}
    assert set(names) == {
        f"{k}_{slug}" for k in ("forget_vs_test", "per_class_accuracy", "mia_scores")
    }
    assert names[f"mia_scores_{slug}"] == f"mia_scores_{slug}.png"  # one grid for the request
    for key in names:
        data = paths[key].read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, key
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_write_report_refuses_to_overwrite(tmp_path: Path) -> None:
    write_report(tmp_path, {"seed": 0}, _rows())
    before = (tmp_path / "report.json").read_bytes()
    with pytest.raises(FileExistsError, match="new_run_dir"):
        write_report(tmp_path, {"seed": 1}, _rows())
    assert (tmp_path / "report.json").read_bytes() == before


def test_write_report_rejects_bad_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metrics"):
        write_report(tmp_path, {}, [{"method": "SSD"}])
    with pytest.raises(ValueError, match="at least one row"):
        write_report(tmp_path, {}, [])
    with pytest.raises(TypeError, match="rows\\[0\\].metrics.x"):
        write_report(tmp_path, {}, [{"method": "SSD", "metrics": {"x": object()}}])
    assert not (tmp_path / "report.json").exists()


def test_new_run_dir_never_reuses_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return datetime(2024, 5, 1, 12, 0, 0)

    monkeypatch.setattr(report, "datetime", FrozenClock)
    first = new_run_dir(tmp_path, "ssd")
    second = new_run_dir(tmp_path, "ssd")
    third = new_run_dir(tmp_path, "ssd")
    assert first.name == "20240501-120000-ssd"
    assert second.name == "20240501-120000-ssd-1"
    assert third.name == "20240501-120000-ssd-2"
    assert all(p.is_dir() and not any(p.iterdir()) for p in (first, second, third))
    assert new_run_dir(tmp_path).name == "20240501-120000"
    with pytest.raises(ValueError, match="path separators"):
        new_run_dir(tmp_path, "a/b")


def test_format_markdown_table_options() -> None:
    rows = [
        {"method": "ours", "metrics": {"test/acc": 0.5, "speedup": 12.0}},
        {"method": "retrain", "metrics": {"test/acc": 0.75}},
    ]
    kept = _table_lines(format_markdown_table(rows, columns=["test/acc"], sort_methods=False))
    assert kept[0] == ["method", "test/acc (%)"]
    assert [r[0] for r in kept[2:]] == ["ours", "retrain"]
    assert [r[1] for r in kept[2:]] == ["50.00", "75.00"]
    custom = _table_lines(
        format_markdown_table(rows, formatters={"speedup": lambda v: f"{v:.1f}x"})
    )
    assert custom[2] == ["retrain", "75.00", "—"]
    assert custom[3] == ["ours", "50.00", "12.0x"]
    assert format_value("test/recall@20", 0.1234) == "12.34"
    assert format_value("time/retrain_s", 3.14159) == "3.14"
    assert format_value("test/kl", 0.000123456) == "0.0001235"


def test_plot_functions_write_pngs_and_check_input(tmp_path: Path) -> None:
    rows = _rows()
    out = plot_forget_vs_test(rows, tmp_path / "scatter.png")
    bars = plot_per_class_accuracy(
        {"a": [0.1, 0.9], "b": [0.5, 0.5]}, ["x", "y"], tmp_path / "b.png"
    )
    hist = plot_mia_histogram(
        {"retain": np.random.default_rng(0).random(100), "test": np.linspace(0, 1, 10)},
        tmp_path / "h.png",
        xlabel="prediction entropy (nats)",
    )
    for path in (out, bars, hist):
        assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="forget/acc"):
        plot_forget_vs_test([{"method": "x", "metrics": {}}], tmp_path / "none.png")
    with pytest.raises(ValueError, match="one accuracy per class"):
        plot_per_class_accuracy({"a": [0.1]}, ["x", "y"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="non-empty"):
        plot_mia_histogram({"a": np.array([])}, tmp_path / "empty.png")


def test_plotting_leaves_the_users_matplotlib_backend_alone(tmp_path: Path) -> None:
    # A user's session with the SVG backend selected: plotting must not switch it to Agg.
    import matplotlib

    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plot_mia_histogram({"a": [0.1, 0.2]}, tmp_path / "x.png")
        assert matplotlib.get_backend().lower() == "svg"
    finally:
        matplotlib.use(previous)
    assert (tmp_path / "x.png").read_bytes()[:8] == PNG_MAGIC


# --------------------------------------------------------------------------------------------
# environment, CSV, HTML, console tables, number formats
# --------------------------------------------------------------------------------------------
def test_report_json_records_the_environment(tmp_path: Path, monkeypatch) -> None:
    import platform
    import sys

    import torch

    monkeypatch.setattr(sys, "argv", ["unlearnkit", "run", "--seed", "3"])
    document = json.loads(write_report(tmp_path, {}, _rows())["json"].read_text())
    env = document["environment"]
    again = report.environment()  # the same collection (date and commit may move on)
    assert {k: v for k, v in env.items() if k not in ("date", "git_commit", "git_root")} == {
        k: v for k, v in again.items() if k not in ("date", "git_commit", "git_root")
    }
    assert env["python"] == platform.python_version()
    assert env["command"] == ["unlearnkit", "run", "--seed", "3"]
    packages = env["packages"]
    assert set(packages) == {
        "torch",
        "lightning",
        "unlearnkit",
        "numpy",
        "scikit-learn",
        "torch-geometric",
        "timm",
    }
    assert packages["torch"] == torch.__version__.split("+")[0] or packages["torch"].startswith(
        torch.__version__.split("+")[0]
    )
    assert packages["numpy"] == np.__version__
    assert all(v is None or isinstance(v, str) for v in packages.values())
    assert isinstance(env["cpu"]["model"], str) and env["cpu"]["model"]
    assert isinstance(env["cpu"]["count"], int) and env["cpu"]["count"] >= 1
    assert env["gpus"] == [
        torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
    ] or (not torch.cuda.is_available() and env["gpus"] == [])
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["git_commit"] is None or (
        isinstance(env["git_commit"], str) and len(env["git_commit"]) == 40
    )
    stamp = datetime.fromisoformat(env["date"])
    assert stamp.tzinfo is not None and abs((datetime.now(stamp.tzinfo) - stamp).days) < 1


def test_environment_git_commit_of_a_checkout_and_none_outside(tmp_path: Path, monkeypatch):
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    (repo / "a.txt").write_text("a")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run(
        [*git[:3], "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert report._git_commit(repo) == (head, str(repo.resolve()))
    outside = tmp_path / "plain"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert report._git_commit(outside) == (None, None)


def test_report_csv_has_every_row_and_metric(tmp_path: Path) -> None:
    import csv

    rows = [{**row, "forget": "class 0"} for row in _rows()]
    rows.append({"method": "retrain", "forget": "random 10 % (seed 0)", "metrics": {"x": 2.5}})
    path = write_report(tmp_path, {}, rows)["csv"]
    assert path.name == "report.csv"
    with path.open(newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [(r["method"], r["forget"]) for r in read] == [
        ("SSD", "class 0"),
        ("original", "class 0"),
        ("retrain", "class 0"),
        ("FT", "class 0"),
        ("retrain", "random 10 % (seed 0)"),
    ]
    assert list(read[0])[:10] == [
        "method",
        "forget",
        "status",
        "error",
        "forget/acc",
        "retain/acc",
        "test/acc",
        "mia/efficacy",
        "gap/avg",
        "time/unlearn_s",
    ]
    assert {"test/js", "x"} <= set(read[0])
    assert float(read[0]["forget/acc"]) == 0.93251  # full precision
    assert float(read[0]["time/unlearn_s"]) == 12.3456
    assert read[3]["test/acc"] == ""  # NaN
    assert read[1]["mia/efficacy"] == ""  # missing
    assert float(read[4]["x"]) == 2.5


def test_report_html_is_self_contained(tmp_path: Path) -> None:
    rows = [{**row, "forget": "class 0"} for row in _rows()]
    rows += [{**row, "forget": "class 1"} for row in _rows()]
    # a plot the experiment wrote itself (as the recommender's rank histograms), for class 1
    plot_mia_histogram({"a": [0.1, 0.2]}, tmp_path / "ranks_class_1.png")
    paths = write_report(tmp_path, {"seed": 0}, rows)
    text = paths["html"].read_text()
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 7  # 3 plots x 2 requests + the experiment's own
    assert text.count("data:image/png;base64,") == len(pngs)
    assert text.count("<table") == 2
    assert "<td>93.25</td>" in text  # same number format as report.md
    assert 'src="http' not in text and "href=" not in text and "<link" not in text
    assert "<script" not in text
    import base64

    first = pngs[0].read_bytes()
    assert base64.b64encode(first).decode() in text
    markdown = paths["markdown"].read_text()
    for png in pngs:
        assert f"({png.name})" in markdown  # report.md links every plot
    assert "mia_scores_class_0.png" in {p.name for p in pngs}
    assert markdown.count("(ranks_class_1.png)") == 1
    assert markdown.index("## Forget request `class 1`") < markdown.index("(ranks_class_1.png)")


def test_format_value_speedup_and_divergence_round_off() -> None:
    assert format_value("time/speedup", 12.345) == "12.3×"
    assert format_value("forget/js_to_retrain", -1.9e-19) == "0"
    assert format_value("forget/js_to_retrain", 4.57e-18) == "0"
    assert format_value("forget/js_to_retrain", 0.006237) == "0.006237"
    assert format_value("score/kl", 0.25) == "0.25"
    assert (
        format_value("time/unlearn_s", 1.005) == "1.00"
        or format_value("time/unlearn_s", 1.005) == "1.01"
    )
    assert format_value("test/acc", 0.98765) == "98.77"


def _many_rows(forget: str) -> list[dict]:
    names = ["GradientAscent", "NegGradPlus", "RandomLabel", "original", "retrain", "SSD"]
    rows = []
    for k, name in enumerate(names):
        metrics = {
            "forget/acc": 1.0 - 0.1 * k,
            "retain/acc": 0.999,
            "test/acc": 0.98,
            "mia/efficacy": 0.5,
            "gap/avg": 0.0123,
            "forget/js_to_retrain": 0.123456 if name != "retrain" else -1.9e-19,
            "time/unlearn_s": 123.456,
            "time/speedup": 1234.5 if name != "original" else None,
            "test_forget/acc": 0.0,
            "tow": 0.98,
        }
        rows.append({"method": name, "forget": forget, "metrics": metrics})
    return rows


def test_vision_console_table_fits_100_columns_retrain_first() -> None:
    from rich.console import Console

    from unlearnkit.vision.experiment import summary_renderables

    rows = _many_rows("class 0") + _many_rows("random 10 % (seed 0)")
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for part in summary_renderables(rows):
        console.print(part)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    body = [line.split() for line in lines if line.strip()]
    methods = [cells[0] for cells in body if cells[0] in {r["method"] for r in rows}]
    assert methods[:2] == ["retrain", "original"]
    assert methods.count("retrain") == 2
    retrain = next(cells for cells in body if cells[0] == "retrain")
    assert retrain[1:] == ["60.00", "99.90", "98.00", "50.00", "1.23", "0", "123.46", "1234.5×"]
    assert "Forget request: random 10 % (seed 0)" in text
    assert "-1.9e-19" not in text and "e-19" not in text


def test_recsys_console_table_fits_100_columns_same_formats() -> None:
    from rich.console import Console

    from unlearnkit.recsys.experiment import SUMMARY_COLUMNS, format_summary, summary_renderables

    rows = []
    for name in ["ReverseBPR", "retrain", "original", "GradientAscent"]:
        metrics = {key: 0.2468 for key in SUMMARY_COLUMNS}
        metrics.update({"forget/mean_rank": 812.4, "time/unlearn_s": 3.14159})
        metrics.update({"time/speedup": 12.34, "params/trained": 123456789})
        rows.append(
            {
                "method": name,
                "forget": "user 5 % (seed 0)",
                "metrics": metrics,
                "forget_edges": 1234,
                "removed_users": 33,
                "removed_items": 4,
            }
        )
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for part in summary_renderables(rows):
        console.print(part)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    body = [line.split() for line in text.splitlines() if line.strip()]
    methods = [
        c[0] for c in body if c[0] in {"retrain", "original", "ReverseBPR", "GradientAscent"}
    ]
    assert methods == ["retrain", "original", "ReverseBPR", "GradientAscent"]
    retrain = next(c for c in body if c[0] == "retrain")
    # percent with 2 decimals, rank as an integer, JS 4 digits, seconds 2 decimals, 12.3×
    assert retrain[1:] == [
        "24.68",
        "24.68",
        "24.68",
        "24.68",
        "812",
        "24.68",
        "0.2468",
        "3.14",
        "12.3×",
    ]
    assert format_summary(rows, width=100) == format_summary(rows, width=100)
    assert "user 5 % (seed 0) (1234 interactions" in text


def test_per_class_zoom_starts_below_the_lowest_kept_class(tmp_path: Path) -> None:
    from unlearnkit.evaluation.plots import _zoom_bottom

    heights = {"retrain": np.array([0.0, 97.7, 91.3]), "SSD": np.array([40.0, 99.0, np.nan])}
    assert _zoom_bottom(heights, [0]) == 90.0  # class 0 (0 % and 40 %) is forgotten: ignored
    assert _zoom_bottom(heights, []) == 0.0  # nothing forgotten: the 0 % bar is in range
    assert _zoom_bottom({"a": np.array([80.0, 100.0])}, []) == 75.0  # a point below, step 5
    assert _zoom_bottom({"a": np.array([95.5, 100.0])}, []) == 90.0
    path = plot_per_class_accuracy(
        {"retrain": [0.0, 0.977, 0.913], "SSD": [0.4, 0.99, 0.95]},
        ["a", "b", "c"],
        tmp_path / "pc.png",
        forgotten=[0],
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="class ids in 0..2"):
        plot_per_class_accuracy(
            {"a": [0.1, 0.2, 0.3]}, ["a", "b", "c"], tmp_path / "x.png", forgotten=[3]
        )


def test_mia_grid_is_one_figure_with_a_panel_per_method(tmp_path: Path) -> None:
    from unlearnkit.evaluation.plots import plot_mia_grid

    rng = np.random.default_rng(0)
    scores = {
        name: {"retain": rng.random(50), "test": rng.random(20), "forget": rng.random(10)}
        for name in ("retrain", "original", "SSD", "FT")
    }
    path = plot_mia_grid(scores, tmp_path / "grid.png")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (int(120 * (3 * 3.4 + 0.4)), int(120 * (2 * 2.6 + 0.9)))  # 3 x 2
    with pytest.raises(ValueError, match="non-empty"):
        plot_mia_grid({"a": {"retain": []}}, tmp_path / "none.png")
