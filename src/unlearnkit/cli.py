"""The ``unlearnkit`` command: one entry point for every subcommand.

- ``unlearnkit run [-c experiment.yaml]``: the main job (original → retrained → each method →
  evaluation → report); the data class of the config picks the classification job
  (:mod:`unlearnkit.vision.experiment`) or the recommender job
  (:mod:`unlearnkit.recsys.experiment`). With no config: the embedded default (digits).
- ``unlearnkit train [-c experiment.yaml] --out original.pt``: the experiment's original model
  (from the model cache when ``run`` trained it already), saved for ``fit``/``test``.
- ``unlearnkit tune [-c experiment.yaml] --grid '{FineTune: {lr: [...]}}'``: every grid point
  as an ordinary run, scored by Avg. Gap to the retrained model (:mod:`unlearnkit.tuning`).
- ``unlearnkit reproduce <table>``: regenerate a paper table (:mod:`unlearnkit.reproduce.cli`).
- ``unlearnkit fit|validate|test|predict ...``: LightningCLI over :class:`UnlearningModule` and any
  :class:`UnlearningDataModule`, with composable ``-c`` fragments from ``configs/``. ``fit`` writes
  ``config.yaml``, ``unlearned.pt`` and ``metrics.json`` into a new ``runs/<timestamp>-fit/``.

Every subcommand parses with jsonargparse and uses one flag style (``--cache_dir``,
``--data_root``: words joined by underscores, as LightningCLI's own options).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["COMMANDS", "main"]

#: Subcommand → one-line description (``unlearnkit --help``).
COMMANDS: dict[str, str] = {
    "run": "train/load the original and retrained models, unlearn, evaluate, report",
    "train": "train (or load from the cache) an experiment's original model: --out original.pt",
    "tune": "choose each method's hyper-parameters on a calibration request (--grid, by gap/avg)",
    "reproduce": "regenerate a paper table beside the paper's numbers (--list for the tables)",
    "fit": "LightningCLI: one unlearning method on a saved original -> runs/<time>-fit/",
    "validate": "LightningCLI: validation loop (as Lightning's)",
    "test": "LightningCLI: the shared evaluation of a checkpoint on forget/retain/test",
    "predict": "LightningCLI: prediction loop (as Lightning's)",
}

#: Errors shown as one line (user errors); anything else is a bug and keeps its traceback.
ERRORS = (ValueError, FileNotFoundError, FileExistsError)

#: Exit status of a run stopped with Ctrl-C (128 + SIGINT, as shells report it).
INTERRUPTED = 130

#: Set by ``fit`` for the DDP ranks Lightning starts as copies of the command: their run directory.
FIT_RUN_DIR_ENV = "UNLEARNKIT_FIT_RUN_DIR"


def _quiet_warnings() -> None:
    # torch_geometric under torch >= 2.14 warns about torch.jit.script at import; only that one.
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    # lightning 2.6 under torch 2.14 warns about its own pytree use on every fit; only that one.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # a LossUnlearner skips a step by returning None from loss() (SCRUB's, UNSIR's phases)
    warnings.filterwarnings("ignore", message=r".*`training_step` returned `None`.*")
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


def _is_recsys(argv: list[str]) -> bool:
    """Whether the config's data is a ``RecDataModule`` (the recommender job)."""
    from unlearnkit.jobs import data_class, data_class_path

    class_path = data_class_path(argv)
    if class_path is None:
        return False
    from unlearnkit.recsys.data import RecDataModule

    return issubclass(data_class(class_path), RecDataModule)


def run_command(argv: list[str]) -> int:
    """``unlearnkit run``: the recommender job when the config's data is a ``RecDataModule``,
    else the classification job (also for the embedded default)."""
    if _is_recsys(argv):
        from unlearnkit.recsys.experiment import run_command as recsys_run

        return recsys_run(argv)
    from unlearnkit.vision.experiment import run_command as vision_run

    return vision_run(argv)


def tune_command(argv: list[str]) -> int:
    """``unlearnkit tune``: :func:`unlearnkit.tuning.tune_command` for the config's job."""
    from unlearnkit.tuning import tune_command as tune

    if _is_recsys(argv):
        from unlearnkit.recsys.experiment import run_instantiated, run_parser
        from unlearnkit.recsys.methods import RecRetrain

        return tune(argv, job_parser=run_parser, run=run_instantiated, reference=RecRetrain)
    from unlearnkit.vision.experiment import run_instantiated, run_parser
    from unlearnkit.vision.methods import Retrain

    return tune(argv, job_parser=run_parser, run=run_instantiated, reference=Retrain)


