"""Shared evaluation: collect outputs once, pure metric functions, the Evaluator, reports."""

from unlearnkit.evaluation.collect import Outputs, collect
from unlearnkit.evaluation.evaluator import Evaluator
from unlearnkit.evaluation.metrics import (
    AVG_GAP_KEYS,
    accuracy,
    avg_gap,
    js_divergence,
    kl_divergence,
    over_unlearning,
    per_class_accuracy,
    speedup,
    tug_of_war,
)
from unlearnkit.evaluation.mia import mia_efficacy, mia_entropy_lr, mia_scores, prediction_entropy
from unlearnkit.evaluation.report import format_markdown_table, new_run_dir, write_report

__all__ = [
    "AVG_GAP_KEYS",
    "Evaluator",
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
    "per_class_accuracy",
    "prediction_entropy",
    "speedup",
    "tug_of_war",
    "write_report",
]
