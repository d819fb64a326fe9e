"""`Evaluator`: the shared classification metrics of one unlearned model, as a flat dict.

The Evaluator runs each split once (:func:`~unlearnkit.evaluation.collect.collect`) and computes
a list of :class:`~unlearnkit.evaluation.metric.Metric` objects on the outputs.
:func:`default_metrics` is the standard list; keys (fractions in [0, 1] unless stated):
    ``forget/acc``, ``forget/ua`` (= 1 − forget/acc), ``retain/acc``, ``test/acc``,
    ``test_forget/acc`` (class forgetting: test samples of the forgotten classes),
    ``mia/efficacy`` (SVC on true-class confidence, OPTML convention), ``mia/entropy_lr`` (the SSD
    paper's entropy + logistic-regression attack: share of D_f predicted member),
    and with a retrained reference: ``forget/js_to_retrain`` (nats), ``gap/avg``, ``tow``,
    ``flag/over_unlearning`` (1.0 when the model forgot far more than retraining, or lost
    retain/test accuracy: :func:`~unlearnkit.evaluation.metrics.over_unlearning_reasons`).
:class:`WorstGroupAccuracy` (``{split}/worst_group_acc``) reads the samples' ``group`` attribute.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from unlearnkit.evaluation.collect import Outputs, collect
from unlearnkit.evaluation.metric import Metric, MetricContext
from unlearnkit.evaluation.metrics import (
    AVG_GAP_KEYS,
    OVER_UNLEARNING_TOLERANCE,
    accuracy,
    avg_gap,
    js_divergence,
    over_unlearning_reasons,
    tug_of_war,
)
from unlearnkit.evaluation.mia import mia_efficacy, mia_entropy_lr

__all__ = [
    "Accuracy",
    "OverUnlearningWarning",
    "Evaluator",
    "JSToRetrain",
    "MIAEfficacy",
    "MIAEntropyLR",
    "RetrainGap",
    "WorstGroupAccuracy",
    "default_metrics",
]

_ACC_SPLITS = ("forget", "retain", "test", "test_forget")


class OverUnlearningWarning(UserWarning):
    """An unlearned model landed far past the retrained model (see :class:`RetrainGap`)."""


class Accuracy(Metric):
    """``{split}/acc`` for every collected split of ``forget, retain, test, test_forget``, and
    ``forget/ua`` = 1 − forget accuracy (UA, Jia et al., NeurIPS 2023, arXiv 2304.04934)."""

    def compute(self, outputs: Mapping[str, Any], context: MetricContext) -> dict[str, float]:
        out = {f"{s}/acc": accuracy(outputs[s]) for s in _ACC_SPLITS if s in outputs}
        if "forget/acc" in out:
            out["forget/ua"] = 1.0 - out["forget/acc"]
        return out


class MIAEfficacy(Metric):
    """``mia/efficacy``: :func:`~unlearnkit.evaluation.mia.mia_efficacy` (OPTML convention)."""

    splits: ClassVar[tuple[str, ...]] = ("forget", "retain", "test")

    def compute(self, outputs: Mapping[str, Any], context: MetricContext) -> dict[str, float]:
        return {"mia/efficacy": mia_efficacy(outputs["retain"], outputs["test"], outputs["forget"])}


class MIAEntropyLR(Metric):
    """``mia/entropy_lr``: :func:`~unlearnkit.evaluation.mia.mia_entropy_lr` (the SSD paper's)."""

    splits: ClassVar[tuple[str, ...]] = ("forget", "retain", "test")

    def compute(self, outputs: Mapping[str, Any], context: MetricContext) -> dict[str, float]:
        return {
            "mia/entropy_lr": mia_entropy_lr(outputs["retain"], outputs["test"], outputs["forget"])
        }


class JSToRetrain(Metric):
    """``forget/js_to_retrain``: mean JS divergence (nats) of the D_f predictions from θ_r's."""

    splits: ClassVar[tuple[str, ...]] = ("forget",)
    needs_reference: ClassVar[bool] = True

    def compute(self, outputs: Mapping[str, Any], context: MetricContext) -> dict[str, float]:
        js = js_divergence(outputs["forget"].logits, context.reference["forget"].logits)
        return {"forget/js_to_retrain": js}


class RetrainGap(Metric):
    """``gap/avg`` (Avg. Gap over UA, RA, TA, MIA-efficacy; Fan et al., ICLR 2024, arXiv
    2310.12508), ``tow`` (Zhao et al., 2024) and ``flag/over_unlearning``, against θ_r's metrics.

    Must come after the metrics it compares (the default list puts it last).

    Args:
        tolerance: how far below the retrained model (fractions) a metric may land before the
            row is flagged (:func:`~unlearnkit.evaluation.metrics.over_unlearning_reasons`).
    """

    def __init__(self, *, tolerance: float = OVER_UNLEARNING_TOLERANCE) -> None:
        self.tolerance = tolerance

    def applies(self, outputs: Mapping[str, Any], context: MetricContext) -> bool:
        return context.reference_metrics is not None

    def compute(self, outputs: Mapping[str, Any], context: MetricContext) -> dict[str, float]:
        ref, mine = context.reference_metrics, context.metrics
        keys = [k for k in AVG_GAP_KEYS if k in ref and k in mine]  # type: ignore[operator]
        out = {"gap/avg": avg_gap(mine, ref, keys=keys), "tow": tug_of_war(mine, ref)}  # type: ignore[arg-type]
        reasons = over_unlearning_reasons(mine, ref, tolerance=self.tolerance)  # type: ignore[arg-type]
        out["flag/over_unlearning"] = float(bool(reasons))
        if reasons:
            warnings.warn(
                f"over-unlearning: {'; '.join(reasons)} (more than {self.tolerance:.2f} past the "
                "retrained model; a membership attack can spot such samples)",
                OverUnlearningWarning,
                stacklevel=2,
            )
        return out


class WorstGroupAccuracy(Metric):
    """``{split}/worst_group_acc``: the lowest accuracy over the groups of a sample attribute.

    The worst-group accuracy of Sagawa et al., "Distributionally Robust Neural Networks",
    ICLR 2020 (arXiv 1911.08731), §2: ``min_g acc(samples with attribute == g)``, over the groups
    present in the split. Used for bias-aware unlearning (Waterbirds-style data carry ``group``).

    Args:
        attribute: the sample attribute defining the groups (default ``"group"``).
        split: the collected split (default ``"test"``).

    Raises:
        ValueError: the split's samples carry no such attribute.
    """

    attributes: ClassVar[tuple[str, ...]] = ("group",)

    def __init__(self, *, attribute: str = "group", split: str = "test") -> None:
        self.attribute = attribute
        self.split = split

    def applies(self, outputs: Mapping[str, Any], context: MetricContext) -> bool:
        if self.split not in outputs:
            return False
        outputs[self.split].attribute(self.attribute)  # one-line error when absent
        return True

    def compute(self, outputs: Mapping[str, Any], context: MetricContext) -> dict[str, float]:
        out = outputs[self.split]
        groups = out.attribute(self.attribute)
        correct = (out.preds == out.targets).double()
        accs = [float(correct[groups == g].mean()) for g in torch.unique(groups)]
        return {f"{self.split}/worst_group_acc": min(accs)}


def default_metrics(
    *, mia: bool = True, over_unlearning_tolerance: float = OVER_UNLEARNING_TOLERANCE
) -> list[Metric]:
    """The standard metric list: accuracies, both MIAs, JS to θ_r, Avg. Gap / ToW / flag."""
    metrics: list[Metric] = [Accuracy()]
    if mia:
        metrics += [MIAEfficacy(), MIAEntropyLR()]
    return [*metrics, JSToRetrain(), RetrainGap(tolerance=over_unlearning_tolerance)]


class Evaluator:
    """Collect each split once and compute a list of metrics.

    Args:
        metrics: the :class:`~unlearnkit.evaluation.metric.Metric` objects, computed in order
            (default :func:`default_metrics`).
        mia: with the default list, include both membership-inference attacks.
        over_unlearning_tolerance: with the default list, the tolerance of the over-unlearning
            flag (fraction; see :class:`RetrainGap`).
    """

    def __init__(
        self,
        *,
        metrics: Sequence[Metric] | None = None,
        mia: bool = True,
        over_unlearning_tolerance: float = OVER_UNLEARNING_TOLERANCE,
    ) -> None:
        self.metrics = metrics
        self.mia = mia
        self.over_unlearning_tolerance = over_unlearning_tolerance

    def metric_list(self) -> list[Metric]:
        """The metrics this evaluator computes, in order."""
        if self.metrics is not None:
            return list(self.metrics)
        return default_metrics(
            mia=self.mia, over_unlearning_tolerance=self.over_unlearning_tolerance
        )

    def collect(self, model: nn.Module, loaders: Mapping[str, DataLoader]) -> dict[str, Outputs]:
        """Run ``model`` once over each split: ``{"forget": Outputs, "retain": ..., "test": ...}``."""
        return {split: collect(model, loader) for split, loader in loaders.items()}

    def collect_from(self, model: nn.Module, datamodule: Any) -> dict[str, Outputs]:
        """:meth:`collect` over an ``UnlearningDataModule``'s evaluation loaders (its current
        forget request: forget, retain, test and, for class forgetting, test_forget)."""
        return self.collect(model, datamodule.eval_dataloaders())

    def metrics_from_outputs(
        self,
        outputs: Mapping[str, Outputs],
        reference: Mapping[str, Outputs] | None = None,
        *,
        reference_metrics: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Metrics from collected outputs.

        Args:
            outputs: per-split outputs of the model under evaluation.
            reference: per-split outputs of the retrained model (for JS divergence).
            reference_metrics: the retrained model's metrics (for Avg. Gap, ToW, over-unlearning).

        Returns:
            Flat ``{"split/metric": value}`` dict (see module docstring).

        Raises:
            ValueError: a metric lacks a split or attribute it requires.
        """
        context = MetricContext(reference=reference, reference_metrics=reference_metrics)
        for metric in self.metric_list():
            if metric.applies(outputs, context):
                context.metrics.update(metric.compute(outputs, context))
        return context.metrics

    def evaluate(
        self,
        model: nn.Module,
        loaders: Mapping[str, DataLoader],
        *,
        reference: Mapping[str, Outputs] | None = None,
        reference_metrics: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """:meth:`collect` then :meth:`metrics_from_outputs`."""
        return self.metrics_from_outputs(
            self.collect(model, loaders), reference=reference, reference_metrics=reference_metrics
        )
