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
    assert set(document) == {"config", "rows"}
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
    assert {"forget_vs_test", "per_class_accuracy", "mia/SSD"} <= set(paths)
    for key in ("forget_vs_test", "per_class_accuracy", "mia/SSD"):
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
