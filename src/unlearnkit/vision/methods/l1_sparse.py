"""ℓ1-sparse unlearning: fine-tuning on D_r with a decaying ℓ1 penalty on the weights."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from unlearnkit.base import UnlearnBatch, init_arguments
from unlearnkit.vision.methods.finetune import FineTune


def l1_norm(model: nn.Module) -> Tensor:
    """``‖θ‖₁``: the sum of the absolute values of every parameter of ``model`` (a 0-d tensor)."""
    return torch.stack([p.abs().sum() for p in model.parameters()]).sum()


class L1Sparse(FineTune):
    """ℓ1-sparse: fine-tune on D_r with ``γ_t·‖θ‖₁``, γ_t decaying linearly to 0.

    Source: Jia, Liu, Ram, Yao, Liu, Liu, Sharma & Liu, "Model Sparsity Can Simplify Machine
    Unlearning", NeurIPS 2023 (arXiv 2304.04934), §4 (sparsity-aware unlearning, Eq. 4:
    ``min_θ L_FT(θ; θ_o, D_r) + γ‖θ‖₁``) with the linearly decaying γ schedule of the reference
    code (OPTML-Group/Unlearn-Sparse, ``unlearn/FT.py``: ``FT_l1``): at epoch ``e`` of ``E``,
    ``γ_e = alpha · (1 − e / (E − no_l1_epochs))`` while ``e < E − no_l1_epochs``, 0 afterwards
    (and ``alpha`` throughout when ``E == no_l1_epochs``); ``‖θ‖₁`` is taken over every
    parameter, as ``l1_regularization`` there does.

    Loss per step: ``CE(f(x_r), y_r) + γ_e · ‖θ‖₁`` (mean CE over the retain batch; with
    ``gradient_restriction > 0`` the CE term is :class:`FineTune`'s GR loss).

    Args:
        alpha: the initial ℓ1 weight γ_0. Default 1e-4, the value of a public reproduction of the
            SalUn CIFAR-10 table (JingWu321/Scissorhands, ``sh/main_0.5_cifar10.sh``, ``FT_prune
            --alpha 0.0001 --unlearn_lr 0.01 --unlearn_epochs 10``: a secondary source; the
            paper tunes γ per setting).
        no_l1_epochs: final epochs without the penalty (reference default 0).
        gradient_restriction: IAU's GR weight α on the CE term, as :class:`FineTune`'s
            (default 0: plain CE, the paper's loss).
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults 10 epochs, SGD lr 0.01,
        momentum 0.9, weight decay 5e-4, as the reference's FT.)

    Raises:
        ValueError: no retain loader; ``alpha < 0``, or ``no_l1_epochs`` outside ``[0, epochs]``
            (at the first step).
    """

    def __init__(
        self,
        *,
        alpha: float = 1e-4,
        no_l1_epochs: int = 0,
        epochs: int = 10,
        lr: float = 0.01,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
        gradient_restriction: float = 0.0,
    ) -> None:
        init = init_arguments(locals())
        self.alpha, self.no_l1_epochs = init.pop("alpha"), init.pop("no_l1_epochs")
        super().__init__(**init)

    def setup(self, model: nn.Module) -> None:
        if not self.alpha >= 0:
            raise ValueError(f"L1Sparse alpha must be >= 0, got {self.alpha}")
        if not 0 <= self.no_l1_epochs <= self.epochs:
            raise ValueError(
                f"L1Sparse no_l1_epochs must be in 0..epochs={self.epochs}, got {self.no_l1_epochs}"
            )

    def l1_weight(self, epoch: int) -> float:
        """γ at ``epoch`` (0-based): the reference's linear decay (see the class docstring)."""
        decay_epochs = self.epochs - self.no_l1_epochs
        if decay_epochs == 0:
            return float(self.alpha)
        if epoch < decay_epochs:
            return float(self.alpha) * (1.0 - epoch / decay_epochs)
        return 0.0

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        return super().loss(model, batch, epoch=epoch) + self.l1_weight(epoch) * l1_norm(model)
