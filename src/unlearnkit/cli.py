"""The ``unlearnkit`` command.

- ``unlearnkit run [-c experiment.yaml] [--output DIR]``: the main job (original → retrained →
  each method → evaluation → report). With no config it runs the embedded default: scikit-learn's
  digits, forgetting class 0 and a random 10%, with the five classic baselines.
- ``unlearnkit fit|validate|test ...``: LightningCLI over :class:`UnlearningModule` and any
  :class:`UnlearningDataModule`, with composable ``-c`` fragments from ``configs/``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

ERRORS = (ValueError, FileNotFoundError, FileExistsError, TypeError)


def _quiet_warnings() -> None:
    # torch_geometric under torch >= 2.14 warns about torch.jit.script at import; only that one.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    # lightning 2.6 under torch 2.14 warns about its own pytree use on every fit; only that one.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


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


def run_parser() -> ArgumentParser:
    """The ``unlearnkit run`` parser (every option documented in ``--help``)."""
    import unlearnkit.datasets  # noqa: F401  (registers DataModule subclasses for class_path)
    import unlearnkit.vision  # noqa: F401  (registers methods)
    from unlearnkit.base import Unlearner
    from unlearnkit.data import ForgetSpec, UnlearningDataModule
    from unlearnkit.experiment import TrainSchedule

    def job_options(p: ArgumentParser) -> None:
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
            help="small_cnn | resnet18_cifar | compact_cifar | timm:<name>",
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

    cfg = parser.parse_args(argv)
    if cfg.data is None or not cfg.forget or not cfg.methods:
        parser.error(
            "an experiment needs data, forget and methods (see --help or configs/experiments/)"
        )
    config = yaml.safe_load(parser.dump(cfg, skip_none=False, format="yaml"))
    init = parser.instantiate(cfg)
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


def run_command(argv: list[str]) -> int:
    """Parse ``argv`` (the words after ``run``), run the experiment, print the table."""
    from unlearnkit.recsys.data import is_recsys_argv

    if is_recsys_argv(argv):  # data is a RecDataModule: the recommender job
        from unlearnkit.recsys.experiment import run_command as recsys_run_command

        return recsys_run_command(argv)
    if not any(a in ("-c", "--config") or a.startswith("--config=") for a in argv):
        argv = ["--config", str(default_experiment_path()), *argv]  # the embedded default
    return run_job(run_parser(), argv, run_instantiated, _report_table)


def run_instantiated(init: Any, methods: list, **common: Any) -> Any:
    """:func:`~unlearnkit.experiment.run_experiment` on an instantiated :func:`run_parser` config.

    Args:
        init: the instantiated config (``data``, ``forget``, ``arch``, ``training``).
        methods: the methods to run (``init.methods``, or re-seeded copies).
        **common: ``seed``, ``output``, ``name``, ``cache_dir``, ``trainer``, ``config``.

    Returns:
        The :class:`~unlearnkit.experiment.ExperimentResult`.
    """
    from unlearnkit.experiment import run_experiment

    return run_experiment(
        init.data, init.forget, methods, arch=init.arch, training=init.training, **common
    )


def _report_table(result: Any) -> str:
    """The run's report.md up to its config section, without the plot links."""
    text = (result.run_dir / "report.md").read_text()
    lines = [ln for ln in text.split("## Config")[0].splitlines() if not ln.startswith("![")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def lightning_cli(args: list[str]) -> None:
    """``unlearnkit fit|validate|test``: LightningCLI over UnlearningModule."""
    from lightning.pytorch.cli import LightningCLI

    import unlearnkit.datasets  # noqa: F401
    import unlearnkit.vision  # noqa: F401
    from unlearnkit.data import UnlearningDataModule
    from unlearnkit.module import UnlearningModule

    LightningCLI(
        UnlearningModule,
        UnlearningDataModule,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": False},
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``unlearnkit`` console script."""
    from unlearnkit.threads import configure_threads

    configure_threads(None)  # before torch is imported: thread count and OpenMP wait policy
    _quiet_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    command = argv[0] if argv else "run"
    try:
        if command == "run":
            return run_command(argv[1:])
        if command == "reproduce":
            from unlearnkit.reproduce.cli import reproduce_command

            return reproduce_command(argv[1:])
        lightning_cli(argv)
        return 0
    except ERRORS as err:
        if os.environ.get("UNLEARNKIT_DEBUG"):
            raise
        print(f"unlearnkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
