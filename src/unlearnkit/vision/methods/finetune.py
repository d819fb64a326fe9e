"""Fine-tuning (FT) and retraining from scratch (Retrain) on the retain set."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.base import LossUnlearner, UnlearnBatch, init_arguments
from unlearnkit.influence.gradients import gradient_restriction_loss
from unlearnkit.reinit import reinitialize


class FineTune(LossUnlearner):
    """FT: continue training the original model on D_r only (catastrophic forgetting of D_f).

    Source: Warnecke et al., "Machine Unlearning of Features and Labels", NDSS 2023
    (arXiv 2108.11577), and the FT baseline of Jia et al., "Model Sparsity Can Simplify Machine
    Unlearning", NeurIPS 2023 (arXiv 2304.04934), §5: 10 epochs of SGD on D_r, lr in [0.01, 0.1].

    Loss per step: ``CE(f(x_r), y_r)`` (mean over the retain batch), or with
    ``gradient_restriction = α > 0`` IAU's gradient-restriction (GR) loss ``CE + α · Σ_k
    ||∇_{θ_k} CE||₂`` (Liu, Wu, Lian & Chen, "Efficient Machine Unlearning via Influence
    Approximation", arXiv 2507.23257, the GR loss; reference ``train_model.py`` with
    ``model_fix_flag=1`` in github.com/Lolo1222/IAU): the norm of each parameter tensor's
    gradient of the batch-mean CE, summed over the tensors that require grad, back-propagated
    through (a double backward: about twice a plain step's cost). This is how the experiment
    trains an IAU-ready original (``training.gradient_restriction``).

    Args:
        gradient_restriction: the GR weight α (``>= 0``; 0: plain CE; IAU's value 0.005).
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults: 10 epochs, SGD lr 0.01,
        momentum 0.9, weight decay 5e-4.)

    Raises:
        ValueError: no retain loader; ``gradient_restriction`` negative or not finite (at the
            first step).
    """

    streams: ClassVar[tuple[str, ...]] = ("retain",)

    def __init__(
        self,
        *,
        epochs: int = 10,
        lr: float = 0.01,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        gradient_restriction: float = 0.0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        x, y = batch.retain  # type: ignore[misc]
        if self.gradient_restriction != 0:  # negative / NaN: refused by the loss
            return gradient_restriction_loss(model, x, y, alpha=self.gradient_restriction)
        return F.cross_entropy(model(x), y)


class Retrain(FineTune):
    """Retrain: re-initialise the weights and train from scratch on D_r — the gold standard θ_r.

    Exact unlearning by definition (e.g. Bourtoule et al., "Machine Unlearning", IEEE S&P 2021,
    arXiv 1912.03817, §II); every other method is judged by its distance to this model. Use the
    same schedule as the original model's training (the runner passes it).

    Setup: :func:`unlearnkit.reinit.reinitialize` with seed ``init_seed`` (``seed`` when
    ``None``): the model's own ``reset_parameters()`` (else every submodule's), checked to have
    re-drawn every parameter. The experiment runner passes ``init_seed`` from its schedule's
    ``retrain_init`` (the original model's seed, or a fresh one).

    Args: see :class:`FineTune` (defaults: 30 epochs, SGD lr 0.05, cosine; the GR loss is
        available as there, but the experiment trains θ_r with plain CE, see
        :class:`~unlearnkit.vision.experiment.TrainSchedule`), and
        init_seed: seed of the re-initialisation (``None``: ``seed``).

    Raises:
        ValueError: no retain loader, or a parameter the model's reset leaves untouched.
    """

    def __init__(
        self,
        *,
        epochs: int = 30,
        lr: float = 0.05,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "cosine",
        seed: int = 0,
        init_seed: int | None = None,
        gradient_restriction: float = 0.0,
    ) -> None:
        init = init_arguments(locals())
        self.init_seed = init.pop("init_seed")
        super().__init__(**init)

    def setup(self, model: nn.Module) -> None:
        reinitialize(model, seed=self.seed if self.init_seed is None else self.init_seed)
