"""The monitor's event panels: what an event camera (DVS) saw, from its raw stream ``events``.

An event camera reports, per pixel, each change of log intensity by a threshold as an event
``(t, x, y, p)`` (Lichtsteiner, Posch & Delbruck 2008, IEEE JSSC 43(2)); a run keeps every
event in the raw stream ``events`` (columns t, x, y, p; ``p`` True = ON, a brighter pixel).
Three panels show it:

- :class:`EventFramePanel`: the events of the last ``window_s`` (50 ms by default) on the
  sensor grid, ON minus OFF per pixel, in a diverging colour map (ON red, OFF blue) with a
  colour bar in events per pixel: the usual "event frame" of a DVS viewer;
- :class:`EventRatePanel`: ON and OFF events per second per row of the run, on the run's
  linked time axis;
- :class:`EventRowPanel`: an x–t raster of one sensor row (the middle one by default): x
  across, time upwards over the last ``raster_s``, ON and OFF dots, older dots fainter, so an
  edge moving along the row draws a slanted line (a slice through the x–y–t event cloud).

The three share one :class:`EventWindow` (no Qt): it reads the stream incrementally, only
the events of rows the follower has read since the last update, never past the committed
blocks (:func:`~.source.read_raw_rows`); t and p of every new event feed the rate, x and y are
read only for the events of the last ``keep_s``, and at most ``max_events`` are held.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from pyqtgraph.Qt import QtCore

from .panel_base import Panel, View
from .source import DeviceFollower, Series, raw_committed_rows, read_raw_rows

#: ON and OFF colours (Okabe-Ito vermillion and blue, readable by colour-blind people)
ON_COLOUR, OFF_COLOUR = "#D55E00", "#0072B2"
#: events read per store read while catching up (bounds the memory of one update)
READ_CHUNK = 1 << 20
#: rows of the time column read at once at the end of a binary search (playback)
READ_SPAN = 4096
#: age bands of the row raster (older bands drawn fainter)
AGE_BANDS = 4


def _time_label(dev: DeviceFollower) -> tuple[str, str]:
    return ("time", "s") if dev.time_unit == "s" else ("time", "step")


def _steady_y(plot: pg.PlotItem, values: np.ndarray, state: dict) -> None:
    """Set the y range to [0, 1.08 max] only when the data leaves it or fills less than half
    of it (a range that moved every frame would redraw the axis text every frame)."""
    finite = values[np.isfinite(values)]
    hi = max(float(finite.max()) if finite.size else 0.0, 1.0)
    cur = state.get("y")
    if cur is not None and hi <= cur[1] and hi >= 0.5 * cur[1]:
        return
    state["y"] = (0.0, 1.08 * hi)
    plot.setYRange(*state["y"], padding=0)


def event_streams(spec: dict[str, Any]) -> list[str]:
    """The raw streams of a device's spec that hold events: a time column and x, y, p columns."""
    out = []
    for stream, s in (spec.get("raw") or {}).items():
        cols = set((s.get("columns") or {}).keys())
        if {"x", "y", "p"} <= cols and (s.get("time_column") or "t") in cols:
            out.append(stream)
    return out


def sensor_hw(attrs: dict[str, Any], spec_stream: dict[str, Any]) -> tuple[int, int]:
    """The sensor's (height, width) in pixels, from the driver's ``describe()["sensor_hw"]``
    (else the stream's ``n_channels`` as the width of a square sensor, else 128 x 128)."""
    hw = (attrs.get("describe") or {}).get("sensor_hw")
    if hw and len(hw) == 2:
        return int(hw[0]), int(hw[1])
    n = int(spec_stream.get("n_channels") or 128)
    return n, n


