"""Run directories and reports: ``report.json`` (machine), ``report.md`` (human), PNG plots.

A report row is ``{"method": str, "metrics": {"split/metric": float, ...}, **extra}``. Metric
values are fractions in ``[0, 1]`` for accuracies and rates and seconds for times; the Markdown
table shows the former as percent. Optional extras used by the writer:

* ``"per_class_accuracy"``: list of per-class accuracies (fractions) -> ``per_class_accuracy.png``
  (class names from ``config["class_names"]`` if present);
* ``"mia_scores"``: ``{split: (N,) array}`` from :func:`~unlearnkit.evaluation.mia.mia_scores` ->
  ``mia_<method>.png``. These per-sample arrays are plotted only, not written to the JSON.

Every other extra is written to the JSON as is (tensors and arrays as lists).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.atomic import atomic_write_bytes
from unlearnkit.evaluation import plots
from unlearnkit.evaluation.metrics import OVER_UNLEARNING_TOLERANCE, over_unlearning_reasons

__all__ = [
    "REPORT_COLUMNS",
    "atomic_write_bytes",
    "format_markdown_table",
    "format_value",
    "is_percent_metric",
    "is_seconds_metric",
    "new_run_dir",
    "order_rows",
    "write_report",
]

#: Leading columns of the Markdown table, in this order; other metric keys follow.
REPORT_COLUMNS: tuple[str, ...] = (
    "forget/acc",
    "retain/acc",
    "test/acc",
    "mia/efficacy",
    "gap/avg",
    "time/unlearn_s",
)
#: Keys kept out of the default Markdown columns (still in report.json): redundant or flags.
HIDDEN_COLUMNS: tuple[str, ...] = ("forget/ua", "flag/over_unlearning", "time/train_s")

_METHOD_ORDER = {"retrain": 0, "original": 1}
_PERCENT_NAMES = ("acc", "ua", "ra", "ta", "efficacy", "recall", "ndcg", "hit", "precision")
_PLOT_ONLY_KEYS = ("mia_scores",)


def new_run_dir(base: str | Path, name: str | None = None) -> Path:
    """Create and return a fresh run directory ``base/<YYYYmmdd-HHMMSS>[-name][-k]``.

    The directory is created with ``exist_ok=False``; when the name is taken (two runs in the same
    second) a counter ``-1``, ``-2``, ... is appended, so an existing directory is never reused.

    Args:
        base: parent directory (created if missing).
        name: optional label appended to the timestamp (letters, digits, ``.``, ``_``, ``-``).

    Returns:
        The new, empty directory.

    Raises:
        ValueError: ``name`` is empty or holds other characters (e.g. a path separator).
    """
    valid = name is None or (re.fullmatch(r"[A-Za-z0-9._-]+", name) and name not in {".", ".."})
    if not valid:
        raise ValueError(
            f"run name {name!r} must be letters, digits, '.', '_' or '-' (no path separators)"
        )
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stem = datetime.now().strftime("%Y%m%d-%H%M%S") + (f"-{name}" if name else "")
    counter = 0
    while True:
        candidate = base / (stem if counter == 0 else f"{stem}-{counter}")
        try:
            candidate.mkdir(exist_ok=False)
        except FileExistsError:
            counter += 1
            continue
        return candidate


def is_percent_metric(key: str) -> bool:
    """Whether ``key`` is an accuracy or rate (a fraction shown as percent in tables).

    True for keys under ``mia/`` and ``gap/`` (gaps of fractions are percentage points) and for
    metric names ``acc``, ``ua``, ``ra``, ``ta``, ``efficacy`` or starting with ``acc``, ``recall``,
    ``ndcg``, ``hit``, ``precision`` (``test/recall@20``, ``forget/acc_worst_group``).
    """
    prefix, _, name = key.rpartition("/")
    if prefix.split("/")[0] in {"mia", "gap"}:
        return True
    return name.lower().startswith(_PERCENT_NAMES)


def is_seconds_metric(key: str) -> bool:
    """Whether ``key`` is a time in seconds (a name ending in ``_s``, e.g. ``time/unlearn_s``)."""
    return key.endswith("_s")


def format_value(key: str, value: Any) -> str:
    """Format one metric for a Markdown cell.

    Percent metrics (:func:`is_percent_metric`) as ``100 * value`` with 2 decimals, seconds with 2
    decimals, anything else with 4 significant digits; ``None`` as an em dash, NaN as ``NaN``.

    Args:
        key: the metric's key, e.g. ``"forget/acc"``.
        value: the metric's value (a fraction for percent metrics).

    Returns:
        The cell text, e.g. ``"93.25"`` for ``("test/acc", 0.9325)``.
    """
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if is_seconds_metric(key):
        return f"{number:.2f}"
    if is_percent_metric(key):
        return f"{100.0 * number:.2f}"
    return f"{number:.4g}"


def _header(key: str) -> str:
    if is_seconds_metric(key):
        return f"{key} (s)"
    if is_percent_metric(key):
        return f"{key} (%)"
    return key


def order_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows with method ``"retrain"`` first, then ``"original"``, then the rest in given order."""
    indexed = list(enumerate(rows))
    indexed.sort(key=lambda item: (_METHOD_ORDER.get(str(item[1].get("method")), 2), item[0]))
    return [row for _, row in indexed]


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of dicts, got {type(rows).__name__}")
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"rows[{index}] is a {type(row).__name__}; each row must be a dict")
        if not isinstance(row.get("method"), str):
            raise ValueError(f"rows[{index}] needs a 'method' string (e.g. 'retrain', 'SSD')")
        if not isinstance(row.get("metrics"), Mapping):
            raise ValueError(
                f"rows[{index}] ({row['method']}) needs a 'metrics' dict of split/metric -> float"
            )


