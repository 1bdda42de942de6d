"""The bucket's real rig back end against its emulators: StandardFirmata on a pty (the bytes
pyfirmata2 sends and the sketch answers), an MJPEG camera over HTTP read by the real
cv2.VideoCapture, alignment of frames to the motor schedule, and the faults (unplugged
Arduino, a camera that stops, corrupt JPEGs, motors stopped on close)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("pyfirmata2", reason="the rig needs pyfirmata2 (pip install 'labbench[bucket]')")
pytest.importorskip("cv2", reason="the rig needs opencv-python-headless (pip install 'labbench[bucket]')")
serial = pytest.importorskip("serial", reason="pyserial is needed to talk to the pty")

from labbench.drivers.bucket.camera_server import MJPEGServer
from labbench.drivers.bucket.emulator import BucketEmulator
from labbench.drivers.bucket.firmata_emulator import (
    UNO_PWM,
    FirmataEmulator,
    capability_response,
    firmware_report,
)
from labbench.drivers.bucket.rig import CameraDown, MotorsDown, Rig, RigParams

PINS = [3, 5, 6, 9]


class StepTank:
    """A tank whose frame shows the duty it was stepped with: left half motor 0, right half
    motor 1, so a row's frame tells which row's duty it saw."""

    dt = 0.04
    frame_shape = (48, 48)

    def step(self, drive: np.ndarray) -> np.ndarray:
        f = np.zeros((len(drive), 48, 48), np.uint8)
        f[:, :, :24] = np.round(drive[:, :1, None] * 250)
        f[:, :, 24:] = np.round(drive[:, 1:2, None] * 250)
        return f


def _rig(emu: BucketEmulator, **kw) -> Rig:
    p = {"port": emu.tty, "camera": emu.url, "motor_pins": PINS, "setup_wait_s": 0.05, "frame_timeout_s": 1.0,
         "camera_open_timeout_s": 1.0, "reconnect_timeout_s": 2.0}
    p.update(kw)
    return Rig(RigParams(**p), fps=25, resolution=(32, 32))


def _duties(emu: BucketEmulator, expect: list[float], timeout: float = 2.0) -> list[float]:
    """The emulator's motor duties once they equal ``expect`` (the bytes cross the pty and
    the emulator's thread asynchronously), or as they are after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        duty = emu.firmata.duty_of(PINS)
        if duty == pytest.approx(expect) or time.monotonic() > deadline:
            return duty
        time.sleep(0.02)


