"""The live monitor: the store follower (no Qt), the window's panels, snapshots and reports.

Qt runs off-screen (``QT_QPA_PLATFORM=offscreen``, set in conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import labbench as lb
from labbench.monitor.source import StoreFollower, Trace
from labbench.spec.protocol import from_dict
from labbench.store import RunStore, StoreError

from conftest import small_protocol

BLOCK = 100


# -- a store written by hand, block by block (a writer we can pause between snapshots) --------
def _store(path: Path, *, spikes: bool = False, devices: tuple[str, ...] = ("esn",), total: int = 1000) -> RunStore:
    store = RunStore(path, "# hand-written", {"protocol_name": "hand", "seed": 7})
    raw = ({"spikes": {"columns": {"step": "int64", "neuron": "int32"}, "description": "test",
                       "time_column": "step", "time_scale": 0.001, "channel_column": "neuron",
                       "n_channels": 40}} if spikes else {})
    for name in devices:
        store.add_device(name, spec={"n_inputs": 1, "n_features": 40, "dt": 0.01 if spikes else 1.0,
                                     "realtime": False, "feature_name": "neuron" if spikes else "unit", "raw": raw},
                         describe={"driver": "hand"}, n_outputs=1, dtype="float32", chunk_rows=BLOCK,
                         expected_rows=total, layout={"washout": 0, "train": total // 2, "test": total // 2})
    return store


def _append(store: RunStore, device: str, k: int, *, spikes: bool = False) -> None:
    """Append block number ``k``: features equal to the row index (so a test can tell rows apart)."""
    rows = np.arange(k * BLOCK, (k + 1) * BLOCK)
    feats = np.repeat(rows[:, None], 40, axis=1).astype(np.float32)
    raw = None
    if spikes:   # every row: channel (row % 40) spikes once, at step 10 * row (steps of 1 ms, rows of 10 ms)
        raw = {"spikes": {"step": rows * 10, "neuron": (rows % 40).astype(np.int32)}}
    store.append(device, inputs=np.sin(rows)[:, None].astype(np.float32), features=feats,
                 targets=np.cos(rows)[:, None], phase=np.where(rows < 500, 1, 2).astype(np.int8), raw=raw)


def test_trace_holds_exact_bin_means_of_every_row_within_its_capacity():
    rng = np.random.default_rng(0)
    for trial in range(60):
        cap, n = int(rng.integers(2, 30)), int(rng.integers(1, 2000))
        width = None if trial % 2 else 3
        raw = rng.normal(size=(n,) if width is None else (n, width))
        tr, i = Trace(cap, width), 0
        while i < n:
            k = int(rng.integers(1, 200))
            tr.append(np.arange(i, min(i + k, n), dtype=float), raw[i:i + k])
            i += k
        s = tr.stride
        full = n // s
        assert len(tr) == full <= cap
        np.testing.assert_allclose(tr.data, raw[:full * s].reshape(full, s, *raw.shape[1:]).mean(1))
        np.testing.assert_allclose(tr.x, np.arange(full * s).reshape(full, s).mean(1))


def test_follower_reads_only_up_to_committed_and_follows_the_writer(tmp_path):
    store = _store(tmp_path / "run.zarr")
    for k in range(3):
        _append(store, "esn", k)
    # a block being written: data past `committed`, not yet committed
    g = zarr.open_group(str(store.path), mode="r+")["esn"]
    g["features"][300:400] = 1e6
    f = StoreFollower(store.path, max_units=8)
    poll = f.poll()
    dev = f.devices["esn"]
    assert poll.new_rows == {"esn": 300} and dev.position == dev.committed == 300
    assert dev.features.last.max() == 299                 # nothing of the torn block
    assert len(dev.units) == 8 and dev.units[1] == 5       # every 5th of 40 units
    assert f.poll().new_rows == {"esn": 0}                 # nothing new: nothing read
    for k in range(3, 10):
        _append(store, "esn", k)
    store.finish("complete")
    f.poll()
    assert dev.position == 1000 and f.status == "complete" and f.caught_up()
    np.testing.assert_allclose(dev.inputs.last[:, 0], np.sin(np.arange(1000)), atol=1e-6)
    assert dev.features.last[-1, 0] == 999


def test_follower_catches_up_on_a_long_store_over_several_polls(tmp_path):
    store = _store(tmp_path / "run.zarr")
    for k in range(10):
        _append(store, "esn", k)
    f = StoreFollower(store.path, max_rows_per_poll=250)
    polls = 0
    while not (f.poll() and f.caught_up()):
        polls += 1
    assert polls >= 3 and f.devices["esn"].position == 1000


def test_follower_spike_stream_rate_and_raster_match_the_store(tmp_path):
    store = _store(tmp_path / "run.zarr", spikes=True)
    for k in range(4):
        _append(store, "esn", k, spikes=True)
    f = StoreFollower(store.path, max_rows_per_poll=150, recent_seconds=1.0)   # partial reads cut blocks
    while not (f.poll() and f.caught_up()):
        pass
    dev = f.devices["esn"]
    buf = dev.spikes["spikes"]
    assert buf.position == 400 and len(buf.all_t) == 400           # one spike per row, all of them
    np.testing.assert_allclose(np.sort(buf.all_t), np.arange(400) * 0.01)   # step 10 x 1 ms = the row's time
    # rate: one spike per row among 40 channels, rows of 10 ms -> 1 / (40 * 0.01) Hz in every row
    np.testing.assert_allclose(buf.rate.last, 2.5)
    assert buf.t.min() >= 4.0 - 1.0 - 1e-9                            # recent raster: the last second only


@pytest.mark.parametrize("make", ["missing", "directory", "zarr", "sweep"])
def test_a_store_that_is_not_a_run_gives_a_one_line_error(tmp_path, make, capsys):
    path = tmp_path / "x.zarr"
    if make == "directory":
        path.mkdir()
    elif make == "zarr":
        zarr.open_group(str(path), mode="w").attrs["hello"] = 1
    elif make == "sweep":
        zarr.open_group(str(path), mode="w").attrs["kind"] = "labbench.sweep"
    with pytest.raises(StoreError):
        StoreFollower(path)
    from labbench.cli import main

    for cmd in (["monitor", str(path)], ["monitor", str(path), "--snapshot", str(tmp_path / "a.png")],
                ["report", str(path)]):
        assert main(cmd) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], lines
    if make == "missing":   # the installed command, as a user runs it: one line, no traceback
        proc = subprocess.run([sys.executable, "-m", "labbench.cli", "monitor", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {path}: no such run store", proc.stderr
    assert not (tmp_path / "a.png").exists()


# -- Qt ----------------------------------------------------------------------------------------
def _window(path, **kwargs):
    from labbench.monitor.window import MonitorWindow, application

    application()
    win = MonitorWindow(StoreFollower(path), **kwargs)
    win.resize(1200, 1000)
    win.show()
    win.catch_up()
    return win


def _panel_pixels(win, device: str, key: str) -> np.ndarray:
    """The RGB pixels of a panel's plot area (inside the axes), as drawn in the window."""
    from pyqtgraph.Qt import QtWidgets

    QtWidgets.QApplication.processEvents()
    view = win.views[device]
    vb = view.panels[key].plot.vb
    rect = view.graphics.mapFromScene(vb.sceneBoundingRect()).boundingRect()
    grabbed = view.graphics.grab(rect).toImage()
    img = grabbed.convertToFormat(grabbed.Format.Format_RGB32)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8, count=img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 4].reshape(img.height(), img.width(), 4)[..., :3].copy()


