"""Benchmark: one LightGCN BPR epoch with CSR propagation vs PyG edge_index message passing.

Same initialization, same batches and negatives (same seed), on the embedded MovieLens training
graph. Paths:

- "csr (ours)": ``torch.sparse.mm`` with the cached normalized adjacency and the symmetric backward
  (``propagation="csr"``);
- "csr, native backward": the same product through PyTorch's generic sparse backward (which
  transposes the CSR matrix at every step), to show what the symmetric backward buys;
- "edge_index (PyG)": PyG's ``LGConv`` message passing (``propagation="edge_index"``).

The epoch losses must agree (float32, different summation order), and the per-epoch wall times
and the ratio edge_index / csr are printed.

Run:  .venv/bin/python benchmarks/bench_lightgcn.py [--repeats 3] [--dim 64] [--layers 3]
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from _timing import format_table, measure
from unlearnkit.datasets.movielens import load_movielens_small
from unlearnkit.recsys.bpr import bpr_train_epoch
from unlearnkit.recsys.models import LightGCNRecommender


class NativeBackwardLightGCN(LightGCNRecommender):
    """CSR propagation through ``torch.sparse.mm``'s generic autograd (for comparison only)."""

    def propagate(self, x: Tensor) -> Tensor:
        adj = self.adjacency()
        alpha = self.lightgcn.alpha
        out = x * alpha[0]
        for k in range(self.num_layers):
            x = torch.sparse.mm(adj, x)
            out = out + x * alpha[k + 1]
        return out


def one_epoch(cls, propagation: str, init: dict, data, args) -> float:
    model = cls(
        data.num_users,
        data.num_items,
        embedding_dim=args.dim,
        num_layers=args.layers,
        propagation=propagation,
    )
    model.load_state_dict(init)
    model.set_graph(data.train_edges)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    return bpr_train_epoch(
        model, optimizer, data.train_edges, batch_size=args.batch_size, generator=generator
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per path (median)")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension")
    parser.add_argument("--layers", type=int, default=3, help="propagation layers")
    parser.add_argument("--batch-size", type=int, default=2048, help="BPR batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = load_movielens_small()
    init = LightGCNRecommender(
        data.num_users, data.num_items, embedding_dim=args.dim, num_layers=args.layers
    ).state_dict()
    paths = [
        ("csr (ours)", LightGCNRecommender, "csr"),
        ("csr, native backward", NativeBackwardLightGCN, "csr"),
        ("edge_index (PyG)", LightGCNRecommender, "edge_index"),
    ]
    losses = {name: one_epoch(cls, prop, init, data, args) for name, cls, prop in paths}
    ref = losses["edge_index (PyG)"]
    for name, loss in losses.items():
        assert abs(loss - ref) <= 1e-4 * abs(ref), f"{name} epoch loss {loss} != {ref}"
    timings = {
        name: measure(lambda c=cls, p=prop: one_epoch(c, p, init, data, args), repeats=args.repeats)
        for name, cls, prop in paths
    }
    print(
        f"MovieLens-small train graph: {data.num_users} users, {data.num_items} items, "
        f"{data.train_edges.size(1)} edges; dim {args.dim}, {args.layers} layers, batch "
        f"{args.batch_size}; {args.threads} thread(s); one BPR epoch"
    )
    rows = [
        [
            name,
            f"{losses[name]:.6f}",
            f"{t.median_s:.3f}",
            ", ".join(f"{x:.3f}" for x in t.times_s),
        ]
        for name, t in timings.items()
    ]
    print(format_table(["path", "epoch loss", "median s", "runs s"], rows))
    base = timings["csr (ours)"].median_s
    print(f"speed-up edge_index / csr: {timings['edge_index (PyG)'].median_s / base:.2f}x")
    print(
        f"speed-up native-backward csr / csr: {timings['csr, native backward'].median_s / base:.2f}x"
    )


if __name__ == "__main__":
    main()