def _read_until(sp, n_end: int, timeout: float = 2.0) -> bytes:
    """Bytes from ``sp`` until ``n_end`` END_SYSEX/complete messages have come (or timeout)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and out.count(0xF7) < n_end:
        out += sp.read(sp.in_waiting or 1)
    return bytes(out)


# -- Firmata bytes -------------------------------------------------------------------------------
def test_firmata_emulator_answers_the_sketch_bytes():
    with FirmataEmulator() as fw:
        sp = serial.serial_for_url(fw.path, baudrate=57600, timeout=0.2)
        try:
            sp.write(b"\xf9")                                   # REPORT_VERSION
            assert sp.read(3) == b"\xf9\x02\x05"
            sp.write(b"\xf0\x79\xf7")                           # QUERY_FIRMWARE
            rep = _read_until(sp, 1)
            assert rep == firmware_report() and rep[:4] == b"\xf0\x79\x02\x05"
            assert rep[4:-1:2].decode() == "StandardFirmata.ino" and set(rep[5:-1:2]) == {0}
            sp.write(b"\xf0\x6b\xf7")                           # CAPABILITY_QUERY
            cap = _read_until(sp, 1)
            assert cap == capability_response() and cap[:2] == b"\xf0\x6c"
            pins = cap[2:-1].split(b"\x7f")[:-1]
            assert len(pins) == 20 and pins[0] == pins[1] == b""          # 0, 1: the serial port
            pwm = [i for i, p in enumerate(pins) if any(p[j:j + 2] == b"\x03\x08" for j in range(0, len(p), 2))]
            assert tuple(pwm) == UNO_PWM
            sp.write(b"\xf0\x69\xf7")                           # ANALOG_MAPPING_QUERY
            amap = _read_until(sp, 1)
            assert amap == bytes([0xF0, 0x6A] + [0x7F] * 14 + list(range(6)) + [0xF7])
            sp.write(b"\xf4\x03\x03" + b"\xe3\x7f\x01")        # pin 3 PWM, duty 255
            time.sleep(0.2)
            assert fw.duty[3] == 1.0
            sp.write(b"\xf0\x6f\x05\x40\x00\xf7")               # EXTENDED_ANALOG on pin 5 (not PWM: ignored)
            sp.write(b"\xf4\x05\x03\xf0\x6f\x05\x40\x00\xf7")   # now PWM: 64/255
            sp.write(b"\xf0\x6d\x05\xf7")                       # PIN_STATE_QUERY
            state = _read_until(sp, 1)
            assert state == b"\xf0\x6e\x05\x03\x40\xf7"
            assert fw.duty[5] == pytest.approx(64 / 255)
            sp.write(b"\xf4\x04\x03")                           # pin 4 has no PWM: refused, as the sketch does
            sp.write(b"\xff")                                   # SYSTEM_RESET: all pins low
            time.sleep(0.2)
            assert fw.duty == {} and fw.stats["resets"] == 1 and 4 not in fw.modes
        finally:
            sp.close()


def test_rig_sends_the_pyfirmata2_bytes_and_clips_the_duty():
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        rig = _rig(emu, duty_ceiling=0.5)
        try:
            info = rig.open()
            assert info["firmware"] == "StandardFirmata.ino" and info["firmware_version"] == [2, 5]
            connect = emu.firmata.received[:]
            assert connect[:2] == [(0xF9,), (0xF0, 0x79, 0xF7)]           # version and firmware queries
            assert connect[2:6] == [(0xF4, p, 0x03) for p in PINS]          # SET_PIN_MODE PWM
            assert connect[6:10] == [(0xE0 | p, 0, 0) for p in PINS]         # ANALOG_MESSAGE duty 0
            drive = np.zeros((3, 4))
            drive[:, 0] = 1.0                       # asks for full power: clipped to 0.5 = 128/255
            drive[1, 1] = 0.25
            out = rig.run(drive)
            after = emu.firmata.received[len(connect):]
            assert after[0] == (0xE3, 128 & 0x7F, 128 >> 7)               # E3 00 01
            assert (0xE5, 64, 0) in after
            assert out.info["duty_clipped"] == 3
        finally:
            rig.close()
        assert _duties(emu, [0.0] * 4) == [0.0] * 4
        assert emu.firmata.received[-4:] == [(0xE0 | p, 0, 0) for p in PINS]


# -- frames and timing ---------------------------------------------------------------------------
def test_rig_aligns_frames_to_the_motor_schedule():
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        with _rig(emu, duty_ceiling=1.0) as rig:
            T = 50
            drive = np.zeros((T, 4))
            drive[:, 0] = (np.arange(T) % 10) / 10           # a new duty every row
            drive[:, 1] = (np.arange(T) // 10) / 5
            t = time.monotonic()
            out = rig.run(drive)
            took = time.monotonic() - t
        assert out.frames.shape == (T, 32, 32) and out.frames.dtype == np.uint8
        assert took >= T * 0.04                               # paced to the wall clock
        good = ~np.isnan(out.t_frame)
        assert good.mean() >= 0.6, out.info                   # a busy machine drops frames
        seen0 = out.frames[good, 16, 4].astype(float) / 250
        seen1 = out.frames[good, 16, 28].astype(float) / 250
        match = (np.abs(seen0 - drive[good, 0]) < 0.03) & (np.abs(seen1 - drive[good, 1]) < 0.03)
        assert match.mean() >= 0.8, (np.c_[seen0, drive[good, 0]], out.info)
        lat = out.t_frame[good] - (np.flatnonzero(good) + 1) * 0.04
        assert np.all(lat >= 0) and np.all(lat < 0.04 + 0.2)
        assert out.info["latency_mean_s"] == pytest.approx(lat.mean())
        print(f"rig latency mean {out.info['latency_mean_s'] * 1e3:.1f} ms, p95 {out.info['latency_p95_s'] * 1e3:.1f}"
              f" ms; dropped {out.info['frames_dropped']}/{T}; write jitter {out.info['write_jitter_max_s'] * 1e3:.1f}"
              f" ms")


def test_rig_records_the_simulated_tank_at_the_camera_rate():
    from labbench.drivers.bucket.params import BucketSimParams
    from labbench.drivers.bucket.tank import SimTank

    tank = SimTank(BucketSimParams(), seed=0)
    with BucketEmulator(tank, motor_pins=PINS) as emu:
        with Rig(RigParams(port=emu.tty, camera=emu.url, setup_wait_s=0.05), fps=25,
                 resolution=tuple(tank.frame_shape)) as rig:
            drive = np.zeros((40, 4))
            drive[10:30, 0] = 0.8
            t = time.monotonic()
            out = rig.run(drive)
            took = time.monotonic() - t
        assert out.frames.shape == (40,) + tuple(tank.frame_shape)
        rate = out.info["frames_used"] / took
        assert 12 < rate < 30, out.info                        # ~25 fps, a busy machine may drop some
        still = out.frames[:8].astype(float)
        moving = out.frames[20:30].astype(float)
        assert np.abs(np.diff(moving, axis=0)).mean() > 2 * np.abs(np.diff(still, axis=0)).mean() + 0.1
        assert max(d[0] for d in emu.drive_log) == pytest.approx(0.8, abs=1 / 255)


# -- faults --------------------------------------------------------------------------------------
def test_unplugged_arduino_reconnects_and_records_the_gap():
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        with _rig(emu) as rig:
            drive = np.zeros((60, 4))
            drive[:, 0] = 0.1 + 0.5 * (np.arange(60) % 2)          # a write every row
            threading.Timer(0.6, emu.firmata.drop, kwargs={"down_s": 0.4}).start()
            out = rig.run(drive)
            assert out.info["reconnects"] == 1 and out.info["motor_gap_rows"] >= 1, out.info
            (a, b), = out.info["motor_gaps"]                       # the rows written while unplugged
            assert 0.4 < a < b < 2.0 and any(g0 <= a and b <= g1 for g0, g1 in out.gaps), out.info
            assert emu.firmata.boots == 2
            assert emu.firmata.duty_of(PINS)[0] > 0                  # driving again after the reconnect
        assert _duties(emu, [0.0] * 4) == [0.0] * 4


def test_unplugged_arduino_that_stays_away_aborts_with_the_motors_state_known():
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        rig = _rig(emu, reconnect_timeout_s=0.5)
        try:
            rig.open()
            drive = np.full((100, 4), 0.3)
            drive[::2] = 0.6
            threading.Timer(0.5, emu.firmata.drop, kwargs={"down_s": 60}).start()
            t = time.monotonic()
            with pytest.raises(MotorsDown) as err:
                rig.run(drive)
            assert time.monotonic() - t < 0.5 + 2 * 0.5 + 2.5      # drop + two reconnect windows + slack
            assert "off" in err.value.motor_state and "pull-down" in err.value.motor_state
            assert _duties(emu, [0.0] * 4) == [0.0] * 4            # unplugged: pins low
            assert err.value.partial is not None and 5 <= len(err.value.partial.frames) < 100
        finally:
            rig.close()
        assert "off" in rig.motor_state


def test_camera_that_stops_sending_raises_within_the_timeout_and_stops_the_motors():
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        rig = _rig(emu, frame_timeout_s=1.0)
        try:
            rig.open()
            drive = np.full((150, 4), 0.5)
            threading.Timer(0.5, emu.camera.stall).start()
            t = time.monotonic()
            with pytest.raises(CameraDown) as err:
                rig.run(drive)
            took = time.monotonic() - t
            assert 1.0 < took < 0.5 + 1.0 + 1.5, took                 # stall + frame_timeout_s (+ slack)
            assert _duties(emu, [0.0] * 4) == [0.0] * 4            # stopped before the error propagated
            rows = err.value.partial.frames
            assert 10 <= len(rows) < 150 and rows.shape[1:] == (32, 32)
        finally:
            rig.close()
        assert _duties(emu, [0.0] * 4) == [0.0] * 4 and rig.motor_state.startswith("stopped")


def test_corrupt_jpeg_frames_are_gaps_not_a_crash():
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        with _rig(emu) as rig:
            drive = np.zeros((60, 4))
            drive[:, 0] = 0.5
            threading.Timer(0.8, emu.camera.corrupt, kwargs={"n": 5}).start()
            out = rig.run(drive)
        assert emu.camera.stats["corrupted"] == 5
        assert out.info["frames_undecodable"] >= 4, out.info
        assert out.info["frames_dropped"] >= 3 and out.gaps, out.info
        assert sum(b - a for a, b in out.gaps) >= 3 * 0.04 - 1e-9
        assert out.frames.shape == (60, 32, 32)
        assert (out.frames[-10:, 16, 4] == 125).all()                  # frames again after the corrupt ones


def test_close_stops_the_motors_left_running():
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        rig = _rig(emu)
        rig.open()
        rig.run(np.full((5, 4), 0.6))
        assert _duties(emu, [153 / 255] * 4) == [pytest.approx(153 / 255)] * 4     # still running between blocks
        rig.close()
        assert _duties(emu, [0.0] * 4) == [0.0] * 4
        rig.close()                                                 # idempotent


# -- the camera server ---------------------------------------------------------------------------
def _other_address() -> str | None:
    """This host's address on a non-loopback interface, if it has one."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))                         # no packet is sent
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


