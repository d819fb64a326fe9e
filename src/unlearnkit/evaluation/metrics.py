"""Pure classification-unlearning metrics on collected :class:`~.collect.Outputs`.

All accuracies and rates are fractions in ``[0, 1]``; divergences are in nats; times in seconds.
Nothing here runs a model: collect the outputs of each split once with
:func:`~unlearnkit.evaluation.collect.collect` and pass them in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics.functional.classification import multiclass_accuracy

from unlearnkit.evaluation.collect import Outputs

__all__ = [
    "AVG_GAP_KEYS",
    "OVER_UNLEARNING_TOLERANCE",
    "accuracy",
    "avg_gap",
    "js_divergence",
    "kl_divergence",
    "over_unlearning",
    "over_unlearning_reasons",
    "per_class_accuracy",
    "speedup",
    "tug_of_war",
]

#: Metrics averaged by :func:`avg_gap` (Jia et al. 2023; Fan et al. 2024).
AVG_GAP_KEYS: tuple[str, ...] = ("forget/ua", "retain/acc", "test/acc", "mia/efficacy")

#: How far (a fraction: 0.1 = ten points) an unlearned model may land past the retrained model
#: on a metric before it is flagged as over-unlearned — the one tolerance every evaluator and
#: report uses (:func:`over_unlearning`, :func:`over_unlearning_reasons`).
OVER_UNLEARNING_TOLERANCE: float = 0.1

#: Metrics where *lower* than the retrained model means damage, and those where *higher* does.
_LOWER_IS_DAMAGE = ("forget/acc", "retain/acc", "test/acc")
_HIGHER_IS_DAMAGE = ("mia/efficacy",)


def _check_nonempty(outputs: Outputs, name: str) -> None:
    if len(outputs) == 0:
        raise ValueError(f"{name} got empty Outputs; collect a non-empty split first")


def _check_targets(outputs: Outputs, num_classes: int) -> None:
    top = int(outputs.targets.max())
    low = int(outputs.targets.min())
    if low < 0 or top >= num_classes:
        raise ValueError(
            f"targets span [{low}, {top}] but num_classes={num_classes}; pass the number of "
            "classes of the model's output (targets must lie in [0, num_classes))"
        )


def accuracy(outputs: Outputs) -> float:
    """Top-1 accuracy: the share of samples whose argmax logit is the target.

    Args:
        outputs: collected outputs of one split.

    Returns:
        Accuracy as a fraction in ``[0, 1]``.

    Shapes:
        ``outputs.logits`` ``(N, C)``, ``outputs.targets`` ``(N,)`` int64.

    Raises:
        ValueError: ``outputs`` is empty or holds targets outside ``[0, C)``.
    """
    _check_nonempty(outputs, "accuracy")
    _check_targets(outputs, outputs.num_classes)
    # An exact count ratio (a Python float), not torchmetrics' float32 mean: 3/5 stays 0.6.
    correct = int((outputs.preds == outputs.targets).sum())
    return correct / len(outputs)


def per_class_accuracy(outputs: Outputs, num_classes: int) -> Tensor:
    """Accuracy of each class (recall per class: correct / samples whose target is that class).

    Args:
        outputs: collected outputs of one split.
        num_classes: number of classes ``C``; targets and predictions must lie in ``[0, C)``.

    Returns:
        ``(C,)`` float32 tensor of fractions in ``[0, 1]``; **NaN for a class with no sample** in
        ``outputs`` (its accuracy is undefined, not 0 - torchmetrics alone would report 0).

    Raises:
        ValueError: ``outputs`` is empty, ``num_classes < 1``, or a target/prediction is outside
            ``[0, num_classes)``.
    """
    _check_nonempty(outputs, "per_class_accuracy")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    _check_targets(outputs, num_classes)
    preds = outputs.preds
    if int(preds.max()) >= num_classes:
        raise ValueError(
            f"the model predicts class {int(preds.max())} but num_classes={num_classes}; pass the "
            "width of the model's logits as num_classes"
        )
    per_class = multiclass_accuracy(
        preds, outputs.targets, num_classes=num_classes, average="none"
    ).float()
    present = torch.bincount(outputs.targets, minlength=num_classes) > 0
    return torch.where(present, per_class, torch.full_like(per_class, math.nan))


def _logits_of(value: Tensor | Outputs, name: str) -> Tensor:
    logits = value.logits if isinstance(value, Outputs) else value
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError(f"{name} must be logits of shape (N, C) or Outputs")
    if logits.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass the logits of a non-empty split")
    return logits


def _log_prob_pair(p_logits: Tensor | Outputs, q_logits: Tensor | Outputs) -> tuple[Tensor, Tensor]:
    p = _logits_of(p_logits, "p_logits")
    q = _logits_of(q_logits, "q_logits")
    if p.shape != q.shape:
        raise ValueError(
            f"p_logits {tuple(p.shape)} and q_logits {tuple(q.shape)} differ; collect both models "
            "on the same split in the same order"
        )
    # float64: the divergences of two close models are tiny differences of O(1) numbers.
    return torch.log_softmax(p.double(), dim=-1), torch.log_softmax(q.double().to(p.device), dim=-1)


def _kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Row-wise KL(p || q) with 0 * log 0 = 0 (classes of zero probability under p add nothing)."""
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=-1)


