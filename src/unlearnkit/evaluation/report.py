"""Run directories and reports: ``report.json`` and ``report.csv`` (machine), ``report.md`` and
``report.html`` (human), PNG plots, and the rich tables printed on the console.

A report row is ``{"method": str, "metrics": {"split/metric": float, ...}, **extra}``. Metric
values are fractions in ``[0, 1]`` for accuracies and rates and seconds for times; the Markdown
table shows the former as percent. Optional extras used by the writer:

* ``"per_class_accuracy"``: list of per-class accuracies (fractions) -> ``per_class_accuracy.png``
  (class names from ``config["class_names"]`` if present);
* ``"forget_classes"``: ids of the forgotten classes (shaded in ``per_class_accuracy.png``);
* ``"forget_class_counts"``: ``{set label: [count per class]}`` (a searched forget set and a
  random set of the same size) -> ``forget_classes.png``;
* ``"mia_scores"``: ``{split: (N,) array}`` from :func:`~unlearnkit.evaluation.mia.mia_scores` ->
  one grid ``mia_scores.png`` per request, a panel per method. These per-sample arrays are
  plotted only, not written to the JSON.

Every other extra is written to the JSON as is (tensors and arrays as lists).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unlearnkit.atomic import atomic_write_bytes
from unlearnkit.evaluation import plots
from unlearnkit.evaluation.metrics import OVER_UNLEARNING_TOLERANCE, over_unlearning_reasons

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = [
    "CONSOLE_COLUMNS",
    "CONSOLE_WIDTH",
    "REPORT_COLUMNS",
    "atomic_write_bytes",
    "console_table",
    "environment",
    "file_slug",
    "format_markdown_table",
    "format_value",
    "is_percent_metric",
    "is_seconds_metric",
    "new_run_dir",
    "order_rows",
    "render_text",
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

#: Columns of the console table of a classifier run (report.md, .csv and .html have them all).
CONSOLE_COLUMNS: tuple[str, ...] = (
    "forget/acc",
    "retain/acc",
    "test/acc",
    "mia/efficacy",
    "gap/avg",
    "forget/js_to_retrain",
    "time/unlearn_s",
    "time/speedup",
)
#: Console tables are laid out for this many columns (narrower when the terminal is).
CONSOLE_WIDTH = 100
#: Packages whose versions ``report.json`` records (``None`` when not installed).
ENVIRONMENT_PACKAGES: tuple[str, ...] = (
    "torch",
    "lightning",
    "unlearnkit",
    "numpy",
    "scikit-learn",
    "torch-geometric",
    "timm",
)

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


def file_slug(label: str) -> str:
    """A file-name-safe form of a request label, e.g. ``random_10_pct_seed_0``.

    ``%`` becomes ``pct`` (so ``random 10 %`` and ``random 10`` stay apart), every run of other
    characters than letters, digits, ``.``, ``_`` and ``-`` one ``_``; leading and trailing
    ``.``/``_`` are dropped, and an empty result is ``request``.

    Args:
        label: e.g. :attr:`unlearnkit.data.ForgetSpec.label`.

    Returns:
        The slug (never a path separator, never ``.`` or ``..``).
    """
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", label.replace("%", "pct"))
    return text.strip("._") or "request"


def _git_commit(*places: Path) -> tuple[str | None, str | None]:
    for place in places:
        try:
            done = subprocess.run(
                ["git", "-C", str(place), "rev-parse", "HEAD", "--show-toplevel"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None, None  # no git on this machine
        lines = done.stdout.split()
        if done.returncode == 0 and len(lines) == 2 and re.fullmatch(r"[0-9a-f]{40,64}", lines[0]):
            return lines[0], lines[1]
    return None, None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """What ran the experiment, recorded in ``report.json`` under ``"environment"``.

    Returns:
        ``{"python": "3.11.9", "packages": {name: version or None}, "platform": str,
        "cpu": {"model": str, "count": int}, "gpus": [names] ([] without CUDA),
        "torch_threads": int, "git_commit": sha or None, "git_root": path or None,
        "date": ISO 8601 with time zone, "command": sys.argv}``. The git commit is the one of
        the checkout holding the unlearnkit package, else of the current directory; ``None``
        when neither is a git checkout (or git is missing).
    """
    packages: dict[str, str | None] = {}
    for name in ENVIRONMENT_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    commit, root = _git_commit(Path(__file__).resolve().parent, Path.cwd())
    return {
        "python": platform.python_version(),
        "packages": packages,
        "platform": platform.platform(),
        "cpu": {"model": _cpu_model(), "count": os.cpu_count() or 1},
        "gpus": gpus,
        "torch_threads": torch.get_num_threads(),
        "git_commit": commit,
        "git_root": root,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": list(sys.argv),
    }


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
    decimals, speed-ups (a key ending in ``speedup``) as ``12.3×``, divergences (``js``/``kl`` in
    the name, never negative) below ``1e-12`` (float round-off such as ``-1.9e-19``) as ``0``,
    anything else with 4 significant digits; ``None`` as an em dash, NaN as ``NaN``.

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
    if key.endswith("speedup"):
        return f"{number:.1f}×"
    if _is_divergence(key) and number < 1e-12:
        return "0"  # a divergence is >= 0; -1.9e-19 or 4.6e-18 is float round-off
    return f"{number:.4g}"


def _is_divergence(key: str) -> bool:
    name = key.rpartition("/")[2].lower()
    return bool(re.search(r"(^|_)(js|kl)(_|$)", name))


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


def _over_unlearning(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    reference = next((row for row in rows if row["method"] == "retrain"), None)
    if reference is None:
        return []
    found = []
    for row in rows:
        if row["method"] in ("retrain", "original"):
            continue
        reasons = over_unlearning_reasons(row["metrics"], reference["metrics"])
        if reasons:
            found.append((str(row["method"]), reasons))
    return found


#: The note of a request whose speed-ups divide by a retrain time read from the cache.
CACHED_RETRAIN_NOTE = (
    "speed-up = retrain time / method time, with the retrain time stored with the cached "
    "retrained model (measured in an earlier run, under that run's load), not measured now"
)


def _failed(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(method, error)`` of the rows a failing method left (``status: failed``)."""
    return [
        (str(r["method"]), str(r.get("error", ""))) for r in rows if r.get("status") == "failed"
    ]


