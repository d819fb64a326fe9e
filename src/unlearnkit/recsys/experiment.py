"""The recommender `unlearnkit run` job: original → retrained → methods → ranking evaluation → report.

The ranking twin of :mod:`unlearnkit.experiment`: the original LightGCN / BPR-MF model is trained
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

import copy
import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from unlearnkit.base import LossUnlearner, Unlearner
from unlearnkit.cache import ModelCache
from unlearnkit.data import ForgetSpec
from unlearnkit.evaluation.metrics import speedup
from unlearnkit.evaluation.report import format_markdown_table, new_run_dir, write_report
from unlearnkit.module import default_trainer
from unlearnkit.recsys.data import RecDataModule
from unlearnkit.recsys.methods import FineTune, Retrain
from unlearnkit.recsys.models import DotProductRecommender, LightGCNRecommender, MFRecommender
from unlearnkit.recsys.module import RecEvaluator, RecOutputs, count_parameters

__all__ = [
    "SUMMARY_COLUMNS",
    "RecExperiment",
    "RecExperimentResult",
    "RecModelConfig",
    "RecTrainSchedule",
    "run_command",
    "run_parser",
    "run_rec_experiment",
]

log = logging.getLogger(__name__)

#: Columns of the table printed by ``unlearnkit run`` (report.md has every metric).
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
    "params/trained",
)


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
class RecTrainSchedule:
    """BPR training of the original and retrained recommenders (LightGCN's recipe, Sec. 4).

    Args:
        epochs: BPR epochs (one sampled negative per training edge per epoch).
        lr: Adam learning rate (1e-2 reaches Recall@20 ≈ 0.245 on the embedded MovieLens in
            about 40 epochs).
        reg_weight: L2 on the batch's layer-0 embeddings.
        optimizer: ``"adam"`` or ``"sgd"``.
        weight_decay: optimizer weight decay.
        lr_schedule: ``"constant"`` or ``"cosine"``.
    """

    epochs: int = 40
    lr: float = 1e-2
    reg_weight: float = 1e-4
    optimizer: Literal["sgd", "adam"] = "adam"
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "constant"

    def method(self, *, seed: int, from_scratch: bool) -> FineTune:
        """``Retrain`` (re-initialised) or ``FineTune`` (from the current weights) with this schedule."""
        cls = Retrain if from_scratch else FineTune
        return cls(
            epochs=self.epochs,
            lr=self.lr,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            lr_schedule=self.lr_schedule,
            seed=seed,
            reg_weight=self.reg_weight,
        )


@dataclass
class RecExperimentResult:
    """What :func:`run_rec_experiment` produced: report rows, run directory, raw outputs."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None


def _method_name(method: Unlearner, taken: set[str]) -> str:
    name = getattr(type(method), "method_name", None) or type(method).__name__
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}#{k}", k + 1
    taken.add(candidate)
    return candidate


def check_methods(methods: Sequence[Unlearner]) -> None:
    """Reject vision methods given to the recommender runner (one-line ``ValueError``)."""
    for method in methods:
        module = type(method).__module__
        if module.startswith("unlearnkit.vision"):
            name = type(method).__name__
            raise ValueError(
                f"{name} ({module}) is a vision method; for recommenders use "
                f"class_path: unlearnkit.recsys.methods.{name}"
            )
        if not isinstance(method, Unlearner):
            raise TypeError(f"methods must be Unlearners, got {type(method).__name__}")


