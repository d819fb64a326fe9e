"""The metric protocol shared by the classification and ranking evaluators.

A metric is an object the Evaluator is given. It declares what it needs (``splits`` of collected
outputs; ``attributes`` the samples must carry, e.g. ``group``; whether it compares with the
retrained model) and computes a flat ``{"split/metric": float}`` dict from the collected outputs
of one model. The Evaluator collects every split once and calls its metrics in order, so a later
metric (Avg. Gap, the over-unlearning flag) reads the values earlier ones produced.

Adding a metric is writing a subclass of :class:`Metric` and passing it in
``Evaluator(metrics=[*default_metrics(), MyMetric()])``; no other file changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = ["EvaluatorProtocol", "Metric", "MetricContext"]


@runtime_checkable
class EvaluatorProtocol(Protocol):
    """What the experiment loop needs of an evaluator (classification and ranking alike).

    :class:`~unlearnkit.evaluation.Evaluator` and
    :class:`~unlearnkit.evaluation.ranking_evaluator.RecEvaluator` implement it.
    """

    def collect_from(self, model: Any, datamodule: Any) -> Any:
        """Run ``model`` once on the datamodule's current forget request; the raw outputs."""

    def metrics_from_outputs(
        self, outputs: Any, reference: Any = None, *, reference_metrics: Any = None
    ) -> dict[str, float]:
        """The flat ``{"split/metric": value}`` dict, against θ_r's outputs when given."""


@dataclass
class MetricContext:
    """What a metric may read besides the model's own outputs.

    Attributes:
        reference: the retrained model's collected outputs (same splits), or ``None``.
        reference_metrics: the retrained model's metrics, or ``None``.
        metrics: the values computed so far for this model (earlier metrics in the list).
    """

    reference: Any | None = None
    reference_metrics: Mapping[str, float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class Metric(ABC):
    """One metric (or a family of keys computed together) of an unlearned model.

    Attributes:
        splits: the collected splits it reads; when one is missing the metric is skipped
            (e.g. the MIAs without a test split), unless :attr:`required`.
        attributes: sample attributes it reads (e.g. ``("group",)``); a split lacking one is a
            one-line ``ValueError`` naming the metric, the attribute and the fix.
        needs_reference: it compares with the retrained model (skipped without one).
        required: raise instead of skipping when a split is missing.
    """

    splits: ClassVar[tuple[str, ...]] = ()
    attributes: ClassVar[tuple[str, ...]] = ()
    needs_reference: ClassVar[bool] = False
    required: ClassVar[bool] = False

    def applies(self, outputs: Mapping[str, Any], context: MetricContext) -> bool:
        """Whether the metric can run on ``outputs`` (its splits present; a reference if needed).

        Raises:
            ValueError: a required split is missing, or a split lacks a required attribute.
        """
        missing = [s for s in self.splits if s not in outputs]
        if missing:
            if self.required:
                raise ValueError(
                    f"{type(self).__name__} needs the split(s) {missing}; evaluate them too"
                )
            return False
        if self.needs_reference and context.reference is None:
            return False
        for split in self.splits:
            have = getattr(outputs[split], "attributes", {}) or {}
            for name in self.attributes:
                if name not in have:
                    raise ValueError(
                        f"{type(self).__name__} groups samples by {name!r}, but the {split} "
                        f"outputs carry {sorted(have) or 'no attributes'}; use a dataset that "
                        f"provides {name!r} or drop this metric"
                    )
        return True

    @abstractmethod
    def compute(self, outputs: Mapping[str, Any], context: MetricContext) -> dict[str, float]:
        """The metric's keys and values for one model's collected ``outputs``."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"
