"""The monitor window: a header, controls, and one stack of panels per device; a run with
several devices also gets the comparison panels (:mod:`.compare_panels`) above the stack.

A QTimer polls the :class:`~.source.StoreFollower` (``interval_ms``, 50 ms by default)
and, when new rows arrived, hands the shown device's buffers to its panels. Painting is
Qt's: the frame rate reported is the number of frames the plots actually painted per
second (counted from the view's paint events).
"""

from __future__ import annotations

import html
import sys
import time
from collections import deque
from typing import Any

import pyqtgraph as pg
from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

from .compare_panels import ComparisonView
from .display import check_window
from .panel_base import Panel, View
from .panels import build_panels
from .source import StoreFollower

STATUS_COLOURS = {"running": "#0072B2", "complete": "#009E73", "aborted": "#D55E00", "failed": "#D55E00"}
#: the "last N" choices, in rows of the device (converted to its time unit for the label)
WINDOW_ROWS = (500, 2000, 10000)


def configure_pyqtgraph() -> None:
    """White background, black axes, no antialiasing (fast), row-major images."""
    pg.setConfigOptions(background="w", foreground="k", antialias=False, imageAxisOrder="row-major")


class _PaintCounter(QtCore.QObject):
    """Counts paint events of a widget's viewport: the frames really drawn."""

    def __init__(self, parent: QtCore.QObject) -> None:
        super().__init__(parent)
        self.times: deque[float] = deque(maxlen=100_000)
        self.count = 0

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QtCore.QEvent.Type.Paint:
            self.count += 1
            self.times.append(time.perf_counter())
        return False

    def fps(self, over: float = 2.0) -> float:
        now = time.perf_counter()
        recent = [t for t in self.times if now - t <= over]
        return len(recent) / over


class DeviceView(QtWidgets.QWidget):
    """The panels of one device, in a pyqtgraph GraphicsLayoutWidget."""

    def __init__(self, follower: StoreFollower, device: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.device = device
        self.graphics = pg.GraphicsLayoutWidget()
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.graphics)
        protocol = follower.attrs.get("protocol") or {}
        self.panels: dict[str, Panel] = build_panels(
            self.graphics.ci, follower.devices[device], readouts=bool(protocol.get("readouts", True)),
            frames=lambda key, t: follower.frame_at(device, key, t), store=follower.path)
        self.painted = _PaintCounter(self)
        self.graphics.viewport().installEventFilter(self.painted)

    def update_panels(self, follower: StoreFollower, view: View) -> None:
        dev = follower.devices[self.device]
        for panel in self.panels.values():
            panel.update(dev, view)
        # settle every view's new range now (pyqtgraph would do it at paint time, and the
        # curves that clip to the view would then ask for a second paint)
        for panel in self.panels.values():
            panel.plot.vb.prepareForPaint()


