"""Membership-inference attacks (MIA) used to score unlearning, each under its own name.

Two attacks are in common use and give different numbers, so they are kept apart:

* :func:`mia_efficacy` - the SVC confidence attack of the OPTML-Group papers ("MIA-efficacy" in
  Jia et al., NeurIPS 2023, arXiv:2304.04934, and Fan et al. "SalUn", ICLR 2024,
  arXiv:2310.12508). Higher = the forget set looks less like training data.
* :func:`mia_entropy_lr` - the logistic-regression entropy attack of Chundawat et al., "Can Bad
  Teaching Induce Forgetting?", AAAI 2023 (arXiv:2205.08096), as used by Foster et al., "Fast
  Machine Unlearning Without Retraining Through Selective Synaptic Dampening" (SSD), AAAI 2024
  (arXiv:2308.07707). Lower = the forget set looks less like training data.

Both are deterministic functions of collected :class:`~.collect.Outputs`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from unlearnkit.evaluation.collect import Outputs

__all__ = [
    "SSD_LR_C",
    "mia_efficacy",
    "mia_entropy_lr",
    "mia_scores",
    "prediction_entropy",
]

#: Inverse L2 strength of the binary logistic regression that reproduces the SSD code's attack.
#: That code fits ``LogisticRegression(class_weight="balanced", solver="lbfgs",
#: multi_class="multinomial")`` with the default ``C=1``; on two classes scikit-learn then fitted a
#: two-row softmax "even when the data is binary" (its documentation until ``multi_class`` was
#: removed). The optimum has rows ``-w/2`` and ``+w/2`` (the penalty is smallest when they are
#: opposite, and the symmetric start keeps the unpenalized intercepts opposite too), so the penalty
#: ``(|w/2|^2 + |w/2|^2) / 2 = |w|^2 / 4`` is half the binary one: the same decision rule as a binary
#: fit with ``C = 2``. ``tests/evaluation/test_mia.py`` checks this against an explicit two-row
#: softmax fit.
SSD_LR_C: float = 2.0


def _check_splits(**splits: Outputs) -> None:
    for name, outputs in splits.items():
        if not isinstance(outputs, Outputs):
            raise TypeError(
                f"{name} must be Outputs (from unlearnkit.evaluation.collect), "
                f"got {type(outputs).__name__}"
            )
        if len(outputs) == 0:
            raise ValueError(
                f"the {name} split is empty; membership inference needs samples in retain, "
                "test and forget"
            )


def _column(values: torch.Tensor) -> np.ndarray:
    """``(N,)`` tensor -> ``(N, 1)`` float64 array (one scalar attack feature per sample)."""
    return values.detach().cpu().double().numpy().reshape(-1, 1)


def prediction_entropy(outputs: Outputs) -> torch.Tensor:
    """Shannon entropy of each softmax output, ``-sum_c p_c ln p_c`` with ``0 ln 0 = 0``.

    Args:
        outputs: collected outputs of one split.

    Returns:
        ``(N,)`` float32 entropies in nats, in ``[0, ln C]``.
    """
    return torch.special.entr(outputs.probs).sum(dim=-1)


def _merge_duplicates(
    features: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge identical ``(feature, label)`` rows into one row weighted by its count.

    The same fit as on the raw rows: in the C-SVM primal ``|w|^2 / 2 + C sum_i s_i xi_i``, ``k``
    identical rows have the same slack ``xi`` at every ``(w, b)``, so they add ``k C xi``, which is
    one row with weight ``s = k`` (scikit-learn's ``sample_weight`` rescales ``C`` per row).
    Confidences of well-fitted training samples saturate, so this removes many rows: about 10%
    fewer on Fashion-MNIST (16,104 of 18,000), and the fit is super-linear in the rows.

    Shapes: ``(N, 1)`` float64, ``(N,)`` float64 → ``(M, 1)``, ``(M,)``, ``(M,)`` with ``M <= N``.
    """
    rows, counts = np.unique(np.column_stack([features[:, 0], labels]), axis=0, return_counts=True)
    return rows[:, :1], rows[:, 1], counts.astype(np.float64)


