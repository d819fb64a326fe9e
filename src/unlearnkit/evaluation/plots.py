"""PNG figures for unlearning reports (matplotlib, Agg canvas, no pyplot state).

matplotlib is imported inside each function, and figures are drawn on an explicit Agg canvas, so
importing :mod:`unlearnkit` neither loads matplotlib nor changes the user's backend. Files are
written atomically with :func:`unlearnkit.atomic.atomic_write_bytes`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unlearnkit.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "atomic_write_bytes",
    "plot_forget_class_histogram",
    "plot_forget_vs_test",
    "plot_mia_grid",
    "plot_mia_histogram",
    "plot_per_class_accuracy",
    "plot_tuning",
]

_DPI = 120
#: Colour and line style of each split in MIA histograms (other labels cycle through _STYLES).
_SPLIT_STYLES: dict[str, tuple[str, str]] = {
    "retain": ("tab:blue", "-"),
    "test": ("tab:green", "--"),
    "forget": ("tab:red", "-"),
    "retrain": ("black", "-"),  # the target model, when the outlines are per model
}
_SPLIT_NAMES = {"retain": "D_r (retain)", "test": "D_test", "forget": "D_f (forget)"}
_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
_LINESTYLES = ("-", "--", "-.", ":")


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def _metric(metrics: Mapping[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    if value is None and key == "forget/acc" and metrics.get("forget/ua") is not None:
        value = 1.0 - float(metrics["forget/ua"])
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def plot_forget_vs_test(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Scatter forget-set accuracy against test accuracy, one point per method.

    The retrained model (method ``"retrain"``) is drawn as a large red star: it is the target, so a
    good method sits next to it (forgot as much as retraining did, kept its test accuracy).

    Args:
        rows: report rows ``{"method": str, "metrics": {"forget/acc": float, "test/acc": float,
            ...}}`` with fractions in ``[0, 1]`` (``forget/ua`` stands in for ``forget/acc``). Rows
            missing either value are left out.
        path: where to write the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no row has both a forget and a test accuracy.
    """
    points = []
    for row in rows:
        metrics = row.get("metrics", {})
        forget, test = _metric(metrics, "forget/acc"), _metric(metrics, "test/acc")
        if forget is not None and test is not None:
            points.append((str(row.get("method", "?")), 100.0 * forget, 100.0 * test))
    if not points:
        raise ValueError(
            "plot_forget_vs_test needs rows whose metrics hold 'forget/acc' and 'test/acc'"
        )
    figure = _figure(6.4, 4.8)
    axes = figure.add_subplot()
    for method, forget, test in points:
        if method == "retrain":
            axes.scatter(
                forget, test, marker="*", s=320, color="tab:red", zorder=3, label="retrain (target)"
            )
        else:
            axes.scatter(forget, test, marker="o", s=50, zorder=2)
    together: dict[tuple[float, float], list[str]] = {}  # methods on one spot share one label
    for method, forget, test in points:
        together.setdefault((round(forget, 1), round(test, 1)), []).append(method)
    for (forget, test), methods in together.items():
        axes.annotate(
            ", ".join(methods),
            (forget, test),
            textcoords="offset points",
            xytext=(8, 4),
            fontsize=8,
        )
    axes.set_xlabel("forget-set accuracy (%)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Forget vs. test accuracy per method (best: next to retrain)")
    axes.grid(True, alpha=0.3)
    if any(method == "retrain" for method, _, _ in points):
        axes.legend(loc="best", fontsize=8)
    return _save(figure, path)


