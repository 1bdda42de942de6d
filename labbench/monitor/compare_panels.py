"""The comparison panels of a run with several ``[[devices]]``: every device at once.

All devices of such a run get the same inputs and targets, so two panels put them side by side:

- :class:`ComparePredictionsPanel`: the target once, and one prediction curve per device (per
  readout), one colour per device, over the test phase (where readouts predict);
- :class:`CompareMetricsPanel`: every device's metric history in one plot, one curve per device
  per metric, prequential dashed and test solid, against the time of the row each score was
  computed at.

:class:`ComparisonView` stacks them in one widget, which the window shows above the device
selector's panels (:mod:`.window`). Legends sit in a row of their own above the plot, on a
background: they never cover a curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from .panel_base import View, metric_label, steady_y
from .panels import READOUT_COLOURS, history_time
from .source import DeviceFollower, StoreFollower

__all__ = ["DEVICE_COLOURS", "CompareMetricsPanel", "ComparePredictionsPanel", "ComparisonView", "device_order",
           "shared_time"]

#: one colour per device, in the run's order (Okabe-Ito, readable by colour-blind people)
DEVICE_COLOURS = READOUT_COLOURS
#: readouts of one device are told apart by the line's style
READOUT_STYLES = (QtCore.Qt.PenStyle.SolidLine, QtCore.Qt.PenStyle.DashDotLine, QtCore.Qt.PenStyle.DotLine)


def device_order(follower: StoreFollower) -> list[str]:
    """The devices of the run in the protocol's order (the root's ``devices`` attribute),
    then any other device group found in the store."""
    listed = [d for d in (follower.attrs.get("devices") or []) if d in follower.devices]
    return listed + [d for d in follower.devices if d not in listed]


def shared_time(devices: dict[str, DeviceFollower], order: list[str]) -> tuple[str, float]:
    """The unit of the comparison's time axis and the seconds (or steps) per row it uses:
    the devices' own when they all share one time step, else rows (devices fed row by row
    with the same inputs line up row for row, whatever their step: an ESN counts steps, an
    LSM seconds).

    Returns
    -------
    (unit, step) : ``("s", dt)``, ``("step", 1.0)`` or ``("row", 1.0)``; a device's time
    ``t`` is drawn at ``t / dev.dt * step``.
    """
    steps = {(devices[d].time_unit, devices[d].dt) for d in order}
    if len(steps) == 1:
        unit, dt = next(iter(steps))
        return unit, dt
    return "row", 1.0


def _legend(layout: pg.GraphicsLayout, row: int) -> pg.LegendItem:
    """A legend in a layout row of its own (above its plot), on a white background."""
    legend = pg.LegendItem(labelTextSize="9pt", colCount=8, brush=pg.mkBrush(255, 255, 255, 255),
                           pen=pg.mkPen(200, 200, 200))
    layout.addItem(legend, row=row, col=0)
    layout.layout.setRowStretchFactor(row, 0)
    return legend


def _test_start(dev: DeviceFollower) -> int | None:
    """The row the device's test phase starts at (washout + train rows), None when unknown."""
    lay = dev.attrs.get("layout") or {}
    if "train" not in lay:
        return None
    return int(lay.get("washout", 0)) + int(lay["train"])


