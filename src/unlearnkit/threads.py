"""Thread policy for CPU runs: how many OpenMP / MKL / torch threads, and how they wait.

PyTorch's CPU kernels run on an OpenMP pool (GNU libgomp in the Linux wheels) with one thread per
physical core by default, and OpenMP threads that finish a parallel region first *spin* on the
CPU waiting for the others. On an idle machine that is fastest; on a busy one (a laptop running
a browser, a shared node, a 2-core CI box running two jobs) the thread that lost its core is
descheduled while its siblings burn their time slices spinning for it, and a job slows down not by
the share of the CPU it lost but by several times. On a 2-core machine with one other busy process
the default ``unlearnkit run`` took 382 s with torch's default two spinning threads (181 s without
that process; other users' jobs ran throughout, load 1.5-3.5) and 33 s with one thread, no more
than without the busy process (``benchmarks/bench_contention.py``, ``benchmarks/RESULTS.md``).

The policy applied by :func:`configure_threads`:

1. An explicit ``threads`` argument (the ``--threads`` option) wins.
2. Otherwise a user's ``OMP_NUM_THREADS`` is respected (first entry of a nested list such as
   ``"4,2"``).
3. Otherwise :func:`default_threads`: ``max(1, cores - 1)`` where ``cores`` is the number of CPUs
   this process may run on (affinity mask and cgroup quota). Leaving one core free means one
   competing process, or the main thread's Python / data loading, does not take a core the pool
   waits on. On a 2-core machine this is one thread, which on the default job was also the
   fastest choice when the machine was idle (small models gain little from a second thread).
4. ``OMP_WAIT_POLICY=PASSIVE`` unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``:
   idle OpenMP threads sleep instead of spinning, so an oversubscribed pool degrades in proportion
   to the CPU it lost instead of collapsing. Its price is the wake-up latency of short parallel
   regions on an idle machine; with two threads on the default job it was not measurable
   (35.9 s vs 34.3 s for one thread, under the same outside load).

Rejected (measured in ``benchmarks/RESULTS.md``): torch's default (``cores`` threads, spinning)
collapses under contention; ``min(cores, 2)`` threads with PASSIVE avoids the collapse but took
twice as long as one thread when one of two cores was busy (60.5 s vs 32.5 s); an "auto" count from
``os.getloadavg()`` reads a one-minute average taken *before* the job, cannot see a competitor that
starts later, and on an idle 2-core machine picks two threads, which were no faster.

The wait policy is read once, when the OpenMP runtime starts, which happens when ``torch`` is
first imported: :func:`configure_threads` must run before that import to affect it. The thread
counts can still be changed afterwards and are applied through ``torch.set_num_threads`` /
``torch.set_num_interop_threads`` when torch is already imported.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import MutableMapping

__all__ = ["available_cores", "configure_threads", "default_threads", "parse_threads"]

#: Environment variables set to the chosen thread count (OpenMP pool, MKL, OpenBLAS via NumPy).
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def parse_threads(value: object, *, source: str = "threads") -> int:
    """Check a thread count and return it as an ``int``.

    Args:
        value: A positive integer, or a string holding one (``"4"``; for ``OMP_NUM_THREADS`` also a
            nested list ``"4,2"``, of which the first entry counts).
        source: Name used in the error message (``"--threads"``, ``"OMP_NUM_THREADS"``).

    Returns:
        The thread count (>= 1).

    Raises:
        ValueError: If ``value`` is not a positive integer (``bool`` included) or such a string.
    """
    if isinstance(value, bool):
        raise ValueError(f"{source} must be a positive integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip().split(",")[0].strip()
        if not text.isdigit():
            raise ValueError(
                f"{source} must be a positive integer, got {value!r}; "
                "unset it or pass a number such as 1"
            )
        value = int(text)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{source} must be a positive integer (>= 1), got {value!r}")
    return value


def _cgroup_cpu_limit() -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``), rounded up; ``None`` if unlimited."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """Number of CPUs this process may run on.

    Returns:
        The size of the affinity mask (``os.sched_getaffinity``, else ``os.cpu_count()``), capped
        by a cgroup v2 CPU quota when one is set; at least 1.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit is not None else cores)


def default_threads(cores: int | None = None) -> int:
    """The default intra-op thread count: one core left free, at least one thread.

    Args:
        cores: Number of usable CPUs; ``None`` reads :func:`available_cores`.

    Returns:
        ``max(1, cores - 1)``.
    """
    return max(1, (available_cores() if cores is None else cores) - 1)


def configure_threads(
    threads: int | None = None, *, environ: MutableMapping[str, str] | None = None
) -> int:
    """Apply the thread policy of this module (see its docstring) and return the thread count.

    Call it first thing in a process, before ``torch`` is imported: the OpenMP wait policy is read
    only when torch loads its OpenMP runtime. Called later, it still sets the thread counts (through
    ``torch.set_num_threads`` and, if torch has not yet started its inter-op pool,
    ``torch.set_num_interop_threads``), but the wait policy of the running pool stays as it was.

    Args:
        threads: Intra-op threads (>= 1). ``None`` means: the user's ``OMP_NUM_THREADS`` if set,
            else :func:`default_threads`. An explicit value overrides ``OMP_NUM_THREADS``.
        environ: The environment to edit (default ``os.environ``). With another mapping (tests)
            torch is left alone.

    Returns:
        The intra-op thread count now in effect. An explicit ``threads`` is written to
        ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``; otherwise those
        the user did not set are set to it. Torch, if imported, is set to it too.

    Raises:
        ValueError: If ``threads`` is not a positive integer, or ``threads`` is ``None`` and
            ``OMP_NUM_THREADS`` holds something other than a positive integer.
    """
    env = os.environ if environ is None else environ
    if threads is not None:
        n = parse_threads(threads, source="threads")
    elif env.get("OMP_NUM_THREADS", "").strip():
        n = parse_threads(env["OMP_NUM_THREADS"], source="OMP_NUM_THREADS")
    else:
        n = default_threads()
    for name in THREAD_ENV_VARS:
        if threads is not None:
            env[name] = str(n)
        else:  # keep what the user set (OMP_NUM_THREADS as written, e.g. "4,2")
            env.setdefault(name, str(n))
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    torch = sys.modules.get("torch")
    if torch is not None and environ is None:
        torch.set_num_threads(n)
        # The inter-op pool may have started (or been set) already: then it is kept.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(n)
    return n
