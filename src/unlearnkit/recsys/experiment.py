"""The recommender `unlearnkit run` job: original → retrained → methods → ranking evaluation → report.

The ranking twin of :mod:`unlearnkit.vision.experiment`: the original LightGCN / BPR-MF model is trained
with BPR on ``D_train``, the retrained reference from scratch on ``D_r`` (both cached by a hash
of their config in the same :class:`~unlearnkit.cache.ModelCache` as the vision models), each
method unlearns a copy of the original, and :class:`~unlearnkit.recsys.module.RecEvaluator`
scores every model against the retrained one. Reports go through
:func:`unlearnkit.evaluation.report.write_report`; the forget edges of each request are saved
beside them (``forget_<request>.json``), so a run can be repeated on the same interactions.

``unlearnkit run -c configs/experiments/movielens_users.yaml`` reaches :func:`run_command` when the
config's ``data`` is a :class:`~unlearnkit.recsys.data.RecDataModule`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from unlearnkit.base import Unlearner
from unlearnkit.cache import ModelCache
from unlearnkit.data import ForgetSpec
from unlearnkit.evaluation.report import file_slug
from unlearnkit.jobs import common_run_parser, resume_argv, run_job
from unlearnkit.recsys.data import RecDataModule
from unlearnkit.recsys.methods import RecFineTune, RecRetrain
from unlearnkit.recsys.models import DotProductRecommender, LightGCNRecommender, MFRecommender
from unlearnkit.recsys.module import RecEvaluator, RecOutputs, count_parameters
from unlearnkit.runs import (
    ExperimentBase,
    ExperimentResult,
    RequestResult,
    TrainScheduleBase,
    run_requests,
)

__all__ = [
    "SUMMARY_COLUMNS",
    "RecExperiment",
    "RecExperimentResult",
    "RecModelConfig",
    "RecTrainSchedule",
    "run_command",
    "run_instantiated",
    "run_parser",
    "run_rec_experiment",
]

#: Columns of the table printed by ``unlearnkit run``, chosen to fit 100 columns (report.md,
#: report.csv and report.html have every metric, ``params/trained`` among them).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "test/recall@20",
    "test/ndcg@20",
    "forget/recall@20",
    "gap/forget_recall@20",
    "forget/mean_rank",
    "mia/auc",
    "score/js_to_retrain",
    "time/unlearn_s",
    "time/speedup",
)
_SUMMARY_HEADERS = {  # short enough for 100 columns; the table's note says what R@ and N@ are
    "test/recall@20": "test\nR@20 %",
    "test/ndcg@20": "test\nN@20 %",
    "forget/recall@20": "forget\nR@20 %",
    "gap/forget_recall@20": "gap\nforget\nR@20 %",
    "forget/mean_rank": "forget\nmean\nrank",
    "mia/auc": "MIA\nAUC %",
    "score/js_to_retrain": "JS to\nretrain",
    "time/unlearn_s": "unlearn\ntime s",
    "time/speedup": "speedup",
}


@dataclass
class RecModelConfig:
    """The recommender architecture.

    Args:
        arch: ``"lightgcn"`` (He et al., SIGIR 2020, arXiv:2002.02126) or ``"mf"`` (BPR-MF,
            Rendle et al., UAI 2009).
        embedding_dim: embedding width ``D``.
        num_layers: LightGCN propagation layers ``K``.
    """

    arch: Literal["lightgcn", "mf"] = "lightgcn"
    embedding_dim: int = 64
    num_layers: int = 3

    def build(self, num_users: int, num_items: int, *, seed: int) -> DotProductRecommender:
        """A freshly initialised recommender (``torch.manual_seed(seed)`` first).

        Raises:
            ValueError: unknown ``arch`` or bad sizes.
        """
        torch.manual_seed(int(seed))
        if self.arch == "lightgcn":
            return LightGCNRecommender(
                num_users, num_items, embedding_dim=self.embedding_dim, num_layers=self.num_layers
            )
        if self.arch == "mf":
            return MFRecommender(num_users, num_items, embedding_dim=self.embedding_dim)
        raise ValueError(f"model.arch must be 'lightgcn' or 'mf', got {self.arch!r}")


@dataclass
class RecTrainSchedule(TrainScheduleBase):
    """BPR training of the original and retrained recommenders (LightGCN's recipe, Sec. 4).

    :meth:`method` gives ``RecRetrain`` (re-initialised) or ``RecFineTune`` (from the current weights)
    with this schedule.

    Args:
        epochs: BPR epochs (one sampled negative per training edge per epoch).
        lr: Adam learning rate (1e-2 reaches Recall@20 ≈ 0.245 on the embedded MovieLens in
            about 40 epochs).
        reg_weight: L2 on the batch's layer-0 embeddings.
        optimizer: ``"adam"`` or ``"sgd"``.
        weight_decay: optimizer weight decay.
        lr_schedule: ``"constant"`` or ``"cosine"``.
        retrain_init: initial weights of the retrained reference θ_r: ``"original"`` (default)
            starts it from θ_o's own initial weights (same seed, the model's own init), so θ_r
            and θ_o differ only by the data they saw; ``"fresh"`` draws them with seed + 1, so
            the gap to θ_r also holds the seed-to-seed spread. Part of the models' cache keys.
    """

    finetune = RecFineTune
    retrain = RecRetrain

    epochs: int = 40
    lr: float = 1e-2
    reg_weight: float = 1e-4
    optimizer: Literal["sgd", "adam"] = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    retrain_init: Literal["original", "fresh"] = "original"


class RecExperimentResult(ExperimentResult):
    """What :func:`run_rec_experiment` produced: report rows and the run directory."""


def check_methods(methods: Sequence[Unlearner]) -> None:
    """Reject vision methods given to the recommender runner (one-line ``ValueError``)."""
    for method in methods:
        module = type(method).__module__
        if module.startswith("unlearnkit.vision"):
            name = type(method).__name__
            rec = {"FineTune", "GradientAscent", "Retrain"}
            hint = f"Rec{name}" if name in rec else name
            raise ValueError(
                f"{name} ({module}) is a vision method; for recommenders use "
                f"class_path: unlearnkit.recsys.methods.{hint}"
            )
        if not isinstance(method, Unlearner):
            raise TypeError(f"methods must be Unlearners, got {type(method).__name__}")


class RecExperiment(ExperimentBase):
    """Runs one recommender experiment; see :func:`run_rec_experiment` for the arguments."""

    reference_method = RecRetrain
    keep_outputs = True  # the forgotten-item rank plot shows every model

    def __init__(self, data: RecDataModule, *, model: RecModelConfig, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.model_cfg = model

    def _build(self, seed: int) -> DotProductRecommender:
        return self.model_cfg.build(self.data.num_users, self.data.num_items, seed=seed)

    def _model_key(self, model: nn.Module) -> dict[str, Any]:
        return {"task": "recsys", "model": asdict(self.model_cfg)}

    def _bind_data(self, model: nn.Module, kind: str) -> None:
        edges = self.data.train_edges if kind == "original" else self.data.retain_edges
        model.set_graph(edges)  # type: ignore[operator]

    def _fit(self, method: Any, model: nn.Module, loaders: Mapping, trainer: Any) -> None:
        method.fit(model, loaders, trainer=trainer)

    def _extra_metrics(
        self, row: str, original: nn.Module, method: Unlearner | None = None
    ) -> dict[str, Any]:
        total = count_parameters(original)
        trained = getattr(method, "trained_parameters_", None)
        return {"params/trained": trained if trained is not None else total, "params/total": total}

    def validate(self, methods: Sequence[Unlearner]) -> None:
        """Reject vision methods and unknown architectures (before anything is written)."""
        check_methods(methods)
        if self.model_cfg.arch not in ("lightgcn", "mf"):
            raise ValueError(f"model.arch must be 'lightgcn' or 'mf', got {self.model_cfg.arch!r}")

    def run_request(
        self, spec: ForgetSpec, methods: Sequence[Unlearner]
    ) -> tuple[list[dict[str, Any]], dict[str, RecOutputs]]:
        """All rows (retrain, original, each method) for one forget request, and raw outputs."""
        return self.evaluate_request(spec, methods)

    def _row(
        self, name: str, spec: ForgetSpec, metrics: dict, outputs: Any, **extra: Any
    ) -> dict[str, Any]:
        split = self.data.split
        return {
            "method": name,
            "forget": spec.label,
            "metrics": metrics,
            "forget_edges": int(split.forget.size(1)),
            "removed_users": int(split.removed_users().numel()),
            "removed_items": int(split.removed_items().numel()),
            **extra,
        }

    def write_files(self, run_dir: Path, requests: Sequence[RequestResult]) -> None:
        """Each request's forget edges (``forget_<request>.json``) and its two plots."""
        multi = len(requests) > 1
        for spec, request_rows, outputs in requests:
            suffix = f"_{file_slug(spec.label)}" if multi else ""
            self.data.set_forget(spec).save(run_dir / f"forget_{file_slug(spec.label)}.json")
            _plot_forget_vs_test(request_rows, run_dir / f"recall_forget_vs_test{suffix}.png")
            _plot_ranks(outputs, run_dir / f"forgotten_item_ranks{suffix}.png")


