"""pyqtgraph panels of one device: what each draws from a :class:`~.source.DeviceFollower`.

Every panel owns its plot items, is created once, and on :meth:`update` hands the
follower's buffers to those items (``setData`` / ``setImage``); nothing is rebuilt and the
store is never read here. Long traces are drawn with pyqtgraph's clip-to-view and peak
downsampling, so a frame costs about the same at row 1,000 and row 1,000,000.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtWidgets

from ..spec.policy import TIMING_COLUMNS
from .panel_base import Panel, View, metric_label, steady_y, time_label
from .source import DeviceFollower, Frame, ImageStream, SpikeBuffer

#: reads the image of a stream (``stream/column``) at a time: :meth:`~.source.StoreFollower.frame_at`
FrameReader = Callable[[str, float], Frame | None]

#: colours of the readouts' predictions, in order (Okabe-Ito, readable by colour-blind people)
READOUT_COLOURS = ["#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]
MAX_INPUT_LINES = 4
RASTER_BINS = 1200


class SignalsPanel(Panel):
    """Input, target and every readout's prediction, overlaid on the run's time axis."""

    name = "signals"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower) -> None:
        super().__init__(plot)
        plot.setTitle("input, target and predictions")
        plot.setLabel("bottom", *time_label(dev))
        plot.setLabel("left", "value (task units)")
        # the legend goes in one row in the title's band, above the data (PlotItem, not its ViewBox),
        # so it never covers a trace; curves named in plot.plot(name=...) join it
        plot.legend = pg.LegendItem(labelTextSize="8pt", colCount=12)
        plot.legend.setParentItem(plot)
        plot.legend.anchor(itemPos=(0, 0), parentPos=(0, 0), offset=(40, -4))
        plot.showGrid(x=False, y=True, alpha=0.15)   # no vertical lines: they move every frame
        k = min(dev.n_inputs, MAX_INPUT_LINES)
        # one legend entry for all the grey input lines, so the legend stays short of the title
        label = "input" if k == 1 else (f"inputs 0–{k - 1}" + (f" (of {dev.n_inputs})" if dev.n_inputs > k else ""))
        self.inputs = [self._curve(pg.mkPen((150, 150, 150), width=1), label if i == 0 else None) for i in range(k)]
        self.target: pg.PlotDataItem | None = None
        self.predictions: dict[str, pg.PlotDataItem] = {}
        plot.disableAutoRange()
        self._y: dict = {}

    def _curve(self, pen: Any, name: str | None) -> pg.PlotDataItem:
        c = self.plot.plot(pen=pen, name=name, connect="finite")
        c.setClipToView(True)
        c.setDownsampling(auto=True, method="peak")
        return c

    def update(self, dev: DeviceFollower, view: View) -> None:
        lo, hi = view.range(dev.end_time)
        x, data = dev.inputs.between(lo, hi)
        shown = [data[:, : len(self.inputs)]]
        for i, c in enumerate(self.inputs):
            c.setData(x, data[:, i])
        if dev.targets is not None and len(dev.targets):
            if self.target is None:
                self.target = self._curve(pg.mkPen("k", width=1), "target")
            x, data = dev.targets.between(lo, hi)
            self.target.setData(x, data[:, 0])
            shown.append(data[:, 0])
        for name, ro in dev.readouts.items():
            if name not in self.predictions:
                colour = READOUT_COLOURS[len(self.predictions) % len(READOUT_COLOURS)]
                self.predictions[name] = self._curve(pg.mkPen(colour, width=1), f"{name} prediction")
            if len(ro.predictions):
                x, data = ro.predictions.between(lo, hi)
                self.predictions[name].setData(x, data[:, 0])
                shown.append(data[:, 0])
        self.plot.setXRange(lo, hi, padding=0)
        steady_y(self.plot, shown, self._y)

    def has_data(self) -> bool:
        return any(c.xData is not None and len(c.xData) for c in self.inputs)


class FeaturesPanel(Panel):
    """Features as a heatmap, time x unit (evenly subsampled units for wide reservoirs)."""

    name = "features"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower) -> None:
        super().__init__(plot)
        shown = len(dev.units)
        sub = f", every {_ordinal(dev.unit_step)} of {dev.n_features}" if dev.unit_step > 1 else ""
        plot.setTitle(f"features ({shown} {dev.feature_name}s{sub})")
        plot.setLabel("bottom", *time_label(dev))
        plot.setLabel("left", dev.feature_name)
        self.image = pg.ImageItem(axisOrder="row-major")
        plot.addItem(self.image)
        self.bar: pg.ColorBarItem | None = None
        self.levels: tuple[float, float] | None = None
        self._units = dev.units

    def _colours(self, data: np.ndarray) -> None:
        """Fix the colour scale on the first data: diverging around 0 for signed states
        (tanh units), sequential from 0 for rates and traces."""
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            return
        hi = float(np.percentile(np.abs(finite), 99)) or 1.0
        if finite.min() < 0:
            self.levels, cmap = (-hi, hi), pg.colormap.get("CET-D1")
        else:
            self.levels, cmap = (0.0, float(np.percentile(finite, 99)) or 1.0), pg.colormap.get("viridis")
        # features are what readouts learn from, in the driver's own scale (tanh states, filtered
        # rates, pooled brightness 0-1): arbitrary units
        self.bar = pg.ColorBarItem(values=self.levels, colorMap=cmap, width=12, interactive=False,
                                   label="feature (a.u.)")
        self.bar.setImageItem(self.image)
        # in the layout's second column, so every panel's plot keeps the same width
        # (pyqtgraph aligns linked x axes pixel by pixel)
        self.layout.addItem(self.bar, row=self.row, col=1)

    def update(self, dev: DeviceFollower, view: View) -> None:
        lo, hi = view.range(dev.end_time)
        x, data = dev.features.between(lo, hi)
        if len(x) == 0:
            return
        if self.levels is None:
            self._colours(data)
        if self.levels is None:
            return
        # no more image columns than the plot has pixels: average neighbouring rows
        width_px = max(int(self.plot.vb.width()), 200)
        if len(x) > 2 * width_px:
            k = len(x) // width_px
            n = (len(x) // k) * k
            x = x[:n].reshape(-1, k).mean(axis=1)
            data = data[:n].reshape(-1, k, data.shape[1]).mean(axis=1)
        # one image row per shown unit, one column per time bin (row-major: [unit, time])
        self.image.setImage(np.ascontiguousarray(data.T), autoLevels=False, levels=self.levels)
        width = (x[-1] - x[0]) + (x[1] - x[0] if len(x) > 1 else dev.dt)
        top = float(self._units[-1] + 1) if len(self._units) else 1.0
        self.image.setRect(QtCore.QRectF(float(x[0]), 0.0, float(width), top))
        self.plot.setXRange(lo, hi, padding=0)
        self.plot.setYRange(0, top, padding=0)

    def has_data(self) -> bool:
        return self.image.image is not None


class RasterPanel(Panel):
    """Events of a spike stream as a raster: channel x time, drawn as an image of spike
    counts per (time bin, channel), so its cost does not grow with the number of spikes."""

    name = "raster"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower, buf: SpikeBuffer) -> None:
        super().__init__(plot)
        self.stream = buf.name
        plot.setTitle(f"{buf.name} raster ({buf.n_channels} channels)")
        plot.setLabel("bottom", "time", buf.time_label)
        plot.setLabel("left", "channel")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.ColorMap([0.0, 1.0], [(255, 255, 255), (0, 0, 0)]))
        plot.addItem(self.image)
        self.n_channels = buf.n_channels
        self._title = ""

    def update(self, dev: DeviceFollower, view: View) -> None:
        buf = dev.spikes[self.stream]
        lo, hi = view.range(dev.end_time)
        recent = len(buf.t) and view.seconds is not None and lo >= dev.end_time - buf.recent_seconds
        t, ch, step = (buf.t, buf.ch, 1) if recent else (buf.all_t, buf.all_ch, buf.channel_step)
        keep = (t >= lo) & (t < hi)
        t, ch = t[keep], ch[keep]
        bins = RASTER_BINS
        rows = max(1, -(-self.n_channels // step))
        col = np.clip(((t - lo) / (hi - lo) * bins).astype(np.int64), 0, bins - 1)
        img = np.zeros((rows, bins), dtype=np.float32)
        np.add.at(img, (np.clip(ch // step, 0, rows - 1), col), 1.0)
        # black = the most spikes a (bin, channel) cell holds (1 when zoomed in far enough
        # to see single spikes; a density when a bin holds many)
        nonzero = img[img > 0]
        top = max(1.0, float(np.percentile(nonzero, 99))) if nonzero.size else 1.0
        self.image.setImage(img, autoLevels=False, levels=(0.0, top))
        self.image.setRect(QtCore.QRectF(lo, 0.0, hi - lo, float(self.n_channels)))
        self.plot.setXRange(lo, hi, padding=0)
        self.plot.setYRange(0, self.n_channels, padding=0)
        title = f"{buf.name} raster ({self.n_channels} channels"
        title += f", every {step}th shown)" if step > 1 else ")"
        if title != self._title:   # a title is re-laid out as rich text: only when it changes
            self.plot.setTitle(title)
            self._title = title
        self._spikes = int(keep.sum())

    def has_data(self) -> bool:
        return self.image.image is not None


class RatePanel(Panel):
    """Population rate of a spike stream (mean spikes per second per channel)."""

    name = "rate"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower, buf: SpikeBuffer) -> None:
        super().__init__(plot)
        self.stream = buf.name
        plot.setTitle(f"{buf.name}: population rate")
        plot.setLabel("bottom", *time_label(dev))
        plot.setLabel("left", "rate", "Hz")
        plot.showGrid(x=False, y=True, alpha=0.15)
        self.curve = plot.plot(pen=pg.mkPen("#0072B2", width=1))
        self.curve.setClipToView(True)
        self.curve.setDownsampling(auto=True, method="peak")
        plot.disableAutoRange()
        self._y: dict = {}

    def update(self, dev: DeviceFollower, view: View) -> None:
        lo, hi = view.range(dev.end_time)
        x, rate = dev.spikes[self.stream].rate.between(lo, hi)
        self.curve.setData(x, rate)
        self.plot.setXRange(lo, hi, padding=0)
        steady_y(self.plot, [np.append(rate, 0.0)], self._y)

    def has_data(self) -> bool:
        return self.curve.xData is not None and len(self.curve.xData) > 0


def _loop_between(dev: DeviceFollower, lo: float, hi: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Block start times in ``[lo, hi]`` and the loop's columns there."""
    if "row" not in dev.loop:
        return np.zeros(0), {}
    x = dev.loop["row"] * dev.dt
    a, b = np.searchsorted(x, lo, side="left"), np.searchsorted(x, hi, side="right")
    return x[a:b], {col: v[a:b] for col, v in dev.loop.items()}


