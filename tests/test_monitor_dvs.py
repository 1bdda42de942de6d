"""The event camera in the monitor: the event panels (ON-OFF frame, event rate, x-t raster of a
row), read incrementally from the raw stream ``events``, and the report's saccade-digit figure.

Stores are written by hand (no Ray): a 16 x 20 sensor, digits of 6 rows (5 ms each) and 2 rows
of rest; digit k is of class k % 10 and makes, in its first rows, k % 10 + 1 ON events at
pixel (x, y) = (c + 3, 4) and 2 OFF events at (c + 5, 8); each rest makes one ON event at
(19, 15), which belongs to no digit. So every count has an answer by hand.
Qt runs off-screen (``QT_QPA_PLATFORM=offscreen``, set in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labbench.monitor.source import StoreFollower
from labbench.store import RunStore

H, W = 16, 20
ROW_US = 5000
PRESENT, REST = 6, 2
PER = PRESENT + REST
BLOCK = 5 * PER          # 5 digits per block
DIGITS = 20              # 10 train (phase 1), 10 test (phase 2): one of each class in each


def _digit_events(k: int) -> np.ndarray:
    """Events (t µs, x, y, p) of digit k and of the rest after it."""
    c = k % 10
    r0 = k * PER
    ev = [(r0 * ROW_US + 100 + 10 * i, c + 3, 4, True) for i in range(c + 1)]          # ON, row r0
    ev += [((r0 + 1) * ROW_US + 50 + 10 * i, c + 5, 8, False) for i in range(2)]       # OFF, row r0 + 1
    ev += [((r0 + PRESENT) * ROW_US + 7, 19, 15, True)]                                # rest: no digit
    return np.array(ev, dtype=[("t", "i8"), ("x", "u2"), ("y", "u2"), ("p", "?")])


def _store(path: Path, *, events: bool = True, blocks: int = DIGITS * PER // BLOCK) -> RunStore:
    raw = {"events": {"columns": {"t": "int64", "x": "uint16", "y": "uint16", "p": "bool"}, "description": "test",
                      "time_column": "t", "time_scale": 1e-6, "channel_column": "x", "n_channels": W}}
    store = RunStore(path, "# hand-written", {"protocol_name": "hand", "seed": 3,
                                              "protocol": {"task": {"name": "saccade_digits"}}})
    store.add_device("dvs", spec={"n_inputs": 4, "n_features": 8, "dt": ROW_US * 1e-6, "realtime": False,
                                  "feature_name": "cell", "raw": raw},
                     describe={"driver": "dvs", "sensor_hw": [H, W]}, n_outputs=1, dtype="float32",
                     chunk_rows=BLOCK, expected_rows=DIGITS * PER, sequence=True,
                     layout={"washout": 0, "train": DIGITS * PER // 2, "test": DIGITS * PER // 2})
    for b in range(blocks):
        _append(store, b, events=events)
    return store


def _append(store: RunStore, b: int, *, events: bool = True) -> None:
    rows = np.arange(b * BLOCK, (b + 1) * BLOCK)
    k = rows // PER
    present = rows % PER < PRESENT
    ev = np.concatenate([_digit_events(int(d)) for d in range(b * 5, b * 5 + 5)])
    if not events:
        ev = ev[:0]
    store.append("dvs", inputs=np.zeros((BLOCK, 4), np.float32), features=np.zeros((BLOCK, 8), np.float32),
                 targets=np.where(present, k % 10, np.nan)[:, None].astype(np.float64),
                 phase=np.where(k < DIGITS // 2, 1, 2).astype(np.int8), sequence=np.where(present, k, -1),
                 raw={"events": {"t": ev["t"], "x": ev["x"], "y": ev["y"], "p": ev["p"]}})


def _all_events(blocks: int) -> np.ndarray:
    return np.concatenate([_digit_events(d) for d in range(blocks * 5)])


def test_event_window_reads_only_new_rows_and_counts_on_off_per_row(tmp_path, monkeypatch):
    import labbench.monitor.event_panel as ep

    store = _store(tmp_path / "run.zarr", blocks=2)
    f = StoreFollower(store.path)
    f.poll()
    dev = f.devices["dvs"]
    win = ep.EventWindow(store.path, "dvs", "events", dev, keep_s=0.1, max_events=1000)
    assert win.shape == (H, W) and ep.event_streams(dev.attrs["spec"]) == ["events"]
    assert win.update(dev) and win.reads == 1 and win.rows == 2 * BLOCK
    ev = _all_events(2)
    assert win.position == len(ev)
    # ON and OFF per row, events/s: by hand from the digits' layout
    on = np.zeros(2 * BLOCK)
    off = np.zeros(2 * BLOCK)
    for d in range(10):
        on[d * PER] += d % 10 + 1
        off[d * PER + 1] += 2
        on[d * PER + PRESENT] += 1
    times, rate = win.rate.between(-1.0, 1e9)
    np.testing.assert_allclose(times, np.arange(2 * BLOCK) * ROW_US * 1e-6)
    np.testing.assert_allclose(rate[:, 0], on / (ROW_US * 1e-6))
    np.testing.assert_allclose(rate[:, 1], off / (ROW_US * 1e-6))
    # only the events of the last keep_s are held with their pixels, in order
    end = 2 * BLOCK * ROW_US * 1e-6
    assert win.end_time == pytest.approx(end)
    held = ev[ev["t"] * 1e-6 >= end - 0.1]
    np.testing.assert_array_equal(win.t, held["t"] * 1e-6)
    np.testing.assert_array_equal(win.x, held["x"]) and np.testing.assert_array_equal(win.y, held["y"])
    np.testing.assert_array_equal(win.p, held["p"])
    # nothing new: nothing is read from the store
    calls = []
    real = ep.read_raw_rows
    monkeypatch.setattr(ep, "read_raw_rows", lambda *a, **k: calls.append(a) or real(*a, **k))
    f.poll()
    assert not win.update(dev) and calls == [] and win.reads == 1 and win.position == len(ev)
    # one more block: only its events are read (from where the last read stopped)
    _append(store, 2)
    f.poll()
    assert win.update(dev) and win.reads == 2
    assert all(a[4] >= len(ev) for a in calls), calls     # start row of every read
    assert win.position == len(_all_events(3)) and len(win.rate) == 3 * BLOCK
    # bounded: at most max_events held
    small = ep.EventWindow(store.path, "dvs", "events", dev, keep_s=10.0, max_events=7)
    small.update(dev)
    assert len(small.t) == 7 and small.t[-1] == _all_events(3)["t"][-1] * 1e-6


def _layout(path: Path):
    """The device's panels as the window builds them (with the store path), drawn off-screen."""
    import pyqtgraph as pg

    from labbench.monitor.panels import View, build_panels
    from labbench.monitor.window import application

    application()
    f = StoreFollower(path)
    f.poll()
    widget = pg.GraphicsLayoutWidget()
    widget.resize(1200, 1000)
    panels = build_panels(widget.ci, f.devices["dvs"], readouts=False, store=path)
    widget.show()
    for p in panels.values():
        p.update(f.devices["dvs"], View(None))
    return widget, panels


