"""Shared evaluation: collect outputs once, pure metric functions, the Evaluator, reports."""

from unlearnkit.evaluation.collect import Outputs, collect
from unlearnkit.evaluation.evaluator import (
    Accuracy,
    Evaluator,
    JSToRetrain,
    MIAEfficacy,
    MIAEntropyLR,
    OverUnlearningWarning,
    RetrainGap,
    WorstGroupAccuracy,
    default_metrics,
)
from unlearnkit.evaluation.metric import EvaluatorProtocol, Metric, MetricContext
from unlearnkit.evaluation.metrics import (
    AVG_GAP_KEYS,
    OVER_UNLEARNING_TOLERANCE,
    accuracy,
    avg_gap,
    js_divergence,
    kl_divergence,
    over_unlearning,
    over_unlearning_reasons,
    per_class_accuracy,
    speedup,
    tug_of_war,
)
from unlearnkit.evaluation.mia import mia_efficacy, mia_entropy_lr, mia_scores, prediction_entropy
from unlearnkit.evaluation.report import format_markdown_table, new_run_dir, write_report

__all__ = [
    "AVG_GAP_KEYS",
    "OVER_UNLEARNING_TOLERANCE",
    "Accuracy",
    "Evaluator",
    "EvaluatorProtocol",
    "JSToRetrain",
    "MIAEfficacy",
    "MIAEntropyLR",
    "Metric",
    "MetricContext",
    "OverUnlearningWarning",
    "RetrainGap",
    "WorstGroupAccuracy",
    "default_metrics",
    "Outputs",
    "accuracy",
    "avg_gap",
    "collect",
    "format_markdown_table",
    "js_divergence",
    "kl_divergence",
    "mia_efficacy",
    "mia_entropy_lr",
    "mia_scores",
    "new_run_dir",
    "over_unlearning",
    "over_unlearning_reasons",
    "per_class_accuracy",
    "prediction_entropy",
    "speedup",
    "tug_of_war",
    "write_report",
]
