"""The one unlearning interface: :class:`Unlearner`, :class:`LossUnlearner`, :class:`UnlearnBatch`.

Every method in unlearnkit — vision or recsys, one-shot or iterative — is an :class:`Unlearner`:
it edits a trained model *in place* so that it forgets the forget set D_f, optionally using the
retain set D_r = D_train \\ D_f, and returns the same model object.

Iterative methods subclass :class:`LossUnlearner` and write only :meth:`LossUnlearner.loss` (and
maybe :meth:`LossUnlearner.setup`); the optimisation loop is Lightning's, driven by
:class:`unlearnkit.module.UnlearningModule`, so the Python API and the CLI share one code path and
any Lightning accelerator/strategy works for both.
"""

from __future__ import annotations

import inspect
import math
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

import lightning as L
import torch
from torch import Tensor, nn

from unlearnkit.module import fit_method
from unlearnkit.streams import (
    Batch,
    Stream,
    StreamSource,
    UnlearnBatch,
)
from unlearnkit.unlearner import Unlearner, init_arguments

__all__ = [
    "Batch",
    "LossUnlearner",
    "Stream",
    "StreamSource",
    "UnlearnBatch",
    "Unlearner",
    "init_arguments",
    "list_methods",
]


class LossUnlearner(Unlearner):
    """An iterative unlearning method: subclasses write :meth:`loss` (and maybe :meth:`setup`).

    :meth:`unlearn` runs ``epochs`` passes with a Lightning ``Trainer`` over a
    :class:`~lightning.pytorch.utilities.CombinedLoader` of the declared ``streams`` (mode
    ``max_size_cycle``: the longest stream sets the epoch length, shorter ones cycle).
    ``streams = ("union",)`` instead reads one shuffled pass over D_f ∪ D_r per epoch, each
    batch mixing both sets (``batch.union.attrs["from_forget"]`` marks D_f), as the OPTML
    random-label code does. :meth:`loss` reads ``batch.forget``, ``batch.retain``, ... — one
    :class:`~unlearnkit.streams.Batch` per declared stream.

    Args:
        epochs: passes over the longest split the method reads.
        lr: learning rate.
        optimizer: ``"sgd"`` (momentum ``momentum``, weight decay ``weight_decay``) or ``"adam"``.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_schedule: ``"constant"`` or ``"cosine"`` (cosine annealing to 0 over all steps).
        seed: seeds every random draw of the run (shuffling, random labels, ...).
        **method_params: a subclass's own hyper-parameters, stored unchanged as attributes (a
            subclass forwards them with ``super().__init__(**init_arguments(locals()))``).
    """

    iterative: ClassVar[bool] = True

    def __init__(
        self,
        *,
        epochs: int = 1,
        lr: float = 0.01,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        **method_params: Any,
    ) -> None:
        self.epochs = epochs
        self.lr = lr
        self.optimizer = optimizer
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.seed = seed
        super().__init__(**method_params)

    def setup(self, model: nn.Module) -> None:  # noqa: B027 - optional hook
        """Prepare state before the first step (teacher copies, masks, ...). Default: nothing."""

    def prepare_streams(  # noqa: B027 - optional hook
        self, model: nn.Module, loaders: Mapping[str, Iterable]
    ) -> None:
        """Prepare state that needs a full pass over the data before the loop (e.g. SalUn's
        saliency mask from D_f), with the opened streams (``loaders["forget"]`` is always
        there). Called once per unlearning, before :meth:`setup`, by :meth:`apply` and by
        ``UnlearningModule`` under ``unlearnkit fit``. Default: nothing."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor | None:
        """The scalar loss to minimise on one step, or ``None`` to skip the step."""

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        """Parameters the optimizer updates (default: all that require grad)."""
        return [p for p in model.parameters() if p.requires_grad]

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer over :meth:`trainable_parameters`.

        Raises:
            ValueError: ``lr`` is not a finite number > 0, or an unknown ``optimizer``.
        """
        if not (math.isfinite(float(self.lr)) and float(self.lr) > 0):
            raise ValueError(
                f"{type(self).__name__}: lr must be a finite number > 0, got {self.lr}"
            )
        params = list(self.trainable_parameters(model))
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")

    def apply(
        self, model: nn.Module, loaders: Mapping[str, Iterable], *, trainer: Any | None = None
    ) -> nn.Module:
        """Run the loss-based loop through Lightning (see :class:`Unlearner`).

        Args:
            trainer: an optional ``lightning.Trainer`` (e.g. with a DDP strategy); its
                ``max_epochs`` must equal ``self.epochs``. Default: a quiet single-device CPU
                trainer.
        """
        L.seed_everything(self.seed, workers=True, verbose=False)  # shuffled passes in prepare
        self.prepare_streams(model, loaders)
        self.streams_prepared_ = True
        try:
            return fit_method(self, model, loaders, trainer=trainer)
        finally:
            self.streams_prepared_ = False


def list_methods(domain: Literal["vision", "recsys"] = "vision") -> dict[str, type[Unlearner]]:
    """Every public unlearning method class of a domain, by class name (from ``__all__``).

    Args:
        domain: ``"vision"`` (classifiers) or ``"recsys"`` (recommenders).

    Returns:
        ``{"FineTune": FineTune, ...}``.

    Raises:
        ValueError: unknown domain.
    """
    import importlib

    if domain not in ("vision", "recsys"):
        raise ValueError(f"domain must be 'vision' or 'recsys', got {domain!r}")
    module = importlib.import_module(f"unlearnkit.{domain}.methods")
    found: dict[str, type[Unlearner]] = {}
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name)
        if inspect.isclass(obj) and issubclass(obj, Unlearner):
            found[name] = obj
    return found
