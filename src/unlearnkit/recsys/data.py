"""Recommender forget requests and DataModules: edge datasets, forget/retain edge splits.

A recommender forget request (:class:`~unlearnkit.data.ForgetSpec` of kind ``user``, ``item`` or
``interaction``, or ``indices`` with a saved edge file) resolves to explicit training edges
``D_f`` and their complement ``D_r = D_train \\ D_f`` (:class:`ForgetEdges`), which can be saved
to a JSON file and loaded again, so an experiment repeats on exactly the same interactions.

:class:`RecDataModule` is the LightningDataModule over an
:class:`~unlearnkit.datasets.interactions.InteractionData`: it yields forget and retain edge
loaders (batches ``(users (B,), items (B,))``, the ``(x, y)`` of :class:`~unlearnkit.base.UnlearnBatch`)
for unlearning methods, and the edges the ranking evaluation needs.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from unlearnkit.atomic import atomic_write_bytes
from unlearnkit.data import ForgetDataModule, ForgetSpec, check_forget_index, spec_record
from unlearnkit.datasets.interactions import InteractionData, check_edges

__all__ = [
    "EdgeDataset",
    "ForgetEdges",
    "LightGCNTxtDataModule",
    "MovieLens100KDataModule",
    "MovieLens1MDataModule",
    "MovieLensSmallDataModule",
    "RecDataModule",
    "edge_loader",
    "resolve_forget_edges",
]

RECSYS_KINDS = ("user", "item", "interaction", "indices")


class EdgeDataset(Dataset):
    """(user, item) interaction pairs as a map-style dataset.

    Indexing one position gives ``(user, item)`` 0-d int64 tensors; :meth:`__getitems__` (used by
    ``DataLoader`` automatic batching) gives a whole batch at once. With the default collate a
    batch is a ``(2, B)`` tensor; :func:`edge_loader` yields the tuple ``(users (B,), items (B,))``.
    Both unpack as ``users, items = batch``.

    Args:
        edges: interaction pairs.

    Attributes:
        edges: the ``(2, E)`` int64 pairs (row 0 users, row 1 items).

    Raises:
        TypeError / ValueError: ``edges`` is not a ``(2, E)`` integer tensor with non-negative ids.
    """

    def __init__(self, edges: Tensor) -> None:
        check_edges(edges)
        self.edges = edges.detach().long().cpu()

    def __len__(self) -> int:
        return int(self.edges.size(1))

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.edges[0, index], self.edges[1, index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.edges[0, idx], self.edges[1, idx]


def _keep_tuple(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return batch


def edge_loader(
    edges: Tensor | EdgeDataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int | None = None,
    num_samples: int | None = None,
) -> DataLoader:
    """A fast DataLoader over interaction pairs yielding ``(users (B,), items (B,))`` int64.

    Batches are gathered with one tensor index per batch (no per-sample collation).

    Args:
        edges: ``(2, E)`` int64 pairs or an :class:`EdgeDataset`.
        batch_size: pairs per batch (the last batch may be smaller).
        shuffle: draw a random order each epoch.
        seed: seed of the shuffle (``None``: torch's global generator, which Lightning seeds).
        num_samples: with ``shuffle``, draw this many pairs per epoch (with replacement when it
            exceeds ``E``) instead of one pass over all pairs.

    Returns:
        The loader; ``loader.dataset`` is the :class:`EdgeDataset`.

    Raises:
        ValueError: ``batch_size < 1`` or ``num_samples < 1``.
    """
    dataset = edges if isinstance(edges, EdgeDataset) else EdgeDataset(edges)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    if shuffle and len(dataset) > 0:
        if num_samples is not None and int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        replacement = num_samples is not None and int(num_samples) > len(dataset)
        sampler = RandomSampler(
            dataset, replacement=replacement, num_samples=num_samples, generator=generator
        )
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(sampler, int(batch_size), drop_last=False),
        batch_size=None,
        collate_fn=_keep_tuple,
    )


# ------------------------------------------------------------------------------------------
# Forget requests -> edges
# ------------------------------------------------------------------------------------------
def _edge_keys(edges: Tensor, num_items: int) -> np.ndarray:
    e = edges.detach().cpu().long().numpy()
    return e[0] * int(num_items) + e[1]


@dataclass
class ForgetEdges:
    """Explicit forget / retain interaction sets over the training graph.

    Attributes:
        forget: forgotten training pairs ``D_f``, ``(2, F)`` int64, in training-edge order.
        retain: retained pairs ``D_r = D_train \\ D_f``, ``(2, R)`` int64, in training-edge order.
        forget_index: column indices of ``forget`` in the training edges, ``(F,)`` int64 sorted.
        num_users: ``U``.
        num_items: ``I``.
        num_train: ``E = F + R``, the number of training edges.
        spec: the request it was resolved from (saved for provenance).
    """

    forget: Tensor
    retain: Tensor
    forget_index: Tensor
    num_users: int
    num_items: int
    num_train: int
    spec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_index(
        cls,
        train_edges: Tensor,
        forget_index: Tensor | Sequence[int],
        *,
        num_users: int,
        num_items: int,
        spec: ForgetSpec | dict | None = None,
    ) -> ForgetEdges:
        """Split the training edges by column indices of the forgotten ones.

        Args:
            train_edges: ``(2, E)`` int64 training pairs.
            forget_index: column indices of ``D_f`` in ``train_edges``.
            num_users: ``U``.
            num_items: ``I``.
            spec: the request, recorded in :attr:`spec`.

        Returns:
            The split.

        Raises:
            ValueError: empty forget set, duplicated or out-of-range indices, or ``D_f = D_train``.
        """
        n = int(train_edges.size(1))
        index = check_forget_index(forget_index, n, what="training edge")
        mask = torch.zeros(n, dtype=torch.bool)
        mask[index] = True
        spec_dict = spec_record(spec)
        return cls(
            forget=train_edges[:, mask].clone(),
            retain=train_edges[:, ~mask].clone(),
            forget_index=index,
            num_users=int(num_users),
            num_items=int(num_items),
            num_train=n,
            spec=spec_dict,
        )

    @classmethod
    def from_pairs(
        cls,
        train_edges: Tensor,
        pairs: Tensor,
        *,
        num_users: int,
        num_items: int,
        spec: ForgetSpec | dict | None = None,
    ) -> ForgetEdges:
        """Split the training edges given the forgotten (user, item) pairs themselves.

        Args:
            train_edges: ``(2, E)`` int64 training pairs (unique pairs).
            pairs: ``(2, F)`` int64 pairs to forget; each must be a training edge.
            num_users: ``U``.
            num_items: ``I``.
            spec: the request.

        Returns:
            The split.

        Raises:
            ValueError: an unknown user/item id, a pair that is not a training edge (the first is
                named), duplicates, or an empty forget set.
            TypeError: ``pairs`` is not an integer tensor.
        """
        check_edges(pairs)
        try:
            check_edges(pairs, num_users, num_items)
        except ValueError as err:
            raise ValueError(f"forget edges: {err}") from None
        keys = _edge_keys(train_edges, num_items)
        wanted = _edge_keys(pairs, num_items)
        order = np.argsort(keys, kind="stable")
        pos = np.searchsorted(keys[order], wanted)
        pos = np.minimum(pos, max(len(keys) - 1, 0))
        found = keys[order][pos] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
        if not found.all():
            j = int(np.flatnonzero(~found)[0])
            u, i = int(pairs[0, j]), int(pairs[1, j])
            raise ValueError(
                f"forget pair (user={u}, item={i}) is not in the training graph; forget only "
                "training interactions (the edge file may belong to another dataset or split)"
            )
        return cls.from_index(
            train_edges,
            torch.from_numpy(order[pos]),
            num_users=num_users,
            num_items=num_items,
            spec=spec,
        )

    def fingerprint(self) -> str:
        """SHA-256 (16 hex chars) of the graph sizes and the forgotten pairs (cache keys)."""
        head = f"{self.num_users}:{self.num_items}:{self.num_train}:".encode()
        digest = hashlib.sha256(head + self.forget.numpy().astype(np.int64).tobytes())
        return digest.hexdigest()[:16]

    def affected_users(self) -> Tensor:
        """Users with at least one forgotten interaction, ``(U_f,)`` int64 sorted."""
        return torch.unique(self.forget[0])

    def removed_users(self) -> Tensor:
        """Users who had training edges and have none left in ``D_r``, ``(·,)`` int64 sorted."""
        return _lost(self.forget[0], self.retain[0], self.num_users)

    def removed_items(self) -> Tensor:
        """Items that had training edges and have none left in ``D_r``, ``(·,)`` int64 sorted."""
        return _lost(self.forget[1], self.retain[1], self.num_items)

    def save(self, path: str | Path) -> Path:
        """Write the forgotten pairs as JSON (atomic; never overwrites a different split).

        The file holds ``num_users``, ``num_items``, ``num_train``, ``forget`` (``[[users],
        [items]]``), ``spec`` and ``fingerprint``; load it with ``ForgetSpec(kind="indices",
        indices_file=path)`` on a :class:`RecDataModule` or :meth:`load`.

        Returns:
            ``path``.

        Raises:
            FileExistsError: ``path`` holds a different forget set.
        """
        path = Path(path)
        payload = {
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_train": self.num_train,
            "forget": self.forget.tolist(),
            "spec": self.spec,
            "fingerprint": self.fingerprint(),
        }
        if path.exists():
            try:
                same = json.loads(path.read_text()).get("fingerprint") == payload["fingerprint"]
            except (json.JSONDecodeError, AttributeError):
                same = False
            if same:
                return path
            raise FileExistsError(f"{path} holds a different forget set; choose another path")
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_bytes(path, json.dumps(payload).encode())

    @classmethod
    def load(
        cls, path: str | Path, train_edges: Tensor, *, num_users: int, num_items: int
    ) -> ForgetEdges:
        """Read a file written by :meth:`save` and check it against the training graph.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file is malformed, was made for another graph size, names an unknown
                user/item id, or a pair that is not a training edge.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"forget edge file {path} not found; write one with ForgetEdges.save(path)"
            )
        try:
            payload = json.loads(path.read_text())
            pairs = torch.as_tensor(payload["forget"], dtype=torch.long).reshape(2, -1)
        except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, ValueError):
            raise ValueError(
                f"{path} is not a forget edge file (JSON with 'forget': [[users], [items]])"
            ) from None
        for key, own in (("num_users", num_users), ("num_items", num_items)):
            if key in payload and int(payload[key]) != int(own):
                raise ValueError(
                    f"{path} was made for a graph with {key}={payload[key]}, this one has {own}; "
                    "use the same dataset and split"
                )
        return cls.from_pairs(
            train_edges, pairs, num_users=num_users, num_items=num_items, spec=payload.get("spec")
        )