def train_command(argv: list[str]) -> int:
    """``unlearnkit train [-c experiment.yaml] --out original.pt``: save the original model.

    The experiment's original model θ_o (its data, ``arch``, ``training``, ``seed``) comes from
    the model cache when ``unlearnkit run`` trained it already, else it is trained and cached;
    then it is written to ``--out`` with :func:`~unlearnkit.checkpoint.save_checkpoint` (for
    ``unlearnkit fit``/``test``'s ``--model.checkpoint``). Without ``-c``: the embedded default.

    Returns:
        0.

    Raises:
        FileExistsError: ``--out`` exists (a saved model is never overwritten).
        ValueError: a recommender experiment (``fit``/``test`` are for classifiers), a Trainer
            accelerator this machine lacks, or a bad config.
    """
    from dataclasses import asdict
    from pathlib import Path

    from unlearnkit.jobs import (
        data_class,
        data_class_path,
        default_to_embedded_experiment,
        parse_or_explain,
    )

    class_path = data_class_path(argv)
    if class_path is not None:
        from unlearnkit.recsys.data import RecDataModule

        if issubclass(data_class(class_path), RecDataModule):
            raise ValueError(
                "unlearnkit train saves classification originals for `unlearnkit fit`/`test`; a "
                "recommender's original is trained and cached by `unlearnkit run -c` its config"
            )
    from unlearnkit.vision.experiment import run_parser

    parser = run_parser()
    parser.prog = "unlearnkit train"
    parser.description = (
        "Train (or load from the model cache) the original model of an experiment and save it "
        "for `unlearnkit fit`/`test` (--model.checkpoint). The experiment's methods are not run. "
        "Without -c the embedded default experiment."
    )
    parser.add_argument(
        "--out", type=str, required=True, help="the .pt file to write (never overwritten)"
    )
    default_to_embedded_experiment(parser, argv)
    cfg = parse_or_explain(parser, argv)
    from unlearnkit.module import check_trainer_arguments

    check_trainer_arguments(cfg.trainer)
    out = Path(cfg.out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another --out (never overwritten)")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"folder {out.parent} of --out does not exist; create it first")
    init = parser.instantiate(cfg)
    if init.threads is not None:
        from unlearnkit.threads import configure_threads

        configure_threads(init.threads)
    from unlearnkit.cache import ModelCache
    from unlearnkit.checkpoint import save_checkpoint
    from unlearnkit.evaluation.evaluator import Evaluator
    from unlearnkit.vision.experiment import Experiment

    exp = Experiment(
        init.data,
        arch=init.arch,
        training=init.training,
        seed=init.seed,
        cache=ModelCache(init.cache_dir),
        trainer={"enable_progress_bar": sys.stderr.isatty(), **(init.trainer or {})},
        evaluator=Evaluator(),
    )
    if init.forget:  # the label level (class / superclass) of the experiment's requests
        init.data.set_forget(init.forget[0])
    model, seconds, hit = exp.original()
    meta = {
        "kind": "original",
        "arch": init.arch,
        "data": init.data.cache_key(),
        "batch_size": init.data.batch_size,
        "seed": init.seed,
        "training": asdict(init.training),
    }
    save_checkpoint(model, out, meta=meta)
    how = "from the model cache" if hit else f"trained in {seconds:.1f} s"
    print(f"original model ({init.arch}, {how}) written to {out}")
    return 0


def _fit_run_dir() -> Any:
    """``fit``'s run directory: a new ``runs/<timestamp>-fit``, or, in a DDP rank Lightning
    started as a copy of the command, the one rank 0 created."""
    from pathlib import Path

    from unlearnkit.evaluation.report import new_run_dir

    inherited = os.environ.get(FIT_RUN_DIR_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    return new_run_dir(Path("runs"), "fit")


def _match_epochs(config: Any) -> None:
    """``fit``: the Trainer runs the method's own number of epochs.

    An iterative method's schedule depends on its ``epochs`` (UNSIR's impair-then-repair
    passes, L1Sparse's decaying weight, SCRUB's max-steps, a cosine learning rate), so the
    Trainer's ``max_epochs`` must be that number: left unset it is taken from the method (0 for
    a one-shot method, which runs once in ``on_fit_start``); set to another value it is an error.
    ``fast_dev_run`` is left as it is (one batch, a smoke test).

    Raises:
        ValueError: ``trainer.max_epochs`` differs from the method's ``epochs``.
    """
    import importlib

    trainer, method = config.get("trainer"), config.get("model", {}).get("method")
    if trainer is None or method is None or trainer.get("fast_dev_run"):
        return
    module, _, name = str(method.get("class_path", "")).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return  # LightningCLI reports an unresolvable method itself
    init_args = method.get("init_args") or {}
    if not getattr(cls, "iterative", False):
        if trainer.get("max_epochs") is None:
            trainer["max_epochs"] = 0
        return
    import inspect

    default = inspect.signature(cls.__init__).parameters.get("epochs")
    epochs = init_args.get("epochs", default.default if default is not None else None)
    if epochs is None:
        return
    if trainer.get("max_epochs") is None:
        trainer["max_epochs"] = int(epochs)
    elif int(trainer["max_epochs"]) != int(epochs):
        raise ValueError(
            f"{name} runs {epochs} epochs (its `epochs`) but --trainer.max_epochs is "
            f"{trainer['max_epochs']}: give both the same value, e.g. --trainer.max_epochs "
            f"{epochs}, or --model.method.init_args.epochs {trainer['max_epochs']} "
            "(or leave trainer.max_epochs unset: fit then takes the method's)"
        )


def lightning_cli(args: list[str]) -> None:
    """``unlearnkit fit|validate|test|predict``: LightningCLI over UnlearningModule.

    Before any data or model is loaded the Trainer arguments are checked
    (:func:`~unlearnkit.module.check_trainer_arguments`). ``fit`` writes into a new run directory
    ``runs/<timestamp>-fit/`` (also the Trainer's ``default_root_dir``, so Lightning's logs and
    checkpoints land there): ``config.yaml`` (the full config, before anything runs),
    ``unlearned.pt`` (the unlearned model, :func:`~unlearnkit.checkpoint.save_checkpoint`) and
    ``metrics.json`` (the Evaluator's metrics of the unlearned model on the forget, retain and
    test splits). Nothing is written into the working directory.
    """
    import json
    from pathlib import Path

    from lightning.pytorch.cli import LightningCLI

    import unlearnkit.datasets  # noqa: F401  (DataModule subclasses for class_path)
    import unlearnkit.vision  # noqa: F401  (methods for class_path)
    from unlearnkit.data import UnlearningDataModule
    from unlearnkit.module import UnlearningModule, check_trainer_arguments

    created: list[Path] = []  # fit's run directory, once claimed

    class UnlearnKitCLI(LightningCLI):
        run_dir: Path | None = None

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand]
            check_trainer_arguments(dict(config.get("trainer") or {}))
            if self.subcommand != "fit":
                return
            _match_epochs(config)  # before the run directory: a mismatch writes nothing
            self.run_dir = _fit_run_dir()
            created.append(self.run_dir)
            os.environ[FIT_RUN_DIR_ENV] = str(self.run_dir)
            if os.environ.get("LOCAL_RANK", "0") == "0":
                self._parser("fit").save(config, self.run_dir / "config.yaml")
                print(f"fit: writing into {self.run_dir}")

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            if self.run_dir is not None:
                kwargs["default_root_dir"] = str(self.run_dir)
            return super().instantiate_trainer(**kwargs)

        def test(self, model: Any, **kwargs: Any) -> Any:
            # one table of the Evaluator's metrics instead of Lightning's one column per loader
            kwargs["verbose"] = False
            results = self.trainer.test(model, **kwargs)
            if self.trainer.is_global_zero and results:
                metrics = {re.sub(r"/dataloader_idx_\d+$", "", k): v for k, v in results[0].items()}
                source = model.checkpoint or "the model's initial weights (no --model.checkpoint)"
                _print_metrics(f"test: {source}", metrics)
            return results

        def after_fit(self) -> None:
            if self.run_dir is None or not self.trainer.is_global_zero:
                return
            from unlearnkit.atomic import atomic_write_bytes
            from unlearnkit.checkpoint import save_checkpoint
            from unlearnkit.evaluation.evaluator import Evaluator
            from unlearnkit.unlearner import DIVERGED, check_finite_model

            module = self.model
            method = type(module.method).__name__
            # a diverged method fails the fit (set aside as -failed) instead of saving NaN weights
            check_finite_model(module.model, f"{method} (fit)", DIVERGED)
            meta = {"kind": "unlearned", "method": method, "original": module.checkpoint}
            path = save_checkpoint(module.model, self.run_dir / "unlearned.pt", meta=meta)
            evaluator = module.evaluator or Evaluator()
            module.model.eval()
            metrics = evaluator.metrics_from_outputs(
                evaluator.collect_from(module.model, self.datamodule)
            )
            metrics = {k: float(v) for k, v in metrics.items()}
            record = {"method": method, "original": module.checkpoint, "metrics": metrics}
            atomic_write_bytes(
                self.run_dir / "metrics.json", (json.dumps(record, indent=2) + "\n").encode()
            )
            _print_metrics(f"{method}: unlearned model", metrics)
            print(f"unlearned model written to {path}, metrics to {self.run_dir / 'metrics.json'}")

    # `args` is our own argv (the words after `unlearnkit`): not the mistake Lightning warns about
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    try:
        UnlearnKitCLI(
            UnlearningModule,
            UnlearningDataModule,
            subclass_mode_data=True,
            args=args,
            save_config_callback=None,  # fit writes config.yaml into its run directory itself
            seed_everything_default=0,
        )
    except BaseException:
        _set_aside_failed_fit(created)
        raise
    finally:
        os.environ.pop(FIT_RUN_DIR_ENV, None)


def _set_aside_failed_fit(created: list[Any]) -> None:
    """A fit that failed or was interrupted keeps what it wrote (its config, Lightning's logs)
    under ``<run dir>-failed``, so ``runs/*-fit`` names only fits that wrote ``unlearned.pt``."""
    for run_dir in created:
        if run_dir.is_dir() and not (run_dir / "unlearned.pt").exists():
            target = run_dir.with_name(run_dir.name + "-failed")
            if not target.exists() and os.environ.get("LOCAL_RANK", "0") == "0":
                run_dir.rename(target)
                print(f"fit did not finish: what it wrote is in {target}", file=sys.stderr)


def _print_metrics(title: str, metrics: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    console = Console(width=100)
    console.print(title, soft_wrap=True, highlight=False)
    console.print(table)


def _dispatch(command: str, rest: list[str], argv: list[str]) -> int:
    if command == "run":
        return run_command(rest)
    if command == "train":
        return train_command(rest)
    if command == "tune":
        return tune_command(rest)
    if command == "reproduce":
        from unlearnkit.reproduce.cli import reproduce_command

        return reproduce_command(rest)
    lightning_cli(argv)
    return 0


@contextlib.contextmanager
def _sigint_noted() -> Iterator[Callable[[], bool]]:
    """Note a Ctrl-C (SIGINT) while the body runs; yields ``interrupted()``.

    Lightning catches the ``KeyboardInterrupt`` of a Ctrl-C during ``fit`` and exits with status 1;
    with the note, :func:`main` still answers it as an interrupt (one line, status 130). The
    previous handler is restored afterwards (and nothing is installed outside the main thread).
    """
    seen = {"sigint": False}

    def handler(signum: int, frame: Any) -> None:
        seen["sigint"] = True
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: seen["sigint"]
    finally:
        signal.signal(signal.SIGINT, previous)


def _lightning_threads(argv: list[str]) -> tuple[list[str], int | None]:
    """``--threads N`` of a LightningCLI subcommand (fit/validate/test/predict), which Lightning's
    parser does not know: taken out of ``argv`` and returned. Other commands parse it themselves.

    Raises:
        ValueError: ``--threads`` without a value.
    """
    if not argv or argv[0] not in ("fit", "validate", "test", "predict"):
        return argv, None
    rest, threads = [], None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--threads" or arg.startswith("--threads="):
            value = (
                arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            )
            if not value:
                raise ValueError("--threads needs a number, e.g. --threads 1")
            threads = value
            i += 1 if "=" in arg else 2
            continue
        rest.append(arg)
        i += 1
    return rest, threads


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``unlearnkit`` console script.

    Returns:
        0 on success, 2 on a user error (printed as one line; ``UNLEARNKIT_DEBUG=1`` re-raises),
        130 when interrupted (Ctrl-C: one line, no traceback; cached models stay valid, as the
        cache writes each entry atomically).
    """
    from unlearnkit.threads import configure_threads, parse_threads

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv, threads = _lightning_threads(argv)
        configure_threads(None if threads is None else parse_threads(threads, source="--threads"))
    except ValueError as err:
        print(f"unlearnkit: error: {err}", file=sys.stderr)
        return 2
    _quiet_warnings()
    if os.getcwd() not in sys.path:  # `class_path: my_module.X` from the current directory,
        sys.path.insert(0, os.getcwd())  # as `python -m` allows
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
        with _sigint_noted() as interrupted:
            try:
                return _dispatch(command, argv[1:], argv)
            except SystemExit as exit_:
                # Lightning answers Ctrl-C during fit with a "graceful shutdown" and sys.exit(1)
                if not interrupted():
                    raise
                raise KeyboardInterrupt from exit_
    except ERRORS as err:
        if os.environ.get("UNLEARNKIT_DEBUG"):
            raise
        print(f"unlearnkit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if os.environ.get("UNLEARNKIT_DEBUG"):
            raise
        print("\nunlearnkit: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