def plot_per_class_accuracy(
    per_class: Mapping[str, Sequence[float]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    forgotten: Sequence[int] = (),
) -> Path:
    """Grouped bar chart of per-class accuracy, one bar colour per method, zoomed on the kept classes.

    The y axis runs from just below the lowest accuracy of a class that is not forgotten to 100 %,
    so differences of a point or two between methods show. The forgotten classes are shaded and
    labelled; a bar that ends below the axis (e.g. 0 % on a forgotten class) has its value written
    at the bottom. The legend sits to the right of the axes, off the bars.

    Args:
        per_class: ``{method: [accuracy of class 0, class 1, ...]}`` as fractions in ``[0, 1]``;
            NaN (class absent from the split) leaves a gap.
        class_names: one name per class, in class-id order.
        path: where to write the PNG.
        forgotten: ids of the forgotten classes (shaded, and left out of the zoom).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``per_class`` is empty, a method's list length differs from
            ``len(class_names)``, or a forgotten class id is out of range.
    """
    if not per_class:
        raise ValueError("plot_per_class_accuracy needs at least one method's accuracies")
    num_classes = len(class_names)
    for method, values in per_class.items():
        if len(values) != num_classes:
            raise ValueError(
                f"{method!r} has {len(values)} per-class accuracies but there are {num_classes} "
                "class names; pass one accuracy per class"
            )
    forgotten = sorted({int(c) for c in forgotten})
    if any(not 0 <= c < num_classes for c in forgotten):
        raise ValueError(f"forgotten classes {forgotten} must be class ids in 0..{num_classes - 1}")
    heights = {m: 100.0 * np.asarray(v, dtype=float) for m, v in per_class.items()}
    bottom = _zoom_bottom(heights, forgotten)
    positions = np.arange(num_classes)
    width = 0.8 / len(heights)
    figure = _figure(max(7.5, 0.5 * num_classes * max(1.0, len(heights) / 3) + 3.5), 4.8)
    axes = figure.add_subplot()
    for c in forgotten:
        axes.axvspan(c - 0.45, c + 0.45, color="0.88", zorder=0)
    for index, (method, values) in enumerate(heights.items()):
        x = positions + (index - (len(heights) - 1) / 2) * width
        axes.bar(x, values, width, label=method, zorder=2)
        for xi, value in zip(x, values, strict=True):
            if np.isfinite(value) and value < bottom:  # clipped: write its value at the bottom
                axes.text(
                    xi,
                    bottom,
                    f"{value:.0f}",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                    zorder=3,
                )
    names = [
        f"{name}\n(forgotten)" if c in forgotten else str(name)
        for c, name in enumerate(class_names)
    ]
    long_names = max(len(str(name)) for name in class_names) > 3
    axes.set_xticks(
        positions, names, rotation=45 if long_names else 0, ha="right" if long_names else "center"
    )
    axes.set_xlabel(
        "class"
        + (" (shaded: forgotten; bars below the axis show their value)" if forgotten else "")
    )
    axes.set_ylabel("accuracy (%)" + (f", axis from {bottom:g}" if bottom > 0 else ""))
    axes.set_ylim(bottom, 100.0)
    axes.set_title("Per-class test accuracy by method")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="method")
    axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)


def plot_forget_class_histogram(
    counts: Mapping[str, Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "Classes of the forget set",
) -> Path:
    """Grouped bar chart of how many samples of each class a forget set holds, one colour per set.

    Made for a searched forget set (e.g. ``worst_case``) next to a random set of the same size:
    a search that concentrates on a few classes shows at a glance.

    Args:
        counts: ``{set label: [samples of class 0, class 1, ...]}``.
        class_names: one name per class, in class-id order.
        path: where to write the PNG.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``counts`` is empty, or a set's list length differs from ``len(class_names)``.
    """
    if not counts:
        raise ValueError("plot_forget_class_histogram needs at least one forget set's counts")
    num_classes = len(class_names)
    for label, values in counts.items():
        if len(values) != num_classes:
            raise ValueError(
                f"{label!r} has {len(values)} class counts but there are {num_classes} class "
                "names; pass one count per class"
            )
    positions = np.arange(num_classes)
    width = 0.8 / len(counts)
    figure = _figure(max(7.5, 0.5 * num_classes * max(1.0, len(counts) / 3) + 3.5), 4.2)
    axes = figure.add_subplot()
    for index, (label, values) in enumerate(counts.items()):
        x = positions + (index - (len(counts) - 1) / 2) * width
        axes.bar(x, np.asarray(values, dtype=float), width, label=label, zorder=2)
    long_names = max(len(str(name)) for name in class_names) > 3
    axes.set_xticks(
        positions,
        [str(n) for n in class_names],
        rotation=45 if long_names else 0,
        ha="right" if long_names else "center",
    )
    axes.set_xlabel("class")
    axes.set_ylabel("samples in the forget set")
    axes.set_title(title)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="forget set")
    axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)