class EventWindow:
    """The events of one event stream for display, read from the store incrementally.

    Parameters
    ----------
    store : path
        The run store.
    device : str
        The device group.
    stream : str
        Its event stream (columns t, x, y, p).
    dev : DeviceFollower
        The device's follower (its rows, row length and buffer sizes).
    keep_s : float
        Seconds of events kept with their pixels (the longest window a panel shows).
    max_events : int
        Most events kept (the newest).

    Attributes
    ----------
    t, x, y, p : ndarray
        The events kept: time (s), pixel column and row, polarity (True = ON), by time.
    rate : Series
        ON and OFF events per second of each row read (columns 0 and 1).
    position : int
        Events read from the stream so far.
    rows : int
        Rows of the device whose events have been read.
    reads : int
        Updates that read the store (an update with no new rows reads nothing).
    """

    def __init__(self, store: str | os.PathLike[str], device: str, stream: str, dev: DeviceFollower, *,
                 keep_s: float, max_events: int = 200_000) -> None:
        s = ((dev.attrs.get("spec") or {}).get("raw") or {}).get(stream) or {}
        self.store, self.device, self.stream = Path(store), device, stream
        self.tcol = str(s.get("time_column") or "t")
        self.time_scale = float(s.get("time_scale", 1e-6))
        self.shape = sensor_hw(dev.attrs, s)
        self.keep_s = float(keep_s)
        self.max_events = int(max_events)
        self.t = np.zeros(0)
        self.x = np.zeros(0, np.int64)
        self.y = np.zeros(0, np.int64)
        self.p = np.zeros(0, bool)
        self.rate = Series(dev.window_rows, dev.capacity, 2)
        self.position = 0
        self.rows = 0
        self.reads = 0
        self.end_time = 0.0

    def update(self, dev: DeviceFollower) -> bool:
        """Read the events of the rows the follower read since the last call; True if any rows."""
        a, b = self.rows, dev.position
        if b <= a:
            return False
        self.reads += 1
        t_end = b * dev.dt
        end_units = t_end / self.time_scale
        committed = raw_committed_rows(self.store, self.device, self.stream)
        # t and p of every new event, a chunk at a time: ON and OFF counts per row
        on, off = np.zeros(b - a), np.zeros(b - a)
        pos = self.position
        while pos < committed:
            cols = read_raw_rows(self.store, self.device, self.stream, [self.tcol, "p"], pos,
                                 min(pos + READ_CHUNK, committed))
            t = np.asarray(cols[self.tcol], dtype=np.float64)
            n = int(np.searchsorted(t, end_units, side="left"))   # the events of rows < b only
            rows = np.clip(np.floor(t[:n] * self.time_scale / dev.dt + 1e-9).astype(np.int64) - a, 0, b - a - 1)
            p = np.asarray(cols["p"][:n], dtype=bool)
            on += np.bincount(rows[p], minlength=b - a)[: b - a]
            off += np.bincount(rows[~p], minlength=b - a)[: b - a]
            pos += n
            if n < len(t):
                break
        self.rate.append(dev.times(a, b), np.stack([on, off], axis=1) / dev.dt)
        # pixels of the events of the last keep_s (the newest max_events at most)
        lo = max(self.position, pos - self.max_events)
        if pos > lo:
            t = np.asarray(read_raw_rows(self.store, self.device, self.stream, [self.tcol], lo, pos)[self.tcol],
                           dtype=np.float64) * self.time_scale
            cut = lo + int(np.searchsorted(t, t_end - self.keep_s, side="left"))
            cols = read_raw_rows(self.store, self.device, self.stream, ["x", "y", "p"], cut, pos)
            keep = self.t >= t_end - self.keep_s
            self.t = np.concatenate([self.t[keep], t[cut - lo:]])[-self.max_events:]
            self.x = np.concatenate([self.x[keep], cols["x"].astype(np.int64)])[-self.max_events:]
            self.y = np.concatenate([self.y[keep], cols["y"].astype(np.int64)])[-self.max_events:]
            self.p = np.concatenate([self.p[keep], cols["p"].astype(bool)])[-self.max_events:]
        else:
            keep = self.t >= t_end - self.keep_s
            self.t, self.x, self.y, self.p = self.t[keep], self.x[keep], self.y[keep], self.p[keep]
        self.position, self.rows, self.end_time = pos, b, t_end
        return True

    def between(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The kept events with ``lo <= t < hi`` (s): t, x, y, p."""
        a, b = np.searchsorted(self.t, lo, side="left"), np.searchsorted(self.t, hi, side="left")
        return self.t[a:b], self.x[a:b], self.y[a:b], self.p[a:b]

    @property
    def last_time(self) -> float:
        """Time (s) of the newest event kept (the end of the rows read when none is)."""
        return float(self.t[-1]) if len(self.t) else self.end_time

    def until(self, end: float, span_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The events with ``end - span_s <= t < end`` (s): t, x, y, p. From the events kept
        when they cover that span (following), else read from the store (playing back an
        earlier stretch): two binary searches of the time column, then that slice, at most
        ``max_events`` (the newest)."""
        if self.rows == 0:
            return self.between(0.0, 0.0)
        kept_from = self.end_time - self.keep_s
        if end - span_s >= kept_from - 1e-9 and end <= self.end_time + 1e-6:
            return self.between(end - span_s, end)
        committed = raw_committed_rows(self.store, self.device, self.stream)
        lo = self._search(committed, (end - span_s) / self.time_scale)
        hi = self._search(committed, end / self.time_scale)
        lo = max(lo, hi - self.max_events)
        cols = read_raw_rows(self.store, self.device, self.stream, [self.tcol, "x", "y", "p"], lo, hi)
        return (np.asarray(cols[self.tcol], dtype=np.float64) * self.time_scale, cols["x"].astype(np.int64),
                cols["y"].astype(np.int64), cols["p"].astype(bool))

    def _search(self, n: int, value: float) -> int:
        """The first event (of the ``n`` committed) whose time is ``>= value`` (stream units)."""
        lo, hi = 0, n
        while hi - lo > READ_SPAN:           # bisect on single reads, then one read of the rest
            mid = (lo + hi) // 2
            t = read_raw_rows(self.store, self.device, self.stream, [self.tcol], mid, mid + 1)[self.tcol]
            if len(t) and float(t[0]) < value:
                lo = mid + 1
            else:
                hi = mid
        t = np.asarray(read_raw_rows(self.store, self.device, self.stream, [self.tcol], lo, hi)[self.tcol],
                       dtype=np.float64)
        return lo + int(np.searchsorted(t, value, side="left"))

    def net_counts(self, window_s: float, end: float | None = None) -> np.ndarray:
        """ON minus OFF events per pixel, (H, W), over the ``window_s`` before ``end`` (s); by
        default up to and including the newest event kept (a quiet end of the run, a dark
        monitor, still shows the last events)."""
        h, w = self.shape
        if end is None:
            end = self.last_time
            _, x, y, p = self.between(end - window_s, end + 1e-9)
        else:
            _, x, y, p = self.until(end, window_s)
        ok = (x < w) & (y < h)
        idx = y[ok] * w + x[ok]
        return np.bincount(idx, weights=np.where(p[ok], 1.0, -1.0), minlength=h * w).reshape(h, w)


class EventFramePanel(Panel):
    """ON minus OFF events per pixel in the last ``window_s`` (the sensor grid, diverging colours)."""

    name = "event_frame"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower, events: EventWindow, window_s: float = 0.05) -> None:
        super().__init__(plot)
        self.events, self.window_s = events, float(window_s)
        h, w = events.shape
        plot.setLabel("bottom", "x (pixel)")
        plot.setLabel("left", "y (pixel)")
        plot.setAspectLocked(True)
        plot.invertY(True)                       # row 0 at the top, as the sensor sees it
        plot.setMouseEnabled(x=False, y=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        plot.addItem(self.image)
        plot.setXRange(0, w, padding=0.02)
        plot.setYRange(0, h, padding=0.02)
        self.cmap = pg.ColorMap([0.0, 0.5, 1.0], [OFF_COLOUR, (255, 255, 255), ON_COLOUR])
        self.levels = (-1.0, 1.0)
        self.bar: pg.ColorBarItem | None = None
        self._title = ""
        self._shown: tuple = ()
        self.col = 0     # the column of the plot in its layout (the colour bar goes to its right)

    def update(self, dev: DeviceFollower, view: View) -> None:
        self.events.update(dev)
        self.show_at(math.inf)

    def show_at(self, t: float) -> None:
        """Draw the ``window_s`` before time ``t`` (s); at or past the end of the rows read, the
        window up to the newest event. Following calls it with the end; once following is
        paused, zooming or panning the linked time axis plays the run back (its right edge)."""
        if self.events.rows == 0:
            return
        at_end = t >= self.events.end_time
        key = ("end", self.events.rows) if at_end else ("t", t)
        if key == self._shown:
            return
        self._shown = key
        net = self.events.net_counts(self.window_s, None if at_end else t)
        end = self.events.last_time if at_end else t
        top = max(1.0, float(np.ceil(np.abs(net).max())))
        if top > self.levels[1] or top < 0.25 * self.levels[1]:   # steady colours: rescale on big changes only
            self.levels = (-top, top)
            if self.bar is not None:
                self.bar.setLevels(self.levels)
        self.image.setImage(net, autoLevels=False, levels=self.levels)
        self.image.setColorMap(self.cmap)
        h, w = self.events.shape
        self.image.setRect(QtCore.QRectF(0.0, 0.0, float(w), float(h)))
        if self.bar is None and self.layout is not None:
            ms = self.window_s * 1e3
            self.bar = pg.ColorBarItem(values=self.levels, colorMap=self.cmap, width=12, interactive=False,
                                       label=f"ON − OFF (events per pixel in {ms:g} ms)")
            self.bar.setImageItem(self.image)
            self.layout.addItem(self.bar, row=self.row, col=self.col + 1)
        title = (f"{self.events.stream}: {self.window_s * 1e3:g} ms to "
                 f"{'the last event, ' if at_end else ''}t = {end:.3f} s "
                 f"(<span style='color:{ON_COLOUR}'>ON</span> − <span style='color:{OFF_COLOUR}'>OFF</span>)")
        if title != self._title:
            self.plot.setTitle(title)
            self._title = title

    def has_data(self) -> bool:
        return self.image.image is not None


class EventRatePanel(Panel):
    """ON and OFF events per second, row by row, on the run's time axis."""

    name = "event_rate"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower, events: EventWindow) -> None:
        super().__init__(plot)
        self.events = events
        # the legend is the title, coloured: never over the data
        plot.setTitle(f"{events.stream}: event rate, <span style='color:{ON_COLOUR}'>ON</span> and "
                      f"<span style='color:{OFF_COLOUR}'>OFF</span> (all pixels)")
        plot.setLabel("bottom", *_time_label(dev))
        plot.setLabel("left", "event rate", "events/s")
        plot.showGrid(x=False, y=True, alpha=0.15)
        self.curves = []
        for colour in (ON_COLOUR, OFF_COLOUR):
            c = plot.plot(pen=pg.mkPen(colour, width=1))
            c.setClipToView(True)
            c.setDownsampling(auto=True, method="peak")
            self.curves.append(c)
        plot.disableAutoRange()
        self._y: dict = {}

    def update(self, dev: DeviceFollower, view: View) -> None:
        self.events.update(dev)
        lo, hi = view.range(dev.end_time)
        x, rate = self.events.rate.between(lo, hi)
        for i, c in enumerate(self.curves):
            c.setData(x, rate[:, i] if len(x) else rate)
        self.plot.setXRange(lo, hi, padding=0)
        _steady_y(self.plot, np.asarray(rate, dtype=np.float64).ravel(), self._y)

    def has_data(self) -> bool:
        return self.curves[0].xData is not None and len(self.curves[0].xData) > 0


