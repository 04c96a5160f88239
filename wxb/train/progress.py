"""A progress bar with loss, throughput and ETA; silent when nobody is watching."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_enabled(disable: bool | None) -> bool:
    """Show the bar only on a terminal and not under CI, unless told explicitly."""
    if disable is not None:
        return not disable
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return sys.stderr.isatty() and not ci


class ProgressBar:
    """``with ProgressBar(total, start) as bar: bar.update(step, loss=..., ...)``; work with
    no loss to show (transcribing windows of audio) leaves its column out (``loss=False``)."""

    def __init__(self, total: int, start: int = 0, *, enabled: bool = True,
                 description: str = "train", loss: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            *([TextColumn("loss {task.fields[loss]}")] if loss else []),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
            disable=not enabled,
        )
        self._task = self._progress.add_task(description, total=total, completed=start,
                                             loss="-", speed="")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, step: int, *, loss: float | None = None,
               samples_per_second: float | None = None) -> None:
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if samples_per_second is not None:
            fields["speed"] = f"{samples_per_second:,.0f} samples/s"
        self._progress.update(self._task, completed=step, **fields)

    def print(self, message: str) -> None:
        """Print a line above the bar (or plainly, when the bar is off)."""
        if self.enabled:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=sys.stderr, flush=True)
