"""Test doubles for the serial MEA back end.

- :class:`FakeCulture`: a small deterministic device-side :class:`MEABackend` for the
  firmware emulator: seeded Poisson spikes on the usable electrodes, plus one evoked spike
  on each stimulated electrode a few milliseconds after each pulse. Spike times lie on the
  board's tick grid, so that what crosses the wire can be compared exactly with a
  reference instance driven directly.
- :class:`ScriptedPort`: a pyserial-like port that plays a device from a script of
  (expected host bytes, device reply bytes) pairs, PyMeasure style, and fails at the first
  byte the host writes that the script does not expect.
"""

from __future__ import annotations

import time

import numpy as np

from labbench.drivers.mea.backend import MEABackend, SpikeEvents, Window
from labbench.drivers.mea.layout import ElectrodeLayout
from labbench.drivers.mea.stimulation import ScheduledPulse


class FakeCulture(MEABackend):
    """Deterministic spikes: window ``k`` draws from ``default_rng([seed, k])``.

    Parameters
    ----------
    rate_hz : float
        Spontaneous rate per usable electrode.
    tick_hz : int
        Spike times are multiples of ``1 / tick_hz`` (the board's sampling rate).
    evoked_delay_s : float
        Each pulse evokes one spike on each of its electrodes this long after it (if it
        falls inside the window).
    compute_s : float
        Wall time each window pretends to take (a slow simulator).
    """

    def __init__(self, layout: ElectrodeLayout | None = None, *, rate_hz: float = 20.0, seed: int = 0,
                 tick_hz: int = 25_000, evoked_delay_s: float = 0.005, compute_s: float = 0.0) -> None:
        self.layout = layout or ElectrodeLayout()
        self.rate_hz, self.seed, self.tick_hz = rate_hz, seed, tick_hz
        self.evoked_delay_s, self.compute_s = evoked_delay_s, compute_s
        self._tick = 0
        self._k = 0
        self.opened = self.closed = False
        self.stops = 0
        self.received: list[list[ScheduledPulse]] = []

    def open(self) -> dict:
        self.opened = True
        return {"name": "fake-culture", "seed": self.seed}

    @property
    def time_s(self) -> float:
        return self._tick / self.tick_hz

    def record(self, duration_s: float, pulses: list[ScheduledPulse]) -> Window:
        hz = self.tick_hz
        n = int(round(duration_s * hz))
        t0 = self._tick
        rng = np.random.default_rng([self.seed, self._k])
        usable = self.layout.usable_indices
        counts = rng.poisson(self.rate_hz * n / hz, len(usable))
        els = np.repeat(usable, counts)
        ticks = t0 + rng.integers(0, n, len(els))
        if pulses:
            ev_t = [t0 + round((p.t_s + self.evoked_delay_s) * hz) for p in pulses for _ in p.electrodes]
            ev_e = [e for p in pulses for e in p.electrodes]
            ev_t, ev_e = np.asarray(ev_t, np.int64), np.asarray(ev_e, np.int64)
            inside = ev_t < t0 + n
            ticks = np.concatenate([ticks, ev_t[inside]])
            els = np.concatenate([els, ev_e[inside]])
        order = np.lexsort((els, ticks))
        ticks, els = ticks[order], els[order]
        self.received.append(list(pulses))
        self._tick += n
        self._k += 1
        if self.compute_s:
            time.sleep(self.compute_s)
        return Window(SpikeEvents(ticks / hz, els.astype(np.int32)), t0 / hz, n / hz)

    def stop_stimulation(self) -> None:
        self.stops += 1

    def close(self) -> None:
        self.closed = True


class ScriptedPort:
    """A port that checks every write against a script and answers from it.

    Parameters
    ----------
    script : list of (bytes, bytes)
        ``(expected_write, reply)``: each host write must equal the next expected bytes
        exactly; the reply is then made readable.
    """

    def __init__(self, script: list[tuple[bytes, bytes]]) -> None:
        self.script = list(script)
        self.step = 0
        self.timeout = 0.02
        self.write_timeout = None
        self._rx = bytearray()
        self.is_open = True
        self.written: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.written.append(bytes(data))
        if self.step >= len(self.script):
            raise AssertionError(f"unexpected write after the end of the script: {data.hex(' ')}")
        want, reply = self.script[self.step]
        if bytes(data) != want:
            raise AssertionError(f"write {self.step} differs from the script:\n  got  {data.hex(' ')}\n"
                                 f"  want {want.hex(' ')}")
        self.step += 1
        self._rx += reply
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        if not self._rx:
            time.sleep(self.timeout or 0)
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def close(self) -> None:
        self.is_open = False
