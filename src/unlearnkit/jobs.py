"""The ``unlearnkit run`` machinery the vision and recommender jobs share.

:func:`common_run_parser` builds a job's parser (``-c``, the job's options, then the shared
``--seed``, ``--output``, ``--name``, ``--cache_dir``, ``--threads``, ``--trainer``);
:func:`run_job` parses, records the config, instantiates, runs and prints. Each job
(:mod:`unlearnkit.vision.experiment`, :mod:`unlearnkit.recsys.experiment`) owns its parser and
``run_command``; :mod:`unlearnkit.cli` picks the job from the config's data class. Nothing here
imports ``unlearnkit.vision`` or ``unlearnkit.recsys``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

__all__ = [
    "common_run_parser",
    "data_class",
    "data_class_path",
    "default_experiment_path",
    "default_to_embedded_experiment",
    "resume_argv",
    "prepare_job",
    "run_job",
]

#: Where a DataModule named without its module (``class_path: DigitsDataModule``) is looked up.
DATA_MODULES = ("unlearnkit.datasets", "unlearnkit.recsys.data")


def default_experiment_path() -> Path:
    """The embedded default experiment (digits, class-0 and random-10% forgetting)."""
    return Path(str(resources.files("unlearnkit") / "configs" / "default.yaml"))


def default_to_embedded_experiment(parser: ArgumentParser, argv: list[str]) -> None:
    """Make the embedded default experiment ``parser``'s default config unless ``argv`` names a
    ``-c``/``--config`` of its own (``run``, ``train`` and ``tune`` without ``-c``); ``--help``
    then shows the default's values."""
    if not any(a in ("-c", "--config") or a.startswith("--config=") for a in argv):
        parser.default_config_files = [str(default_experiment_path())]


def common_run_parser(
    description: str, job_options: Callable[[ArgumentParser], None]
) -> ArgumentParser:
    """An ``unlearnkit run`` parser: ``-c``, the job's own options, then the shared ones.

    The shared options are ``--seed``, ``--seeds``, ``--threads``, ``--output``, ``--name``,
    ``--cache_dir``, ``--trainer``, ``--logger``, ``--quiet`` and ``--resume``; ``job_options`` adds the vision (:func:`run_parser`) or recommender
    (:func:`unlearnkit.recsys.experiment.run_parser`) job's data, forget requests, methods, model
    and schedule in between, so a dumped config lists them first.

    Args:
        description: the ``--help`` description.
        job_options: adds the job's options to the parser.

    Returns:
        The parser.
    """
    p = ArgumentParser(prog="unlearnkit run", description=description)
    p.add_argument("-c", "--config", action=ActionConfigFile, help="experiment YAML file")
    job_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of model init and training")
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        nargs="+",
        help="run the experiment once per seed (e.g. --seeds 0 1 2), each into its own "
        "sub-directory, and report mean ± std over seeds (seeds.md / seeds.json)",
    )
    p.add_argument(
        "--threads",
        type=int | None,
        default=None,
        help="CPU threads (default: cores - 1 with a passive OpenMP wait, or $OMP_NUM_THREADS; "
        "see unlearnkit.threads)",
    )
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
        help="extra lightning.Trainer arguments, e.g. {accelerator: gpu, devices: 2, strategy: ddp}",
    )
    p.add_argument(
        "--logger",
        type=Literal["csv", "tensorboard", "wandb", "none"],
        default="csv",
        help="Lightning logger of every model trained in the run, under <run dir>/logs/<request>/"
        "<model>/ (tensorboard and wandb need their package installed)",
    )
    p.add_argument(
        "--quiet",
        action=ActionYesNo,
        default=False,
        help="print only the table: no progress display, no phase lines",
    )
    p.add_argument(
        "--resume",
        type=str | None,
        default=None,
        help="finish the interrupted run in this directory: its config and rows are read from "
        "its report.json, the missing (or failed) rows are run and the report there completed",
    )
    return p


