"""The main job: original → retrained → each method → evaluation → report.

Used by ``unlearnkit run`` (:func:`run_command`, :func:`run_parser`) and by ``unlearnkit
reproduce``; also callable from Python (:func:`run_experiment`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from unlearnkit.base import Unlearner
from unlearnkit.cache import ModelCache, config_hash
from unlearnkit.data import ForgetSpec, UnlearningDataModule
from unlearnkit.evaluation.collect import Outputs
from unlearnkit.evaluation.evaluator import Evaluator
from unlearnkit.evaluation.metrics import per_class_accuracy
from unlearnkit.evaluation.mia import mia_scores
from unlearnkit.jobs import (
    common_run_parser,
    default_to_embedded_experiment,
    resume_argv,
    run_job,
)
from unlearnkit.runs import (
    ExperimentBase,
    ExperimentResult,
    TrainScheduleBase,
    run_requests,
    with_params,
)
from unlearnkit.vision.methods import FineTune, Retrain

__all__ = [
    "Experiment",
    "run_command",
    "run_instantiated",
    "run_parser",
    "ExperimentResult",
    "TrainSchedule",
    "run_experiment",
    "with_params",
]


@dataclass
class TrainSchedule(TrainScheduleBase):
    """The standard SGD schedule used for the original model and for the retrained reference.

    :meth:`method` gives ``Retrain`` (re-initialised) or ``FineTune`` (from the current weights)
    with this schedule.

    Args:
        epochs: training epochs.
        lr: peak learning rate (cosine-annealed to 0 by default).
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        lr_schedule: ``"cosine"`` or ``"constant"``.
        optimizer: ``"sgd"`` or ``"adam"``.
        retrain_init: initial weights of the retrained reference θ_r: ``"original"`` (default)
            starts it from θ_o's own initial weights (same seed, the model's own init), so θ_r
            and θ_o differ only by the data they saw; ``"fresh"`` draws them with seed + 1, so
            the gap to θ_r also holds the seed-to-seed spread. Part of the models' cache keys.
        gradient_restriction: weight α of IAU's gradient-restriction (GR) loss for the original
            model θ_o: ``CE + α · Σ_k ||∇_{θ_k} CE||₂`` per batch (Liu, Wu, Lian & Chen,
            "Efficient Machine Unlearning via Influence Approximation", arXiv 2507.23257, the GR
            loss; :func:`~unlearnkit.influence.gradient_restriction_loss`); 0 (default) trains
            with plain cross-entropy, the paper and reference code use 0.005. The retrained
            reference θ_r is always trained with plain cross-entropy, as the reference code's
            gold model is (github.com/Lolo1222/IAU, README "Traditional Training":
            ``train_model.py --dataset=remain`` with the default ``model_fix_flag=0``), so the
            gap measures the distance to ordinary retraining and θ_r's cache entry is shared
            with a plain schedule. Part of the original's cache key when > 0 (at 0 the key is
            the one it was before this option existed).
    """

    finetune = FineTune
    retrain = Retrain
    keyed_unless_default = ("gradient_restriction",)
    original_only = ("gradient_restriction",)

    epochs: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    optimizer: Literal["sgd", "adam"] = "sgd"
    retrain_init: Literal["original", "fresh"] = "original"
    gradient_restriction: float = 0.0


class Experiment(ExperimentBase):
    """Runs one experiment; see :func:`run_experiment` for the arguments."""

    reference_method = Retrain
    evaluation_types = (Outputs,)

    def __init__(self, data: UnlearningDataModule, *, arch: str, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.arch = arch

    def _build(self, seed: int) -> nn.Module:
        from unlearnkit.vision.models import build_model

        torch.manual_seed(seed)
        return build_model(
            self.arch, num_classes=self.data.num_classes, in_channels=self.data.in_channels
        )

    def _model_key(self, model: nn.Module) -> dict[str, Any]:
        shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        return {"arch": self.arch, "arch_signature": config_hash({"shapes": shapes})}

    def _collector(self) -> Callable[[nn.Module], dict[str, Outputs]]:
        loaders = self.data.eval_dataloaders()
        return lambda model: self.evaluator.collect(model, loaders)

    def _extra_metrics(
        self, row: str, original: nn.Module, method: Unlearner | None = None
    ) -> dict[str, Any]:
        return {"time/unlearn_s": 0.0} if row == "original" else {}  # the do-nothing baseline

    def run_request(self, spec: ForgetSpec, methods: Sequence[Unlearner]) -> list[dict[str, Any]]:
        """All rows (retrain, original, each method) for one forget request."""
        return self.evaluate_request(spec, methods)[0]

    def _row(self, name: str, spec: ForgetSpec, metrics: dict, outputs: Any, **extra: Any) -> dict:
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
        if spec.needs_model:  # a searched set: its classes beside a random set's of its size
            extra.setdefault("forget_class_counts", self._forget_class_counts(spec))
        return {
            "method": name,
            "forget": spec.label,
            "metrics": metrics,
            "per_class_accuracy": per_class.tolist(),
            "class_names": self.data.class_names,
            "forget_classes": list(spec.classes or []) if spec.kind == "class" else [],
            "mia_scores": scores,
            **extra,
        }

    def _forget_class_counts(self, spec: ForgetSpec) -> dict[str, list[int]]:
        """``{request label: per-class counts of D_f, "random (same size, seed s)": ...}``.

        The random set is drawn as ``{kind: random, count: N_f, seed: spec.seed}`` would be, so
        the plot compares the searched set with the request it replaces.
        """
        targets = torch.as_tensor(self.data.train_set.targets)  # type: ignore[union-attr]
        forget = self.data.split.forget  # type: ignore[union-attr]
        k = self.data.num_classes
        gen = torch.Generator().manual_seed(spec.seed)
        drawn = torch.randperm(len(targets), generator=gen)[: forget.numel()]
        return {
            spec.label: torch.bincount(targets[forget], minlength=k).tolist(),
            f"random (same size, seed {spec.seed})": torch.bincount(
                targets[drawn], minlength=k
            ).tolist(),
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
    progress: str = "auto",
    logger: str = "csv",
    resume: str | Path | None = None,
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
        name: run directory name suffix.
        cache_dir: model cache (default ``$UNLEARNKIT_CACHE`` / ``~/.cache/unlearnkit/cache``).
        trainer: extra ``lightning.Trainer`` arguments (accelerator, devices, strategy, ...).
        evaluator: metrics (default :class:`Evaluator`).
        config: the config to record in ``report.json``.
        write: write ``report.json``/``report.md``/plots.
        progress: how the phases are shown: ``"auto"`` (a live display on a terminal, else one
            line per phase start and end on stderr), ``"rich"``, ``"plain"`` or ``"quiet"``.
        logger: Lightning logger of every model trained in the run, under
            ``<run dir>/logs/<request>/<model>/``: ``"csv"``, ``"tensorboard"``, ``"wandb"``
            or ``"none"``.
        resume: the directory of an interrupted run to finish (its rows are kept; the missing
            or failed ones are run and the report there is rewritten).

    Returns:
        :class:`ExperimentResult` with the rows and the run directory.

    Raises:
        ValueError: no forget request, or bad requests/methods (see :class:`ForgetSpec`).
    """
    if cache_dir is not None:
        methods = [with_params(m, cache_dir=str(cache_dir)) for m in methods]
    exp = Experiment(
        data,
        arch=arch,
        training=training or TrainSchedule(),
        seed=seed,
        cache=ModelCache(cache_dir),
        trainer=dict(trainer or {}),
        evaluator=evaluator or Evaluator(),
    )
    return run_requests(
        exp,
        forget,
        methods,
        output=output,
        name=name,
        write=write,
        config=config,
        example="{kind: class, classes: [0]}",
        progress=progress,
        logger=logger,
        resume=resume,
    )


