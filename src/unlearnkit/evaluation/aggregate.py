"""Mean ± std over seeds: the aggregation ``unlearnkit run --seeds`` and ``unlearnkit reproduce``
share.

A row is a report row tagged with its ``seed`` (and whatever else groups it: ``arch``,
``forget``, ``method``). For each group and metric, each seed's value is the mean over the rows
of that seed (e.g. over the forget requests), then the mean and the sample standard deviation
are taken over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Aggregate",
    "aggregate",
    "format_aggregate_table",
    "format_mean_std",
    "to_display_units",
]


@dataclass
class Aggregate:
    """Mean ± std over seeds of one (group, metric); each seed's value is the mean over the rows
    of that seed in the group.

    Attributes:
        mean: mean over seeds (metric units: fractions or seconds).
        std: sample standard deviation over seeds (0 with one seed).
        n: number of seeds.
        values: the per-seed values, by increasing seed.
    """

    mean: float
    std: float
    n: int
    values: list[float]


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(float(value))


def aggregate(
    rows: Sequence[Mapping[str, Any]], *, group: Sequence[str] = ("arch", "method")
) -> dict[tuple[Any, ...], dict[str, Aggregate]]:
    """Mean ± std over seeds of the per-seed mean over the rows of each group.

    Args:
        rows: report rows carrying ``seed``, ``metrics`` and the ``group`` keys.
        group: the keys that define a cell besides the metric, e.g. ``("arch", "method")``
            (each seed's value averages its forget requests) or ``("forget", "method")``.

    Returns:
        ``{(group values...): {metric: Aggregate}}`` in the order the groups first appear;
        non-finite and missing values are skipped (a failed row adds nothing).
    """
    per_seed: dict[tuple[Any, ...], dict[str, dict[int, list[float]]]] = {}
    for row in rows:
        key = tuple(row[g] for g in group)
        cell = per_seed.setdefault(key, {})
        for metric, value in row["metrics"].items():
            if _finite(value):
                cell.setdefault(metric, {}).setdefault(int(row["seed"]), []).append(float(value))
    result: dict[tuple[Any, ...], dict[str, Aggregate]] = {}
    for key, metrics in per_seed.items():
        out = result.setdefault(key, {})
        for metric, seeds in metrics.items():
            values = [statistics.fmean(v) for _, v in sorted(seeds.items())]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[metric] = Aggregate(statistics.fmean(values), std, len(values), values)
    return result


def to_display_units(metric: str, value: float) -> float:
    """Metric units → display units (percent for fractions, seconds as is)."""
    from unlearnkit.evaluation.report import is_percent_metric, is_seconds_metric

    return 100.0 * value if is_percent_metric(metric) and not is_seconds_metric(metric) else value


def format_mean_std(metric: str, agg: Aggregate | None) -> str:
    """One table cell: ``mean ± std`` in display units (percent for fractions), the mean alone
    for one seed, an em dash for no value."""
    from unlearnkit.evaluation.report import format_value

    if agg is None:
        return "—"
    if agg.n == 1:
        return format_value(metric, agg.mean)
    return f"{format_value(metric, agg.mean)} ± {to_display_units(metric, agg.std):.2f}"


def format_aggregate_table(
    stats: Mapping[tuple[Any, ...], Mapping[str, Aggregate]],
    columns: Sequence[str],
    *,
    group: Sequence[str] = ("forget", "method"),
) -> str:
    """A Markdown table of ``stats`` (from :func:`aggregate`): one line per group, one column per
    metric in ``columns`` (cells from :func:`format_mean_std`).

    Args:
        stats: the aggregates.
        columns: the metric keys shown.
        group: the names of the group keys (the leading columns).

    Returns:
        The table, ending in a newline.
    """
    lines = ["| " + " | ".join([*group, *columns]) + " |"]
    lines.append("| " + " | ".join(["---"] * len(group) + ["---:"] * len(columns)) + " |")
    for key, metrics in stats.items():
        cells = [str(k) for k in key] + [format_mean_std(c, metrics.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
