"""Benchmark: run-time efficiency (RTE) of every vision baseline against retraining, one run.

RTE is the unlearning wall time of a method and its speed-up over the exact reference, retraining
from scratch on D_r (Jia et al., NeurIPS 2023, arXiv 2304.04934, "RTE"). Here both are measured
in the same process, one after the other, on the same data and threads: the experiment runs with
a fresh, temporary model cache, so the retrained model is trained (and timed) in this run rather
than read from an earlier one; the original model's training is not part of any ratio.

The default experiment is a reproduce table's (``baselines_fmnist_random``: real Fashion-MNIST,
a seeded 20k training subset, the small CNN, the learning rates its tuning step chose); the
methods' epochs are theirs, so the ratio says what one table row costs, not a per-epoch cost.

Usage::

    python benchmarks/bench_rte.py --threads 1                   # the table's setting (~10 min)
    python benchmarks/bench_rte.py --quick                       # a 2k subset, 1-epoch models
    python benchmarks/bench_rte.py --table baselines_fmnist_class

Prints one line per method: seconds, speed-up (retrain time / method time) and the share of
the retraining time.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from _timing import format_table
from unlearnkit.reproduce import load_table
from unlearnkit.vision.experiment import run_instantiated, run_parser

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", default="baselines_fmnist_random")
    p.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="2k training images, 1-epoch models")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_table(args.table)
    experiment = dict(spec.experiment)
    data = {**experiment["data"], "init_args": {**experiment["data"]["init_args"]}}
    data["init_args"]["root"] = args.root
    training = dict(experiment.get("training") or {})
    if args.quick:
        data["init_args"].update(train_limit=2000, test_limit=500)
        training["epochs"] = 1
    parser = run_parser()
    config = {**experiment, "data": data, "training": training, "forget": spec.forget[:1]}
    init = parser.instantiate(parser.parse_object({**config, "arch": spec.archs[0]}))
    with tempfile.TemporaryDirectory() as tmp:
        result = run_instantiated(
            init,
            init.methods,
            seed=0,
            output=Path(tmp) / "runs",
            name="rte",
            cache_dir=Path(tmp) / "cache",
            config=None,
            progress="quiet",
            write=False,
        )
    rows = {r["method"]: r["metrics"] for r in result.rows}
    t_retrain = rows["retrain"]["time/unlearn_s"]
    lines = []
    for name, metrics in rows.items():
        if name == "original":
            continue
        seconds = metrics.get("time/unlearn_s")
        if seconds is None:
            continue
        lines.append(
            (
                name,
                f"{seconds:.2f}",
                f"{t_retrain / seconds:.1f}x",
                f"{100 * seconds / t_retrain:.1f} %",
            )
        )
    print(
        f"{args.table} ({'quick' if args.quick else 'full'}), {spec.forget[0]}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    )
    print(format_table(["method", "seconds", "speed-up vs retrain", "share of retrain"], lines))


if __name__ == "__main__":
    main()
