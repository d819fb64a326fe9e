"""ForgetSpec.label: readable request names (report row keys), slug-safe file names."""

from __future__ import annotations

import pytest
import torch

from unlearnkit.data import ForgetSelector, ForgetSpec
from unlearnkit.evaluation.report import file_slug


class FirstN(ForgetSelector):
    def select(self, model, data, *, size):
        return torch.arange(size)


@pytest.mark.parametrize(
    ("spec", "label", "slug"),
    [
        (ForgetSpec(kind="class", classes=[0]), "class 0", "class_0"),
        (ForgetSpec(kind="class", classes=[0, 3]), "classes 0, 3", "classes_0_3"),
        (ForgetSpec(kind="subclass", classes=[7]), "subclass 7", "subclass_7"),
        (ForgetSpec(kind="subclass", classes=[7, 9]), "subclasses 7, 9", "subclasses_7_9"),
        (ForgetSpec(kind="random", fraction=0.1), "random 10 % (seed 0)", "random_10_pct_seed_0"),
        (ForgetSpec(kind="random", count=83, seed=1), "random 83 (seed 1)", "random_83_seed_1"),
        (ForgetSpec(kind="user", fraction=0.05), "user 5 % (seed 0)", "user_5_pct_seed_0"),
        (ForgetSpec(kind="interaction", count=20, seed=2), "interaction 20 (seed 2)", None),
        (ForgetSpec(kind="item", ids=[1, 2, 3]), "item [1, 2, 3]", "item_1_2_3"),
        (ForgetSpec(kind="user", ids=list(range(12))), "user [0, 1, 2, … (12 ids)]", None),
        (
            ForgetSpec(kind="indices", indices_file="runs/x/forget.json"),
            "indices forget.json",
            "indices_forget.json",
        ),
        (
            ForgetSpec(kind="worst_case", fraction=0.1, selector=FirstN()),
            "worst_case 10 %",
            "worst_case_10_pct",
        ),
        (ForgetSpec(kind="class", classes=[1], name="my request"), "my request", "my_request"),
    ],
)
def test_labels_are_readable_and_slugs_file_safe(spec, label, slug) -> None:
    assert spec.label == label
    if slug is not None:
        assert file_slug(spec.label) == slug


def test_file_slug_keeps_percent_and_count_apart() -> None:
    percent = ForgetSpec(kind="random", fraction=0.1).label
    count = ForgetSpec(kind="random", count=10).label
    assert file_slug(percent) != file_slug(count)
    assert file_slug("../..") == "request"  # never a path outside the run directory
    assert file_slug("a/b") == "a_b"
