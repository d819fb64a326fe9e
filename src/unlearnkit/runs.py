"""What the vision and recommender ``unlearnkit run`` jobs share: the experiment skeleton.

One experiment trains (or loads from the :class:`~unlearnkit.cache.ModelCache`) the original model
θ_o on D_train and the retrained reference θ_r on D_r, applies each method to a copy of θ_o, and
evaluates every model against θ_r. :class:`ExperimentBase` holds that loop;
:class:`unlearnkit.vision.experiment.Experiment` (classification) and
:class:`unlearnkit.recsys.experiment.RecExperiment` (ranking) fill in how a model is built, keyed,
trained and scored. :func:`run_requests` is the run-directory lifecycle around it: every request
is resolved and the run directory claimed before anything is trained, an empty run directory is
removed again on failure, and the report is rewritten after each method (so an interrupted run
keeps every row already computed; ``resume=`` finishes it).

What a run directory holds besides the report:

* ``logs/<request>/<model>/``: the Lightning logger's series of every model trained in this run
  (CSV by default: ``metrics.csv`` with ``unlearn/loss`` per step; TensorBoard or W&B on
  request). A model loaded from the cache was not trained in this run and has no series.
* ``models/<request>/original.pt``, ``retrained.pt`` (links to the cache entries' ``model.pt``,
  a copy where links fail) and ``<method>.pt`` (:func:`~unlearnkit.checkpoint.save_checkpoint`
  files): load any of them with :func:`~unlearnkit.checkpoint.load_checkpoint`.
* ``forget_sets/<request>.json``: the exact forget indices.

Nothing here imports ``unlearnkit.vision`` or ``unlearnkit.recsys``: they depend on this module.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
from torch import nn
from torch.utils.data import DataLoader

from unlearnkit.base import LossUnlearner, Unlearner
from unlearnkit.cache import ModelCache
from unlearnkit.data import ForgetSpec
from unlearnkit.evaluation.metrics import speedup
from unlearnkit.module import default_trainer, fit_method
from unlearnkit.progress import Phases
from unlearnkit.reinit import reinitialize

__all__ = [
    "ExperimentBase",
    "ExperimentResult",
    "LOGGERS",
    "RequestResult",
    "TrainScheduleBase",
    "check_logger",
    "is_global_zero",
    "make_logger",
    "report_name",
    "row_names",
    "run_requests",
    "with_params",
]

log = logging.getLogger(__name__)

#: One forget request's outcome: the request, its report rows, and the raw outputs by row name.
RequestResult = tuple[ForgetSpec, list[dict[str, Any]], dict[str, Any]]


#: The ``logger`` choices of a run (``"none"``: no logger).
LOGGERS = ("csv", "tensorboard", "wandb", "none")
#: The package each logger needs, and how to install it.
_LOGGER_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install tensorboard"),
    "wandb": (("wandb",), "pip install wandb"),
}


@dataclass
class ExperimentResult:
    """What an experiment run produced.

    Attributes:
        rows: the report's rows, request by request (a failed method's row has
            ``status: "failed"`` and its one-line ``error``).
        run_dir: where the report was written (``None`` when nothing was written).
        failed: ``"<request>: <method>: <error>"`` for each method that failed.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    failed: list[str] = field(default_factory=list)


def check_logger(kind: str) -> None:
    """Check that the logger ``kind`` can be used here, before anything is trained.

    Args:
        kind: one of :data:`LOGGERS`.

    Raises:
        ValueError: an unknown kind, or its package is not installed (the message says how to
            install it).
    """
    import importlib.util

    if kind not in LOGGERS:
        raise ValueError(f"logger must be one of {', '.join(LOGGERS)}, got {kind!r}")
    modules, install = _LOGGER_PACKAGES.get(kind, ((), ""))
    if modules and not any(importlib.util.find_spec(m) for m in modules):
        raise ValueError(f"logger {kind!r} needs the {modules[0]} package: {install}")


