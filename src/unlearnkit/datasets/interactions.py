"""Implicit-feedback interaction graphs: container, implicit conversion, k-core, per-user split.

Shared by every recommender dataset. Interactions are ``(2, E)`` int64 tensors of
``(user, item)`` pairs; after :func:`compact_ids` users and items have contiguous 0-based ids and
:class:`InteractionData` keeps the maps back to the raw ids.

Also holds the loader of the LightGCN text format (``train.txt`` / ``test.txt``, one line
``user item item ...`` per user) used for Gowalla, Yelp2018 and Amazon-Book in He et al.,
"LightGCN", SIGIR 2020, arXiv:2002.02126, Sec. 4.1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "InteractionData",
    "build_interaction_data",
    "check_edges",
    "compact_ids",
    "implicit_from_ratings",
    "k_core",
    "load_lightgcn_txt",
    "sample_negatives",
    "split_per_user",
]


def check_edges(edges: Tensor, num_users: int | None = None, num_items: int | None = None) -> None:
    """Validate a (user, item) edge tensor.

    Args:
        edges: Interaction pairs.
        num_users: If given, every user id must be below it.
        num_items: If given, every item id must be below it.

    Shapes:
        edges: ``(2, E)`` int64, row 0 = user ids, row 1 = item ids (0-based, contiguous).

    Raises:
        TypeError: If ``edges`` is not an integer tensor.
        ValueError: If ``edges`` is not ``(2, E)`` or holds a negative or out-of-range id.
    """
    if not isinstance(edges, Tensor) or edges.dtype.is_floating_point or edges.is_complex():
        got = type(edges).__name__ if not isinstance(edges, Tensor) else f"dtype {edges.dtype}"
        raise TypeError(
            f"edges must be an integer torch.Tensor of shape (2, E), got {got}; "
            "convert with torch.as_tensor(x, dtype=torch.long)"
        )
    if edges.dim() != 2 or edges.size(0) != 2:
        raise ValueError(
            f"edges must have shape (2, E) with rows (user, item), got {tuple(edges.shape)}; "
            "transpose an (E, 2) array with .t()"
        )
    if edges.numel() == 0:
        return
    if int(edges.min()) < 0:
        raise ValueError("edges contain a negative id; ids must be contiguous 0-based integers")
    for row, bound, name in ((0, num_users, "user"), (1, num_items, "item")):
        if bound is not None and int(edges[row].max()) >= bound:
            raise ValueError(
                f"edges contain unknown {name} id {int(edges[row].max())} (num_{name}s={bound}); "
                f"pass the right num_{name}s or remap ids to 0..num_{name}s-1"
            )


@dataclass
class InteractionData:
    """An implicit-feedback dataset split into train / validation / test interaction graphs.

    Attributes:
        num_users: Number of users ``U`` (contiguous ids ``0..U-1``).
        num_items: Number of items ``I`` (contiguous ids ``0..I-1``).
        train_edges: Training interactions ``D_train``; shape ``(2, E_train)`` int64.
        val_edges: Validation interactions; shape ``(2, E_val)`` int64.
        test_edges: Test interactions ``D_test``; shape ``(2, E_test)`` int64.
        user_ids: Raw id of each contiguous user id; shape ``(U,)`` int64.
        item_ids: Raw id of each contiguous item id; shape ``(I,)`` int64.
        item_features: Optional item side features aligned with the item ids; ``(I, F)`` float.
        name: Dataset name for reports and cache keys.

    Every split is a set: a (user, item) pair appears at most once in one split and in no other
    split. A duplicate would straddle forget and retain (forgetting one copy of a training pair
    would leave the other in ``D_r``, so the retrained model would still learn it); the loaders
    (:func:`build_interaction_data`, :func:`load_lightgcn_txt`) merge duplicates.

    Raises:
        ValueError: If an edge tensor is malformed, an id is out of range, a pair is repeated
            within a split or shared by two splits, or an id map has the wrong length.
        TypeError: If an edge tensor is not an integer tensor.
    """

    num_users: int
    num_items: int
    train_edges: Tensor
    val_edges: Tensor
    test_edges: Tensor
    user_ids: Tensor
    item_ids: Tensor
    item_features: Tensor | None = None
    name: str = ""

    def __post_init__(self) -> None:
        splits = ("train_edges", "val_edges", "test_edges")
        for split in splits:
            check_edges(getattr(self, split), self.num_users, self.num_items)
        keys = {split: _pair_keys(getattr(self, split), self.num_items) for split in splits}
        for split in splits:
            repeated = _first_repeated(keys[split])
            if repeated is not None:
                user, item = divmod(repeated, self.num_items)
                raise ValueError(
                    f"{split} holds the pair (user {user}, item {item}) more than once; each "
                    "interaction must appear once (forgetting one copy would leave the other in "
                    "D_r): merge duplicates first, e.g. edges = torch.unique(edges, dim=1)"
                )
        for i, first in enumerate(splits):
            for second in splits[i + 1 :]:
                shared = np.intersect1d(keys[first], keys[second])
                if shared.size:
                    user, item = divmod(int(shared[0]), self.num_items)
                    raise ValueError(
                        f"the pair (user {user}, item {item}) is in both {first} and {second}; "
                        "the splits must be disjoint: drop the pair from one of them "
                        "(load_lightgcn_txt drops test pairs that are also training pairs)"
                    )
        if len(self.user_ids) != self.num_users or len(self.item_ids) != self.num_items:
            raise ValueError(
                f"id maps have lengths ({len(self.user_ids)}, {len(self.item_ids)}) but "
                f"num_users={self.num_users}, num_items={self.num_items}; pass one raw id per id"
            )
        if self.item_features is not None and self.item_features.size(0) != self.num_items:
            raise ValueError(
                f"item_features has {self.item_features.size(0)} rows but num_items="
                f"{self.num_items}; align rows with the contiguous item ids"
            )

    def eval_split(self, split: Literal["val", "test"]) -> tuple[Tensor, Tensor]:
        """Ground-truth and seen-item mask edges for ranking evaluation of a split.

        Args:
            split: ``"val"`` (mask train) or ``"test"`` (mask train and val).

        Returns:
            ``(eval_edges, mask_edges)``.

        Shapes:
            Both ``(2, E)`` int64.

        Raises:
            ValueError: If ``split`` is not ``"val"`` or ``"test"``.
        """
        if split == "val":
            return self.val_edges, self.train_edges
        if split == "test":
            return self.test_edges, torch.cat([self.train_edges, self.val_edges], dim=1)
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")

    def stats(self) -> dict[str, int]:
        """Counts: users, items and edges per split.

        Returns:
            ``{"users", "items", "train", "val", "test", "edges"}`` as ints.
        """
        sizes = {s: int(getattr(self, f"{s}_edges").size(1)) for s in ("train", "val", "test")}
        return {
            "users": self.num_users,
            "items": self.num_items,
            **sizes,
            "edges": sum(sizes.values()),
        }


def _pair_keys(edges: Tensor, num_items: int) -> np.ndarray:
    """``user * num_items + item`` of every column of a checked ``(2, E)`` edge tensor."""
    e = edges.detach().cpu().long().numpy()
    return e[0] * int(num_items) + e[1]


def _first_repeated(keys: np.ndarray) -> int | None:
    """The smallest key occurring more than once, or ``None``."""
    if keys.size < 2:
        return None
    ordered = np.sort(keys)
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    return int(ordered[same[0]]) if same.size else None


def _as_column(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def implicit_from_ratings(
    ratings: Any,
    threshold: float = 4.0,
    *,
    user_col: str = "userId",
    item_col: str = "movieId",
    rating_col: str = "rating",
) -> Tensor:
    """Turn explicit ratings into implicit positives: a pair is positive iff rating >= threshold.

    The usual conversion of explicit MovieLens ratings to implicit feedback for top-K
    recommendation (positives = ratings at or above a threshold; missing pairs are unobserved).

    Args:
        ratings: One of: a table with columns ``user_col``, ``item_col``, ``rating_col`` (a pandas
            DataFrame or a dict of arrays); a tuple ``(users, items, ratings)`` of arrays; or a
            2-D array / tensor whose first three columns are user, item, rating.
        threshold: Minimum rating of a positive (inclusive); ``float("-inf")`` keeps every rated
            pair.
        user_col: User column name for table input.
        item_col: Item column name for table input.
        rating_col: Rating column name for table input.

    Returns:
        Unique positive pairs with RAW ids, sorted by (user, item).

    Shapes:
        Returns ``(2, E)`` int64.

    Raises:
        ValueError: If a column is missing, the columns differ in length, or ids are not integral.
        TypeError: If ``ratings`` has none of the accepted forms.
    """
    if hasattr(ratings, "keys") and not isinstance(ratings, (np.ndarray, Tensor)):
        missing = [c for c in (user_col, item_col, rating_col) if c not in ratings]
        if missing:
            raise ValueError(
                f"ratings table lacks column(s) {missing}; pass user_col/item_col/rating_col"
            )
        users, items, values = (_as_column(ratings[c]) for c in (user_col, item_col, rating_col))
    elif isinstance(ratings, (tuple, list)) and len(ratings) == 3:
        users, items, values = (_as_column(c) for c in ratings)
    elif isinstance(ratings, (np.ndarray, Tensor)):
        arr = _as_column(ratings)
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise ValueError(
                f"a ratings array must be (N, >=3) with columns user, item, rating, got {arr.shape}"
            )
        users, items, values = arr[:, 0], arr[:, 1], arr[:, 2]
    else:
        raise TypeError(
            f"ratings must be a table, a (users, items, ratings) tuple or an (N, 3) array, got "
            f"{type(ratings).__name__}"
        )
    if not (len(users) == len(items) == len(values)):
        raise ValueError(
            f"ratings columns differ in length: {len(users)}, {len(items)}, {len(values)}"
        )
    users_i, items_i = users.astype(np.int64), items.astype(np.int64)
    if np.any(users_i != users) or np.any(items_i != items):
        raise ValueError("user and item ids must be integers; map string ids to integers first")
    keep = values.astype(np.float64) >= threshold
    pairs = np.stack([users_i[keep], items_i[keep]], axis=1)
    if pairs.size:
        pairs = np.unique(pairs, axis=0)
    return torch.from_numpy(np.ascontiguousarray(pairs.T)).long().reshape(2, -1)


def _np_edges(edges: Tensor) -> np.ndarray:
    return edges.detach().cpu().long().numpy()


def _unique_pairs_np(pairs: np.ndarray) -> np.ndarray:
    """Sorted unique columns of a ``(2, E)`` int64 array."""
    if pairs.shape[1] == 0:
        return pairs
    return np.unique(pairs, axis=1)


def k_core(edges: Tensor, k: int = 5) -> Tensor:
    """Iteratively drop users and items with fewer than ``k`` interactions until none is left.

    The k-core filtering used for implicit-feedback benchmarks (NGCF and LightGCN,
    arXiv:2002.02126, use 10-core versions of their datasets): removing a sparse user can make an item sparse and
    vice versa, so the filter is repeated to a fixed point. Duplicate pairs are merged first.

    Args:
        edges: Interaction pairs (raw or contiguous ids).
        k: Minimum number of interactions of every remaining user and item (``k <= 1`` only
            de-duplicates).

    Returns:
        The surviving unique pairs, sorted by (user, item); ids are unchanged.

    Shapes:
        edges: ``(2, E)`` int64. Returns ``(2, E')`` int64.

    Raises:
        TypeError: If ``edges`` is not an integer tensor.
        ValueError: If ``edges`` is malformed.
    """
    check_edges(edges)
    pairs = _unique_pairs_np(_np_edges(edges))
    if pairs.shape[1] == 0:
        return torch.from_numpy(pairs.copy())
    _, u_inv = np.unique(pairs[0], return_inverse=True)
    _, i_inv = np.unique(pairs[1], return_inverse=True)
    keep = np.ones(pairs.shape[1], dtype=bool)
    while True:
        deg_u = np.bincount(u_inv[keep], minlength=int(u_inv.max()) + 1)
        deg_i = np.bincount(i_inv[keep], minlength=int(i_inv.max()) + 1)
        new_keep = keep & (deg_u[u_inv] >= k) & (deg_i[i_inv] >= k)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return torch.from_numpy(np.ascontiguousarray(pairs[:, keep]))


def compact_ids(edges: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Map raw user and item ids to contiguous 0-based ids (in increasing raw-id order).

    Args:
        edges: Interaction pairs with raw ids.

    Returns:
        ``(edges, user_ids, item_ids)``: the re-indexed pairs and the raw id of each new id.

    Shapes:
        edges: ``(2, E)`` int64. Returns ``(2, E)``, ``(U,)``, ``(I,)`` int64.

    Raises:
        TypeError: If ``edges`` is not an integer tensor.
        ValueError: If ``edges`` is malformed.
    """
    check_edges(edges)
    pairs = _np_edges(edges)
    user_ids, u = np.unique(pairs[0], return_inverse=True)
    item_ids, i = np.unique(pairs[1], return_inverse=True)
    out = np.stack([u.reshape(-1), i.reshape(-1)]).astype(np.int64)
    return torch.from_numpy(out), torch.from_numpy(user_ids), torch.from_numpy(item_ids)


def split_per_user(
    edges: Tensor,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded random per-user split of interactions into train / validation / test.

    Each user's interactions are shuffled; ``round(n * test_fraction)`` go to test and
    ``round(n * val_fraction)`` to validation (halves round up), then both are reduced (validation
    first) so every user keeps at least one training interaction. The per-user random hold-out
    protocol of LightGCN / NGCF (arXiv:2002.02126, Sec. 4.1.1, 80/20 per user).

    Args:
        edges: Interaction pairs (duplicates are merged).
        val_fraction: Fraction of each user's interactions for validation, in ``[0, 1)``.
        test_fraction: Fraction for test, in ``[0, 1)``; ``val + test < 1``.
        seed: Seed of the shuffle (NumPy PCG64); the same seed gives the same split.

    Returns:
        ``(train, val, test)`` pair tensors, each sorted by (user, item); disjoint, their union
        is the set of pairs in ``edges``.

    Shapes:
        edges: ``(2, E)`` int64. Returns three ``(2, E_s)`` int64 tensors.

    Raises:
        ValueError: If a fraction is out of range or ``edges`` is malformed.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}"
        )
    check_edges(edges)
    pairs = _unique_pairs_np(_np_edges(edges))
    n_edges = pairs.shape[1]
    if n_edges == 0:
        return tuple(torch.from_numpy(pairs.copy()) for _ in range(3))  # type: ignore[return-value]
    perm = np.random.default_rng(int(seed)).permutation(n_edges)
    # Stable sort of the shuffled edges by user: a random order within each user.
    order = perm[np.argsort(pairs[0, perm], kind="stable")]
    _, inverse, counts = np.unique(pairs[0, order], return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    pos = np.arange(n_edges) - starts[inverse]
    n_test = np.floor(counts * test_fraction + 0.5).astype(np.int64)
    n_val = np.floor(counts * val_fraction + 0.5).astype(np.int64)
    n_test = np.minimum(n_test, counts - 1)
    n_val = np.minimum(n_val, counts - 1 - n_test)
    is_test = pos < n_test[inverse]
    is_val = ~is_test & (pos < (n_test + n_val)[inverse])
    parts = []
    for mask in (~(is_test | is_val), is_val, is_test):
        idx = np.sort(order[mask])  # pairs are sorted by (user, item): keep that order
        parts.append(torch.from_numpy(np.ascontiguousarray(pairs[:, idx])))
    return parts[0], parts[1], parts[2]


def build_interaction_data(
    raw_edges: Tensor,
    *,
    k: int = 5,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str = "",
) -> InteractionData:
    """k-core filter, compact ids and split raw implicit interactions.

    Args:
        raw_edges: Positive pairs with raw ids (e.g. from :func:`implicit_from_ratings`).
        k: k-core threshold (``k <= 1``: no filtering).
        val_fraction: Per-user validation fraction.
        test_fraction: Per-user test fraction.
        seed: Split seed.
        name: Dataset name.

    Returns:
        The split dataset.

    Shapes:
        raw_edges: ``(2, E)`` int64.

    Raises:
        ValueError: If nothing survives the filter, or on bad fractions / malformed edges.
    """
    edges = k_core(raw_edges, k)
    if edges.size(1) == 0:
        raise ValueError(
            f"no interactions left after the {k}-core filter; lower k or the rating threshold"
        )
    edges, user_ids, item_ids = compact_ids(edges)
    train, val, test = split_per_user(
        edges, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    return InteractionData(
        num_users=len(user_ids),
        num_items=len(item_ids),
        train_edges=train,
        val_edges=val,
        test_edges=test,
        user_ids=user_ids,
        item_ids=item_ids,
        name=name,
    )


def _read_adjacency_lists(path: Path) -> Tensor:
    """Parse ``user item item ...`` lines into (user, item) pairs."""
    users: list[int] = []
    items: list[int] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                ids = [int(t) for t in tokens]
            except ValueError:
                raise ValueError(
                    f"{path}:{lineno}: expected integers 'user item item ...', got {line.strip()!r}"
                ) from None
            users.extend([ids[0]] * (len(ids) - 1))
            items.extend(ids[1:])
    return torch.tensor([users, items], dtype=torch.long).reshape(2, -1)


def load_lightgcn_txt(
    root: str | os.PathLike[str],
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    name: str | None = None,
) -> InteractionData:
    """Load a dataset in the LightGCN text format (Gowalla, Yelp2018, Amazon-Book).

    LightGCN, arXiv:2002.02126, Sec. 4.1.1, Table 1. ``root/train.txt`` and ``root/test.txt``
    hold one line ``user item item ...`` per user with 0-based ids. Their train/test split is used
    as-is and ids are kept (``num_users``/``num_items`` = largest id + 1 over both files);
    ``val_fraction`` of each user's training items are carved out as validation with ``seed``
    (every user keeps at least one training item). Repeated pairs are merged, and a pair listed
    in both files is kept as a training pair only (it is masked from the test ranking anyway, so
    the metrics do not change; :class:`InteractionData` requires disjoint splits).

    Args:
        root: Folder containing ``train.txt`` and ``test.txt``.
        val_fraction: Per-user validation fraction carved from train (0 for none).
        seed: Seed of the validation carve-out.
        name: Dataset name (default: the folder name).

    Returns:
        The dataset; ``user_ids``/``item_ids`` are the identity maps.

    Raises:
        FileNotFoundError: If a file is missing (with where to get it).
        ValueError: On a malformed line or a bad ``val_fraction``.
    """
    root = Path(root)
    for fname in ("train.txt", "test.txt"):
        if not (root / fname).is_file():
            raise FileNotFoundError(
                f"{root / fname} not found: put the dataset's train.txt and test.txt in {root} "
                "(Gowalla/Yelp2018/Amazon-Book: github.com/kuandeng/LightGCN, folder Data/; "
                "their terms do not allow us to ship them)"
            )
    train_all = _read_adjacency_lists(root / "train.txt")
    test = _unique_pairs_np(_np_edges(_read_adjacency_lists(root / "test.txt")))
    if train_all.numel() and test.size:  # a pair in both files stays a training pair only
        width = int(max(train_all[1].max(), test[1].max())) + 1
        seen = _np_edges(train_all)
        test = test[:, ~np.isin(test[0] * width + test[1], seen[0] * width + seen[1])]
    test = torch.from_numpy(np.ascontiguousarray(test))
    both = torch.cat([train_all, test], dim=1)
    if both.numel() == 0:
        raise ValueError(f"{root}: train.txt and test.txt hold no interactions")
    num_users, num_items = int(both[0].max()) + 1, int(both[1].max()) + 1
    train, val, _ = split_per_user(
        train_all, val_fraction=val_fraction, test_fraction=0.0, seed=seed
    )
    return InteractionData(
        num_users=num_users,
        num_items=num_items,
        train_edges=train,
        val_edges=val,
        test_edges=test,
        user_ids=torch.arange(num_users),
        item_ids=torch.arange(num_items),
        name=name if name is not None else root.name,
    )


# -- sampling items a user has not interacted with (BPR negatives, membership non-members) --
def _unique_keys(users: Tensor, items: Tensor, num_items: int) -> Tensor:
    """Sorted unique ``user * I + item`` keys (NumPy on CPU: immune to torch thread contention)."""
    keys = users.long() * num_items + items.long()
    if keys.device.type == "cpu":
        return torch.from_numpy(np.unique(keys.numpy()))
    return torch.unique(keys)


def _seen_keys(seen: Tensor, num_items: int) -> tuple[Tensor, Tensor]:
    """Sorted ``user * I + item`` keys and per-user counts from edges or a CSR matrix."""
    if seen.layout == torch.sparse_csr:
        if seen.size(1) != num_items:
            raise ValueError(
                f"seen CSR has {seen.size(1)} item columns but num_items={num_items}; "
                "build it with seen_item_csr(edges, num_users, num_items)"
            )
        crow, col = seen.crow_indices(), seen.col_indices()
        counts = crow[1:] - crow[:-1]
        rows = torch.repeat_interleave(torch.arange(counts.numel(), device=crow.device), counts)
        keys = _unique_keys(rows, col, num_items)  # robust to unsorted columns / duplicates
    else:
        check_edges(seen, None, num_items)
        keys = _unique_keys(seen[0], seen[1], num_items)
    return keys, torch.bincount(keys // num_items)


def sample_negatives(
    users: Tensor,
    seen: Tensor,
    num_items: int,
    generator: torch.Generator | None = None,
    *,
    max_rounds: int = 1000,
) -> Tensor:
    """Sample one negative item per user, uniformly among the items the user has NOT interacted.

    Vectorised rejection sampling: draw uniform items for all users, redraw only the ones that hit
    a seen item (membership by binary search over sorted ``user * I + item`` keys), until none
    does. The result is exactly uniform over each user's unseen items (Rendle et al., UAI 2009,
    Sec. 4.3, LearnBPR with bootstrap sampling).

    Args:
        users: User ids (repeats allowed).
        seen: Interactions to avoid: ``(2, E)`` edges or a ``(U, I)`` sparse CSR matrix from
            :func:`seen_item_csr`.
        num_items: Number of items ``I``.
        generator: Random generator for reproducible draws (CPU generator for CPU tensors).
        max_rounds: Cap on redraw rounds (reached only if a user has almost every item).

    Returns:
        Negative item ids.

    Shapes:
        users: ``(B,)`` int64. Returns ``(B,)`` int64 on ``users.device``.

    Raises:
        ValueError: If a user has interacted with every item (no negative exists) or sampling did
            not finish within ``max_rounds``.
    """
    keys, counts = _seen_keys(seen, num_items)
    return _sample_unseen(users.long(), keys, counts, num_items, generator, max_rounds)


def _sample_unseen(
    users: Tensor,
    keys: Tensor,
    counts: Tensor,
    num_items: int,
    generator: torch.Generator | None,
    max_rounds: int = 1000,
) -> Tensor:
    """Rejection sampling of unseen items given sorted seen keys and per-user seen counts."""
    device = users.device
    if users.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    keys, counts = keys.to(device), counts.to(device)
    in_range = users < counts.numel()
    full = torch.zeros_like(users, dtype=torch.bool)
    full[in_range] = counts[users[in_range]] >= num_items
    if bool(full.any()):
        raise ValueError(
            f"user {int(users[full][0])} has interacted with all {num_items} items, so no "
            "negative exists; drop such users before BPR training"
        )

    def draw(n: int) -> Tensor:
        return torch.randint(num_items, (n,), generator=generator, device=device)

    neg = draw(users.numel())
    if keys.numel() == 0:
        return neg
    todo = torch.arange(users.numel(), device=device)
    last = keys.numel() - 1
    for _ in range(max_rounds):
        cand = users[todo] * num_items + neg[todo]
        hit = keys[torch.searchsorted(keys, cand).clamp(max=last)] == cand
        todo = todo[hit]
        if todo.numel() == 0:
            return neg
        neg[todo] = draw(todo.numel())
    raise ValueError(
        f"negative sampling did not finish in {max_rounds} rounds; some users have almost every "
        "item: raise max_rounds or drop them"
    )
