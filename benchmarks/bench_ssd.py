"""Benchmark: SSD end to end vs retraining, and a second forget request with the cached I_D.

On Fashion-MNIST (the real IDX files, ``--root``) with the small CNN and the schedule of the
``ssd_fullclass_fmnist`` table, in one run:

* **retrain** — the exact reference: re-initialise and train on D_r (class 0 removed) with the
  table's schedule (``--epochs``), timed once;
* **SSD, 1st request** — forget class 0 with an empty importance cache: I_D over D_train (60k)
  plus I_F over D_f (6k) plus dampening (median of ``--repeats`` cold runs, each with a fresh
  cache directory);
* **SSD, 2nd request** — forget class 1 on the same original model: I_D comes from the cache,
  only the D_f pass runs (median of ``--repeats``).

The original model comes from the unlearnkit model cache when ``unlearnkit reproduce
ssd_fullclass_fmnist`` (or a previous run of this script) already trained it; its training time
is not part of any ratio. Timed calls are ``SSD.unlearn`` exactly as ``unlearnkit run`` calls it
(``train=`` D_train unshuffled, ``retain=`` D_r).

Targets (issue 3): SSD 1st request <= 5 % of the retraining time; 2nd request >= 5x cheaper
than the 1st.

Usage::

    python benchmarks/bench_ssd.py --threads 1          # full run (~10-20 min on 2 busy cores)
    python benchmarks/bench_ssd.py --quick              # smoke run (a subset, 1 epoch)
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _timing import format_table
from unlearnkit.cache import ModelCache
from unlearnkit.data import ForgetSpec
from unlearnkit.datasets import FashionMNISTDataModule
from unlearnkit.evaluation import Evaluator
from unlearnkit.module import default_trainer, fit_method
from unlearnkit.vision.experiment import Experiment, TrainSchedule
from unlearnkit.vision.methods import SSD

ROOT = Path(__file__).resolve().parents[1]


def ssd_request(original: torch.nn.Module, dm: FashionMNISTDataModule, cls: int, cache: str) -> SSD:
    """Forget class ``cls`` from a copy of ``original`` as ``unlearnkit run`` does; returns the
    fitted SSD (its ``times_`` hold the breakdown) with the wall time in ``wall_s_``."""
    dm.set_forget(ForgetSpec(kind="class", classes=[cls]))
    model = copy.deepcopy(original)
    forget, retain = dm.forget_dataloader(), dm.retain_dataloader()
    train = dm.full_train_dataloader(shuffle=False)
    method = SSD(cache_dir=cache)
    start = time.perf_counter()
    method.unlearn(model, forget, retain, train=train)
    method.wall_s_ = time.perf_counter() - start  # type: ignore[attr-defined]
    return method


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--epochs", type=int, default=5, help="schedule of original and retrain")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (1 on a busy shared machine)")
    p.add_argument("--train-limit", type=int, help="use a subset of D_train")
    p.add_argument("--cache-dir", help="model cache (default: unlearnkit's)")
    p.add_argument("--quick", action="store_true", help="5k samples, 1 epoch, 1 repeat")
    args = p.parse_args()
    if args.quick:
        args.train_limit, args.epochs, args.repeats = args.train_limit or 5000, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.root).exists():
        raise FileNotFoundError(f"Fashion-MNIST not found at {args.root}; pass --root DIR")

    dm = FashionMNISTDataModule(
        root=args.root,
        batch_size=128,
        train_limit=args.train_limit,
        forget=ForgetSpec(kind="class", classes=[0]),
    )
    schedule = TrainSchedule(epochs=args.epochs, lr=0.05, lr_schedule="cosine")
    exp = Experiment(
        dm,
        arch="small_cnn",
        training=schedule,
        seed=0,
        cache=ModelCache(args.cache_dir),
        trainer={"enable_progress_bar": False},
        evaluator=Evaluator(),
    )
    original, _, hit = exp.original()
    print(f"original: {'from the model cache' if hit else 'trained now'}")

    # Retraining from scratch on D_r, timed (the exact-unlearning reference).
    dm.set_forget(ForgetSpec(kind="class", classes=[0]))
    retrain_model = copy.deepcopy(original)
    method = schedule.method(seed=1, from_scratch=True)
    start = time.perf_counter()
    fit_method(
        method,
        retrain_model,
        {"retain": dm.retain_dataloader()},
        trainer=default_trainer(method.epochs, enable_progress_bar=False),
    )
    retrain_s = time.perf_counter() - start

    first, second = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            first.append(ssd_request(original, dm, 0, cache))
            assert not first[-1].cache_hit_
            second.append(ssd_request(original, dm, 1, cache))
            assert second[-1].cache_hit_
    t1 = statistics.median(m.wall_s_ for m in first)
    t2 = statistics.median(m.wall_s_ for m in second)

    def part(ms: list[SSD], key: str) -> str:
        return f"{statistics.median(m.times_[key] for m in ms):.2f}"

    n_train = len(dm.train_set)
    print(
        f"\nFashion-MNIST, small_cnn, D_train {n_train}, schedule {args.epochs} epochs, "
        f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}"
    )
    rows = [
        ["retrain on D_r (class 0 removed)", f"{retrain_s:.2f}", "—", "—", "—"],
        [
            "SSD 1st request (class 0, I_D computed)",
            f"{t1:.2f}",
            part(first, "train"),
            part(first, "forget"),
            part(first, "dampen"),
        ],
        [
            "SSD 2nd request (class 1, I_D cached)",
            f"{t2:.2f}",
            part(second, "train"),
            part(second, "forget"),
            part(second, "dampen"),
        ],
    ]
    print(format_table(["step", "wall s (median)", "I_D s", "I_F s", "dampen s"], rows))
    ratio_retrain = t1 / retrain_s
    speedup_cache = t1 / t2
    print(
        f"\nSSD 1st request / retrain = {ratio_retrain:.4f} (target <= 0.05): "
        f"{'met' if ratio_retrain <= 0.05 else 'MISSED'}"
    )
    print(
        f"SSD 1st / 2nd request = {speedup_cache:.2f}x (target >= 5x): "
        f"{'met' if speedup_cache >= 5 else 'MISSED'}"
    )
    print(f"dampened parameters: {first[0].n_selected_} of {first[0].n_eligible_}")


if __name__ == "__main__":
    main()
