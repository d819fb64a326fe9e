"""Benchmark: batched shared evaluation vs a batch-size-1 loop like the reference repositories.

Both paths compute the same numbers - accuracies on D_f / D_r / D_test, MIA-efficacy (SVC on
confidences), the entropy-LR MIA, and the JS divergence to a second ("retrained") model on D_f -
from outputs gathered by :func:`unlearnkit.evaluation.collect.collect`. "ours" feeds it loaders
with batch size 512; "naive" feeds it loaders with batch size 1, as the SSD code's
``collect_prob`` does (``DataLoader(dataset, batch_size=1)``). The ratio of the two wall times is
printed, with a parity check of the outputs.

What the ratio measures: per-call overhead. On a CPU the small CNN's batched forward costs about as
much per sample as a single-sample forward with one thread; most of the batch-size-1 cost comes
from per-call overhead (DataLoader collation, Python, and OpenMP synchronisation of the
``--threads`` workers, which grows sharply when the cores are shared). The SVC fit of
:func:`mia_efficacy` is the same fixed cost in both paths. Compare ``--threads 1`` and
``--threads 2`` and read the printed load average before quoting a number.

Run:  .venv/bin/python benchmarks/bench_evaluation.py [--samples 10000] [--batch-size 512]
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unlearnkit.evaluation.collect import Outputs, collect
from unlearnkit.evaluation.metrics import accuracy, js_divergence
from unlearnkit.evaluation.mia import mia_efficacy, mia_entropy_lr


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head for 1x28x28 inputs (Fashion-MNIST sized)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(32 * 7 * 7, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    """A few epochs of SGD (optional: makes seen and unseen confidences differ, as in real use)."""
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()


def evaluate(
    model: nn.Module, retrained: nn.Module, splits: dict[str, TensorDataset], batch_size: int
) -> tuple[dict[str, float], dict[str, Outputs], dict[str, float]]:
    """The shared evaluation: one collect per split, then pure metrics. Returns metrics, outputs
    and a time breakdown (seconds)."""
    start = time.perf_counter()
    loaders = {
        name: DataLoader(data, batch_size=batch_size, shuffle=False)
        for name, data in splits.items()
    }
    outputs = {name: collect(model, loader) for name, loader in loaders.items()}
    reference_forget = collect(retrained, loaders["forget"])
    collected = time.perf_counter()
    metrics = {f"{name}/acc": accuracy(out) for name, out in outputs.items()}
    metrics["mia/efficacy"] = mia_efficacy(outputs["retain"], outputs["test"], outputs["forget"])
    metrics["mia/entropy_lr"] = mia_entropy_lr(
        outputs["retain"], outputs["test"], outputs["forget"]
    )
    metrics["forget/js"] = js_divergence(outputs["forget"], reference_forget)
    done = time.perf_counter()
    timing = {
        "collect_s": collected - start,
        "metrics_s": done - collected,
        "total_s": done - start,
    }
    return metrics, outputs, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000, help="D_f + D_r + D_test size")
    parser.add_argument("--batch-size", type=int, default=512, help="batch size of 'ours'")
    parser.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="SGD epochs for both models before timing (0 = untrained; timing is what is measured)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of 'ours' (min kept)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.samples
    x = torch.randn(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    n_forget, n_test = n // 10, (3 * n) // 10
    forget = slice(0, n_forget)
    retain = slice(n_forget, n - n_test)
    test = slice(n - n_test, n)
    splits = {
        "forget": TensorDataset(x[forget], y[forget]),
        "retain": TensorDataset(x[retain], y[retain]),
        "test": TensorDataset(x[test], y[test]),
    }
    model, retrained = SmallCNN(), SmallCNN()
    if args.epochs > 0:
        _fit(model, x[: n - n_test], y[: n - n_test], args.epochs)  # "unlearned": saw D_f, D_r
        _fit(retrained, x[retain], y[retain], args.epochs)  # "retrained": D_r only

    ours_runs = [evaluate(model, retrained, splits, args.batch_size) for _ in range(args.repeats)]
    ours_metrics, ours_outputs, _ = ours_runs[0]
    ours_timing = min((run[2] for run in ours_runs), key=lambda t: t["total_s"])
    naive_metrics, naive_outputs, naive_timing = evaluate(model, retrained, splits, 1)

    max_diff = max(
        float((ours_outputs[k].logits - naive_outputs[k].logits).abs().max()) for k in splits
    )
    print(
        f"samples: {n} (forget {n_forget}, retain {n - n_forget - n_test}, test {n_test}); "
        f"threads: {torch.get_num_threads()}; torch {torch.__version__}; "
        f"cpus {os.cpu_count()}, load average (1 min) {os.getloadavg()[0]:.2f}"
    )
    for name, timing in (
        (f"ours (batch {args.batch_size})", ours_timing),
        ("naive (batch 1)", naive_timing),
    ):
        print(
            f"{name:>18}: total {timing['total_s']:8.3f} s = collect {timing['collect_s']:8.3f} s"
            f" + metrics {timing['metrics_s']:6.3f} s"
        )
    print(
        f"speed-up (naive / ours, total): {naive_timing['total_s'] / ours_timing['total_s']:.1f}x"
    )
    print(
        f"speed-up (naive / ours, collect only): "
        f"{naive_timing['collect_s'] / ours_timing['collect_s']:.1f}x"
    )
    print(f"parity: max |logits diff| = {max_diff:.2e}")
    for key in ours_metrics:
        print(f"  {key:>16}: ours {ours_metrics[key]:.6f}  naive {naive_metrics[key]:.6f}")


if __name__ == "__main__":
    main()