def _zoom_bottom(heights: Mapping[str, np.ndarray], forgotten: Sequence[int]) -> float:
    """Lower y limit (percent): a multiple of 5 at least a point below the lowest kept class."""
    kept = [c for c in range(len(next(iter(heights.values())))) if c not in set(forgotten)]
    values = np.concatenate([h[kept] for h in heights.values()]) if kept else np.array([])
    values = values[np.isfinite(values)]
    lowest = float(values.min()) if values.size else 0.0
    return max(0.0, math.floor((lowest - 1.0) / 5.0) * 5.0)


def _clean(scores: Mapping[str, Any]) -> dict[str, np.ndarray]:
    arrays = {label: np.asarray(values, dtype=float).ravel() for label, values in scores.items()}
    arrays = {label: values[np.isfinite(values)] for label, values in arrays.items()}
    return {label: values for label, values in arrays.items() if values.size}


def _style(label: str, index: int) -> tuple[str, str]:
    if label in _SPLIT_STYLES:
        return _SPLIT_STYLES[label]
    return _COLORS[index % len(_COLORS)], _LINESTYLES[index % len(_LINESTYLES)]


def _step_histograms(axes: Any, arrays: Mapping[str, np.ndarray], edges: np.ndarray) -> None:
    for index, (label, values) in enumerate(arrays.items()):
        color, linestyle = _style(label, index)
        axes.hist(
            values,
            bins=edges,
            weights=np.full(values.shape, 100.0 / values.size),
            histtype="step",
            linewidth=1.6,
            color=color,
            linestyle=linestyle,
            label=f"{_SPLIT_NAMES.get(label, label)} (n={values.size})",
        )


def plot_mia_grid(
    scores: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    *,
    xlabel: str = "true-class confidence (softmax probability, 0-1)",
    title: str = "Membership-inference feature by split, per method",
    bins: int = 30,
    columns: int = 3,
) -> Path:
    """One figure of MIA feature histograms: a panel per method, a step outline per split.

    All panels share the bins and both axes, so a method whose forget-set outline (red) sits on
    the test outline (green) like the retrained model's looks like one that never saw D_f.

    Args:
        scores: ``{method: {split: (N,) array}}``, each value as returned by
            :func:`~unlearnkit.evaluation.mia.mia_scores` (splits ``retain``, ``test``,
            ``forget``). Each outline is normalized to percent of its own samples.
        path: where to write the PNG.
        xlabel: x-axis label, with the feature's unit.
        title: figure title.
        bins: number of shared bins.
        columns: panels per row.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no method has a non-empty array, ``bins < 1`` or ``columns < 1``.
    """
    if bins < 1 or columns < 1:
        raise ValueError(f"bins and columns must be >= 1, got bins={bins}, columns={columns}")
    panels = {method: _clean(split) for method, split in scores.items()}
    panels = {method: arrays for method, arrays in panels.items() if arrays}
    if not panels:
        raise ValueError("plot_mia_grid needs at least one method with a non-empty score array")
    everything = np.concatenate([v for arrays in panels.values() for v in arrays.values()])
    edges = np.histogram_bin_edges(everything, bins=bins)
    ncols = min(columns, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    figure = _figure(3.4 * ncols + 0.4, 2.6 * nrows + 0.9)
    grid = figure.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for axes, (method, arrays) in zip(grid.flat, panels.items(), strict=False):
        _step_histograms(axes, arrays, edges)
        axes.set_title(method, fontsize=10)
        axes.grid(True, alpha=0.3)
    for axes in list(grid.flat)[len(panels) :]:
        axes.set_visible(False)
    for axes in grid[-1, :]:
        axes.set_xlabel(xlabel, fontsize=8)
    for axes in grid[:, 0]:
        axes.set_ylabel("% of split in bin", fontsize=8)
    handles, labels = [], []
    for axes in grid.flat:  # one legend for the figure: the splits, without the per-panel n
        for handle, label in zip(*axes.get_legend_handles_labels(), strict=True):
            name = label.rsplit(" (n=", 1)[0]
            if name not in labels:
                handles.append(handle)
                labels.append(name)
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=9)
    figure.suptitle(title)
    return _save(figure, path)


