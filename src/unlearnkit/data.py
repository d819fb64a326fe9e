"""What to forget (:class:`ForgetSpec` → :class:`ForgetSplit`) and the DataModule base.

A forget request resolves to explicit, sorted index sets into D_train that can be saved to and
loaded from a JSON file, so any experiment can be repeated on exactly the same samples. A request
is plain data (class, subclass, random, indices; user/item/interaction for recommenders) or names
a :class:`ForgetSelector`, which chooses the forget set from the original model and the data
(searched worst-case sets); the experiment resolves, caches and saves it like any other.

The DataModule's loaders yield ``(x, y, attributes)``: ``attributes`` maps names to per-sample
values, ``index`` (the position in D_train, or in D_test) always, and whatever the dataset
provides (``group``, ``identity``, ...), so methods and metrics can group by them.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from unlearnkit.atomic import atomic_write_bytes

#: The plain-data forget kinds; a request with a ``selector`` may use any other name.
PLAIN_KINDS = ("class", "subclass", "random", "indices", "user", "item", "interaction")


def check_forget_index(index: Tensor | list[int], num_train: int, *, what: str) -> Tensor:
    """Validate forget indices into a training set of ``num_train`` items; return them sorted.

    The one validation of every forget set, samples (:class:`ForgetSplit`) and recommender
    edges (``unlearnkit.recsys.data.ForgetEdges``) alike: non-empty, no duplicates, each in
    ``0..num_train-1``, and at least one item left in D_r.

    Args:
        index: forget indices, any integer sequence.
        num_train: size of D_train.
        what: what an item is, for the messages (``"training sample"``, ``"training edge"``).

    Returns:
        ``(N_f,)`` int64, sorted.

    Raises:
        ValueError: empty, duplicated, out-of-range, or covering all of D_train.
    """
    index = torch.as_tensor(index, dtype=torch.long).flatten()
    if index.numel() == 0:
        raise ValueError(
            f"the forget set is empty: no {what} matches the request; check the "
            "classes/ids/fraction or the indices file"
        )
    if index.unique().numel() != index.numel():
        raise ValueError(f"forget indices contain duplicates; give each {what} once")
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= num_train:
        bad = high if high >= num_train else low
        raise ValueError(
            f"forget index {bad} is outside the training set of {num_train} {what}s "
            f"(0..{num_train - 1}); the index file was probably made for another dataset or split"
        )
    if index.numel() == num_train:
        raise ValueError(
            f"the forget set covers all {num_train} {what}s of D_train, leaving no retain set"
        )
    return index.sort().values


class ForgetSelector(ABC):
    """Chooses a forget set from the original model θ_o and the data (e.g. a worst-case search).

    Used as ``ForgetSpec(kind="worst_case", fraction=0.1, selector=MySelector(...))`` or in YAML
    ``{kind: worst_case, fraction: 0.1, selector: {class_path: my.Selector, init_args: {...}}}``.
    The experiment calls :meth:`select` once θ_o exists, caches the result keyed by θ_o, the data,
    the size and :meth:`cache_key`, and saves it as explicit indices like every other kind.
    Hyper-parameters are typed ``__init__`` arguments stored unchanged (as for methods).
    """

    @abstractmethod
    def select(self, model: nn.Module, data: Any, *, size: int) -> Tensor:
        """The forget set: ``size`` distinct indices into D_train.

        Args:
            model: θ_o (do not modify it; copy first).
            data: the :class:`UnlearningDataModule` (``full_train_dataloader(shuffle=False)``,
                ``train_set``, ``num_classes``...).
            size: how many samples to select.

        Returns:
            ``(size,)`` int64 indices into D_train.
        """

    def cache_key(self) -> dict[str, Any]:
        """What determines the selection besides θ_o, the data and the size (default: the class
        and its ``__init__`` arguments)."""
        import inspect

        cls = type(self)
        names = [k for k in inspect.signature(cls.__init__).parameters if k != "self"]
        params = {k: getattr(self, k) for k in names if hasattr(self, k)}  # not learned state_
        return {"selector": f"{cls.__module__}.{cls.__qualname__}", "params": params}


@dataclass
class ForgetSpec:
    """A forget request.

    Kinds (DESIGN §2):
        - ``class``: every training sample whose label is in ``classes``.
        - ``subclass``: every sample whose *fine* label is in ``classes`` while the model is
          trained on superclass labels (e.g. forget "Sneaker" from a {tops, footwear, other}
          classifier).
        - ``random``: ``fraction`` (or ``count``) of D_train drawn uniformly with ``seed``.
        - ``indices``: the exact indices saved in ``indices_file`` by :meth:`ForgetSplit.save`.
        - ``user`` / ``item`` / ``interaction`` (recommender data, resolved by
          :func:`unlearnkit.recsys.data.resolve_forget_edges`): every interaction of the users
          (items) in ``ids``, or of a seeded ``fraction``/``count`` of them; for ``interaction``,
          ``ids`` are column indices of the training edges, else a seeded share of edges.
        - any other name with a ``selector``: ``fraction``/``count`` of D_train chosen by the
          :class:`ForgetSelector` from the original model (resolved by the experiment).

    Args:
        kind: one of the kinds above.
        classes: class (or fine-class) ids for ``class``/``subclass``.
        fraction: share of D_train in (0, 1) for ``random``.
        count: number of samples for ``random`` (instead of ``fraction``).
        seed: seed of the ``random`` draw.
        indices_file: JSON file written by :meth:`ForgetSplit.save` for ``indices``.
        name: label used in reports (default derived from the request).
        ids: explicit user / item / edge ids for the recommender kinds.
        selector: the :class:`ForgetSelector` of a model-dependent kind.
    """

    kind: str = "class"
    classes: list[int] | None = None
    fraction: float | None = None
    count: int | None = None
    seed: int = 0
    indices_file: str | None = None
    name: str | None = None
    ids: list[int] | None = None
    selector: ForgetSelector | None = None

    @property
    def needs_model(self) -> bool:
        """Whether the request is resolved from the original model (it has a selector)."""
        return self.selector is not None

    @property
    def label(self) -> str:
        """Human-readable name of the request, used as report row key and (slugged) file name.

        ``name`` when given, else e.g. ``class 0``, ``classes 0, 3``, ``subclass 7``, ``random
        10 % (seed 0)``, ``random 83 (seed 1)``, ``user 5 % (seed 0)``, ``item [1, 2, 3]``
        (more than 5 ids: the first 3, then ``… (12 ids)``), ``indices forget.json``, and for a
        selector kind ``worst_case 10 %`` (the selector sets the order, no seed).
        """
        if self.name:
            return self.name
        if self.kind in ("class", "subclass"):
            classes = list(self.classes or [])
            word = self.kind + ("es" if len(classes) != 1 else "")  # classes, subclasses
            return f"{word} {', '.join(str(int(c)) for c in classes)}".rstrip()
        amount = f"{self.fraction * 100:g} %" if self.fraction is not None else str(self.count)
        if self.selector is not None:
            return f"{self.kind} {amount}"
        if self.kind in ("user", "item", "interaction") and self.ids is not None:
            ids = [str(int(i)) for i in self.ids]
            shown = (
                ", ".join(ids) if len(ids) <= 5 else ", ".join(ids[:3]) + f", … ({len(ids)} ids)"
            )
            return f"{self.kind} [{shown}]"
        if self.kind in ("random", "user", "item", "interaction"):
            return f"{self.kind} {amount} (seed {self.seed})"
        if self.kind == "indices":
            return f"indices {Path(self.indices_file or '').name}"
        return f"{self.kind} {amount}"

    def resolve(
        self,
        targets: Tensor,
        *,
        fine_targets: Tensor | None = None,
        num_classes: int | None = None,
        num_fine_classes: int | None = None,
    ) -> ForgetSplit:
        """Turn the request into explicit index sets over D_train.

        Args:
            targets: training labels, ``(N,)`` int64.
            fine_targets: fine labels ``(N,)`` for ``subclass`` (default: ``targets``).
            num_classes: number of classes (for range checks; default ``targets.max()+1``).
            num_fine_classes: number of fine classes for ``subclass``.

        Returns:
            The :class:`ForgetSplit`.

        Raises:
            ValueError: class id out of range, empty forget set, bad fraction/count, forget
                set equal to the whole training set, or indices outside D_train.
            FileNotFoundError: ``indices_file`` missing.
        """
        n = int(targets.numel())
        if self.selector is not None:
            raise ValueError(
                f"forget kind {self.kind!r} is chosen by {type(self.selector).__name__} from the "
                "original model: resolve it with UnlearningDataModule.select_forget(spec, model)"
            )
        if self.kind in ("class", "subclass"):
            labels = (
                targets
                if self.kind == "class"
                else (fine_targets if fine_targets is not None else targets)
            )
            limit = num_classes if self.kind == "class" else num_fine_classes
            limit = int(limit if limit is not None else int(labels.max()) + 1)
            if not self.classes:
                raise ValueError(
                    f"forget kind {self.kind!r} needs classes=[...]; e.g. classes: [0]"
                )
            bad = [c for c in self.classes if not 0 <= int(c) < limit]
            if bad:
                raise ValueError(
                    f"forget class {bad[0]} is out of range: this dataset has classes 0..{limit - 1}; "
                    "pick class ids in that range"
                )
            mask = torch.isin(labels, torch.as_tensor(self.classes, dtype=labels.dtype))
            forget = mask.nonzero().flatten()
        elif self.kind == "random":
            size = self.draw_size(n)
            gen = torch.Generator().manual_seed(self.seed)
            forget = torch.randperm(n, generator=gen)[:size].sort().values
        elif self.kind == "indices":
            return ForgetSplit.load(self.indices_file or "", num_train=n)
        elif self.kind in ("user", "item", "interaction"):
            raise ValueError(
                f"forget kind {self.kind!r} is for recommender data: use a "
                "unlearnkit.recsys.data.RecDataModule, or class/subclass/random/indices here"
            )
        else:
            raise ValueError(
                f"unknown forget kind {self.kind!r}; use one of class, subclass, random, indices "
                "(or give a selector for a model-dependent kind)"
            )
        return ForgetSplit.from_indices(forget, num_train=n, spec=self)

    def draw_size(self, n: int, what: str = "training samples") -> int:
        """The size of a drawn forget set (``fraction`` or ``count`` of ``n``).

        Args:
            n: how many items the draw is from.
            what: what they are, for the messages.

        Returns:
            An int in ``1..n-1`` (at least one item stays in D_r).

        Raises:
            ValueError: neither or both of fraction/count, or a value out of range.
        """
        if (self.fraction is None) == (self.count is None):
            raise ValueError(
                f"{self.kind} forgetting needs exactly one of fraction=(0,1) or count=k"
                + (" (or ids=[...])" if self.kind in ("user", "item", "interaction") else "")
            )
        if self.fraction is not None:
            if not 0 < self.fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
            return min(max(1, round(self.fraction * n)), max(1, n - 1))
        if not 0 < int(self.count) < n:  # type: ignore[arg-type]
            raise ValueError(f"count must be in 1..{n - 1} for {n} {what}, got {self.count}")
        return int(self.count)  # type: ignore[arg-type]


def spec_record(spec: ForgetSpec | Mapping | None) -> dict[str, Any]:
    """A request as a JSON-able dict (a selector as its class path and parameters)."""
    if not isinstance(spec, ForgetSpec):
        return dict(spec or {})
    record = {k: v for k, v in asdict(spec).items() if k != "selector"}
    if spec.selector is not None:
        record["selector"] = spec.selector.cache_key()
    return record


@dataclass
class ForgetSplit:
    """Explicit forget/retain index sets over D_train (sorted, disjoint, covering D_train).

    Attributes:
        forget: ``(N_f,)`` int64 sorted indices of D_f.
        retain: ``(N_r,)`` int64 sorted indices of D_r = D_train \\ D_f.
        num_train: ``N = N_f + N_r``.
        spec: the request it was resolved from (saved alongside for provenance).
    """

    forget: Tensor
    retain: Tensor
    num_train: int
    spec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_indices(
        cls, forget: Tensor | list[int], *, num_train: int, spec: ForgetSpec | dict | None = None
    ) -> ForgetSplit:
        """Validate forget indices and build the complementary retain set.

        Raises:
            ValueError: empty, duplicated, out-of-range indices, or D_f = D_train.
        """
        forget = check_forget_index(forget, num_train, what="training sample")
        mask = torch.zeros(num_train, dtype=torch.bool)
        mask[forget] = True
        spec_dict = spec_record(spec)
        return cls(
            forget=forget,
            retain=(~mask).nonzero().flatten(),
            num_train=num_train,
            spec=spec_dict,
        )

    def fingerprint(self) -> str:
        """SHA-256 (16 hex chars) of the forget indices and N — used in cache keys."""
        digest = hashlib.sha256(f"{self.num_train}:".encode() + self.forget.numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Write the split as JSON (atomic; refuses to overwrite a different split).

        Raises:
            FileExistsError: ``path`` holds a different split.
        """
        path = Path(path)
        payload = {
            "num_train": self.num_train,
            "forget": self.forget.tolist(),
            "spec": self.spec,
            "fingerprint": self.fingerprint(),
        }
        if path.exists():
            if json.loads(path.read_text()).get("fingerprint") == payload["fingerprint"]:
                return path
            raise FileExistsError(f"{path} holds a different forget split; choose another path")
        return atomic_write_bytes(path, json.dumps(payload).encode())

    @classmethod
    def load(cls, path: str | Path, *, num_train: int) -> ForgetSplit:
        """Read a split written by :meth:`save` and check it against D_train's size.

        Raises:
            FileNotFoundError: no such file.
            ValueError: the file was made for a training set of another size, or bad indices.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"forget indices file {path} not found; write one with ForgetSplit.save(path)"
            )
        payload = json.loads(path.read_text())
        if int(payload.get("num_train", num_train)) != num_train:
            raise ValueError(
                f"{path} was made for a training set of {payload['num_train']} samples, this one "
                f"has {num_train}; use the same dataset and split"
            )
        return cls.from_indices(payload["forget"], num_train=num_train, spec=payload.get("spec"))


def size_of(dataset: Any) -> int:
    """``len(dataset)`` (a helper for typed call sites)."""
    return len(dataset)


class AttributedDataset(Dataset):
    """``dataset[i]`` as ``(x, y, attributes)``: a wrapper for datasets without attributes.

    Args:
        dataset: a map-style dataset yielding ``(x, y, ...)``.
        attributes: name → ``(N,)`` tensor of per-sample values.

    Raises:
        ValueError: an attribute does not have one value per sample.
    """

    def __init__(self, dataset: Dataset, attributes: Mapping[str, Tensor]) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        for name, values in attributes.items():
            if values.shape != (n,):
                raise ValueError(f"attribute {name!r} has shape {tuple(values.shape)}, need ({n},)")
        self.dataset, self.attributes = dataset, dict(attributes)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, dict[str, Tensor]]:
        item = self.dataset[index]
        return item[0], item[1], {k: v[index] for k, v in self.attributes.items()}

    def __getattr__(self, name: str) -> Any:  # targets, classes, num_classes, ... of the base
        if name in ("dataset", "attributes"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def subset(self, indices: Tensor) -> AttributedDataset:
        base = self.dataset
        inner = base.subset(indices) if hasattr(base, "subset") else Subset(base, indices.tolist())
        return AttributedDataset(inner, {k: v[indices] for k, v in self.attributes.items()})

    def with_augment(self, flag: bool) -> AttributedDataset:
        base = self.dataset
        inner = base.with_augment(flag) if hasattr(base, "with_augment") else base
        return AttributedDataset(inner, self.attributes)


def _with_index(dataset: Any) -> Any:
    """``dataset`` with the per-sample attribute ``index`` = its position (0..N-1)."""
    index = torch.arange(len(dataset))
    if hasattr(dataset, "with_attributes"):
        return dataset.with_attributes(index=index)
    return AttributedDataset(dataset, {"index": index})


class IndexedSubset(Subset):
    """A :class:`~torch.utils.data.Subset` that keeps ``targets`` handy for evaluation."""

    @property
    def targets(self) -> Tensor:
        return self.dataset.targets[torch.as_tensor(self.indices)]  # type: ignore[attr-defined]


class ForgetDataModule(L.LightningDataModule):
    """What the vision and recommender DataModules share: a forget request and the streams.

    Subclasses hold ``forget`` (the :class:`ForgetSpec`) and ``split`` (its resolved sets, or
    ``None`` until a model-dependent request is selected), and provide ``set_forget`` and the
    ``full_train_dataloader`` / ``forget_dataloader`` / ``retain_dataloader`` loaders; this base
    turns them into the standard streams methods read (:meth:`stream_loader`) and into the
    ``Trainer.fit`` loader of an attached method (:meth:`train_dataloader`).
    """

    forget: ForgetSpec
    split: Any

    def stream_loader(self, name: str) -> DataLoader | None:
        """The standard streams methods read (:mod:`unlearnkit.streams`): ``forget`` and
        ``retain`` shuffled, ``train`` unshuffled in dataset order; ``None`` for other names.

        Raises:
            ValueError: a model-dependent request was not resolved yet (no split).
        """
        if name in ("forget", "retain") and self.split is None:
            raise ValueError(
                f"the forget request {self.forget.label!r} is not resolved yet; call "
                "select_forget(spec, model) first"
            )
        if name == "forget":
            return self.forget_dataloader()
        if name == "retain":
            return self.retain_dataloader()
        if name == "train":
            return self.full_train_dataloader(shuffle=False)
        return None

    def train_dataloader(self) -> Any:
        """The unlearning loader for ``Trainer.fit``: the streams the attached method reads."""
        from lightning.pytorch.utilities import CombinedLoader

        from unlearnkit.streams import open_streams

        module = getattr(self.trainer, "lightning_module", None)
        method = getattr(module, "method", None)
        if not getattr(method, "iterative", False):  # one-shot methods run in on_fit_start
            return self.forget_dataloader()
        return CombinedLoader(open_streams(method, module.model, self), mode="max_size_cycle")


class UnlearningDataModule(ForgetDataModule):
    """Base DataModule yielding the train, forget, retain and test splits.

    Subclasses implement :meth:`load` (returning in-memory train and test datasets with
    ``targets``, ``num_classes``, optionally ``fine_targets``) and :meth:`superclass_groups`
    when they support sub-class forgetting.

    Args:
        forget: the forget request (default: class 0).
        batch_size: training batch size.
        eval_batch_size: batch size for evaluation passes.
        num_workers: DataLoader workers.
        seed: seed of the data loaders' shuffling and of the ``train_limit``/``test_limit`` draws.
        train_limit: keep a seeded random subset of this many training samples (smoke runs).
        test_limit: likewise for the test set.

    Shapes:
        Batches are ``(x, y, attributes)``: ``x`` (B, C, H, W) float32 normalised, ``y`` (B,)
        int64, ``attributes`` a dict of ``(B,)`` tensors with at least ``index`` (int64: the
        position in D_train for train/forget/retain loaders, in D_test for test loaders) and the
        dataset's own attributes (``group``, ``identity``, ...).
    """

    def __init__(
        self,
        *,
        forget: ForgetSpec | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        seed: int = 0,
        train_limit: int | None = None,
        test_limit: int | None = None,
    ) -> None:
        super().__init__()
        self.train_limit = train_limit
        self.test_limit = test_limit
        self.forget = forget or ForgetSpec(kind="class", classes=[0])
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.split: ForgetSplit | None = None

    # -- what subclasses provide -----------------------------------------------------------
    @abstractmethod
    def load(self) -> tuple[Dataset, Dataset]:
        """Load ``(train, test)`` datasets (in memory)."""

    def superclass_groups(self) -> dict[str, list[int]]:
        """Superclass name → fine class ids, for ``subclass`` forgetting."""
        raise ValueError(
            f"{type(self).__name__} has no superclass grouping for subclass forgetting"
        )

    @property
    def name(self) -> str:
        """Dataset name used in cache keys and reports."""
        return type(self).__name__.removesuffix("DataModule").lower()

    def cache_key(self) -> dict[str, Any]:
        """What identifies the training data (for model-cache keys); subclasses may extend."""
        key = {"dataset": self.name, "label_level": self.label_level}
        if self.train_limit is not None or self.test_limit is not None:
            key.update(
                train_limit=self.train_limit, test_limit=self.test_limit, limit_seed=self.seed
            )
        return key

    @property
    def label_level(self) -> str:
        return "superclass" if self.forget.kind == "subclass" else "class"

    def set_forget(self, spec: ForgetSpec) -> ForgetSplit:
        """Switch to another forget request (reloads only if the label level changes).

        Raises:
            ValueError: the request does not resolve (see :meth:`ForgetSpec.resolve`).
        """
        if self.train_set is not None and (spec.kind == "subclass") != (
            self.forget.kind == "subclass"
        ):
            self.train_set = self.test_set = None
        self.forget = spec
        if self.train_set is None:
            self.setup()
        elif spec.needs_model:
            self.split = None
        else:
            self.split = self._resolve(self.train_set)
        if spec.needs_model:
            spec.draw_size(len(self.train_set))  # type: ignore[arg-type]  # a bad size fails now
        return self.split  # type: ignore[return-value]

    def select_forget(self, spec: ForgetSpec, model: nn.Module) -> ForgetSplit:
        """Resolve a request with a :class:`ForgetSelector` from the original model θ_o.

        Args:
            spec: the request (``spec.selector`` set).
            model: θ_o.

        Returns:
            The split (also set as the current one).

        Raises:
            ValueError: ``spec`` has no selector, a bad size, or the selector's indices are
                invalid (see :func:`check_forget_index`) or not ``size`` many.
        """
        if spec.selector is None:
            raise ValueError(f"forget kind {spec.kind!r} has no selector; use set_forget(spec)")
        self.set_forget(spec)
        size = spec.draw_size(len(self.train_set))  # type: ignore[arg-type]
        indices = torch.as_tensor(spec.selector.select(model, self, size=size)).long()
        if indices.numel() != size:
            raise ValueError(
                f"{type(spec.selector).__name__}.select returned {indices.numel()} indices for a "
                f"forget set of {size}; return exactly `size` distinct indices"
            )
        return self.set_split(
            ForgetSplit.from_indices(indices, num_train=size_of(self.train_set), spec=spec)
        )

    def set_split(self, split: ForgetSplit) -> ForgetSplit:
        """Use an explicit split (e.g. a cached selection) for the current request.

        Raises:
            ValueError: the split was made for a training set of another size.
        """
        n = size_of(self.train_set)
        if split.num_train != n:
            raise ValueError(
                f"the forget split is for {split.num_train} training samples, this data has {n}"
            )
        self.split = split
        return split

    def _resolve(self, train: Any) -> ForgetSplit:
        return self.forget.resolve(
            train.targets,
            fine_targets=getattr(train, "fine_targets", None),
            num_classes=train.num_classes,
            num_fine_classes=len(getattr(train, "fine_classes", None) or train.classes),
        )

    # -- Lightning hooks ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, test = self.load()
        train = self._limit(train, self.train_limit)
        test = self._limit(test, self.test_limit)
        if self.forget.kind == "subclass":
            groups = self.superclass_groups()
            train, test = train.with_superclasses(groups), test.with_superclasses(groups)
        train, test = _with_index(train), _with_index(test)
        self.train_set, self.test_set = train, test
        self.split = None if self.forget.needs_model else self._resolve(train)

    def _limit(self, dataset: Any, limit: int | None) -> Any:
        if limit is None or limit >= len(dataset):
            return dataset
        if limit < 1:
            raise ValueError(f"train_limit/test_limit must be >= 1, got {limit}")
        gen = torch.Generator().manual_seed(self.seed)
        return dataset.subset(torch.randperm(len(dataset), generator=gen)[:limit].sort().values)

    @property
    def num_classes(self) -> int:
        self.setup()
        return int(self.train_set.num_classes)  # type: ignore[union-attr]

    @property
    def class_names(self) -> list[str]:
        """Names of the classes in id order (the dataset's ``classes``, else ``"0"``, ``"1"``...)."""
        self.setup()
        names = getattr(self.train_set, "classes", None)
        return [str(n) for n in names] if names else [str(i) for i in range(self.num_classes)]

    @property
    def in_channels(self) -> int:
        self.setup()
        return int(self.train_set[0][0].shape[0])  # type: ignore[index]

    def _loader(self, dataset: Dataset, *, train: bool) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed)
        if not train and hasattr(dataset, "with_augment"):
            dataset = dataset.with_augment(False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            generator=gen if train else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _subset(self, indices: Tensor, *, train: bool) -> Dataset:
        self.setup()
        base = self.train_set
        if not train and hasattr(base, "with_augment"):
            base = base.with_augment(False)
        if hasattr(base, "subset"):
            return base.subset(indices)
        return IndexedSubset(base, indices.tolist())

    def full_train_dataloader(self, *, shuffle: bool = True) -> DataLoader:
        """D_train (the original model's data); ``shuffle=False``: in dataset order, without
        augmentation."""
        self.setup()
        base = self.train_set
        if not shuffle and hasattr(base, "with_augment"):
            base = base.with_augment(False)
        return self._loader(base, train=shuffle)  # type: ignore[arg-type]

    def forget_dataloader(self, *, shuffle: bool = True) -> DataLoader:
        """D_f; ``shuffle=False`` gives an evaluation loader without augmentation."""
        return self._loader(self._subset(self.split.forget, train=shuffle), train=shuffle)  # type: ignore[union-attr]

    def retain_dataloader(self, *, shuffle: bool = True) -> DataLoader:
        """D_r; ``shuffle=False`` gives an evaluation loader without augmentation."""
        return self._loader(self._subset(self.split.retain, train=shuffle), train=shuffle)  # type: ignore[union-attr]

    def test_split_indices(self) -> tuple[Tensor, Tensor]:
        """``(test, test_forget)`` indices into the test set.

        For ``class``/``subclass`` forgetting, D_test holds the test samples of the *remaining*
        classes (TA as in Jia et al., arXiv 2304.04934, and SalUn) and ``test_forget`` the test
        samples of the forgotten (fine) classes; otherwise D_test is the whole test set and
        ``test_forget`` is empty.
        """
        self.setup()
        n = len(self.test_set)  # type: ignore[arg-type]
        if self.forget.kind not in ("class", "subclass"):
            return torch.arange(n), torch.zeros(0, dtype=torch.long)
        labels = (
            self.test_set.targets
            if self.forget.kind == "class"
            else getattr(  # type: ignore[union-attr]
                self.test_set,
                "fine_targets",
                self.test_set.targets,  # type: ignore[union-attr]
            )
        )
        mask = torch.isin(labels, torch.as_tensor(self.forget.classes, dtype=labels.dtype))
        return (~mask).nonzero().flatten(), mask.nonzero().flatten()

    def test_split_dataloader(self, *, forgotten: bool = False) -> DataLoader:
        """D_test (never shuffled, never augmented); ``forgotten=True``: the forgotten classes'
        test samples (see :meth:`test_split_indices`)."""
        keep, dropped = self.test_split_indices()
        indices = dropped if forgotten else keep
        base = self.test_set
        if hasattr(base, "with_augment"):
            base = base.with_augment(False)
        if len(indices) == len(base):  # type: ignore[arg-type]
            return self._loader(base, train=False)  # type: ignore[arg-type]
        subset = (
            base.subset(indices)
            if hasattr(base, "subset")
            else IndexedSubset(base, indices.tolist())
        )
        return self._loader(subset, train=False)

    def eval_dataloaders(self) -> dict[str, DataLoader]:
        """Evaluation loaders ``forget``, ``retain``, ``test`` and, for class/subclass
        forgetting, ``test_forget`` (test samples of the forgotten classes)."""
        loaders = {
            "forget": self.forget_dataloader(shuffle=False),
            "retain": self.retain_dataloader(shuffle=False),
            "test": self.test_split_dataloader(),
        }
        if len(self.test_split_indices()[1]):
            loaders["test_forget"] = self.test_split_dataloader(forgotten=True)
        return loaders

    def test_dataloader(self) -> list[DataLoader]:
        """``[forget, retain, test(, test_forget)]`` in :data:`unlearnkit.module.EVAL_SPLITS` order."""
        return list(self.eval_dataloaders().values())
