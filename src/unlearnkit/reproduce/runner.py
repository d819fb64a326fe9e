"""Run a table's grid through :func:`unlearnkit.vision.experiment.run_experiment`, aggregate, format.

Each (arch, seed) is one ``unlearnkit run`` job: the experiment config of the spec, parsed and
instantiated by the ``run`` command's own parser (:func:`unlearnkit.vision.experiment.run_parser`) and run by
:func:`~unlearnkit.vision.experiment.run_experiment` with every forget request of the grid, so originals
and retrained references come from (and go to) the same model cache as ``unlearnkit run``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import math
import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unlearnkit.evaluation.aggregate import Aggregate, aggregate, format_mean_std
from unlearnkit.evaluation.aggregate import to_display_units as _display
from unlearnkit.evaluation.report import format_value, is_percent_metric, is_seconds_metric
from unlearnkit.reproduce.tables import TableSpec

__all__ = [
    "NOT_AVAILABLE",
    "Aggregate",
    "ReproduceOptions",
    "aggregate",
    "evaluate_checks",
    "format_per_request",
    "format_report",
    "machine_description",
    "run_grid",
    "run_table",
]

log = logging.getLogger(__name__)

#: What the paper column shows for a cell whose number could not be read.
NOT_AVAILABLE = "n/a (not available offline)"

#: Column headers of well-known metric keys (others show the key itself).
LABELS = {
    "retain/acc": "D_r acc, train",
    "forget/acc": "D_f acc, train",
    "test/acc": "D_r acc, test",
    "test_forget/acc": "D_f acc, test",
    "mia/entropy_lr": "MIA (entropy LR)",
    "mia/efficacy": "MIA-efficacy",
    "forget/ua": "UA",
    "gap/avg": "Avg. Gap",
    "time/unlearn_s": "time",
    "time/speedup": "RTE speed-up",
}


@dataclass
class ReproduceOptions:
    """What to run (see ``unlearnkit reproduce --help``).

    Args:
        seeds: seeds of model initialisation and training (default: the spec's).
        archs: architectures (default: the spec's CPU archs).
        smoke: apply the spec's ``smoke`` overrides (tiny subset, one seed, one request).
        max_requests: run only the first N forget requests.
        train_limit: train on a seeded subset of this many samples (recorded in the output).
        test_limit: likewise for the test set.
        data_root: override ``data.init_args.root``.
        output: parent of the new run directory.
        cache_dir: model cache and SSD importance cache root (default ``default_cache_dir()``).
        trainer: extra ``lightning.Trainer`` arguments.
        training: fields of the table's ``training`` schedule to replace (e.g.
            ``{"gradient_restriction": 0.0}``: a second run of a table whose original is trained
            with IAU's GR loss, on a plainly trained original); recorded in the output as not the
            table's setting.
    """

    seeds: list[int] | None = None
    archs: list[str] | None = None
    smoke: bool = False
    max_requests: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    data_root: str | None = None
    output: str = "runs"
    cache_dir: str | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(float(value))


def _cell(metric: str, agg: Aggregate | None) -> str:
    return format_mean_std(metric, agg)


def evaluate_checks(
    spec: TableSpec,
    stats: Mapping[tuple[Any, ...], Mapping[str, Aggregate]],
    arch: str,
    *,
    per_request: Mapping[tuple[Any, ...], Mapping[str, Aggregate]] | None = None,
) -> list[dict[str, Any]]:
    """The spec's trend checks on one arch's aggregates.

    Kinds: ``at_most``/``at_least`` (the row's mean against a fixed value, metric units),
    ``within`` (|row − reference| <= value), ``at_most_ratio`` / ``at_least_ratio`` (row /
    reference <= / >= value; n/a when the reference is not positive), ``among_smallest`` (the
    row's mean ranks within the k smallest of the unlearning methods' rows of the table,
    ``original`` and ``retrain`` excluded; ties share the better rank). The row is read in the
    check's ``request`` (default: the mean over the requests); the reference is ``of_row``
    (default: the row itself) in ``of_request`` (default: the check's ``request``).

    Args:
        spec: the table spec.
        stats: ``aggregate(rows)``, keyed ``(arch, row)``.
        arch: the arch whose numbers are checked.
        per_request: ``aggregate(rows, group=("arch", "forget", "method"))``, keyed ``(arch,
            request label, row)``; needed by checks that name a request.

    Returns:
        One dict per check: ``claim``, ``arch``, ``row``, ``metric``, ``request`` (or None),
        ``ours`` (text), ``target`` (text), ``status`` (``"met"``, ``"MISSED"`` or ``"n/a"``
        when a number is missing).

    Raises:
        ValueError: a check names a request and ``per_request`` was not given.
    """

    def lookup(row: str, metric: str, request: str | None) -> Aggregate | None:
        if request is None:
            return stats.get((arch, row), {}).get(metric)
        if per_request is None:
            raise ValueError(
                f"the check of {row} {metric} names the request {request!r}: pass "
                "per_request=aggregate(rows, group=('arch', 'forget', 'method'))"
            )
        return per_request.get((arch, request, row), {}).get(metric)

    def name(row: str, request: str | None, *, tagged: bool) -> str:
        return f"{row} [{request}]" if tagged and request is not None else row

    results = []
    for check in spec.checks:
        row, metric = check["row"], check["metric"]
        request = check.get("request")
        ours = lookup(row, metric, request)
        ref_row = check.get("of_row", row)
        ref_request = check.get("of_request", request)
        ref = (
            lookup(ref_row, metric, ref_request)
            if ("of_row" in check or "of_request" in check)
            else None
        )
        across = ref_request != request  # name the requests in the target text
        lhs, rhs = name(row, request, tagged=across), name(ref_row, ref_request, tagged=across)
        where = f" ({request})" if request is not None and not across else ""
        status, ours_text, target = "n/a", "—", ""
        if "at_most" in check or "at_least" in check:
            bound = float(check.get("at_most", check.get("at_least")))
            sign = "≤" if "at_most" in check else "≥"
            target = f"{sign} {format_value(metric, bound)}{where}"
            if ours is not None:
                ours_text = format_value(metric, ours.mean)
                ok = ours.mean <= bound if "at_most" in check else ours.mean >= bound
                status = "met" if ok else "MISSED"
        elif "within" in check:
            tol = float(check["within"])
            target = f"abs({lhs} − {rhs}) ≤ {_display(metric, tol):.2f}{where}"
            if ours is not None and ref is not None:
                diff = ours.mean - ref.mean
                ours_text = f"{_display(metric, diff):+.2f}"
                status = "met" if abs(diff) <= tol else "MISSED"
        elif "among_smallest" in check:
            k = int(check["among_smallest"])
            target = f"rank ≤ {k} of the methods (1 = smallest){where}"
            others = [
                agg.mean
                for other in spec.rows
                if other not in ("original", "retrain", row)
                and (agg := lookup(other, metric, request)) is not None
            ]
            if ours is not None:
                rank = 1 + sum(value < ours.mean for value in others)
                ours_text = f"rank {rank} of {len(others) + 1} ({format_value(metric, ours.mean)})"
                status = "met" if rank <= k else "MISSED"
        else:
            at_most = "at_most_ratio" in check
            ratio = float(check["at_most_ratio" if at_most else "at_least_ratio"])
            target = f"{lhs} / {rhs} {'≤' if at_most else '≥'} {ratio:g}{where}"
            if ours is not None and ref is not None and ref.mean > 0:
                value = ours.mean / ref.mean
                ours_text = f"{value:.3g}"
                status = "met" if (value <= ratio if at_most else value >= ratio) else "MISSED"
        results.append(
            {
                "claim": check.get("claim", f"{row} {metric}"),
                "arch": arch,
                "row": row,
                "metric": metric,
                "request": request,
                "ours": ours_text,
                "target": target,
                "status": status,
            }
        )
    return results


def machine_description() -> str:
    """One line: host OS, CPU, core count, torch/Python versions, accelerator."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, {gpu}, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def _table_lines(
    spec: TableSpec, stats: Mapping[tuple[Any, ...], Mapping[str, Aggregate]], key: Callable
) -> list[str]:
    """One Markdown table: a line per spec row, a column per metric; ``key(row)`` is the
    ``stats`` key of a row."""
    heads = [
        LABELS.get(c, c)
        + (" (%)" if is_percent_metric(c) else " (s)" if is_seconds_metric(c) else "")
        for c in spec.columns
    ]
    lines = ["| row | " + " | ".join(heads) + " |", "| --- |" + " ---: |" * len(spec.columns)]
    for row in spec.rows:
        cells = [_cell(c, stats.get(key(row), {}).get(c)) for c in spec.columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _requests_of(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The request labels in ``rows``: the spec's order first, then any other as they appear."""
    present = list(dict.fromkeys(str(r["forget"]) for r in rows))
    return [r for r in spec.requests if r in present] + [
        r for r in present if r not in spec.requests
    ]


def format_report(
    spec: TableSpec,
    rows: Sequence[Mapping[str, Any]],
    *,
    header: Mapping[str, Any],
) -> str:
    """The Markdown report: one table per arch (mean ± std), with more than one forget request
    the "Per forget request" tables (:func:`format_per_request`), the paper comparison (each
    cell against the mean over the requests or, for a cell with a ``request``, that request's
    mean), the checks.

    Args:
        spec: the table spec.
        rows: all report rows (with ``arch``, ``seed``, ``forget``, ``method``, ``metrics``).
        header: ``date``, ``machine``, ``seeds``, ``requests``, ``mode`` (text) for the preamble.

    Returns:
        Markdown text ending in a newline.
    """
    stats = aggregate(rows)
    per_request = aggregate(rows, group=("arch", "forget", "method"))
    archs = list(dict.fromkeys(str(r["arch"]) for r in rows))
    several = len(_requests_of(spec, rows)) > 1
    lines = [
        f"# `{spec.name}`: {spec.title}",
        "",
        f"Paper: {spec.paper}.",
        f"Run: {header['date']} on {header['machine']}.",
        f"Seeds {header['seeds']}; forget requests {header['requests']}; {header['mode']}.",
        "Cells: mean ± std over seeds (each seed averaged over the forget requests"
        + (
            "; the per-request tables and the paper cells that name a request: that request alone"
            if several
            else ""
        )
        + "); accuracies and attack rates in percent, times in seconds.",
    ]
    for arch in archs:
        lines += ["", f"## {arch}", ""]
        lines += _table_lines(spec, stats, lambda row, arch=arch: (arch, row))
    if several:
        lines += ["", format_per_request(spec, rows).rstrip("\n")]
    lines += ["", "## Paper comparison", ""]
    requests = [None, *spec.requests]
    cells = [
        (arch, request, row, metric, cell)
        for arch in archs
        for row in spec.rows
        for metric in spec.columns
        for request in requests  # a row's requests side by side
        if (cell := spec.paper_cell(arch, row, metric, request)) is not None
    ]
    missing = [c for c in cells if c[4].value is None]
    if not spec.paper_comparison:
        lines.append(
            "No number of the paper for this setting could be read offline, so this table "
            "compares nothing with the paper; "
            + (
                "its targets are the trend checks below."
                if spec.checks
                else "it has no trend check."
            )
        )
        lines.append("")
    elif missing:
        lines.append(
            f"{len(missing)} of the {len(cells)} paper cells for these archs are empty in "
            f"`{spec.name}.csv` (not obtainable offline; never guessed): "
            + ", ".join(f"{r} {LABELS.get(m, m)}" for _, _, r, m, _ in missing[:6])
            + (", ..." if len(missing) > 6 else "")
        )
        lines.append("")
    if cells:
        lines.append(
            "| arch | request | row | metric | ours | paper | Δ (ours − paper) | setting matches "
            "| source |"
        )
        lines.append("| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |")
    else:
        lines.append(f"`{spec.name}.csv` has no paper cell for these archs.")
    for arch, request, row, metric, cell in cells:
        if request is None:
            agg = stats.get((arch, row), {}).get(metric)
        else:
            agg = per_request.get((arch, request, row), {}).get(metric)
        matches = "yes" if cell.setting_matches else f"no: {cell.note}"
        if cell.value is None:
            paper, delta, source = NOT_AVAILABLE, "—", cell.source
        else:
            paper = f"{cell.value:.2f}"
            delta = f"{_display(metric, agg.mean) - cell.value:+.2f}" if agg is not None else "—"
            kind = {True: " (primary)", False: " (secondary)", None: ""}[cell.primary]
            source = f"{cell.source}{kind}"
        lines.append(
            f"| {arch} | {request or 'mean over requests'} | {row} | {LABELS.get(metric, metric)} "
            f"| {_cell(metric, agg)} | {paper} | {delta} | {matches} | {source} |"
        )
    if spec.checks:
        lines += ["", "## Trend checks (the paper's claims on our numbers)", ""]
        lines.append("| arch | claim | ours | target | status |")
        lines.append("| --- | --- | ---: | --- | --- |")
        for arch in archs:
            for res in evaluate_checks(spec, stats, arch, per_request=per_request):
                lines.append(
                    f"| {arch} | {res['claim']} | {res['ours']} | {res['target']} | {res['status']} |"
                )
    if spec.notes:
        lines += ["", "## Notes", "", spec.notes]
    return "\n".join(lines) + "\n"


# -- running -------------------------------------------------------------------------------------
def _resolve_root(path: str) -> Path:
    return Path(path).expanduser()


def build_config(
    spec: TableSpec, options: ReproduceOptions
) -> tuple[dict[str, Any], list[dict], list[int], list[str], str]:
    """The ``unlearnkit run`` config of the table under ``options``.

    Returns:
        ``(experiment config, forget requests, seeds, archs, mode text)``.

    Raises:
        FileNotFoundError: the data root does not exist.
        ValueError: bad option values.
    """
    config = copy.deepcopy(spec.experiment)
    forget = list(spec.forget)
    seeds = list(spec.seeds)
    archs = list(spec.archs)
    modes = []
    init = config.setdefault("data", {}).setdefault("init_args", {})
    if options.smoke:
        smoke = spec.smoke
        init.update(smoke.get("data", {}))
        config.setdefault("training", {}).update(smoke.get("training", {}))
        seeds = list(smoke.get("seeds", seeds[:1]))
        forget = forget[: int(smoke.get("max_requests", 1))]
        archs = list(smoke.get("archs", archs))
        modes.append(
            f"SMOKE run (train_limit={init.get('train_limit')}, test_limit={init.get('test_limit')}, "
            f"epochs={config.get('training', {}).get('epochs')}): numbers are not comparable"
        )
    if options.training:
        if not isinstance(options.training, dict):
            raise ValueError(f"--training must be a YAML mapping, got {options.training!r}")
        config.setdefault("training", {}).update(options.training)
        changed = ", ".join(f"{k}={v}" for k, v in options.training.items())
        modes.append(f"training override ({changed}): not the table's schedule")
    if options.seeds is not None:
        seeds = list(options.seeds)
    if options.archs is not None:
        archs = list(options.archs)
    if options.max_requests is not None:
        if options.max_requests < 1:
            raise ValueError(f"--max_requests must be >= 1, got {options.max_requests}")
        forget = forget[: options.max_requests]
    for key in ("train_limit", "test_limit"):
        value = getattr(options, key)
        if value is not None:
            init[key] = value
            modes.append(f"{key}={value} (a subset of the data; not the table's setting)")
    if options.data_root is not None:
        init["root"] = options.data_root
    if not seeds:
        raise ValueError("no seeds to run; pass --seeds 0 1 2")
    root = init.get("root")
    if root is not None and not _resolve_root(str(root)).exists():
        raise FileNotFoundError(
            f"data for table {spec.name!r} not found at {root} (relative to {Path.cwd()}); "
            "run from the project root next to ../shared/data, or pass --data_root DIR"
        )
    return config, forget, seeds, archs, "; ".join(modes) or "full setting of the spec"


def run_table(spec: TableSpec, options: ReproduceOptions) -> tuple[str, Path]:
    """Run the grid of ``spec`` and write ``table.md`` and ``results.json`` to a new run dir.

    Vision tables run through :func:`~unlearnkit.vision.experiment.run_experiment`, recommender tables
    (a :class:`~unlearnkit.recsys.data.RecDataModule` as data) through
    :func:`run_rec_table`; both with :func:`run_grid`.

    Args:
        spec: the table.
        options: what to run.

    Returns:
        ``(markdown, run directory)``.

    Raises:
        FileNotFoundError: data missing. ValueError: bad options or configs.
    """
    from unlearnkit.jobs import data_class
    from unlearnkit.recsys.data import RecDataModule
    from unlearnkit.vision.experiment import run_instantiated, run_parser

    data = spec.experiment.get("data") or {}
    class_path = data.get("class_path", "") if isinstance(data, dict) else str(data)
    if issubclass(data_class(class_path), RecDataModule):  # the recommender runner, same format
        return run_rec_table(spec, options)

    return run_grid(
        spec,
        options,
        parser=run_parser(),
        arch_override=lambda config, arch: {"arch": arch},
        run_cell=run_instantiated,
    )


def run_grid(
    spec: TableSpec,
    options: ReproduceOptions,
    *,
    parser: Any,
    arch_override: Callable[[dict[str, Any], str], dict[str, Any]],
    run_cell: Callable[..., Any],
) -> tuple[str, Path]:
    """Run ``spec``'s grid (archs × seeds, one experiment each) and write its table.

    For each arch, the ``unlearnkit run`` config ``{**experiment, "forget": requests,
    **arch_override(experiment, arch), "seed": first seed}`` is parsed and instantiated once by
    ``parser``; for each seed the methods are re-seeded (:func:`~unlearnkit.runs.with_params`)
    and ``run_cell(init, methods, seed=, output=, name=, cache_dir=, trainer=, config=)`` runs
    the experiment into ``<run dir>/<time>-<arch>-seed<seed>`` and returns its result (with
    ``rows``). ``table.md`` (:func:`format_report`, with the per-request tables when the grid
    ran more than one request) and ``results.json`` (header, config, rows, ``aggregate`` over seeds and ``per_request``) are
    written at the end; a failed grid leaves no empty run directory.

    Args:
        spec: the table.
        options: what to run.
        parser: the ``unlearnkit run`` parser of the table's kind.
        arch_override: the config keys that select an arch, e.g. ``{"arch": arch}``.
        run_cell: runs one experiment (see above).

    Returns:
        ``(markdown, run directory)``.

    Raises:
        FileNotFoundError: data missing. ValueError: bad options or configs.
    """
    from unlearnkit.atomic import atomic_write_bytes
    from unlearnkit.evaluation.report import new_run_dir
    from unlearnkit.runs import with_params

    config, forget, seeds, archs, mode = build_config(spec, options)
    run_dir = new_run_dir(Path(options.output), f"reproduce-{spec.name}")
    trainer = {"enable_progress_bar": sys.stderr.isatty(), **options.trainer}
    all_rows: list[dict[str, Any]] = []
    try:
        for arch in archs:
            cell = {**config, "forget": forget, **arch_override(config, arch), "seed": seeds[0]}
            # deep copies: jsonargparse turns nested dicts into Namespaces
            init = parser.instantiate(parser.parse_object(copy.deepcopy(cell)))
            for seed in seeds:
                methods = [with_params(m, seed=seed) for m in init.methods]
                log.info("reproduce %s: arch %s, seed %d", spec.name, arch, seed)
                result = run_cell(
                    init,
                    methods,
                    seed=seed,
                    output=run_dir,
                    name=f"{arch}-seed{seed}",
                    cache_dir=options.cache_dir,
                    trainer=trainer,
                    config=copy.deepcopy({**cell, "seed": seed}),
                )
                for row in result.rows:
                    metrics = {k: _plain_number(v) for k, v in row["metrics"].items()}
                    all_rows.append(
                        {
                            "arch": arch,
                            "seed": seed,
                            "forget": row["forget"],
                            "method": row["method"],
                            "metrics": metrics,
                        }
                    )
    except BaseException:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    header = {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": machine_description(),
        "seeds": seeds,
        "requests": [_label(f) for f in forget],
        "mode": mode,
    }
    markdown = format_report(spec, all_rows, header=header)
    detail = aggregate(all_rows, group=("arch", "method", "forget"))
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
        "per_request": [
            {
                "arch": k[0],
                "method": k[1],
                "forget": k[2],
                "metric": m,
                "mean": a.mean,
                "std": a.std,
                "n": a.n,
            }
            for k, metrics in detail.items()
            for m, a in metrics.items()
        ],
    }
    atomic_write_bytes(run_dir / "table.md", markdown.encode())
    text = json.dumps(document, indent=2, default=str, allow_nan=False)
    atomic_write_bytes(run_dir / "results.json", text.encode())
    return markdown, run_dir


def _label(request: Mapping[str, Any]) -> str:
    """The label :class:`~unlearnkit.data.ForgetSpec` prints for a request given as a dict."""
    from unlearnkit.data import ForgetSpec

    return ForgetSpec(**dict(request)).label


def _plain_number(value: Any) -> Any:
    return float(value) if _finite(value) else None


def format_per_request(spec: TableSpec, rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown "Per forget request": for each arch and forget request (in the spec's order), a
    table of mean ± std over seeds laid out as the main table."""
    stats = aggregate(rows, group=("arch", "forget", "method"))
    archs = list(dict.fromkeys(str(r["arch"]) for r in rows))
    lines = ["## Per forget request"]
    for arch in archs:
        for request in _requests_of(spec, [r for r in rows if str(r["arch"]) == arch]):
            lines += ["", f"### {arch}: {request}", ""]
            lines += _table_lines(spec, stats, lambda row, a=arch, q=request: (a, q, row))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# `unlearnkit reproduce` for recommender tables
# ------------------------------------------------------------------------------------------
def run_rec_table(spec: Any, options: Any) -> tuple[str, Path]:
    """Run a recommender table's grid with :func:`run_rec_experiment` (``unlearnkit reproduce``).

    The recommender twin of :func:`unlearnkit.reproduce.runner.run_table`, through the same
    :func:`~unlearnkit.reproduce.runner.run_grid` (same spec format, output files ``table.md``,
    ``results.json`` and each run's own report); the grid's ``archs`` are
    :class:`RecModelConfig` architectures (``lightgcn``, ``mf``), and the spec's ``experiment``
    is a recommender ``unlearnkit run`` config.

    Args:
        spec: the :class:`~unlearnkit.reproduce.tables.TableSpec`.
        options: the :class:`~unlearnkit.reproduce.runner.ReproduceOptions`.

    Returns:
        ``(markdown, run directory)``.

    Raises:
        ValueError: ``--train_limit`` / ``--test_limit`` (not supported on graphs: a subset of
            edges changes the graph), bad options or configs.
    """

    from unlearnkit.recsys.experiment import run_instantiated as run_rec_cell
    from unlearnkit.recsys.experiment import run_parser as rec_run_parser

    if options.train_limit is not None or options.test_limit is not None:
        raise ValueError(
            "--train_limit/--test_limit are not supported for recommender tables (a subset of "
            "the edges is another graph); use --smoke or --max_requests"
        )

    def arch_override(config: dict[str, Any], arch: str) -> dict[str, Any]:
        return {"model": {**config.get("model", {}), "arch": arch}}

    return run_grid(
        spec, options, parser=rec_run_parser(), arch_override=arch_override, run_cell=run_rec_cell
    )