def _plot_forget_vs_test(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from unlearnkit.atomic import atomic_write_bytes

    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for row in rows:
        m = row["metrics"]
        x, y = m.get("forget/recall@20"), m.get("test/recall@20")
        if x is None or y is None:
            continue
        axes.scatter(
            [100 * x],
            [100 * y],
            label=row["method"],
            marker="*" if row["method"] == "retrain" else "o",
            s=90,
        )
    ref = next((r["metrics"] for r in rows if r["method"] == "retrain"), None)
    if ref is not None:
        axes.axvline(100 * ref["forget/recall@20"], color="grey", lw=0.8, ls="--")
        axes.axhline(100 * ref["test/recall@20"], color="grey", lw=0.8, ls="--")
    axes.set_xlabel("forget-set Recall@20 (%), retrained = target")
    axes.set_ylabel("test Recall@20 (%)")
    axes.set_title("Forgetting vs utility (dashed: retrained model)")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # off the points
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return atomic_write_bytes(path, buffer.getvalue())


def _plot_ranks(outputs: dict[str, RecOutputs], path: Path) -> Path:
    """Step outlines of the forgotten items' rank percentile, one colour and line style a model."""
    from unlearnkit.evaluation.plots import plot_mia_histogram

    order = sorted(outputs, key=lambda name: {"retrain": 0, "original": 1}.get(name, 2))
    return plot_mia_histogram(
        {name: outputs[name].extra["rank_percentile"].numpy() for name in order},
        path,
        xlabel="rank of the forgotten item among all items (fraction, 0 = top)",
        title="Where the forgotten items rank, per model (retrain = target)",
    )


def run_rec_experiment(
    data: RecDataModule,
    forget: Sequence[ForgetSpec],
    methods: Sequence[Unlearner],
    *,
    model: RecModelConfig | None = None,
    training: RecTrainSchedule | None = None,
    seed: int = 0,
    output: str | Path = "runs",
    name: str | None = None,
    cache_dir: str | Path | None = None,
    trainer: dict[str, Any] | None = None,
    evaluator: RecEvaluator | None = None,
    config: dict[str, Any] | None = None,
    write: bool = True,
    progress: str = "auto",
    logger: str = "csv",
    resume: str | Path | None = None,
    num_threads: int | None = None,
) -> RecExperimentResult:
    """Run original → retrained → each method → ranking evaluation → report, per forget request.

    Args:
        data: the recommender DataModule (its forget request is replaced by each one in turn).
        forget: forget requests (kinds ``user``, ``item``, ``interaction``, ``indices``).
        methods: recommender unlearning methods (``RecRetrain`` is the reference row, not re-run).
        model: the architecture (default LightGCN, D = 64, 3 layers).
        training: BPR schedule of the original and retrained models.
        seed: seed of initialisation, training and unlearning loaders.
        output: parent directory of the new run directory.
        name: run directory name suffix.
        cache_dir: model cache (default ``$UNLEARNKIT_CACHE`` / ``~/.cache/unlearnkit/cache``).
        trainer: extra ``lightning.Trainer`` arguments.
        evaluator: the :class:`~unlearnkit.recsys.module.RecEvaluator`.
        config: the config recorded in ``report.json``.
        write: write ``report.json`` / ``report.md`` / plots / forget edge files.
        progress: how the phases are shown: ``"auto"`` (a live display on a terminal, else one
            line per phase start and end on stderr), ``"rich"``, ``"plain"`` or ``"quiet"``.
        logger: Lightning logger of every model trained in the run, under
            ``<run dir>/logs/<request>/<model>/``: ``"csv"``, ``"tensorboard"``, ``"wandb"``
            or ``"none"``.
        resume: the directory of an interrupted run to finish (its rows are kept; the missing
            or failed ones are run and the report there is rewritten).
        num_threads: ``torch.set_num_threads`` for the run (restored afterwards); on a busy
            2-core machine 1 thread avoids OpenMP contention in the sparse propagation.

    Returns:
        :class:`RecExperimentResult` with the rows (retrain first per request) and the run dir.

    Raises:
        ValueError: no request, a bad request (unknown id, edge not in the graph, ...), a vision
            method, or bad sizes; raised before anything is trained or written.
        FileNotFoundError: a missing edge file or dataset root.
    """
    if num_threads is not None and int(num_threads) < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    exp = RecExperiment(
        data,
        model=model or RecModelConfig(),
        training=training or RecTrainSchedule(),
        seed=seed,
        cache=ModelCache(cache_dir),
        trainer=dict(trainer or {}),
        evaluator=evaluator or RecEvaluator(),
    )
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        result = run_requests(
            exp,
            forget,
            methods,
            output=output,
            name=name,
            write=write,
            config=config,
            example="{kind: user, fraction: 0.05}",
            progress=progress,
            logger=logger,
            resume=resume,
        )
    finally:
        torch.set_num_threads(threads)
    return RecExperimentResult(rows=result.rows, run_dir=result.run_dir, failed=result.failed)


# ------------------------------------------------------------------------------------------
# `unlearnkit run` for recommenders
# ------------------------------------------------------------------------------------------
def run_parser() -> Any:
    """The recommender ``unlearnkit run`` parser (every option documented in ``--help``)."""
    import unlearnkit.recsys.data  # noqa: F401  (RecDataModule subclasses for class_path)
    import unlearnkit.recsys.methods  # noqa: F401  (recommender methods for class_path)

    def job_options(p: Any) -> None:
        p.add_argument(
            "--data", type=RecDataModule, help="the RecDataModule (class_path + init_args)"
        )
        p.add_argument(
            "--forget",
            type=list[ForgetSpec],
            help="forget requests: {kind: user|item|interaction, fraction|count|ids, seed} "
            "or {kind: indices, indices_file: forget.json}",
        )
        p.add_argument(
            "--methods",
            type=list[Unlearner],
            help="methods by full class path, e.g. unlearnkit.recsys.methods.ReverseBPR",
        )
        p.add_class_arguments(RecModelConfig, "model", help="recommender architecture")
        p.add_class_arguments(
            RecTrainSchedule, "training", help="BPR schedule of the original and retrained models"
        )

    p = common_run_parser(
        "Recommender unlearning: train (or load from cache) the original and "
        "retrained LightGCN/MF models, run each method, rank-evaluate, and write report.json / "
        "report.md / plots / forget edge files to a new run directory.",
        job_options,
    )
    return p


def run_instantiated(init: Any, methods: Sequence[Unlearner], **common: Any) -> RecExperimentResult:
    """:func:`run_rec_experiment` on an instantiated ``unlearnkit run`` config."""
    return run_rec_experiment(
        init.data,
        init.forget,
        methods,
        model=init.model,
        training=init.training,
        num_threads=init.threads,
        **common,
    )


def format_summary(rows: Sequence[dict[str, Any]], *, width: int | None = None) -> str:
    """The printed summary: a rich table per forget request (:data:`SUMMARY_COLUMNS`), warnings.

    Same number formats as the classifier summary
    (:func:`unlearnkit.evaluation.report.format_value`: percent and seconds with 2 decimals,
    speed-up ``12.3×``); lines fit 100 columns.

    Args:
        rows: the run's rows (``forget``, ``forget_edges``, ``removed_users``/``_items``).
        width: line width (default 100, or the terminal's width if narrower).

    Returns:
        The plain text (no colour codes).
    """
    from unlearnkit.evaluation.report import render_text

    return render_text(*summary_renderables(rows), width=width)


def summary_renderables(rows: Sequence[dict[str, Any]]) -> list[Any]:
    """The rich tables (one per forget request, retrain first) and warning lines of ``rows``."""
    from unlearnkit.evaluation.report import console_table

    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("forget", "")), []).append(row)
    formatters = {"forget/mean_rank": lambda v: f"{float(v):.0f}"}
    parts: list[Any] = []
    for label, group in groups.items():
        first = group[0]
        title = (
            f"Forget request: {label} ({first.get('forget_edges')} interactions; "
            f"{first.get('removed_users')} users and {first.get('removed_items')} items left "
            "with none)"
        )
        parts.append(
            console_table(
                group, SUMMARY_COLUMNS, title=title, formatters=formatters, headers=_SUMMARY_HEADERS
            )
        )
        ref = next((r for r in group if r["method"] == "retrain"), None)
        for row in group:
            if row["metrics"].get("flag/over_unlearning") and ref is not None:
                parts.append(
                    f"Warning: {row['method']} forget Recall@20 "
                    f"{100 * row['metrics']['forget/recall@20']:.2f}% is well below the retrained "
                    f"model's {100 * ref['metrics']['forget/recall@20']:.2f}% (over-unlearning: "
                    "the forgotten items now rank lower than if they had never been seen)."
                )
    parts.append(
        "R@20 = Recall@20, N@20 = NDCG@20 (in %, as the AUC), times in s; the closer to retrain, "
        "the better. "
        "All metrics: report.md / report.csv / report.html."
    )
    return parts


def run_command(argv: list[str]) -> int:
    """Parse ``argv`` (the words after ``run``), run the recommender experiment, print the table."""
    argv = resume_argv(argv)  # --resume DIR: the config recorded there comes first
    return run_job(run_parser(), argv, run_instantiated, lambda result: format_summary(result.rows))
