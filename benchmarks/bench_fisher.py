"""Benchmark: diagonal Fisher, ``per_sample`` (torch.func vmap) vs ``batch_empirical`` vs a loop.

Times :func:`unlearnkit.influence.fisher_diagonal` with both definitions against a naive
per-sample Python loop (one ``autograd.grad`` per sample, squares accumulated) in the same run,
on random data (timing does not depend on the values):

* a small 2-conv CNN on 10k samples of 1x28x28, batch 64;
* torchvision ResNet-18 with a CIFAR stem (3x3 conv, no max-pool) on 1k samples of 3x32x32.

The naive loop is timed on a subset and scaled linearly to the full set (printed). The run also
checks that ``per_sample`` equals the naive loop on a common subset.

Targets: ``per_sample`` >= 5x faster than the naive loop and <= 3x the time of
``batch_empirical``.

Usage::

    python benchmarks/bench_fisher.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_fisher.py --quick    # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from _timing import Timing, format_table, measure
from unlearnkit.influence import fisher_diagonal


class LocalSmallCNN(nn.Module):
    """Two 3x3 conv layers (32, 64 channels) with max-pooling, then a 128-unit MLP head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, side: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * (side // 4) ** 2, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def small_cnn() -> tuple[nn.Module, str]:
    """``unlearnkit.vision.models.SmallCNN`` if it exists and takes 1x28x28, else the local one."""
    try:
        from unlearnkit.vision.models import SmallCNN  # type: ignore[import-not-found]

        for kwargs in ({"in_channels": 1, "num_classes": 10}, {"in_chans": 1, "num_classes": 10}):
            try:
                model = SmallCNN(**kwargs)
                if tuple(model(torch.zeros(2, 1, 28, 28)).shape) == (2, 10):
                    return model, f"unlearnkit.vision.models.SmallCNN({kwargs})"
            except (TypeError, RuntimeError):
                continue
        reason = "its constructor/forward did not fit 1x28x28 -> 10 classes"
    except ImportError:
        reason = "unlearnkit.vision.models.SmallCNN not found"
    return LocalSmallCNN(), f"local 2-conv SmallCNN ({reason})"


def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem: 3x3 stride-1 first conv and no max-pool."""
    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def naive_fisher(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Reference: one forward/backward per sample, ``mean_i g_i**2`` (eval mode)."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    acc = [torch.zeros_like(p) for _, p in named]
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        for a, g in zip(acc, torch.autograd.grad(loss, [p for _, p in named]), strict=True):
            a.addcmul_(g, g)
    return {n: a / x.shape[0] for (n, _), a in zip(named, acc, strict=True)}


def _max_rel(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)) for k in b)


def bench_case(
    name: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    naive_n: int,
    repeats: int,
    chunk_size: int | None,
    parity_n: int,
) -> dict[str, float]:
    n = x.shape[0]
    n_params = sum(p.numel() for p in model.parameters())
    dl = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    warm = DataLoader(
        TensorDataset(x[: 2 * batch_size], y[: 2 * batch_size]), batch_size=batch_size
    )
    print(
        f"\n## {name}: {n_params / 1e6:.2f} M parameters, {n} samples, batch {batch_size}",
        flush=True,
    )

    def run(definition: str, loader: DataLoader) -> Callable[[], object]:
        return lambda: fisher_diagonal(model, loader, definition=definition, chunk_size=chunk_size)

    timings: dict[str, Timing] = {}
    timings["batch_empirical"] = measure(
        run("batch_empirical", dl),
        repeats=repeats,
        warmup=1,
        warmup_fn=run("batch_empirical", warm),
    )
    print(f"batch_empirical: {timings['batch_empirical'].times_s}", flush=True)
    timings["per_sample"] = measure(
        run("per_sample", dl), repeats=repeats, warmup=1, warmup_fn=run("per_sample", warm)
    )
    print(f"per_sample:      {timings['per_sample'].times_s}", flush=True)
    xs, ys = x[:naive_n], y[:naive_n]
    timings["naive"] = measure(
        lambda: naive_fisher(model, xs, ys),
        repeats=repeats,
        warmup=1,
        warmup_fn=lambda: naive_fisher(model, xs[:2], ys[:2]),
    )
    naive_full = timings["naive"].median_s * n / naive_n
    print(
        f"naive loop:      {timings['naive'].times_s} on {naive_n} samples -> scaled linearly "
        f"x{n / naive_n:g} to {naive_full:.2f} s for {n} samples",
        flush=True,
    )

    # Parity on a float64 copy: in float32 the batch-1 conv path of the naive loop is itself
    # only ~1e-3 accurate on some CPUs, which would hide a real discrepancy.
    k = min(naive_n, parity_n)
    m64 = copy.deepcopy(model).double()
    x64 = x[:k].double()
    err = _max_rel(
        fisher_diagonal(
            m64,
            DataLoader(TensorDataset(x64, y[:k]), batch_size=batch_size),
            definition="per_sample",
            chunk_size=chunk_size,
        ),
        naive_fisher(m64, x64, y[:k]),
    )
    t_be, t_ps = timings["batch_empirical"].median_s, timings["per_sample"].median_s
    rows = [
        [
            "batch_empirical (SSD ref.)",
            n,
            f"{t_be:.2f}",
            f"{1e3 * t_be / n:.2f}",
            f"{t_be / t_ps:.2f}",
        ],
        ["per_sample (torch.func)", n, f"{t_ps:.2f}", f"{1e3 * t_ps / n:.2f}", "1.00"],
        [
            f"naive loop ({naive_n} timed, scaled)",
            n,
            f"{naive_full:.2f}",
            f"{1e3 * naive_full / n:.2f}",
            f"{naive_full / t_ps:.2f}",
        ],
    ]
    print(format_table(["method", "samples", "time (s)", "ms / sample", "time / per_sample"], rows))
    speedup, overhead = naive_full / t_ps, t_ps / t_be
    print(
        f"per_sample vs naive: {speedup:.2f}x faster (target >= 5x: "
        f"{'met' if speedup >= 5 else 'MISSED'}); per_sample / batch_empirical: {overhead:.2f}x "
        f"(target <= 3x: {'met' if overhead <= 3 else 'MISSED'}); per_sample vs naive max rel. "
        f"error on {k} samples (float64): {err:.1e}"
    )
    return {"speedup_vs_naive": speedup, "overhead_vs_batch": overhead, "rel_err": err}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed repeats per method; the median is reported (default 1)",
    )
    parser.add_argument("--skip-resnet", action="store_true", help="only the small CNN")
    parser.add_argument(
        "--resnet-samples",
        type=int,
        default=1000,
        help="ResNet-18 samples (default 1000; its per_sample pass dominates the run time)",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# bench_fisher  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  "
        f"{platform.processor() or platform.machine()}  threads={torch.get_num_threads()}  "
        f"repeats={args.repeats}{'  QUICK' if args.quick else ''}"
    )
    cnn, cnn_name = small_cnn()
    n_cnn, naive_cnn = (256, 32) if args.quick else (10_000, 500)
    bench_case(
        f"small CNN [{cnn_name}] 1x28x28",
        cnn,
        torch.randn(n_cnn, 1, 28, 28),
        torch.randint(0, 10, (n_cnn,)),
        batch_size=64,
        naive_n=naive_cnn,
        repeats=args.repeats,
        chunk_size=None,
        parity_n=16,
    )
    if not args.skip_resnet:
        n_rn, naive_rn, bs_rn = (16, 4, 8) if args.quick else (args.resnet_samples, 50, 64)
        chunk = 16
        print(
            f"\n(ResNet-18 per_sample materialises per-sample gradients {chunk} samples at a time: "
            f"chunk_size={chunk}, {chunk * 11.2e6 * 4 / 2**30:.1f} GiB)"
        )
        bench_case(
            "ResNet-18 (CIFAR stem) 3x32x32",
            resnet18_cifar(),
            torch.randn(n_rn, 3, 32, 32),
            torch.randint(0, 10, (n_rn,)),
            batch_size=bs_rn,
            naive_n=naive_rn,
            repeats=args.repeats,
            chunk_size=chunk,
            parity_n=4,
        )


if __name__ == "__main__":
    main()
