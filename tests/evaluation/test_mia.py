"""Membership-inference attacks on hand-built confidences and entropies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from unlearnkit.evaluation.collect import Outputs
from unlearnkit.evaluation.mia import (
    SSD_LR_C,
    _merge_duplicates,
    mia_efficacy,
    mia_entropy_lr,
    mia_scores,
    prediction_entropy,
)


def _with_confidence(conf: list[float]) -> Outputs:
    """Two-class outputs whose true class (1) has softmax probability exactly ``conf``."""
    c = torch.tensor(conf, dtype=torch.float64)
    logits = torch.stack([torch.log1p(-c), torch.log(c)], dim=1).float()
    return Outputs(logits=logits, targets=torch.ones(len(conf), dtype=torch.long), losses=-c.log())


def _binary_entropy(c: list[float]) -> np.ndarray:
    p = np.asarray(c, dtype=float)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


# Retain: 4 confident samples followed by 4 unconfident ones. Only the first len(test) = 4 are
# shadow members, so the tail must not matter (it would if all of D_r were used).
RETAIN_CONF = [0.99, 0.97, 0.95, 0.98, 0.30, 0.35, 0.40, 0.45]
TEST_CONF = [0.30, 0.50, 0.40, 0.60]
FORGET_CONF = [0.99, 0.96, 0.45, 0.35, 0.93]


def test_mia_efficacy_matches_step_by_step_svc() -> None:
    retain, test, forget = map(_with_confidence, (RETAIN_CONF, TEST_CONF, FORGET_CONF))
    # step by step: SVC(C=3, gamma="auto", rbf) on members = first 4 retain, non-members = test
    x = np.array(RETAIN_CONF[:4] + TEST_CONF).reshape(-1, 1)
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    svc = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    predicted = svc.predict(np.array(FORGET_CONF).reshape(-1, 1))
    expected = 1.0 - predicted.mean()
    assert predicted.tolist() == [1, 1, 0, 0, 1]  # the two low-confidence samples look unseen
    assert mia_efficacy(retain, test, forget) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.4)
    # guard: had all of D_r been used as members, the answer would differ
    x_all = np.array(RETAIN_CONF + TEST_CONF).reshape(-1, 1)
    y_all = np.array([1] * 8 + [0] * 4)
    svc_all = SVC(C=3, gamma="auto", kernel="rbf").fit(x_all, y_all)
    assert 1.0 - svc_all.predict(np.array(FORGET_CONF).reshape(-1, 1)).mean() != expected


def test_merging_tied_rows_gives_the_same_svc_as_the_raw_rows() -> None:
    # saturated confidences repeat: 3 distinct member values, 4 distinct non-member values,
    # 1.0 and 0.5 in both classes
    rng = np.random.default_rng(0)
    members = rng.choice([1.0, 0.999, 0.5], size=300, p=[0.6, 0.3, 0.1])
    non_members = rng.choice([1.0, 0.9, 0.6, 0.5], size=300)
    x = np.concatenate([members, non_members]).reshape(-1, 1)
    y = np.concatenate([np.ones(300), np.zeros(300)])
    merged_x, merged_y, weights = _merge_duplicates(x, y)
    assert len(merged_x) == 7 and weights.sum() == 600
    raw = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    merged = SVC(C=3, gamma="auto", kernel="rbf").fit(merged_x, merged_y, sample_weight=weights)
    grid = np.linspace(0.0, 1.0, 201).reshape(-1, 1)
    np.testing.assert_allclose(
        merged.decision_function(grid), raw.decision_function(grid), rtol=1e-3, atol=1e-3
    )
    assert (merged.predict(grid) == raw.predict(grid)).all()


def test_mia_efficacy_obvious_cases() -> None:
    retain = _with_confidence([0.999, 0.995, 0.99, 0.998, 0.997, 0.996])
    test = _with_confidence([0.2, 0.3, 0.25, 0.35])
    # forget looks exactly like unseen test data -> every sample called non-member
    assert mia_efficacy(retain, test, _with_confidence([0.2, 0.3, 0.25, 0.35])) == 1.0
    # forget looks exactly like training data -> none called non-member
    assert mia_efficacy(retain, test, _with_confidence([0.999, 0.995, 0.99])) == 0.0


def test_mia_efficacy_is_deterministic_and_checks_input() -> None:
    gen = torch.Generator().manual_seed(0)
    make = lambda n: _with_confidence(torch.rand(n, generator=gen).clamp(0.01, 0.99).tolist())  # noqa: E731
    retain, test, forget = make(60), make(40), make(20)
    assert mia_efficacy(retain, test, forget) == mia_efficacy(retain, test, forget)
    with pytest.raises(ValueError, match="forget split is empty"):
        mia_efficacy(retain, test, retain.head(0))
    with pytest.raises(TypeError, match="Outputs"):
        mia_efficacy(retain, test, forget.logits)  # type: ignore[arg-type]


def _two_row_softmax_threshold(x: np.ndarray, y: np.ndarray, c: float) -> float:
    """Slow reference for the SSD code's fit: a two-row softmax regression on one feature, with
    balanced class weights and L2 penalty 1/2 ||W||^2 on both rows (the documented objective of
    scikit-learn's ``multi_class="multinomial"``). Returns the feature value where the two rows'
    scores are equal (the decision threshold)."""
    weights = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (1 - y).sum()))

    def objective(theta: np.ndarray) -> float:
        w, b = theta[:2], theta[2:]
        scores = np.outer(x, w) + b
        log_lik = scores[np.arange(len(y)), y] - logsumexp(scores, axis=1)
        return c * np.sum(weights * -log_lik) + 0.5 * np.sum(w**2)

    theta = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    w, b = theta[:2], theta[2:]
    return float(-(b[1] - b[0]) / (w[1] - w[0]))


def test_binary_c2_reproduces_the_multinomial_fit_of_the_ssd_code() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.gamma(1.0, 0.2, 300), rng.gamma(2.0, 0.4, 100)])
    y = np.concatenate([np.ones(300, dtype=int), np.zeros(100, dtype=int)])
    reference = _two_row_softmax_threshold(x, y, c=1.0)

    def threshold(c: float) -> float:
        lr = LogisticRegression(C=c, class_weight="balanced", solver="lbfgs", tol=1e-10)
        lr.fit(x.reshape(-1, 1), y)
        return float(-lr.intercept_[0] / lr.coef_[0, 0])

    assert threshold(SSD_LR_C) == pytest.approx(reference, abs=1e-4)
    assert abs(threshold(1.0) - reference) > 1e-3  # the naive binary C=1 fit is not it


RETAIN_P = [0.99, 0.995, 0.98, 0.999, 0.97, 0.985]  # confident -> low entropy (members)
TEST_P = [0.6, 0.7, 0.55, 0.8]  # unsure -> high entropy (non-members)


def test_mia_entropy_lr_matches_step_by_step_logistic_regression() -> None:
    forget_p = [0.99, 0.65, 0.9, 0.75, 0.995]
    retain, test, forget = map(_with_confidence, (RETAIN_P, TEST_P, forget_p))
    x = np.concatenate([_binary_entropy(RETAIN_P), _binary_entropy(TEST_P)]).reshape(-1, 1)
    y = np.array([1] * len(RETAIN_P) + [0] * len(TEST_P))
    lr = LogisticRegression(C=2.0, class_weight="balanced", solver="lbfgs").fit(x, y)
    predicted = lr.predict(_binary_entropy(forget_p).reshape(-1, 1))
    assert mia_entropy_lr(retain, test, forget) == pytest.approx(predicted.mean(), abs=1e-12)
    assert 0.0 < predicted.mean() < 1.0  # a mixed case, not a trivial one


def test_mia_entropy_lr_obvious_cases() -> None:
    retain, test = _with_confidence(RETAIN_P), _with_confidence(TEST_P)
    assert mia_entropy_lr(retain, test, _with_confidence(TEST_P)) == 0.0  # looks unseen
    assert mia_entropy_lr(retain, test, _with_confidence(RETAIN_P)) == 1.0  # looks trained on
    with pytest.raises(ValueError, match="retain split is empty"):
        mia_entropy_lr(retain.head(0), test, retain)


def test_prediction_entropy_and_scores() -> None:
    uniform = Outputs(logits=torch.zeros(1, 4), targets=torch.tensor([0]), losses=torch.zeros(1))
    assert prediction_entropy(uniform).item() == pytest.approx(math.log(4.0), abs=1e-6)
    one_hot = Outputs(
        logits=torch.tensor([[0.0, float("-inf")]]),
        targets=torch.tensor([0]),
        losses=torch.zeros(1),
    )
    assert prediction_entropy(one_hot).item() == 0.0  # 0 ln 0 = 0, not NaN

    retain, test, forget = map(_with_confidence, (RETAIN_P, TEST_P, [0.9]))
    conf = mia_scores(retain, test, forget)
    assert set(conf) == {"retain", "test", "forget"}
    np.testing.assert_allclose(conf["retain"], RETAIN_P, atol=1e-6)
    entropy = mia_scores(retain, test, forget, feature="entropy")
    np.testing.assert_allclose(entropy["test"], _binary_entropy(TEST_P), atol=1e-6)
    with pytest.raises(ValueError, match="feature"):
        mia_scores(retain, test, forget, feature="loss")  # type: ignore[arg-type]