def run_job(
    parser: ArgumentParser,
    argv: list[str],
    run: Callable[..., Any],
    summary: Callable[[Any], str],
) -> int:
    """Parse ``argv``, record the config, instantiate, run, print the summary and the run dir.

    With ``--seeds`` the experiment runs once per seed (each into its own run directory under a
    parent one) and the mean ± std over seeds of every (request, method, metric) is printed and
    written beside them (``seeds.md``, ``seeds.json``).

    Args:
        parser: a :func:`common_run_parser` with ``--data``, ``--forget`` and ``--methods``.
        argv: the words after ``run``.
        run: ``run(init, methods, seed=, output=, name=, cache_dir=, trainer=, config=,
            progress=, logger=, resume=)`` runs the experiment of the instantiated config
            ``init`` and returns its result (with ``rows``, ``run_dir`` and ``failed``).
        summary: the text printed for a result.

    Returns:
        0, or 1 when a method failed (its row in the report says why; a bad command line exits
        through ``parser.error``).

    Raises:
        ValueError: ``--resume`` with ``--seeds``, a logger whose package is not installed, or
            what the run rejects.
    """
    init, config, common = prepare_job(parser, argv)
    with _quiet_logging(init.quiet):
        if init.seeds:
            return _run_seeds(init, run, summary, config=config, **common)
        result = run(
            init,
            init.methods,
            seed=init.seed,
            output=init.output,
            name=init.name,
            config=config,
            resume=init.resume,
            **common,
        )
    if result.run_dir is None:  # a DDP rank other than 0: rank 0 prints and reports
        return 0
    print(summary(result))
    print(f"report written to {result.run_dir}")  # --quiet too: where the result is
    return _failures(result.failed)


