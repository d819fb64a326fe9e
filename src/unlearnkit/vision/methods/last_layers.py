"""CF-k and EU-k: fine-tune, or re-initialise and train, only the last k layers on D_r."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from unlearnkit.base import init_arguments
from unlearnkit.vision.methods.finetune import FineTune


def last_layers(model: nn.Module, k: int) -> list[nn.Module]:
    """The last ``k`` layers of ``model``: modules that own parameters, in ``modules()`` order.

    Raises:
        ValueError: ``k`` is not in ``1..`` the number of such layers.
    """
    layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    if not 1 <= k <= len(layers):
        raise ValueError(
            f"k must be in 1..{len(layers)} (the layers with parameters of "
            f"{type(model).__name__}), got {k}"
        )
    return layers[-k:]


class CFk(FineTune):
    """CF-k (catastrophic forgetting of the last k layers): fine-tune only them on D_r.

    Source: Goel, Prabhu, Sanyal, Lim, Torr & Kumaraguru, "Towards Adversarial Evaluations for
    Inexact Machine Unlearning", arXiv 2201.06640 (2022), §4 baselines; ``k = 3`` is MUFAC's
    CF-3. A layer is a module that owns parameters (:func:`last_layers`); every other parameter
    stays bit-identical (the optimizer never sees it). Schedule defaults are FineTune's.

    Args:
        k: how many layers, counted from the output, are trained.
        gradient_restriction: IAU's GR weight α, as :class:`FineTune`'s (default 0: plain CE,
            the paper's loss); the penalty sums the gradient norms of every parameter that
            requires grad, as the GR reference does, though only the last ``k`` layers move.
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults 10 epochs, SGD lr 0.01.)

    Raises:
        ValueError: no retain loader; ``k`` out of range for the model.
    """

    def __init__(
        self,
        *,
        k: int = 3,
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
        self.k = init.pop("k")
        super().__init__(**init)  # FineTune's loss: CE on D_r

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        return [p for layer in last_layers(model, self.k) for p in layer.parameters(recurse=False)]


class EUk(CFk):
    """EU-k (exact unlearning of the last k layers): re-initialise them, then train them on D_r.

    Source: Goel et al., arXiv 2201.06640 (2022), §4: the last ``k`` layers are re-initialised
    (each layer's own ``reset_parameters``, seeded by ``seed``) and trained from scratch on D_r
    with the rest frozen; the rest stays bit-identical.

    Raises:
        ValueError: as :class:`CFk`, or a chosen layer without ``reset_parameters``.
    """

    def setup(self, model: nn.Module) -> None:
        layers = last_layers(model, self.k)
        missing = [
            type(m).__name__ for m in layers if not callable(getattr(m, "reset_parameters", None))
        ]
        if missing:
            raise ValueError(
                f"EUk cannot re-initialise {missing[0]} (no reset_parameters); choose a smaller k "
                "or give the layer a reset_parameters() method"
            )
        torch.manual_seed(int(self.seed))
        for layer in layers:
            layer.reset_parameters()