def make_logger(kind: str, save_dir: Path, request: str, model: str) -> Any:
    """A Lightning logger writing the series of ``model`` under ``save_dir/request/model``.

    Args:
        kind: one of :data:`LOGGERS`.
        save_dir: the run's ``logs`` directory.
        request: the forget request's directory name.
        model: the model's name (``original``, ``retrained``, a method's row name).

    Returns:
        A ``CSVLogger`` (``metrics.csv``), ``TensorBoardLogger``, ``WandbLogger`` (project
        ``unlearnkit``, the run named ``<run dir>/<request>/<model>``; W&B's own settings, e.g.
        ``WANDB_MODE=offline``, decide where it goes), or ``False`` for ``"none"``.

    Raises:
        ValueError: see :func:`check_logger`.
    """
    check_logger(kind)
    if kind == "none":
        return False
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(save_dir, name=request, version=model)
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir, name=request, version=model)
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        save_dir=str(save_dir),
        project="unlearnkit",
        name=f"{save_dir.parent.name}/{request}/{model}",
    )


class TrainScheduleBase:
    """Mixin of the training-schedule dataclasses: every field is a method argument.

    A subclass is a dataclass whose fields are all keyword arguments of its ``finetune`` and
    ``retrain`` method classes (``epochs``, ``lr``, ...), plus ``retrain_init``: where θ_r's
    initial weights come from, ``"original"`` (θ_o's own initial weights: the same seed) or
    ``"fresh"`` (seed + 1). :meth:`method` builds one of the two methods, and
    :meth:`cache_record` is the schedule's part of the models' cache keys.
    """

    finetune: ClassVar[type[LossUnlearner]]
    retrain: ClassVar[type[LossUnlearner]]
    #: Fields added after caches were in use: left out of :meth:`cache_record` while at their
    #: default, so a schedule that does not set them keeps the key (and the cached models) it
    #: had before they existed.
    keyed_unless_default: ClassVar[tuple[str, ...]] = ()
    #: Fields that shape the original θ_o only: not passed to ``retrain`` and left out of the
    #: retrained reference's key (so θ_r is shared by schedules that differ only in them).
    original_only: ClassVar[tuple[str, ...]] = ()

    def init_seed(self, seed: int, kind: str) -> int:
        """Seed of the initial weights of the model ``kind`` (``"original"`` / ``"retrained"``)."""
        fresh = kind == "retrained" and getattr(self, "retrain_init", "original") == "fresh"
        return seed + 1 if fresh else seed

    def method(self, *, seed: int, from_scratch: bool) -> LossUnlearner:
        """``retrain`` (re-initialised) or ``finetune`` (from the current weights) with this schedule.

        Args:
            seed: the method's seed (data order, re-initialisation).
            from_scratch: re-initialise the model first (the retrained reference θ_r), with
                ``init_seed(seed, "retrained")``.

        Returns:
            A new method object.
        """
        kwargs = asdict(self)  # type: ignore[call-overload]
        kwargs.pop("retrain_init", None)
        if from_scratch:
            for name in self.original_only:
                kwargs.pop(name, None)
            return self.retrain(**kwargs, seed=seed, init_seed=self.init_seed(seed, "retrained"))
        return self.finetune(**kwargs, seed=seed)

    def cache_record(self, kind: str) -> dict[str, Any]:
        """The schedule's part of the cache key of the model ``kind``.

        Every field, except those of :attr:`keyed_unless_default` while at their default and,
        for ``kind == "retrained"``, those of :attr:`original_only` (they do not shape θ_r).

        Args:
            kind: ``"original"`` or ``"retrained"``.

        Returns:
            ``{field: value}`` in field order.
        """
        record = asdict(self)  # type: ignore[call-overload]
        defaults = {f.name: f.default for f in fields(self)}  # type: ignore[arg-type]
        for name in self.keyed_unless_default:
            if record.get(name) == defaults.get(name):
                record.pop(name, None)
        if kind == "retrained":
            for name in self.original_only:
                record.pop(name, None)
        return record


