"""fisher_diagonal under torch.distributed: 2 CPU processes (gloo) vs slow single-process loops."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from unlearnkit.influence import fisher_diagonal

from .helpers import cnn_data, make_cnn, max_rel_err, slow_per_sample_grads, slow_ssd_importance

N, BATCH, WORLD = 48, 8, 2


def _dataset() -> TensorDataset:
    x, y = cnn_data(N, seed=3)
    return TensorDataset(x, y)


def _sampler(rank: int) -> DistributedSampler:
    return DistributedSampler(_dataset(), num_replicas=WORLD, rank=rank, shuffle=False)


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        model = make_cnn()
        dl = DataLoader(_dataset(), batch_size=BATCH, sampler=_sampler(rank))
        out = {
            d: fisher_diagonal(model, dl, definition=d) for d in ("per_sample", "batch_empirical")
        }
        # A rank with an empty loader still takes part and gets the global value.
        empty = DataLoader(_dataset(), batch_size=BATCH, sampler=[] if rank == 1 else _sampler(0))
        out["rank1_empty"] = fisher_diagonal(model, empty, definition="per_sample")
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_equals_single_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    # References from the slow single-process loops (one autograd call per sample / per batch).
    model = make_cnn()
    ds = _dataset()
    x, y = ds.tensors
    ref_ps = {k: (g**2).mean(0) for k, g in slow_per_sample_grads(model, x, y).items()}
    # The same minibatches as the ranks see: rank r's sampler takes indices r, r+2, ...
    rank_batches = [
        idx[i : i + BATCH]
        for idx in (list(_sampler(r)) for r in range(WORLD))
        for i in range(0, len(idx), BATCH)
    ]
    assert sorted(i for b in rank_batches for i in b) == list(range(N))  # no padding duplicates
    ref_be = slow_ssd_importance(model, DataLoader(ds, batch_sampler=rank_batches))
    contiguous_be = slow_ssd_importance(model, DataLoader(ds, batch_size=BATCH))

    for out in ranks:
        assert max_rel_err(out["per_sample"], ref_ps) <= 1e-10
        assert max_rel_err(out["batch_empirical"], ref_be) <= 1e-10
        # Non-trivial check: different minibatches really give a different SSD importance.
        assert max_rel_err(out["batch_empirical"], contiguous_be) > 1e-3
    rank0 = list(_sampler(0))
    half = {k: (g**2).mean(0) for k, g in slow_per_sample_grads(model, x[rank0], y[rank0]).items()}
    for out in ranks:
        assert max_rel_err(out["rank1_empty"], half) <= 1e-10
