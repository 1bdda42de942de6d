"""The progress bar of runs and sweeps."""

from __future__ import annotations

import time
from typing import Any


class ProgressBar:
    """A rich progress bar over samples (count, rate, ETA), or nothing."""

    def __init__(self, total: int, label: str, *, enabled: bool, console: Any = None, unit: str = "samples") -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(unit + "  {task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=False)
        self._task = self._progress.add_task(label, total=total, rate="")
        self._t0 = time.perf_counter()
        self._done = 0

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        if not self.enabled:
            return
        self._done += n
        rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(self._task, advance=n, rate=f"{rate:,.0f}/s")