class LoopPanel(Panel):
    """A closed loop's decisions, block by block: the policy's record (the command it chose,
    what it measured, hits...), one line per column, at each block's start."""

    name = "loop"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower) -> None:
        super().__init__(plot)
        plot.setTitle("closed loop: the policy's record per block")
        plot.setLabel("bottom", *time_label(dev))
        # inside the data's corner: on an opaque background, so no curve shows through it
        plot.addLegend(offset=(-5, 5), labelTextSize="8pt", brush=pg.mkBrush(255, 255, 255, 230),
                       pen=pg.mkPen(180, 180, 180))
        plot.showGrid(x=False, y=True, alpha=0.15)
        plot.disableAutoRange()
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._y: dict = {}

    def update(self, dev: DeviceFollower, view: View) -> None:
        lo, hi = view.range(dev.end_time)
        x, cols = _loop_between(dev, lo, hi)
        shown = []
        for col, values in cols.items():
            if col in TIMING_COLUMNS:        # the loop's own timing, not the policy's record
                continue
            if col not in self.curves:
                colour = READOUT_COLOURS[len(self.curves) % len(READOUT_COLOURS)]
                self.curves[col] = self.plot.plot(pen=pg.mkPen(colour, width=1), symbol="o", symbolSize=3,
                                                  symbolBrush=colour, symbolPen=None, name=col)
            # blocks with nothing to say (NaN before the first trial) are left out: pyqtgraph's
            # scatter bounds warn on NaN
            ok = np.isfinite(values)
            self.curves[col].setData(x[ok], values[ok])
            shown.append(values[ok])
        self.plot.setXRange(lo, hi, padding=0)
        steady_y(self.plot, shown, self._y)

    def has_data(self) -> bool:
        return any(c.xData is not None and len(c.xData) for c in self.curves.values())


