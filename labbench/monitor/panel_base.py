"""The base of every monitor panel, the time range panels show, and the axis helpers they
share (used by :mod:`.panels`, :mod:`.event_panel` and :mod:`.compare_panels`)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg

from .source import DeviceFollower

__all__ = ["Panel", "View", "metric_label", "steady_y", "time_label"]

#: metrics with no unit (ratios, fractions, counts of delays); any other is in the target's units
DIMENSIONLESS_METRICS = frozenset({"nrmse", "nmse", "accuracy", "error_rate", "r2", "correlation",
                                   "memory_capacity", "capacity", "kernel_quality", "generalisation_rank"})


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


def time_label(dev: DeviceFollower) -> tuple[str, str]:
    """The label and unit of a device's time axis: seconds for devices with a time step,
    steps for software reservoirs (dt = 1)."""
    return ("time", "s") if dev.time_unit == "s" else ("time", "step")


def metric_label(names: list[str] | set[str]) -> str:
    """The y label of a metric history: the metrics' names and their unit
    (``"nrmse (dimensionless)"``, ``"rmse (target units)"``)."""
    names = sorted(names)
    unit = "dimensionless" if all(n in DIMENSIONLESS_METRICS for n in names) else "target units"
    return f"{' / '.join(names)} ({unit})"


def steady_y(plot: pg.PlotItem, arrays: list[np.ndarray], state: dict) -> None:
    """Set the y range from the data shown, but only when the data leaves the current range
    or fills less than half of it. A y range that moves every frame would make pyqtgraph
    paint twice per frame (its auto-range runs at paint time) and redraw the axis text.

    Parameters
    ----------
    plot : pyqtgraph.PlotItem
        The plot whose y range is set.
    arrays : list of ndarray
        The values shown (NaN ignored).
    state : dict
        The panel's own memory of the range it set (key ``"y"``).
    """
    finite = [a[np.isfinite(a)] for a in arrays if a is not None and len(a)]
    finite = [a for a in finite if a.size]
    if not finite:
        return
    lo = min(float(a.min()) for a in finite)
    hi = max(float(a.max()) for a in finite)
    if hi <= lo:
        hi = lo + 1.0
    cur = state.get("y")
    if cur is not None and cur[0] <= lo and hi <= cur[1] and (hi - lo) >= 0.5 * (cur[1] - cur[0]):
        return
    pad = 0.08 * (hi - lo)
    state["y"] = (lo - pad, hi + pad)
    plot.setYRange(*state["y"], padding=0)