class EventRowPanel(Panel):
    """x–t raster of one sensor row over the last ``raster_s``: x across, time upwards, ON and
    OFF dots, in ``AGE_BANDS`` bands of age, the older fainter."""

    name = "event_row"

    def __init__(self, plot: pg.PlotItem, dev: DeviceFollower, events: EventWindow, row: int | None = None,
                 raster_s: float = 0.5) -> None:
        super().__init__(plot)
        h, w = events.shape
        self.events, self.raster_s = events, float(raster_s)
        self.sensor_row = h // 2 if row is None else int(row)
        if not 0 <= self.sensor_row < h:
            raise ValueError(f"event row {row}: the sensor has rows 0 to {h - 1}")
        plot.setTitle(f"row y = {self.sensor_row}: x–t raster, last {self.raster_s:g} s "
                      f"(<span style='color:{ON_COLOUR}'>ON</span>, <span style='color:{OFF_COLOUR}'>OFF</span>;"
                      f" older fainter)")
        plot.setLabel("bottom", "x (pixel)")
        plot.setLabel("left", "time", "s")
        plot.setMouseEnabled(x=False, y=False)
        plot.disableAutoRange()
        plot.setXRange(-0.5, w - 0.5, padding=0.02)
        self.width = w
        self.dots: list[tuple[pg.ScatterPlotItem, bool, int]] = []
        for band in range(AGE_BANDS):        # oldest band first: the newest dots are drawn on top
            alpha = int(255 * (band + 1) / AGE_BANDS)
            for on in (False, True):
                colour = pg.mkColor(ON_COLOUR if on else OFF_COLOUR)
                colour.setAlpha(alpha)
                item = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(colour), symbol="s", pxMode=True)
                plot.addItem(item)
                self.dots.append((item, on, band))
        self._shown = 0
        self._key: tuple = ()

    def update(self, dev: DeviceFollower, view: View) -> None:
        self.events.update(dev)
        self.show_at(math.inf)

    def show_at(self, t: float) -> None:
        """Draw the ``raster_s`` before time ``t`` (s), or before the end of the rows read (at or
        past it); see :meth:`EventFramePanel.show_at`."""
        if self.events.rows == 0:
            return
        end = min(t, self.events.end_time)
        key = (end, self.events.rows)
        if key == self._key:
            return
        self._key = key
        t, x, y, p = self.events.until(end + 1e-9, self.raster_s + 1e-9)
        sel = y == self.sensor_row
        t, x, p = t[sel], x[sel], p[sel]
        band = np.clip(((t - (end - self.raster_s)) / self.raster_s * AGE_BANDS).astype(np.int64), 0, AGE_BANDS - 1)
        for item, on, k in self.dots:
            m = (p == on) & (band == k)
            item.setData(x[m].astype(np.float64), t[m])
        self._shown = int(sel.sum())
        self.plot.setYRange(end - self.raster_s, end, padding=0)

    def has_data(self) -> bool:
        return self._shown > 0


