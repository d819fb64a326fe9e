"""Benchmark: the in-house CNNs in ``channels_last`` (what ``build_model`` returns) vs contiguous.

``unlearnkit.vision.models.build_model`` converts SmallCNN / CompactCIFARNet / CIFAR ResNet-18 to
``torch.channels_last`` (NHWC), the layout oneDNN's CPU convolutions and GPU tensor cores prefer.
This times one SGD training pass and one inference pass of the same model (same weights, same
random inputs) in both layouts and prints the ratios, with a parity check of the logits.

Run:  .venv/bin/python benchmarks/bench_channels_last.py [--arch small_cnn] [--samples 5120]
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
import torch.nn.functional as F

from _timing import format_table, measure
from unlearnkit.vision.models import build_model


def _train_pass(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    for i in range(0, len(x), batch):
        loss = F.cross_entropy(model(x[i : i + batch]), y[i : i + batch])
        opt.zero_grad()
        loss.backward()
        opt.step()


def _eval_pass(model: torch.nn.Module, x: torch.Tensor, batch: int) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="small_cnn")
    parser.add_argument("--samples", type=int, default=5120)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shape = (1, 28, 28) if args.arch == "small_cnn" else (3, 32, 32)
    torch.manual_seed(0)
    x = torch.rand(args.samples, *shape)
    y = torch.randint(0, 10, (args.samples,))
    ours = build_model(args.arch, num_classes=10, in_channels=shape[0])
    naive = copy.deepcopy(ours).to(memory_format=torch.contiguous_format)
    conv = next(m for m in ours.modules() if isinstance(m, torch.nn.Conv2d))
    if not conv.weight.is_contiguous(memory_format=torch.channels_last):
        raise SystemExit("build_model did not return a channels_last model")
    parity = (_eval_pass(ours, x, 512) - _eval_pass(naive, x, 512)).abs().max().item()
    rows = []
    for what, run in (
        ("train (SGD, 1 pass)", lambda m: _train_pass(copy.deepcopy(m), x, y, args.batch_size)),
        ("inference", lambda m: _eval_pass(m, x, 512)),
    ):
        t_ours = measure(lambda run=run: run(ours), repeats=3, warmup=1)
        t_naive = measure(lambda run=run: run(naive), repeats=3, warmup=1)
        rows.append(
            [
                what,
                f"{args.samples / t_ours.median_s:,.0f}",
                f"{args.samples / t_naive.median_s:,.0f}",
                f"{t_naive.median_s / t_ours.median_s:.2f}x",
            ]
        )
    print(
        f"arch={args.arch} samples={args.samples} threads={args.threads} "
        f"load={os.getloadavg()[0]:.2f} max|logit diff|={parity:.2e}"
    )
    print(format_table(["pass", "channels_last img/s", "contiguous img/s", "speed-up"], rows))


if __name__ == "__main__":
    main()
