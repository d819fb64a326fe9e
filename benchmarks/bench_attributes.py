"""What sample attributes cost: a DataLoader pass with and without the per-sample ``index``.

Every unlearnkit DataModule batch carries ``(x, y, {"index": ...})`` so methods and metrics can
group samples and DDP evaluation can drop padding. This times one pass over an in-memory
Fashion-MNIST-sized dataset (batches of 128, 1 thread) without attributes, with ``index``, and a
SmallCNN training step over the same batches as the scale the overhead should be read against.

Usage: ``python benchmarks/bench_attributes.py [--n 20000]``
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader

from _timing import format_table, measure
from unlearnkit.datasets.tensors import TensorImageDataset
from unlearnkit.vision.models import SmallCNN


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=20000, help="images (28x28 gray)")
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.n, 1, 28, 28), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, 10, (args.n,), generator=g)
    plain = TensorImageDataset(
        images, targets, mean=[0.286], std=[0.353], classes=[str(i) for i in range(10)]
    )
    indexed = plain.with_attributes(index=torch.arange(args.n))
    model = SmallCNN(in_channels=1, num_classes=10).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def one_pass(dataset):
        for _batch in DataLoader(dataset, batch_size=128):
            pass

    def train_pass():
        for x, y, *_ in DataLoader(indexed, batch_size=128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    rows = []
    t_plain = measure(lambda: one_pass(plain), repeats=3, warmup=1).median_s
    t_index = measure(lambda: one_pass(indexed), repeats=3, warmup=1).median_s
    t_train = measure(train_pass, repeats=1, warmup=0).median_s
    rows.append(["loader, (x, y)", f"{t_plain:.3f}", "1.00"])
    rows.append(["loader, (x, y, {index})", f"{t_index:.3f}", f"{t_index / t_plain:.2f}"])
    rows.append(
        ["SmallCNN training epoch (with index)", f"{t_train:.3f}", f"{t_train / t_plain:.2f}"]
    )
    print(format_table(["pass", "seconds", "ratio to plain loader"], rows))
    print(f"attribute overhead per training epoch: {100 * (t_index - t_plain) / t_train:.1f} %")


if __name__ == "__main__":
    main()
