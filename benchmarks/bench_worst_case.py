"""Benchmark: the worst-case forget-set search against one retraining of the original, same data.

On a seeded subset of Fashion-MNIST (the real IDX files, ``--root``) with the small CNN, in one
run:

* **retrain** — train the original architecture from scratch on the same D_train with the
  ``ssd_fullclass_fmnist`` schedule (``--epochs``, SGD lr 0.05 cosine, batch 128), timed once;
* **search** — :class:`~unlearnkit.vision.worst_case.WorstCaseSelector` for a 10 % forget set
  on that trained model, with the reference code's defaults (10 upper iterations × 10 signSGD
  passes, batch 256) unless ``--upper`` / ``--lower`` say otherwise, timed once.

The ratio search / retrain is printed; a search is ``upper × (lower + 1)`` passes over D_train
against ``epochs`` passes for the retraining, so the ratio is about ``upper × (lower + 1) /
epochs`` times the per-pass cost ratio (signSGD batches of 256 vs SGD batches of 128). Also
printed: how far the search moved from its random start, and the class counts of the set found
next to a random set of the same size.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_worst_case.py --train-limit 2000 --lower 2
    # the worstcase_fmnist table's setting (10k images, 8 epochs, 1 signSGD pass, w_lr 100):
    OMP_NUM_THREADS=1 python benchmarks/bench_worst_case.py --train-limit 10000 --epochs 8 \
        --lower 1 --w-lr 100
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from _timing import format_table
from unlearnkit.datasets import FashionMNISTDataModule
from unlearnkit.module import default_trainer, fit_method
from unlearnkit.reinit import reinitialize
from unlearnkit.vision.experiment import TrainSchedule
from unlearnkit.vision.models import build_model
from unlearnkit.vision.worst_case import WorstCaseSelector

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "fashion-mnist"))
    p.add_argument("--train-limit", type=int, default=2000, help="seeded subset of D_train")
    p.add_argument("--epochs", type=int, default=5, help="schedule of the (re)training")
    p.add_argument("--upper", type=int, default=10, help="upper iterations (code default 10)")
    p.add_argument("--lower", type=int, default=10, help="signSGD passes (code default 10)")
    p.add_argument("--w-lr", type=float, default=0.01, help="upper step size (code default 0.01)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not Path(args.root).exists():
        raise FileNotFoundError(f"Fashion-MNIST not found at {args.root}; pass --root DIR")

    dm = FashionMNISTDataModule(root=args.root, batch_size=128, train_limit=args.train_limit)
    dm.setup()
    torch.manual_seed(0)
    model = reinitialize(
        build_model("small_cnn", num_classes=dm.num_classes, in_channels=dm.in_channels), seed=0
    )
    method = TrainSchedule(epochs=args.epochs, lr=0.05).method(seed=0, from_scratch=False)
    start = time.perf_counter()
    fit_method(
        method,
        model,
        {"retain": dm.full_train_dataloader()},
        trainer=default_trainer(method.epochs, enable_progress_bar=False),
    )
    retrain_s = time.perf_counter() - start

    n = len(dm.train_set)
    size = round(0.1 * n)
    selector = WorstCaseSelector(
        upper_iterations=args.upper, lower_epochs=args.lower, w_lr=args.w_lr
    )
    start = time.perf_counter()
    chosen = selector.select(model.eval(), dm, size=size)
    search_s = time.perf_counter() - start

    gen = torch.Generator().manual_seed(selector.seed)  # the search's random start
    start_set = set(torch.randperm(n, generator=gen)[:size].tolist())
    moved = len(set(chosen.tolist()) - start_set)
    targets = dm.train_set.targets
    drawn = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:size]
    print(
        f"\nFashion-MNIST subset of {n}, small_cnn, torch threads {torch.get_num_threads()}, "
        f"{platform.processor() or platform.machine()}"
    )
    passes = args.upper * (args.lower + 1)
    rows = [
        [f"retrain on D_train ({args.epochs} epochs, batch 128)", f"{retrain_s:.2f}", args.epochs],
        [
            f"worst-case search ({args.upper} x ({args.lower} + 1) passes, batch 256)",
            f"{search_s:.2f}",
            passes,
        ],
    ]
    print(format_table(["step", "wall s", "passes over D_train"], rows))
    print(f"\nsearch / retrain = {search_s / retrain_s:.2f}")
    print(f"searched set: {moved} of {size} points not in the random start (w_lr {args.w_lr})")
    print("class counts, searched:", torch.bincount(targets[chosen], minlength=10).tolist())
    print("class counts, random:  ", torch.bincount(targets[drawn], minlength=10).tolist())


if __name__ == "__main__":
    main()
