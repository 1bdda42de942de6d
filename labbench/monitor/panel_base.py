"""The base of every monitor panel and the time range panels show (shared by
:mod:`.panels` and :mod:`.event_panel`)."""

from __future__ import annotations

import pyqtgraph as pg

from .source import DeviceFollower

__all__ = ["Panel", "View"]


class View:
    """The time range shown: the last ``seconds`` of the run, or all of it (``None``)."""

    def __init__(self, seconds: float | None = None) -> None:
        self.seconds = seconds

    def range(self, end: float, start: float = 0.0) -> tuple[float, float]:
        if self.seconds is None or end - start <= self.seconds:
            return start, max(end, start + 1e-9)
        return end - self.seconds, end


class Panel:
    """Base: one PlotItem in the device's layout (at ``row``, column 0)."""

    name = "panel"

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        self.layout: pg.GraphicsLayout | None = None
        self.row = 0

    def update(self, dev: DeviceFollower, view: View) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def has_data(self) -> bool:
        return True
