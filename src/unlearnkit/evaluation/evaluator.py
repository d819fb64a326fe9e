"""`Evaluator`: the shared classification metrics of one unlearned model, as a flat dict.

Keys (fractions in [0, 1] unless stated):
    ``forget/acc``, ``forget/ua`` (= 1 − forget/acc), ``retain/acc``, ``test/acc``,
    ``test_forget/acc`` (class forgetting: test samples of the forgotten classes),
    ``mia/efficacy`` (SVC on true-class confidence, OPTML convention), ``mia/entropy_lr`` (the SSD
    paper's entropy + logistic-regression attack: share of D_f predicted member),
    and with a retrained reference: ``forget/js_to_retrain`` (nats), ``gap/avg``, ``tow``,
    ``flag/over_unlearning`` (1.0 when forget accuracy is far below the retrained model's).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from torch import nn
from torch.utils.data import DataLoader

from unlearnkit.evaluation.collect import Outputs, collect
from unlearnkit.evaluation.metrics import (
    accuracy,
    avg_gap,
    js_divergence,
    over_unlearning,
    tug_of_war,
)
from unlearnkit.evaluation.mia import mia_efficacy, mia_entropy_lr


class Evaluator:
    """Collect each split once and compute the shared metrics.

    Args:
        mia: compute both membership-inference attacks (needs forget, retain and test splits).
        over_unlearning_tolerance: warn when forget accuracy is more than this (absolute, as a
            fraction) below the retrained model's.
    """

    def __init__(self, *, mia: bool = True, over_unlearning_tolerance: float = 0.1) -> None:
        self.mia = mia
        self.over_unlearning_tolerance = over_unlearning_tolerance

    def collect(self, model: nn.Module, loaders: Mapping[str, DataLoader]) -> dict[str, Outputs]:
        """Run ``model`` once over each split: ``{"forget": Outputs, "retain": ..., "test": ...}``."""
        return {split: collect(model, loader) for split, loader in loaders.items()}

    def metrics_from_outputs(
        self,
        outputs: Mapping[str, Outputs],
        *,
        reference: Mapping[str, Outputs] | None = None,
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
            ValueError: a split needed by a metric is missing.
        """
        metrics: dict[str, float] = {}
        for split in ("forget", "retain", "test", "test_forget"):
            if split in outputs:
                metrics[f"{split}/acc"] = accuracy(outputs[split])
        if "forget/acc" in metrics:
            metrics["forget/ua"] = 1.0 - metrics["forget/acc"]
        if self.mia and all(s in outputs for s in ("forget", "retain", "test")):
            metrics["mia/efficacy"] = mia_efficacy(
                outputs["retain"], outputs["test"], outputs["forget"]
            )
            metrics["mia/entropy_lr"] = mia_entropy_lr(
                outputs["retain"], outputs["test"], outputs["forget"]
            )
        if reference is not None and "forget" in reference and "forget" in outputs:
            metrics["forget/js_to_retrain"] = js_divergence(
                outputs["forget"].logits, reference["forget"].logits
            )
        if reference_metrics is not None:
            metrics.update(self._compare(metrics, reference_metrics))
        return metrics

    def _compare(self, metrics: Mapping[str, float], ref: Mapping[str, float]) -> dict[str, float]:
        keys = [k for k in ("forget/ua", "retain/acc", "test/acc", "mia/efficacy") if k in ref]
        out = {"gap/avg": avg_gap(metrics, ref, keys=keys), "tow": tug_of_war(metrics, ref)}
        flagged = over_unlearning(
            metrics["forget/acc"], ref["forget/acc"], tolerance=self.over_unlearning_tolerance
        )
        out["flag/over_unlearning"] = float(flagged)
        if flagged:
            warnings.warn(
                f"over-unlearning: forget accuracy {metrics['forget/acc']:.3f} is more than "
                f"{self.over_unlearning_tolerance:.2f} below the retrained model's "
                f"{ref['forget/acc']:.3f}; a membership attack can spot such samples",
                stacklevel=2,
            )
        return out

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
