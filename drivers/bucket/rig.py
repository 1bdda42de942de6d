"""The real bucket of water: motors on an Arduino running StandardFirmata, an OpenCV camera.

How the ``rig`` back end of the ``bucket`` driver calls it::

    from .rig import Rig, RigParams, RigError, CameraDown, MotorsDown

    rig = Rig(RigParams(**params["rig"]), fps=camera.fps, resolution=tuple(camera.resolution),
              max_duty=params["max_duty"], n_motors=motors.n_motors)
    info = rig.open()                 # dict for provenance: board, firmware, camera, pins, ceiling
    out = rig.run(drive)              # drive (T, n_motors) float in [0, 1] -> RigRun
    out.frames                        # (T, H, W) uint8, greyscale, resized to ``resolution``
    out.gaps                          # [(start_s, end_s)] spans of the block without a valid frame
    out.info                          # latency, dropped / extra / undecodable frames, reconnects, ...
    rig.close()                       # ALWAYS stops the motors (duty 0 on every pin), idempotent

- **Motors**: ``pyfirmata2`` over pyserial (``port`` is a device path or any pyserial URL:
  ``/dev/ttyACM0``, ``socket://host:port``, ``rfc2217://host:port``), one PWM pin per motor
  (``motor_pins``), 8-bit duty. Every duty is clipped to ``[0, duty_ceiling]`` here, whatever
  the caller asks. After opening the port the rig asks for the protocol version and the
  firmware name and refuses a board that does not answer (not Firmata). A write that fails
  (the Arduino was unplugged) makes the rig reopen the port for up to
  ``reconnect_timeout_s`` (reopening resets an Uno: all pins low, motors off), set the pins up
  again and carry on, the rows in between recorded as gaps; past the timeout it raises
  :class:`MotorsDown`, whose ``motor_state`` says what the motors are known to do.
- **Camera**: ``cv2.VideoCapture`` (a device index, a V4L2 path, ``http://...mjpg``,
  ``rtsp://...`` or a video file) read by a thread that timestamps each frame on arrival
  (``time.monotonic``), converts it to grey and resizes it to ``resolution``
  (``cv2.INTER_AREA``), so features have the shape of the ``sim`` back end's. A frame
  OpenCV cannot decode (a corrupt JPEG) is counted, never raised. No frame for
  ``frame_timeout_s`` raises :class:`CameraDown` (the rows recorded so far ride on the
  exception as ``partial``).
- **Timing** (``realtime``): row ``k`` starts at ``t_k = t_0 + k / fps`` on the wall clock;
  its duty is written at ``t_k``; its frame is the first frame to arrive in
  ``[t_k + dt + latency_s, t_k + 2 dt + latency_s)``, i.e. the frame period after the duty
  was set (``latency_s`` is the camera pipeline's fixed delay, from calibration). ``t_0``
  is locked to the camera's frame clock (the arrival phase of the last frames), so that the
  duty changes half a period after an exposure began and each frame arrives mid-window. A row
  without such a frame is a gap: it repeats the previous frame (black for the first) and its
  span is listed in ``gaps``. ``info["latency_s"]`` is each row's arrival time minus
  ``t_k + dt``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class RigError(RuntimeError):
    """The rig failed; the motors have been stopped (or are known to be off)."""


class CameraDown(RigError, ConnectionError):
    """No frame from the camera within ``frame_timeout_s``, or it could not be opened.

    ``partial`` holds the rows recorded before (a :class:`RigRun`, or None)."""

    def __init__(self, message: str, partial: RigRun | None = None) -> None:
        super().__init__(message)
        self.partial = partial


class MotorsDown(RigError, ConnectionError):
    """The Arduino did not come back within ``reconnect_timeout_s`` (or never answered).

    ``motor_state`` describes what the motors are known to do; ``partial`` holds the rows
    recorded before (a :class:`RigRun`, or None)."""

    def __init__(self, message: str, motor_state: str, partial: RigRun | None = None) -> None:
        super().__init__(f"{message}; motors: {motor_state}")
        self.motor_state = motor_state
        self.partial = partial


class RigParams(BaseModel):
    """How the rig is wired (all times in seconds)."""

    model_config = ConfigDict(extra="forbid")

    port: str = Field("/dev/ttyACM0", description="the Arduino: a serial device or a pyserial URL")
    board: Literal["arduino", "arduino_nano", "arduino_mega", "arduino_due"] = Field(
        "arduino", description="pyfirmata2 board layout (arduino = Uno)")
    motor_pins: list[int] = Field([3, 5, 6, 9], min_length=1, description="PWM pin of each motor, in drive order")
    duty_ceiling: float = Field(0.8, ge=0, le=1, description="largest duty ever written (safety)")
    baudrate: int = Field(57600, gt=0, description="StandardFirmata's baud rate")
    setup_wait_s: float = Field(2.0, ge=0, description="wait after opening the port (an Uno resets on open)")
    handshake_timeout_s: float = Field(3.0, gt=0, description="wait for the version and firmware reports")
    reconnect_timeout_s: float = Field(3.0, ge=0, description="keep reopening an unplugged board this long")
    camera: int | str = Field(0, description="cv2.VideoCapture source: index, /dev/videoN, URL or file")
    camera_open_timeout_s: float = Field(5.0, gt=0)
    frame_timeout_s: float = Field(2.0, gt=0, description="no frame this long = CameraDown")
    latency_s: float = Field(0.0, ge=0, description="camera pipeline delay added to the alignment window")


@dataclass
class RigRun:
    """What :meth:`Rig.run` returns (times in seconds from the block's first row)."""

    frames: np.ndarray                      # (T, H, W) uint8
    t_set: np.ndarray                       # (T,) when row k's duty was written
    t_frame: np.ndarray                     # (T,) arrival of row k's frame (nan: gap)
    gaps: list[tuple[float, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def _spans(mask: np.ndarray, dt: float) -> list[tuple[float, float]]:
    """Merged (start, end) times of the True rows of ``mask``."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(float(a * dt), float(b * dt)) for a, b in zip(edges[::2], edges[1::2])]


class _Motors:
    """The Arduino's PWM pins through pyfirmata2 (one board, reconnectable)."""

    def __init__(self, p: RigParams) -> None:
        self.p = p
        self.board: Any = None
        self.pins: list[Any] = []
        self.duty = np.zeros(len(p.motor_pins))
        self.firmware: str | None = None
        self.version: tuple[int, int] | None = None
        self.reconnects = 0

    def open(self) -> None:
        import pyfirmata2
        import serial

        board_cls = _firmata_board_class()
        try:
            board = board_cls(self.p.port, pyfirmata2.BOARDS[self.p.board], baudrate=self.p.baudrate,
                              wait_s=self.p.setup_wait_s)
        except (serial.SerialException, OSError) as e:
            raise MotorsDown(f"cannot open the Arduino at {self.p.port!r}: {e}",
                             "unknown (never connected)") from e
        try:
            board.handshake(self.p.handshake_timeout_s)
            pins = [board.get_pin(f"d:{pin}:p") for pin in self.p.motor_pins]
        except Exception as e:
            board.exit()
            raise MotorsDown(f"{self.p.port!r}: {e}", "unknown (no StandardFirmata answered)") from e
        self.board, self.pins = board, pins
        self.firmware, self.version = board.firmware, board.firmware_version
        self.write(np.zeros(len(pins)), force=True)

    def write(self, duty: np.ndarray, force: bool = False) -> None:
        """Write each motor's changed duty (already clipped; ``force``: every pin); raises
        OSError or SerialException on a lost link."""
        for pin, d, old in zip(self.pins, duty, self.duty):
            if force or d != old:
                pin.value = None               # pyfirmata2 skips a write of the same object
                pin.write(float(d))
        self.duty = np.array(duty, dtype=float)

    def reconnect(self, deadline: float) -> bool:
        """Reopen until ``deadline`` (monotonic); True once the board answers again."""
        self.drop()
        while True:
            try:
                self.open()
                self.reconnects += 1
                return True
            except MotorsDown:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)

    def drop(self) -> None:
        if self.board is not None:
            try:
                self.board.exit()
            except Exception:               # the port is already gone
                pass
        self.board, self.pins = None, []
        self.duty = np.zeros(len(self.p.motor_pins))

    def stop(self) -> str:
        """Duty 0 on every motor pin; returns the motors' known state."""
        if self.board is not None:
            try:
                self.write(np.zeros(len(self.pins)), force=True)
                return "stopped (duty 0 written to every motor pin)"
            except Exception as e:
                log.warning("rig: stopping the motors failed (%s); reopening the port to reset the board", e)
        try:
            self.reconnect(time.monotonic() + self.p.reconnect_timeout_s)
        except Exception:
            pass
        if self.board is not None:
            return "stopped (the board was reset by reopening its port, duty 0 written)"
        return ("off: the board is unplugged or unpowered (pins low, motor drivers held off by their "
                "pull-down resistors)")


def _firmata_board_class() -> type:
    """pyfirmata2's Board, opened through ``serial.serial_for_url`` and without its 5 s busy wait."""
    import pyfirmata2
    import serial
    from pyfirmata2 import REPORT_FIRMWARE, REPORT_VERSION
    from pyfirmata2.util import Iterator

    class FirmataBoard(pyfirmata2.Board):
        def __init__(self, port: str, layout: dict, *, baudrate: int, wait_s: float) -> None:
            self._command_handlers = {}               # pyfirmata2 shares a class-level dict
            self.analog, self.digital = [], []        # so that exit() (also from __del__) works if the open fails
            self.samplerThread = Iterator(self)
            self.sp = serial.serial_for_url(port, baudrate=baudrate, timeout=0.2, write_timeout=1.0)
            time.sleep(wait_s)
            self.name = port
            self._layout = layout
            self.setup_layout(layout)

        def _Board__pass_time(self, t: float) -> None:
            time.sleep(t)

        def handshake(self, timeout_s: float) -> None:
            """Ask for the version and firmware reports; raise TimeoutError without both."""
            self.firmata_version = self.firmware = None
            self.sp.write(bytes([REPORT_VERSION]))
            self.send_sysex(REPORT_FIRMWARE, [])
            deadline = time.monotonic() + timeout_s
            while self.firmware is None or self.firmata_version is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no Firmata version/firmware report within {timeout_s} s "
                                       f"(is StandardFirmata flashed?)")
                if self.bytes_available():
                    try:
                        self.iterate()
                    except TypeError:      # a read timed out inside a message
                        continue
                else:
                    time.sleep(0.01)

    return FirmataBoard


class _Camera:
    """A cv2.VideoCapture read by a thread; frames timestamped on arrival."""

    def __init__(self, p: RigParams, resolution: tuple[int, int], dt: float) -> None:
        self.p = p
        self.resolution = resolution
        # a video file is read as fast as it decodes: play it at the frame rate instead
        self.pace_s = dt if isinstance(p.camera, str) and os.path.isfile(p.camera) else 0.0
        self.cap: Any = None
        self.frames: deque[tuple[float, np.ndarray]] = deque(maxlen=4096)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_arrival = 0.0
        self.n_frames = self.n_failed = self.n_reopened = 0
        self.source_shape: tuple[int, ...] | None = None
        self.backend = ""

    def _capture(self) -> Any:
        import cv2

        src = self.p.camera
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.p.camera_open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.p.frame_timeout_s * 1000)]
        cap = cv2.VideoCapture(src, cv2.CAP_ANY, params)
        if not cap.isOpened():
            cap.release()
            raise CameraDown(f"camera {src!r}: cv2.VideoCapture could not open it")
        return cap

    def open(self) -> None:
        self.cap = self._capture()
        self.backend = self.cap.getBackendName()
        self.last_arrival = time.monotonic()
        self.stop_ev.clear()
        self.thread = threading.Thread(target=self._read, name="bucket-rig-camera", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        import cv2

        h, w = self.resolution
        failing_since: float | None = None
        next_t = time.monotonic()
        while not self.stop_ev.is_set():
            ok, img = self.cap.read()
            now = time.monotonic()
            if not ok or img is None:
                self.n_failed += 1            # undecodable frame, or a stalled/ended stream
                failing_since = failing_since or now
                if now - failing_since > self.p.frame_timeout_s / 2:
                    self._reopen()            # a camera that restarted comes back; else CameraDown in run()
                    failing_since = None
                self.stop_ev.wait(0.01)
                continue
            failing_since = None
            if self.pace_s:
                next_t = max(next_t + self.pace_s, now - self.pace_s)
                if self.stop_ev.wait(max(next_t - now, 0.0)):
                    break
                now = time.monotonic()
            self.source_shape = img.shape
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            if img.shape != (h, w):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            with self.lock:
                self.frames.append((now, np.ascontiguousarray(img, dtype=np.uint8)))
                self.last_arrival = now
                self.n_frames += 1

    def _reopen(self) -> None:
        try:
            cap = self._capture()
        except CameraDown:
            self.stop_ev.wait(0.2)
            return
        if self.stop_ev.is_set():             # close() came while it was opening
            cap.release()
            return
        self.cap.release()
        self.cap = cap
        self.n_reopened += 1

    def take(self, t_from: float) -> list[tuple[float, np.ndarray]]:
        """Frames that arrived at or after ``t_from``, oldest first (older ones are dropped)."""
        with self.lock:
            while self.frames and self.frames[0][0] < t_from:
                self.frames.popleft()
            return list(self.frames)

    def close(self) -> None:
        self.stop_ev.set()
        if self.thread is not None:
            self.thread.join(timeout=self.p.frame_timeout_s + self.p.camera_open_timeout_s + 1.0)
            self.thread = None
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class Rig:
    """Motors on a Firmata Arduino and an OpenCV camera, paced to the wall clock.

    Parameters
    ----------
    params : RigParams
        Wiring, camera source and timeouts.
    fps : float
        Rows (camera frames) per second.
    resolution : (int, int)
        (H, W) the frames are resized to.
    max_duty : float, optional
        A lower duty ceiling than ``params.duty_ceiling`` (the smaller one applies).
    n_motors : int, optional
        Checked against ``len(params.motor_pins)``.
    """

    realtime = True

    def __init__(self, params: RigParams, *, fps: float, resolution: tuple[int, int],
                 max_duty: float | None = None, n_motors: int | None = None) -> None:
        if fps <= 0:
            raise ValueError(f"rig: fps must be > 0, got {fps}")
        if n_motors is not None and n_motors != len(params.motor_pins):
            raise ValueError(f"rig: {n_motors} motors but {len(params.motor_pins)} motor_pins "
                             f"{params.motor_pins}: give one PWM pin per motor")
        if max_duty is not None:
            params = params.model_copy(update={"duty_ceiling": min(params.duty_ceiling, float(max_duty))})
        self.params = params
        self.dt = 1.0 / float(fps)
        self.frame_shape = (int(resolution[0]), int(resolution[1]))
        self._motors = _Motors(params)
        self._camera = _Camera(params, self.frame_shape, self.dt)
        self._last_frame = np.zeros(self.frame_shape, np.uint8)
        self.motor_state = "not connected"
        self.is_open = False

    @property
    def n_motors(self) -> int:
        return len(self.params.motor_pins)

    def open(self) -> dict[str, Any]:
        """Connect the Arduino (motors off) and start the camera. Returns provenance."""
        if not self.is_open:
            self._motors.open()
            self.motor_state = "stopped"
            try:
                self._camera.open()
            except BaseException:
                self.motor_state = self._motors.stop()
                self._motors.drop()
                raise
            self.is_open = True
        return {"port": self.params.port, "board": self.params.board, "firmware": self._motors.firmware,
                "firmware_version": list(self._motors.version or ()), "motor_pins": list(self.params.motor_pins),
                "duty_ceiling": self.params.duty_ceiling, "camera": str(self.params.camera),
                "camera_backend": self._camera.backend, "fps": 1.0 / self.dt, "resolution": list(self.frame_shape)}

    def run(self, drive: np.ndarray) -> RigRun:
        """Play ``drive`` ((T, n_motors) duty in [0, 1]) row by row in real time and record.

        On any error (also Ctrl-C) the motors are stopped before the exception propagates.
        """
        drive = np.asarray(drive, dtype=float)
        if drive.ndim != 2 or drive.shape[1] != self.n_motors:
            raise ValueError(f"rig: drive must be (T, {self.n_motors}), got {drive.shape}")
        if not self.is_open:
            raise RigError("rig: run() before open()")
        clipped = np.clip(np.nan_to_num(drive, nan=0.0), 0.0, self.params.duty_ceiling)
        n_clipped = int(np.count_nonzero(clipped != drive))
        T = len(drive)
        t_set = np.full(T, np.nan)
        motor_gap = np.zeros(T, bool)
        t0 = self._start_time()
        self._camera.take(t0)                       # frames from before the block are stale
        try:
            for k in range(T):
                t_k = t0 + k * self.dt
                wait = t_k - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._check_camera(t0, k, t_set)
                if self._motors.board is None:
                    motor_gap[k] = True
                    continue
                try:
                    self._motors.write(clipped[k])
                    t_set[k] = time.monotonic() - t0
                except Exception as e:              # unplugged: reopen (resets the board) or give up
                    motor_gap[k] = True
                    log.warning("rig: motor write failed (%s); reconnecting for up to %s s", e,
                                self.params.reconnect_timeout_s)
                    if not self._motors.reconnect(time.monotonic() + self.params.reconnect_timeout_s):
                        self.motor_state = self._motors.stop()
                        partial = self._collect(t0, k, t_set, motor_gap, n_clipped)
                        raise MotorsDown(f"the Arduino at {self.params.port!r} did not come back within "
                                         f"{self.params.reconnect_timeout_s} s", self.motor_state, partial) from e
            end = t0 + (T + 1) * self.dt + self.params.latency_s
            while time.monotonic() < end + self.dt:  # the last row's frame period
                time.sleep(min(self.dt, max(end + self.dt - time.monotonic(), 0.0)))
                self._check_camera(t0, T, t_set)
            return self._collect(t0, T, t_set, motor_gap, n_clipped)
        except MotorsDown:
            raise
        except BaseException:
            self.motor_state = self._motors.stop()
            raise

    def _start_time(self) -> float:
        """When row 0 starts: locked to the camera's frame clock so that each duty is written
        half a frame period after an exposure began (estimated from the last frames' arrival
        phase, minus ``latency_s``). Its frame then arrives mid-window, and arrival jitter
        up to +-dt/2 does not move it to a neighbouring row."""
        dt = self.dt
        now = time.monotonic() + 0.005
        recent = np.array([a for a, _ in self._camera.take(now - 1.0)][-25:])
        if len(recent) < 8:                         # just opened (the first frames come in a burst)
            return now
        z = np.exp(2j * np.pi * (recent % dt) / dt).mean()
        if abs(z) < 0.8:                            # no stable phase (a camera at another rate)
            return now
        phase = (np.angle(z) / (2 * np.pi) * dt) % dt
        return now + ((phase - self.params.latency_s + dt / 2 - now) % dt)

    def _check_camera(self, t0: float, k: int, t_set: np.ndarray) -> None:
        silent = time.monotonic() - self._camera.last_arrival
        if silent > self.params.frame_timeout_s:
            partial = self._collect(t0, k, t_set, np.zeros(k, bool), 0)
            raise CameraDown(f"camera {self.params.camera!r}: no frame for {silent:.2f} s "
                             f"(frame_timeout_s = {self.params.frame_timeout_s})", partial)

    def _collect(self, t0: float, T: int, t_set: np.ndarray, motor_gap: np.ndarray, n_clipped: int) -> RigRun:
        """Align the frames received so far to rows 0..T-1."""
        dt, lat = self.dt, self.params.latency_s
        arrivals = self._camera.take(t0 + dt + lat)
        times = np.array([a for a, _ in arrivals])
        frames = np.empty((T,) + self.frame_shape, np.uint8)
        t_frame = np.full(T, np.nan)
        lo = t0 + (np.arange(T) + 1) * dt + lat
        first = np.searchsorted(times, lo) if len(times) else np.zeros(T, int)
        used = 0
        for k in range(T):                          # T rows, not samples: one index per frame
            i = first[k]
            if i < len(times) and times[i] < lo[k] + dt:
                self._last_frame = arrivals[i][1]
                t_frame[k] = times[i] - t0
                used += 1
            frames[k] = self._last_frame
        no_frame = np.isnan(t_frame)
        latency = t_frame - (np.arange(T) + 1) * dt
        ok = latency[~no_frame]
        in_block = int(np.count_nonzero(times < t0 + (T + 1) * dt + lat)) if len(times) else 0
        info = {"rows": T, "frames_used": used, "frames_dropped": int(no_frame.sum()),
                "frames_extra": max(in_block - used, 0), "frames_undecodable": self._camera.n_failed,
                "frames_received": self._camera.n_frames,
                "camera_reopened": self._camera.n_reopened, "motor_gap_rows": int(np.count_nonzero(motor_gap[:T])),
                "motor_gaps": _spans(motor_gap[:T], dt),
                "reconnects": self._motors.reconnects, "duty_clipped": n_clipped,
                "latency_mean_s": float(ok.mean()) if ok.size else float("nan"),
                "latency_p95_s": float(np.percentile(ok, 95)) if ok.size else float("nan"),
                "latency_max_s": float(ok.max()) if ok.size else float("nan"),
                "write_jitter_max_s": float(np.nanmax(np.abs(t_set[:T] - np.arange(T) * dt)))
                if np.isfinite(t_set[:T]).any() else float("nan"),
                "motor_state": self.motor_state}
        return RigRun(frames=frames, t_set=t_set[:T].copy(), t_frame=t_frame, info=info,
                      gaps=_spans(no_frame | motor_gap[:T], dt))

    def close(self) -> None:
        """Stop the motors (always, also after an error), then release the camera and the port."""
        try:
            self.motor_state = self._motors.stop() if self._motors.board is not None or self.is_open \
                else self.motor_state
        finally:
            self._motors.drop()
            self._camera.close()
            self.is_open = False

    def __enter__(self) -> Rig:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
