"""The data a method reads: named streams of batches, each sample carrying named attributes.

A method declares what it reads in one class attribute, ``streams``: any of the standard names

- ``"forget"``: D_f, shuffled;
- ``"retain"``: D_r = D_train \\ D_f, shuffled;
- ``"union"``: one shuffled pass over D_f ∪ D_r, each batch mixing both sets, with the attribute
  ``from_forget`` marking the D_f samples (the OPTML random-label code's ``ConcatDataset``);
- ``"train"``: D_train in the data's own order, unshuffled (one-shot methods that need the
  whole training set, e.g. SSD's I_D),

or a :class:`Stream` object the method defines itself (a subset of D_f chosen from the model,
a re-ordered D_train, ...). Standard streams a method can use but does without are named in
``optional_streams``. A :class:`StreamSource` (a DataModule, or the loaders a user passed
to ``unlearn``) gives the standard loaders; :func:`open_streams` builds what a method declared.

Batches are ``(x, y)`` or ``(x, y, attributes)`` where ``attributes`` maps names (``index``:
the position in D_train, and where the data has them ``group``, ``identity``, ``superclass``,
...) to ``(B,)`` tensors. A method sees each stream's batch as a :class:`Batch`, which unpacks
as ``x, y = batch`` and keeps the attributes in ``batch.attrs``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

__all__ = [
    "STANDARD_STREAMS",
    "Batch",
    "Flagged",
    "UndeclaredStreamError",
    "LoaderSource",
    "Stream",
    "StreamSource",
    "TwoPassBatchSampler",
    "UnlearnBatch",
    "declared_streams",
    "open_streams",
    "reads",
    "split_batch",
    "stream_name",
    "union_loader",
]

#: The stream names every :class:`StreamSource` provides (``union`` is built from two of them).
STANDARD_STREAMS: tuple[str, ...] = ("forget", "retain", "union", "train")


@dataclass
class Batch:
    """One batch of one stream: inputs, targets and the samples' named attributes.

    Unpacks as ``x, y = batch`` (so a loss reads it like a plain ``(x, y)`` batch).

    Attributes:
        x: inputs, ``(B, ...)`` (images ``(B, C, H, W)`` float32; recommender users ``(B,)``).
        y: targets, ``(B,)`` int64 (class ids; recommender items).
        attrs: named per-sample attributes, each ``(B,)``: ``index`` (position in D_train),
            ``from_forget`` (bool, the ``union`` stream), ``group``, ``identity``, ...
    """

    x: Tensor
    y: Tensor
    attrs: dict[str, Tensor] = field(default_factory=dict)

    def __iter__(self):  # noqa: ANN204 - x, y unpacking
        return iter((self.x, self.y))

    def attr(self, name: str) -> Tensor:
        """The attribute ``name``, ``(B,)``.

        Raises:
            KeyError: the data carries no such attribute (the message lists those it has).
        """
        if name not in self.attrs:
            raise KeyError(
                f"the batch has no attribute {name!r} (it has {sorted(self.attrs) or 'none'}); "
                f"use a dataset that provides {name!r}"
            )
        return self.attrs[name]


def split_batch(batch: Any) -> Batch:
    """A loader's batch as a :class:`Batch`.

    Accepts ``(x, y)``, ``(x, y, attrs_dict)`` and ``(x, y, *extra)`` (extra tensors are dropped;
    a legacy ``(x, y, from_forget)`` triple keeps its third field as ``attrs["from_forget"]``).

    Raises:
        TypeError: ``batch`` is not a tuple/list of at least two entries.
    """
    if isinstance(batch, Batch):
        return batch
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            f"a batch must be (x, y) or (x, y, attributes), got {type(batch).__name__}; "
            "use the default collate_fn over a dataset yielding such tuples"
        )
    attrs: dict[str, Tensor] = {}
    if len(batch) > 2 and isinstance(batch[2], Mapping):
        attrs = dict(batch[2])
    return Batch(batch[0], batch[1], attrs)


class UndeclaredStreamError(AttributeError, KeyError, ValueError):
    """A method read a stream it did not declare (a ``ValueError``: the CLI shows one line)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnlearnBatch:
    """One optimisation step's data: a :class:`Batch` per stream the method declared.

    Read a stream as an attribute or by name: ``batch.forget``, ``batch.retain``,
    ``batch.union``, ``batch["sharpest"]`` (a method-defined :class:`Stream`).

    Args:
        parts: stream name → batch (a :class:`Batch` or a raw loader batch).
        method: the reading method's class name, for error messages.

    Raises:
        UndeclaredStreamError: reading a stream the method did not declare (the message names
            the method and the fix: add the name to its ``streams``); it is an
            ``AttributeError``, a ``KeyError`` and a ``ValueError``.
    """

    def __init__(self, parts: Mapping[str, Any], method: str = "the method") -> None:
        self._parts = {k: split_batch(v) for k, v in parts.items() if v is not None}
        self._method = method

    @classmethod
    def from_loader_batch(
        cls, batch: Mapping[str, Any], method: str = "the method"
    ) -> UnlearnBatch:
        """From a :class:`~lightning.pytorch.utilities.CombinedLoader` dict batch."""
        return cls(batch, method)

    def __contains__(self, name: str) -> bool:
        return name in self._parts

    def __getitem__(self, name: str) -> Batch:
        if name not in self._parts:
            raise UndeclaredStreamError(
                f"{self._method} reads the {name!r} stream but does not declare it: add "
                f"{name!r} to its class attribute streams (now {tuple(self._parts)})"
            )
        return self._parts[name]

    def __getattr__(self, name: str) -> Batch:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __repr__(self) -> str:
        return f"UnlearnBatch({', '.join(self._parts)})"