def _out_of_range(ids: Tensor, bound: int) -> int | None:
    """An id of ``ids`` outside ``0..bound-1``, or ``None`` when all are valid.

    The largest id when one is too large, else the most negative one (the id error messages name).
    """
    if ids.numel() and int(ids.max()) >= bound:
        return int(ids.max())
    if ids.numel() and int(ids.min()) < 0:
        return int(ids.min())
    return None


def _lost(forget_ids: Tensor, retain_ids: Tensor, size: int) -> Tensor:
    had = torch.zeros(size, dtype=torch.bool)
    had[forget_ids] = True
    kept = torch.zeros(size, dtype=torch.bool)
    kept[retain_ids] = True
    return (had & ~kept).nonzero().flatten()


def resolve_forget_edges(
    spec: ForgetSpec, train_edges: Tensor, num_users: int, num_items: int
) -> ForgetEdges:
    """Turn a recommender forget request into explicit forget / retain training edges.

    Kinds:
        - ``user``: every training interaction of the users in ``spec.ids``, or of a seeded
          ``fraction``/``count`` of the users that have training interactions;
        - ``item``: the same for items;
        - ``interaction``: the training edges with column indices ``spec.ids``, or a seeded
          ``fraction``/``count`` of all training edges;
        - ``indices``: the pairs saved in ``spec.indices_file`` by :meth:`ForgetEdges.save`.

    The seeded draws use ``torch.randperm`` with ``torch.Generator().manual_seed(spec.seed)``.

    Args:
        spec: the request.
        train_edges: ``(2, E)`` int64 training pairs.
        num_users: ``U``.
        num_items: ``I``.

    Returns:
        The :class:`ForgetEdges`.

    Raises:
        ValueError: unknown user / item id, an edge that is not in the training graph, a kind
            that is not for recommender data, bad fraction/count, empty forget set, or a forget
            set equal to the whole training graph.
        FileNotFoundError: ``indices_file`` missing.
    """
    check_edges(train_edges, num_users, num_items)
    if spec.kind == "indices":
        return ForgetEdges.load(
            spec.indices_file or "", train_edges, num_users=num_users, num_items=num_items
        )
    if spec.kind not in ("user", "item", "interaction"):
        raise ValueError(
            f"forget kind {spec.kind!r} is not for recommender data; use user, item, "
            "interaction or indices (an edge file)"
        )
    gen = torch.Generator().manual_seed(int(spec.seed))
    n_edges = int(train_edges.size(1))
    by_edge = spec.kind == "interaction"  # ids are column indices of the training edges
    row, bound = (0, num_users) if spec.kind == "user" else (1, num_items)
    if by_edge:
        bound = n_edges
        valid = f"ids are column indices of the training edges, 0..{n_edges - 1}"
    else:
        valid = f"valid {spec.kind} ids are 0..{bound - 1}"
    if spec.ids is not None:
        ids = torch.as_tensor(list(spec.ids), dtype=torch.long)
        bad = _out_of_range(ids, bound)
        if bad is not None:
            raise ValueError(f"unknown {spec.kind} id {bad}: {valid}")
    elif by_edge:
        size = spec.draw_size(n_edges, "training interactions")
        ids = torch.randperm(n_edges, generator=gen)[:size]
    else:
        present = torch.unique(train_edges[row])
        size = spec.draw_size(int(present.numel()), f"{spec.kind}s with edges")
        ids = present[torch.randperm(present.numel(), generator=gen)[:size]]
    index = ids if by_edge else torch.isin(train_edges[row], ids).nonzero().flatten()
    return ForgetEdges.from_index(
        train_edges, index, num_users=num_users, num_items=num_items, spec=spec
    )


