"""Benchmark: per-sample gradients, naive loop vs torch.func vs the layer-wise path.

Times :func:`unlearnkit.influence.per_sample_grads` with ``method="functorch"`` and
``method="layerwise"`` against a naive Python loop (one forward and ``autograd.grad`` per sample)
in the same run, on random data (timing does not depend on the values), all in eval mode:

* ``build_model("small_cnn", in_channels=1)`` on a batch of 1x28x28 images;
* ``build_model("resnet18_cifar")`` on a batch of 3x32x32 images.

Also timed: one batched gradient of the mean loss (not per-sample; a floor no per-sample method
can beat on CPU, so ``naive / batched`` bounds the attainable speed-up). A float64 parity check
(layer-wise vs torch.func, max relative error) runs on a few samples.

Target (issue 11): per-sample gradients >= 5x faster than the naive loop on both models.

Usage::

    python benchmarks/bench_per_sample.py             # default (< 1 minute on one thread)
    python benchmarks/bench_per_sample.py --quick     # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _timing import format_table, measure
from unlearnkit.influence import per_sample_grads
from unlearnkit.vision.models import build_model


def naive_per_sample(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Reference: one forward/backward per sample (eval mode), gradients stacked."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    out: list[tuple[Tensor, ...]] = []
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        out.append(torch.autograd.grad(loss, [p for _, p in named]))
    return {n: torch.stack([g[j] for g in out]) for j, (n, _) in enumerate(named)}


def batched_gradient(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
    """One gradient of the batch-mean loss (not per-sample): the floor."""
    model.eval()
    loss = F.cross_entropy(model(x), y)
    return torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


def _max_rel(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)) for k in b)


def bench_case(
    name: str, model: nn.Module, shape: tuple[int, ...], batch: int, repeats: int
) -> list[object]:
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        model.train()
        model(torch.randn(16, *shape))
    model.eval()
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    xw, yw = x[:2], y[:2]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n## {name}: {n_params / 1e6:.2f} M parameters, batch {batch}", flush=True)
    runs = {
        "naive loop": (
            lambda: naive_per_sample(model, x, y),
            lambda: naive_per_sample(model, xw, yw),
        ),
        "torch.func": (
            lambda: per_sample_grads(model, x, y, method="functorch"),
            lambda: per_sample_grads(model, xw, yw, method="functorch"),
        ),
        "layer-wise": (
            lambda: per_sample_grads(model, x, y, method="layerwise"),
            lambda: per_sample_grads(model, xw, yw, method="layerwise"),
        ),
        "batched gradient (floor)": (
            lambda: batched_gradient(model, x, y),
            lambda: batched_gradient(model, xw, yw),
        ),
    }
    times = {}
    for label, (fn, warm) in runs.items():
        times[label] = measure(fn, repeats=repeats, warmup=1, warmup_fn=warm).median_s
        print(f"{label}: {times[label]:.3f} s", flush=True)
    m64 = copy.deepcopy(model).double()
    x64, y64 = x[:4].double(), y[:4]
    err = _max_rel(
        per_sample_grads(m64, x64, y64, method="layerwise"),
        per_sample_grads(m64, x64, y64, method="functorch"),
    )
    naive = times["naive loop"]
    rows = [
        [label, f"{t:.3f}", f"{1e3 * t / batch:.2f}", f"{naive / t:.2f}"]
        for label, t in times.items()
    ]
    print(format_table(["method", "time (s)", "ms / sample", "naive / method"], rows))
    speedup = naive / times["layer-wise"]
    print(
        f"layer-wise vs naive {speedup:.2f}x (target >= 5x: {'met' if speedup >= 5 else 'MISSED'}; "
        f"ceiling naive / batched {naive / times['batched gradient (floor)']:.2f}x), vs torch.func "
        f"{times['torch.func'] / times['layer-wise']:.2f}x; layer-wise vs torch.func max rel. "
        f"error (float64, 4 samples): {err:.1e}"
    )
    return [
        name,
        batch,
        f"{naive:.3f}",
        f"{times['torch.func']:.3f}",
        f"{times['layer-wise']:.3f}",
        f"{times['batched gradient (floor)']:.3f}",
        f"{naive / times['torch.func']:.2f}x",
        f"{speedup:.2f}x",
        f"{naive / times['batched gradient (floor)']:.2f}x",
        f"{err:.0e}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats, median (default 1)")
    parser.add_argument("--skip-resnet", action="store_true", help="only the small CNN")
    parser.add_argument("--cnn-batch", type=int, default=64, help="SmallCNN batch (default 64)")
    parser.add_argument("--resnet-batch", type=int, default=32, help="ResNet batch (default 32)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    print(
        f"# bench_per_sample  {time.strftime('%Y-%m-%d %H:%M')}  torch {torch.__version__}  "
        f"{platform.processor() or platform.machine()}  threads={torch.get_num_threads()}  "
        f"repeats={args.repeats}{'  QUICK' if args.quick else ''}"
    )
    rows = [
        bench_case(
            "SmallCNN 1x28x28",
            build_model("small_cnn", num_classes=10, in_channels=1),
            (1, 28, 28),
            8 if args.quick else args.cnn_batch,
            args.repeats,
        )
    ]
    if not args.skip_resnet:
        rows.append(
            bench_case(
                "CIFAR ResNet-18 3x32x32",
                build_model("resnet18_cifar", num_classes=10, in_channels=3),
                (3, 32, 32),
                4 if args.quick else args.resnet_batch,
                args.repeats,
            )
        )
    print("\n## Summary (times in s; ratios are naive loop / method)")
    print(
        format_table(
            [
                "model",
                "batch",
                "naive",
                "torch.func",
                "layer-wise",
                "batched grad",
                "naive/torch.func",
                "naive/layer-wise",
                "naive/batched (ceiling)",
                "rel. err f64",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
