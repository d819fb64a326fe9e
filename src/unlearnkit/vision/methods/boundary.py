"""Boundary Unlearning: Boundary Shrink and Boundary Expanding (Chen et al., CVPR 2023)."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.base import LossUnlearner, UnlearnBatch, init_arguments
from unlearnkit.datasets.tensors import class_indices

__all__ = ["BoundaryExpanding", "BoundaryShrink", "classifier_head", "neighbour_search"]


def _channel_stats(values: Sequence[float], x: Tensor, name: str) -> Tensor:
    stats = torch.as_tensor(list(values), dtype=x.dtype, device=x.device)
    if x.dim() < 2 or stats.numel() not in (1, x.shape[1]):
        raise ValueError(
            f"{name} has {stats.numel()} entries but the inputs have shape {tuple(x.shape)}; "
            "give one value per channel (dimension 1) or a single value"
        )
    return stats.view(1, -1, *([1] * (x.dim() - 2)))


def neighbour_search(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    bound: float,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[Tensor, Tensor]:
    """Boundary Shrink's neighbour search: one FGSM step from ``x``, and the label it lands on.

    Chen, Gao, Liu, Peng & Wang, "Boundary Unlearning: Rapid Forgetting of Deep Networks via
    Shifting the Decision Boundary", CVPR 2023 (arXiv 2303.11570), §4, "Boundary Shrink":
    ``x' = x + ε · sign(∇_x CE(f_θo(x), y))`` and the nearest-but-incorrect label
    ``y_nbi = argmax f_θo(x')``; as ``FGSM.perturb`` of the authors' ``adv_generator.py`` (and
    ``FGSM_perturb`` of OPTML-Group/Unlearn-Saliency ``Classification/unlearn/boundary_sh.py``):
    the mean cross-entropy of the batch against the *true* labels, the model in eval mode, one
    step of size ``bound``, and the label taken from the model's prediction on ``x'``. When the
    step does not cross a boundary, that prediction is the model's prediction on ``x`` (``y``
    for a correctly classified sample), and it is kept as it is (so does the reference:
    Boundary Shrink then fine-tunes that sample on its own label).

    With ``mean``/``std`` (the data's normalisation) the step is taken in pixel space, as the
    authors' code does for its normalised CIFAR-10 inputs: ``p = x · std + mean``,
    ``p' = round(255 · clamp(p + ε · sign(g), 0, 1)) / 255``, ``x' = (p' − mean) / std`` (the
    sign of the gradient is the same in both spaces, std > 0). For inputs already in ``[0, 1]``
    (the OPTML code's, which normalises inside the model) pass ``mean=(0,)``, ``std=(1,)``.
    Without them the step is taken in the model's input units, with no clamp or rounding (the
    inputs' range is unknown).

    Args:
        model: the classifier attacked (Boundary Shrink: a frozen copy of θ_o); left in the
            train/eval mode it had, its parameters' ``.grad`` untouched.
        x: inputs, ``(B, C, ...)``.
        y: true labels, ``(B,)`` int64.
        bound: the step ``ε`` (L∞), in pixel units when ``mean``/``std`` are given.
        mean: per-channel mean of the normalisation (length ``C`` or 1), or ``None``.
        std: per-channel standard deviation (same length, positive), or ``None``.

    Returns:
        ``(x_adv, labels)``: the perturbed inputs, shape of ``x``, and the model's prediction
        on them, ``(B,)`` int64.

    Raises:
        ValueError: ``bound`` negative; only one of ``mean``/``std``; their length not ``C`` or
            1; a non-positive ``std``; ``y`` not integer class indices below the model's number
            of outputs.
    """
    if bound < 0:
        raise ValueError(f"bound must be >= 0 (the FGSM step), got {bound}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std (the inputs' normalisation), or neither")
    was_training = model.training
    model.eval()
    try:
        x_grad = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_grad)
            y = class_indices(y, logits.shape[-1], name="BoundaryShrink: D_f's labels")
            loss = F.cross_entropy(logits, y)
            (grad,) = torch.autograd.grad(loss, x_grad)
        step = bound * grad.sign()
        if mean is None:
            x_adv = x.detach() + step
        else:
            m, s = _channel_stats(mean, x, "mean"), _channel_stats(std, x, "std")
            if bool((s <= 0).any()):
                raise ValueError(f"std must be positive, got {list(std)}")
            pixels = (x.detach() * s + m + step).clamp(0.0, 1.0)
            x_adv = (torch.round(pixels * 255) / 255 - m) / s
        with torch.no_grad():
            labels = model(x_adv).argmax(dim=1)
    finally:
        model.train(was_training)
    return x_adv, labels


class BoundaryShrink(LossUnlearner):
    """Boundary Shrink: fine-tune on D_f relabelled with each sample's nearest wrong class.

    Source: Chen, Gao, Liu, Peng & Wang, "Boundary Unlearning: Rapid Forgetting of Deep
    Networks via Shifting the Decision Boundary", CVPR 2023 (arXiv 2303.11570), §4, "Boundary
    Shrink"; reference code: the authors' ``boundary_unlearning.py: boundary_shrink`` (with
    ``adv_generator.py: FGSM``), also OPTML-Group/Unlearn-Saliency
    ``Classification/unlearn/boundary_sh.py``, the version SalUn's tables ran. Each step, on a
    forget batch: :func:`neighbour_search` on a frozen copy of θ_o (FGSM, ``bound`` 0.1 — the
    authors' default, "hard coding in the paper" in the OPTML file), then
    ``CE(f_θ(x), y_nbi)`` on the *clean* inputs. As in both references there is no retain or
    KL term (the authors' ``- KL_div`` is commented out), and a sample whose attack fails keeps
    θ_o's predicted label — its true label when θ_o classified it correctly. Defaults are the authors' (SGD lr 1e-5, momentum
    0.9, no weight decay, 10 epochs over D_f; the OPTML runs pass their own ``--unlearn_lr``).
    The authors' optional curvature and re-weighting terms (``extra_exp``) are not included.

    The reference takes the FGSM step in pixel space and clamps/rounds it to valid 8-bit
    pixels; give ``input_mean``/``input_std`` (the data's normalisation, e.g. CIFAR-10's) to do
    the same. Without them the step is in the model's input units (see
    :func:`neighbour_search`). (The authors' ``AttackBase`` hard-codes CIFAR-10 statistics, with
    0.2265 for the blue channel's mean; here the statistics are whatever the data used.)

    Args:
        bound: FGSM step ε (reference 0.1, in pixels in ``[0, 1]``).
        input_mean: per-channel mean the inputs were normalised with, or ``None``.
        input_std: per-channel standard deviation, or ``None``.
        (others: see :class:`~unlearnkit.base.LossUnlearner`; defaults 10 epochs, SGD lr 1e-5,
        momentum 0.9, weight decay 0.)

    Attributes:
        original_: the frozen copy of θ_o that the neighbour search attacks.
        attack_success_: share of the forget samples seen so far (over all steps) whose
            nearest label differs from the true one (the reference's "attack success ratio";
            a sample θ_o already misclassifies counts as a success, as there).

    Raises:
        ValueError: ``bound`` negative, bad ``input_mean``/``input_std``, or D_f labels that are
            not integer class indices of the model (first step).
    """

    streams: ClassVar[tuple[str, ...]] = ("forget",)

    def __init__(
        self,
        *,
        bound: float = 0.1,
        input_mean: tuple[float, ...] | None = None,
        input_std: tuple[float, ...] | None = None,
        epochs: int = 10,
        lr: float = 1e-5,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def setup(self, model: nn.Module) -> None:
        self.original_ = copy.deepcopy(model).eval()
        for param in self.original_.parameters():
            param.requires_grad_(False)
        self.attack_success_ = 0.0
        self._hits, self._seen = 0, 0

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        x, y = batch.forget
        _, nearest = neighbour_search(
            self.original_, x, y, bound=self.bound, mean=self.input_mean, std=self.input_std
        )
        self._hits += int((nearest != y).sum())
        self._seen += len(y)
        self.attack_success_ = self._hits / self._seen
        return F.cross_entropy(model(x), nearest)


def classifier_head(model: nn.Module) -> nn.Linear:
    """The final linear layer of a classifier: the one whose output rows are the classes.

    Rule: ``model.get_classifier()`` when the model has it and it returns an ``nn.Linear``
    (timm models), else the last ``nn.Linear`` in ``model.modules()`` order — the rule of
    ``expand_model`` in OPTML-Group/Unlearn-Saliency ``Classification/unlearn/boundary_ex.py``
    (the authors' code names ``model.classifier`` of its AllCNN instead). That it really gives
    the model's logits is checked on the first batch (:class:`BoundaryExpanding`).

    Raises:
        ValueError: the model has no ``nn.Linear``.
    """
    get_classifier = getattr(model, "get_classifier", None)
    if callable(get_classifier):
        head = get_classifier()
        if isinstance(head, nn.Linear):
            return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer; BoundaryExpanding widens the final "
            "Linear classifier layer, so the model must end in one"
        )
    return linears[-1]


@contextlib.contextmanager
def _seen_by(module: nn.Module) -> Iterator[list[tuple[Tensor, Tensor]]]:
    """Record ``(input, output)`` of each call of ``module`` inside the block."""
    calls: list[tuple[Tensor, Tensor]] = []
    handle = module.register_forward_hook(lambda _m, args, out: calls.append((args[0], out)))
    try:
        yield calls
    finally:
        handle.remove()


class BoundaryExpanding(LossUnlearner):
    """Boundary Expanding: train D_f into an extra shadow class, then prune the shadow neuron.

    Source: Chen et al., CVPR 2023 (arXiv 2303.11570), §4, "Boundary Expanding"; reference
    code: the authors' ``boundary_unlearning.py: boundary_expanding`` (also
    OPTML-Group/Unlearn-Saliency ``Classification/unlearn/boundary_ex.py``). The classifier's
    final linear layer (:func:`classifier_head`) is widened by one output, the shadow class
    ``C``, whose row is freshly initialised — Xavier-normal weight over the widened
    ``(C + 1) × d`` matrix and zero bias, the authors' ``init_params`` — while rows ``0..C-1``
    keep θ_o's; every parameter (body, head and shadow row) is then trained with
    ``CE([f_θ(x), w_s·h(x) + b_s], C)`` on D_f, ``h(x)`` the head's input; finally the shadow
    neuron is pruned, leaving the original ``C`` outputs. Defaults are the authors' (SGD lr
    1e-5, momentum 0.9, no weight decay, 10 epochs over D_f).

    Implementation: the widened layer is never built into the model. The shadow row
    (``shadow_weight_``, ``shadow_bias_``) is held here and its logit computed from the head's
    input (a forward hook), which is exactly the widened layer's extra output; so "pruning" is
    dropping that row, and the model keeps its architecture and ``state_dict`` keys throughout
    (it loads into the original architecture, and the Lightning optimizer and any DDP wrapper
    see the same module before and after). Under DDP the shadow row's gradient is not
    all-reduced (it is not a parameter of the wrapped module): each rank trains its own copy,
    which is discarded. Unlike the OPTML version, which evaluates the widened model without
    pruning (``C + 1`` outputs), this follows the paper and the authors' code in pruning.

    Args: see :class:`~unlearnkit.base.LossUnlearner` (defaults 10 epochs, SGD lr 1e-5,
        momentum 0.9, weight decay 0); ``seed`` also seeds the shadow row's initialisation.

    Attributes:
        shadow_weight_: the shadow class's weight row, ``(1, d)``, after training.
        shadow_bias_: its bias, ``(1,)`` (``None`` when the head has no bias).

    Raises:
        ValueError: the model has no ``nn.Linear`` layer, or the model's output is not the
            output of the layer :func:`classifier_head` finds.
    """

    streams: ClassVar[tuple[str, ...]] = ("forget",)

    def __init__(
        self,
        *,
        epochs: int = 10,
        lr: float = 1e-5,
        optimizer: Literal["sgd", "adam"] = "sgd",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine"] = "constant",
        seed: int = 0,
    ) -> None:
        super().__init__(**init_arguments(locals()))

    def configure_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer over the model's parameters and a fresh shadow row (its own group)."""
        head = classifier_head(model)
        # Xavier-normal std of the widened (C + 1) x d weight; gain 1
        std = math.sqrt(2.0 / (head.in_features + head.out_features + 1))
        generator = torch.Generator().manual_seed(int(self.seed))
        weight = torch.randn(1, head.in_features, generator=generator) * std
        like: dict[str, Any] = {"device": head.weight.device, "dtype": head.weight.dtype}
        self.shadow_weight_ = nn.Parameter(weight.to(**like))
        self.shadow_bias_ = None if head.bias is None else nn.Parameter(torch.zeros(1, **like))
        optimizer = super().configure_optimizer(model)
        shadow = [p for p in (self.shadow_weight_, self.shadow_bias_) if p is not None]
        optimizer.add_param_group({"params": shadow})
        return optimizer

    def loss(self, model: nn.Module, batch: UnlearnBatch, *, epoch: int) -> Tensor:
        x, _ = batch.forget
        head = classifier_head(model)
        with _seen_by(head) as calls:
            logits = model(x)
        if not calls:
            raise ValueError(
                f"{type(model).__name__}'s classifier layer was not called in forward; "
                "BoundaryExpanding needs the model's logits to be its last Linear layer's output"
            )
        features, head_out = calls[-1]
        if head_out is not logits and not (
            head_out.shape == logits.shape and torch.equal(head_out, logits)
        ):
            raise ValueError(
                f"{type(model).__name__}'s output is not the output of its last Linear layer "
                f"(out_features={head.out_features}); BoundaryExpanding widens that layer, so the "
                "model must return its logits unchanged (or expose get_classifier())"
            )
        shadow = F.linear(features, self.shadow_weight_, self.shadow_bias_)
        widened = torch.cat([logits, shadow], dim=-1)
        target = torch.full_like(batch.forget.y, logits.shape[-1])
        return F.cross_entropy(widened, target)
