"""Benchmark: how the cost of three passes grows with the data (1x, 2x, 4x, 8x), as log-log slopes.

Measured, each as the median of ``--repeats`` calls after one warm-up on the 1x size, with one
torch thread (:func:`unlearnkit.threads.configure_threads` runs before torch is imported):

(a) **SSD importance** - :func:`unlearnkit.influence.fisher_diagonal` (``batch_empirical``, batch
    64, cross-entropy: the pass SSD runs over D_train for I_D) of the project's ``SmallCNN`` over
    ``n`` Fashion-MNIST training images, ``n = --base-train * m``.
(b) **evaluation** - :meth:`unlearnkit.evaluation.Evaluator.collect` on D_f / D_r / D_test
    (batch 512) then :meth:`~unlearnkit.evaluation.Evaluator.metrics_from_outputs` with both
    MIAs, for a D_train of ``n`` images (D_f its first 10 %, D_r the rest) and a D_test of
    ``n / 5`` images (Fashion-MNIST's 6:1 train/test ratio is close); the MIA-efficacy SVC (on
    ``2 * |D_test|`` rows) and the entropy logistic regression (on ``|D_r| + |D_test|`` rows) are
    also timed alone. The model is trained for one epoch on ``--base-train * 8`` images first
    (untimed), so its confidences look like a real model's: the SVC's cost depends on them.
(c) **full ranking** - :func:`unlearnkit.evaluation.ranking.rank_metrics` (Recall / NDCG /
    Precision / Hit-rate at 10 and 20, training pairs masked) over ``U x I`` users x items with
    ``U = U_0 * sqrt(m)``, ``I = I_0 * sqrt(m)`` (so ``U * I`` grows by ``m``), random 64-d
    embeddings as the score source, and interactions at MovieLens-small's density (``U_0 = 671``,
    ``I_0 = 9066``, 1.6 % of the pairs, 80 % masked as training, 20 % evaluated).

The slope of a step is ``log(t_2m / t_m) / log 2``: 1 = linear, 2 = quadratic. Data beyond the
60k Fashion-MNIST images is not needed at the default sizes (8x = 20k); without the files
(``--root``) random images are used (same cost for (a) and the collect of (b); the SVC then fits
confidences of an unfitted model, which is less realistic).

Run:  PYTHONPATH=src .venv/bin/python benchmarks/bench_scaling.py [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

from unlearnkit.threads import configure_threads

configure_threads(1)  # before torch is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from _timing import format_table, measure  # noqa: E402
from unlearnkit.evaluation import Evaluator  # noqa: E402
from unlearnkit.evaluation.mia import mia_efficacy, mia_entropy_lr  # noqa: E402
from unlearnkit.evaluation.ranking import rank_metrics  # noqa: E402
from unlearnkit.influence import fisher_diagonal  # noqa: E402
from unlearnkit.vision.models import SmallCNN  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCALES = (1, 2, 4, 8)
FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def find_fmnist(root: str | None) -> Path | None:
    """The Fashion-MNIST directory: ``root``, else ``$UNLEARNKIT_DATA/fashion-mnist``, else the
    team's ``shared/data/fashion-mnist`` next to (or two levels above) the project."""
    candidates = [Path(root)] if root else []
    if os.environ.get("UNLEARNKIT_DATA"):
        candidates.append(Path(os.environ["UNLEARNKIT_DATA"]) / "fashion-mnist")
    candidates += [p / "shared" / "data" / "fashion-mnist" for p in ROOT.parents[:2]]
    return next((p for p in candidates if p.is_dir()), None)