class LatencyPanel(Panel):
    """A closed loop's latency per block: how long the device waited between two blocks (ms)."""

    name = "latency"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower) -> None:
        super().__init__(plot)
        plot.setTitle("closed loop: latency per block")
        plot.setLabel("bottom", *time_label(dev))
        plot.setLabel("left", "latency", "ms")
        plot.showGrid(x=False, y=True, alpha=0.15)
        plot.disableAutoRange()
        self.points = plot.plot(pen=None, symbol="o", symbolSize=3, symbolBrush="#0072B2", symbolPen=None)
        self._y: dict = {}

    def update(self, dev: DeviceFollower, view: View) -> None:
        lo, hi = view.range(dev.end_time)
        x, cols = _loop_between(dev, lo, hi)
        ms = cols.get("latency_s", np.zeros(0)) * 1e3
        ok = np.isfinite(ms)                 # the first block has no latency
        x, ms = x[ok], ms[ok]
        self.points.setData(x, ms)
        self.plot.setXRange(lo, hi, padding=0)
        steady_y(self.plot, [np.append(ms, 0.0)], self._y)

    def has_data(self) -> bool:
        return self.points.xData is not None and len(self.points.xData) > 0


class MotorPanel(Panel):
    """The duty each motor was driven with, as a raster: motor x time (the bucket's inputs as
    its motors receive them, see :class:`~.source.MotorMap`)."""

    name = "motors"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower) -> None:
        super().__init__(plot)
        n = dev.motors.n_motors
        plot.setTitle(f"motor duty ({n} motors)")
        plot.setLabel("bottom", *time_label(dev))
        plot.setLabel("left", "motor")
        plot.getAxis("left").setTicks([[(i + 0.5, str(i)) for i in range(n)]])
        self.image = pg.ImageItem(axisOrder="row-major")
        plot.addItem(self.image)
        self.levels = (0.0, max(dev.motors.ceiling, 1e-9))
        self.bar: pg.ColorBarItem | None = None
        self.n = n

    def update(self, dev: DeviceFollower, view: View) -> None:
        lo, hi = view.range(dev.end_time)
        x, data = dev.duty.between(lo, hi)
        if len(x) == 0:
            return
        if self.bar is None:
            self.bar = pg.ColorBarItem(values=self.levels, colorMap=pg.colormap.get("CET-L1").reverse(),
                                       width=12, interactive=False, label="duty (0-1)")
            self.bar.setImageItem(self.image)
            self.layout.addItem(self.bar, row=self.row, col=1)
        width_px = max(int(self.plot.vb.width()), 200)
        if len(x) > 2 * width_px:     # no more image columns than the plot has pixels
            k = len(x) // width_px
            m = (len(x) // k) * k
            x = x[:m].reshape(-1, k).mean(axis=1)
            data = data[:m].reshape(-1, k, data.shape[1]).mean(axis=1)
        self.image.setImage(np.ascontiguousarray(data.T), autoLevels=False, levels=self.levels)
        width = (x[-1] - x[0]) + (x[1] - x[0] if len(x) > 1 else dev.dt)
        self.image.setRect(QtCore.QRectF(float(x[0]), 0.0, float(width), float(self.n)))
        self.plot.setXRange(lo, hi, padding=0)
        self.plot.setYRange(0, self.n, padding=0)

    def has_data(self) -> bool:
        return self.image.image is not None


class CameraPanel(Panel):
    """The frame of an image-like raw stream (a camera) at the right edge of the linked time
    axis: the latest committed frame while following; once following is paused, zooming or
    panning the time axis plays the run back (the frame at the view's right edge). Greyscale,
    aspect locked, axes in pixels, a colour bar in DN."""

    name = "camera"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower, im: ImageStream, frames: FrameReader,
                 time_plot: pg.PlotItem) -> None:
        super().__init__(plot)
        self.stream = im
        self.frames = frames
        self.time_unit = dev.time_unit
        self.frame: Frame | None = None
        plot.setTitle(f"{im.stream}: camera frame")
        plot.setLabel("bottom", f"{im.dims[1]} (pixel)")
        plot.setLabel("left", f"{im.dims[0]} (pixel)")
        plot.setAspectLocked(True)
        plot.invertY(True)            # row 0 of the image at the top, as the camera sees it
        self.image = pg.ImageItem(axisOrder="row-major")
        plot.addItem(self.image)
        plot.setMouseEnabled(x=False, y=False)   # auto-ranged: the image stays centred in the panel
        self.levels = (0.0, 255.0) if im.dtype == "uint8" else None
        self.bar: pg.ColorBarItem | None = None
        self._title = ""
        self._time_plot = time_plot
        time_plot.sigXRangeChanged.connect(self._range_changed)

    def _range_changed(self, *_args: Any) -> None:
        self.show_at(self._time_plot.vb.viewRange()[0][1])

    def show_at(self, t: float) -> None:
        """Show the frame at time ``t`` (the latest one at or past the end of the run)."""
        frame = self.frames(self.stream.key, t)
        if frame is None or frame is self.frame:
            return
        self.frame = frame
        levels = self.levels or (float(frame.image.min()), float(frame.image.max()) or 1.0)
        self.image.setImage(frame.image, autoLevels=False, levels=levels)
        h, w = self.stream.shape    # one pixel per unit (after setImage: the rect scales the image's size)
        self.image.setRect(QtCore.QRectF(0.0, 0.0, float(w), float(h)))
        if self.bar is None:
            unit = "DN" if self.stream.dtype == "uint8" else "value"
            self.bar = pg.ColorBarItem(values=levels, colorMap=pg.colormap.get("CET-L1"), width=12,
                                       interactive=False, label=unit)
            self.bar.setImageItem(self.image)
            self.layout.addItem(self.bar, row=self.row, col=1)
        title = f"{self.stream.stream}: camera frame {frame.index} at t = {frame.time:.2f} {self.time_unit}"
        if title != self._title:
            self.plot.setTitle(title)
            self._title = title

    def update(self, dev: DeviceFollower, view: View) -> None:
        self.show_at(view.range(dev.end_time)[1])

    def has_data(self) -> bool:
        return self.image.image is not None