def _pixels(widget, item) -> np.ndarray:
    from pyqtgraph.Qt import QtWidgets

    QtWidgets.QApplication.processEvents()
    rect = widget.mapFromScene(item.sceneBoundingRect()).boundingRect()
    img = widget.grab(rect).toImage().convertToFormat(widget.grab().toImage().Format.Format_RGB32)
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.sizeInBytes()).reshape(img.height(),
                                                                                          img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., [2, 1, 0]].astype(np.float64)


def test_panels_draw_the_events_frame_rate_and_row_raster(tmp_path):
    store = _store(tmp_path / "run.zarr")
    widget, panels = _layout(store.path)
    empty = _store(tmp_path / "empty.zarr", events=False)
    widget0, panels0 = _layout(empty.path)
    try:
        assert {"event_rate", "event_frame", "event_row"} <= set(panels)
        assert "raster" not in panels and "rate" not in panels      # the x raster is not drawn twice
        frame, row, rate = panels["event_frame"], panels["event_row"], panels["event_rate"]
        ev = _all_events(DIGITS * PER // BLOCK)
        # the frame: ON - OFF per pixel over the 50 ms up to the last event
        last = ev["t"][-1] * 1e-6
        sel = (ev["t"] * 1e-6 >= last - 0.05) & (ev["t"] * 1e-6 <= last)
        want = np.zeros((H, W))
        np.add.at(want, (ev["y"][sel].astype(int), ev["x"][sel].astype(int)), np.where(ev["p"][sel], 1, -1))
        np.testing.assert_array_equal(frame.image.image, want)
        assert np.abs(want).sum() > 0 and frame.bar is not None
        assert "events per pixel in 50 ms" in frame.bar.getAxis("left").labelText
        # the row raster: the events of row H // 2 in the last 0.5 s, every one a dot
        assert row.sensor_row == H // 2
        end = DIGITS * PER * ROW_US * 1e-6
        in_row = (ev["y"] == H // 2) & (ev["t"] * 1e-6 >= end - 0.5)
        drawn = [item.getData() for item, _, _ in row.dots]
        assert sum(len(x) for x, _ in drawn) == in_row.sum() > 0
        assert sorted(np.concatenate([t for _, t in drawn])) == pytest.approx(sorted(ev["t"][in_row] * 1e-6))
        assert "s" in row.plot.getAxis("left").labelText or row.plot.getAxis("left").labelUnits == "s"
        # the rate: events/s per row, over the whole run
        assert rate.plot.getAxis("left").labelUnits == "events/s"
        assert len(rate.curves[0].xData) == DIGITS * PER
        # as painted: ON (vermillion) and OFF (blue) pixels in the frame; none in an empty run's
        px, px0 = _pixels(widget, frame.plot.vb), _pixels(widget0, panels0["event_frame"].plot.vb)
        red = (px[..., 0] - px[..., 2] > 20).sum()      # OFF is -2 on a scale of +-10: a light blue
        blue = (px[..., 2] - px[..., 0] > 20).sum()
        assert red > 0 and blue > 0, (red, blue)
        assert (np.abs(px0[..., 0] - px0[..., 2]) > 20).sum() == 0
    finally:
        widget.close()
        widget0.close()


def test_paused_panning_plays_the_events_back(tmp_path, monkeypatch):
    """Panning the linked time axis to an earlier stretch shows the frame and the row raster of
    that stretch, read from the store (it is older than the events kept): both equal the counts
    by hand; back at the end they show the last events again."""
    import labbench.monitor.event_panel as ep

    monkeypatch.setattr(ep, "READ_SPAN", 4)      # exercise the binary search on this small stream
    store = _store(tmp_path / "run.zarr")
    widget, panels = _layout(store.path)
    try:
        frame, row, rate = panels["event_frame"], panels["event_row"], panels["event_rate"]
        ev = _all_events(DIGITS * PER // BLOCK)
        t_s = ev["t"] * 1e-6
        for right in (0.052, 0.3, 0.41):          # ends inside digit 1, in digit 7, just after digit 10's start
            rate.plot.setXRange(right - 0.2, right, padding=0)
            shown = rate.plot.vb.viewRange()[0][1]
            sel = (t_s >= shown - 0.05) & (t_s < shown)
            want = np.zeros((H, W))
            np.add.at(want, (ev["y"][sel].astype(int), ev["x"][sel].astype(int)), np.where(ev["p"][sel], 1, -1))
            np.testing.assert_array_equal(frame.image.image, want)
            assert f"t = {shown:.3f} s" in frame.plot.titleLabel.text
            in_row = (ev["y"] == H // 2) & (t_s >= shown - 0.5) & (t_s <= shown)
            drawn = np.concatenate([item.getData()[1] for item, _, _ in row.dots])
            assert sorted(drawn) == pytest.approx(sorted(t_s[in_row]))
        assert np.abs(frame.image.image).sum() > 0
        # back to the end: the window to the last event
        end = DIGITS * PER * ROW_US * 1e-6
        rate.plot.setXRange(end - 0.2, end, padding=0)
        last = t_s[-1]
        sel = (t_s >= last - 0.05) & (t_s <= last)
        want = np.zeros((H, W))
        np.add.at(want, (ev["y"][sel].astype(int), ev["x"][sel].astype(int)), np.where(ev["p"][sel], 1, -1))
        np.testing.assert_array_equal(frame.image.image, want)
    finally:
        widget.close()


def test_window_shows_the_event_panels(tmp_path):
    """Through the monitor window, which passes the store to build_panels."""
    from labbench.monitor import window

    store = _store(tmp_path / "run.zarr")
    window.application()
    win = window.MonitorWindow(StoreFollower(store.path), window=None)
    try:
        win.catch_up()
        assert {"event_rate", "event_frame", "event_row"} <= set(win.views["dvs"].panels)
    finally:
        win.close()


def test_digit_event_means_by_hand_and_the_report_figure(tmp_path):
    from scipy import ndimage

    from labbench import monitor
    from labbench.monitor.event_figure import digit_event_means

    store = _store(tmp_path / "run.zarr")
    for phase, digits in (("test", 1), ("all", 2)):
        got = digit_event_means(store.path, "dvs", phase=phase, chunk=7)     # chunks cut through digits
        assert got.means.shape == (10, 2, H, W) and list(got.digits) == [digits] * 10
        want = np.zeros((10, 2, H, W))
        for c in range(10):
            want[c, 1, 4, c + 3] = c + 1          # the rest's events at (19, 15) belong to no digit
            want[c, 0, 8, c + 5] = 2
        np.testing.assert_array_equal(got.means, want)
    with pytest.raises(ValueError, match="phase must be"):
        digit_event_means(store.path, "dvs", phase="train")

    md = monitor.report(store.path, tmp_path / "rep")
    assert "![dvs events](dvs_events.png)" in md.read_text()
    from pyqtgraph.Qt import QtGui

    img = QtGui.QImage(str(tmp_path / "rep" / "dvs_events.png"))
    assert not img.isNull() and img.width() == 1500 and img.height() == 380
    img = img.convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    g = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    g = g[:, : img.width()]
    # 20 images (ON above OFF, one column per class): large dark tiles...
    labels, n = ndimage.label(g < 40)
    sizes = ndimage.sum(np.ones_like(g), labels, index=np.arange(1, n + 1))
    tiles = [i + 1 for i in np.flatnonzero(sizes > 2000)]
    assert len(tiles) == 20, len(tiles)
    # ...each with its class's one bright pixel where the counts put it
    boxes = ndimage.find_objects(labels)
    found = []
    for t in tiles:
        sl = boxes[t - 1]
        mask = labels[sl] == t
        # the image: the tile without the 1-pixel axis lines and ticks it touches
        core = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=2))
        rows, cols = np.flatnonzero(core.any(1)), np.flatnonzero(core.any(0))
        inside = np.zeros_like(mask)
        inside[rows[0] + 2:rows[-1] - 1, cols[0] + 2:cols[-1] - 1] = True    # (edge pixels may be blended)
        ys, xs = np.nonzero(inside & (g[sl] > 100))
        assert len(xs) > 0
        found.append((sl[0].start, sl[1].start, (xs.mean() - cols[0] + 0.5) / len(cols) * W,
                      (ys.mean() - rows[0] + 0.5) / len(rows) * H))
    found.sort()
    top, bottom = sorted(found[:10], key=lambda f: f[1]), sorted(found[10:], key=lambda f: f[1])
    for c in range(10):
        assert top[c][2] == pytest.approx(c + 3.5, abs=0.7) and top[c][3] == pytest.approx(4.5, abs=0.7)
        assert bottom[c][2] == pytest.approx(c + 5.5, abs=0.7) and bottom[c][3] == pytest.approx(8.5, abs=0.7)