@functools.cache
def _code_fingerprint(*classes: type) -> str:
    """Hash of the sources that compute metrics: ``unlearnkit.evaluation`` and ``classes``' files.

    Part of the evaluation cache key, so editing a metric never serves a stale stored value.
    """
    import unlearnkit.evaluation

    digest = hashlib.sha256()
    for path in sorted(Path(unlearnkit.evaluation.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    for cls in classes:
        try:
            digest.update(Path(inspect.getfile(cls)).read_bytes())
        except (TypeError, OSError):  # defined interactively: no file, the name stands for it
            digest.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    return digest.hexdigest()[:20]


def is_global_zero() -> bool:
    """Whether this process is rank 0 of the run (always, outside a distributed job).

    Under a DDP strategy Lightning's launcher starts the other ranks as copies of the command,
    with their rank in the environment (``RANK`` / ``LOCAL_RANK``), which Lightning reads at
    import; only rank 0 writes the run directory and prints the table.
    """
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def report_name(method: Unlearner, taken: set[str]) -> str:
    """The method's row name in a report (``method_name`` or the class name), made unique.

    Args:
        method: the method.
        taken: names already used; the returned name is added to it.

    Returns:
        ``Name``, or ``Name#2``, ``Name#3``, ... when the name is taken.
    """
    name = getattr(type(method), "method_name", None) or type(method).__name__
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}#{k}", k + 1
    taken.add(candidate)
    return candidate


def with_params(method: Unlearner, **changes: Any) -> Unlearner:
    """A copy of ``method`` with the constructor arguments in ``changes`` replaced.

    Only arguments the method takes are changed, and ``cache_dir`` only where the method has
    none of its own (so a run's ``cache_dir`` reaches SSD's ``I_D`` cache without overriding an
    explicit one). ``None`` values change nothing.

    Args:
        method: the method (left as is).
        **changes: constructor arguments to replace, e.g. ``seed=1``.

    Returns:
        A new method of the same class, or ``method`` itself when nothing changes.
    """
    params = method.get_params()
    changed = {k: v for k, v in changes.items() if k in params and v is not None}
    if "cache_dir" in changed and params["cache_dir"] is not None:
        del changed["cache_dir"]
    return type(method)(**{**params, **changed}) if changed else method


class ExperimentBase(ABC):
    """One experiment: original → retrained → each method → evaluation, per forget request.

    Subclasses set :attr:`reference_method` (the ``Retrain`` class whose rows the reference row
    already is) and implement the hooks :meth:`_build`, :meth:`_model_key` and :meth:`_row`; the
    others have defaults (evaluation through the evaluator's shared protocol).

    Args:
        data: the DataModule (its forget request is replaced by each request in turn).
        training: the schedule (a :class:`TrainScheduleBase` dataclass) of θ_o and θ_r.
        seed: seed of initialisation and training.
        cache: the model cache.
        trainer: extra ``lightning.Trainer`` arguments.
        evaluator: the evaluator (:class:`~unlearnkit.evaluation.metric.EvaluatorProtocol`).
    """

    #: The retraining method class: given as a method, it is skipped (the reference row is it).
    reference_method: ClassVar[type[Unlearner]]
    #: Keep every model's raw outputs for :meth:`write_files` (memory: one set per method).
    keep_outputs: ClassVar[bool] = False
    #: Classes of the collected outputs; non-empty: the evaluations of θ_o and θ_r are cached.
    evaluation_types: ClassVar[tuple[type, ...]] = ()

    def __init__(
        self,
        data: Any,
        *,
        training: TrainScheduleBase,
        seed: int,
        cache: ModelCache,
        trainer: dict[str, Any],
        evaluator: Any,
    ) -> None:
        self.data, self.training, self.seed = data, training, seed
        self.cache, self.trainer_kwargs, self.evaluator = cache, trainer, evaluator
        #: How the phases are shown (set by :func:`run_requests`; quiet by default).
        self.phases = Phases("quiet")
        #: The run directory: loggers and model files go there (``None``: nothing written).
        self.run_dir: Path | None = None
        #: The logger kind of each fit (:data:`LOGGERS`), used when :attr:`run_dir` is set.
        self.logger = "csv"
        self._request = "request"  # the current request's directory name
        self._request_label = ""

    # -- hooks --------------------------------------------------------------------------------
    @abstractmethod
    def _build(self, seed: int) -> nn.Module:
        """A freshly initialised model (``torch.manual_seed(seed)`` first)."""

    @abstractmethod
    def _model_key(self, model: nn.Module) -> dict[str, Any]:
        """The architecture's part of a cache key."""

    def _bind_data(self, model: nn.Module, kind: str) -> None:
        """Attach the data of ``kind`` to ``model`` (a recommender's graph); default nothing.

        Called with ``kind`` ``"original"`` or ``"retrained"`` before the model is trained or
        loaded from the cache, and again after.
        """
        return None

    def _fit(self, method: LossUnlearner, model: nn.Module, loaders: Mapping, trainer: Any) -> None:
        """Train ``model`` in place with the schedule's ``method``."""
        fit_method(method, model, loaders, trainer=trainer)

    def _collector(self) -> Callable[[nn.Module], Any]:
        """A function evaluating one model on the current request (the evaluator's raw outputs)."""
        return lambda model: self.evaluator.collect_from(model, self.data)

    def _reference_metrics(self, ref: Any) -> dict[str, Any]:
        """The metrics of θ_r, scored against itself (gap 0, ToW 1)."""
        return self._score(ref, ref, self.evaluator.metrics_from_outputs(ref))

    def _score(self, out: Any, ref: Any, ref_metrics: dict[str, Any]) -> dict[str, Any]:
        """The metrics of one model's outputs against θ_r's."""
        return self.evaluator.metrics_from_outputs(out, ref, reference_metrics=ref_metrics)

    def _extra_metrics(
        self, row: str, original: nn.Module, method: Unlearner | None = None
    ) -> dict[str, Any]:
        """Metrics appended to row ``row`` after the timings; default none."""
        return {}

    @abstractmethod
    def _row(
        self, name: str, spec: ForgetSpec, metrics: dict, outputs: Any, **extra: Any
    ) -> dict[str, Any]:
        """One report row."""

    def validate(self, methods: Sequence[Unlearner]) -> None:
        """Reject methods or settings this experiment cannot run, before anything is written."""
        return None

    def write_files(self, run_dir: Path, requests: Sequence[RequestResult]) -> None:
        """Files written beside the report (default none)."""
        return None

    # -- the experiment -----------------------------------------------------------------------
    def _key(self, kind: str, model: nn.Module, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "data": self.data.cache_key(),
            "seed": self.seed,
            "schedule": self.training.cache_record(kind),
            "batch_size": self.data.batch_size,
            **self._model_key(model),
            **extra,
        }

    def _trainer(self, epochs: int, model: str = "model", label: str | None = None) -> L.Trainer:
        """The Trainer of one fit: the run's logger series ``logs/<request>/<model>`` and a
        progress bar labelled with the phase (unless the ``trainer`` arguments set their own)."""
        kwargs = dict(self.trainer_kwargs)
        kind = kwargs.pop("logger") if isinstance(kwargs.get("logger"), str) else self.logger
        if self.run_dir is not None and "logger" not in kwargs and kind != "none":
            logs, version, k = self.run_dir / "logs", model, 2
            while (logs / self._request / version).exists():  # a resumed run: keep the old series
                version, k = f"{model}-{k}", k + 1
            kwargs["logger"] = make_logger(kind, logs, self._request, version)
            kwargs.setdefault("log_every_n_steps", 1)
        kwargs.setdefault("enable_progress_bar", self.phases.live)
        if kwargs["enable_progress_bar"] and "callbacks" not in kwargs:
            from unlearnkit.progress import phase_progress_bar

            kwargs["callbacks"] = [phase_progress_bar(label or f"{self._request_label}: {model}")]
        return default_trainer(epochs, **kwargs)

    def _link_model(self, name: str, key: dict[str, Any]) -> None:
        """``models/<request>/<name>.pt`` → the cache entry's ``model.pt`` (a copy where the
        file system has no links); an existing file is left as it is."""
        if self.run_dir is None:
            return
        from unlearnkit.cache import MODEL_FILE

        target = (self.cache.entry(key) / MODEL_FILE).resolve()
        link = self.run_dir / "models" / self._request / f"{name}.pt"
        if link.exists() or link.is_symlink() or not target.is_file():
            return
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(target, link)
        except OSError:
            shutil.copyfile(target, link)

    def _save_model(self, name: str, model: nn.Module, method: Unlearner) -> None:
        """``models/<request>/<name>.pt``: the unlearned model (never over an existing file)."""
        if self.run_dir is None:
            return
        from unlearnkit.checkpoint import save_checkpoint

        path = self.run_dir / "models" / self._request / f"{_slug(name)}.pt"
        if path.exists():
            log.warning("%s exists; the %s model is not saved again", path, name)
            return
        save_checkpoint(
            model,
            path,
            meta={"request": self._request_label, "method": name, "params": method.get_params()},
        )

    def _cached(
        self,
        kind: str,
        init_seed: int,
        loader: Callable[[], DataLoader],
        *,
        from_scratch: bool,
        **key: Any,
    ) -> tuple[nn.Module, float, bool]:
        model = reinitialize(self._build(init_seed), seed=init_seed)  # the model's own init
        self._bind_data(model, kind)
        label = kind if kind == "original" else f"{self._request_label}: {kind}"

        def train(m: nn.Module) -> None:
            method = self.training.method(seed=self.seed, from_scratch=from_scratch)
            trainer = self._trainer(method.epochs, kind, label=f"{label} (training)")
            with self.phases.phase(f"{label}: training ({method.epochs} epochs)", fit=True):
                self._fit(method, m, {"retain": loader()}, trainer)

        cache_key = self._key(kind, model, **key)
        seconds, hit = self.cache.get_or_train(model, cache_key, train, what=kind)
        if hit:
            self.phases.note(f"{label}: loaded from the cache (not trained in this run: no log)")
        self._bind_data(model, kind)
        self._link_model(kind, cache_key)
        return model.eval(), seconds, hit

    def original(self) -> tuple[nn.Module, float, bool]:
        """θ_o trained on D_train (cached). Returns ``(model, seconds, cache hit)``."""
        return self._cached(
            "original", self.seed, self.data.full_train_dataloader, from_scratch=False
        )

    def retrained(self) -> tuple[nn.Module, float, bool]:
        """θ_r trained from scratch on D_r (cached per forget split). Same returns."""
        fingerprint = self.data.split.fingerprint()
        return self._cached(
            "retrained",
            self.training.init_seed(self.seed, "retrained"),
            self.data.retain_dataloader,
            from_scratch=True,
            forget=fingerprint,
        )

    def _reference_evaluation(
        self, original: nn.Module, retrained: nn.Module, collect: Callable[[nn.Module], Any]
    ) -> tuple[tuple[Any, dict[str, Any]], tuple[Any, dict[str, Any]]]:
        """``((θ_r outputs, θ_r metrics), (θ_o outputs, θ_o metrics))`` for the current request.

        Both depend only on the two cached models, the split and the evaluation code, so when
        :attr:`evaluation_types` is set they are stored in the cache
        (:meth:`~unlearnkit.cache.ModelCache.get_or_evaluate`) and a second run of the same
        request reads them back instead of evaluating the two models again.
        """

        def evaluate() -> tuple[tuple[Any, dict[str, Any]], tuple[Any, dict[str, Any]]]:
            ref = collect(retrained)
            ref_metrics = self._reference_metrics(ref)
            out = collect(original)
            return (ref, ref_metrics), (out, self._score(out, ref, ref_metrics))

        if not self.evaluation_types:
            with self.phases.phase(f"{self._request_label}: evaluating original and retrained"):
                return evaluate()

        def timed() -> Any:
            with self.phases.phase(f"{self._request_label}: evaluating original and retrained"):
                return evaluate()

        result, _ = self.cache.get_or_evaluate(
            self._evaluation_key(original, retrained),
            timed,
            allowed=self.evaluation_types,
            what="original and retrained",
        )
        (ref, ref_metrics), (out, metrics) = result
        return (ref, dict(ref_metrics)), (out, dict(metrics))

    def _evaluation_key(self, original: nn.Module, retrained: nn.Module) -> dict[str, Any]:
        """What the reference evaluation depends on: both models' configs and the SHA-256 of
        their cached weights (so re-trained weights are a new key, re-written identical weights
        are not), the split, the evaluator and the code."""
        keys = {
            "original": self._key("original", original),
            "retrained": self._key("retrained", retrained, forget=self.data.split.fingerprint()),
        }
        return {
            "kind": "evaluation",
            "models": keys,
            "weights": {kind: self.cache.checksum(key) for kind, key in keys.items()},
            "evaluator": {type(self.evaluator).__name__: vars(self.evaluator)},
            "code": _code_fingerprint(type(self), type(self.evaluator)),
        }

    def _select(self, spec: ForgetSpec, original: nn.Module) -> None:
        """Resolve a request with a selector from θ_o, through the cache.

        The selection is stored under a key of θ_o's cache entry, the data, the request's size
        and the selector's :meth:`~unlearnkit.data.ForgetSelector.cache_key`, so a rerun reuses
        it and a changed setting selects anew.
        """
        from unlearnkit.data import ForgetSplit, spec_record

        key = {
            "kind": "forget_selection",
            "original": self._key("original", original),
            "request": spec_record(spec),
        }

        def select() -> dict[str, Any]:  # a phase of its own: a search can cost retrainings
            with self.phases.phase(f"{spec.label}: selecting the forget set"):
                split = self.data.select_forget(spec, original)
            return {"forget": split.forget, "num_train": split.num_train}

        stored, hit = self.cache.get_or_evaluate(key, select, what=f"{spec.label} forget set")
        split = ForgetSplit.from_indices(
            stored["forget"], num_train=int(stored["num_train"]), spec=spec
        )
        self.data.set_split(split)

    def unlearn(
        self, method: Unlearner, original: nn.Module, name: str | None = None
    ) -> tuple[nn.Module, float]:
        """Apply ``method`` to a copy of θ_o; returns ``(θ_u, seconds)``.

        Args:
            method: the method.
            original: θ_o (left as is).
            name: the method's row name (its logger series and progress label).
        """
        name = name or type(method).__name__
        model = copy.deepcopy(original)
        iterative = method.iterative
        # the Trainer is built before the clock starts: setting up a logger is not unlearning
        trainer = self._trainer(method.epochs, _slug(name)) if iterative else None
        with self.phases.phase(f"{self._request_label}: {name}", fit=bool(iterative)):
            start = time.perf_counter()
            method.unlearn_from(model, self.data, trainer=trainer)
            seconds = time.perf_counter() - start
        return model.eval(), seconds

    def evaluate_request(
        self,
        spec: ForgetSpec,
        methods: Sequence[Unlearner],
        *,
        done: Mapping[str, dict[str, Any]] | None = None,
        on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """All rows (retrain, original, each method) for one request, and the raw outputs.

        A method that raises (anything but ``KeyboardInterrupt``) while unlearning or being
        evaluated gets the row ``{"method", "forget", "status": "failed", "error", "metrics": {},
        "params"}`` with the one-line error, and the next method runs.

        Args:
            spec: the forget request.
            methods: the methods (instances of :attr:`reference_method` are skipped).
            done: rows already computed (by row name) in an earlier, interrupted run: kept as
                they are, the methods not run again.
            on_rows: called with the rows so far after each method (to rewrite the report).

        Returns:
            ``(rows, outputs)``; ``outputs`` maps row names to raw outputs when
            :attr:`keep_outputs`, else it is empty.
        """
        done = done or {}
        self.data.set_forget(spec)
        self._request, self._request_label = _slug(spec.label), spec.label
        original, t_orig, hit_o = self.original()
        if spec.needs_model:
            self._select(spec, original)
        retrained, t_ret, hit_r = self.retrained()
        # the speed-up's denominator: measured now, or stored with the cached θ_r (an earlier
        # run, under that run's load) — every method row says which
        retrain_time_from = "cache (an earlier run)" if hit_r else "this run"
        collect = self._collector()
        outputs: dict[str, Any] = {}

        def keep(name: str, out: Any) -> None:
            if self.keep_outputs:
                outputs[name] = out

        (ref, ref_metrics), (out, metrics) = self._reference_evaluation(
            original, retrained, collect
        )
        keep("retrain", ref)
        ref_metrics.update({"time/unlearn_s": t_ret, "time/speedup": 1.0})
        ref_metrics.update(self._extra_metrics("retrain", original))
        rows = [self._row("retrain", spec, ref_metrics, ref, cached=hit_r)]
        keep("original", out)
        metrics["time/train_s"] = t_orig
        metrics.update(self._extra_metrics("original", original))
        rows.append(self._row("original", spec, metrics, out, cached=hit_o))
        for method, name in zip(methods, row_names(methods, self.reference_method), strict=True):
            if type(method) is self.reference_method:  # the reference row already is θ_r
                continue
            if name in done:
                rows.append(done[name])
                continue
            log.info("unlearning %s with %s", spec.label, name)
            try:
                model, seconds = self.unlearn(method, original, name)
                with self.phases.phase(f"{spec.label}: evaluating {name}"):
                    out = collect(model)
                    metrics = self._score(out, ref, ref_metrics)
                    metrics.update(
                        {
                            "time/unlearn_s": seconds,
                            "time/speedup": speedup(t_ret, seconds),
                            "params/changed": changed_fraction(original, model),
                        }
                    )
                    metrics.update(self._extra_metrics(name, original, method))
                    row = self._row(
                        name,
                        spec,
                        metrics,
                        out,
                        params=method.get_params(),
                        retrain_time_from=retrain_time_from,
                    )
            except Exception as err:  # noqa: BLE001 - recorded in the report, the run goes on
                error = f"{type(err).__name__}: {err}".splitlines()[0]
                log.error("%s: %s failed: %s", spec.label, name, error)
                rows.append(_failed_row(name, spec, method, error))
            else:
                keep(name, out)
                self._save_model(name, model, method)
                rows.append(row)
            if on_rows is not None:
                on_rows(rows)
        return rows, outputs


def changed_fraction(before: nn.Module, after: nn.Module) -> float:
    """The share of the original's scalar parameters that the method changed.

    Reported for every method (``params/changed``), so a one-shot method that changed nothing
    (or everything) shows it.

    Returns:
        A fraction in ``[0, 1]`` (0 for a model without parameters).
    """
    total = changed = 0
    now = dict(after.named_parameters())
    for name, a in before.named_parameters():  # the original's parameters (adapters excluded)
        b = now.get(name)
        total += a.numel()
        if b is None or b.shape != a.shape:
            changed += a.numel()
        else:
            changed += int((a.detach().cpu() != b.detach().cpu()).sum())
    return changed / total if total else 0.0


def _slug(label: str) -> str:
    from unlearnkit.evaluation.report import file_slug  # the one slug rule of run files

    return file_slug(label)


def _failed_row(name: str, spec: ForgetSpec, method: Unlearner, error: str) -> dict[str, Any]:
    try:
        params = method.get_params()
    except Exception:  # noqa: BLE001 - the row records the failure, not a second one
        params = {}
    return {
        "method": name,
        "forget": spec.label,
        "status": "failed",
        "error": error,
        "metrics": {},
        "params": params,
    }


def run_requests(
    exp: ExperimentBase,
    forget: Sequence[ForgetSpec],
    methods: Sequence[Unlearner],
    *,
    output: str | Path,
    name: str | None,
    write: bool,
    config: dict[str, Any] | None,
    example: str,
    progress: str = "auto",
    logger: str = "csv",
    resume: str | Path | None = None,
) -> ExperimentResult:
    """Run every request of ``forget`` through ``exp``, in a new run directory when ``write``.

    Bad input fails before anything is trained or written: the requests are resolved,
    :meth:`ExperimentBase.validate` is called and the logger checked first, then the run
    directory is claimed (a bad name or output fails here), then the models are trained. The
    report (``report.json`` / ``report.md`` / plots) is rewritten after each method, so an
    interrupted run keeps every row computed so far; a failure before the first row leaves no
    empty run directory behind. At the end the experiment's files are written and the report
    once more, with every plot.

    Args:
        exp: the experiment.
        forget: the forget requests.
        methods: the methods.
        output: parent of the new run directory.
        name: run directory name suffix.
        write: write the run directory at all (on rank 0 only, under a DDP strategy).
        config: the config recorded in ``report.json``.
        example: an example request for the "no forget request" message.
        progress: how the phases are shown (:class:`~unlearnkit.progress.Phases` mode:
            ``"auto"``, ``"rich"``, ``"plain"``, ``"quiet"``).
        logger: the Lightning logger of each trained model (:data:`LOGGERS`), writing under
            ``<run dir>/logs/<request>/<model>/``.
        resume: the directory of an interrupted run: its ``report.json`` rows are kept, the
            (request, method) rows it lacks (or that failed) are run, and the report is
            rewritten there (``output`` and ``name`` are then not used).

    Returns:
        The rows (request by request), the run directory (``None`` unless ``write``) and the
        failed methods.

    Raises:
        ValueError: no request, a bad request, what :meth:`ExperimentBase.validate` rejects, an
            unusable logger, or a ``resume`` directory without a readable report.
        FileNotFoundError: ``resume`` has no ``report.json``.
    """
    if not forget:
        raise ValueError(f"no forget request given; add at least one, e.g. {example}")
    for spec in forget:  # resolve every request up front: bad input fails before any training
        exp.data.set_forget(spec)
    exp.validate(methods)
    check_logger(logger)
    previous = _previous_rows(Path(resume)) if resume is not None else []
    run_dir = None
    # claim the run directory first (a bad config must not leave half a report); under DDP only
    # rank 0 writes it, the other ranks train and evaluate alongside
    if write and is_global_zero():
        from unlearnkit.evaluation.report import new_run_dir

        run_dir = Path(resume) if resume is not None else new_run_dir(Path(output), name)
    exp.phases, exp.logger, exp.run_dir = Phases(progress), logger, run_dir  # type: ignore[arg-type]
    requests: list[RequestResult] = []
    finished: list[dict[str, Any]] = []  # rows of the requests done so far

    before = set(run_dir.iterdir()) if run_dir is not None else set()
    interim: set[Path] = set()  # files of the rewrites before the end (e.g. one request's plots)

    def report(rows: list[dict[str, Any]], *, final: bool = False) -> None:
        if run_dir is None:
            return
        written = _rewrite_report(run_dir, config or {}, rows, final=final)
        if not final:
            interim.update(written)
            return
        for path in interim - set(written) - before:  # named for fewer requests: stale now
            path.unlink(missing_ok=True)

    try:
        for spec in forget:
            done = {
                row["method"]: row
                for row in previous
                if row.get("forget") == spec.label and row.get("status") != "failed"
            }
            if done and _all_done(exp, methods, done):
                exp.phases.note(f"{spec.label}: every row is in the report already")
                finished.extend(_ordered(exp, methods, done))
                continue
            # after the last method of the last request the final report follows at once
            final_rows = 2 + len(_method_names(exp, methods)) if spec is forget[-1] else -1

            def after_method(
                rows: list[dict[str, Any]], before: tuple = tuple(finished), skip: int = final_rows
            ) -> None:
                if len(rows) != skip:
                    report([*before, *rows])

            rows, outputs = exp.evaluate_request(spec, methods, done=done, on_rows=after_method)
            requests.append((spec, rows, outputs))
            finished.extend(rows)
            if run_dir is not None:  # the exact indices, to repeat the run or publish them
                exp.data.split.save(run_dir / "forget_sets" / f"{_slug(spec.label)}.json")
    except BaseException:
        if run_dir is not None and resume is None and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    if run_dir is not None:
        exp.write_files(run_dir, requests)
        report(finished, final=True)
    failed = [
        f"{row['forget']}: {row['method']}: {row['error']}"
        for row in finished
        if row.get("status") == "failed"
    ]
    return ExperimentResult(rows=finished, run_dir=run_dir, failed=failed)


def row_names(methods: Sequence[Unlearner], reference: type) -> list[str]:
    """Each method's row name in a run's report, in order: ``retrain`` for the reference method,
    else :func:`report_name` made unique among the methods and the ``retrain``/``original`` rows
    (``FineTune``, ``FineTune#2``, ...)."""
    taken = {"retrain", "original"}
    return ["retrain" if type(m) is reference else report_name(m, taken) for m in methods]


def _method_names(exp: ExperimentBase, methods: Sequence[Unlearner]) -> list[str]:
    names = row_names(methods, exp.reference_method)
    return [n for m, n in zip(methods, names, strict=True) if type(m) is not exp.reference_method]


def _all_done(exp: ExperimentBase, methods: Sequence[Unlearner], done: Mapping[str, Any]) -> bool:
    return all(n in done for n in ["retrain", "original", *_method_names(exp, methods)])


def _ordered(
    exp: ExperimentBase, methods: Sequence[Unlearner], done: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    return [done[n] for n in ["retrain", "original", *_method_names(exp, methods)]]


def _previous_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of an interrupted run's ``report.json``."""
    for path in (run_dir / "report.json",):
        if path.is_file():
            try:
                return list(json.loads(path.read_text())["rows"])
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(
                    f"{path} is not a readable report ({type(err).__name__}: {err}); "
                    "pass the directory of an earlier `unlearnkit run`"
                ) from None
    raise FileNotFoundError(
        f"{run_dir} has no report.json; --resume needs the directory of an earlier "
        "`unlearnkit run` that wrote at least one row"
    )


def _rewrite_report(
    run_dir: Path, config: dict[str, Any], rows: list[dict[str, Any]], *, final: bool
) -> set[Path]:
    """Write the report of ``rows`` into ``run_dir``, replacing the one written before (every
    file is replaced atomically, so an interruption leaves the previous complete report).

    Before the end of the run (``final`` false) the per-sample MIA scores are left out (they are
    only plotted), so a rewrite after each method stays cheap.

    Returns:
        The files written.
    """
    from unlearnkit.evaluation.report import write_report

    if not final:
        rows = [{k: v for k, v in row.items() if k != "mia_scores"} for row in rows]
    written = write_report(run_dir, config, rows, update=True)
    return {Path(p) for p in written.values()}