def kl_divergence(p_logits: Tensor | Outputs, q_logits: Tensor | Outputs) -> float:
    """Mean over samples of KL(softmax(p) || softmax(q)), natural log.

    Args:
        p_logits: logits of the first model (e.g. the unlearned one) or its :class:`Outputs`.
        q_logits: logits of the second model (e.g. the retrained reference) on the same samples.

    Returns:
        Mean KL divergence in nats (``>= 0``; ``inf`` where ``q`` gives zero probability to a class
        that ``p`` does not).

    Shapes:
        both ``(N, C)``.

    Raises:
        ValueError: shapes differ, or an input is empty or not 2-D.
    """
    log_p, log_q = _log_prob_pair(p_logits, q_logits)
    return max(0.0, float(_kl_rows(log_p, log_q).mean()))  # no -1e-19 from float rounding


def js_divergence(p_logits: Tensor | Outputs, q_logits: Tensor | Outputs) -> float:
    """Mean over samples of the Jensen-Shannon divergence between two models' softmax outputs.

    ``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, natural log, so each
    term lies in ``[0, ln 2]``. This is the divergence behind the ZRF score of Chundawat et al.,
    "Can Bad Teaching Induce Forgetting?", AAAI 2023 (arXiv:2205.08096), there
    computed between an unlearned model and an incompetent teacher; here it is also used against the
    retrained model (DESIGN.md section 4, "KL/JS to retrained").

    Args:
        p_logits: logits of the first model or its :class:`Outputs`.
        q_logits: logits of the second model on the same samples in the same order.

    Returns:
        Mean JS divergence in nats, in ``[0, ln 2]``.

    Shapes:
        both ``(N, C)``.

    Raises:
        ValueError: shapes differ, or an input is empty or not 2-D.
    """
    log_p, log_q = _log_prob_pair(p_logits, q_logits)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    rows = 0.5 * _kl_rows(log_p, log_m) + 0.5 * _kl_rows(log_q, log_m)
    return max(0.0, float(rows.mean()))  # float rounding can give -1e-19 for equal inputs


def _lookup(values: Mapping[str, float], key: str, name: str) -> float:
    """``values[key]``; ``forget/ua`` and ``forget/acc`` stand in for each other (UA = 1 - acc)."""
    if key in values:
        return float(values[key])
    if key == "forget/ua" and "forget/acc" in values:
        return 1.0 - float(values["forget/acc"])
    if key == "forget/acc" and "forget/ua" in values:
        return 1.0 - float(values["forget/ua"])
    raise ValueError(
        f"{name} has no '{key}' (has {sorted(values)}); evaluate that metric for both models"
    )