def _assert_drawn(pixels: np.ndarray, *, min_fraction: float = 0.01, min_colours: int = 2) -> None:
    """Not blank: some pixels differ from the white background, in more than one colour."""
    assert pixels.size, "panel has no area"
    ink = (pixels < 235).any(axis=2)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert ink.mean() >= min_fraction, f"only {ink.mean():.3%} of the panel is drawn"
    assert colours >= min_colours, f"only {colours} colours"


def test_snapshot_of_an_esn_run_shows_every_panel_with_content(ray_session, store_root, tmp_path):
    run = lb.run(from_dict(small_protocol(**{"readouts": [{"kind": "ridge", "alpha": 1e-8},
                                                                 {"kind": "rls", "name": "rls"}]})),
                 store_root=store_root, progress=False)
    win = _window(run.store)
    try:
        view = win.views["esn"]
        assert set(view.panels) == {"signals", "features", "metrics"}    # no spike stream: no raster
        assert win.header.text().count("complete") == 1 and "small" in win.header.text()
        assert win.progress.value() == win.progress.maximum() == 600
        signals = view.panels["signals"]
        assert set(signals.predictions) == {"ridge", "rls"} and signals.target is not None
        assert signals.inputs[0].xData[-1] == 599                        # up to the last committed row
        for key in view.panels:
            _assert_drawn(_panel_pixels(win, "esn", key), min_colours=3 if key == "features" else 2)
        # signed tanh states: a diverging colour scale centred on 0
        lo, hi = view.panels["features"].levels
        assert lo == -hi < 0
    finally:
        win.close()
    png = win.follower.path.parent / "esn.png"
    out = lb.monitor.snapshot(run.store, png)
    from pyqtgraph.Qt import QtGui

    img = QtGui.QImage(str(out))
    assert img.width() == 1400 and img.height() == 1000


