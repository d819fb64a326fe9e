"""`UnlearningModule`: the one LightningModule for classification unlearning.

``fit`` runs the unlearning method (``training_step`` delegates to ``method.loss``; a one-shot
method runs once in ``on_fit_start``, use ``max_epochs=0``), ``test`` runs the shared
:class:`~unlearnkit.evaluation.Evaluator` on the forget, retain and test splits.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor, nn

from unlearnkit.checkpoint import load_checkpoint
from unlearnkit.streams import UnlearnBatch, split_batch, stream_name
from unlearnkit.unlearner import Unlearner

log = logging.getLogger(__name__)

EVAL_SPLITS = ("forget", "retain", "test", "test_forget")


class UnlearningModule(L.LightningModule):
    """Model + unlearning method + evaluator, as one LightningModule.

    Args:
        model: the classifier to unlearn, an ``nn.Module`` mapping ``(B, C, H, W)`` float32
            images to ``(B, num_classes)`` logits.
        method: the :class:`~unlearnkit.base.Unlearner` to apply (iterative methods run as
            ``training_step``; one-shot methods once in ``on_fit_start``).
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
        self._test_outputs: dict[str, list[Any]] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # -- fit: run the method --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.checkpoint and not self._loaded:
            load_checkpoint(self.model, self.checkpoint)
            self._loaded = True

    def on_fit_start(self) -> None:
        self.method.check_model(self.model)  # NaN/inf weights: one line, before any step
        if self.method.iterative:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is not None and not getattr(self.method, "streams_prepared_", False):
                from unlearnkit.streams import open_streams  # `unlearnkit fit`: no apply() ran

                self.method.prepare_streams(
                    self.model, open_streams(self.method, self.model, datamodule)
                )
            self.method.setup(self.model)
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            raise ValueError(
                f"{type(self.method).__name__} is a one-shot method: run it with "
                "method.unlearn(model, forget, retain) or give the Trainer an UnlearningDataModule"
            )
        self.method.unlearn_from(self.model, datamodule)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor | None:
        if not self.method.iterative:
            return None
        step = UnlearnBatch(
            batch[0] if isinstance(batch, tuple) else batch, type(self.method).__name__
        )
        loss = self.method.loss(self.model, step, epoch=self.current_epoch)
        if loss is not None:
            self.log("unlearn/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> Any:
        if not self.method.iterative:
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
        part = split_batch(batch)
        split = (
            EVAL_SPLITS[dataloader_idx]
            if dataloader_idx < len(EVAL_SPLITS)
            else str(dataloader_idx)
        )
        self._test_outputs.setdefault(split, []).append(
            (self.model(part.x).float(), part.y, part.attrs)
        )

    def on_test_epoch_end(self) -> None:
        from unlearnkit.evaluation import Evaluator, Outputs

        outputs: dict[str, Outputs] = {}
        for split, parts in self._test_outputs.items():
            logits = torch.cat([p[0] for p in parts])
            targets = torch.cat([p[1] for p in parts])
            attrs = {k: torch.cat([p[2][k] for p in parts]) for k in parts[0][2]}
            if self.trainer.world_size > 1:
                logits, targets, attrs = self._gather(logits, targets, attrs)
            losses = F.cross_entropy(logits, targets, reduction="none")
            outputs[split] = Outputs(
                logits=logits.cpu(),
                targets=targets.cpu(),
                losses=losses.cpu(),
                attributes={k: v.cpu() for k, v in attrs.items()},
            )
        evaluator = self.evaluator or Evaluator()
        metrics = evaluator.metrics_from_outputs(outputs)
        for name, value in metrics.items():
            self.log(name, float(value), rank_zero_only=True)

    def _gather(
        self, logits: Tensor, targets: Tensor, attrs: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """All ranks' outputs, each sample once: a DistributedSampler pads the ranks to equal
        sizes by repeating samples, so the gathered rows are de-duplicated by ``index``.

        Raises:
            ValueError: the batches carry no ``index`` attribute (padding cannot be dropped).
        """
        if "index" not in attrs:
            raise ValueError(
                "distributed evaluation needs the sample index in each batch to drop the "
                "DistributedSampler's padding; use an UnlearningDataModule (its batches carry it)"
            )
        logits = self.all_gather(logits).flatten(0, 1)
        targets = self.all_gather(targets).flatten(0, 1)
        attrs = {k: self.all_gather(v).flatten(0, 1) for k, v in attrs.items()}
        order = torch.argsort(attrs["index"], stable=True)
        index = attrs["index"][order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        keep = order[first]
        return logits[keep], targets[keep], {k: v[keep] for k, v in attrs.items()}


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up lines (GPU/TPU availability, adverts) and its own pytree
    deprecation warning for the duration; the user's own logging and warnings are kept."""
    loggers = [
        logging.getLogger(n)
        for n in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            # a LossUnlearner skips a step by returning None from loss() (by design)
            warnings.filterwarnings("ignore", message=r".*`training_step` returned `None`.*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


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
    method: Any,
    model: nn.Module,
    loaders: Mapping[str, Iterable | None],
    *,
    trainer: L.Trainer | None = None,
    module_class: type[UnlearningModule] = UnlearningModule,
) -> nn.Module:
    """Run an iterative method (a :class:`~unlearnkit.base.LossUnlearner`) on ``model`` in place.

    Also used to train originals and retrained models (``FineTune``/``Retrain`` on D_train/D_r).

    Args:
        method: the loss-based method.
        model: modified in place.
        loaders: stream name → loader; the streams ``method.streams`` declares are read (one
            ``max_size_cycle`` :class:`~lightning.pytorch.utilities.CombinedLoader`).
        trainer: optional Trainer; its ``max_epochs`` must equal ``method.epochs``.
        module_class: the LightningModule wrapping model and method (``RecUnlearningModule``
            for recommenders).

    Returns:
        ``model``.

    Raises:
        ValueError: a declared stream has no loader, or ``trainer.max_epochs`` differs from
            ``method.epochs``.
    """
    L.seed_everything(method.seed, workers=True, verbose=False)
    chosen = {}
    for name in (stream_name(s) for s in method.streams):
        if loaders.get(name) is None:
            raise ValueError(
                f"{type(method).__name__} reads the {name} stream each step; pass a {name} loader"
            )
        chosen[name] = loaders[name]
    data = CombinedLoader(chosen, mode="max_size_cycle")
    quiet = trainer is None
    if trainer is not None and trainer.max_epochs != method.epochs:
        raise ValueError(
            f"trainer.max_epochs={trainer.max_epochs} but {type(method).__name__}.epochs="
            f"{method.epochs}; build the Trainer with max_epochs=method.epochs"
        )
    with quiet_lightning() if quiet else contextlib.nullcontext():
        if trainer is None:  # the promised quiet trainer: no start-up lines
            trainer = default_trainer(method.epochs)
        module = module_class(model, method)
        model.train()
        trainer.fit(module, train_dataloaders=data)
    model.eval()
    return model


def check_trainer_arguments(trainer: Mapping[str, Any] | None) -> None:
    """Reject a Trainer ``accelerator``/``devices`` this machine cannot provide, before any work.

    Lightning itself finds out only when the Trainer is built, i.e. after the data and models
    are loaded, and then raises a long traceback; the CLI calls this first.

    Args:
        trainer: ``lightning.Trainer`` keyword arguments (``accelerator``, ``devices``, ...);
            anything but a string accelerator (an ``Accelerator`` object) is left to Lightning.

    Raises:
        ValueError: the accelerator is not available here (e.g. ``gpu`` without a CUDA or MPS
            device), or more CUDA devices are asked for than the machine has.
    """
    trainer = trainer or {}
    accelerator = trainer.get("accelerator")
    if not isinstance(accelerator, str):
        return
    name = accelerator.lower()
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    missing = {
        "gpu": None if cuda or mps else "no CUDA or MPS device",
        "cuda": None if cuda else "no CUDA device",
        "mps": None if mps else "no MPS device",
    }
    if name in ("tpu", "xla"):
        try:
            from lightning.fabric.accelerators.xla import XLAAccelerator

            missing[name] = None if XLAAccelerator.is_available() else "no TPU/XLA device"
        except ImportError:  # pragma: no cover - old Lightning
            missing[name] = "no TPU/XLA support installed"
    if missing.get(name):
        raise ValueError(
            f"accelerator {accelerator!r} is not available on this machine ({missing[name]}); "
            "use accelerator: cpu or auto"
        )
    devices = trainer.get("devices")
    if name in ("gpu", "cuda") and cuda and isinstance(devices, int) and devices > 0:
        count = torch.cuda.device_count()
        if devices > count:
            raise ValueError(
                f"devices: {devices} asks for more GPUs than this machine has ({count}); "
                f"use devices: {count} or fewer"
            )