def mia_efficacy(retain: Outputs, test: Outputs, forget: Outputs) -> float:
    """MIA-efficacy: share of the forget set that a confidence-based SVC attack calls non-member.

    Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023 (arXiv:2304.04934),
    and Fan et al., "SalUn", ICLR 2024 (arXiv:2310.12508), report this as "MIA-Efficacy". It
    follows their code (github.com/OPTML-Group/Unlearn-Sparse and .../Unlearn-Saliency,
    ``evaluation/SVC_MIA.py`` and ``main_forget.py``, the ``"confidence"`` entry of
    ``SVC_MIA_forget_efficacy``):

    1. shadow members: the first ``len(test)`` samples of the retain set in loader order (their
       ``Subset(retain, range(len(test)))``; all of the retain set if it is smaller);
       shadow non-members: the whole test set;
    2. feature: the softmax probability of the true class;
    3. attacker: ``sklearn.svm.SVC(C=3, gamma="auto", kernel="rbf")`` fitted on members = 1,
       non-members = 0;
    4. efficacy: ``1 - mean(predict(forget))``, the share of the forget set predicted NON-member.

    Collect all three splits with evaluation transforms (no augmentation), as the reference does
    (``dataset_convert_to_test``), and D_r from an unshuffled loader so that "the first
    ``len(test)``" is a fixed set.

    Args:
        retain: outputs of the evaluated model on D_r, in a fixed (unshuffled) order.
        test: outputs on D_test.
        forget: outputs on D_f.

    Returns:
        MIA-efficacy as a fraction in ``[0, 1]``; higher means the forget set looks unseen.

    Raises:
        ValueError: a split is empty.
        TypeError: an argument is not :class:`Outputs`.
    """
    _check_splits(retain=retain, test=test, forget=forget)
    members = retain.head(len(test)).true_class_confidence
    non_members = test.true_class_confidence
    features = np.concatenate([_column(members), _column(non_members)])
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    features, labels, weights = _merge_duplicates(features, labels)
    attacker = SVC(C=3, gamma="auto", kernel="rbf").fit(features, labels, sample_weight=weights)
    predicted_member = attacker.predict(_column(forget.true_class_confidence))
    return float(1.0 - predicted_member.mean())


def mia_entropy_lr(retain: Outputs, test: Outputs, forget: Outputs) -> float:
    """Share of the forget set that an entropy-based logistic-regression attack calls member.

    The attack of Chundawat et al., "Can Bad Teaching Induce Forgetting? Unlearning in Deep
    Networks Using an Incompetent Teacher", AAAI 2023 (arXiv:2205.08096), in the form used by the
    SSD paper's code (github.com/if-loops/selective-synaptic-dampening, ``metrics.py``,
    ``get_membership_attack_prob``):

    1. feature: entropy of the softmax output (:func:`prediction_entropy`);
    2. attacker: logistic regression with ``class_weight="balanced"`` and lbfgs, fitted on the
       whole retain set (members = 1) against the test set (non-members = 0);
    3. result: ``mean(predict(forget))``, the share of the forget set predicted MEMBER.

    The SSD code asked for ``multi_class="multinomial"``, which current scikit-learn no longer
    accepts; the equivalent binary fit uses ``C = SSD_LR_C = 2`` (see :data:`SSD_LR_C`).

    Args:
        retain: outputs of the evaluated model on D_r.
        test: outputs on D_test.
        forget: outputs on D_f.

    Returns:
        Attack success on the forget set, a fraction in ``[0, 1]``; lower = better forgetting
        (the retrained model's value is the target, not 0).

    Raises:
        ValueError: a split is empty.
        TypeError: an argument is not :class:`Outputs`.
    """
    _check_splits(retain=retain, test=test, forget=forget)
    members = prediction_entropy(retain)
    non_members = prediction_entropy(test)
    features = np.concatenate([_column(members), _column(non_members)])
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
    attacker = LogisticRegression(C=SSD_LR_C, class_weight="balanced", solver="lbfgs")
    attacker.fit(features, labels)
    return float(attacker.predict(_column(prediction_entropy(forget))).mean())


def mia_scores(
    retain: Outputs,
    test: Outputs,
    forget: Outputs,
    *,
    feature: Literal["confidence", "entropy"] = "confidence",
) -> dict[str, np.ndarray]:
    """Per-sample attack features of each split, for histograms (see ``plots.plot_mia_histogram``).

    Args:
        retain: outputs on D_r (all samples are returned, not only the SVC's shadow members).
        test: outputs on D_test.
        forget: outputs on D_f.
        feature: ``"confidence"`` (true-class softmax probability, the feature of
            :func:`mia_efficacy`) or ``"entropy"`` (prediction entropy in nats, the feature of
            :func:`mia_entropy_lr`).

    Returns:
        ``{"retain": (N_r,), "test": (N_t,), "forget": (N_f,)}`` float64 arrays.

    Raises:
        ValueError: a split is empty or ``feature`` is unknown.
        TypeError: an argument is not :class:`Outputs`.
    """
    _check_splits(retain=retain, test=test, forget=forget)
    scorers = {
        "confidence": lambda outputs: outputs.true_class_confidence,
        "entropy": prediction_entropy,
    }
    if feature not in scorers:
        raise ValueError(f"feature must be 'confidence' or 'entropy', got {feature!r}")
    score = scorers[feature]
    return {
        name: _column(score(outputs)).ravel()
        for name, outputs in (("retain", retain), ("test", test), ("forget", forget))
    }
