"""The main job: original → retrained → each method → evaluation → report.

Used by ``unlearnkit run`` and by ``unlearnkit reproduce``; also callable from Python.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn

from unlearnkit.base import LossUnlearner, Unlearner
from unlearnkit.cache import ModelCache, config_hash
from unlearnkit.data import ForgetSpec, UnlearningDataModule
from unlearnkit.evaluation.collect import Outputs
from unlearnkit.evaluation.evaluator import Evaluator
from unlearnkit.evaluation.metrics import per_class_accuracy, speedup
from unlearnkit.evaluation.mia import mia_scores
from unlearnkit.module import default_trainer
from unlearnkit.vision.methods import FineTune, Retrain

log = logging.getLogger(__name__)


@dataclass
class TrainSchedule:
    """The standard SGD schedule used for the original model and for the retrained reference.

    Args:
        epochs: training epochs.
        lr: peak learning rate (cosine-annealed to 0 by default).
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_schedule: ``"cosine"`` or ``"constant"``.
        optimizer: ``"sgd"`` or ``"adam"``.
    """

    epochs: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    optimizer: Literal["sgd", "adam"] = "sgd"

    def method(self, *, seed: int, from_scratch: bool) -> FineTune:
        """``Retrain`` (re-initialised) or ``FineTune`` (from the current weights) with this schedule."""
        cls = Retrain if from_scratch else FineTune
        return cls(
            epochs=self.epochs,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            lr_schedule=self.lr_schedule,
            optimizer=self.optimizer,
            seed=seed,
        )


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` produced: the report's rows and where it was written."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None


def _build_model(arch: str, dm: UnlearningDataModule, seed: int) -> nn.Module:
    from unlearnkit.vision.models import build_model

    torch.manual_seed(seed)
    return build_model(arch, num_classes=dm.num_classes, in_channels=dm.in_channels)


def _method_name(method: Unlearner, taken: set[str]) -> str:
    name = type(method).__name__
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}#{k}", k + 1
    taken.add(candidate)
    return candidate


class Experiment:
    """Runs one experiment; see :func:`run_experiment` for the arguments."""

    def __init__(
        self,
        data: UnlearningDataModule,
        *,
        arch: str,
        training: TrainSchedule,
        seed: int,
        cache: ModelCache,
        trainer: dict[str, Any],
        evaluator: Evaluator,
    ) -> None:
        self.data, self.arch, self.training, self.seed = data, arch, training, seed
        self.cache, self.trainer_kwargs, self.evaluator = cache, trainer, evaluator

    def _key(self, kind: str, model: nn.Module, **extra: Any) -> dict[str, Any]:
        shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        return {
            "kind": kind,
            "data": self.data.cache_key(),
            "arch": self.arch,
            "seed": self.seed,
            "arch_signature": config_hash({"shapes": shapes}),
            "schedule": asdict(self.training),
            "batch_size": self.data.batch_size,
            **extra,
        }

    def _trainer(self, epochs: int) -> L.Trainer:
        return default_trainer(epochs, **self.trainer_kwargs)

    def _train(self, model: nn.Module, loader: Any, *, from_scratch: bool) -> None:
        method = self.training.method(seed=self.seed, from_scratch=from_scratch)
        from unlearnkit.module import fit_method

        fit_method(method, model, {"retain": loader}, trainer=self._trainer(method.epochs))

    def original(self) -> tuple[nn.Module, float, bool]:
        """The original model θ_o trained on D_train (cached). Returns (model, seconds, hit)."""
        model = _build_model(self.arch, self.data, self.seed)
        seconds, hit = self.cache.get_or_train(
            model,
            self._key("original", model),
            lambda m: self._train(m, self.data.full_train_dataloader(), from_scratch=False),
            what="original",
        )
        return model.eval(), seconds, hit

    def retrained(self) -> tuple[nn.Module, float, bool]:
        """θ_r retrained from scratch on D_r (cached per forget split)."""
        model = _build_model(self.arch, self.data, self.seed + 1)
        key = self._key("retrained", model, forget=self.data.split.fingerprint())  # type: ignore[union-attr]
        seconds, hit = self.cache.get_or_train(
            model,
            key,
            lambda m: self._train(m, self.data.retain_dataloader(), from_scratch=True),
            what="retrained",
        )
        return model.eval(), seconds, hit

    def unlearn(self, method: Unlearner, original: nn.Module) -> tuple[nn.Module, float]:
        """Apply ``method`` to a copy of θ_o; returns (θ_u, seconds)."""
        model = copy.deepcopy(original)
        needs_retain = method.requires_retain or "retain" in getattr(method, "uses", ())
        retain = self.data.retain_dataloader() if needs_retain else None
        kwargs: dict[str, Any] = {}
        if isinstance(method, LossUnlearner):
            kwargs["trainer"] = self._trainer(method.epochs)
        elif "train" in inspect.signature(method.unlearn).parameters:  # e.g. SSD's I_D pass
            kwargs["train"] = self.data.full_train_dataloader(shuffle=False)
        start = time.perf_counter()
        method.unlearn(model, self.data.forget_dataloader(), retain, **kwargs)
        return model.eval(), time.perf_counter() - start

    def run_request(self, spec: ForgetSpec, methods: Sequence[Unlearner]) -> list[dict[str, Any]]:
        """All rows (original, retrain, each method) for one forget request."""
        self.data.set_forget(spec)
        original, t_orig, hit_o = self.original()
        retrained, t_ret, hit_r = self.retrained()
        loaders = self.data.eval_dataloaders()
        ref_out = self.evaluator.collect(retrained, loaders)
        ref_metrics = self.evaluator.metrics_from_outputs(ref_out)
        ref_metrics = self.evaluator.metrics_from_outputs(  # itself as reference: gap 0, ToW 1
            ref_out, reference=ref_out, reference_metrics=ref_metrics
        )
        ref_metrics.update({"time/unlearn_s": t_ret, "time/speedup": 1.0})
        rows = [self._row("retrain", spec, ref_metrics, ref_out, cached=hit_r)]
        orig_out = self.evaluator.collect(original, loaders)
        orig_metrics = self.evaluator.metrics_from_outputs(
            orig_out, reference=ref_out, reference_metrics=ref_metrics
        )
        orig_metrics["time/train_s"] = t_orig
        orig_metrics["time/unlearn_s"] = 0.0  # the original is the do-nothing baseline
        rows.append(self._row("original", spec, orig_metrics, orig_out, cached=hit_o))
        taken = {"retrain", "original"}
        for method in methods:
            if type(method) is Retrain:  # the reference row already is the retrained model
                continue
            name = _method_name(method, taken)
            log.info("unlearning %s with %s", spec.label, name)
            model, seconds = self.unlearn(method, original)
            out = self.evaluator.collect(model, loaders)
            metrics = self.evaluator.metrics_from_outputs(
                out, reference=ref_out, reference_metrics=ref_metrics
            )
            metrics["time/unlearn_s"] = seconds
            metrics["time/speedup"] = speedup(t_ret, seconds)
            rows.append(self._row(name, spec, metrics, out, params=method.get_params()))
        return rows

    def _row(self, name: str, spec: ForgetSpec, metrics: dict, outputs: dict, **extra: Any) -> dict:
        full_test = [outputs[k] for k in ("test", "test_forget") if k in outputs]
        per_class = per_class_accuracy(  # on the whole test set: the forgotten classes show too
            Outputs(
                logits=torch.cat([o.logits for o in full_test]),
                targets=torch.cat([o.targets for o in full_test]),
                losses=torch.cat([o.losses for o in full_test]),
            ),
            self.data.num_classes,
        )
        scores = mia_scores(outputs["retain"], outputs["test"], outputs["forget"])
        return {
            "method": name,
            "forget": spec.label,
            "metrics": metrics,
            "per_class_accuracy": per_class.tolist(),
            "mia_scores": scores,
            **extra,
        }


def run_experiment(
    data: UnlearningDataModule,
    forget: Sequence[ForgetSpec],
    methods: Sequence[Unlearner],
    *,
    arch: str = "small_cnn",
    training: TrainSchedule | None = None,
    seed: int = 0,
    output: str | Path = "runs",
    name: str | None = None,
    cache_dir: str | Path | None = None,
    trainer: dict[str, Any] | None = None,
    evaluator: Evaluator | None = None,
    config: dict[str, Any] | None = None,
    write: bool = True,
) -> ExperimentResult:
    """Run original → retrained → each method → evaluation → report, for each forget request.

    Args:
        data: the datamodule (its ``forget`` is replaced by each request in turn).
        forget: the forget requests.
        methods: unlearning methods (``Retrain`` is the reference row, not re-run).
        arch: model architecture for :func:`unlearnkit.vision.models.build_model`.
        training: schedule of the original and retrained models.
        seed: seed of model initialisation and training.
        output: parent directory of the run directory (a new one per run, never reused).
        name: run directory name prefix.
        cache_dir: model cache (default ``$UNLEARNKIT_CACHE`` / ``~/.cache/unlearnkit/cache``).
        trainer: extra ``lightning.Trainer`` arguments (accelerator, devices, strategy, ...).
        evaluator: metrics (default :class:`Evaluator`).
        config: the config to record in ``report.json``.
        write: write ``report.json``/``report.md``/plots.

    Returns:
        :class:`ExperimentResult` with the rows and the run directory.

    Raises:
        ValueError: no forget request, or bad requests/methods (see :class:`ForgetSpec`).
    """
    if not forget:
        raise ValueError(
            "no forget request given; add at least one, e.g. {kind: class, classes: [0]}"
        )
    for spec in forget:  # resolve every request up front: bad input fails before any training
        data.set_forget(spec)
    run_dir = None
    if write:  # claim the run directory first: a bad config must not leave half a report
        from unlearnkit.evaluation.report import new_run_dir

        run_dir = new_run_dir(Path(output), name)
    exp = Experiment(
        data,
        arch=arch,
        training=training or TrainSchedule(),
        seed=seed,
        cache=ModelCache(cache_dir),
        trainer=dict(trainer or {}),
        evaluator=evaluator or Evaluator(),
    )
    rows: list[dict[str, Any]] = []
    try:
        for spec in forget:
            rows.extend(exp.run_request(spec, methods))
    except BaseException:
        if run_dir is not None and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    if run_dir is not None:
        from unlearnkit.evaluation.report import write_report

        write_report(run_dir, config or {}, rows)
    return ExperimentResult(rows=rows, run_dir=run_dir)
