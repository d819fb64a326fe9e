"""What to forget (:class:`ForgetSpec` → :class:`ForgetSplit`) and the DataModule base.

A forget request resolves to explicit, sorted index sets into D_train that can be saved to and
loaded from a JSON file, so any experiment can be repeated on exactly the same samples.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from unlearnkit.atomic import atomic_write_bytes

ForgetKind = Literal["class", "subclass", "random", "indices", "user", "item", "interaction"]


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

    Args:
        kind: one of the kinds above.
        classes: class (or fine-class) ids for ``class``/``subclass``.
        fraction: share of D_train in (0, 1) for ``random``.
        count: number of samples for ``random`` (instead of ``fraction``).
        seed: seed of the ``random`` draw.
        indices_file: JSON file written by :meth:`ForgetSplit.save` for ``indices``.
        name: label used in reports (default derived from the request).
        ids: explicit user / item / edge ids for the recommender kinds.
    """

    kind: ForgetKind = "class"
    classes: list[int] | None = None
    fraction: float | None = None
    count: int | None = None
    seed: int = 0
    indices_file: str | None = None
    name: str | None = None
    ids: list[int] | None = None

    @property
    def label(self) -> str:
        """Short human-readable label, e.g. ``class[0]`` or ``random10%s0``."""
        if self.name:
            return self.name
        if self.kind in ("class", "subclass"):
            return f"{self.kind}{self.classes}".replace(" ", "")
        if self.kind == "random":
            amount = f"{self.fraction * 100:g}%" if self.fraction is not None else str(self.count)
            return f"random{amount}s{self.seed}"
        if self.kind in ("user", "item", "interaction"):
            if self.ids is not None:
                shown = ",".join(str(i) for i in self.ids[:3]) + (
                    "..." if len(self.ids) > 3 else ""
                )
                return f"{self.kind}[{shown}]"
            amount = f"{self.fraction * 100:g}%" if self.fraction is not None else str(self.count)
            return f"{self.kind}{amount}s{self.seed}"
        return f"indices:{Path(self.indices_file or '').name}"

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
            size = self._random_size(n)
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
                f"unknown forget kind {self.kind!r}; use one of class, subclass, random, indices"
            )
        return ForgetSplit.from_indices(forget, num_train=n, spec=self)

    def _random_size(self, n: int) -> int:
        if (self.fraction is None) == (self.count is None):
            raise ValueError("random forgetting needs exactly one of fraction=(0,1) or count=k")
        if self.fraction is not None:
            if not 0 < self.fraction < 1:
                raise ValueError(f"fraction must be in (0, 1), got {self.fraction}")
            return max(1, round(self.fraction * n))
        if not 0 < int(self.count) < n:  # type: ignore[arg-type]
            raise ValueError(
                f"count must be in 1..{n - 1} for a training set of {n}, got {self.count}"
            )
        return int(self.count)  # type: ignore[arg-type]


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
        forget = torch.as_tensor(forget, dtype=torch.long).flatten()
        if forget.numel() == 0:
            raise ValueError(
                "the forget set is empty: no training sample matches the request; check the "
                "classes/fraction or the indices file"
            )
        if forget.unique().numel() != forget.numel():
            raise ValueError("forget indices contain duplicates; give each training index once")
        if int(forget.min()) < 0 or int(forget.max()) >= num_train:
            bad = int(forget.max()) if int(forget.max()) >= num_train else int(forget.min())
            raise ValueError(
                f"forget index {bad} is outside the training set (0..{num_train - 1}); the index "
                "file was probably made for another dataset or split"
            )
        if forget.numel() == num_train:
            raise ValueError("the forget set covers all of D_train, leaving no retain set")
        mask = torch.zeros(num_train, dtype=torch.bool)
        mask[forget] = True
        spec_dict = asdict(spec) if isinstance(spec, ForgetSpec) else dict(spec or {})
        return cls(
            forget=forget.sort().values,
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


class IndexedSubset(Subset):
    """A :class:`~torch.utils.data.Subset` that keeps ``targets`` handy for evaluation."""

    @property
    def targets(self) -> Tensor:
        return self.dataset.targets[torch.as_tensor(self.indices)]  # type: ignore[attr-defined]


class UnlearningDataModule(L.LightningDataModule):
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
        Batches are ``(x, y)``: ``x`` (B, C, H, W) float32 normalised, ``y`` (B,) int64.
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
        else:
            self.split = self._resolve(self.train_set)
        return self.split  # type: ignore[return-value]

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
            from unlearnkit.datasets.tensors import with_superclasses

            groups = self.superclass_groups()
            train, test = with_superclasses(train, groups), with_superclasses(test, groups)
        self.split = self._resolve(train)
        self.train_set, self.test_set = train, test

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
        """D_train (the original model's data)."""
        self.setup()
        return self._loader(self.train_set, train=shuffle)  # type: ignore[arg-type]

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

    def train_dataloader(self) -> Any:
        """The unlearning loader for ``Trainer.fit``: the splits the attached method reads."""
        from unlearnkit.base import LossUnlearner
        from unlearnkit.module import combined_loader

        method = getattr(getattr(self.trainer, "lightning_module", None), "method", None)
        if not isinstance(method, LossUnlearner):  # one-shot methods run in on_fit_start
            return self.forget_dataloader()
        return combined_loader(
            method, {"forget": self.forget_dataloader(), "retain": self.retain_dataloader()}
        )

    def test_dataloader(self) -> list[DataLoader]:
        """``[forget, retain, test(, test_forget)]`` in :data:`unlearnkit.module.EVAL_SPLITS` order."""
        return list(self.eval_dataloaders().values())