def load_images(n_train: int, n_test: int, root: Path | None) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: normalized float32 ``(N, 1, 28, 28)`` and int64."""
    if root is None:
        g = torch.Generator().manual_seed(0)
        return (
            torch.randn(n_train, 1, 28, 28, generator=g),
            torch.randint(0, 10, (n_train,), generator=g),
            torch.randn(n_test, 1, 28, 28, generator=g),
            torch.randint(0, 10, (n_test,), generator=g),
        )
    from unlearnkit.datasets.fashion_mnist import load_fashion_mnist

    train, test = load_fashion_mnist(root)
    out = []
    for ds, n in ((train, n_train), (test, n_test)):
        if n > len(ds.images):
            raise ValueError(f"need {n} images, Fashion-MNIST has {len(ds.images)}; lower --base")
        x = (ds.images[:n].float() / 255 - FMNIST_MEAN) / FMNIST_STD
        out += [x, ds.targets[:n].clone()]
    return tuple(out)


def train_one_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One epoch of Adam (lr 2e-3, batch 128) so the confidences are a fitted model's."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()


def slopes(times: list[float]) -> list[str]:
    """``["—", s_2, s_4, s_8]`` with ``s = log2(t_2m / t_m)`` per doubling step."""
    return ["—"] + [f"{math.log(b / a, 2):.2f}" for a, b in zip(times, times[1:], strict=False)]


def random_pairs(num_users: int, num_items: int, count: int, g: np.random.Generator) -> np.ndarray:
    """``count`` distinct random (user, item) pairs as a ``(2, count)`` int64 array."""
    keys = g.choice(num_users * num_items, size=count, replace=False)
    return np.stack([keys // num_items, keys % num_items])


class Embeddings(nn.Module):
    """A score source with fixed random user / item embeddings (dot-product scores)."""

    def __init__(self, num_users: int, num_items: int, dim: int = 64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.num_users, self.num_items = num_users, num_items
        self.user = torch.randn(num_users, dim, generator=g)
        self.item = torch.randn(num_items, dim, generator=g)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user, self.item


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-train", type=int, default=2500, help="|D_train| at 1x (images)")
    p.add_argument("--users", type=int, default=671, help="users at 1x (MovieLens-small)")
    p.add_argument("--items", type=int, default=9066, help="items at 1x (MovieLens-small)")
    p.add_argument("--density", type=float, default=0.0164, help="interacting share of U x I")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per size (median kept)")
    p.add_argument("--root", default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--quick", action="store_true", help="1x = 500 images, 300 x 2000 pairs")
    args = p.parse_args()
    if args.quick:
        args.base_train, args.users, args.items = 500, 300, 2000
    torch.manual_seed(0)
    root = find_fmnist(args.root)
    top = max(SCALES)
    n_test_top = args.base_train * top // 5
    x_tr, y_tr, x_te, y_te = load_images(args.base_train * top, n_test_top, root)
    print(
        f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__},"
        f" {torch.get_num_threads()} thread; data: "
        f"{'Fashion-MNIST at ' + str(root) if root else 'random images'}; "
        f"load {os.getloadavg()}",
        flush=True,
    )
    model = SmallCNN()
    t0 = time.perf_counter()
    train_one_epoch(model, x_tr, y_tr)
    print(f"trained 1 epoch on {len(x_tr)} images in {time.perf_counter() - t0:.1f} s", flush=True)

    def loader(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> DataLoader:
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)

    def importance(n: int) -> object:
        return fisher_diagonal(model, loader(x_tr[:n], y_tr[:n], 64), definition="batch_empirical")

    evaluator = Evaluator()

    def splits(n: int) -> dict[str, DataLoader]:
        n_f, n_te = n // 10, n // 5
        return {
            "forget": loader(x_tr[:n_f], y_tr[:n_f], 512),
            "retain": loader(x_tr[n_f:n], y_tr[n_f:n], 512),
            "test": loader(x_te[:n_te], y_te[:n_te], 512),
        }

    def evaluation(n: int) -> object:
        return evaluator.metrics_from_outputs(evaluator.collect(model, splits(n)))

    outputs_at = {m: evaluator.collect(model, splits(args.base_train * m)) for m in SCALES}

    def svc(m: int) -> float:
        o = outputs_at[m]
        return mia_efficacy(o["retain"], o["test"], o["forget"])

    def entropy_lr(m: int) -> float:
        o = outputs_at[m]
        return mia_entropy_lr(o["retain"], o["test"], o["forget"])

    def ranking_case(m: int) -> tuple[Embeddings, torch.Tensor, torch.Tensor]:
        u = round(args.users * math.sqrt(m))
        i = round(args.items * math.sqrt(m))
        g = np.random.default_rng(m)
        pairs = random_pairs(u, i, round(args.density * u * i), g)
        cut = int(0.8 * pairs.shape[1])
        return Embeddings(u, i), torch.from_numpy(pairs[:, cut:]), torch.from_numpy(pairs[:, :cut])

    cases = {m: ranking_case(m) for m in SCALES}

    def ranking(m: int) -> object:
        model_, eval_edges, mask_edges = cases[m]
        return rank_metrics(model_, eval_edges, mask_edges, ks=(10, 20))

    passes = [
        ("(a) SSD importance (fisher_diagonal)", lambda m: importance(args.base_train * m)),
        ("(b) evaluation: collect + metrics", lambda m: evaluation(args.base_train * m)),
        ("(b1)   MIA-efficacy SVC alone", svc),
        ("(b2)   MIA entropy LR alone", entropy_lr),
        ("(c) full-ranking rank_metrics", ranking),
    ]
    rows = []
    for name, fn in passes:
        times = []
        for m in SCALES:
            t = measure(lambda m=m, fn=fn: fn(m), repeats=args.repeats, warmup=1 if m == 1 else 0)
            times.append(t.median_s)
            print(f"  {name} {m}x: {t.median_s:.3f} s {t.times_s}", flush=True)
        rows.append([name, *(f"{t:.3f}" for t in times), *slopes(times)[1:]])
        rows[-1].append(f"{math.log(times[-1] / times[0], 8):.2f}")

    sizes = ", ".join(
        f"{m}x: n={args.base_train * m}, U x I={cases[m][0].num_users}x{cases[m][0].num_items}"
        for m in SCALES
    )
    print(f"\nsizes: {sizes}")
    headers = ["pass", *(f"{m}x (s)" for m in SCALES), "slope 1→2", "2→4", "4→8", "1→8"]
    print(format_table(headers, rows))
    print(f"load at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