class MonitorWindow(QtWidgets.QMainWindow):
    """Follow a run store: header (status, provenance, progress), controls (device,
    time window, pause), the comparison panels of a run with several devices, and the
    device's panels.

    Parameters
    ----------
    follower : StoreFollower
        The store to follow (already validated).
    interval_ms : int
        Poll period.
    window : float or None
        Seconds (in the device's time unit) shown; None: the whole run. Default: the last
        2000 rows while the run is going, the whole run once it has ended.
    device : str, optional
        The device shown first.
    """

    def __init__(self, follower: StoreFollower, *, interval_ms: int = 50, window: float | None | str = "auto",
                 device: str | None = None) -> None:
        super().__init__()
        self.follower = follower
        self.paused = False
        self.frames = 0
        self.refresh_seconds: deque[float] = deque(maxlen=100_000)
        #: when each refresh started, and whether it found new rows (for frame statistics)
        self.refresh_times: deque[tuple[float, bool]] = deque(maxlen=100_000)
        self.views: dict[str, DeviceView] = {}
        follower.poll()
        self.setWindowTitle(f"labbench monitor: {follower.path.name}")
        self.resize(1200, 900)

        central = QtWidgets.QWidget()
        outer = QtWidgets.QVBoxLayout(central)
        outer.setContentsMargins(6, 6, 6, 6)
        self.header = QtWidgets.QLabel()
        self.header.setObjectName("header")
        self.header.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        outer.addWidget(self.header)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setTextVisible(True)
        self.progress.setMaximumHeight(16)
        outer.addWidget(self.progress)

        controls = QtWidgets.QHBoxLayout()
        controls.addWidget(QtWidgets.QLabel("device"))
        self.device_box = QtWidgets.QComboBox()
        self.device_box.setObjectName("device")
        controls.addWidget(self.device_box)
        controls.addSpacing(12)
        controls.addWidget(QtWidgets.QLabel("show"))
        self.window_box = QtWidgets.QComboBox()
        self.window_box.setObjectName("window")
        controls.addWidget(self.window_box)
        self.pause_button = QtWidgets.QPushButton("Pause following")
        self.pause_button.setObjectName("pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self.set_paused)
        controls.addWidget(self.pause_button)
        controls.addStretch(1)
        self.rate_label = QtWidgets.QLabel()
        self.rate_label.setObjectName("fps")
        controls.addWidget(self.rate_label)
        outer.addLayout(controls)

        self.stack = QtWidgets.QStackedWidget()
        #: the comparison panels (every device at once), above the shown device's panels; made
        #: when the run has a second device (None until then)
        self.compare: ComparisonView | None = None
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        self.splitter.addWidget(self.stack)
        outer.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        for name in follower.devices:
            self._add_device(name)
        first = device if device in self.views else next(iter(self.views), None)
        if device is not None and device not in self.views:
            raise ValueError(f"no device {device!r} in {follower.path.name} (it has {', '.join(self.views)})")
        self.device_box.currentTextChanged.connect(self._show_device)
        if first:
            self.device_box.setCurrentText(first)
            self._show_device(first)
        self._fill_windows(window)
        self.window_box.currentIndexChanged.connect(lambda _i: self._redraw())

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)
        self._redraw()

    # -- devices and controls ---------------------------------------------------------------
    def _add_device(self, name: str) -> None:
        view = DeviceView(self.follower, name)
        self.views[name] = view
        self.stack.addWidget(view)
        self.device_box.addItem(name)
        if len(self.views) > 1 and self.compare is None:
            self.compare = ComparisonView(self.follower)
            self.splitter.insertWidget(0, self.compare)
            self.splitter.setStretchFactor(0, 2)
            self.splitter.setStretchFactor(1, 3)

    def _show_device(self, name: str) -> None:
        if name in self.views:
            self.stack.setCurrentWidget(self.views[name])
            self._redraw()

    @property
    def device(self) -> str | None:
        return self.device_box.currentText() or None

    def _fill_windows(self, window: float | None | str) -> None:
        dev = self.follower.devices.get(self.device or "")
        dt = dev.dt if dev else 1.0
        self._window_dt = dt   # the windows are in this device's unit (the comparison converts them)
        unit = dev.time_unit if dev else "step"
        for rows in WINDOW_ROWS:
            self.window_box.addItem(f"last {_fmt_time(rows * dt)} {unit}", rows * dt)
        self.window_box.addItem("whole run", None)
        if window == "auto":
            window = None if self.follower.status != "running" else 2000 * dt
        index = self.window_box.count() - 1
        if window is not None:
            self.window_box.insertItem(0, f"last {_fmt_time(float(window))} {unit}", float(window))
            index = 0
            # drop a preset equal to the one given
            for i in range(1, self.window_box.count()):
                if self.window_box.itemData(i) == float(window):
                    self.window_box.removeItem(i)
                    break
        self.window_box.setCurrentIndex(index)

    @property
    def view(self) -> View:
        return View(self.window_box.currentData())

    def set_paused(self, paused: bool) -> None:
        """Stop (or resume) following: the panels keep what they show and can be zoomed."""
        self.paused = bool(paused)
        self.pause_button.setText("Resume following" if paused else "Pause following")
        if self.pause_button.isChecked() != self.paused:
            self.pause_button.setChecked(self.paused)

    # -- refreshing ---------------------------------------------------------------------
    def start(self) -> None:
        self.timer.start()

    def refresh(self) -> bool:
        """Poll the store and redraw the shown device if anything arrived; True if it did."""
        if self.paused:
            return False
        t0 = time.perf_counter()
        poll = self.follower.poll()
        for name in self.follower.devices:
            if name not in self.views:   # a device group appeared after the window opened
                self._add_device(name)
        changed = poll.changed or self.follower.status != self._last_status
        if changed and t0 - self._last_redraw >= self.min_frame_s:
            self._redraw()
            self._last_redraw = t0
        elif changed:   # too soon after the last frame: draw it at the next tick
            self._stale = True
        if self._stale and not changed and t0 - self._last_redraw >= self.min_frame_s:
            self._redraw()
            self._last_redraw = t0
            self._stale = False
        self.refresh_seconds.append(time.perf_counter() - t0)
        self.refresh_times.append((t0, poll.changed))
        return changed

    def frame_stats(self) -> dict[str, Any]:
        """Refreshes and painted frames per second while rows were arriving (from the first
        refresh that found new rows to the last one)."""
        arrivals = [t for t, changed in self.refresh_times if changed]
        if len(arrivals) < 2:
            return {"following_s": 0.0, "refreshes_per_s": None, "painted_per_s": None}
        a, b = arrivals[0], arrivals[-1]
        span = b - a
        refreshes = sum(1 for t, _ in self.refresh_times if a <= t <= b)
        painted = sum(1 for v in self.views.values() for t in v.painted.times if a <= t <= b)
        return {"following_s": span, "refreshes_per_s": refreshes / span, "painted_per_s": painted / span,
                "refreshes_with_new_rows": len(arrivals)}

    def _redraw(self) -> None:
        self._last_status = self.follower.status
        name = self.device
        if name in self.views:
            self.views[name].update_panels(self.follower, self.view)
        if self.compare is not None:
            self.compare.update_panels(self.follower, self.view, self._window_dt)
        self._update_header()
        self.frames += 1

    def _update_header(self) -> None:
        h = self.follower.header()
        status = h["status"]
        colour = STATUS_COLOURS.get(status, "#000000")
        dev = h["devices"].get(self.device or "", {})
        bits = [f"<b>{html.escape(str(h['protocol']))}</b>",
                f"status <b style='color:{colour}'>{html.escape(status)}</b>"
                + (" <b style='color:#D55E00'>(writer process gone)</b>" if h["writer_dead"] else ""),
                f"driver <b>{html.escape(str(dev.get('driver', '?')))}</b>",
                f"seed {h['seed']}", f"store {html.escape(h['store'])}",
                f"host {html.escape(str(h['host']))}", f"started {html.escape(str(h['started'] or ''))[:19]}"]
        text = " &nbsp;·&nbsp; ".join(bits)
        if h["error"]:
            text += f"<br><span style='color:#D55E00'>error: {html.escape(str(h['error']))}</span>"
        self.header.setText(text)
        committed = int(dev.get("committed") or 0)
        expected = dev.get("expected_rows")
        if expected:
            self.progress.setRange(0, int(expected))
            self.progress.setValue(min(committed, int(expected)))
            self.progress.setFormat(f"{committed:,} / {int(expected):,} rows committed (%p%)")
        else:
            self.progress.setRange(0, 0 if status == "running" else 1)
            self.progress.setValue(0 if status == "running" else 1)
            self.progress.setFormat(f"{committed:,} rows committed")
        view = self.views.get(self.device or "")
        if view is not None and self.timer is not None and self.timer.isActive():
            self.rate_label.setText(f"{view.painted.fps():.0f} frames/s")

    # -- off-screen ---------------------------------------------------------------------
    def catch_up(self, max_polls: int = 10_000) -> None:
        """Read everything committed now (several polls for a long run), then redraw."""
        for _ in range(max_polls):
            self.follower.poll()
            if self.follower.caught_up():
                break
        for name in self.follower.devices:
            if name not in self.views:
                self._add_device(name)
        self._redraw()

    def grab_png(self, path: str, size: tuple[int, int] = (1400, 1000)) -> QtGui.QImage:
        """Render the window off-screen and save it as a PNG."""
        self.resize(*size)
        self.show()
        app = QtWidgets.QApplication.instance()
        for _ in range(3):
            app.processEvents()
        image = self.grab().toImage()
        if not image.save(str(path), "PNG"):
            raise OSError(f"{path}: could not write the PNG")
        return image

    _last_status: str = ""
    _window_dt: float = 1.0
    _last_redraw: float = 0.0
    _stale: bool = False
    #: at most one frame per this many seconds (the window still polls every interval)
    min_frame_s: float = 0.09
    timer: QtCore.QTimer | None = None


def _fmt_time(value: float) -> str:
    return f"{value:g}"


_QUIET = ("propagateSizeHints",)   # the off-screen platform's harmless notice, once per window


def _qt_messages(mode: QtCore.QtMsgType, context: QtCore.QMessageLogContext, message: str) -> None:
    if not any(q in message for q in _QUIET):
        print(message, file=sys.stderr)


def application() -> QtWidgets.QApplication:
    """The QApplication (created once).

    Raises
    ------
    WindowError
        Before creating it for a real display, when no window can open here (no display, or
        system libraries that Qt's platform plugin needs are missing): one line naming them.
    """
    configure_pyqtgraph()
    QtCore.qInstallMessageHandler(_qt_messages)
    app = QtWidgets.QApplication.instance()
    if app is None:
        check_window()   # Qt's own message would be misleading, and it aborts the process
        app = pg.mkQApp("labbench monitor")
    return app  # type: ignore[return-value]


def open_window(follower: StoreFollower, **kwargs: Any) -> MonitorWindow:
    application()
    return MonitorWindow(follower, **kwargs)