class ComparePredictionsPanel:
    """The target (once, from the first device that has one) and every device's prediction.

    Once a prediction exists, the time axis starts at the test phase (predictions are NaN
    before it), so the devices' outputs are compared where they are scored.

    Parameters
    ----------
    plot : pyqtgraph.PlotItem
        The plot drawn into.
    legend : pyqtgraph.LegendItem
        The legend that names the target and the devices.
    per_readout : bool
        Name curves ``<device> <readout>`` (the protocol has several readouts) instead of ``<device>``.
    """

    name = "compare_predictions"

    def __init__(self, plot: pg.PlotItem, legend: pg.LegendItem, *, per_readout: bool = False) -> None:
        self.plot = plot
        self.legend = legend
        self.per_readout = per_readout
        plot.setTitle("target and each device's prediction (test phase)")
        plot.setLabel("left", "value (task units)")
        plot.showGrid(x=False, y=True, alpha=0.15)
        plot.disableAutoRange()
        self.target: pg.PlotDataItem | None = None
        self.target_device: str | None = None
        #: (device, readout) -> its prediction curve
        self.predictions: dict[tuple[str, str], pg.PlotDataItem] = {}
        self._colours: dict[str, str] = {}
        self._y: dict = {}

    def _curve(self, pen: Any, name: str) -> pg.PlotDataItem:
        c = pg.PlotDataItem(pen=pen, connect="finite")
        c.setClipToView(True)
        c.setDownsampling(auto=True, method="peak")
        self.plot.addItem(c)
        self.legend.addItem(c, name)
        return c

    def update(self, devices: dict[str, DeviceFollower], order: list[str], view: View) -> None:
        """Draw the devices' buffers in ``order`` over the ``view``'s time range (in the unit
        of :func:`shared_time`)."""
        if not order:
            return
        unit, step = shared_time(devices, order)
        end = max(devices[d].position for d in order) * step
        lo, hi = view.range(end)
        if self.target is None:
            source = next((d for d in order if devices[d].targets is not None and len(devices[d].targets)), None)
            if source is not None:
                self.target_device = source
                self.target = self._curve(pg.mkPen((0, 0, 0), width=1), "target")
                self.target.setZValue(10)   # over the predictions: where one strays, its colour shows
        self.plot.setLabel("bottom", "time", unit)
        curves: list[tuple[pg.PlotDataItem, DeviceFollower, Any]] = []
        for d in order:
            dev = devices[d]
            colour = self._colours.setdefault(d, DEVICE_COLOURS[len(self._colours) % len(DEVICE_COLOURS)])
            for j, (ro_name, ro) in enumerate(dev.readouts.items()):
                key = (d, ro_name)
                if key not in self.predictions:
                    pen = pg.mkPen(colour, width=1.5, style=READOUT_STYLES[j % len(READOUT_STYLES)])
                    self.predictions[key] = self._curve(pen, f"{d} {ro_name}" if self.per_readout else d)
                if len(ro.predictions):
                    curves.append((self.predictions[key], dev, ro.predictions))
        if curves:   # predictions exist: show the test phase
            starts = [s for s in (_test_start(devices[d]) for d in order) if s is not None]
            if starts and min(starts) * step < hi:
                lo = max(lo, min(starts) * step)
        shown: list[np.ndarray] = []
        sources = list(curves)
        if self.target is not None:
            sources.append((self.target, devices[self.target_device], devices[self.target_device].targets))
        for curve, dev, series in sources:
            scale = step / dev.dt          # the device's time -> the shared axis
            x, data = series.between(lo / scale, hi / scale)
            curve.setData(x * scale, data[:, 0])
            shown.append(data[:, 0])
        self.plot.setXRange(lo, hi if hi > lo else lo + step, padding=0)
        steady_y(self.plot, shown, self._y)

    def has_data(self) -> bool:
        return self.target is not None and self.target.xData is not None and len(self.target.xData) > 0