def prepare_job(
    parser: ArgumentParser, argv: list[str]
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Parse ``argv`` for a run-like job (``run``, ``tune``) and set it up before any work.

    Checks the Trainer's accelerator and the loggers, sets ``--threads``, and records the config.

    Args:
        parser: a :func:`common_run_parser` with ``--data``, ``--forget`` and ``--methods``.
        argv: the words after the subcommand.

    Returns:
        ``(init, config, common)``: the instantiated config, the config as recorded in reports
        (without ``resume``), and the keyword arguments every run of the job shares
        (``cache_dir``, ``trainer``, ``progress``, ``logger``).

    Raises:
        ValueError: ``--resume`` with ``--seeds``, a logger whose package is not installed, a
            missing accelerator, or what the parser rejects.
    """
    import yaml

    cfg = parse_or_explain(parser, argv)
    if cfg.data is None or not cfg.forget or not cfg.methods:
        parser.error(
            "an experiment needs data, forget and methods (see --help or configs/experiments/)"
        )
    from unlearnkit.module import check_trainer_arguments

    check_trainer_arguments(cfg.trainer)  # a missing GPU: one line, before any work
    if cfg.resume is not None and cfg.seeds:
        raise ValueError("--resume finishes one run: resume each seed's run directory on its own")
    config = yaml.safe_load(parser.dump(cfg, skip_none=False, format="yaml"))
    config.pop("resume", None)
    init = parser.instantiate(cfg)
    if init.threads is not None:
        _set_threads(init.threads)
    trainer = dict(init.trainer or {})
    from unlearnkit.runs import check_logger

    check_logger(init.logger)  # a logger that is not installed fails before any work
    if isinstance(trainer.get("logger"), str):
        check_logger(trainer["logger"])
    if init.quiet:
        trainer.setdefault("enable_progress_bar", False)
    common = {
        "cache_dir": init.cache_dir,
        "trainer": trainer,
        "progress": "quiet" if init.quiet else "auto",
        "logger": init.logger,
    }
    return init, config, common


def _failures(failed: list[str]) -> int:
    if not failed:
        return 0
    print(f"{len(failed)} method(s) failed (rows marked failed in the report):", file=sys.stderr)
    for line in failed:
        print(f"  {line}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _quiet_logging(quiet: bool) -> Iterator[None]:
    """With ``quiet``, unlearnkit's and Lightning's info lines are not shown (warnings are)."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("unlearnkit", "lightning", "lightning.pytorch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _run_seeds(
    init: Any, run: Callable[..., Any], summary: Callable[[Any], str], *, config: dict, **common
) -> int:
    """``--seeds``: one run per seed under one parent run directory, then mean ± std."""
    import json

    from unlearnkit.atomic import atomic_write_bytes
    from unlearnkit.evaluation.aggregate import aggregate, format_aggregate_table
    from unlearnkit.evaluation.report import REPORT_COLUMNS, new_run_dir
    from unlearnkit.runs import is_global_zero, with_params

    parent = new_run_dir(Path(init.output), init.name) if is_global_zero() else Path(init.output)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    results = []
    for seed in init.seeds:
        methods = [with_params(m, seed=seed) for m in init.methods]
        result = run(
            init,
            methods,
            seed=seed,
            output=parent,
            name=f"seed{seed}",
            config={**config, "seed": seed, "seeds": list(init.seeds)},
            **common,
        )
        results.append(result)
        rows += [{**row, "seed": seed} for row in result.rows]
        failed += [f"seed {seed}: {line}" for line in result.failed]
    if results[-1].run_dir is None:  # a DDP rank other than 0
        return 0
    stats = aggregate(rows, group=("forget", "method"))
    keys = list(dict.fromkeys(k for metrics in stats.values() for k in metrics))
    columns = [c for c in REPORT_COLUMNS if c in keys]
    table = format_aggregate_table(stats, columns)
    header = f"Mean ± std over seeds {', '.join(map(str, init.seeds))} (sample std)."
    atomic_write_bytes(parent / "seeds.md", f"# {header}\n\n{table}".encode())
    document = {
        "seeds": list(init.seeds),
        "runs": {str(s): str(r.run_dir) for s, r in zip(init.seeds, results, strict=True)},
        "aggregate": [
            {
                "forget": key[0],
                "method": key[1],
                "metric": metric,
                "mean": agg.mean,
                "std": agg.std,
                "n": agg.n,
                "per_seed": agg.values,
            }
            for key, metrics in stats.items()
            for metric, agg in metrics.items()
        ],
        "config": config,
    }
    text = json.dumps(document, indent=2, default=str, allow_nan=False) + "\n"
    atomic_write_bytes(parent / "seeds.json", text.encode())
    print(header)
    print(_seeds_console(stats), end="")
    print(f"per-seed reports in {parent} (seeds.md has every metric)")
    return _failures(failed)


def _seeds_console(stats: dict[Any, dict[str, Any]]) -> str:
    """The mean ± std tables as rich tables (one per request) that fit 100 columns."""
    from unlearnkit.evaluation.report import (
        CONSOLE_COLUMNS,
        console_table,
        format_value,
        render_text,
    )

    def cell(key: str) -> Any:
        return lambda agg: f"{format_value(key, agg.mean)} ± {format_value(key, agg.std)}"

    requests: dict[str, list[dict[str, Any]]] = {}
    for (forget, method), metrics in stats.items():
        requests.setdefault(str(forget), []).append({"method": method, "metrics": metrics})
    columns = [c for c in CONSOLE_COLUMNS if c not in ("forget/js_to_retrain", "time/speedup")]
    tables = [
        console_table(
            rows,
            columns,
            title=f"Forget request: {forget}",
            formatters={c: cell(c) for c in columns},
        )
        for forget, rows in requests.items()
    ]
    return render_text(*tables)


def resume_argv(argv: list[str]) -> list[str]:
    """``argv`` with the config recorded in ``--resume DIR``'s ``report.json`` put first (the
    other words of ``argv`` override it); ``argv`` itself without ``--resume``.

    Raises:
        FileNotFoundError: ``DIR`` has no ``report.json``.
        ValueError: the report is not readable or records no config.
    """
    import yaml

    run_dir = _resume_dir(argv)
    if run_dir is None:
        return argv
    config = _recorded_config(Path(run_dir))
    for key in ("output", "name", "resume", "seeds", "quiet"):  # how, not what, to run
        config.pop(key, None)
    return ["--config", yaml.safe_dump(config), *argv]


def _resume_dir(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--resume" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--resume="):
            return arg.split("=", 1)[1]
    return None


def _recorded_config(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / "report.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no report.json; --resume needs the directory of an earlier "
            "`unlearnkit run` that wrote at least one row"
        )
    try:
        config = json.loads(path.read_text())["config"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a readable report ({type(err).__name__}: {err})") from None
    if not isinstance(config, dict) or not config.get("data"):
        raise ValueError(f"{path} records no run config; it cannot be resumed")
    return config


def _set_threads(threads: int) -> None:
    from unlearnkit.threads import configure_threads

    configure_threads(threads)


def parse_or_explain(parser: ArgumentParser, argv: list[str]) -> Any:
    """``parser.parse_args(argv)``; a method ``class_path`` that does not resolve becomes one line
    saying why (module not importable, or no such class in it) with the closest names, instead
    of jsonargparse's usage banner.

    Raises:
        ValueError: an unknown method class (with suggestions).
        SystemExit: other parse errors (jsonargparse's usage message, exit status 2).
    """
    problem = _unresolved_method(argv)
    if problem:
        raise ValueError(problem)
    return parser.parse_args(argv)


def _closest(name: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(candidates)}"


def _unresolved_method(argv: list[str]) -> str | None:
    """Why the first method ``class_path`` in the configs of ``argv`` resolves to nothing, or
    ``None`` when all resolve."""
    import yaml

    configs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-c", "--config")]
    for path in configs:
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            return None  # jsonargparse reports an unreadable config itself
        domain = "recsys" if "recsys" in str(config.get("data", "")) else "vision"
        for entry in config.get("methods") or []:
            class_path = entry.get("class_path") if isinstance(entry, dict) else None
            if class_path:
                problem = _method_problem(str(class_path), domain)
                if problem:
                    return problem
    return None


def _method_problem(class_path: str, domain: str) -> str | None:
    import importlib

    from unlearnkit.base import list_methods

    if "." not in class_path:
        known = sorted({*list_methods("vision"), *list_methods("recsys")})
        if class_path in known:
            return None
        return (
            f"unknown method {class_path!r}: {_closest(class_path, sorted(list_methods(domain)))}"
        )
    module_name, _, name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        return (
            f"method class_path {class_path!r}: cannot import module {module_name!r} ({err}); "
            "run from the folder that holds it or put it on PYTHONPATH"
        )
    if hasattr(module, name):
        return None
    names = [n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")]
    return f"module {module_name!r} has no class {name!r}: {_closest(name, sorted(names))}"


def data_class_path(argv: list[str]) -> str | None:
    """The ``data`` class path an ``unlearnkit run`` command line names (``--data X``,
    ``--data.class_path X``, or ``data: {class_path: X}`` in the last ``-c`` config naming one);
    ``None`` when none does."""
    import yaml

    found = None
    run_dir = _resume_dir(argv)
    if run_dir is not None and (Path(run_dir) / "report.json").is_file():
        data = _recorded_config(Path(run_dir)).get("data")
        if isinstance(data, dict) and data.get("class_path"):
            found = str(data["class_path"])
    for i, arg in enumerate(argv):
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg in ("-c", "--config") and value:
            try:
                config = yaml.safe_load(Path(value).read_text()) or {}
            except (OSError, yaml.YAMLError):
                continue  # the parser reports it
            data = config.get("data") if isinstance(config, dict) else None
            if isinstance(data, dict) and data.get("class_path"):
                found = str(data["class_path"])
            elif isinstance(data, str):
                found = data
        elif arg in ("--data", "--data.class_path") and value and not value.startswith("{"):
            found = value
    return found


def data_class(class_path: str) -> type:
    """The DataModule class a ``class_path`` names (full path, or a name in
    :data:`DATA_MODULES`).

    Raises:
        ValueError: the module cannot be imported (the ImportError is named: a missing
            dependency must not look like a wrong job) or has no such class.
    """
    import importlib

    module_name, _, name = class_path.rpartition(".")
    modules = [module_name] if module_name else list(DATA_MODULES)
    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError as err:
            raise ValueError(f"cannot import the data class {class_path!r}: {err}") from err
        if isinstance(found, type):
            return found
    raise ValueError(
        f"unknown data class {class_path!r}; name a DataModule class, e.g. "
        "DigitsDataModule or unlearnkit.recsys.data.MovieLensSmallDataModule"
    )
