"""Start-up cost of the ``unlearnkit`` command against ``import torch`` (ratios, one run).

Times, each as the median of ``--repeats`` fresh interpreters (``OMP_NUM_THREADS=1``):
``python -c "import torch"``, ``python -c "import lightning"``, ``python -c "import
unlearnkit.cli"``, ``unlearnkit --help`` (``python -m unlearnkit.cli --help``) and ``unlearnkit
run --help`` (which builds the run parser: it imports torch, Lightning and the vision package).
Prints seconds and the ratio to ``import torch``; the machine's load changes the seconds, the
ratios much less. Usage: ``python benchmarks/bench_startup.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = {
    "import torch": ["-c", "import torch"],
    "import lightning": ["-c", "import lightning"],
    "import unlearnkit.cli": ["-c", "import unlearnkit.cli"],
    "unlearnkit --help": ["-m", "unlearnkit.cli", "--help"],
    "unlearnkit run --help": ["-m", "unlearnkit.cli", "run", "--help"],
}


def seconds(args: list[str], repeats: int) -> float:
    """Median wall time of ``python <args>`` over ``repeats`` fresh processes (s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {name: seconds(case, args.repeats) for name, case in CASES.items()}
    torch_s = results["import torch"]
    print(f"{'command':<24} {'seconds':>8} {'/ import torch':>15}")
    for name, value in results.items():
        print(f"{name:<24} {value:8.2f} {value / torch_s:15.2f}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