class RecExperiment:
    """Runs one recommender experiment; see :func:`run_rec_experiment` for the arguments."""

    def __init__(
        self,
        data: RecDataModule,
        *,
        model: RecModelConfig,
        training: RecTrainSchedule,
        seed: int,
        cache: ModelCache,
        trainer: dict[str, Any],
        evaluator: RecEvaluator,
    ) -> None:
        self.data, self.model_cfg, self.training, self.seed = data, model, training, seed
        self.cache, self.trainer_kwargs, self.evaluator = cache, trainer, evaluator

    def _key(self, kind: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "task": "recsys",
            "data": self.data.cache_key(),
            "model": asdict(self.model_cfg),
            "seed": self.seed,
            "schedule": asdict(self.training),
            "batch_size": self.data.batch_size,
            **extra,
        }

    def _trainer(self, epochs: int) -> Any:
        return default_trainer(epochs, **self.trainer_kwargs)

    def _build(self, seed: int) -> DotProductRecommender:
        return self.model_cfg.build(self.data.num_users, self.data.num_items, seed=seed)

    def original(self) -> tuple[DotProductRecommender, float, bool]:
        """θ_o trained with BPR on ``D_train`` (cached). Returns ``(model, seconds, hit)``."""
        model = self._build(self.seed)
        model.set_graph(self.data.train_edges)

        def train(m: nn.Module) -> None:
            method = self.training.method(seed=self.seed, from_scratch=False)
            method.fit(
                m,
                {"retain": self.data.full_train_dataloader()},
                trainer=self._trainer(method.epochs),
            )

        seconds, hit = self.cache.get_or_train(model, self._key("original"), train, what="original")
        model.set_graph(self.data.train_edges)
        return model.eval(), seconds, hit

    def retrained(self) -> tuple[DotProductRecommender, float, bool]:
        """θ_r trained from scratch on ``D_r`` (cached per forget set)."""
        model = self._build(self.seed + 1)
        model.set_graph(self.data.retain_edges)
        key = self._key("retrained", forget=self.data.split.fingerprint())  # type: ignore[union-attr]

        def train(m: nn.Module) -> None:
            method = self.training.method(seed=self.seed, from_scratch=True)
            method.fit(
                m, {"retain": self.data.retain_dataloader()}, trainer=self._trainer(method.epochs)
            )

        seconds, hit = self.cache.get_or_train(model, key, train, what="retrained")
        model.set_graph(self.data.retain_edges)
        return model.eval(), seconds, hit

    def unlearn(self, method: Unlearner, original: nn.Module) -> tuple[nn.Module, float]:
        """Apply ``method`` to a copy of θ_o; returns ``(θ_u, seconds)``."""
        model = copy.deepcopy(original)
        needs_retain = method.requires_retain or "retain" in getattr(method, "uses", ())
        retain = self.data.retain_dataloader() if needs_retain else None
        kwargs: dict[str, Any] = {}
        if isinstance(method, LossUnlearner):
            kwargs["trainer"] = self._trainer(method.epochs)
        start = time.perf_counter()
        method.unlearn(model, self.data.forget_dataloader(), retain, **kwargs)
        return model.eval(), time.perf_counter() - start

    def run_request(
        self, spec: ForgetSpec, methods: Sequence[Unlearner]
    ) -> tuple[list[dict[str, Any]], dict[str, RecOutputs]]:
        """All rows (retrain, original, each method) for one forget request, and raw outputs."""
        split = self.data.set_forget(spec)
        data = self.data.data
        original, t_orig, hit_o = self.original()
        retrained, t_ret, hit_r = self.retrained()
        total = count_parameters(original)
        ref = self.evaluator.collect(retrained, data, split)  # type: ignore[arg-type]
        outputs = {"retrain": ref}
        metrics = self.evaluator.metrics_from_outputs(ref, ref)
        metrics.update(
            {
                "time/unlearn_s": t_ret,
                "time/speedup": 1.0,
                "params/trained": total,
                "params/total": total,
            }
        )
        rows = [self._row("retrain", spec, metrics, cached=hit_r)]
        out = self.evaluator.collect(original, data, split)  # type: ignore[arg-type]
        outputs["original"] = out
        metrics = self.evaluator.metrics_from_outputs(out, ref)
        metrics.update({"time/train_s": t_orig, "params/trained": total, "params/total": total})
        rows.append(self._row("original", spec, metrics, cached=hit_o))
        taken = {"retrain", "original"}
        for method in methods:
            if type(method) is Retrain:  # the reference row already is the retrained model
                continue
            name = _method_name(method, taken)
            log.info("unlearning %s with %s", spec.label, name)
            model, seconds = self.unlearn(method, original)
            out = self.evaluator.collect(model, data, split)  # type: ignore[arg-type]
            outputs[name] = out
            metrics = self.evaluator.metrics_from_outputs(out, ref)
            trained = getattr(method, "trained_parameters_", None)
            metrics.update(
                {
                    "time/unlearn_s": seconds,
                    "time/speedup": speedup(t_ret, seconds),
                    "params/trained": trained if trained is not None else total,
                    "params/total": total,
                }
            )
            rows.append(self._row(name, spec, metrics, params=method.get_params()))
        return rows, outputs

    def _row(self, name: str, spec: ForgetSpec, metrics: dict, **extra: Any) -> dict[str, Any]:
        split = self.data.split
        return {
            "method": name,
            "forget": spec.label,
            "metrics": metrics,
            "forget_edges": int(split.forget.size(1)),  # type: ignore[union-attr]
            "removed_users": int(split.removed_users().numel()),  # type: ignore[union-attr]
            "removed_items": int(split.removed_items().numel()),  # type: ignore[union-attr]
            **extra,
        }


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "request"