# ------------------------------------------------------------------------------------------
# DataModules
# ------------------------------------------------------------------------------------------
class RecDataModule(ForgetDataModule):
    """Base DataModule of recommender unlearning: forget / retain edge loaders over a graph.

    Subclasses implement :meth:`load` (returning an
    :class:`~unlearnkit.datasets.interactions.InteractionData`). The forget request resolves with
    :func:`resolve_forget_edges`.

    Args:
        forget: the forget request (default: 5 % of the users, seed 0).
        batch_size: BPR batch size of the original and retrained models and of retain loaders.
        forget_batch_size: batch size of forget loaders (the forget set is small: smaller batches
            give unlearning methods more steps per pass).
        eval_batch_size: users per score matrix in the ranking evaluation.
        seed: seed of the loaders' shuffling (``None`` in :meth:`forget_dataloader` and friends
            means: Lightning's seeded global generator).

    Shapes:
        Loader batches are ``(users (B,), items (B,))`` int64.
    """

    def __init__(
        self,
        *,
        forget: ForgetSpec | None = None,
        batch_size: int = 2048,
        forget_batch_size: int = 512,
        eval_batch_size: int = 1024,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.forget = forget or ForgetSpec(kind="user", fraction=0.05, seed=0)
        self.batch_size = batch_size
        self.forget_batch_size = forget_batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.data: InteractionData | None = None
        self.split: ForgetEdges | None = None

    # -- what subclasses provide -----------------------------------------------------------
    @abstractmethod
    def load(self) -> InteractionData:
        """Load the interaction data (train / val / test edges)."""

    def data_key(self) -> dict[str, Any]:
        """Loader options that define the data (extended by subclasses)."""
        return {}

    @property
    def name(self) -> str:
        """Dataset name used in cache keys and reports."""
        self.setup()
        return self.data.name or type(self).__name__  # type: ignore[union-attr]

    def cache_key(self) -> dict[str, Any]:
        """What identifies the training data for model-cache keys (name, options, edge hash)."""
        self.setup()
        edges = self.data.train_edges.numpy().astype(np.int64)  # type: ignore[union-attr]
        digest = hashlib.sha256(edges.tobytes()).hexdigest()[:16]
        return {
            "dataset": self.name,
            **self.data_key(),
            "num_users": self.num_users,
            "num_items": self.num_items,
            "train_edges": digest,
        }

    # -- state -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        data = self.load()
        self.split = resolve_forget_edges(
            self.forget, data.train_edges, data.num_users, data.num_items
        )
        self.data = data

    def set_forget(self, spec: ForgetSpec) -> ForgetEdges:
        """Switch to another forget request (the data stay loaded).

        Raises:
            ValueError / FileNotFoundError: the request does not resolve
                (see :func:`resolve_forget_edges`).
        """
        self.setup()
        data = self.data
        split = resolve_forget_edges(spec, data.train_edges, data.num_users, data.num_items)  # type: ignore[union-attr]
        self.forget, self.split = spec, split
        return split

    @property
    def num_users(self) -> int:
        self.setup()
        return int(self.data.num_users)  # type: ignore[union-attr]

    @property
    def num_items(self) -> int:
        self.setup()
        return int(self.data.num_items)  # type: ignore[union-attr]

    @property
    def train_edges(self) -> Tensor:
        """``D_train`` edges, ``(2, E)`` int64."""
        self.setup()
        return self.data.train_edges  # type: ignore[union-attr]

    @property
    def forget_edges(self) -> Tensor:
        """``D_f`` edges of the current request, ``(2, F)`` int64."""
        self.setup()
        return self.split.forget  # type: ignore[union-attr]

    @property
    def retain_edges(self) -> Tensor:
        """``D_r`` edges of the current request, ``(2, R)`` int64."""
        self.setup()
        return self.split.retain  # type: ignore[union-attr]

    # -- loaders -----------------------------------------------------------------------------
    def full_train_dataloader(self, *, shuffle: bool = True) -> DataLoader:
        """``D_train`` pairs (the original model's data)."""
        return edge_loader(self.train_edges, self.batch_size, shuffle=shuffle)

    def forget_dataloader(self, *, shuffle: bool = True) -> DataLoader:
        """``D_f`` pairs, ``forget_batch_size`` per batch."""
        return edge_loader(self.forget_edges, self.forget_batch_size, shuffle=shuffle)

    def retain_dataloader(self, *, shuffle: bool = True) -> DataLoader:
        """``D_r`` pairs, ``batch_size`` per batch."""
        return edge_loader(self.retain_edges, self.batch_size, shuffle=shuffle)

    def test_dataloader(self) -> DataLoader:
        """Test users in batches of ``eval_batch_size`` (the evaluation ranks all items for them)."""
        self.setup()
        users = torch.unique(self.data.test_edges[0])  # type: ignore[union-attr]
        return DataLoader(users, batch_size=self.eval_batch_size, shuffle=False)


class _MovieLensDataModule(RecDataModule):
    """Shared options of the MovieLens modules: k-core, positive threshold and per-user split.

    Args:
        k: k-core threshold.
        threshold: minimum rating of a positive.
        split_seed: seed of the per-user train/val/test split.
        val_fraction: per-user validation share.
        test_fraction: per-user test share.
        **kwargs: the loader options of :class:`RecDataModule` (``forget``, ``batch_size``,
            ``forget_batch_size``, ``eval_batch_size``, ``seed``).
    """

    def __init__(
        self,
        *,
        k: int = 5,
        threshold: float = 4.0,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.k = k
        self.threshold = threshold
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

    def data_key(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "threshold": self.threshold,
            "split_seed": self.split_seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
        }

    def _loader_options(self) -> dict[str, Any]:
        """Keyword arguments of the :mod:`unlearnkit.datasets.movielens` loaders."""
        options = _MovieLensDataModule.data_key(self)
        options["seed"] = options.pop("split_seed")
        return options


class MovieLensSmallDataModule(_MovieLensDataModule):
    """The embedded default: MovieLens ml-latest-small as k-core implicit feedback.

    Harper & Konstan, "The MovieLens Datasets: History and Context", ACM TiiS 5(4), 2015. Loaded by
    :func:`~unlearnkit.datasets.movielens.load_movielens_small` from the files shipped in the
    package (no download): with the defaults 659 users, 2,078 items, 31,056 training edges.

    Args:
        k, threshold: k-core threshold and minimum rating of a positive.
        split_seed, val_fraction, test_fraction: seed and per-user shares of the
            train/val/test split.
        (others: see :class:`RecDataModule`)
    """

    def load(self) -> InteractionData:
        from unlearnkit.datasets.movielens import load_movielens_small

        return load_movielens_small(**self._loader_options())


class _RootedMovieLens(_MovieLensDataModule):
    """Shared body of the MovieLens 100K / 1M modules (files the user brings under ``root``)."""

    _loader_name = ""

    def __init__(self, *, root: str | None = None, download: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.download = download

    def load(self) -> InteractionData:
        from unlearnkit.datasets import movielens

        loader = getattr(movielens, self._loader_name)
        return loader(self.root, download=self.download, **self._loader_options())


class MovieLens100KDataModule(_RootedMovieLens):
    """MovieLens 100K (``u.data`` under ``root``; GroupLens terms forbid shipping it).

    Harper & Konstan, ACM TiiS 2015; loaded by
    :func:`~unlearnkit.datasets.movielens.load_movielens_100k`.

    Args:
        root: folder with ``u.data`` or ``ml-100k/u.data`` (default ``$UNLEARNKIT_DATA/ml-100k``).
        download: fetch the official zip into ``root`` when missing (needs internet).
        (others: see :class:`MovieLensSmallDataModule`)

    Raises:
        FileNotFoundError: at setup, when the file is missing (says where to get it).
    """

    _loader_name = "load_movielens_100k"


class MovieLens1MDataModule(_RootedMovieLens):
    """MovieLens 1M: :class:`MovieLens100KDataModule` over ``ratings.dat`` instead of ``u.data``.

    Harper & Konstan, ACM TiiS 2015; loaded by
    :func:`~unlearnkit.datasets.movielens.load_movielens_1m` from ``root/ratings.dat`` or
    ``root/ml-1m/ratings.dat`` (default ``root``: ``$UNLEARNKIT_DATA/ml-1m``). Arguments and
    errors are those of :class:`MovieLens100KDataModule`.
    """

    _loader_name = "load_movielens_1m"


class LightGCNTxtDataModule(RecDataModule):
    """A dataset in LightGCN's text format (Gowalla, Yelp2018, Amazon-Book: ``train.txt``/``test.txt``).

    He et al., "LightGCN", SIGIR 2020, arXiv:2002.02126, Sec. 4.1.1; loaded by
    :func:`~unlearnkit.datasets.interactions.load_lightgcn_txt`.

    Args:
        root: folder holding ``train.txt`` and ``test.txt``.
        val_fraction: per-user validation share carved from train.
        split_seed: seed of that carve-out.
        (others: see :class:`RecDataModule`)

    Raises:
        FileNotFoundError: at setup, when a file is missing.
    """

    def __init__(
        self, *, root: str, val_fraction: float = 0.1, split_seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.val_fraction = val_fraction
        self.split_seed = split_seed

    def data_key(self) -> dict[str, Any]:
        return {
            "root": str(Path(self.root).resolve()),
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
        }

    def load(self) -> InteractionData:
        from unlearnkit.datasets.interactions import load_lightgcn_txt

        return load_lightgcn_txt(self.root, val_fraction=self.val_fraction, seed=self.split_seed)


# ------------------------------------------------------------------------------------------
# `unlearnkit run` dispatch
# ------------------------------------------------------------------------------------------