def test_snapshot_of_an_lsm_run_has_a_raster_and_a_population_rate(ray_session, store_root):
    params = {"units": 200, "w_exc": 1.5, "input_mode": "poisson", "input_sources": 200, "input_gain": 2.0,
              "max_rate": 50.0, "input_weight": 3.0, "input_connectivity": 0.2, "seed": 0}   # narma10_lsm.toml's
    proto = from_dict(small_protocol(device={"driver": "lsm", "params": params},
                                            run={"washout": 20, "train": 300, "test": 100, "block": 100}))
    run = lb.run(proto, store_root=store_root, progress=False)
    win = _window(run.store)
    try:
        view = win.views["lsm"]
        assert {"signals", "features", "raster", "rate", "metrics"} <= set(view.panels)
        buf = win.follower.devices["lsm"].spikes["spikes"]
        stored = zarr.open_group(str(run.store), mode="r")["lsm/raw/spikes/step"].shape[0]
        assert stored > 0 and buf.position == stored and len(buf.all_t) == stored
        for key in ("raster", "rate", "features", "signals"):
            _assert_drawn(_panel_pixels(win, "lsm", key), min_fraction=0.002)
        # trace features are never negative: a sequential colour scale from 0
        assert view.panels["features"].levels[0] == 0.0
        # every axis shows its values as they are: no SI prefix picked up on the way (pyqtgraph
        # 0.14 froze one when it was disabled, and 200 neurons read as 0-200000)
        for key, panel in view.panels.items():
            for side in ("left", "bottom"):
                axis = panel.plot.getAxis(side)
                assert axis.autoSIPrefixScale == 1.0 and not axis.labelUnitPrefix, (key, side)
        lo, hi = view.panels["raster"].plot.getAxis("left").range
        assert hi <= 2 * 200, (lo, hi)
    finally:
        win.close()


