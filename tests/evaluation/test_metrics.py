"""Metric functions against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.evaluation.collect import Outputs
from unlearnkit.evaluation.metrics import (
    accuracy,
    avg_gap,
    js_divergence,
    kl_divergence,
    over_unlearning,
    per_class_accuracy,
    speedup,
    tug_of_war,
)

NEG_INF = float("-inf")


def _outputs(preds: list[int], targets: list[int], num_classes: int = 4) -> Outputs:
    logits = torch.zeros(len(preds), num_classes)
    logits[torch.arange(len(preds)), torch.tensor(preds)] = 5.0
    return Outputs(logits=logits, targets=torch.tensor(targets), losses=torch.zeros(len(preds)))


def test_accuracy_and_per_class_on_five_samples() -> None:
    # preds   0 1 1 2 0
    # targets 0 1 2 2 1  -> correct: yes yes no yes no = 3/5
    out = _outputs([0, 1, 1, 2, 0], [0, 1, 2, 2, 1])
    assert accuracy(out) == pytest.approx(0.6, abs=1e-12)
    per_class = per_class_accuracy(out, num_classes=4)
    # class 0: 1/1; class 1: samples 1 (right) and 4 (wrong) = 1/2; class 2: samples 2 (wrong)
    # and 3 (right) = 1/2; class 3: no sample -> NaN
    assert per_class[:3].tolist() == [1.0, 0.5, 0.5]
    assert math.isnan(per_class[3].item())


def test_accuracy_errors() -> None:
    empty = Outputs(logits=torch.zeros(0, 3), targets=torch.zeros(0), losses=torch.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        accuracy(empty)
    with pytest.raises(ValueError, match="num_classes"):
        per_class_accuracy(_outputs([0, 1], [0, 3]), num_classes=3)


def test_js_of_identical_distributions_is_zero() -> None:
    logits = torch.randn(16, 7, generator=torch.Generator().manual_seed(0))
    assert js_divergence(logits, logits.clone()) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(logits, logits.clone()) == pytest.approx(0.0, abs=1e-12)


def test_js_of_disjoint_point_masses_is_ln2() -> None:
    p = torch.tensor([[0.0, NEG_INF]])  # softmax (1, 0)
    q = torch.tensor([[NEG_INF, 0.0]])  # softmax (0, 1)
    assert js_divergence(p, q) == pytest.approx(math.log(2.0), abs=1e-12)


def test_js_by_hand() -> None:
    # p = (1/2, 1/2), q = (1, 0), m = (3/4, 1/4)
    # KL(p||m) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3);  KL(q||m) = ln(4/3)
    # JS = (1/2 ln(4/3) + ln(4/3)) / 2 = 3/4 ln(4/3)
    p = torch.tensor([[0.0, 0.0]])
    q = torch.tensor([[0.0, NEG_INF]])
    expected = 0.75 * math.log(4.0 / 3.0)
    assert js_divergence(p, q) == pytest.approx(expected, abs=1e-12)
    assert js_divergence(q, p) == pytest.approx(expected, abs=1e-12)  # symmetric


def test_kl_by_hand_and_mean_over_samples() -> None:
    # p = (1/2, 1/2), q = (1/4, 3/4): KL(p||q) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3)
    # KL(q||p) = 1/4 ln(1/2) + 3/4 ln(3/2)
    # second row identical in both -> 0; the mean halves the first row's value
    p = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    q = torch.tensor([[0.0, math.log(3.0)], [1.0, 2.0]])
    assert kl_divergence(p, q) == pytest.approx(0.25 * math.log(4.0 / 3.0), abs=1e-7)
    expected_qp = 0.5 * (0.25 * math.log(0.5) + 0.75 * math.log(1.5))
    assert kl_divergence(q, p) == pytest.approx(expected_qp, abs=1e-7)


def test_divergences_accept_outputs_and_check_shapes() -> None:
    a = Outputs(logits=torch.tensor([[0.0, 0.0]]), targets=torch.tensor([0]), losses=torch.zeros(1))
    b = Outputs(
        logits=torch.tensor([[0.0, NEG_INF]]), targets=torch.tensor([0]), losses=torch.zeros(1)
    )
    assert js_divergence(a, b) == pytest.approx(0.75 * math.log(4.0 / 3.0), abs=1e-12)
    with pytest.raises(ValueError, match="differ"):
        js_divergence(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="empty"):
        kl_divergence(torch.zeros(0, 3), torch.zeros(0, 3))


UNLEARNED = {"forget/ua": 0.10, "retain/acc": 0.95, "test/acc": 0.90, "mia/efficacy": 0.20}
RETRAINED = {"forget/ua": 0.05, "retain/acc": 1.00, "test/acc": 0.94, "mia/efficacy": 0.30}


def test_avg_gap_by_hand() -> None:
    # |0.10-0.05| + |0.95-1.00| + |0.90-0.94| + |0.20-0.30| = 0.05+0.05+0.04+0.10 = 0.24; /4
    assert avg_gap(UNLEARNED, RETRAINED) == pytest.approx(0.06, abs=1e-12)
    # forget/acc instead of forget/ua gives the same gap (UA = 1 - acc)
    u = {**{k: v for k, v in UNLEARNED.items() if k != "forget/ua"}, "forget/acc": 0.90}
    r = {**{k: v for k, v in RETRAINED.items() if k != "forget/ua"}, "forget/acc": 0.95}
    assert avg_gap(u, r) == pytest.approx(0.06, abs=1e-12)
    assert avg_gap(UNLEARNED, RETRAINED, keys=("test/acc",)) == pytest.approx(0.04, abs=1e-12)
    with pytest.raises(ValueError, match="mia/efficacy"):
        avg_gap({"forget/ua": 0.1, "retain/acc": 1, "test/acc": 1}, RETRAINED)


def test_tug_of_war_by_hand() -> None:
    u = {"forget/acc": 0.90, "retain/acc": 0.95, "test/acc": 0.90}
    r = {"forget/acc": 0.80, "retain/acc": 0.99, "test/acc": 0.92}
    # (1 - 0.10) * (1 - 0.04) * (1 - 0.02) = 0.9 * 0.96 * 0.98
    assert tug_of_war(u, r) == pytest.approx(0.84672, abs=1e-12)
    assert tug_of_war(r, r) == 1.0
    with pytest.raises(ValueError, match="percent"):
        tug_of_war({"forget/acc": 90.0, "retain/acc": 95.0, "test/acc": 90.0}, r)


def test_speedup_and_over_unlearning() -> None:
    assert speedup(100.0, 4.0) == 25.0
    with pytest.raises(ValueError, match="unlearn_seconds"):
        speedup(100.0, 0.0)
    assert over_unlearning(0.50, 0.70)
    assert not over_unlearning(0.65, 0.70)
    assert not over_unlearning(0.90, 0.70)  # forgetting less is not over-unlearning
    assert not over_unlearning(0.5, 0.75, tolerance=0.25)  # exactly at the tolerance
    assert over_unlearning(0.4375, 0.75, tolerance=0.25)
    with pytest.raises(ValueError, match="fraction"):
        over_unlearning(50.0, 70.0)


def test_over_unlearning_flags_a_collapsed_model_on_class_forgetting() -> None:
    from unlearnkit.evaluation import OVER_UNLEARNING_TOLERANCE, over_unlearning_reasons

    # GradientAscent at 10x its lr on digits class 0 (the case): forget acc 0 like the
    # retrained model's, but retain and test accuracy collapsed to 0.11
    retrain = {"forget/acc": 0.0, "retain/acc": 1.0, "test/acc": 0.99, "mia/efficacy": 1.0}
    collapsed = {"forget/acc": 0.0, "retain/acc": 0.11, "test/acc": 0.11, "mia/efficacy": 1.0}
    assert over_unlearning_reasons(collapsed, retrain) == [
        "retain/acc 0.110 vs retrain's 1.000",
        "test/acc 0.110 vs retrain's 0.990",
    ]
    assert OVER_UNLEARNING_TOLERANCE == 0.1
    # within the tolerance (0.895 >= 0.99 - 0.1) is not flagged
    near = {**retrain, "test/acc": 0.895}
    assert over_unlearning_reasons(near, retrain) == []
    # MIA-efficacy far *above* retrain's: D_f looks more "unseen" than if never trained on
    mia = {"forget/acc": 0.9, "retain/acc": 1.0, "test/acc": 0.97, "mia/efficacy": 0.26}
    ref = {"forget/acc": 0.99, "retain/acc": 1.0, "test/acc": 0.99, "mia/efficacy": 0.03}
    assert over_unlearning_reasons(mia, ref) == ["mia/efficacy 0.260 vs retrain's 0.030"]
    assert over_unlearning_reasons({}, ref) == []  # nothing to compare
    with pytest.raises(ValueError, match="tolerance"):
        over_unlearning_reasons(mia, ref, tolerance=-1)


def test_evaluator_flag_and_gap_from_metric_objects() -> None:
    from unlearnkit.evaluation import Evaluator, Outputs

    def outputs(correct: int, n: int) -> Outputs:
        logits = torch.zeros(n, 2)
        logits[:correct, 0] = 1.0  # predicts class 0
        logits[correct:, 1] = 1.0
        targets = torch.zeros(n, dtype=torch.long)
        return Outputs(logits=logits, targets=targets, losses=torch.zeros(n))

    evaluator = Evaluator(mia=False)
    ref_out = {"forget": outputs(0, 4), "retain": outputs(10, 10), "test": outputs(9, 10)}
    ref = evaluator.metrics_from_outputs(ref_out)
    bad = {"forget": outputs(0, 4), "retain": outputs(1, 10), "test": outputs(1, 10)}
    with pytest.warns(UserWarning, match="over-unlearning: retain/acc 0.100"):
        got = evaluator.metrics_from_outputs(bad, reference=ref_out, reference_metrics=ref)
    assert got["flag/over_unlearning"] == 1.0
    # Avg. Gap by hand over UA, RA, TA (no MIA): (|1-1| + |0.1-1| + |0.1-0.9|) / 3
    assert got["gap/avg"] == pytest.approx((0.0 + 0.9 + 0.8) / 3, abs=1e-12)
