"""The live iniVation path (dv-processing) without a camera: a NetworkWriter on loopback, fed from an
event array in a child process, read by the same loop the camera uses; every event delivered."""

import socket
import time

import numpy as np
import psutil
import pytest
from labbench.drivers.dvs.dv_camera import (
    NO_CAMERA,
    CameraDown,
    CameraNotFound,
    NetworkSource,
    apply_biases,
    open_camera,
    serve_events,
)
from labbench.drivers.dvs.events import make_events

dv = pytest.importorskip("dv_processing", reason="dv-processing (the camera back end's SDK) is not installed")


def random_events(n, duration_us, w=128, h=128, seed=0):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, duration_us, n)), rng.integers(0, w, n), rng.integers(0, h, n),
                       rng.random(n) < 0.5)


def read_blocks(src, edges):
    """Blocks until the stream closes (CameraDown) or the edges run out."""
    blocks = []
    try:
        for e in edges:
            blocks.append((e, src.read_until(e)))
    except CameraDown as exc:
        assert "stream closed" in str(exc)
    return blocks


def test_no_camera_gives_one_clear_line():
    if dv.io.camera.discover():
        pytest.skip("an iniVation camera is plugged in: the no-camera message cannot be tested here")
    with pytest.raises(CameraNotFound) as err:
        open_camera()
    assert str(err.value) == NO_CAMERA
    assert "discover() is empty" in NO_CAMERA and "backend = 'sim'" in NO_CAMERA


def test_network_source_receives_every_event_from_a_loopback_only_writer():
    ev = random_events(120_000, 600_000, seed=1)
    with serve_events(ev, (128, 128), camera_name="EDVS_MOCK", after="close", packet_us=5_000) as srv:
        # the writer listens on 127.0.0.1 only
        listening = [c for c in psutil.Process(srv.pid).net_connections(kind="inet") if c.status == "LISTEN"]
        assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
        assert {c.laddr.port for c in listening} == {srv.port}
        with NetworkSource("127.0.0.1", srv.port) as src:
            assert src.name == "EDVS_MOCK" and src.resolution == (128, 128)
            blocks = read_blocks(src, range(10_000, 10_000_000, 10_000))
            assert srv.wait_sent() == len(ev)
            got = np.concatenate([b for _, b in blocks])
            assert src.t0_us == ev["t"][0]
            assert len(got) == len(ev)  # every event, once
            got["t"] += src.t0_us
            np.testing.assert_array_equal(got, ev)
            late = 0
            for (prev, _), (e, b) in zip([(0, None), *blocks[:-1]], blocks):
                assert np.all(b["t"] < e)
                late += int(np.count_nonzero(b["t"] < prev))
            assert late == src.late_events


def test_realtime_stream_is_sliced_live_and_a_silent_server_is_camera_down():
    ev = random_events(6_000, 300_000, seed=2)
    with serve_events(ev, (128, 128), realtime=True, after="hold") as srv:
        src = NetworkSource("127.0.0.1", srv.port, silence_s=0.5)
        t0 = time.perf_counter()
        blocks = [src.read_until(e) for e in range(20_000, 300_001, 20_000)]
        elapsed = time.perf_counter() - t0
        assert elapsed >= 0.25  # 0.3 s of stream, first event ~0 s: paced, not dumped at once
        with pytest.raises(CameraDown, match=r"no events for 0.5 s \(silence_s\)") as err:
            src.read_until(10**9)
        got = np.concatenate([*blocks, err.value.pending])
        got["t"] += src.t0_us
        np.testing.assert_array_equal(got, ev)
        src.close()


def test_unplugged_server_ends_the_stream_with_an_exact_prefix():
    ev = random_events(20_000, 2_000_000, seed=3)
    with serve_events(ev, (128, 128), realtime=True, after="hold") as srv:
        src = NetworkSource("127.0.0.1", srv.port, silence_s=5.0)
        got = [src.read_until(e) for e in range(50_000, 300_001, 50_000)]
        srv.unplug()
        got += [b for _, b in read_blocks(src, range(350_000, 10_000_000, 50_000))]
        with pytest.raises(CameraDown, match="stream closed"):
            src.read_until(10**9)
        got = np.concatenate(got)
        assert 0 < len(got) < len(ev)
        got["t"] += src.t0_us
        np.testing.assert_array_equal(got, ev[:len(got)])