class MetricsPanel(Panel):
    """Each readout's metric history as it is written: prequential (dashed) and test (solid)
    values against the time of the row each was computed at (``row`` of the history, times
    the device's step), so the test phase's scores form a curve over the test rows."""

    name = "metrics"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower) -> None:
        super().__init__(plot)
        plot.setTitle("readout metrics as they are written")
        plot.setLabel("bottom", *time_label(dev))
        # the legend sits in the title's band (as the signals panel's), never over the curves
        plot.legend = pg.LegendItem(labelTextSize="8pt", colCount=12)
        plot.legend.setParentItem(plot)
        plot.legend.anchor(itemPos=(0, 0), parentPos=(0, 0), offset=(40, -4))
        plot.showGrid(x=True, y=True, alpha=0.15)
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self._seen: tuple = ()

    def update(self, dev: DeviceFollower, view: View) -> None:
        seen = tuple((name, ro.evaluations) for name, ro in dev.readouts.items())
        if seen == self._seen:   # nothing new in any history: leave the curves (and their paint cache)
            return
        self._seen = seen
        names = set()
        for i, (name, ro) in enumerate(dev.readouts.items()):
            colour = READOUT_COLOURS[i % len(READOUT_COLOURS)]
            x = history_time(ro.history, dev.dt)
            for col, values in ro.history.items():
                kind = col.split("_", 1)[0]
                if kind not in ("prequential", "test") or x is None or len(values) == 0:
                    continue
                names.add(col.split("_", 1)[1])
                key = (name, col)
                if key not in self.curves:
                    style = QtCore.Qt.PenStyle.SolidLine if kind == "test" else QtCore.Qt.PenStyle.DashLine
                    self.curves[key] = self.plot.plot(pen=pg.mkPen(colour, width=1.5, style=style),
                                                      symbol="o", symbolSize=4, symbolBrush=colour,
                                                      symbolPen=None, name=f"{name} {kind}", connect="finite")
                xs, ys = x, np.asarray(values, float)
                ok = np.isfinite(xs) & np.isfinite(ys)    # no score yet (NaN): no point; pyqtgraph's
                self.curves[key].setData(xs[ok], ys[ok])   # scatter bounds warn on an all-NaN view
        if names:
            self.plot.setLabel("left", metric_label(names))

    def has_data(self) -> bool:
        return any(c.xData is not None and len(c.xData) for c in self.curves.values())