class CompareMetricsPanel:
    """Every device's metric history in one plot: one curve per device, readout and metric
    column, coloured by device; test scores solid with dots, prequential ones dashed, against
    the time of the row each score was computed at (:func:`~.panels.history_time`).

    Parameters
    ----------
    plot : pyqtgraph.PlotItem
        The plot drawn into.
    legend : pyqtgraph.LegendItem
        The legend that names the devices.
    per_readout : bool
        Name curves ``<device> <readout> <kind>`` instead of ``<device> <kind>``.
    """

    name = "compare_metrics"

    def __init__(self, plot: pg.PlotItem, legend: pg.LegendItem, *, per_readout: bool = False) -> None:
        self.plot = plot
        self.legend = legend
        self.per_readout = per_readout
        plot.setTitle("every device's readout metrics (test solid, prequential dashed)")
        plot.showGrid(x=True, y=True, alpha=0.15)
        #: (device, readout, history column) -> its curve
        self.curves: dict[tuple[str, str, str], pg.PlotDataItem] = {}
        self._colours: dict[str, str] = {}
        self._seen: tuple = ()

    def update(self, devices: dict[str, DeviceFollower], order: list[str], view: View) -> None:
        """Draw every device's history (the whole run: a learning curve has no time window)."""
        seen = tuple((d, name, ro.evaluations) for d in order for name, ro in devices[d].readouts.items())
        if seen == self._seen:   # nothing new in any history: leave the curves
            return
        self._seen = seen
        names: set[str] = set()
        unit, step = shared_time(devices, order)
        self.plot.setLabel("bottom", "time", unit)
        for d in order:
            dev = devices[d]
            colour = self._colours.setdefault(d, DEVICE_COLOURS[len(self._colours) % len(DEVICE_COLOURS)])
            for ro_name, ro in dev.readouts.items():
                x = history_time(ro.history, step)
                for col, values in ro.history.items():
                    kind, _, metric = col.partition("_")
                    if kind not in ("prequential", "test") or x is None or len(values) == 0:
                        continue
                    names.add(metric)
                    key = (d, ro_name, col)
                    if key not in self.curves:
                        self.curves[key] = self._curve(d, ro_name, kind, metric, colour)
                    ys = np.asarray(values, dtype=np.float64)
                    ok = np.isfinite(x) & np.isfinite(ys)
                    self.curves[key].setData(x[ok], ys[ok])
        if names:
            self.plot.setLabel("left", metric_label(names))

    def _curve(self, device: str, readout: str, kind: str, metric: str, colour: str) -> pg.PlotDataItem:
        test = kind == "test"
        pen = pg.mkPen(colour, width=2 if test else 1.2,
                       style=QtCore.Qt.PenStyle.SolidLine if test else QtCore.Qt.PenStyle.DashLine)
        c = pg.PlotDataItem(pen=pen, symbol="o" if test else None, symbolSize=5, symbolBrush=colour,
                            symbolPen=None, connect="finite")
        self.plot.addItem(c)
        label = f"{device} {readout}" if self.per_readout else device
        self.legend.addItem(c, f"{label} {kind} {metric}")
        return c

    def has_data(self) -> bool:
        return any(c.xData is not None and len(c.xData) for c in self.curves.values())


class ComparisonView(QtWidgets.QWidget):
    """The comparison panels of a run with several devices, in one widget (legends in rows
    of their own above their plots).

    Parameters
    ----------
    follower : StoreFollower
        The run followed (polled by the window).
    """

    def __init__(self, follower: StoreFollower, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.graphics)
        layout = self.graphics.ci
        per_readout = len((follower.attrs.get("protocol") or {}).get("readouts") or []) > 1
        predictions = ComparePredictionsPanel(layout.addPlot(row=1, col=0), _legend(layout, 0),
                                              per_readout=per_readout)
        metrics = CompareMetricsPanel(layout.addPlot(row=3, col=0), _legend(layout, 2), per_readout=per_readout)
        layout.layout.setRowStretchFactor(1, 3)
        layout.layout.setRowStretchFactor(3, 2)
        self.panels: dict[str, ComparePredictionsPanel | CompareMetricsPanel] = {
            predictions.name: predictions, metrics.name: metrics}
        for panel in self.panels.values():
            for side in ("left", "bottom"):   # units as given: no SI prefix (as the device panels)
                axis = panel.plot.getAxis(side)
                if hasattr(axis, "setSIPrefixEnableRanges"):
                    axis.setSIPrefixEnableRanges(())
                axis.enableAutoSIPrefix(False)

    def update_panels(self, follower: StoreFollower, view: View, view_dt: float = 1.0) -> None:
        """Hand every device's buffers to the comparison panels.

        Parameters
        ----------
        follower : StoreFollower
            The run.
        view : View
            The time window chosen in the window, in the time unit of a device of step ``view_dt``.
        view_dt : float
            That device's step: the window is converted to the comparison's time axis
            (:func:`shared_time`).
        """
        order = device_order(follower)
        if not order:
            return
        _unit, step = shared_time(follower.devices, order)
        shared = View(None if view.seconds is None else view.seconds / view_dt * step)
        for panel in self.panels.values():
            panel.update(follower.devices, order, shared)
        for panel in self.panels.values():
            panel.plot.vb.prepareForPaint()