def test_camera_server_listens_on_loopback_only():
    with MJPEGServer() as srv:
        assert srv.address[0] == "127.0.0.1" and srv.url.startswith("http://127.0.0.1:")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/other", timeout=2)
        assert err.value.code == 404
        ip = _other_address()
        if ip is None:
            print("no non-loopback interface here: only the bound address was checked")
            return
        with pytest.raises(OSError):
            socket.create_connection((ip, srv.port), timeout=2).close()


def test_labbench_emulate_bucket_prints_the_tty_and_the_url():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "labbench.cli", "emulate", "bucket", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout.readline().strip() for _ in range(2)),
                                  daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert len(lines) == 2, proc.stderr.read() if proc.poll() is not None else lines
        tty, url = lines
        assert os.path.exists(tty) and url.startswith("http://127.0.0.1:") and url.endswith("/stream.mjpg")
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.headers.get_content_type() == "multipart/x-mixed-replace"
            assert b"\xff\xd8" in r.read(4096)                    # a JPEG's start
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)       # a no-hang guard, generous for a busy machine
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert not os.path.exists(tty)                                   # the link is removed on Ctrl-C


def test_ctrl_c_during_a_run_stops_the_motors():
    # a real SIGINT, as Ctrl-C sends, under Python's own handler whatever an earlier test left
    # installed (a simulated one, _thread.interrupt_main, does nothing when the handler is not
    # Python's, and does not wake a sleeping main thread)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    try:
        with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
            rig = _rig(emu)
            try:
                rig.open()
                timer.start()
                with pytest.raises(KeyboardInterrupt):
                    rig.run(np.full((100, 4), 0.7))
                assert _duties(emu, [0.0] * 4) == [0.0] * 4
                assert rig.motor_state.startswith("stopped")
            finally:
                rig.close()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)


def test_a_video_file_plays_at_the_frame_rate(tmp_path):
    import cv2

    path = tmp_path / "water.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (40, 30), False)
    for k in range(60):
        writer.write(np.full((30, 40), 4 * k, np.uint8))
    writer.release()
    with BucketEmulator(StepTank(), motor_pins=PINS) as emu:
        with Rig(RigParams(port=emu.tty, camera=str(path), setup_wait_s=0.05), fps=25, resolution=(32, 32)) as rig:
            out = rig.run(np.zeros((25, 4)))
    assert out.frames.shape == (25, 32, 32)
    level = out.frames[:, 16, 16].astype(int)
    assert out.info["frames_used"] >= 15, out.info                 # one file frame per row, not all at once
    assert np.all(np.diff(level[~np.isnan(out.t_frame)]) >= 0) and level.max() - level.min() >= 40
