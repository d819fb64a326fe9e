"""Benchmark: what the artifact store's checksums cost next to saving a model.

Times, in the same run, on the state dict of torchvision's ResNet-18 (11.7 M float32 parameters,
~45 MiB):

* ``torch.save`` of the state dict to a file (plain, no fsync) — the work a cache write does anyway;
* :func:`unlearnkit.store.file_sha256` of that file — the checksum a write records and every load
  re-computes;
* ``torch.load`` of the file — a cache hit's read;
* a whole :meth:`~unlearnkit.store.ArtifactStore.put` (save + fsync + checksum + manifest +
  rename) and :meth:`~unlearnkit.store.ArtifactStore.get` (verify).

Prints the ratios checksum / save and checksum / load. Target: the checksum costs less than
the save itself (ratio < 1).

Usage::

    python benchmarks/bench_store.py            # 5 repeats
    python benchmarks/bench_store.py --quick    # 1 repeat
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch
import torchvision

from _timing import format_table, measure
from unlearnkit.store import ArtifactStore, file_sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat instead of five")
    args = parser.parse_args()
    repeats = 1 if args.quick else 5
    torch.manual_seed(0)
    state = torchvision.models.resnet18(num_classes=10).state_dict()
    params = sum(v.numel() for v in state.values())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = root / "model.pt"
        save = measure(lambda: torch.save(state, path), repeats=repeats)
        size = path.stat().st_size
        digest = measure(lambda: file_sha256(path), repeats=repeats)
        load = measure(lambda: torch.load(path, weights_only=True), repeats=repeats)
        store = ArtifactStore(root / "store")
        counter = iter(range(10**6))

        def put() -> None:
            store.put("models", {"i": next(counter)}, lambda d: torch.save(state, d / "model.pt"))

        put_t = measure(put, repeats=repeats)
        get_t = measure(lambda: store.get("models", {"i": 0}), repeats=repeats)
    rows = [
        ["torch.save (no fsync)", f"{save.median_s * 1e3:.0f}", "1.00"],
        ["sha256 of the file", f"{digest.median_s * 1e3:.0f}", f"{digest.median_s / save.median_s:.2f}"],
        ["torch.load", f"{load.median_s * 1e3:.0f}", f"{load.median_s / save.median_s:.2f}"],
        ["store.put (save+fsync+sha256)", f"{put_t.median_s * 1e3:.0f}", f"{put_t.median_s / save.median_s:.2f}"],
        ["store.get (verify)", f"{get_t.median_s * 1e3:.0f}", f"{get_t.median_s / save.median_s:.2f}"],
    ]  # fmt: skip
    print(
        f"ResNet-18 state dict: {params / 1e6:.1f} M params, {size / 2**20:.1f} MiB; "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, median of {repeats}"
    )
    print(format_table(["step", "ms", "× torch.save"], rows))
    print(
        f"checksum / save = {digest.median_s / save.median_s:.2f}; "
        f"checksum / load = {digest.median_s / load.median_s:.2f}; "
        f"sha256 throughput {size / 2**20 / digest.median_s:.0f} MiB/s"
    )


if __name__ == "__main__":
    main()
