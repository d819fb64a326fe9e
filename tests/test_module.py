"""UnlearningModule under a plain Lightning Trainer: fit runs the method, test the Evaluator."""

from __future__ import annotations

import lightning as L
import torch

from unlearnkit.data import ForgetSpec
from unlearnkit.datasets import DigitsDataModule
from unlearnkit.evaluation import Evaluator
from unlearnkit.module import UnlearningModule
from unlearnkit.vision import GradientAscent, SmallCNN


def trainer(max_epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_fit_then_test_reports_metrics_that_match_the_evaluator():
    torch.manual_seed(0)
    dm = DigitsDataModule(forget=ForgetSpec(kind="class", classes=[3]))
    model = SmallCNN(in_channels=1, num_classes=10)
    module = UnlearningModule(model, GradientAscent(epochs=1, lr=0.01))
    before = [p.detach().clone() for p in model.parameters()]
    trainer(1).fit(module, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    logged = trainer(1).test(module, datamodule=dm, verbose=False)[0]
    expected = Evaluator().evaluate(model, dm.eval_dataloaders())
    for key in ("forget/acc", "retain/acc", "test/acc", "test_forget/acc", "mia/efficacy"):
        assert abs(logged[key] - expected[key]) < 1e-6, key
