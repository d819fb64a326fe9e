"""``unlearnkit tune``: choose a method's hyper-parameters on a calibration forget request.

The protocol of Fan, Liu, Hero & Liu, "Challenging Forgets: Unveiling the Worst-Case Forget
Sets in Machine Unlearning", ECCV 2024 (arXiv 2403.07362), §5 (and of the SalUn and ℓ1-sparse
papers' tables): each method's learning rate (and epochs) is chosen on a *calibration* forget
request (e.g. a random 10 % set) from a small grid, by the smallest Avg. Gap to the retrained
model, and then reused unchanged on the requests the table reports. Published numbers depend on
these per-method settings, which the reference repositories do not ship.

Each candidate is an ordinary method of one ``unlearnkit run`` (same code path, same report):
the original and retrained models come from the model cache, so no candidate retrains anything.
The grid is data (YAML): ``{FineTune: {lr: [0.01, 0.02], epochs: [1, 2]}, SalUn: {lr: [...]}}``
keyed by the method's class name; every combination is run (a full factorial grid).

Outputs, in a new ``runs/<timestamp>-tune/`` directory: ``tune.md`` and ``tune.json`` (every
candidate's objective and main metrics, the chosen one marked), ``tune.png`` (the objective of
each candidate, one panel per method) and ``tuned_methods.yaml``, a config fragment with the
chosen ``methods:`` list for ``unlearnkit run -c experiment.yaml -c tuned_methods.yaml``; each
seed's ordinary run report is beside them.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.unlearner import Unlearner

__all__ = [
    "Candidate",
    "TuningResult",
    "choose",
    "expand_grid",
    "tune_command",
    "tuned_methods_yaml",
]

#: A row metric key: ``split/metric`` (``gap/avg``, ``forget/ua``, ``test/recall@20``, ...),
#: or one of the few summary keys without a split (``tow``, the tug-of-war score).
_METRIC_KEY = re.compile(r"[A-Za-z0-9_]+/[A-Za-z0-9_@.]+")
_BARE_KEYS = ("tow",)

#: Columns of ``tune.md`` besides the objective (when the rows have them).
TUNE_COLUMNS = ("forget/acc", "retain/acc", "test/acc", "mia/efficacy", "time/unlearn_s")


@dataclass
class Candidate:
    """One grid point: a method with some hyper-parameters changed.

    Attributes:
        base: the method's class name (the grid key).
        changes: the hyper-parameters set by the grid, e.g. ``{"lr": 0.01}`` (empty for a method
            without a grid: it runs once, as configured).
        method: the method built with them.
        configured: the method as the experiment configured it (before the grid's changes).
        name: its row name in the run's report (``SalUn``, ``SalUn#2``, ...).
        scores: the objective on each (seed, request), in order.
        metrics: every row metric, averaged over (seed, request).
        failed: the first error, when a run of this candidate failed.
    """

    base: str
    changes: dict[str, Any]
    method: Unlearner
    configured: Unlearner | None = None
    name: str = ""
    scores: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    failed: str | None = None
    _sums: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def add_row(self, metrics: Mapping[str, Any], objective: str) -> None:
        """Add one finished report row (its objective and its finite numeric metrics)."""
        value = metrics.get(objective)
        if value is not None and math.isfinite(float(value)):
            self.scores.append(float(value))
        for key, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                self._sums.setdefault(key, []).append(float(v))
        self.metrics = {k: sum(vs) / len(vs) for k, vs in self._sums.items()}

    @property
    def objective(self) -> float:
        """Mean objective over (seed, request); NaN when a run failed or none finished."""
        if self.failed or not self.scores:
            return math.nan
        return sum(self.scores) / len(self.scores)

    @property
    def label(self) -> str:
        """``lr=0.01, epochs=2`` (or ``as configured``)."""
        return ", ".join(f"{k}={v}" for k, v in self.changes.items()) or "as configured"


@dataclass
class TuningResult:
    """The outcome of :func:`tune_command`: every candidate, the choice per method, the files.

    Attributes:
        candidates: every grid point, in grid order.
        chosen: ``{class name: the chosen Candidate}`` (methods with a grid only).
        objective: the metric key scored (e.g. ``gap/avg``).
        maximize: whether larger is better.
        run_dir: the tune directory.
    """

    candidates: list[Candidate]
    chosen: dict[str, Candidate]
    objective: str
    maximize: bool
    run_dir: Path | None


def expand_grid(
    methods: Sequence[Unlearner],
    grid: Mapping[str, Mapping[str, Sequence[Any]]],
    *,
    reference: type | None = None,
) -> list[Candidate]:
    """Every combination of the grid's values for each method named in ``grid``.

    Methods the grid does not name run once, as configured (so the reference ``Retrain`` row
    and fixed comparison rows can stay in the same run).

    Args:
        methods: the experiment's methods, with their base hyper-parameters.
        grid: ``{class name: {hyper-parameter: [values, ...]}}`` (a full class path is read as
            its class name).
        reference: the job's reference method (``Retrain``): its row is the target every
            candidate is scored against, so it cannot be tuned.

    Returns:
        The candidates, method by method in ``methods`` order, grid points in the order of
        ``itertools.product`` over the hyper-parameters as listed.

    Raises:
        ValueError: a grid key names no method of the experiment, the reference, or a method
            listed twice; a hyper-parameter the method does not take; an empty value list; a
            value of the wrong type for the hyper-parameter's annotation.
    """
    names = [type(m).__name__ for m in methods]
    grid = {str(key).rpartition(".")[2]: params for key, params in grid.items()}
    for key, params in grid.items():
        if reference is not None and key == reference.__name__:
            raise ValueError(
                f"{key} is the reference every candidate is scored against (its row is the "
                "retrained model); it cannot be tuned: remove it from the grid"
            )
        if key not in names:
            raise ValueError(
                f"the grid names {key!r}, which is not among the experiment's methods "
                f"({', '.join(names)}); add it under methods: or fix the grid key"
            )
        if names.count(key) > 1:
            raise ValueError(
                f"{key} is listed {names.count(key)} times under methods:; a tuned method must "
                "appear once (its grid makes the variants)"
            )
        known = methods[names.index(key)].get_params()
        for param, values in params.items():
            if param not in known:
                raise ValueError(
                    f"{key} has no hyper-parameter {param!r}; it takes: {', '.join(sorted(known))}"
                )
            if isinstance(values, (str, bytes)) or not list(values):
                raise ValueError(f"grid {key}.{param} must be a non-empty list of values")
            _check_types(type(methods[names.index(key)]), key, param, list(values))
    out: list[Candidate] = []
    for method, name in zip(methods, names, strict=True):
        params = grid.get(name)
        if not params:
            out.append(Candidate(name, {}, method))
            continue
        keys = list(params)
        for values in itertools.product(*(list(params[k]) for k in keys)):
            changes = dict(zip(keys, values, strict=True))
            variant = type(method)(**{**method.get_params(), **changes})
            out.append(Candidate(name, changes, variant, configured=method))
    return out


def _check_types(cls: type, key: str, param: str, values: list[Any]) -> None:
    """Each value must fit the hyper-parameter's annotation (checked as LightningCLI would).

    Raises:
        ValueError: a value of the wrong type, with the annotation.
    """
    import inspect

    from jsonargparse import ArgumentParser

    annotation = inspect.signature(cls.__init__).parameters[param].annotation
    if annotation is inspect.Parameter.empty:
        return
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "method", skip={p for p in _init_names(cls) if p != param})
    for value in values:
        try:
            parser.parse_object({"method": {param: value}})
        except Exception as err:  # jsonargparse's ArgumentError and its type errors
            raise ValueError(
                f"grid {key}.{param}: {value!r} is not a valid value for `{param}: "
                f"{getattr(annotation, '__name__', annotation)}`"
            ) from err


def _init_names(cls: type) -> list[str]:
    import inspect

    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


def name_candidates(candidates: Sequence[Candidate], reference: type) -> None:
    """Give each candidate the row name the run's report will use (``Name``, ``Name#2``, ...)."""
    from unlearnkit.runs import row_names

    names = row_names([c.method for c in candidates], reference)
    for candidate, name in zip(candidates, names, strict=True):
        candidate.name = name


def score(
    candidates: Sequence[Candidate], rows: Sequence[Mapping[str, Any]], objective: str
) -> None:
    """Collect each candidate's objective and mean metrics from one run's report rows.

    Called once per seed; a failed row marks its candidate failed (never chosen).

    Args:
        candidates: the grid, named by :func:`name_candidates`.
        rows: one run's report rows ``{"method", "metrics", "status"?, "error"?}``.
        objective: the metric key scored.

    Raises:
        ValueError: no finished row has the objective (the message lists the metric keys).
    """
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(str(row["method"]), []).append(row)
    available: set[str] = set()
    for candidate in candidates:
        for row in by_name.get(candidate.name, []):
            if row.get("status") == "failed":
                candidate.failed = candidate.failed or str(row.get("error", "failed"))
                continue
            metrics = row.get("metrics") or {}
            available |= set(metrics)
            candidate.add_row(metrics, objective)
    if available and objective not in available:
        raise ValueError(
            f"no row has the objective {objective!r}; the rows have: {', '.join(sorted(available))}"
        )


def choose(candidates: Sequence[Candidate], *, maximize: bool = False) -> dict[str, Candidate]:
    """The best candidate of each tuned method (ties: the first in grid order).

    Methods that ran only as configured are not in the result. A method all of whose
    candidates failed is left out as well (its rows say why).

    Args:
        candidates: the scored grid (:func:`score`).
        maximize: larger objective is better (default: smaller, e.g. Avg. Gap).

    Returns:
        ``{class name: chosen Candidate}``.
    """
    chosen: dict[str, Candidate] = {}
    tuned = {c.base for c in candidates if c.changes}
    for base in tuned:
        finite = [c for c in candidates if c.base == base and math.isfinite(c.objective)]
        if finite:  # max/min return the first of equal values: ties go to grid order
            pick = max if maximize else min
            chosen[base] = pick(finite, key=lambda c: c.objective)
    return chosen


def tuned_methods_yaml(
    candidates: Sequence[Candidate], chosen: Mapping[str, Candidate], *, header: str
) -> str:
    """The ``methods:`` fragment: every method of the experiment, each tuned one as chosen.

    Each entry names the full class path and every ``__init__`` argument, so the fragment
    means the same thing whatever the defaults become. A tuned method whose candidates all
    failed keeps the settings the experiment configured.

    Args:
        candidates: every grid point, in grid order (:func:`expand_grid`).
        chosen: the choice per class name (:func:`choose`).
        header: text written as ``#`` comment lines above the YAML (what chose, and how to use it).

    Returns:
        YAML text ``methods: [{class_path, init_args}, ...]``, one entry per method.
    """
    import yaml

    entries, seen = [], set()
    for candidate in candidates:
        if candidate.base in seen:
            continue
        seen.add(candidate.base)
        if candidate.base in chosen:
            method = chosen[candidate.base].method
        else:  # not tuned, or every candidate failed: as the experiment configured it
            method = candidate.configured or candidate.method
        cls = type(method)
        entry: dict[str, Any] = {"class_path": f"{cls.__module__}.{cls.__qualname__}"}
        params = method.get_params()
        if params:
            entry["init_args"] = params
        entries.append(entry)
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    return lines + yaml.safe_dump({"methods": entries}, sort_keys=False)


def _table(result: TuningResult, columns: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The grid as report rows (one per tuned candidate, named ``Method setting``, the chosen
    one marked) and their columns (the objective first), for the report's table renderers."""
    keys = [result.objective, *(k for k in columns if k != result.objective)]
    rows = []
    for c in result.candidates:
        if not c.changes:
            continue
        mark = " (chosen)" if result.chosen.get(c.base) is c else " (failed)" if c.failed else ""
        metrics = {k: c.metrics.get(k) for k in keys}
        metrics[result.objective] = None if c.failed else c.objective
        rows.append({"method": f"{c.base} {c.label}{mark}", "metrics": metrics})
    return rows, keys


def write_tuning(result: TuningResult, *, header: str, requests: Sequence[str]) -> list[Path]:
    """Write ``tune.md``, ``tune.json``, ``tune.png`` and ``tuned_methods.yaml`` (atomically)."""
    from unlearnkit.atomic import atomic_write_bytes
    from unlearnkit.evaluation.plots import plot_tuning
    from unlearnkit.evaluation.report import format_markdown_table, is_percent_metric

    run_dir = Path(result.run_dir or ".")
    columns = [k for k in TUNE_COLUMNS if any(k in c.metrics for c in result.candidates)]
    title = (
        f"# Tuning by {result.objective} ({'largest' if result.maximize else 'smallest'} wins)\n\n"
        f"Calibration request(s): {', '.join(requests)}. Each value is the mean over seeds and "
        "requests; accuracies and rates in %, times in s.\n\n"
    )
    rows, keys = _table(result, columns)
    table = format_markdown_table(rows, keys, sort_methods=False)
    written = [atomic_write_bytes(run_dir / "tune.md", (title + table).encode())]
    document = {
        "objective": result.objective,
        "maximize": result.maximize,
        "requests": list(requests),
        "candidates": [
            {
                "method": c.base,
                "row": c.name,
                "changes": c.changes,
                "objective": None if not math.isfinite(c.objective) else c.objective,
                "scores": c.scores,
                "metrics": c.metrics,
                "failed": c.failed,
                "chosen": result.chosen.get(c.base) is c,
            }
            for c in result.candidates
            if c.changes
        ],
    }
    text = json.dumps(document, indent=2, default=str, allow_nan=False) + "\n"
    written.append(atomic_write_bytes(run_dir / "tune.json", text.encode()))
    panels = {
        base: [
            (c.label, c.objective, result.chosen.get(base) is c)
            for c in result.candidates
            if c.base == base
        ]
        for base in dict.fromkeys(c.base for c in result.candidates if c.changes)
    }
    if panels:
        written.append(
            plot_tuning(
                panels,
                run_dir / "tune.png",
                objective=result.objective,
                percent=is_percent_metric(result.objective),
            )
        )
    fragment = tuned_methods_yaml(result.candidates, result.chosen, header=header)
    written.append(atomic_write_bytes(run_dir / "tuned_methods.yaml", fragment.encode()))
    return written


def tune_parser(job_parser: Any) -> Any:
    """A job's ``unlearnkit run`` parser with the tuning options added (``--grid``,
    ``--objective``, ``--maximize``)."""
    from jsonargparse import ActionYesNo

    parser = job_parser()
    parser.prog = "unlearnkit tune"
    parser.description = (
        "Choose hyper-parameters per method on the experiment's forget request(s): run every "
        "combination of --grid as an ordinary run (original and retrained models from the "
        "cache), score each by --objective (default gap/avg, smallest wins), print the grid, "
        "and write tune.md / tune.json / tune.png / tuned_methods.yaml to a new run directory. "
        "Without -c the embedded default experiment is tuned."
    )
    parser.add_argument(
        "--grid",
        type=dict[str, dict[str, list[Any]]],
        default={},
        help="{MethodClassName: {hyper_parameter: [values, ...]}}, e.g. "
        "'{FineTune: {lr: [0.01, 0.02]}}'; every combination runs",
    )
    parser.add_argument(
        "--objective",
        type=str,
        default="gap/avg",
        help="row metric to score (gap/avg = mean |metric - retrain's| over UA, RA, TA, "
        "MIA-efficacy); averaged over seeds and forget requests",
    )
    parser.add_argument(
        "--maximize",
        action=ActionYesNo,
        default=False,
        help="larger objective is better (e.g. --objective test/acc --maximize)",
    )
    return parser


def check_objective(objective: str) -> None:
    """Refuse, before any run, an ``--objective`` that cannot be a row metric key.

    Keys are ``split/metric`` or ``tow`` (a run's ``report.json`` lists those its evaluator
    reports; ``objective:`` in a ``-c`` YAML is the same option). A
    well-formed key that no row has is still only found after the first seed's run (the
    evaluator's keys are known only once it has run): :func:`score` names the keys then.

    Raises:
        ValueError: ``objective`` is neither ``split/metric`` nor ``tow``.
    """
    if objective not in _BARE_KEYS and not _METRIC_KEY.fullmatch(objective):
        raise ValueError(
            f"--objective {objective!r} is not a metric key: keys are split/metric, e.g. gap/avg "
            "(the default), forget/ua, retain/acc, test/acc, mia/efficacy, time/unlearn_s, or "
            "test/recall@20 for a recommender, or tow; a run's report.json lists them all"
        )


def tune_command(argv: list[str], *, job_parser: Any, run: Any, reference: type) -> int:
    """``unlearnkit tune``: parse, run every grid point, choose, write and print.

    Args:
        argv: the words after ``tune``.
        job_parser: the job's ``run_parser`` (vision or recommender).
        run: the job's ``run_instantiated``.
        reference: the job's reference method class (its row is ``retrain``).

    Returns:
        0, or 1 when some candidate failed (it is marked in the files and left out of the
        choice).

    Raises:
        ValueError: an empty grid, a bad grid (see :func:`expand_grid`), ``--resume``, or an
            objective no row has.
    """
    from unlearnkit.evaluation.report import new_run_dir
    from unlearnkit.jobs import (
        _failures,
        _quiet_logging,
        default_to_embedded_experiment,
        prepare_job,
    )
    from unlearnkit.runs import is_global_zero, with_params

    parser = tune_parser(job_parser)
    default_to_embedded_experiment(parser, argv)
    if any(a == "--resume" or a.startswith("--resume=") for a in argv):
        raise ValueError(
            "--resume is for `unlearnkit run`; run the tune again instead (a new directory: "
            "its original, retrained models and evaluations come from the cache)"
        )
    init, config, common = prepare_job(parser, argv)
    check_objective(init.objective)
    if not init.grid:
        raise ValueError(
            "tune needs a --grid, e.g. --grid '{FineTune: {lr: [0.01, 0.02]}}' "
            "(or grid: in a -c YAML; see configs/tune/)"
        )
    candidates = expand_grid(init.methods, init.grid, reference=reference)
    name_candidates(candidates, reference)
    seeds = list(init.seeds or [init.seed])
    parent = (
        new_run_dir(Path(init.output), f"{init.name}-tune" if init.name else "tune")
        if is_global_zero()
        else None
    )
    failed: list[str] = []
    requests: list[str] = []
    with _quiet_logging(init.quiet):
        for seed in seeds:
            methods = [c.method for c in candidates]
            if init.seeds:  # as `run --seeds`: every method re-seeded with the run's seed
                methods = [with_params(m, seed=seed) for m in methods]
            result = run(
                init,
                methods,
                seed=seed,
                output=parent or Path(init.output),
                name=f"seed{seed}",
                config={**config, "seed": seed},
                **common,
            )
            score(candidates, result.rows, init.objective)
            requests = list(dict.fromkeys(str(r.get("forget", "")) for r in result.rows))
            failed += [f"seed {seed}: {line}" for line in result.failed]
    if parent is None:  # a DDP rank other than 0
        return 0
    tuned = TuningResult(
        candidates,
        choose(candidates, maximize=init.maximize),
        init.objective,
        init.maximize,
        parent,
    )
    header = (
        f"unlearnkit tune: chosen by {init.objective} ({'max' if init.maximize else 'min'}) "
        f"on {', '.join(requests)}, seeds {', '.join(map(str, seeds))}\n"
        f"grid: {json.dumps(init.grid, default=str)}\n"
        f"use: unlearnkit run -c <experiment.yaml> -c {parent / 'tuned_methods.yaml'}"
    )
    write_tuning(tuned, header=header, requests=requests)
    from unlearnkit.evaluation.report import console_table, render_text

    rows, keys = _table(tuned, [k for k in TUNE_COLUMNS if any(k in c.metrics for c in candidates)])
    direction = "max" if init.maximize else "min"
    print(render_text(console_table(rows, keys, title=f"Tuning by {init.objective} ({direction})")))
    for base, c in tuned.chosen.items():
        print(f"{base}: {c.label}  ({init.objective} {c.objective:.4g})")
    print(f"tuning written to {parent} (tuned_methods.yaml: the chosen methods as a config)")
    return _failures(failed)
