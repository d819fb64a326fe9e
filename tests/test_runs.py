"""The experiment loop's own bookkeeping: what a method changed, where the speed-up's retrain
time comes from."""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.evaluation.report import CACHED_RETRAIN_NOTE, plain_warnings
from unlearnkit.runs import changed_fraction


def test_changed_fraction_counts_scalars_by_hand():
    torch.manual_seed(0)
    before = nn.Linear(3, 2)  # 6 weights + 2 biases
    after = nn.Linear(3, 2)
    after.load_state_dict(before.state_dict())
    assert changed_fraction(before, after) == 0.0
    with torch.no_grad():
        after.weight[0, 1] += 1.0
        after.bias[1] -= 1.0
    assert changed_fraction(before, after) == 2 / 8
    # a method that adds parameters (LoRA adapters) is judged on the original's parameters
    after.extra = nn.Parameter(torch.zeros(5))
    assert changed_fraction(before, after) == 2 / 8


def _rows(source: str) -> list[dict]:
    metrics = {"forget/acc": 0.0, "retain/acc": 1.0, "test/acc": 0.9, "time/speedup": 3.0}
    return [
        {"method": "retrain", "metrics": dict(metrics)},
        {"method": "original", "metrics": dict(metrics)},
        {"method": "FineTune", "metrics": dict(metrics), "retrain_time_from": source},
    ]


def test_a_speedup_against_a_cached_retrain_time_says_so():
    assert plain_warnings(_rows("this run")) == []
    assert plain_warnings(_rows("cache (an earlier run)")) == [f"Note: {CACHED_RETRAIN_NOTE}."]
    assert "measured in an earlier run" in CACHED_RETRAIN_NOTE


def test_a_failed_row_shows_in_every_report_file(tmp_path):
    import csv

    from unlearnkit.evaluation.report import write_report

    rows = _rows("this run") + [
        {
            "method": "Boom",
            "forget": "class 0",
            "metrics": {},
            "status": "failed",
            "error": "RuntimeError: boom",
        }
    ]
    for row in rows:
        row.setdefault("forget", "class 0")
    write_report(tmp_path, {}, rows)
    assert plain_warnings(rows) == ["Failed: Boom: RuntimeError: boom"]
    table = list(csv.DictReader((tmp_path / "report.csv").open()))
    assert [(r["method"], r["status"], r["error"]) for r in table][-1] == (
        "Boom",
        "failed",
        "RuntimeError: boom",
    )
    assert table[0]["status"] == "ok"
    for name in ("report.md", "report.html"):
        assert "RuntimeError: boom" in (tmp_path / name).read_text(), name


def test_the_phase_progress_bar_shows_the_loss_not_the_logger_version(monkeypatch):
    from lightning.pytorch.callbacks import RichProgressBar

    from unlearnkit.progress import phase_progress_bar

    bar = phase_progress_bar("class 0: FineTune")
    monkeypatch.setattr(
        RichProgressBar, "get_metrics", lambda self, t, m: {"v_num": "inal", "unlearn/loss": 0.5}
    )
    assert bar.get_metrics(None, None) == {"loss": 0.5}
