"""Benchmark: the default ``unlearnkit run`` idle vs beside one competing busy process, per thread policy.

Each measurement runs the embedded default job (digits, class-0 and random-10% forgetting, five
baselines) as a fresh ``unlearnkit run`` subprocess with a fresh model cache (``UNLEARNKIT_CACHE``
in a new temporary directory, so the original and retrained models are trained) and ``--output``
in that directory. "contended" runs the same job while another process spins on a CPU core
(``while True: pass``, or a NumPy matmul loop with ``--busy matmul``), pinned nowhere.

Policies (``--policies``, comma-separated):

- ``old``: what ``unlearnkit run`` did before :mod:`unlearnkit.threads`: torch's default thread
  count (one per core) and the OpenMP runtime's default wait policy (spin, then sleep). The job
  runs through ``unlearnkit.cli.main`` with ``configure_threads`` replaced by a no-op and no
  ``OMP_*`` variables set.
- ``new``: plain ``unlearnkit run`` with no ``OMP_*`` variables set: the default of
  :func:`unlearnkit.threads.configure_threads` (``cores - 1`` threads, passive wait).
- ``passive2``: the new code with ``OMP_NUM_THREADS=2`` (two threads, passive wait).
- ``threads1``: the new code with ``OMP_NUM_THREADS=1``.

The machine may be shared: ``os.getloadavg()`` is printed before each measurement, and if the
1-minute load exceeds ``--max-load`` at the start the benchmark waits (polling every 30 s, at most
``--wait-max`` seconds) for a quieter moment. Printed: wall and CPU (user + sys) seconds per run,
and the ratio contended / idle per policy; the target is a ratio <= 2 for the default policy.

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_contention.py [--quick] [--policies old,new]
      (``--quick``: 5 training epochs instead of 30, through the CLI override ``--training.epochs``)
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _timing import format_table

ROOT = Path(__file__).resolve().parents[1]
OLD_MAIN = (
    "import sys; import unlearnkit.threads as t; t.configure_threads = lambda *a, **k: 0; "
    "from unlearnkit.cli import main; sys.exit(main(sys.argv[1:]))"
)
NEW_MAIN = "import sys; from unlearnkit.cli import main; sys.exit(main(sys.argv[1:]))"
POLICIES = {  # name -> (entry code, extra environment)
    "old": (OLD_MAIN, {}),
    "new": (NEW_MAIN, {}),
    "passive2": (NEW_MAIN, {"OMP_NUM_THREADS": "2"}),
    "threads1": (NEW_MAIN, {"OMP_NUM_THREADS": "1"}),
}
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
)
BUSY = {
    "spin": "while True: pass",
    "matmul": (
        "import os; os.environ['OMP_NUM_THREADS'] = '1'; import numpy as np; "
        "a = np.random.rand(256, 256)\nwhile True: a @ a"
    ),
}


@dataclass
class Run:
    """One timed job: wall and CPU seconds, load before it, and whether it finished."""

    wall_s: float
    cpu_s: float
    load: tuple[float, float, float]
    ok: bool


def load_avg() -> tuple[float, float, float]:
    """``os.getloadavg()`` (zeros where unavailable)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def wait_for_quiet(max_load: float, wait_max_s: float, poll_s: float = 30.0) -> float:
    """Poll the 1-minute load every ``poll_s`` seconds until it is <= ``max_load``.

    Args:
        max_load: Highest acceptable 1-minute load average.
        wait_max_s: Give up after this many seconds and go on anyway.
        poll_s: Seconds between polls.

    Returns:
        Seconds waited.
    """
    start = time.monotonic()
    while load_avg()[0] > max_load and time.monotonic() - start < wait_max_s:
        print(f"  load {load_avg()[0]:.2f} > {max_load}: waiting {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
    return time.monotonic() - start


def run_job(policy: str, extra_args: list[str], timeout_s: float) -> Run:
    """Run the default job once under ``policy`` with a fresh cache; return its timing.

    Args:
        policy: A key of :data:`POLICIES`.
        extra_args: Words appended after ``run`` (e.g. ``--training.epochs 5``).
        timeout_s: Kill the job after this many seconds (``ok=False``; wall = the timeout).

    Returns:
        The :class:`Run`.

    Raises:
        subprocess.CalledProcessError: If the job fails.
    """
    code, extra_env = POLICIES[policy]
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env)
    with tempfile.TemporaryDirectory(prefix="bench_contention_") as tmp:
        env["UNLEARNKIT_CACHE"] = str(Path(tmp) / "cache")
        cmd = [sys.executable, "-c", code, "run", "--output", str(Path(tmp) / "out"), *extra_args]
        load = load_avg()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        try:
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=timeout_s)
            ok = True
        except subprocess.TimeoutExpired:
            ok = False
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall_s=wall, cpu_s=cpu, load=load, ok=ok)