# ------------------------------------------------------------------------------------------
# `unlearnkit run` for classifiers
# ------------------------------------------------------------------------------------------
def run_parser() -> Any:
    """The ``unlearnkit run`` parser (every option documented in ``--help``)."""
    import unlearnkit.datasets  # noqa: F401  (registers DataModule subclasses for class_path)
    import unlearnkit.vision  # noqa: F401  (registers methods)

    def job_options(p: Any) -> None:
        p.add_argument(
            "--data", type=UnlearningDataModule, help="the DataModule (class_path + init_args)"
        )
        p.add_argument("--forget", type=list[ForgetSpec], help="forget requests, run in turn")
        p.add_argument(
            "--methods", type=list[Unlearner], help="unlearning methods (class_path: FineTune, ...)"
        )
        p.add_argument(
            "--arch",
            type=str,
            default="small_cnn",
            help="small_cnn | lenet5 | resnet18_cifar | compact_cifar | timm:<name>",
        )
        p.add_class_arguments(
            TrainSchedule, "training", help="schedule of the original and retrained models"
        )

    return common_run_parser(
        "Train (or load from cache) the original and retrained models, run each "
        "unlearning method, evaluate, and write report.json / report.md / plots to a new run "
        "directory. Without -c the embedded default experiment runs.",
        job_options,
    )