def test_snapshots_of_a_store_being_written_show_up_to_committed_then_more(tmp_path):
    from labbench.monitor.window import MonitorWindow, application

    store = _store(tmp_path / "live.zarr")
    application()
    shown = []
    for upto in (3, 6, 10):
        for k in range(len(shown) and shown[-1] // BLOCK, upto):
            _append(store, "esn", k)
        if upto == 10:
            store.finish("complete")
        out = lb.monitor.snapshot(store.path, tmp_path / f"s{upto}.png")
        assert out.exists() and out.stat().st_size > 10_000
        win = MonitorWindow(StoreFollower(store.path), window=None)
        win.catch_up()
        shown.append(int(win.views["esn"].panels["signals"].inputs[0].xData[-1]) + 1)
        win.close()
    assert shown == [300, 600, 1000]


def test_window_controls_pause_window_and_device(tmp_path, qtbot):
    store = _store(tmp_path / "two.zarr", devices=("a", "b"))
    for k in range(5):
        _append(store, "a", k)
        _append(store, "b", k)
    win = _window(store.path, window=200.0)
    qtbot.addWidget(win)
    dev = win.follower.devices["a"]
    assert [win.device_box.itemText(i) for i in range(win.device_box.count())] == ["a", "b"]
    # last 200 steps: the view ends at the last committed row
    lo, hi = win.views["a"].panels["signals"].plot.vb.viewRange()[0]
    assert (lo, hi) == pytest.approx((300, 500), abs=1.0)
    # pause: the writer goes on, the window does not follow
    qtbot.mouseClick(win.pause_button, __import__("pyqtgraph").Qt.QtCore.Qt.MouseButton.LeftButton)
    assert win.paused and win.pause_button.text() == "Resume following"
    _append(store, "a", 5)
    assert win.refresh() is False and dev.position == 500
    win.pause_button.click()
    assert not win.paused and win.refresh() is True and dev.position == 600
    # whole run
    win.window_box.setCurrentIndex(win.window_box.count() - 1)
    assert win.window_box.currentText() == "whole run"
    lo, hi = win.views["a"].panels["signals"].plot.vb.viewRange()[0]
    assert lo == pytest.approx(0, abs=1) and hi == pytest.approx(600, abs=1)
    # another device
    win.device_box.setCurrentText("b")
    assert win.stack.currentWidget() is win.views["b"]
    win.close()


def test_an_aborted_store_shows_its_status_and_error_text(tmp_path):
    store = _store(tmp_path / "dead.zarr")
    for k in range(2):
        _append(store, "esn", k)
    store.finish("aborted", "DeviceDown: esn stopped answering after block 2")
    win = _window(store.path)
    try:
        text = win.header.text()
        assert "aborted" in text and "stopped answering after block 2" in text
        assert win.follower.devices["esn"].position == 200
    finally:
        win.close()


def test_a_store_whose_writer_died_says_so(tmp_path):
    store = _store(tmp_path / "killed.zarr")
    _append(store, "esn", 0)
    store.set_attrs(writer_pid=2**22 + 12345)   # no such process on this host
    win = _window(store.path)
    try:
        assert "running" in win.header.text() and "writer process gone" in win.header.text()
    finally:
        win.close()


def test_cli_snapshot_and_report(ray_session, store_root, tmp_path):
    run = lb.run(from_dict(small_protocol()), store_root=store_root, progress=False)
    png = tmp_path / "snap.png"
    proc = subprocess.run([sys.executable, "-m", "labbench.cli", "monitor", str(run.store), "--snapshot", str(png),
                           "--size", "800", "600"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert png.exists() and png.stat().st_size > 10_000
    proc = subprocess.run([sys.executable, "-m", "labbench.cli", "report", str(run.store), "--out",
                           str(tmp_path / "rep")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "![esn](esn.png)" in md and "| esn | ridge |" in md and "complete" in md
    assert (tmp_path / "rep" / "esn.png").stat().st_size > 10_000


def test_monitor_follows_a_live_run_to_its_end(ray_session, store_root, tmp_path):
    """The monitor process started on the new store (as ``labbench run --monitor`` does)
    follows it while it is written and ends with every row read and drawn."""
    stats = tmp_path / "stats.json"
    procs = []

    def on_store(path):
        procs.append(subprocess.Popen([sys.executable, "-m", "labbench.cli", "monitor", str(path),
                                       "--exit-when-done", "--stats", str(stats)]))

    proto = from_dict(small_protocol(run={"washout": 50, "train": 3000, "test": 1000, "block": 50}))
    run = lb.run(proto, store_root=store_root, progress=False, on_store=on_store)
    assert len(procs) == 1
    assert procs[0].wait(timeout=120) == 0
    s = json.loads(stats.read_text())
    assert s["status"] == "complete" and s["rows"] == {"esn": 4050}
    assert s["frames_painted"] >= 1 and s["redraws"] >= 2
    assert run.status == "complete"



def test_run_with_monitor_opens_the_window_on_the_new_store(ray_session, store_root, monkeypatch):
    """``labbench run --monitor`` starts ``labbench monitor <its store>`` in its own process,
    and the window stays open (on the final state) after the run has ended."""
    import labbench.cli as cli

    started = []
    real_popen = subprocess.Popen

    def popen(cmd, *args, **kwargs):
        proc = real_popen(cmd, *args, **kwargs)
        started.append((cmd, proc))
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    rc = cli.main(["run", str(Path(__file__).parents[1] / "protocols" / "narma10.toml"), "--monitor", "--quiet",
                   "--store-root", str(store_root), "--set", "device.params.units=50",
                   "--set", "run.train=400", "--set", "run.test=100"])
    assert rc == 0 and len(started) == 1
    cmd, proc = started[0]
    try:
        store = next(store_root.iterdir())
        assert cmd[1:] == ["-m", "labbench.cli", "monitor", str(store)]
        time.sleep(3)
        assert proc.poll() is None, "the window closed by itself"
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_readout_whose_history_is_not_there_yet_is_followed_without_error(tmp_path):
    """A trainer creates its readout group, then the predictions, then ``history/``: a poll in
    between must not fail (it did: FileNotFoundError .../readouts/ridge/history/row)."""
    store = _store(tmp_path / "run.zarr")
    _append(store, "esn", 0)
    g = zarr.open_group(str(store.path), mode="r+")["esn"].require_group("readouts").create_group("ridge")
    g.attrs.update({"status": "running", "consumed": 0, "evaluations": 1, "history_columns": ["row", "nrmse"]})
    g.create_array("predictions", shape=(1000, 1), chunks=(BLOCK, 1), dtype="float64", fill_value=np.nan)
    f = StoreFollower(store.path, max_units=8)
    f.poll()
    view = f.devices["esn"].readouts["ridge"]
    assert view.history == {} and view.evaluations == -1          # nothing read, and read again later
    hist = g.create_group("history")
    for col, value in (("row", 100.0), ("nrmse", 0.5)):
        hist.create_array(col, data=np.array([value]))
    f.poll()
    assert view.evaluations == 1 and view.history["row"].tolist() == [100.0]
    assert view.history["nrmse"].tolist() == [0.5]


def test_the_report_puts_readouts_side_by_side_and_each_devices_summary_in_a_table(tmp_path):
    """A device's own summary (e.g. Loihi's counts and energy) is a table of dotted keys, not a
    readout row with dicts in its cells."""
    from labbench.monitor.render import report

    store = _store(tmp_path / "r.zarr", devices=("esn", "chip"))
    for k in range(2):
        _append(store, "esn", k)
        _append(store, "chip", k)
    store.set_summary_metrics("esn", "ridge", {"nrmse": 0.5, "n_train": 10, "n_test": 5})
    store.set_summary_metrics("chip", "ridge", {"nrmse": 0.25, "n_train": 10, "n_test": 5})
    store.set_summary_metrics("chip", "device", {"counts": {"spikes": 7}, "energy": {"energy_J": 0.125},
                                                  "dropped": ["refractory period", "delays"]})
    store.finish("complete")
    md = Path(report(store.path, tmp_path / "rep")).read_text()
    assert "| esn | ridge | 0.5 | 10 | 5 |" in md and "| chip | ridge | 0.25 | 10 | 5 |" in md
    assert "| chip | device |" not in md
    assert "**chip: device summary**" in md
    assert "| counts.spikes | 7 |" in md and "| energy.energy_J | 0.125 |" in md
    assert "| dropped | refractory period; delays |" in md