def history_time(history: dict[str, np.ndarray], dt: float) -> np.ndarray | None:
    """The time of each evaluation of a readout's metric history: its ``row`` (the device's
    rows seen when the scores were computed) times ``dt``. Histories written before ``row``
    was recorded fall back on ``n_train`` (then test scores stack at the last training row).

    Parameters
    ----------
    history : dict of str to ndarray
        The history's columns (``row``, ``n_train``, ``n_test``, ``prequential_<m>``, ``test_<m>``).
    dt : float
        The device's time step (1 for software reservoirs: time in steps).

    Returns
    -------
    ndarray of float, or None when the history has neither column.
    """
    if "row" in history:
        return np.asarray(history["row"], dtype=np.float64) * dt
    if "n_train" in history:
        return np.asarray(history["n_train"], dtype=np.float64) * dt
    return None


def build_panels(layout: pg.GraphicsLayout, dev: DeviceFollower, *, readouts: bool = True,
                 frames: FrameReader | None = None, store: str | os.PathLike[str] | None = None) -> dict[str, Panel]:
    """The panels that what ``dev`` holds calls for, stacked in ``layout``, time axes linked.

    ``frames`` reads one image of an image-like raw stream at a time; without it there is
    no camera panel. ``store`` (the run store's path) lets the event panels
    (:mod:`.event_panel`) read a device's event stream (t, x, y, p); without it an event
    stream is drawn as a spike raster of its ``channel_column``.
    """
    from .event_panel import add_event_panels, event_streams

    panels: dict[str, Panel] = {}
    row = 0
    events = set(event_streams(dev.attrs.get("spec") or {})) if store is not None else set()

    def add(panel_cls: type[Panel], *args: Any, key: str | None = None) -> Panel:
        nonlocal row
        plot = layout.addPlot(row=row, col=0)
        panel = panel_cls(plot, dev, *args)
        panel.layout, panel.row = layout, row
        row += 1
        panels[key or panel.name] = panel
        return panel

    signals = add(SignalsPanel)
    feats = add(FeaturesPanel)
    feats.plot.setXLink(signals.plot)
    for stream, buf in dev.spikes.items():
        if stream in events:         # drawn by the event panels
            continue
        suffix = "" if len(dev.spikes) == 1 else f":{stream}"
        raster = add(RasterPanel, buf, key=f"raster{suffix}")
        rate = add(RatePanel, buf, key=f"rate{suffix}")
        raster.plot.setXLink(signals.plot)
        rate.plot.setXLink(signals.plot)
    if dev.closed_loop:
        for cls in (LoopPanel, LatencyPanel):
            add(cls).plot.setXLink(signals.plot)
    if dev.duty is not None:
        add(MotorPanel).plot.setXLink(signals.plot)
    event_images: dict[str, Panel] = {}
    if events:
        rates, event_images, after = add_event_panels(layout, dev, store, row)
        for key, panel in rates.items():
            panel.plot.setXLink(signals.plot)
            panels[key] = panel
    # one time axis, under the lowest of the linked panels: the others' would repeat it (and
    # every axis costs a text redraw per frame)
    linked = [p for key, p in panels.items()
              if key.split(":")[0] in ("signals", "features", "raster", "rate", "loop", "latency", "motors",
                                       "event_rate")]
    for panel in linked[:-1]:
        panel.plot.hideAxis("bottom")
    if event_images:
        panels.update(event_images)
        row = after
    if frames is not None:
        for key, im in dev.images.items():
            camera = add(CameraPanel, im, frames, signals.plot,
                         key="camera" if len(dev.images) == 1 else f"camera:{key}")
            layout.layout.setRowStretchFactor(camera.row, 3)   # an image needs height
    if readouts:                     # a run with `readouts = []` (a recording, a closed loop) has no metrics
        add(MetricsPanel)
    # axes are redrawn (text and all) only when their range changes; otherwise Qt paints a
    # cached pixmap of them, which is most of what a frame would cost
    for panel in panels.values():
        for side in ("left", "bottom"):
            axis = panel.plot.getAxis(side)
            axis.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
            # units as given ("s", "Hz"): an automatic SI prefix would re-lay out the label
            # (rich text) every time the range moves. pyqtgraph 0.14 still picks a prefix from
            # the range at the moment it is disabled, and keeps it (an axis of 64 electrodes
            # read 0-64000): no range may enable one
            if hasattr(axis, "setSIPrefixEnableRanges"):
                axis.setSIPrefixEnableRanges(())
            axis.enableAutoSIPrefix(False)
    return panels


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