def with_busy(kind: str, fn: Callable[[], Run]) -> Run:
    """Call ``fn()`` while one busy process of ``kind`` runs; the process is ended after."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY[kind]])
    try:
        time.sleep(1.0)  # let it reach its loop
        return fn()
    finally:
        busy.kill()
        busy.wait()


def fmt(run: Run) -> str:
    return f"{run.wall_s:.1f}" + ("" if run.ok else " (timeout)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", default="old,new", help="comma-separated, see the docstring")
    parser.add_argument("--quick", action="store_true", help="5 training epochs instead of 30")
    parser.add_argument("--busy", choices=sorted(BUSY), default="spin", help="competing process")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait while 1-min load > this")
    parser.add_argument("--wait-max", type=float, default=1200.0, help="longest wait (s)")
    parser.add_argument("--timeout", type=float, default=900.0, help="per job (s)")
    args = parser.parse_args()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = sorted(set(policies) - set(POLICIES))
    if unknown:
        parser.error(f"unknown policies {unknown}; choose from {sorted(POLICIES)}")
    extra = ["--training.epochs", "5"] if args.quick else []

    print(
        f"unlearnkit run (default job{', --training.epochs 5' if args.quick else ''}); "
        f"{os.cpu_count()} CPUs; busy process: {args.busy}; load at start {load_avg()}",
        flush=True,
    )
    waited = wait_for_quiet(args.max_load, args.wait_max)
    print(f"waited {waited:.0f} s for load <= {args.max_load}; load now {load_avg()}", flush=True)
    idle: dict[str, Run] = {}
    busy: dict[str, Run] = {}
    for policy in policies:  # idle first for every policy, then contended: same drift for all
        idle[policy] = run_job(policy, extra, args.timeout)
        print(f"  {policy:9s} idle      {fmt(idle[policy])} s (load {idle[policy].load})")
    for policy in policies:
        busy[policy] = with_busy(args.busy, lambda p=policy: run_job(p, extra, args.timeout))
        print(f"  {policy:9s} contended {fmt(busy[policy])} s (load {busy[policy].load})")

    rows = []
    for p in policies:
        i, b = idle[p], busy[p]
        rows.append(
            [
                p,
                fmt(i),
                f"{i.cpu_s:.1f}",
                f"{i.load[0]:.2f}",
                fmt(b),
                f"{b.cpu_s:.1f}",
                f"{b.load[0]:.2f}",
                f"{b.wall_s / i.wall_s:.2f}",
            ]
        )
    headers = [
        "policy",
        "idle wall (s)",
        "idle CPU (s)",
        "load",
        "contended wall (s)",
        "contended CPU (s)",
        "load",
        "contended / idle",
    ]
    print()
    print(format_table(headers, rows))
    if "new" in busy:
        ratio = busy["new"].wall_s / idle["new"].wall_s
        print(
            f"\ndefault policy contended/idle = {ratio:.2f} (target <= 2): "
            f"{'met' if ratio <= 2 else 'missed'}"
        )
    print(f"load at end {load_avg()}")


if __name__ == "__main__":
    main()