def format_markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    sort_methods: bool = True,
    formatters: Mapping[str, Callable[[Any], str]] | None = None,
) -> str:
    """A GitHub-flavoured Markdown table, one row per method.

    Args:
        rows: ``{"method": str, "metrics": {key: value}}`` dicts.
        columns: metric keys to show, in order. Default: :data:`REPORT_COLUMNS` that any row has,
            then every other metric key in first-seen order.
        sort_methods: put ``retrain`` first and ``original`` second (:func:`order_rows`); ``False``
            keeps the given order (e.g. for a "paper vs ours" table).
        formatters: per-column overrides ``{key: value -> str}``; other columns use
            :func:`format_value` (percent with 2 decimals, seconds with 2 decimals).

    Returns:
        The table as text ending in a newline; a missing value shows as an em dash.

    Raises:
        TypeError: ``rows`` is not a list of dicts.
        ValueError: a row lacks ``method`` or ``metrics``.
    """
    _check_rows(rows)
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row["metrics"]))
        columns = [key for key in REPORT_COLUMNS if key in seen]
        columns += [key for key in seen if key not in REPORT_COLUMNS + HIDDEN_COLUMNS]
    formatters = formatters or {}
    ordered = order_rows(rows) if sort_methods else list(rows)
    lines = [
        "| " + " | ".join(["method", *(_header(key) for key in columns)]) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * len(columns)) + "|",
    ]
    for row in ordered:
        metrics = row["metrics"]
        cells = [str(row["method"]).replace("|", "\\|")]
        for key in columns:
            value = metrics.get(key)
            formatter = formatters.get(key)
            cells.append(
                formatter(value) if formatter and value is not None else format_value(key, value)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _jsonable(value: Any, where: str) -> Any:
    """Convert to plain JSON types; non-finite floats become ``None`` (JSON ``null``)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, (torch.Tensor, np.ndarray)):
        data = value.detach().cpu().tolist() if isinstance(value, torch.Tensor) else value.tolist()
        return _jsonable(data, where)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise TypeError(
        f"report value at {where} is a {type(value).__name__}; pass numbers, strings, lists, "
        "dicts, tensors or arrays"
    )


def _has_forget_and_test(metrics: Mapping[str, Any]) -> bool:
    forget = metrics.get("forget/acc", metrics.get("forget/ua"))
    test = metrics.get("test/acc")
    return all(v is not None and math.isfinite(float(v)) for v in (forget, test))


def _warnings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    reference = next((row for row in rows if row["method"] == "retrain"), None)
    if reference is None:
        return []
    notes = []
    for row in rows:
        if row["method"] in ("retrain", "original"):
            continue
        reasons = over_unlearning_reasons(row["metrics"], reference["metrics"])
        if reasons:
            notes.append(
                f"> **Warning:** `{row['method']}` over-unlearning: {'; '.join(reasons)} (more "
                f"than {100 * OVER_UNLEARNING_TOLERANCE:g} points past the retrained model)."
            )
    return notes


def _write_plots(
    run_dir: Path, config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], suffix: str
) -> dict[str, Path]:
    written: dict[str, Path] = {}
    if any(_has_forget_and_test(row["metrics"]) for row in rows):
        written["forget_vs_test"] = plots.plot_forget_vs_test(
            rows, run_dir / f"forget_vs_test{suffix}.png"
        )
    per_class = {
        row["method"]: torch.as_tensor(row["per_class_accuracy"], dtype=torch.float64)
        .flatten()
        .tolist()
        for row in rows
        if row.get("per_class_accuracy") is not None
    }
    if per_class:
        num_classes = len(next(iter(per_class.values())))
        names = (
            config.get("class_names")
            or next((r["class_names"] for r in rows if r.get("class_names")), None)
            or [str(index) for index in range(num_classes)]
        )
        written["per_class_accuracy"] = plots.plot_per_class_accuracy(
            per_class, list(names), run_dir / f"per_class_accuracy{suffix}.png"
        )
    for row in rows:
        scores = row.get("mia_scores")
        if scores:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", row["method"])
            written[f"mia/{row['method']}"] = plots.plot_mia_histogram(
                scores,
                run_dir / f"mia_{slug}{suffix}.png",
                title=f"MIA feature by split: {row['method']}",
            )
    return written


def write_report(
    run_dir: str | Path, config: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the plots of one run into ``run_dir``.

    ``report.json`` has the schema ``{"config": {...}, "rows": [{"method", "metrics", ...}]}``
    with floats as JSON numbers and NaN/inf as ``null``. ``report.md`` holds the Markdown table
    (:func:`format_markdown_table`: retrain first, then original, then the given order; percent
    and seconds with 2 decimals), over-unlearning warnings, and the config. Plots:
    ``forget_vs_test.png`` (when rows carry forget and test accuracy), ``per_class_accuracy.png``
    and ``mia_<method>.png`` (when rows carry those extras, see the module docstring). All files
    are written atomically.

    Args:
        run_dir: the run's directory (created if missing), e.g. from :func:`new_run_dir`.
        config: the run's configuration (JSON-serializable; tensors/arrays become lists).
        rows: one dict per method, ``{"method": str, "metrics": {key: float}, **extra}``.

    Returns:
        Paths written, keyed ``"json"``, ``"markdown"``, and ``"forget_vs_test"``,
        ``"per_class_accuracy"``, ``"mia/<method>"`` for the plots made.

    Raises:
        FileExistsError: ``run_dir`` already holds a ``report.json``.
        TypeError: ``config`` is not a dict, ``rows`` is not a list of dicts, or a value cannot be
            written to JSON.
        ValueError: ``rows`` is empty or a row lacks ``method``/``metrics``.
    """
    _check_rows(rows)
    if len(rows) == 0:
        raise ValueError("write_report needs at least one row; evaluate at least one model")
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    run_dir = Path(run_dir)
    if (run_dir / "report.json").exists():
        raise FileExistsError(
            f"{run_dir} already has a report.json; write into a fresh directory from "
            "new_run_dir(base) instead of overwriting an earlier run"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    json_rows = [
        _jsonable({k: v for k, v in row.items() if k not in _PLOT_ONLY_KEYS}, f"rows[{i}]")
        for i, row in enumerate(rows)
    ]
    document = {"config": _jsonable(dict(config), "config"), "rows": json_rows}
    written: dict[str, Path] = {}
    markdown = ["# Unlearning report", ""]
    markdown.append(
        "Accuracies and rates in percent; times in seconds. The retrained model is the target: "
        "the closer a method's numbers are to `retrain`, the better."
    )
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:  # one table (and one set of plots) per forget request
        groups.setdefault(str(row.get("forget", "")), []).append(row)
    for label, group in groups.items():
        suffix = (
            "" if len(groups) == 1 else "_" + re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")
        )
        if len(groups) > 1:
            markdown += ["", f"## Forget request `{label}`"]
        markdown += ["", format_markdown_table(group)]
        for note in _warnings(group):
            markdown += [note, ""]
        for key, path in _write_plots(run_dir, config, group, suffix).items():
            written[f"{key}{suffix}"] = path
            markdown += [f"![{key}]({path.name})", ""]
    config_text = json.dumps(document["config"], indent=2, allow_nan=False)
    markdown += ["## Config", "", "```json", config_text, "```", ""]
    written["markdown"] = atomic_write_bytes(
        run_dir / "report.md", "\n".join(markdown).encode("utf-8")
    )
    # report.json last: its presence marks a finished report (write_report refuses to redo it).
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    written["json"] = atomic_write_bytes(run_dir / "report.json", text.encode("utf-8"))
    return written
