"""Amnesiac unlearning as the SSD repository runs it: D_f relabelled once at random, with D_r."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from unlearnkit.base import Stream, UnlearnBatch, init_arguments
from unlearnkit.datasets.tensors import class_indices, dataset_labels
from unlearnkit.streams import StreamSource, split_batch, union_loader
from unlearnkit.vision.methods.random_label import RandomLabel, random_wrong_labels


class _Relabelled(Dataset):
    """``dataset`` with its labels replaced by ``labels`` (a 0-d tensor where the dataset's own
    label is a tensor, else an int); the samples' attributes are kept."""

    def __init__(self, dataset: Dataset, labels: Tensor) -> None:
        self.dataset, self.labels = dataset, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        item = self.dataset[index]
        label = self.labels[index]
        return (item[0], label if isinstance(item[1], Tensor) else int(label), *item[2:])


def _num_classes(model: nn.Module, x: Tensor) -> int:
    """The model's number of outputs, from one forward pass on ``x[:1]`` (eval mode, no grad)."""
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return int(model(x[:1].to(device)).shape[-1])
    finally:
        model.train(was_training)


class RelabelledUnion(Stream):
    """One shuffled pass over D_f ∪ D_r per epoch (``attrs["from_forget"]`` marks D_f) in which
    every D_f sample carries a random wrong label drawn **once**, at build, for the whole run
    (:func:`~unlearnkit.vision.methods.random_label.random_wrong_labels` over D_f's labels in
    dataset order, seeded by the method's ``seed``; stored as ``method.forget_labels_``) — the
    SSD repository's ``unlearning_trainset``. Batch size and workers follow the retain loader."""

    name = "relabelled_union"
    parts = ("forget", "retain")

    def build(self, method: Any, model: nn.Module, source: StreamSource) -> DataLoader:
        forget, retain = source.stream_loader("forget"), source.stream_loader("retain")
        plain = DataLoader(
            forget.dataset,  # type: ignore[union-attr]
            batch_size=forget.batch_size or 1,  # type: ignore[union-attr]
            shuffle=False,
            num_workers=forget.num_workers,  # type: ignore[union-attr]
            collate_fn=forget.collate_fn,  # type: ignore[union-attr]
        )
        batches = [split_batch(b) for b in plain]
        num_classes = _num_classes(model, batches[0].x)
        if num_classes < 2:
            raise ValueError("Amnesiac needs a classifier with at least 2 classes")
        labels = torch.cat([torch.as_tensor(b.y).cpu() for b in batches])  # checked below
        retain_labels = dataset_labels(retain.dataset)  # type: ignore[union-attr]
        if retain_labels is not None:  # D_r keeps its labels: checked here, not by torch's CE
            class_indices(retain_labels, num_classes, name="Amnesiac: D_r's labels")
        generator = torch.Generator().manual_seed(int(method.seed))
        method.forget_labels_ = random_wrong_labels(
            labels, num_classes, generator, name="Amnesiac: D_f's labels"
        )
        relabelled = DataLoader(
            _Relabelled(forget.dataset, method.forget_labels_),  # type: ignore[union-attr]
            batch_size=forget.batch_size,  # type: ignore[union-attr]
        )
        return union_loader(relabelled, retain, seed=int(method.seed))  # type: ignore[arg-type]


class Amnesiac(RandomLabel):
    """Amnesiac (relabelling) unlearning: train on D_f with fixed random wrong labels, plus D_r.

    Source: Graves, Nagisetty & Ganesh, "Amnesiac Machine Learning", AAAI 2021
    (arXiv 2010.10981), its "Unlearning" method (relabel the sensitive data with randomly chosen
    incorrect labels and train on it for a few iterations; not its batch-undoing "Amnesiac
    Unlearning"), as the SSD repository runs it
    (``amnesiac`` in ``forget_full_class_strategies.py`` / ``forget_random_strategies.py``,
    credited there to ``vikram2000b/bad-teaching-unlearning``): each D_f sample gets one random
    wrong label, drawn once, then ``fit_one_unlearning_cycle`` trains for 3 epochs with Adam at
    lr 1e-4 (no weight decay) on the relabelled D_f together with **all** of D_r (no subsample),
    shuffled, mean cross-entropy per batch.

    What differs from :class:`RandomLabel` (whose ``random_wrong_labels`` it shares): the wrong
    labels are drawn once per D_f sample for the whole run (:class:`RelabelledUnion`), not afresh
    at every visit, so the model is fitted to one fixed wrong label per sample; and the
    settings: 3 epochs, Adam lr 1e-4 without weight decay (RandomLabel: 5 epochs, SGD lr 0.01).
    The SSD repository's class-forgetting variant draws the label from the classes other than
    the (one) forget class, its random-forgetting variant from those other than the sample's
    own label; for one forget class they coincide, and here every request uses the latter (with
    several forget classes a sample may be relabelled as another forget class).

    Args: see :class:`~unlearnkit.base.LossUnlearner` (defaults: 3 epochs, Adam lr 1e-4, no
        weight decay).

    Attributes:
        forget_labels_: the wrong labels of D_f in its dataset order, ``(N_f,)`` int64.

    Raises:
        ValueError: no retain loader; a model whose output has fewer than 2 classes.
    """

    streams: ClassVar[tuple[Stream, ...]] = (RelabelledUnion(),)

    def __init__(
        self,
        *,
        epochs: int = 3,
        lr: float = 1e-4,
        optimizer: Literal["sgd", "adam"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        x, y = batch["relabelled_union"]  # D_f already carries its wrong labels
        return F.cross_entropy(model(x), y)
