"""The ``unlearnkit run`` machinery the vision and recommender jobs share.

:func:`common_run_parser` builds a job's parser (``-c``, the job's options, then the shared
``--seed``, ``--output``, ``--name``, ``--cache_dir``, ``--threads``, ``--trainer``);
:func:`run_job` parses, records the config, instantiates, runs and prints. Each job
(:mod:`unlearnkit.vision.experiment`, :mod:`unlearnkit.recsys.experiment`) owns its parser and
``run_command``; :mod:`unlearnkit.cli` picks the job from the config's data class. Nothing here
imports ``unlearnkit.vision`` or ``unlearnkit.recsys``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

__all__ = [
    "common_run_parser",
    "data_class",
    "data_class_path",
    "default_experiment_path",
    "run_job",
]

#: Where a DataModule named without its module (``class_path: DigitsDataModule``) is looked up.
DATA_MODULES = ("unlearnkit.datasets", "unlearnkit.recsys.data")


def default_experiment_path() -> Path:
    """The embedded default experiment (digits, class-0 and random-10% forgetting)."""
    return Path(str(resources.files("unlearnkit") / "configs" / "default.yaml"))


def common_run_parser(
    description: str, job_options: Callable[[ArgumentParser], None]
) -> ArgumentParser:
    """An ``unlearnkit run`` parser: ``-c``, the job's own options, then the shared ones.

    The shared options are ``--seed``, ``--output``, ``--name``, ``--cache_dir`` and
    ``--trainer``; ``job_options`` adds the vision (:func:`run_parser`) or recommender
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
    return p


def run_job(
    parser: ArgumentParser,
    argv: list[str],
    run: Callable[..., Any],
    summary: Callable[[Any], str],
) -> int:
    """Parse ``argv``, record the config, instantiate, run, print the summary and the run dir.

    Args:
        parser: a :func:`common_run_parser` with ``--data``, ``--forget`` and ``--methods``.
        argv: the words after ``run``.
        run: ``run(init, methods, seed=, output=, name=, cache_dir=, trainer=, config=)`` runs
            the experiment of the instantiated config ``init`` and returns its result (with
            ``rows`` and ``run_dir``).
        summary: the text printed for a result.

    Returns:
        0 (a bad command line exits through ``parser.error``).
    """
    import yaml

    cfg = parse_or_explain(parser, argv)
    if cfg.data is None or not cfg.forget or not cfg.methods:
        parser.error(
            "an experiment needs data, forget and methods (see --help or configs/experiments/)"
        )
    from unlearnkit.module import check_trainer_arguments

    check_trainer_arguments(cfg.trainer)  # a missing GPU: one line, before any work
    config = yaml.safe_load(parser.dump(cfg, skip_none=False, format="yaml"))
    init = parser.instantiate(cfg)
    if init.threads is not None:
        _set_threads(init.threads)
    result = run(
        init,
        init.methods,
        seed=init.seed,
        output=init.output,
        name=init.name,
        cache_dir=init.cache_dir,
        trainer={"enable_progress_bar": sys.stderr.isatty(), **(init.trainer or {})},
        config=config,
    )
    if result.run_dir is None:  # a DDP rank other than 0: rank 0 prints and reports
        return 0
    print(summary(result))
    print(f"report written to {result.run_dir}")
    return 0


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