def run_instantiated(init: Any, methods: list, **common: Any) -> Any:
    """:func:`~unlearnkit.vision.experiment.run_experiment` on an instantiated :func:`run_parser` config.

    Args:
        init: the instantiated config (``data``, ``forget``, ``arch``, ``training``).
        methods: the methods to run (``init.methods``, or re-seeded copies).
        **common: ``seed``, ``output``, ``name``, ``cache_dir``, ``trainer``, ``config``.

    Returns:
        The :class:`~unlearnkit.vision.experiment.ExperimentResult`.
    """
    return run_experiment(
        init.data, init.forget, methods, arch=init.arch, training=init.training, **common
    )


def report_table(result: Any, *, width: int | None = None) -> str:
    """The console summary of a run: one rich table per forget request, and its warnings.

    The columns are :data:`~unlearnkit.evaluation.report.CONSOLE_COLUMNS` (chosen to fit
    :data:`~unlearnkit.evaluation.report.CONSOLE_WIDTH` = 100 columns); ``report.md``,
    ``report.csv`` and ``report.html`` in the run directory have every metric.

    Args:
        result: an :class:`ExperimentResult` (its ``rows``).
        width: line width (default 100, or the terminal's width if narrower).

    Returns:
        The plain text (no colour codes).
    """
    from unlearnkit.evaluation.report import render_text

    return render_text(*summary_renderables(result.rows), width=width)


def summary_renderables(rows: Sequence[dict[str, Any]]) -> list[Any]:
    """The rich tables (one per forget request, retrain first) and warning lines of ``rows``."""
    from unlearnkit.evaluation.report import console_table, plain_warnings

    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("forget", "")), []).append(row)
    parts: list[Any] = []
    for label, group in groups.items():
        parts.append(console_table(group, title=f"Forget request: {label}"))
        parts += plain_warnings(group)
    parts.append(
        "Accuracies and rates in %, times in s; the closer to retrain, the better. "
        "All metrics: report.md / report.csv / report.html."
    )
    return parts


def run_command(argv: list[str]) -> int:
    """Parse ``argv`` (the words after ``run``), run the experiment, print the table.

    Without ``-c`` the embedded default experiment runs: it is the parser's default config, so
    ``--help`` shows its values as the defaults and options on the command line override them.
    With ``--resume DIR`` the config recorded in ``DIR/report.json`` comes first (the other
    words override it).
    """
    parser = run_parser()
    argv = resume_argv(argv)  # --resume DIR: the config recorded there comes first
    default_to_embedded_experiment(parser, argv)
    return run_job(parser, argv, run_instantiated, report_table)
