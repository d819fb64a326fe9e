"""Seeded random projections of (per-sample) gradients, for TRAK-style datamodels.

Park, Georgiev, Ilyas, Leclerc & Madry, "TRAK: Attributing Model Behavior at Scale", ICML 2023,
arXiv 2303.14186, Sec. 3.2 (Step 2), project per-sample gradients with a random matrix so that
inner products are approximately preserved (Johnson & Lindenstrauss, "Extensions of Lipschitz
mappings into a Hilbert space", Contemp. Math. 26, 1984). Rademacher (+-1) entries are the
"database-friendly" variant of Achlioptas, J. Comput. Syst. Sci. 66(4), 2003.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = ["random_projection"]

#: Rows of the projection matrix generated per block. The matrix is defined block by block from
#: ``(seed, block index)``, so it does not depend on the chunking used to apply it.
_BLOCK_ROWS = 1024


def _block_generator(seed: int, block: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, block]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


def _projection_block(
    seed: int, block: int, rows: int, dim: int, kind: str, dtype: torch.dtype
) -> Tensor:
    # Always draw the full block and slice, so a block's rows never depend on how many are used.
    gen = _block_generator(seed, block)
    if kind == "gaussian":
        full = torch.randn(_BLOCK_ROWS, dim, generator=gen, dtype=dtype)
    else:
        signs = torch.randint(0, 2, (_BLOCK_ROWS, dim), generator=gen, dtype=torch.int8)
        full = signs.to(dtype).mul_(2).sub_(1)
    return full[:rows]


def random_projection(
    grads: Tensor,
    dim: int,
    *,
    seed: int,
    kind: Literal["gaussian", "rademacher"] = "rademacher",
    blocks_per_chunk: int = 8,
) -> Tensor:
    """Project row vectors with a seeded random ``(P, dim)`` matrix scaled by ``1/sqrt(dim)``.

    TRAK (Park et al., ICML 2023, arXiv 2303.14186, Sec. 3.2) uses such projections of per-sample
    gradients; by the Johnson-Lindenstrauss lemma ``E ||grads @ R / sqrt(dim)||^2 = ||grads||^2``
    row-wise and inner products are preserved up to ``O(1/sqrt(dim))`` relative error.

    The matrix ``R`` has i.i.d. standard-normal (``"gaussian"``) or +-1 (``"rademacher"``,
    Achlioptas 2003) entries. It is generated on the CPU in blocks of 1024 rows, each from its own
    generator seeded by ``(seed, block index)``; it is therefore the same on every device, for
    every chunking, and for every ``N``, and row block ``b`` of ``R`` does not depend on ``P``
    (so a prefix of the parameters projects consistently). Only ``blocks_per_chunk * 1024`` rows
    of ``R`` are held at once, so memory stays ``O(N * dim + blocks_per_chunk * 1024 * dim)``.

    Args:
        grads: Row vectors to project (e.g. flattened per-sample gradients).
        dim: Target dimension ``k >= 1``.
        seed: Seed defining ``R`` (a non-negative int).
        kind: ``"rademacher"`` (default) or ``"gaussian"``.
        blocks_per_chunk: Number of 1024-row blocks of ``R`` applied per matmul (memory/speed
            trade-off; does not change the result beyond floating-point summation order).

    Returns:
        ``grads @ R / sqrt(dim)``.

    Shapes:
        ``grads``: ``(N, P)`` floating point; returns ``(N, dim)`` with the dtype and device of
        ``grads``.

    Raises:
        ValueError: If ``grads`` is not 2-D floating point, ``dim < 1``, ``seed < 0``, ``kind`` is
            unknown or ``blocks_per_chunk < 1``.
        TypeError: If ``grads`` is not a tensor or ``seed`` not an int.
    """
    if not isinstance(grads, Tensor):
        raise TypeError(
            f"random_projection: grads must be a torch.Tensor, got {type(grads).__name__}"
        )
    if grads.dim() != 2 or not grads.is_floating_point():
        raise ValueError(
            f"random_projection: grads must be a 2-D float tensor (N, P), got shape "
            f"{tuple(grads.shape)} dtype {grads.dtype}; flatten per-sample gradients first"
        )
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"random_projection: dim must be a positive int, got {dim!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"random_projection: seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"random_projection: seed must be >= 0, got {seed}")
    if kind not in ("gaussian", "rademacher"):
        raise ValueError(
            f"random_projection: kind must be 'gaussian' or 'rademacher', got {kind!r}"
        )
    if not isinstance(blocks_per_chunk, int) or blocks_per_chunk < 1:
        raise ValueError(
            f"random_projection: blocks_per_chunk must be a positive int, got {blocks_per_chunk!r}"
        )

    n, p = grads.shape
    out = torch.zeros(n, dim, dtype=grads.dtype, device=grads.device)
    n_blocks = math.ceil(p / _BLOCK_ROWS)
    for first in range(0, n_blocks, blocks_per_chunk):
        blocks = range(first, min(first + blocks_per_chunk, n_blocks))
        parts = [
            _projection_block(
                seed, b, min(_BLOCK_ROWS, p - b * _BLOCK_ROWS), dim, kind, grads.dtype
            )
            for b in blocks
        ]
        r = torch.cat(parts).to(grads.device)
        lo = first * _BLOCK_ROWS
        out.addmm_(grads[:, lo : lo + r.shape[0]], r)
    return out.div_(math.sqrt(dim))
