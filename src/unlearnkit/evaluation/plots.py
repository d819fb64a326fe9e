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
    "plot_forget_vs_test",
    "plot_mia_histogram",
    "plot_per_class_accuracy",
]

_DPI = 120


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
        axes.annotate(method, (forget, test), textcoords="offset points", xytext=(6, 4), fontsize=8)
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
) -> Path:
    """Grouped bar chart of per-class accuracy, one bar colour per method.

    Args:
        per_class: ``{method: [accuracy of class 0, class 1, ...]}`` as fractions in ``[0, 1]``;
            NaN (class absent from the split) leaves a gap.
        class_names: one name per class, in class-id order.
        path: where to write the PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``per_class`` is empty, or a method's list length differs from
            ``len(class_names)``.
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
    positions = np.arange(num_classes)
    width = 0.8 / len(per_class)
    figure = _figure(max(6.4, 0.45 * num_classes * max(1, len(per_class) / 2) + 2), 4.8)
    axes = figure.add_subplot()
    for index, (method, values) in enumerate(per_class.items()):
        heights = 100.0 * np.asarray(values, dtype=float)
        axes.bar(
            positions + (index - (len(per_class) - 1) / 2) * width, heights, width, label=method
        )
    axes.set_xticks(positions, [str(name) for name in class_names], rotation=45, ha="right")
    axes.set_xlabel("class")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title("Per-class accuracy by method")
    axes.legend(loc="best", fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)


def plot_mia_histogram(
    scores: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    xlabel: str = "true-class confidence (softmax probability, 0-1)",
    title: str = "Membership-inference feature by split",
    bins: int = 30,
) -> Path:
    """Overlaid histograms of a per-sample attack feature, one per split (or per model).

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
    arrays = {label: np.asarray(values, dtype=float).ravel() for label, values in scores.items()}
    arrays = {label: values[np.isfinite(values)] for label, values in arrays.items()}
    arrays = {label: values for label, values in arrays.items() if values.size}
    if not arrays:
        raise ValueError("plot_mia_histogram needs at least one non-empty array of scores")
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=bins)
    figure = _figure(6.4, 4.8)
    axes = figure.add_subplot()
    for label, values in arrays.items():
        weights = np.full(values.shape, 100.0 / values.size)
        axes.hist(
            values, bins=edges, weights=weights, alpha=0.5, label=f"{label} (n={values.size})"
        )
    axes.set_xlabel(xlabel)
    axes.set_ylabel("samples in bin (% of split)")
    axes.set_title(title)
    axes.legend(loc="best", fontsize=8)
    return _save(figure, path)
