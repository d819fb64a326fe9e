"""The ``unlearnkit`` command: one entry point for every subcommand.

- ``unlearnkit run [-c experiment.yaml]``: the main job (original → retrained → each method →
  evaluation → report); the data class of the config picks the classification job
  (:mod:`unlearnkit.vision.experiment`) or the recommender job
  (:mod:`unlearnkit.recsys.experiment`). With no config: the embedded default (digits).
- ``unlearnkit reproduce <table>``: regenerate a paper table (:mod:`unlearnkit.reproduce.cli`).
- ``unlearnkit fit|validate|test|predict ...``: LightningCLI over :class:`UnlearningModule` and any
  :class:`UnlearningDataModule`, with composable ``-c`` fragments from ``configs/``.

Every subcommand parses with jsonargparse and uses one flag style (``--cache_dir``,
``--data_root``: words joined by underscores, as LightningCLI's own options).
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
import warnings

__all__ = ["COMMANDS", "main"]

#: Subcommand → one-line description (``unlearnkit --help``).
COMMANDS: dict[str, str] = {
    "run": "train/load the original and retrained models, unlearn, evaluate, report",
    "reproduce": "regenerate a paper table beside the paper's numbers (--list for the tables)",
    "fit": "LightningCLI: run one unlearning method on a saved original model",
    "validate": "LightningCLI: validation loop (as Lightning's)",
    "test": "LightningCLI: the shared evaluation of a model on forget/retain/test",
    "predict": "LightningCLI: prediction loop (as Lightning's)",
}

#: Errors shown as one line (user errors); anything else is a bug and keeps its traceback.
ERRORS = (ValueError, FileNotFoundError, FileExistsError)


def _quiet_warnings() -> None:
    # torch_geometric under torch >= 2.14 warns about torch.jit.script at import; only that one.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    # lightning 2.6 under torch 2.14 warns about its own pytree use on every fit; only that one.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # the report and the printed table name over-unlearned methods: not twice
    warnings.filterwarnings("ignore", message=r"over-unlearning: .*")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: unlearnkit <command> [options]   (unlearnkit <command> --help for more)", ""]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "  --version  print the version and exit"]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"unlearnkit {version('unlearnkit')}"
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unlearnkit (not installed)"


def run_command(argv: list[str]) -> int:
    """``unlearnkit run``: the recommender job when the config's data is a ``RecDataModule``,
    else the classification job (also for the embedded default)."""
    from unlearnkit.jobs import data_class, data_class_path

    class_path = data_class_path(argv)
    if class_path is not None:
        from unlearnkit.recsys.data import RecDataModule

        if issubclass(data_class(class_path), RecDataModule):
            from unlearnkit.recsys.experiment import run_command as recsys_run

            return recsys_run(argv)
    from unlearnkit.vision.experiment import run_command as vision_run

    return vision_run(argv)


def lightning_cli(args: list[str]) -> None:
    """``unlearnkit fit|validate|test|predict``: LightningCLI over UnlearningModule."""
    from lightning.pytorch.cli import LightningCLI

    import unlearnkit.datasets  # noqa: F401  (DataModule subclasses for class_path)
    import unlearnkit.vision  # noqa: F401  (methods for class_path)
    from unlearnkit.data import UnlearningDataModule
    from unlearnkit.module import UnlearningModule

    LightningCLI(
        UnlearningModule,
        UnlearningDataModule,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": False},
    )


def _dispatch(command: str, rest: list[str], argv: list[str]) -> int:
    if command == "run":
        return run_command(rest)
    if command == "reproduce":
        from unlearnkit.reproduce.cli import reproduce_command

        return reproduce_command(rest)
    lightning_cli(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``unlearnkit`` console script.

    Returns:
        0 on success, 2 on a user error (printed as one line; ``UNLEARNKIT_DEBUG=1`` re-raises).
    """
    from unlearnkit.threads import configure_threads

    configure_threads(None)  # before torch is imported: thread count and OpenMP wait policy
    _quiet_warnings()
    if os.getcwd() not in sys.path:  # `class_path: my_module.X` from the current directory,
        sys.path.insert(0, os.getcwd())  # as `python -m` allows
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)
    command = argv[0] if argv else "run"
    if command in ("-h", "--help"):
        print(_usage())
        return 0
    if command == "--version":
        print(_version())
        return 0
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"did you mean `unlearnkit {close[0]}`?" if close else "see `unlearnkit --help`"
        print(f"unlearnkit: error: unknown command {command!r}; {hint}", file=sys.stderr)
        return 2
    try:
        return _dispatch(command, argv[1:], argv)
    except ERRORS as err:
        if os.environ.get("UNLEARNKIT_DEBUG"):
            raise
        print(f"unlearnkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