def _speedup_note(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cached = any(str(r.get("retrain_time_from", "")).startswith("cache") for r in rows)
    return [CACHED_RETRAIN_NOTE] if cached else []


def _notes(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """``(kind, method, rest)`` of one request's notes (over-unlearning, failed methods, a
    speed-up against a cached retrain time); ``method + rest`` is the note's text."""
    over = [
        (
            "Warning",
            method,
            f" over-unlearning: {'; '.join(reasons)} (more than "
            f"{100 * OVER_UNLEARNING_TOLERANCE:g} points past the retrained model).",
        )
        for method, reasons in _over_unlearning(rows)
    ]
    failed = [("Failed", method, f": {error}") for method, error in _failed(rows)]
    return over + failed + [("Note", "", f"{note}.") for note in _speedup_note(rows)]


def _warnings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        f"> **{kind}:** " + (f"`{method}`" if method else "") + rest
        for kind, method, rest in _notes(rows)
    ]


def plain_warnings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """One console line per note of one request (see :func:`write_report`).

    Args:
        rows: the rows of one forget request.

    Returns:
        Lines like ``"Warning: RandomLabel over-unlearning: ..."`` (needs a ``retrain`` row),
        ``"Failed: Boom: RuntimeError: boom"``, and a note when the speed-ups divide by a
        retrain time read from the cache.
    """
    return [f"{kind}: {method}{rest}" for kind, method, rest in _notes(rows)]


def _console_header(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if key.endswith("speedup"):
        unit = ""  # the cells say 12.3×
    elif is_seconds_metric(key):
        name, unit = name[:-2], " s"
    elif is_percent_metric(key):
        unit = " %"
    else:
        unit = ""
    words = (name + unit).replace("_", " ").split(" ")
    lines = [words[0]]
    for word in words[1:]:  # short header lines keep the columns narrow
        if len(lines[-1]) + 1 + len(word) <= 8 or word in ("%", "s", "×"):
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join([prefix, *lines] if prefix else lines)


def console_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] = CONSOLE_COLUMNS,
    *,
    title: str | None = None,
    formatters: Mapping[str, Callable[[Any], str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Table:
    """A rich table of one request's rows (retrain first, then original, then the methods).

    Cells use :func:`format_value` (percent and seconds with 2 decimals, ``12.3×``); a column
    that no row has is left out; headers are two lines (``forget`` / ``acc %``) so that the
    default columns fit :data:`CONSOLE_WIDTH`.

    Args:
        rows: ``{"method": str, "metrics": {key: value}}`` dicts of one forget request.
        columns: metric keys to show, in order.
        title: shown above the table (e.g. the request).
        formatters: per-column overrides ``{key: value -> str}``.
        headers: per-column header overrides (``\\n`` breaks a line), e.g. ``{"test/recall@20":
            "test\\nR@20 %"}``.

    Returns:
        The :class:`rich.table.Table` (print it with a :class:`rich.console.Console`, or get
        text from :func:`render_text`).

    Raises:
        TypeError: ``rows`` is not a list of dicts.
        ValueError: a row lacks ``method`` or ``metrics``.
    """
    from rich import box
    from rich.table import Table

    _check_rows(rows)
    formatters, headers = formatters or {}, headers or {}
    shown = [key for key in columns if any(key in row["metrics"] for row in rows)]
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("method", no_wrap=True)
    for key in shown:
        table.add_column(headers.get(key) or _console_header(key), justify="right", no_wrap=True)
    for row in order_rows(rows):
        cells = [str(row["method"])]
        for key in shown:
            value = row["metrics"].get(key)
            formatter = formatters.get(key)
            cells.append(
                formatter(value) if formatter and value is not None else format_value(key, value)
            )
        table.add_row(*cells)
    return table


def render_text(*renderables: RenderableType, width: int | None = None) -> str:
    """Render rich tables (or strings) to plain text, at most ``width`` characters a line.

    Args:
        *renderables: tables, strings, ...
        width: line width; default :data:`CONSOLE_WIDTH`, or the terminal's width if narrower.

    Returns:
        The text without colour codes, ending in a newline.
    """
    import shutil

    from rich.console import Console

    if width is None:
        width = min(CONSOLE_WIDTH, shutil.get_terminal_size((CONSOLE_WIDTH, 24)).columns)
    console = Console(
        file=io.StringIO(), width=width, color_system=None, force_terminal=False, highlight=False
    )
    for renderable in renderables:
        console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def _request_groups(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:  # one table (and one set of plots) per forget request
        groups.setdefault(str(row.get("forget", "")), []).append(row)
    return groups


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
        forgotten = next((r["forget_classes"] for r in rows if r.get("forget_classes")), ())
        written["per_class_accuracy"] = plots.plot_per_class_accuracy(
            per_class,
            list(names),
            run_dir / f"per_class_accuracy{suffix}.png",
            forgotten=[int(c) for c in forgotten],
        )
    counts = next((r["forget_class_counts"] for r in rows if r.get("forget_class_counts")), None)
    if counts:
        num_classes = len(next(iter(counts.values())))
        names = (
            config.get("class_names")
            or next((r["class_names"] for r in rows if r.get("class_names")), None)
            or [str(index) for index in range(num_classes)]
        )
        request = str(rows[0].get("forget") or "")
        written["forget_classes"] = plots.plot_forget_class_histogram(
            counts,
            list(names),
            run_dir / f"forget_classes{suffix}.png",
            title="Classes of the forget set" + (f" ({request})" if request else ""),
        )
    scores = {row["method"]: row["mia_scores"] for row in order_rows(rows) if row.get("mia_scores")}
    if scores:
        request = str(rows[0].get("forget") or "")
        written["mia_scores"] = plots.plot_mia_grid(
            scores,
            run_dir / f"mia_scores{suffix}.png",
            title="MIA feature by split, per method"
            + (f" ({request})" if request else "")
            + ": the closer to retrain, the better",
        )
    return written


def _other_plots(
    run_dir: Path, groups: Mapping[str, Any], label: str, made: Mapping[str, Path]
) -> list[tuple[str, Path]]:
    """PNG files the experiment wrote itself (e.g. the recommender's rank histograms) that
    belong to request ``label``: with one request every other PNG, else those ending in
    ``_<slug>.png`` (and not in a longer slug of another request)."""
    own = {path.name for path in made.values()}
    slugs = {other: file_slug(other) for other in groups}
    found = []
    for path in sorted(run_dir.glob("*.png")):
        if path.name in own or path.name.startswith(
            ("forget_vs_test", "forget_classes", "per_class", "mia_")
        ):
            continue
        if len(groups) > 1:
            owners = [o for o, slug in slugs.items() if path.stem.endswith("_" + slug)]
            if label not in owners or any(len(slugs[o]) > len(slugs[label]) for o in owners):
                continue
        found.append((path.stem, path))
    return found


def _csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    keys: dict[str, None] = {}
    for key in REPORT_COLUMNS:
        if any(key in row["metrics"] for row in rows):
            keys[key] = None
    for row in rows:
        keys.update(dict.fromkeys(row["metrics"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "forget", "status", "error", *keys])
    for row in rows:
        cells = [
            row["method"],
            row.get("forget", ""),
            row.get("status", "ok"),
            row.get("error", ""),
        ]
        for key in keys:
            value = _jsonable(row["metrics"].get(key), f"{row['method']}.{key}")
            cells.append("" if value is None else value)
        writer.writerow(cells)
    return buffer.getvalue()


def _html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row["metrics"]))
    columns = [key for key in REPORT_COLUMNS if key in seen]
    columns += [key for key in seen if key not in REPORT_COLUMNS + HIDDEN_COLUMNS]
    head = "".join(f"<th>{html.escape(_header(key))}</th>" for key in columns)
    body = []
    for row in order_rows(rows):
        cells = "".join(
            f"<td>{html.escape(format_value(key, row['metrics'].get(key)))}</td>" for key in columns
        )
        body.append(f"<tr><th>{html.escape(str(row['method']))}</th>{cells}</tr>")
    return (
        f"<table>\n<thead><tr><th>method</th>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; }
td { text-align: right; font-variant-numeric: tabular-nums; }
thead th { border-bottom: 2px solid #888; text-align: right; }
tbody th { text-align: left; font-weight: 600; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.4em 0.8em; }
img { max-width: 100%; display: block; margin: 1em 0; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.8em; }
"""


def write_report(
    run_dir: str | Path,
    config: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    update: bool = False,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.csv``, ``report.md``, ``report.html`` and the plots of a run.

    ``report.json`` has the schema ``{"config": {...}, "environment": {...}, "rows": [{"method",
    "metrics", ...}]}`` with floats as JSON numbers and NaN/inf as ``null``; ``environment`` is
    :func:`environment` (package versions, Python, CPU/GPU, threads, git commit, date, command
    line). ``report.csv`` has one line per (request, method): columns ``method``, ``forget`` and
    every metric key (full precision; empty when a row lacks the metric). ``report.md`` holds a
    Markdown table per request (:func:`format_markdown_table`: retrain first, then original, then
    the given order; percent and seconds with 2 decimals), over-unlearning warnings, the plots
    and the config. ``report.html`` is the same as one self-contained page (plots embedded as
    base64 PNG, no external resources). Plots per request: ``forget_vs_test_<slug>.png`` (when
    rows carry forget and test accuracy), ``per_class_accuracy_<slug>.png``,
    ``forget_classes_<slug>.png`` and one grid ``mia_scores_<slug>.png`` (when rows carry those
    extras, see the module docstring), where
    ``<slug>`` is the request's :func:`file_slug` (always, so a report rewritten after each
    method names its plots as the final one does). All files are written atomically.

    Args:
        run_dir: the run's directory (created if missing), e.g. from :func:`new_run_dir`.
        config: the run's configuration (JSON-serializable; tensors/arrays become lists).
        rows: one dict per method, ``{"method": str, "metrics": {key: float}, **extra}``.
        update: replace the report this run wrote before (a partial report rewritten after
            each method); without it an existing ``report.json`` is an error.

    Returns:
        Paths written, keyed ``"json"``, ``"csv"``, ``"markdown"``, ``"html"``, and
        ``"forget_vs_test_<slug>"``, ``"per_class_accuracy_<slug>"``,
        ``"forget_classes_<slug>"``, ``"mia_scores_<slug>"`` for the plots made.

    Raises:
        FileExistsError: ``run_dir`` already holds a ``report.json`` and ``update`` is false.
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
    if (run_dir / "report.json").exists() and not update:
        raise FileExistsError(
            f"{run_dir} already has a report.json; write into a fresh directory from "
            "new_run_dir(base) instead of overwriting an earlier run"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    json_rows = [
        _jsonable({k: v for k, v in row.items() if k not in _PLOT_ONLY_KEYS}, f"rows[{i}]")
        for i, row in enumerate(rows)
    ]
    document = {
        "config": _jsonable(dict(config), "config"),
        "environment": _jsonable(environment(), "environment"),
        "rows": json_rows,
    }
    csv_text = _csv_text(rows)
    written: dict[str, Path] = {}
    intro = (
        "Accuracies and rates in percent; times in seconds. The retrained model is the target: "
        "the closer a method's numbers are to `retrain`, the better."
    )
    markdown = ["# Unlearning report", "", intro]
    page = [f"<h1>Unlearning report</h1>\n<p>{html.escape(intro).replace('`', '')}</p>"]
    groups = _request_groups(rows)
    for label, group in groups.items():
        suffix = "_" + file_slug(label)  # always: a partial report names plots as the final one
        if len(groups) > 1:
            markdown += ["", f"## Forget request `{label}`"]
            page.append(f"<h2>Forget request <code>{html.escape(label)}</code></h2>")
        markdown += ["", format_markdown_table(group)]
        page.append(_html_table(group))
        for note in _warnings(group):
            markdown += [note, ""]
        for note in plain_warnings(group):
            page.append(f'<p class="warning">{html.escape(note)}</p>')
        made = _write_plots(run_dir, config, group, suffix)
        for key, path in made.items():
            written[f"{key}{suffix}"] = path
        for key, path in [*made.items(), *_other_plots(run_dir, groups, label, made)]:
            markdown += [f"![{key}]({path.name})", ""]
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            page.append(
                f'<img alt="{html.escape(key)}" title="{html.escape(path.name)}" '
                f'src="data:image/png;base64,{data}">'
            )
    config_text = json.dumps(document["config"], indent=2, allow_nan=False)
    env_text = json.dumps(document["environment"], indent=2, allow_nan=False)
    markdown += ["## Config", "", "```json", config_text, "```", ""]
    markdown += ["## Environment", "", "```json", env_text, "```", ""]
    markdown += ["All rows: `report.csv` (one line per request and method), `report.json`.", ""]
    page += [
        "<h2>Config</h2>",
        f"<pre>{html.escape(config_text)}</pre>",
        "<h2>Environment</h2>",
        f"<pre>{html.escape(env_text)}</pre>",
    ]
    html_text = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Unlearning report: {html.escape(run_dir.name)}</title>\n"
        f"<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(page)
        + "\n</body>\n</html>\n"
    )
    written["csv"] = atomic_write_bytes(run_dir / "report.csv", csv_text.encode("utf-8"))
    written["markdown"] = atomic_write_bytes(
        run_dir / "report.md", "\n".join(markdown).encode("utf-8")
    )
    written["html"] = atomic_write_bytes(run_dir / "report.html", html_text.encode("utf-8"))
    # report.json last: its presence marks a finished report (write_report refuses to redo it).
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    written["json"] = atomic_write_bytes(run_dir / "report.json", text.encode("utf-8"))
    return written