def avg_gap(
    unlearned: Mapping[str, float],
    retrained: Mapping[str, float],
    keys: Sequence[str] = AVG_GAP_KEYS,
) -> float:
    """Average Gap to the retrained model: ``mean_k |unlearned[k] - retrained[k]|``.

    The convention of Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023
    (arXiv:2304.04934), and Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based
    Weight Saliency", ICLR 2024 (arXiv:2310.12508), the "Avg. Gap" column of its classification
    tables: the mean absolute difference over UA, RA, TA and MIA-efficacy. Since ``UA = 1 - forget/acc``, the UA gap equals
    the forget-accuracy gap; a mapping with ``forget/acc`` but no ``forget/ua`` is accepted.

    Args:
        unlearned: metrics of the unlearned model, fractions in ``[0, 1]``.
        retrained: the same metrics of the retrained model.
        keys: metrics to average.

    Returns:
        The average gap as a fraction (0 = indistinguishable from retraining on these metrics).

    Raises:
        ValueError: ``keys`` is empty, or a key is missing from either mapping.
    """
    if len(keys) == 0:
        raise ValueError("avg_gap needs at least one key; pass e.g. AVG_GAP_KEYS")
    gaps = [
        abs(_lookup(unlearned, key, "unlearned") - _lookup(retrained, key, "retrained"))
        for key in keys
    ]
    return sum(gaps) / len(gaps)


def _fraction(values: Mapping[str, float], key: str, name: str) -> float:
    value = _lookup(values, key, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{name}['{key}'] = {value} is not a fraction in [0, 1]; pass accuracies as fractions, "
            "not percent"
        )
    return value


def tug_of_war(unlearned: Mapping[str, float], retrained: Mapping[str, float]) -> float:
    """Tug-of-War (ToW) of the unlearned model against the retrained one.

    From Zhao et al., "What makes unlearning hard and what to do about it", NeurIPS 2024
    (arXiv:2406.01257), the "tug-of-war" (ToW) metric of its experimental setup (equation number
    not checked here)::

        ToW = (1 - |A_u(S) - A_r(S)|) * (1 - |A_u(R) - A_r(R)|) * (1 - |A_u(T) - A_r(T)|)

    with ``A_u``/``A_r`` the accuracies of the unlearned/retrained model on the forget set ``S``,
    the retain set ``R`` and the test set ``T``, as fractions. The authors' code
    (github.com/kairanzhao/RUM, ``surgical_plugins/analysis.py``) computes the same product on
    percentages divided by 100. ToW is 1 for a model that matches retraining exactly and falls
    towards 0 as any of the three accuracies drifts.

    Args:
        unlearned: must hold ``forget/acc`` (or ``forget/ua``), ``retain/acc`` and ``test/acc``.
        retrained: the same keys for the retrained model.

    Returns:
        ToW in ``[0, 1]`` (higher is better).

    Raises:
        ValueError: a key is missing, or an accuracy is outside ``[0, 1]`` (percent passed).
    """
    result = 1.0
    for key in ("forget/acc", "retain/acc", "test/acc"):
        u = _fraction(unlearned, key, "unlearned")
        r = _fraction(retrained, key, "retrained")
        result *= 1.0 - abs(u - r)
    return result