def test_background_activity_filter_keeps_exactly_the_supported_events():
    """dv.noise.BackgroundActivityNoiseFilter: an event passes iff one of its 8 neighbours fired
    within the window (2 ms here). Isolated events 10 ms apart go; the second of each neighbour
    pair 100 µs apart stays."""
    rows = []
    t = 1_000_000
    rng = np.random.default_rng(4)
    keep = []
    for i in range(300):
        x, y = int(rng.integers(1, 127)), int(rng.integers(1, 127))
        if i % 2:
            rows.append((t, x, y))  # isolated
        else:
            dx, dy = [(1, 0), (0, 1), (1, 1), (-1, 1)][i // 2 % 4]
            rows += [(t, x, y), (t + 100, x + dx, y + dy)]
            keep.append(len(rows) - 1)
        t += 10_000
    r = np.array(rows)
    ev = make_events(r[:, 0], r[:, 1], r[:, 2], np.ones(len(r), bool))
    with serve_events(ev, (128, 128), after="close") as srv, \
            NetworkSource("127.0.0.1", srv.port, noise_filter_us=2000) as src:
        got = np.concatenate([b for _, b in read_blocks(src, range(100_000, 100_000_000, 100_000))])
    got["t"] += src.t0_us
    np.testing.assert_array_equal(got, ev[keep])


class FakeDVXplorer:
    """What apply_biases and open_camera use of a dv DVXplorer, wrapping a network reader."""

    def __init__(self, reader=None):
        self.reader, self.calls = reader, []

    def setContrastThresholdOn(self, v):
        self.calls.append(("on", v))

    def setContrastThresholdOff(self, v):
        self.calls.append(("off", v))

    def setTimeInterval(self, dt):
        self.calls.append(("interval", dt.microseconds))

    def getCameraName(self):
        return "DVXplorer_DXA00093"

    def getEventResolution(self):
        return self.reader.getEventResolution()

    def getNextEventBatch(self):
        return self.reader.getNextEventBatch()

    def isRunning(self):
        return self.reader.isRunning()


class FakeDVS128:
    def __init__(self):
        self.calls = []

    def setBias(self, bias, value):
        self.calls.append((bias, value))

    def getCameraName(self):
        return "DVS128_0001"


class FakeDavis:
    def __init__(self, model):
        self.model, self.calls = model, []

    def getSensorModel(self):
        return getattr(dv.io.camera.DAVIS.SensorModel, self.model)

    def setDavis346BiasCoarseFine(self, b, c, f):
        self.calls.append((b, c, f))

    def setDavis346BiasVoltage(self, b, v):
        self.calls.append((b, v))

    def setBackgroundActivityFilter(self, v):
        self.calls.append(("ba", v))

    def getCameraName(self):
        return "DAVIS346_00000499"


def test_biases_go_to_the_camera_familys_setters():
    cam = FakeDVXplorer()
    assert apply_biases(cam, {"contrast_threshold_on": 30, "contrast_threshold_off": 40}) == \
        {"contrast_threshold_on": 30, "contrast_threshold_off": 40}
    assert cam.calls == [("on", 30), ("off", 40)]
    cam = FakeDVS128()
    apply_biases(cam, {"PR": 217, "DIFF_ON": 209996})
    assert cam.calls == [(dv.io.camera.DVS128.Bias.PR, 217), (dv.io.camera.DVS128.Bias.DIFF_ON, 209996)]
    cam = FakeDavis("DAVIS346")
    apply_biases(cam, {"On": (5, 255), "ApsCascode": 6, "background_activity_filter_250us": 8})
    assert cam.calls == [(dv.io.camera.DAVIS.Davis346BiasCF.On, 5, 255),
                         (dv.io.camera.DAVIS.Davis346BiasVDAC.ApsCascode, 6), ("ba", 8)]
    with pytest.raises(ValueError, match=r"biases \['PR'\]: not settable on camera DVXplorer_DXA00093; it has "
                                         r"\['contrast_threshold_off', 'contrast_threshold_on'\]"):
        apply_biases(FakeDVXplorer(), {"PR": 1})


def test_open_camera_runs_the_camera_path_against_a_loopback_stream(monkeypatch):
    """open_camera with dv's discover/open pointed at a NetworkWriter: names, biases, reading."""
    ev = random_events(30_000, 200_000, seed=5)
    desc = type("Descriptor", (), {"cameraModel": "DVXplorer", "serialNumber": "DXA00093"})()
    with serve_events(ev, (128, 128), after="close") as srv:
        opened = []

        def fake_open(serial=None):
            cam = FakeDVXplorer(dv.io.NetworkReader("127.0.0.1", srv.port))
            opened.append((serial, cam))
            return cam

        monkeypatch.setattr(dv.io.camera, "discover", lambda: [desc])
        monkeypatch.setattr(dv.io.camera, "open", fake_open)
        with pytest.raises(CameraNotFound, match=r"no iniVation camera named 'DAVIS'.*\['DVXplorer_DXA00093'\]"):
            open_camera("DAVIS")
        src = open_camera("DVXplorer_DXA00093", biases={"contrast_threshold_on": 25}, time_interval_us=2000)
        serial, cam = opened[0]
        assert serial == "DXA00093" and cam.calls == [("interval", 2000), ("on", 25)]
        assert src.describe()["camera"] == "DVXplorer_DXA00093" and src.resolution == (128, 128)
        assert src.describe()["biases"] == {"contrast_threshold_on": 25}
        got = np.concatenate([b for _, b in read_blocks(src, range(10_000, 10_000_000, 10_000))])
        got["t"] += src.t0_us
        np.testing.assert_array_equal(got, ev)


def test_connection_refused_is_camera_down():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(CameraDown, match=rf"DV network stream 127.0.0.1:{port}: cannot connect within 0.3 s"):
            NetworkSource("127.0.0.1", port, connect_timeout_s=0.3)
