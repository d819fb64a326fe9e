"""`UnlearningModule`: the one LightningModule for classification unlearning.

``fit`` runs the unlearning method (``training_step`` delegates to ``method.loss``; a one-shot
method runs once in ``on_fit_start``, use ``max_epochs=0``), ``test`` runs the shared
:class:`~unlearnkit.evaluation.Evaluator` on the forget, retain and test splits.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from unlearnkit.base import LossUnlearner, UnlearnBatch, Unlearner
from unlearnkit.checkpoint import load_checkpoint

log = logging.getLogger(__name__)

EVAL_SPLITS = ("forget", "retain", "test", "test_forget")


class UnlearningModule(L.LightningModule):
    """Model + unlearning method + evaluator, as one LightningModule.

    Args:
        model: the classifier to unlearn, an ``nn.Module`` mapping ``(B, C, H, W)`` float32
            images to ``(B, num_classes)`` logits.
        method: the :class:`~unlearnkit.base.Unlearner` to apply.
        evaluator: metrics for ``trainer.test`` (default: a plain
            :class:`~unlearnkit.evaluation.Evaluator`).
        checkpoint: path of the original model's weights (a file written by unlearnkit or a
            plain ``state_dict``); loaded at ``setup``; never modified.

    Raises:
        FileNotFoundError / ValueError: from :func:`~unlearnkit.checkpoint.load_checkpoint`.
    """

    def __init__(
        self,
        model: nn.Module,
        method: Unlearner,
        evaluator: Any | None = None,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.method = method
        self.evaluator = evaluator
        self.checkpoint = checkpoint
        self._loaded = False
        self._test_outputs: dict[str, list[tuple[Tensor, Tensor]]] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # -- fit: run the method --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.checkpoint and not self._loaded:
            load_checkpoint(self.model, self.checkpoint)
            self._loaded = True

    def on_fit_start(self) -> None:
        if isinstance(self.method, LossUnlearner):
            self.method.setup(self.model)
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise ValueError(
                f"{type(self.method).__name__} is a one-shot method: run it with "
                "method.unlearn(model, forget, retain) or give the Trainer an UnlearningDataModule"
            )
        run_one_shot(self.method, self.model, datamodule)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        if not isinstance(self.method, LossUnlearner):
            return None
        step = UnlearnBatch.from_loader_batch(batch[0] if isinstance(batch, tuple) else batch)
        loss = self.method.loss(self.model, step, epoch=self.current_epoch)
        if loss is not None:
            self.log("unlearn/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> Any:
        if not isinstance(self.method, LossUnlearner):
            return None
        optimizer = self.method.configure_optimizer(self.model)
        if self.method.lr_schedule == "cosine":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        return optimizer

    # -- test: shared evaluation ------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._test_outputs = {}

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch[0], batch[1]
        split = (
            EVAL_SPLITS[dataloader_idx]
            if dataloader_idx < len(EVAL_SPLITS)
            else str(dataloader_idx)
        )
        self._test_outputs.setdefault(split, []).append((self.model(x).float(), y))

    def on_test_epoch_end(self) -> None:
        from unlearnkit.evaluation import Evaluator, Outputs

        outputs: dict[str, Outputs] = {}
        for split, parts in self._test_outputs.items():
            logits = torch.cat([p[0] for p in parts])
            targets = torch.cat([p[1] for p in parts])
            if self.trainer.world_size > 1:  # DistributedSampler pads ranks to equal sizes
                logits = self.all_gather(logits).flatten(0, 1)
                targets = self.all_gather(targets).flatten(0, 1)
            losses = F.cross_entropy(logits, targets, reduction="none")
            outputs[split] = Outputs(
                logits=logits.cpu(), targets=targets.cpu(), losses=losses.cpu()
            )
        evaluator = self.evaluator or Evaluator()
        metrics = evaluator.metrics_from_outputs(outputs)
        for name, value in metrics.items():
            self.log(name, float(value), rank_zero_only=True)


def needs_retain(method: Unlearner) -> bool:
    """Whether ``method`` reads D_r (``requires_retain`` or ``"retain"`` in its ``uses``)."""
    uses = getattr(method, "uses", ())
    return bool(method.requires_retain or "retain" in uses or "union" in uses)


def run_one_shot(method: Unlearner, model: nn.Module, datamodule: Any) -> nn.Module:
    """Apply a one-shot (non-loss) method with the loaders it reads from ``datamodule``.

    The forget loader always; the retain loader when :func:`needs_retain`; and, for methods whose
    ``unlearn`` takes ``train`` (SSD's ``I_D`` over the whole training set, cached across forget
    requests), an unshuffled loader over D_train.

    Args:
        method: the method; ``model`` is modified in place.
        model: the model to unlearn.
        datamodule: an :class:`~unlearnkit.data.UnlearningDataModule` (or the recommender one)
            with a forget split set.

    Returns:
        ``model``.
    """
    retain = datamodule.retain_dataloader() if needs_retain(method) else None
    kwargs: dict[str, Any] = {}
    if "train" in inspect.signature(method.unlearn).parameters:
        kwargs["train"] = datamodule.full_train_dataloader(shuffle=False)
    method.unlearn(model, datamodule.forget_dataloader(), retain, **kwargs)
    return model


class _Flagged(Dataset):
    """``dataset[i]`` as ``(x, y, flag)``: the samples of one part of D_f ∪ D_r, marked."""

    def __init__(self, dataset: Dataset, flag: bool) -> None:
        self.dataset, self.flag = dataset, torch.tensor(flag)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, Tensor]:
        x, y = self.dataset[index][:2]
        return x, y, self.flag


def union_loader(forget: DataLoader, retain: DataLoader, *, seed: int) -> DataLoader:
    """One shuffled loader over D_f ∪ D_r yielding ``(x, y, from_forget)`` batches.

    Batch size and workers follow the retain loader; the order is seeded by ``seed``.

    Shapes: ``x`` (B, ...), ``y`` (B,) int64, ``from_forget`` (B,) bool.
    """
    union = ConcatDataset([_Flagged(forget.dataset, True), _Flagged(retain.dataset, False)])
    return DataLoader(
        union,
        batch_size=retain.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=retain.num_workers,
    )


def combined_loader(
    method: LossUnlearner, loaders: Mapping[str, DataLoader | None]
) -> CombinedLoader:
    """The ``max_size_cycle`` CombinedLoader over the splits ``method.uses``.

    The split ``"union"`` is :func:`union_loader` over the forget and retain loaders.

    Raises:
        ValueError: a split the method uses has no loader.
    """
    chosen: dict[str, DataLoader] = {}
    for split in method.uses:
        needed = ("forget", "retain") if split == "union" else (split,)
        for part in needed:
            if loaders.get(part) is None:
                raise ValueError(
                    f"{type(method).__name__} reads the {part} set each step; pass a {part} loader"
                )
        if split == "union":
            chosen[split] = union_loader(loaders["forget"], loaders["retain"], seed=method.seed)  # type: ignore[arg-type]
        else:
            chosen[split] = loaders[split]  # type: ignore[assignment]
    return CombinedLoader(chosen, mode="max_size_cycle")


def default_trainer(max_epochs: int, **overrides: Any) -> L.Trainer:
    """A quiet Trainer for the Python API (CPU, one device, no logger/checkpoints)."""
    kwargs: dict[str, Any] = {
        "max_epochs": max_epochs,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
    }
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def fit_method(
    method: LossUnlearner,
    model: nn.Module,
    loaders: Mapping[str, DataLoader | None],
    *,
    trainer: L.Trainer | None = None,
    module_class: type[UnlearningModule] = UnlearningModule,
) -> nn.Module:
    """Run a :class:`LossUnlearner` on ``model`` in place through ``Trainer.fit``.

    Also used to train originals and retrained models (``FineTune``/``Retrain`` on D_train/D_r).

    Args:
        method: the loss-based method.
        model: modified in place.
        loaders: ``{"forget": ..., "retain": ...}``; only the splits in ``method.uses`` are read.
        trainer: optional Trainer; its ``max_epochs`` must equal ``method.epochs``.
        module_class: the LightningModule wrapping model and method (``RecUnlearningModule``
            for recommenders).

    Returns:
        ``model``.
    """
    L.seed_everything(method.seed, workers=True, verbose=False)
    data = combined_loader(method, loaders)
    if trainer is None:
        trainer = default_trainer(method.epochs)
    elif trainer.max_epochs != method.epochs:
        raise ValueError(
            f"trainer.max_epochs={trainer.max_epochs} but {type(method).__name__}.epochs="
            f"{method.epochs}; build the Trainer with max_epochs=method.epochs"
        )
    module = module_class(model, method)
    model.train()
    trainer.fit(module, train_dataloaders=data)
    model.eval()
    return model
