"""SalUn: random labels restricted to the weights most salient for the forget set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.base import LossUnlearner, init_arguments
from unlearnkit.vision.methods.random_label import RandomLabel


def saliency_mask(model: nn.Module, forget: Iterable, *, ratio: float) -> dict[str, Tensor]:
    """SalUn's weight saliency mask: the global top ``ratio`` of ``|Σ_batches ∇_θ(−CE)|`` on D_f.

    Fan, Liu, Zhang, Wei, Wong & Liu, "SalUn: Empowering Machine Unlearning via Gradient-based
    Weight Saliency in Both Image Classification and Generation", ICLR 2024 (arXiv 2310.12508),
    §4, Eq. 6 (``m_S = 1(|∇_θ ℓ_f(θ; D_f)|_{θ=θ_o} ≥ γ)``); as ``generate_mask.py`` of the
    reference code: the gradient of the *negated* mean CE of each forget batch, summed over the
    batches (model in eval mode), absolute value, and the ``ratio`` share of all entries with the
    largest values set to 1 (one global threshold over every parameter).

    Args:
        model: θ_o (its gradients are cleared afterwards; weights unchanged).
        forget: batches ``(x, y, ...)`` of D_f.
        ratio: share of entries kept, in (0, 1] (reference: 0.5).

    Returns:
        ``{parameter name: mask}``, each a bool tensor of the parameter's shape.

    Raises:
        ValueError: ``ratio`` outside (0, 1].
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"SalUn mask ratio must be in (0, 1], got {ratio}")
    was_training = model.training
    model.eval()
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    for batch in forget:
        x, y = batch[0], batch[1]
        model.zero_grad()
        (-F.cross_entropy(model(x), y)).backward()
        for name, param in model.named_parameters():
            if name in grads and param.grad is not None:
                grads[name] += param.grad.detach()
    model.zero_grad()
    model.train(was_training)
    scores = torch.cat([g.abs().flatten() for g in grads.values()])
    keep = max(1, round(ratio * scores.numel()))
    order = torch.argsort(scores, descending=True, stable=True)
    flat = torch.zeros(scores.numel(), dtype=torch.bool)
    flat[order[:keep]] = True
    masks, offset = {}, 0
    for name, g in grads.items():
        masks[name] = flat[offset : offset + g.numel()].view_as(g)
        offset += g.numel()
    return masks


class SalUn(RandomLabel):
    """SalUn: RandomLabel on D_f ∪ D_r, updating only the salient weights of the forget set.

    Source: Fan et al., ICLR 2024 (arXiv 2310.12508), §4 (Eq. 7: the masked update
    ``θ_u = m_S ⊙ (Δθ + θ_o) + (1 − m_S) ⊙ θ_o``); reference code OPTML-Group/Unlearn-Saliency
    (``generate_mask.py`` then ``RL`` with the mask): :func:`saliency_mask` with ratio 0.5, then
    :class:`RandomLabel`'s pass over D_f ∪ D_r (lr 0.013, 10 epochs for 10 % random forgetting
    on CIFAR-10 in the paper's setting). The reference multiplied the gradients by the mask,
    which SGD's momentum and weight decay still move (its issue #32): here every masked-out
    entry is restored to θ_o after each optimizer step, so it stays **bit-identical** —
    the paper's Eq. 7.

    Args:
        mask_ratio: share of weights updated (reference 0.5).
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults 10 epochs, SGD lr 0.013,
        momentum 0.9, weight decay 5e-4.)

    Attributes:
        mask_: ``{parameter name: bool mask}`` of the last run.

    Raises:
        ValueError: no retain loader; ``mask_ratio`` outside (0, 1].
    """

    streams: ClassVar[tuple[str, ...]] = ("union",)

    def __init__(
        self,
        *,
        mask_ratio: float = 0.5,
        epochs: int = 10,
        lr: float = 0.013,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        # RandomLabel's own __init__ takes no extra hyper-parameter: store ours through the base
        LossUnlearner.__init__(self, **init_arguments(locals()))

    def prepare_streams(self, model: nn.Module, loaders: Mapping[str, Iterable]) -> None:
        self.mask_ = saliency_mask(model, loaders["forget"], ratio=float(self.mask_ratio))

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        optimizer = super().configure_optimizer(model)
        # θ_o, captured before any step (Lightning builds the optimizer before the mask exists
        # under `unlearnkit fit`; the mask is read at each step)
        originals = {n: p.detach().clone() for n, p in model.named_parameters()}
        params = dict(model.named_parameters())

        def restore(*_: object) -> None:
            with torch.no_grad():
                for name, keep in self.mask_.items():
                    outside = ~keep
                    params[name][outside] = originals[name][outside]

        optimizer.register_step_post_hook(restore)
        return optimizer