def plot_mia_histogram(
    scores: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    xlabel: str = "true-class confidence (softmax probability, 0-1)",
    title: str = "Membership-inference feature by split",
    bins: int = 30,
) -> Path:
    """Histogram outlines (``histtype="step"``) of a per-sample feature, one per split or model.

    Outlines in distinct colours and line styles (the splits ``retain``/``test``/``forget`` in
    fixed colours), shared bins, the legend to the right of the axes.

    Args:
        scores: ``{label: (N,) array}``, e.g. the output of
            :func:`~unlearnkit.evaluation.mia.mia_scores`. Each histogram is normalized to percent
            of its own samples, so splits of different sizes compare.
        path: where to write the PNG.
        xlabel: x-axis label, with the feature's unit (use ``"prediction entropy (nats)"`` for
            ``feature="entropy"``).
        title: figure title.
        bins: number of shared bins.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``scores`` is empty, every array is empty, or ``bins < 1``.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    arrays = _clean(scores)
    if not arrays:
        raise ValueError("plot_mia_histogram needs at least one non-empty array of scores")
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=bins)
    figure = _figure(7.5, 4.8)
    axes = figure.add_subplot()
    _step_histograms(axes, arrays, edges)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("samples in bin (% of split)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(figure, path)


def plot_tuning(
    panels: Mapping[str, Sequence[tuple[str, float, bool]]],
    path: str | Path,
    *,
    objective: str = "gap/avg",
    percent: bool = True,
    columns: int = 3,
) -> Path:
    """Bar charts of a tuning grid: a panel per method, a bar per candidate, the chosen one red.

    Args:
        panels: ``{method: [(candidate label, objective value, chosen), ...]}``; a NaN value
            (a failed candidate) is drawn as an empty slot labelled "failed".
        path: where to write the PNG.
        objective: the metric key on the y axis.
        percent: whether the values are fractions to show in % (``gap/avg``, accuracies).
        columns: panels per row.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no panel, or ``columns < 1``.
    """
    if not panels or columns < 1:
        raise ValueError("plot_tuning needs at least one method panel and columns >= 1")
    scale = 100.0 if percent else 1.0
    ncols = min(columns, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    widest = max(len(bars) for bars in panels.values())
    figure = _figure((1.0 + 0.55 * widest) * ncols + 0.6, 3.0 * nrows + 0.6)
    grid = figure.subplots(nrows, ncols, squeeze=False)
    for axes, (method, bars) in zip(grid.flat, panels.items(), strict=False):
        labels = [label if math.isfinite(v) else f"{label}\n(failed)" for label, v, _ in bars]
        values = [v * scale if math.isfinite(v) else 0.0 for _, v, _ in bars]
        colors = ["tab:red" if chosen else "tab:gray" for _, _, chosen in bars]
        drawn = axes.bar(range(len(bars)), values, color=colors)
        axes.bar_label(drawn, fmt="%.3g", fontsize=7, padding=1)
        axes.margins(y=0.12)  # room for the labels under the panel title
        axes.set_xticks(range(len(bars)), labels, rotation=60, ha="right", fontsize=7)
        axes.set_title(method, fontsize=10)
        axes.set_ylabel(f"{objective}{' (%)' if scale == 100.0 else ''}", fontsize=8)
        axes.grid(True, axis="y", alpha=0.3)
    for axes in list(grid.flat)[len(panels) :]:
        axes.set_visible(False)
    figure.suptitle(f"{objective} per grid point\n(chosen: red)", fontsize=10)
    return _save(figure, path)
