"""Run a classifier once over a split and keep what every metric needs.

Every classification metric in :mod:`unlearnkit.evaluation` (accuracies, membership-inference
attacks, divergences to the retrained model) is a pure function of the per-sample logits and
targets of one split. :func:`collect` produces them in a single batched pass, so a full evaluation
costs one forward pass per split instead of one per metric (and never a batch-size-1 loop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Outputs", "collect"]


@dataclass
class Outputs:
    """Per-sample outputs of one model on one split (all on the CPU unless built otherwise).

    Shapes:
        logits: ``(N, C)`` float32, raw scores before softmax.
        targets: ``(N,)`` int64 class ids in ``[0, C)``.
        losses: ``(N,)`` float32 per-sample cross-entropy in nats.
        features: ``(N, D)`` float32 penultimate features, or ``None`` when not collected.
        attributes: named per-sample attributes the data carries, each ``(N,)``: ``index``
            (position in D_train, or in D_test for test splits), and where the data has them
            ``group``, ``identity``, ``superclass`` (what group metrics read).

    Raises:
        ValueError: the shapes disagree (different ``N``, logits not 2-D, targets not 1-D, an
            attribute not ``(N,)``).
    """

    logits: Tensor
    targets: Tensor
    losses: Tensor
    features: Tensor | None = None
    attributes: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.logits.ndim != 2:
            raise ValueError(
                f"Outputs.logits must be (N, C), got shape {tuple(self.logits.shape)}; "
                "flatten extra dimensions before building Outputs"
            )
        n = self.logits.shape[0]
        if self.targets.shape != (n,):
            raise ValueError(
                f"Outputs.targets must be ({n},) to match logits, got {tuple(self.targets.shape)}; "
                "pass integer class ids, not one-hot vectors"
            )
        if self.losses.shape != (n,):
            raise ValueError(
                f"Outputs.losses must be ({n},) to match logits, got {tuple(self.losses.shape)}; "
                "use reduction='none' when computing the loss"
            )
        if self.features is not None and (self.features.ndim != 2 or self.features.shape[0] != n):
            raise ValueError(
                f"Outputs.features must be ({n}, D), got {tuple(self.features.shape)}; "
                "flatten the features per sample"
            )
        for name, values in self.attributes.items():
            if values.shape != (n,):
                raise ValueError(
                    f"Outputs.attributes[{name!r}] must be ({n},), got {tuple(values.shape)}; "
                    "give one value per sample"
                )
        self.logits = self.logits.float()
        self.targets = self.targets.long()
        self.losses = self.losses.float()
        if self.features is not None:
            self.features = self.features.float()

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def attribute(self, name: str) -> Tensor:
        """The per-sample attribute ``name``, ``(N,)``.

        Raises:
            ValueError: the data carried no such attribute (names those it has, and the fix).
        """
        if name not in self.attributes:
            raise ValueError(
                f"the outputs have no attribute {name!r} (they have "
                f"{sorted(self.attributes) or 'none'}); evaluate on a dataset that provides it"
            )
        return self.attributes[name]

    @property
    def num_classes(self) -> int:
        """Number of classes ``C`` (the logits' width)."""
        return int(self.logits.shape[1])

    @property
    def probs(self) -> Tensor:
        """Softmax probabilities, ``(N, C)`` float32, rows sum to 1."""
        return torch.softmax(self.logits, dim=-1)

    @property
    def preds(self) -> Tensor:
        """Predicted class ids (argmax of the logits), ``(N,)`` int64."""
        return self.logits.argmax(dim=-1)

    @property
    def true_class_confidence(self) -> Tensor:
        """Softmax probability of the true class, ``(N,)`` float32 in ``[0, 1]``."""
        return self.probs.gather(1, self.targets.unsqueeze(1)).squeeze(1)

    def head(self, n: int) -> Outputs:
        """The first ``n`` samples (in collection order) as a new :class:`Outputs`.

        Args:
            n: how many samples to keep; more than ``len(self)`` keeps all of them.

        Returns:
            A view-backed :class:`Outputs` with ``min(n, N)`` samples.

        Raises:
            ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"head(n) needs n >= 0, got {n}")
        return Outputs(
            logits=self.logits[:n],
            targets=self.targets[:n],
            losses=self.losses[:n],
            features=None if self.features is None else self.features[:n],
            attributes={k: v[:n] for k, v in self.attributes.items()},
        )


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _split_batch(batch: Any, index: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            f"batch {index} is a {type(batch).__name__}; the loader must yield (x, y) or "
            "(x, y, *rest) tuples"
        )
    x, y = batch[0], batch[1]
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(
            f"batch {index} holds ({type(x).__name__}, {type(y).__name__}); x and y must be "
            "tensors (use the default collate_fn)"
        )
    attrs = batch[2] if len(batch) > 2 and isinstance(batch[2], dict) else {}
    return x, y, attrs


def collect(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    device: torch.device | str | None = None,
    features: bool = False,
) -> Outputs:
    """Run ``model`` once over ``loader`` and gather logits, targets and per-sample losses.

    The pass runs in ``eval()`` mode under :func:`torch.inference_mode`, one forward per batch of
    the loader (use a large batch size; nothing here falls back to one sample at a time). Every
    submodule's own train/eval flag is restored afterwards, so a model that was training keeps
    training and a frozen BatchNorm stays frozen. Results stay on ``device`` until the end and
    are moved to the CPU once.

    Args:
        model: a classifier mapping ``x`` to logits ``(B, C)``.
        loader: yields ``(x, y)``, ``(x, y, attributes)`` (a dict of ``(B,)`` tensors, kept in
            ``Outputs.attributes``) or ``(x, y, *rest)`` (``rest`` ignored).
        device: where to run; defaults to the device of the model's first parameter (CPU for a
            model without parameters). Batches are moved there; the model is not.
        features: also collect ``model.features(x)`` flattened to ``(B, D)`` (one extra call of
            ``model.features`` per batch).

    Returns:
        :class:`Outputs` with logits ``(N, C)`` float32, targets ``(N,)`` int64, losses ``(N,)``
        float32 cross-entropy in nats, and features ``(N, D)`` float32 or ``None``, on the CPU, in
        loader order.

    Raises:
        ValueError: the loader is empty, the logits are not ``(B, C)``, or ``features=True`` for a
            model without a ``features`` method.
        TypeError: a batch is not an ``(x, y, ...)`` tuple of tensors.
    """
    if features and not callable(getattr(model, "features", None)):
        raise ValueError(
            f"features=True needs a model with a features(x) method; {type(model).__name__} has "
            "none (add one returning penultimate activations, or pass features=False)"
        )
    run_device = torch.device(device) if device is not None else _model_device(model)
    modes = [(module, module.training) for module in model.modules()]
    logits_parts: list[Tensor] = []
    target_parts: list[Tensor] = []
    feature_parts: list[Tensor] = []
    attr_parts: dict[str, list[Tensor]] = {}
    model.eval()
    try:
        with torch.inference_mode():
            for index, batch in enumerate(loader):
                x, y, attrs = _split_batch(batch, index)
                for name, values in attrs.items():
                    attr_parts.setdefault(name, []).append(torch.as_tensor(values).reshape(-1))
                x = x.to(run_device, non_blocking=True)
                y = y.to(run_device, non_blocking=True)
                logits = model(x)
                if not isinstance(logits, Tensor) or logits.ndim != 2:
                    shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits)
                    raise ValueError(
                        f"model returned {shape} for batch {index}; collect needs logits of shape "
                        "(B, C) (wrap the model so forward returns class scores)"
                    )
                if y.numel() != logits.shape[0]:
                    raise ValueError(
                        f"batch {index} has {logits.shape[0]} logits rows but targets of shape "
                        f"{tuple(y.shape)}; y must hold one integer class id per sample"
                    )
                logits_parts.append(logits.float())
                target_parts.append(y.reshape(-1).long())
                if features:
                    feature_parts.append(model.features(x).flatten(1).float())
    finally:
        for module, mode in modes:
            module.training = mode
    if not logits_parts:
        raise ValueError("collect got an empty loader; pass a DataLoader over a non-empty split")
    all_logits = torch.cat(logits_parts)
    all_targets = torch.cat(target_parts)
    losses = F.cross_entropy(all_logits, all_targets, reduction="none")
    return Outputs(
        logits=all_logits.cpu(),
        targets=all_targets.cpu(),
        losses=losses.cpu(),
        features=torch.cat(feature_parts).cpu() if features else None,
        attributes={k: torch.cat(v).cpu() for k, v in attr_parts.items()},
    )
