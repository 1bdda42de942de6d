"""The bucket in the monitor: the camera panel (frames read one at a time up to committed),
the motor-duty raster, playback when paused, and Fernando & Sojakka's XOR figure in the report.

Qt runs off-screen (``QT_QPA_PLATFORM=offscreen``, set in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tomllib
import zarr
from conftest import PROTOCOLS

import labbench as lb
from labbench.monitor.source import StoreFollower
from labbench.monitor.xor_figure import CONDITIONS, xor_mean_frames
from labbench.spec.protocol import from_dict
from labbench.store import RunStore

HOLD, SETTLE = 30, 15


@pytest.fixture(scope="module")
def xor_run(ray_session, tmp_path_factory) -> Path:
    """protocols/bucket_xor.toml, short: 2 washout, 16 train and 8 test trials of 30 frames."""
    proto = tomllib.loads((PROTOCOLS / "bucket_xor.toml").read_text())
    assert proto["task"]["hold"] == HOLD and proto["task"]["settle"] == SETTLE
    proto["run"] = {"washout": 2 * HOLD, "train": 16 * HOLD, "test": 8 * HOLD, "block": 4 * HOLD}
    run = lb.run(from_dict(proto), store_root=tmp_path_factory.mktemp("runs"), progress=False)
    assert run.status == "complete", run.error
    return Path(run.store)


def _window(path: Path):
    from labbench.monitor.window import MonitorWindow, application

    application()
    win = MonitorWindow(StoreFollower(path), window=None)
    win.resize(1400, 1000)
    win.show()
    win.catch_up()
    return win


def _grab(win, device: str, item) -> np.ndarray:
    """The RGB pixels of a graphics item as drawn in the window."""
    from pyqtgraph.Qt import QtWidgets

    QtWidgets.QApplication.processEvents()
    view = win.views[device]
    rect = view.graphics.mapFromScene(item.sceneBoundingRect()).boundingRect()
    img = view.graphics.grab(rect).toImage()
    img = img.convertToFormat(img.Format.Format_RGB32)
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.sizeInBytes()).reshape(img.height(),
                                                                                          img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].astype(np.float64)


def test_image_streams_are_found_from_the_spec_and_read_one_frame_up_to_committed(tmp_path):
    """A hand-written store of a driver the monitor does not know ('cam'): its 2-D raw column
    is an image stream; frame_at reads the frame of a time, never past the committed blocks."""
    store = RunStore(tmp_path / "cam.zarr", "# hand-written", {"protocol_name": "hand", "seed": 1})
    raw = {"video": {"columns": {"img": "uint8"}, "description": "test", "shapes": {"img": [8, 12]},
                     "dims": {"img": ["row", "col"]}}}
    store.add_device("cam", spec={"n_inputs": 1, "n_features": 4, "dt": 0.5, "realtime": False,
                                  "feature_name": "pixel", "raw": raw},
                     describe={"driver": "cam"}, n_outputs=1, dtype="float32", chunk_rows=10, expected_rows=30)

    def block(k: int) -> None:
        rows = np.arange(10 * k, 10 * k + 10)
        frames = (rows[:, None, None] + np.zeros((1, 8, 12))).astype(np.uint8)   # frame r is all r
        store.append("cam", inputs=np.zeros((10, 1), np.float32), features=np.zeros((10, 4), np.float32),
                     targets=np.zeros((10, 1)), phase=np.ones(10, np.int8), raw={"video": {"img": frames}})

    block(0)
    f = StoreFollower(tmp_path / "cam.zarr")
    f.poll()
    dev = f.devices["cam"]
    assert list(dev.images) == ["video/img"] and dev.images["video/img"].shape == (8, 12)
    assert dev.images["video/img"].dims == ("row", "col") and dev.motors is None and dev.duty is None
    last = f.frame_at("cam", "video/img", float("inf"))
    assert last.index == 9 and last.image.shape == (8, 12) and (last.image == 9).all()
    assert f.frame_at("cam", "video/img", 3 * 0.5).index == 3 and f.frame_at("cam", "video/img", 3.2).index == 6
    assert f.frame_at("cam", "video/img", 99.0).index == 9         # not past the committed rows
    again = f.frame_at("cam", "video/img", 99.0)
    assert again is f.frame_at("cam", "video/img", 1e6)            # the same frame is not read twice
    block(1)
    f.poll()
    assert f.frame_at("cam", "video/img", 99.0).index == 19 and (f.frame_at("cam", "video/img", 99.0).image == 19).all()


def test_snapshot_shows_the_water_the_motor_raster_and_plays_back(xor_run, tmp_path):
    g = zarr.open_group(str(xor_run), mode="r")["bucket"]
    n = int(g.attrs["committed"])
    stored_last = np.asarray(g["raw/frames/frame"][n - 1], dtype=np.float64)
    win = _window(xor_run)
    try:
        view = win.views["bucket"]
        assert {"signals", "features", "motors", "camera", "metrics"} <= set(view.panels)
        camera, motors = view.panels["camera"], view.panels["motors"]
        # the latest committed frame, as stored, greyscale 0-255 DN
        assert camera.frame.index == n - 1
        np.testing.assert_array_equal(camera.image.image, stored_last)
        assert camera.bar is not None and tuple(camera.bar.values) == (0.0, 255.0)
        assert "DN" in camera.bar.getAxis("left").labelText
        assert camera.plot.vb.state["aspectLocked"]
        # the image as painted: water, not a uniform patch, and the stored frame up to scaling
        px = _grab(win, "bucket", camera.image).mean(axis=2)
        assert px.std() > 20, px.std()
        h, w = px.shape
        ys = ((np.arange(h) + 0.5) * 64 / h).astype(int)
        xs = ((np.arange(w) + 0.5) * 64 / w).astype(int)
        expected = stored_last[np.ix_(ys, xs)]
        inner = (slice(2, -2), slice(2, -2))   # edge pixels of the grab may be the border
        r = np.corrcoef(px[inner].ravel(), expected[inner].ravel())[0, 1]
        assert r > 0.97, r
        slope = np.polyfit(expected[inner].ravel(), px[inner].ravel(), 1)[0]
        assert 0.8 < slope < 1.2, slope         # a grey scale from 0 to 255 DN
        # the motor raster: the duty of each motor (the bits of the two inputs) over the run
        duty = motors.image.image
        assert duty.shape[0] == 2 and motors.bar is not None and "duty" in motors.bar.getAxis("left").labelText
        u = np.asarray(g["inputs"][:n])
        np.testing.assert_allclose(win.follower.devices["bucket"].duty.last, np.clip(u, 0, 1))
        mpx = _grab(win, "bucket", motors.plot.vb)
        assert (mpx < 100).any(axis=2).mean() > 0.2 and (mpx > 200).all(axis=2).mean() > 0.2   # on and off
        # paused: the time axis's right edge picks the frame (playback)
        win.set_paused(True)
        dt = win.follower.devices["bucket"].dt
        view.panels["signals"].plot.setXRange(0.0, 100.5 * dt, padding=0)
        assert camera.frame.index == 100
        np.testing.assert_array_equal(camera.image.image, g["raw/frames/frame"][100])
        assert "frame 100 at t = 4.00 s" in camera.plot.titleLabel.text
    finally:
        win.close()
    out = lb.monitor.snapshot(xor_run, tmp_path / "snap.png")
    from pyqtgraph.Qt import QtGui

    img = QtGui.QImage(str(out))
    assert img.width() == 1400 and img.height() == 1000


def test_report_draws_the_four_mean_frames_computed_from_the_store(xor_run, tmp_path):
    g = zarr.open_group(str(xor_run), mode="r")["bucket"]
    n = int(g.attrs["committed"])
    frames = np.asarray(g["raw/frames/frame"][:n], dtype=np.float64)
    u, phase = np.asarray(g["inputs"][:n]), np.asarray(g["phase"][:n])
    scored = np.arange(n) % HOLD >= SETTLE
    for which, rows in (("test", scored & (phase == 2)), ("all", scored)):
        got = xor_mean_frames(xor_run, "bucket", phase=which, chunk_rows=50)   # chunks cut through trials
        assert got.stream == "frames/frame" and got.means.shape == (4, 64, 64)
        for j, label in enumerate(CONDITIONS):
            a, b = int(label[0]), int(label[1])
            sel = rows & ((u[:, 0] > 0.5) == a) & ((u[:, 1] > 0.5) == b)
            assert got.counts[j] == sel.sum() > 0
            np.testing.assert_allclose(got.means[j], frames[sel].mean(axis=0), rtol=0, atol=1e-9)
    test = xor_mean_frames(xor_run, "bucket")
    # 8 test trials, every one with its 15 rows after settle, each of one condition
    assert test.counts.sum() == 8 * (HOLD - SETTLE) and (test.counts % (HOLD - SETTLE) == 0).all()
    # the waves differ between the conditions: (1, 1) is not (0, 0)
    assert np.abs(test.means[3] - test.means[0]).mean() > 1.0

    md = lb.monitor.report(xor_run, tmp_path / "rep")
    text = md.read_text()
    assert "![bucket](bucket.png)" in text and "![bucket XOR](bucket_xor.png)" in text
    from pyqtgraph.Qt import QtGui

    img = QtGui.QImage(str(tmp_path / "rep" / "bucket_xor.png"))
    assert img.width() == 1400 and img.height() == 700
    img = img.convertToFormat(QtGui.QImage.Format.Format_Grayscale8)
    arr = np.frombuffer(img.constBits(), np.uint8, count=img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    top = arr[: img.height() // 2, : img.width()]
    assert top.std() > 30 and len(np.unique(top)) > 50        # four grey images, not a blank page
