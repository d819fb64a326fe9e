"""What the vision and recommender ``unlearnkit run`` jobs share: the experiment skeleton.

One experiment trains (or loads from the :class:`~unlearnkit.cache.ModelCache`) the original model
θ_o on D_train and the retrained reference θ_r on D_r, applies each method to a copy of θ_o, and
evaluates every model against θ_r. :class:`ExperimentBase` holds that loop;
:class:`unlearnkit.vision.experiment.Experiment` (classification) and
:class:`unlearnkit.recsys.experiment.RecExperiment` (ranking) fill in how a model is built, keyed,
trained and scored. :func:`run_requests` is the run-directory lifecycle around it: every request
is resolved and the run directory claimed before anything is trained, an empty run directory is
removed again on failure, and the report is written at the end.

Nothing here imports ``unlearnkit.vision`` or ``unlearnkit.recsys``: they depend on this module.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
from unlearnkit.reinit import reinitialize

__all__ = [
    "ExperimentBase",
    "ExperimentResult",
    "RequestResult",
    "TrainScheduleBase",
    "is_global_zero",
    "report_name",
    "run_requests",
    "with_params",
]

log = logging.getLogger(__name__)

#: One forget request's outcome: the request, its report rows, and the raw outputs by row name.
RequestResult = tuple[ForgetSpec, list[dict[str, Any]], dict[str, Any]]


@dataclass
class ExperimentResult:
    """What an experiment run produced: the report's rows and where it was written."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None


class TrainScheduleBase:
    """Mixin of the training-schedule dataclasses: every field is a method argument.

    A subclass is a dataclass whose fields are all keyword arguments of its ``finetune`` and
    ``retrain`` method classes (``epochs``, ``lr``, ...), plus ``retrain_init``: where θ_r's
    initial weights come from, ``"original"`` (θ_o's own initial weights: the same seed) or
    ``"fresh"`` (seed + 1). :meth:`method` builds one of the two methods.
    """

    finetune: ClassVar[type[LossUnlearner]]
    retrain: ClassVar[type[LossUnlearner]]

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
            return self.retrain(**kwargs, seed=seed, init_seed=self.init_seed(seed, "retrained"))
        return self.finetune(**kwargs, seed=seed)


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
            "schedule": asdict(self.training),  # type: ignore[call-overload]
            "batch_size": self.data.batch_size,
            **self._model_key(model),
            **extra,
        }

    def _trainer(self, epochs: int) -> L.Trainer:
        return default_trainer(epochs, **self.trainer_kwargs)

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

        def train(m: nn.Module) -> None:
            method = self.training.method(seed=self.seed, from_scratch=from_scratch)
            self._fit(method, m, {"retain": loader()}, self._trainer(method.epochs))

        seconds, hit = self.cache.get_or_train(
            model, self._key(kind, model, **key), train, what=kind
        )
        self._bind_data(model, kind)
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
            return evaluate()
        result, _ = self.cache.get_or_evaluate(
            self._evaluation_key(original, retrained),
            evaluate,
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

        def select() -> dict[str, Any]:
            split = self.data.select_forget(spec, original)
            return {"forget": split.forget, "num_train": split.num_train}

        stored, hit = self.cache.get_or_evaluate(key, select, what=f"{spec.label} forget set")
        split = ForgetSplit.from_indices(
            stored["forget"], num_train=int(stored["num_train"]), spec=spec
        )
        self.data.set_split(split)

    def unlearn(self, method: Unlearner, original: nn.Module) -> tuple[nn.Module, float]:
        """Apply ``method`` to a copy of θ_o; returns ``(θ_u, seconds)``."""
        model = copy.deepcopy(original)
        start = time.perf_counter()
        trainer = self._trainer(method.epochs) if method.iterative else None
        method.unlearn_from(model, self.data, trainer=trainer)
        return model.eval(), time.perf_counter() - start

    def evaluate_request(
        self, spec: ForgetSpec, methods: Sequence[Unlearner]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """All rows (retrain, original, each method) for one request, and the raw outputs.

        Args:
            spec: the forget request.
            methods: the methods (instances of :attr:`reference_method` are skipped).

        Returns:
            ``(rows, outputs)``; ``outputs`` maps row names to raw outputs when
            :attr:`keep_outputs`, else it is empty.
        """
        self.data.set_forget(spec)
        original, t_orig, hit_o = self.original()
        if spec.needs_model:
            self._select(spec, original)
        retrained, t_ret, hit_r = self.retrained()
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
        taken = {"retrain", "original"}
        for method in methods:
            if type(method) is self.reference_method:  # the reference row already is θ_r
                continue
            name = report_name(method, taken)
            log.info("unlearning %s with %s", spec.label, name)
            model, seconds = self.unlearn(method, original)
            out = collect(model)
            keep(name, out)
            metrics = self._score(out, ref, ref_metrics)
            metrics.update({"time/unlearn_s": seconds, "time/speedup": speedup(t_ret, seconds)})
            metrics.update(self._extra_metrics(name, original, method))
            rows.append(self._row(name, spec, metrics, out, params=method.get_params()))
        return rows, outputs


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label).strip("_") or "request"


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
) -> ExperimentResult:
    """Run every request of ``forget`` through ``exp``, in a new run directory when ``write``.

    Bad input fails before anything is trained or written: the requests are resolved and
    :meth:`ExperimentBase.validate` is called first, then the run directory is claimed (a bad
    name or output fails here), then the models are trained. A failure leaves no empty run
    directory behind. At the end the experiment's files and ``report.json`` / ``report.md`` /
    plots are written.

    Args:
        exp: the experiment.
        forget: the forget requests.
        methods: the methods.
        output: parent of the new run directory.
        name: run directory name suffix.
        write: write the run directory at all (on rank 0 only, under a DDP strategy).
        config: the config recorded in ``report.json``.
        example: an example request for the "no forget request" message.

    Returns:
        The rows (request by request) and the run directory (``None`` unless ``write``).

    Raises:
        ValueError: no request, a bad request, or what :meth:`ExperimentBase.validate` rejects.
    """
    if not forget:
        raise ValueError(f"no forget request given; add at least one, e.g. {example}")
    for spec in forget:  # resolve every request up front: bad input fails before any training
        exp.data.set_forget(spec)
    exp.validate(methods)
    run_dir = None
    # claim the run directory first (a bad config must not leave half a report); under DDP only
    # rank 0 writes it, the other ranks train and evaluate alongside
    if write and is_global_zero():
        from unlearnkit.evaluation.report import new_run_dir

        run_dir = new_run_dir(Path(output), name)
    requests: list[RequestResult] = []
    try:
        for spec in forget:
            requests.append((spec, *exp.evaluate_request(spec, methods)))
            if run_dir is not None:  # the exact indices, to repeat the run or publish them
                exp.data.split.save(run_dir / "forget_sets" / f"{_slug(spec.label)}.json")
    except BaseException:
        if run_dir is not None and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    rows = [row for _, request_rows, _ in requests for row in request_rows]
    if run_dir is not None:
        from unlearnkit.evaluation.report import write_report

        exp.write_files(run_dir, requests)
        write_report(run_dir, config or {}, rows)
    return ExperimentResult(rows=rows, run_dir=run_dir)