def _plot_forget_vs_test(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from unlearnkit.evaluation.plots import atomic_write_bytes

    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
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
    axes.legend(loc="best", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return atomic_write_bytes(path, buffer.getvalue())


def _plot_ranks(outputs: dict[str, RecOutputs], path: Path) -> Path:
    from unlearnkit.evaluation.plots import plot_mia_histogram

    return plot_mia_histogram(
        {name: out.extra["rank_percentile"].numpy() for name, out in outputs.items()},
        path,
        xlabel="rank of the forgotten item among all items (fraction, 0 = top)",
        title="Where the forgotten items rank, per model",
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
    num_threads: int | None = None,
) -> RecExperimentResult:
    """Run original → retrained → each method → ranking evaluation → report, per forget request.

    Args:
        data: the recommender DataModule (its forget request is replaced by each one in turn).
        forget: forget requests (kinds ``user``, ``item``, ``interaction``, ``indices``).
        methods: recommender unlearning methods (``Retrain`` is the reference row, not re-run).
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
        num_threads: ``torch.set_num_threads`` for the run (restored afterwards); on a busy
            2-core machine 1 thread avoids OpenMP contention in the sparse propagation.

    Returns:
        :class:`RecExperimentResult` with the rows (retrain first per request) and the run dir.

    Raises:
        ValueError: no request, a bad request (unknown id, edge not in the graph, ...), a vision
            method, or bad sizes; raised before anything is trained or written.
        FileNotFoundError: a missing edge file or dataset root.
    """
    if not forget:
        raise ValueError(
            "no forget request given; add at least one, e.g. {kind: user, fraction: 0.05}"
        )
    check_methods(methods)
    for spec in forget:  # resolve every request up front: bad input fails before any training
        data.set_forget(spec)
    model = model or RecModelConfig()
    if model.arch not in ("lightgcn", "mf"):  # fail before anything is written
        raise ValueError(f"model.arch must be 'lightgcn' or 'mf', got {model.arch!r}")
    run_dir = new_run_dir(Path(output), name) if write else None
    threads = torch.get_num_threads()
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        torch.set_num_threads(int(num_threads))
    exp = RecExperiment(
        data,
        model=model,
        training=training or RecTrainSchedule(),
        seed=seed,
        cache=ModelCache(cache_dir),
        trainer=dict(trainer or {}),
        evaluator=evaluator or RecEvaluator(),
    )
    rows: list[dict[str, Any]] = []
    per_request: list[tuple[ForgetSpec, list[dict[str, Any]], dict[str, RecOutputs]]] = []
    try:
        for spec in forget:
            request_rows, outputs = exp.run_request(spec, methods)
            rows.extend(request_rows)
            per_request.append((spec, request_rows, outputs))
    except BaseException:
        if run_dir is not None and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    finally:
        torch.set_num_threads(threads)
    if run_dir is not None:
        multi = len(per_request) > 1
        for spec, request_rows, outputs in per_request:
            suffix = f"_{_slug(spec.label)}" if multi else ""
            data.set_forget(spec).save(run_dir / f"forget_{_slug(spec.label)}.json")
            _plot_forget_vs_test(request_rows, run_dir / f"recall_forget_vs_test{suffix}.png")
            _plot_ranks(outputs, run_dir / f"forgotten_item_ranks{suffix}.png")
        write_report(run_dir, config or {}, rows)
    return RecExperimentResult(rows=rows, run_dir=run_dir)


# ------------------------------------------------------------------------------------------
# `unlearnkit run` for recommenders
# ------------------------------------------------------------------------------------------
def run_parser() -> Any:
    """The recommender ``unlearnkit run`` parser (every option documented in ``--help``)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    import unlearnkit.recsys.data  # noqa: F401  (RecDataModule subclasses for class_path)
    import unlearnkit.recsys.methods  # noqa: F401  (recommender methods for class_path)

    p = ArgumentParser(
        prog="unlearnkit run",
        description="Recommender unlearning: train (or load from cache) the original and "
        "retrained LightGCN/MF models, run each method, rank-evaluate, and write report.json / "
        "report.md / plots / forget edge files to a new run directory.",
    )
    p.add_argument("-c", "--config", action=ActionConfigFile, help="experiment YAML file")
    p.add_argument("--data", type=RecDataModule, help="the RecDataModule (class_path + init_args)")
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
    p.add_argument("--seed", type=int, default=0, help="seed of model init, training, unlearning")
    p.add_argument("--output", type=str, default="runs", help="parent of the new run directory")
    p.add_argument("--name", type=str | None, default=None, help="run directory name suffix")
    p.add_argument(
        "--cache_dir",
        type=str | None,
        default=None,
        help="model cache (default $UNLEARNKIT_CACHE or ~/.cache/unlearnkit/cache)",
    )
    p.add_argument(
        "--trainer",
        type=dict[str, Any],
        default={},
        help="extra lightning.Trainer arguments, e.g. {accelerator: gpu, devices: 1}",
    )
    p.add_argument(
        "--num_threads",
        type=int | None,
        default=None,
        help="torch threads for the run (1 avoids OpenMP contention on busy machines)",
    )
    return p


def format_summary(rows: Sequence[dict[str, Any]]) -> str:
    """The printed table(s): one per forget request, :data:`SUMMARY_COLUMNS`, and warnings."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("forget", "")), []).append(row)
    formatters = {
        "params/trained": lambda v: f"{int(v):,}",
        "forget/mean_rank": lambda v: f"{float(v):.0f}",
        "time/speedup": lambda v: f"{float(v):.1f}x",
        "score/js_to_retrain": lambda v: f"{float(v):.4f}",
    }
    parts = []
    for label, group in groups.items():
        first = group[0]
        parts.append(
            f"## Forget request `{label}` ({first.get('forget_edges')} interactions; "
            f"{first.get('removed_users')} users and {first.get('removed_items')} items left "
            "with none)\n"
        )
        parts.append(format_markdown_table(group, list(SUMMARY_COLUMNS), formatters=formatters))
        ref = next((r for r in group if r["method"] == "retrain"), None)
        for row in group:
            if row["metrics"].get("flag/over_unlearning") and ref is not None:
                parts.append(
                    f"> **Warning:** `{row['method']}` forget Recall@20 "
                    f"{100 * row['metrics']['forget/recall@20']:.2f}% is well below the retrained "
                    f"model's {100 * ref['metrics']['forget/recall@20']:.2f}% (over-unlearning: "
                    "the forgotten items now rank lower than if they had never been seen).\n"
                )
    return "\n".join(parts)


def run_command(argv: list[str]) -> int:
    """Parse ``argv`` (the words after ``run``), run the recommender experiment, print the table."""
    parser = run_parser()
    cfg = parser.parse_args(argv)
    if cfg.data is None or not cfg.forget or not cfg.methods:
        parser.error("an experiment needs data, forget and methods (see configs/experiments/)")
    import yaml

    config_dict = yaml.safe_load(parser.dump(cfg, skip_none=False, format="yaml"))
    init = parser.instantiate_classes(cfg)
    trainer = {"enable_progress_bar": sys.stderr.isatty(), **(init.trainer or {})}
    result = run_rec_experiment(
        init.data,
        init.forget,
        init.methods,
        model=init.model,
        training=init.training,
        seed=init.seed,
        output=init.output,
        name=init.name,
        cache_dir=init.cache_dir,
        trainer=trainer,
        config=config_dict,
        num_threads=init.num_threads,
    )
    print(format_summary(result.rows))
    print(f"report written to {result.run_dir}")
    return 0


# ------------------------------------------------------------------------------------------
# `unlearnkit reproduce` for recommender tables
# ------------------------------------------------------------------------------------------
def run_rec_table(spec: Any, options: Any) -> tuple[str, Path]:
    """Run a recommender table's grid with :func:`run_rec_experiment` (``unlearnkit reproduce``).

    The recommender twin of :func:`unlearnkit.reproduce.runner.run_table`, with the same spec
    format, output files (``table.md``, ``results.json`` and each run's own report) and report
    layout; the grid's ``archs`` are :class:`RecModelConfig` architectures (``lightgcn``,
    ``mf``), and the spec's ``experiment`` is a recommender ``unlearnkit run`` config.

    Args:
        spec: the :class:`~unlearnkit.reproduce.tables.TableSpec`.
        options: the :class:`~unlearnkit.reproduce.runner.ReproduceOptions`.

    Returns:
        ``(markdown, run directory)``.

    Raises:
        ValueError: ``--train-limit`` / ``--test-limit`` (not supported on graphs: a subset of
            edges changes the graph), bad options or configs.
    """
    import datetime as dt
    import json
    import math

    from unlearnkit.evaluation.plots import atomic_write_bytes
    from unlearnkit.reproduce.runner import (
        aggregate,
        build_config,
        format_per_request,
        format_report,
        machine_description,
    )

    if options.train_limit is not None or options.test_limit is not None:
        raise ValueError(
            "--train-limit/--test-limit are not supported for recommender tables (a subset of "
            "the edges is another graph); use --smoke or --max-requests"
        )
    config, forget, seeds, archs, mode = build_config(spec, options)
    parser = run_parser()
    run_dir = new_run_dir(Path(options.output), f"reproduce-{spec.name}")
    trainer = {"enable_progress_bar": sys.stderr.isatty(), **options.trainer}
    all_rows: list[dict[str, Any]] = []

    def plain(value: Any) -> float | None:
        ok = isinstance(value, int | float) and math.isfinite(float(value))
        return float(value) if ok else None

    try:
        for arch in archs:
            model_cfg = {**config.get("model", {}), "arch": arch}
            base = {**config, "model": model_cfg, "forget": forget, "seed": seeds[0]}
            init = parser.instantiate_classes(parser.parse_object(copy.deepcopy(base)))
            for seed in seeds:
                methods = []
                for method in init.methods:
                    params = method.get_params()
                    methods.append(
                        type(method)(**{**params, "seed": seed}) if "seed" in params else method
                    )
                log.info("reproduce %s: arch %s, seed %d", spec.name, arch, seed)
                result = run_rec_experiment(
                    init.data,
                    init.forget,
                    methods,
                    model=init.model,
                    training=init.training,
                    seed=seed,
                    output=run_dir,
                    name=f"{arch}-seed{seed}",
                    cache_dir=options.cache_dir,
                    trainer=trainer,
                    config=copy.deepcopy({**base, "seed": seed}),
                    num_threads=init.num_threads,
                )
                for row in result.rows:
                    all_rows.append(
                        {
                            "arch": arch,
                            "seed": seed,
                            "forget": row["forget"],
                            "method": row["method"],
                            "metrics": {k: plain(v) for k, v in row["metrics"].items()},
                        }
                    )
    except BaseException:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    header = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_description(),
        "seeds": seeds,
        "requests": [ForgetSpec(**dict(f)).label for f in forget],
        "mode": mode,
    }
    markdown = format_report(spec, all_rows, header=header)
    document = {
        "table": spec.name,
        "header": header,
        "config": config,
        "rows": all_rows,
        "aggregate": [
            {
                "arch": k[0],
                "method": k[1],
                "metric": m,
                "mean": a.mean,
                "std": a.std,
                "n": a.n,
                "per_seed": a.values,
            }
            for k, metrics in aggregate(all_rows).items()
            for m, a in metrics.items()
        ],
    }
    full = markdown + "\n" + format_per_request(spec, all_rows)
    atomic_write_bytes(run_dir / "table.md", full.encode())
    text = json.dumps(document, indent=2, default=str, allow_nan=False)
    atomic_write_bytes(run_dir / "results.json", text.encode())
    return markdown, run_dir
