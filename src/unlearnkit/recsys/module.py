"""`RecUnlearningModule` (the ranking twin of `UnlearningModule`) and the ranking evaluator.

``fit`` runs a recommender unlearning method: ``training_step`` delegates to ``method.loss``, as in
:class:`~unlearnkit.module.UnlearningModule`; the method's ``setup`` runs in the LightningModule's
``setup`` hook (before the optimizer is built, so adapters such as E2URec's LoRA factors can be
added) and its ``finish`` in ``on_fit_end`` (the model then propagates over the retain graph only).
``test`` runs :class:`RecEvaluator` on the datamodule's current forget request.

:class:`RecEvaluator` computes, for one recommender and one forget request, the full-ranking
metrics of :mod:`unlearnkit.evaluation.ranking` (LightGCN's protocol, He et al., SIGIR 2020,
arXiv:2002.02126, Sec. 4.1.1) on the test set, the forget-set metrics, a membership-inference AUC
and, against the retrained model, the score-distribution divergence and the over-unlearning flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from unlearnkit.base import LossUnlearner, Unlearner
from unlearnkit.evaluation.ranking_evaluator import RecEvaluator, RecOutputs
from unlearnkit.module import UnlearningModule, fit_method

__all__ = [
    "RecEvaluator",
    "RecOutputs",
    "RecUnlearningModule",
    "count_parameters",
    "fit_rec_method",
]


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


class RecUnlearningModule(UnlearningModule):
    """Recommender + unlearning method + ranking evaluator, as one LightningModule.

    Args:
        model: a dot-product recommender (:class:`~unlearnkit.recsys.models.LightGCNRecommender`
            or :class:`~unlearnkit.recsys.models.MFRecommender`) whose graph is set to the
            training edges.
        method: the unlearning method (a
            :class:`~unlearnkit.recsys.methods.base.RecLossUnlearner` for ``fit``).
        evaluator: the :class:`RecEvaluator` used by ``test`` (default: a plain one).
        checkpoint: weights of the original model, loaded at ``setup`` (never modified).

    Raises:
        ValueError: ``fit`` without a prepared method and without a
            :class:`~unlearnkit.recsys.data.RecDataModule`.
    """

    def __init__(
        self,
        model: nn.Module,
        method: Unlearner,
        evaluator: RecEvaluator | None = None,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__(model, method, evaluator=evaluator, checkpoint=checkpoint)

    def _is_rec_method(self) -> bool:
        return callable(getattr(self.method, "prepare", None)) and isinstance(
            self.method, LossUnlearner
        )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit" or not self._is_rec_method():
            return
        method = self.method
        if not method.is_prepared():  # type: ignore[attr-defined]
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None or not hasattr(datamodule, "forget_edges"):
                raise ValueError(
                    f"{type(method).__name__}: call method.unlearn(model, forget, retain) or give "
                    "the Trainer a RecDataModule"
                )
            if getattr(self.model, "graph_edges", torch.empty(2, 0)).size(1) == 0:
                self.model.set_graph(datamodule.train_edges)  # type: ignore[operator]
            method.prepare(  # type: ignore[attr-defined]
                self.model, datamodule.forget_edges, datamodule.retain_edges
            )
        method.setup(self.model)

    def on_fit_start(self) -> None:
        if self._is_rec_method():
            return  # set up in `setup`, before the optimizer was built
        super().on_fit_start()

    def on_fit_end(self) -> None:
        finish = getattr(self.method, "finish", None)
        if callable(finish):
            finish(self.model)

    # -- test: ranking evaluation on the datamodule's request -------------------------------
    def on_test_epoch_start(self) -> None:
        pass

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Nothing per batch: the evaluation ranks all users at the epoch end."""
        return None

    def on_test_epoch_end(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or getattr(datamodule, "data", None) is None:
            raise ValueError(
                "RecUnlearningModule.test needs a RecDataModule (trainer.test(datamodule=...))"
            )
        evaluator = self.evaluator or RecEvaluator()
        outputs = evaluator.collect(self.model, datamodule.data, datamodule.split)
        for name, value in evaluator.metrics_from_outputs(outputs).items():
            self.log(name, float(value), rank_zero_only=True)


def fit_rec_method(
    method: LossUnlearner,
    model: nn.Module,
    loaders: Mapping[str, DataLoader | None],
    *,
    trainer: L.Trainer | None = None,
) -> nn.Module:
    """Run a recommender :class:`~unlearnkit.base.LossUnlearner` on ``model`` through ``Trainer.fit``.

    The twin of :func:`unlearnkit.module.fit_method` with :class:`RecUnlearningModule`; the method
    must be prepared (``method.prepare``) first, as
    :meth:`~unlearnkit.recsys.methods.base.RecLossUnlearner.fit` does.

    Args:
        method: the loss-based method.
        model: modified in place.
        loaders: ``{"forget": ..., "retain": ...}``; only the streams ``method.streams`` declares are read.
        trainer: optional Trainer; its ``max_epochs`` must equal ``method.epochs``.

    Returns:
        ``model``.

    Raises:
        ValueError: a split the method reads has no loader, or ``trainer.max_epochs`` differs
            from ``method.epochs``.
    """
    return fit_method(method, model, loaders, trainer=trainer, module_class=RecUnlearningModule)
