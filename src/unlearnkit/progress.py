"""Progress of a run, phase by phase: what ``unlearnkit run`` shows while it works.

A run is a sequence of phases (training the original, training the retrained model, evaluating
them, each method, each method's evaluation). :class:`Phases` reports each one:

* ``"rich"`` (stderr is a terminal): a live ``rich.progress`` line with a spinner and the elapsed
  time while a phase runs, replaced by one ``✓ phase  (12.3 s)`` line when it ends; phases that
  train through Lightning show Lightning's own progress bar instead of the spinner, labelled with
  the phase (``original (training)  epoch 3/8``);
* ``"plain"`` (stderr is a file or a pipe, e.g. CI): one line when a phase starts and one when it
  ends, with the elapsed seconds;
* ``"quiet"``: nothing.

Nothing here imports ``unlearnkit.vision`` or ``unlearnkit.recsys``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any, Literal

__all__ = ["Phases", "phase_progress_bar"]

Mode = Literal["auto", "rich", "plain", "quiet"]


class Phases:
    """Reports the phases of a run on stderr (see the module docstring for the modes).

    Args:
        mode: ``"auto"`` (``"rich"`` when stderr is a terminal, else ``"plain"``), ``"rich"``,
            ``"plain"`` or ``"quiet"``.

    Raises:
        ValueError: an unknown mode.
    """

    def __init__(self, mode: Mode = "auto") -> None:
        if mode not in ("auto", "rich", "plain", "quiet"):
            raise ValueError(f"progress mode must be auto, rich, plain or quiet, got {mode!r}")
        if mode == "auto":
            mode = "rich" if sys.stderr.isatty() else "plain"
        self.mode = mode

    @property
    def quiet(self) -> bool:
        """Whether nothing is shown."""
        return self.mode == "quiet"

    @property
    def live(self) -> bool:
        """Whether live displays (Lightning's progress bar, the spinner) are shown."""
        return self.mode == "rich"

    def note(self, text: str) -> None:
        """One line outside any phase (e.g. ``original: loaded from the cache``)."""
        if self.mode == "rich":
            self._console().print(f"  {text}", highlight=False)
        elif self.mode == "plain":
            print(f"[unlearnkit] {text}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def phase(self, label: str, *, fit: bool = False) -> Iterator[None]:
        """Report the phase ``label`` while the body runs.

        Args:
            label: what the phase does, e.g. ``"class 0: evaluating FineTune"``.
            fit: the body trains through a Lightning ``Trainer`` that shows its own progress
                bar (no spinner then: one live display at a time).

        Yields:
            Nothing; the phase ends when the block does (an exception ends it as failed).
        """
        start = time.perf_counter()
        if self.mode == "quiet":
            yield
            return
        if self.mode == "plain":
            print(f"[unlearnkit] {label} ...", file=sys.stderr, flush=True)
            end = "FAILED"
            try:
                yield
                end = "done"
            except (KeyboardInterrupt, SystemExit):
                end = "interrupted"  # Ctrl-C (Lightning turns it into SystemExit): not a failure
                raise
            finally:
                seconds = time.perf_counter() - start
                print(f"[unlearnkit] {label}: {end} ({seconds:.1f} s)", file=sys.stderr, flush=True)
            return
        console = self._console()
        ok, mark = False, "[red]✗[/red]"
        try:
            if fit:
                console.print(f"[bold]▶[/bold] {label}", highlight=False)
                yield
            else:
                with self._spinner(console, label):
                    yield
            ok = True
        except (KeyboardInterrupt, SystemExit):
            mark = "[yellow]interrupted[/yellow]"
            raise
        finally:
            seconds = time.perf_counter() - start
            mark = "[green]✓[/green]" if ok else mark
            console.print(f"{mark} {label}  [dim]({seconds:.1f} s)[/dim]", highlight=False)

    @staticmethod
    def _console() -> Any:
        from rich.console import Console

        return Console(file=sys.stderr)

    @staticmethod
    @contextlib.contextmanager
    def _spinner(console: Any, label: str) -> Iterator[None]:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            progress.add_task(label, total=None)
            yield


def phase_progress_bar(label: str) -> Any:
    """Lightning's rich progress bar whose description names the phase and the epoch.

    Args:
        label: the phase, e.g. ``"class 0: FineTune"``.

    Returns:
        A ``lightning.pytorch.callbacks.RichProgressBar`` showing
        ``"<label>  epoch <e>/<max_epochs>"`` (epochs counted from 1), the steps of the epoch,
        the speed and the loss; it is cleared when the fit ends.
    """
    from lightning.pytorch.callbacks import RichProgressBar

    class PhaseProgressBar(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            total = self.trainer.max_epochs
            of = f"/{total}" if total is not None and total > 0 else ""
            return f"{label}  epoch {current_epoch + 1}{of}"

        def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)  # the logger's version: meaningless beside the phase label
            if "unlearn/loss" in metrics:  # training the original/retrained model is no unlearning
                metrics["loss"] = metrics.pop("unlearn/loss")
            return metrics

    return PhaseProgressBar()