def speedup(retrain_seconds: float, unlearn_seconds: float) -> float:
    """Run-time efficiency (RTE) as a speed-up over retraining: ``retrain_s / unlearn_s``.

    RTE is reported in seconds (or minutes) by Jia et al., "Model Sparsity Can Simplify Machine
    Unlearning", NeurIPS 2023 (arXiv:2304.04934); this is the ratio of the two times.

    Args:
        retrain_seconds: wall-clock seconds to retrain from scratch on the retain set (``>= 0``).
        unlearn_seconds: wall-clock seconds the unlearning method took (``> 0``).

    Returns:
        How many times faster unlearning was than retraining (``> 1`` = faster).

    Raises:
        ValueError: ``unlearn_seconds <= 0`` or ``retrain_seconds < 0`` (or either is NaN).
    """
    if not unlearn_seconds > 0:
        raise ValueError(f"unlearn_seconds must be > 0, got {unlearn_seconds}; time the method")
    if not retrain_seconds >= 0:
        raise ValueError(f"retrain_seconds must be >= 0, got {retrain_seconds}")
    return retrain_seconds / unlearn_seconds


def over_unlearning(
    forget_acc_u: float, forget_acc_r: float, *, tolerance: float = OVER_UNLEARNING_TOLERANCE
) -> bool:
    """Whether the unlearned model forgot *more* than retraining would (``acc_u < acc_r - tol``).

    Driving forget accuracy far below the retrained model's (which still generalizes to most of the
    forget set in random forgetting) is itself a membership signal - the "Streisand effect" noted by
    Chundawat et al., AAAI 2023 (arXiv:2205.08096) and Fan et al., ICLR 2024 (arXiv:2310.12508).
    Used to print a warning beside a report row.

    Args:
        forget_acc_u: forget-set accuracy of the unlearned model, fraction in ``[0, 1]``.
        forget_acc_r: forget-set accuracy of the retrained model, fraction in ``[0, 1]``.
        tolerance: allowed shortfall as a fraction (0.1 = ten percentage points).

    Returns:
        ``True`` when ``forget_acc_u < forget_acc_r - tolerance``.

    Raises:
        ValueError: an accuracy is outside ``[0, 1]`` or ``tolerance < 0``.
    """
    for name, value in (("forget_acc_u", forget_acc_u), ("forget_acc_r", forget_acc_r)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} = {value} is not a fraction in [0, 1]; pass fractions")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return forget_acc_u < forget_acc_r - tolerance


def over_unlearning_reasons(
    unlearned: Mapping[str, float],
    retrained: Mapping[str, float],
    *,
    tolerance: float = OVER_UNLEARNING_TOLERANCE,
) -> list[str]:
    """Why an unlearned model is flagged: every Avg. Gap metric on which it lands far past θ_r.

    A method over-unlearns when it forgets more than retraining would — forget accuracy far below
    θ_r's, MIA-efficacy far above (the "Streisand effect", Chundawat et al., AAAI 2023,
    arXiv:2205.08096) — or when it damages the model: retain or test accuracy far below θ_r's
    (a collapsed model also "forgets" class-forgetting sets perfectly, where θ_r's forget
    accuracy is 0 and the forget accuracy alone can never flag it).

    Args:
        unlearned: metrics of the unlearned model (fractions): any of ``forget/acc``,
            ``retain/acc``, ``test/acc``, ``mia/efficacy``.
        retrained: the same metrics of θ_r.
        tolerance: allowed distance as a fraction (default :data:`OVER_UNLEARNING_TOLERANCE`).

    Returns:
        One line per flagged metric, e.g. ``"retain/acc 0.110 vs retrain's 0.998"``; empty when
        none is flagged. Metrics missing from either mapping, or NaN, are skipped.

    Raises:
        ValueError: ``tolerance < 0``.
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    reasons = []
    for key in (*_LOWER_IS_DAMAGE, *_HIGHER_IS_DAMAGE):
        if key not in unlearned or key not in retrained:
            continue
        mine, ref = float(unlearned[key]), float(retrained[key])
        if not (math.isfinite(mine) and math.isfinite(ref)):
            continue
        worse = mine < ref - tolerance if key in _LOWER_IS_DAMAGE else mine > ref + tolerance
        if worse:
            reasons.append(f"{key} {mine:.3f} vs retrain's {ref:.3f}")
    return reasons
