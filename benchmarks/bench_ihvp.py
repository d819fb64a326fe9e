"""IU's inverse-HVP: CG on batched Hessian-vector products vs a naive per-sample HVP loop.

IU solves ``(H_r + damping I) x = v`` by conjugate gradient (:class:`unlearnkit.vision.IU`,
``solver="cg"``); each iteration needs ``H_r p``, the mean HVP over D_r. Ours is
:func:`unlearnkit.influence.model_hvp` over a loader: one forward-over-reverse HVP per batch of
128. The naive reference computes one HVP per sample with the same ``hvp`` and averages, as a
per-sample loop would. Both run the same ``conjugate_gradient`` for ``--iters`` iterations on a
SmallCNN (about 65k parameters, 28x28 gray inputs, eval mode), 1 thread; the largest relative difference of the
two solutions is printed (float32 rounding). The ratio is per CG iteration.

Usage: ``python benchmarks/bench_ihvp.py [--n 512] [--iters 2]`` (the default run takes under a
minute on one core; ``--n 4000`` for a few thousand samples).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from _timing import format_table
from unlearnkit.influence import conjugate_gradient, hvp, mean_gradient, model_hvp
from unlearnkit.vision.models import SmallCNN


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=512, help="retain samples (28x28 gray)")
    p.add_argument("--iters", type=int, default=2, help="CG iterations")
    p.add_argument("--damping", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128, help="retain batch of model_hvp")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = SmallCNN(in_channels=1, num_classes=10).eval()
    n_params = sum(q.numel() for q in model.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.n,), generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size)
    v, _ = mean_gradient(model, DataLoader(TensorDataset(x[:64], y[:64]), batch_size=64))

    params = {k: q.detach() for k, q in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def naive_hvp(u):
        total = {k: torch.zeros_like(t) for k, t in u.items()}
        for i in range(args.n):  # one HVP per sample: the loop IU avoids

            def f(prm, i=i):
                out = functional_call(model, (prm, buffers), (x[i : i + 1],))
                return F.cross_entropy(out, y[i : i + 1])

            for k, t in hvp(f, params, u).items():
                total[k].add_(t)
        return {k: t / args.n for k, t in total.items()}

    def batched_hvp(u):
        return model_hvp(model, loader, None, u)

    results, rows = {}, []
    for name, fn in (
        (f"batched (model_hvp, batch {args.batch_size})", batched_hvp),
        ("naive per-sample", naive_hvp),
    ):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a few iterations: not converged
            results[name] = conjugate_gradient(
                fn, v, damping=args.damping, max_iter=args.iters, tol=1e-12
            )
        rows.append([name, f"{(time.perf_counter() - start) / args.iters:.3f}"])
    a, b = results.values()
    err = max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)) for k in a)
    base = float(rows[0][1])
    for row in rows:
        row.append(f"{float(row[1]) / base:.1f}")
    print(f"SmallCNN, {n_params} parameters, {args.n} samples, {args.iters} CG iterations")
    print(format_table(["HVP", "seconds per CG iteration", "ratio"], rows))
    print(f"largest relative difference of the iterates: {err:.2e}")


if __name__ == "__main__":
    main()