def add_event_panels(layout: pg.GraphicsLayout, dev: DeviceFollower, store: str | os.PathLike[str], row: int,
                     *, window_s: float = 0.05, raster_s: float = 0.5, event_row: int | None = None
                     ) -> tuple[dict[str, Panel], dict[str, Panel], int]:
    """Add the event panels of every event stream of ``dev`` to ``layout`` from ``row`` on.

    Per stream: the rate panel in layout row ``row`` (the caller links its time axis), then
    the frame and the row raster side by side in the next row. Returns the rate panels, the
    frame and raster panels, and the next free row. Keys are ``event_rate``, ``event_frame`` and
    ``event_row`` (with ``:<stream>`` when a device has several event streams).
    """
    streams = event_streams(dev.attrs.get("spec") or {})
    rates: dict[str, Panel] = {}
    images: dict[str, Panel] = {}
    for stream in streams:
        suffix = "" if len(streams) == 1 else f":{stream}"
        events = EventWindow(store, dev.name, stream, dev, keep_s=max(window_s, raster_s))
        plot = layout.addPlot(row=row, col=0)
        rate = EventRatePanel(plot, dev, events)
        rate.layout, rate.row = layout, row
        rates[f"event_rate{suffix}"] = rate
        row += 1
        sub = layout.addLayout(row=row, col=0)
        frame = EventFramePanel(sub.addPlot(row=0, col=0), dev, events, window_s)
        frame.layout, frame.row, frame.col = sub, 0, 0
        raster = EventRowPanel(sub.addPlot(row=0, col=2), dev, events, event_row, raster_s)
        raster.layout, raster.row = sub, 0
        sub.layout.setColumnStretchFactor(0, 3)
        sub.layout.setColumnStretchFactor(2, 4)
        layout.layout.setRowStretchFactor(row, 3)   # images need height
        images[f"event_frame{suffix}"] = frame
        images[f"event_row{suffix}"] = raster
        plot.sigXRangeChanged.connect(_playback(plot, (frame, raster)))
        row += 1
    return rates, images, row


def _playback(time_plot: pg.PlotItem, panels: tuple[Any, ...]) -> Any:
    """A slot that shows ``panels`` at the right edge of ``time_plot``'s range (playback)."""
    def changed(*_args: Any) -> None:
        right = time_plot.vb.viewRange()[0][1]
        for panel in panels:
            panel.show_at(right)
    return changed
