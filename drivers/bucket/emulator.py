"""The simulated tank behind the rig's real protocols: ``labbench emulate bucket``.

:class:`BucketEmulator` runs a :class:`~.tank.SimTank` in real time and puts it behind the
two emulators the rig's real code talks to:

- a :class:`~.firmata_emulator.FirmataEmulator` on a pty (an Arduino running
  StandardFirmata): the PWM duty of each motor pin drives that motor of the tank;
- an :class:`~.camera_server.MJPEGServer` on ``http://127.0.0.1:PORT/stream.mjpg``:
  each frame the tank's camera records.

A clock thread calls ``tank.step`` once per frame period (``tank.dt``, divided by ``speed``,
1 by default) on the wall clock,
with the duty the pins had at the start of the period, and publishes the frame at the end of
it, as a camera delivers a frame once its exposure is over. A clock that falls behind (a busy
machine) skips periods rather than bursting, as a real camera drops frames.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

import numpy as np

from ..transport.serving import serve_until_interrupted
from .camera_server import MJPEGServer
from .firmata_emulator import FirmataEmulator


class BucketEmulator:
    """A real-time tank behind a Firmata pty and an MJPEG camera.

    Parameters
    ----------
    tank : SimTank
        Anything with ``step(drive (1, n_motors)) -> (1, H, W) uint8``, ``dt`` and
        ``frame_shape``.
    motor_pins : list of int
        The Arduino pin of each of the tank's motors, in the tank's motor order.
    port : int
        TCP port of the camera (0: any free port).
    link : str, optional
        Where the pty's stable link goes (default: a temporary directory).
    quality : int
        JPEG quality of the camera.
    speed : float
        Simulated seconds per wall-clock second (1: real time). A test may run the tank
        faster, a rig then pacing at ``speed`` times the tank's frame rate.
    """

    def __init__(self, tank: Any, *, motor_pins: list[int] = (3, 5, 6, 9), port: int = 0,
                 link: str | None = None, quality: int = 90, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"bucket emulator: speed must be > 0, got {speed}")
        self.speed = float(speed)
        self.tank = tank
        self.motor_pins = list(motor_pins)
        self.firmata = FirmataEmulator(link=link)
        self.camera = MJPEGServer(port=port, quality=quality)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.frames = 0
        self.skipped = 0
        self.drive_log: list[np.ndarray] = []      # the duty of each period stepped, in order

    @property
    def tty(self) -> str:
        """The path the rig opens as its Arduino (``port``)."""
        return self.firmata.path

    @property
    def url(self) -> str:
        """The URL the rig opens as its camera."""
        return self.camera.url

    def start(self) -> BucketEmulator:
        self.firmata.start()
        self.camera.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._clock, name="bucket-emulator-clock", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self.camera.close()
        self.firmata.close()

    def __enter__(self) -> BucketEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clock(self) -> None:
        dt = float(self.tank.dt) / self.speed
        t_next = time.monotonic()
        while not self._stop.is_set():
            duty = np.asarray(self.firmata.duty_of(self.motor_pins), dtype=float)
            frame = self.tank.step(duty[None, :])[0]
            t_next += dt
            wait = t_next - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            if wait < -dt:                     # fell behind: drop the late periods
                late = int(-wait // dt)
                self.skipped += late
                t_next += late * dt
            self.camera.publish(frame)
            self.drive_log.append(duty)
            self.frames += 1


def emulate(tank: Any, *, motor_pins: list[int], port: int = 0, out: TextIO | None = None,
            stop: threading.Event | None = None) -> int:
    """Serve ``tank`` until Ctrl-C (or ``stop``): prints the tty, then the camera URL. Returns 0."""
    stream = out or sys.stdout
    emu = BucketEmulator(tank, motor_pins=motor_pins, port=port).start()
    print(emu.tty, file=stream, flush=True)
    print(emu.url, file=stream, flush=True)
    return serve_until_interrupted(emu.close, stop)