@runtime_checkable
class StreamSource(Protocol):
    """Where standard streams come from: a DataModule, or loaders passed to ``unlearn``."""

    def stream_loader(self, name: str) -> DataLoader | None:
        """The loader of the standard stream ``name`` (forget, retain or train), or ``None``."""


class Stream(ABC):
    """A stream a method defines itself (declare an instance in the method's ``streams``).

    Subclasses set :attr:`name` and implement :meth:`build`, which may use the model (e.g.
    select the forget samples with the largest loss) and any standard stream of the source.
    The built loader's batches reach the method as ``batch[name]`` (iterative methods; the
    stream is cycled if shorter than the longest stream) or ``loaders[name]`` (one-shot).

    Attributes:
        name: the stream's name in batches and loader dicts.
        parts: the standard streams it is built from (checked before :meth:`build`, with the
            standard message when one is missing; ``requires_retain`` counts them).
    """

    name: str = ""
    parts: tuple[str, ...] = ()

    @abstractmethod
    def build(self, method: Any, model: Any, source: StreamSource) -> Iterable[Any]:
        """The stream's loader for ``method`` on ``model`` (called once per ``unlearn``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def stream_name(stream: str | Stream) -> str:
    """The name a declared stream is read under."""
    return stream if isinstance(stream, str) else stream.name


def declared_streams(method: Any) -> tuple[str | Stream, ...]:
    """The streams a method declares (its class attribute ``streams``).

    Raises:
        ValueError: the declaration is missing, empty, or names an unknown standard stream.
    """
    name = type(method).__name__
    streams = getattr(method, "streams", None)
    if not streams or isinstance(streams, (str, Stream)):
        raise ValueError(
            f"{name} declares no data streams: set the class attribute "
            "streams = ('forget',) (or 'retain', 'union', 'train', a Stream) on it"
        )
    for s in streams:
        if isinstance(s, Stream):
            if not s.name:
                raise ValueError(f"{name}: the stream {s!r} has no name; set Stream.name")
        elif s not in STANDARD_STREAMS:
            raise ValueError(
                f"{name} declares an unknown stream {s!r}; the standard ones are "
                f"{', '.join(STANDARD_STREAMS)} (define others as a Stream subclass)"
            )
    return tuple(streams)


def reads(method: Any, part: str) -> bool:
    """Whether ``method`` reads the standard set ``part``: ``retain`` is read by ``union`` too,
    and by ``train`` when no train loader is given (D_train is then D_r followed by D_f)."""
    declared = getattr(method, "streams", ())
    names = {stream_name(s) for s in declared}
    names |= {p for s in declared if isinstance(s, Stream) for p in s.parts}
    if part in ("forget", "retain") and "union" in names:
        return True
    if part == "retain" and "train" in names:
        return True
    return part in names


class Flagged(Dataset):
    """``dataset[i]`` as ``(x, y, attrs)`` with the attribute ``from_forget`` set to ``flag``:
    one part of D_f ∪ D_r, marked (for streams that mix or chain the two sets)."""

    def __init__(self, dataset: Dataset, flag: bool) -> None:
        self.dataset, self.flag = dataset, torch.tensor(flag)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, dict[str, Tensor]]:
        item = self.dataset[index]
        attrs = dict(item[2]) if len(item) > 2 and isinstance(item[2], Mapping) else {}
        attrs["from_forget"] = self.flag
        return item[0], item[1], attrs


def union_loader(forget: DataLoader, retain: DataLoader, *, seed: int) -> DataLoader:
    """One shuffled loader over D_f ∪ D_r yielding ``(x, y, attrs)`` with ``attrs["from_forget"]``.

    Batch size and workers follow the retain loader; the order is seeded by ``seed``.

    Shapes: ``x`` (B, ...), ``y`` (B,) int64, ``attrs["from_forget"]`` (B,) bool.

    Raises:
        ValueError: a sample's label is not a scalar class id (e.g. an ``(N, 1)`` label tensor:
            D_f and D_r samples could not be batched together).
    """
    for name, dataset in (("D_f", forget.dataset), ("D_r", retain.dataset)):
        label = dataset[0][1] if len(dataset) else 0  # type: ignore[arg-type, index]
        if isinstance(label, torch.Tensor) and label.ndim != 0:
            raise ValueError(
                f"{name}'s samples must carry one scalar class id each, got a label of shape "
                f"{tuple(label.shape)} for sample 0; squeeze (N, 1) labels, argmax one-hot ones"
            )
    union = ConcatDataset([Flagged(forget.dataset, True), Flagged(retain.dataset, False)])
    return DataLoader(
        union,
        batch_size=retain.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=retain.num_workers,
    )


class LoaderSource:
    """A :class:`StreamSource` over loaders a user passed to ``unlearn``.

    ``train`` defaults to an unshuffled loader over D_r followed by D_f (batch size of the
    forget loader) when not given.

    Args:
        forget: loader over D_f.
        retain: loader over D_r, or ``None``.
        **extra: other standard loaders (``train=...``).
    """

    def __init__(
        self, forget: DataLoader | None, retain: DataLoader | None = None, **extra: Any
    ) -> None:
        self.loaders = {"forget": forget, "retain": retain, **extra}

    def stream_loader(self, name: str) -> DataLoader | None:
        loader = self.loaders.get(name)
        if loader is None and name == "train":
            forget, retain = self.loaders.get("forget"), self.loaders.get("retain")
            if forget is None or retain is None:
                return None
            return DataLoader(
                ConcatDataset([retain.dataset, forget.dataset]),
                batch_size=forget.batch_size,
                shuffle=False,
                num_workers=forget.num_workers,
                collate_fn=forget.collate_fn,
            )
        return loader


def _is_empty(loader: Iterable) -> bool:
    dataset = getattr(loader, "dataset", None)
    if dataset is not None and hasattr(dataset, "__len__"):
        return len(dataset) == 0
    try:
        return len(loader) == 0  # type: ignore[arg-type]
    except TypeError:
        return False


_HOW_TO_PASS = {
    "forget": "pass forget=<DataLoader over D_f>",
    "retain": "pass retain=<DataLoader over D_r (D_train minus the forget set)>",
    "train": "pass retain=<DataLoader over D_r> (D_train is then D_r followed by D_f) or "
    "train=<unshuffled DataLoader over D_train>",
}


def open_streams(method: Any, model: Any, source: StreamSource) -> dict[str, Iterable[Any]]:
    """The loaders of every stream ``method`` declares, from ``source``.

    The forget set is always checked (an unlearning request without D_f is an error), even for
    a method that does not read it.

    Args:
        method: the unlearning method (its ``streams`` and ``seed``).
        model: the model (given to method-defined streams).
        source: a DataModule or :class:`LoaderSource`.

    Returns:
        ``{stream name: loader}`` in declaration order, plus ``"forget"`` even when not declared
        (methods that do not train on D_f may still need to know it, e.g. which recommender
        edges to drop; the training loop reads only the declared streams).

    Raises:
        ValueError: an empty or missing forget set, or a declared stream the source lacks (e.g.
            no retain loader for a method reading D_r).
    """
    name = type(method).__name__
    streams = declared_streams(method)
    optional = tuple(getattr(method, "optional_streams", ()))
    forget = source.stream_loader("forget")
    if forget is None or _is_empty(forget):
        raise ValueError(f"{name}: the forget set is empty; pass a loader over at least one sample")
    out: dict[str, Iterable[Any]] = {}
    for stream in streams:
        parts = (
            stream.parts
            if isinstance(stream, Stream)
            else ("forget", "retain")
            if stream == "union"
            else (stream,)
        )
        loaders = {p: source.stream_loader(p) for p in parts}
        for part, loader in loaders.items():
            if loader is None or _is_empty(loader):
                what = "retain set or a train" if part == "train" else part
                raise ValueError(f"{name} needs a {what} set: {_HOW_TO_PASS[part]}")
        if isinstance(stream, Stream):
            out[stream.name] = stream.build(method, model, source)
        elif stream == "union":
            out[stream] = union_loader(
                loaders["forget"], loaders["retain"], seed=int(getattr(method, "seed", 0))
            )
        else:
            out[stream] = loaders[stream]  # type: ignore[assignment]
    for part in optional:  # opened when the source has them, else absent
        loader = source.stream_loader(part)
        if loader is not None and not _is_empty(loader):
            out.setdefault(part, loader)
    out.setdefault("forget", forget)
    return out


class TwoPassBatchSampler(Sampler[list[int]]):
    """Index batches over a dataset of two consecutive parts: a shuffled pass over the first
    ``n_first`` positions in batches of ``sizes[0]``, then one over the next ``n_second`` in
    batches of ``sizes[1]`` — one epoch of a method that makes a pass over D_f and then a pass
    over D_r (SCRUB's max- then min-steps, UNSIR's impair then repair data) inside one stream.

    Args:
        n_first: size of the first part (positions ``0 .. n_first - 1``).
        n_second: size of the second part (positions ``n_first .. n_first + n_second - 1``).
        sizes: the two batch sizes.
        seed: seeds the shuffles (each epoch draws new orders from the same generator).
    """

    def __init__(self, n_first: int, n_second: int, sizes: tuple[int, int], seed: int) -> None:
        self.n_first, self.n_second, self.sizes = n_first, n_second, sizes
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[list[int]]:
        first = torch.randperm(self.n_first, generator=self.generator).tolist()
        second = (torch.randperm(self.n_second, generator=self.generator) + self.n_first).tolist()
        for order, size in ((first, self.sizes[0]), (second, self.sizes[1])):
            yield from (order[i : i + size] for i in range(0, len(order), size))

    def __len__(self) -> int:
        return -(-self.n_first // self.sizes[0]) + -(-self.n_second // self.sizes[1])
