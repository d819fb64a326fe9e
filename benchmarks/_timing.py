"""Tiny timing helpers shared by the benchmarks: median of repeats after warm-up, and a table.

Usage::

    from _timing import measure, format_table

    t = measure(lambda: work(), repeats=3, warmup=1)
    print(t.median_s, t.times_s)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Timing", "format_table", "measure"]


@dataclass(frozen=True)
class Timing:
    """Wall-clock times of repeated calls.

    Attributes:
        median_s: Median of ``times_s`` in seconds.
        times_s: Every timed repeat in seconds, in call order.
    """

    median_s: float
    times_s: tuple[float, ...]

    @property
    def min_s(self) -> float:
        """Fastest repeat in seconds."""
        return min(self.times_s)


def measure(
    fn: Callable[[], object],
    *,
    repeats: int = 3,
    warmup: int = 1,
    warmup_fn: Callable[[], object] | None = None,
) -> Timing:
    """Time ``fn()`` ``repeats`` times with ``time.perf_counter`` after ``warmup`` untimed calls.

    Args:
        fn: Zero-argument callable to time.
        repeats: Number of timed calls (>= 1).
        warmup: Number of untimed calls before timing (>= 0).
        warmup_fn: Called instead of ``fn`` for the warm-up, e.g. the same work on a small input
            when one full call is expensive.

    Returns:
        A :class:`Timing` with the median and all repeats, in seconds.

    Raises:
        ValueError: If ``repeats < 1`` or ``warmup < 0``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure: need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        (warmup_fn or fn)()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(median_s=statistics.median(times), times_s=tuple(times))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render a Markdown table (also readable in a terminal).

    Args:
        headers: Column names.
        rows: One sequence of cells per row (converted with ``str``).

    Returns:
        The table as a string, columns padded to equal width.
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
