"""An eDVS4337 board emulated on a pseudo-terminal: its ASCII command set and binary event stream.

:class:`EDVSEmulator` is a :class:`~labbench.drivers.transport.pty.PtyEmulator` that speaks the
dialect of ``../shared/devices/edvs-protocol.md`` (sources and confidences: ``docs/dvs_edvs.md``):

- commands are ASCII lines ending in ``\\n`` (a ``\\r`` before it is ignored); while echo is on
  (the default after a reset) each line is echoed before it is executed, so the echo of
  ``!U0`` itself still arrives;
- ``R`` resets the board: echo on, format ``!E0``, streaming off, timestamp 0, biases to
  the defaults, transmit FIFO emptied; the banner (containing ``eDVS4337``) follows after
  ``reset_delay_s``, and lines received meanwhile are ignored (the board is booting);
- ``??`` (help), ``??E`` (the formats), ``?V`` (version), ``!U0``/``!U1`` (echo),
  ``!E0``..``!E4`` (format), ``E+``/``E-`` and ``+``/``-`` (streaming), ``!Bn=v`` (bias
  register n = 0..11 to v = 0..2^24-1), ``!BF`` (flush the biases to the chip), ``?Bn``,
  ``!BDx`` (default biases), ``!ET``, ``!ET0``, ``!ET=t`` (set the timestamp counter);
  ``!ETM..``/``!ETS``/``!ETI`` and LED commands are accepted and ignored; anything else is
  answered by one line ``?? unknown command: <line>``;
- ``firmware="edvs128"`` emulates the older eDVS128 instead: banner, ``?V`` and ``??E`` name
  it, and ``!E0``..``!E3`` select the shifted numbering (:data:`~.edvs_wire.EDVS128_FORMATS`).

Events come from ``source``: an event array (played once, its t = 0 at the first ``E+``)
or a callable ``source(t0_us, t1_us)`` returning the events of scene time [t0, t1) (the
scene clock is the wall clock since :meth:`start`). The device timestamp of an event is
its scene time minus the offset the last ``!ET`` or ``R`` set. Streaming is paced to the
link: the transmit FIFO (``fifo_bytes``) drains at ``baud / 10`` bytes per second (8N1);
events that find the FIFO full are dropped and counted in ``stats["dropped_events"]``, as
the chip's FIFO would drop them. ASCII replies and echoes go through the same FIFO, so they
land between events, as a firmware writing into one UART buffer places them.

Faults: :meth:`inject_garbage` (bytes between two events), :meth:`PtyEmulator.inject` (bytes
at the next write, possibly inside an event), :meth:`PtyEmulator.drop` (unplugged: the pty
disappears and comes back after ``down_s``, the board freshly powered: streaming off, echo
on), :meth:`PtyEmulator.silence` (hung: neither reads nor writes, stays connected).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from ..transport.pty import PtyEmulator
from ..transport.serving import serve_until_interrupted
from .edvs_wire import MAX_DELTA_US, WireFormat, encode, event_sizes, wire_format
from .events import empty_events, make_events

__all__ = ["BIAS_NAMES", "DEFAULT_BIASES", "EDVSEmulator", "poisson_source", "serve_edvs", "start_edvs"]

#: libcaer's EDVS_CONFIG_BIAS_* order of the 12 bias registers (not verified against the firmware)
BIAS_NAMES = ("CAS", "INJGND", "REQPD", "PUX", "DIFFOFF", "REQ", "REFR", "PUY", "DIFFON", "DIFF", "FOLL", "PR")
#: libcaer's default biases ("DVS128 Fast"), registers 0..11
DEFAULT_BIASES = (1992, 1108364, 16777215, 8159221, 132, 309590, 969, 16777215, 209996, 13125, 271, 217)

_FORMAT_TEXT = {
    "edvs4337": (b" !E0   - 2 bytes per event, binary: 1yyyyyyy.pxxxxxxx (no timestamp)\n"
                 b" !E1   - 3..5 bytes per event, as !E0 followed by a delta timestamp of 1..3 bytes (7 bits each)\n"
                 b" !E2   - 4 bytes per event, as !E0 followed by a 16 bit timestamp\n"
                 b" !E3   - 5 bytes per event, as !E0 followed by a 24 bit timestamp\n"
                 b" !E4   - 6 bytes per event, as !E0 followed by a 32 bit timestamp\n"),
    "edvs128": (b" !E0   - 2 bytes per event, binary: 1yyyyyyy.pxxxxxxx (no timestamp)\n"
                b" !E1   - 4 bytes per event, as !E0 followed by a 16 bit timestamp\n"
                b" !E2   - 5 bytes per event, as !E0 followed by a 24 bit timestamp\n"
                b" !E3   - 6 bytes per event, as !E0 followed by a 32 bit timestamp\n"),
}
_NAME = {"edvs4337": b"eDVS4337", "edvs128": b"eDVS128"}
_HELP = (b"DVS128 board commands (labbench emulator):\n"
         b" E+ / E-   enable / disable event sending\n !Ex       select event data format (??E lists them)\n"
         b" !ET[=t]   set / reset the event timestamp\n !Br=b     set bias register r (0..11) to b\n"
         b" !BF       flush biases to the DVS chip\n !BDx      select and flush default bias set x\n"
         b" ?B[x]     read bias x\n !U0 / !U1 UART echo off / on\n R         reset board\n"
         b" ?V        firmware version\n ??        this help\n")
_IGNORED = re.compile(rb"^(!ETM[0+]?|!ETS|!ETI|!L[-+.a].*|!EF.*|!EP.*|!ES.*|!ED=\d+|!T.*|!M.*)$")


def poisson_source(rate_hz: float = 100_000.0, seed: int = 0, size: tuple[int, int] = (128, 128)
                   ) -> Callable[[int, int], np.ndarray]:
    """A synthetic event source for tests: Poisson events at ``rate_hz``, uniform over the
    ``size = (width, height)`` pixels, random polarity (vectorised)."""
    rng = np.random.default_rng(seed)
    w, h = size

    def source(t0_us: int, t1_us: int) -> np.ndarray:
        n = int(rng.poisson(rate_hz * max(t1_us - t0_us, 0) / 1e6))
        t = np.sort(rng.integers(t0_us, max(t1_us, t0_us + 1), n))
        return make_events(t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n).astype(bool))

    return source


class _ArraySource:
    """An event array played once; its t = 0 is the first window asked for."""

    def __init__(self, events: np.ndarray) -> None:
        self.events = events
        self.t = events["t"].astype(np.int64)
        self.anchor: int | None = None

    def __call__(self, t0_us: int, t1_us: int) -> np.ndarray:
        if self.anchor is None:
            self.anchor = t0_us - (int(self.t[0]) if len(self.t) else 0)
        a, b = np.searchsorted(self.t, [t0_us - self.anchor, t1_us - self.anchor])
        ev = self.events[a:b].copy()
        ev["t"] += self.anchor
        return ev


class EDVSEmulator(PtyEmulator):
    """An eDVS4337 (or eDVS128) board on a pty; see the module notes.

    Parameters
    ----------
    source : ndarray of EVENT_DTYPE or callable, optional
        What the sensor sees (default: no events).
    baud : int, optional
        Line rate; the link carries ``baud / 10`` bytes/s (8N1). ``None``: as fast as the pty.
    firmware : {"edvs4337", "edvs128"}
    reset_delay_s : float
        Time from ``R`` to the banner.
    fifo_bytes : int
        Transmit FIFO capacity (an assumption: the chip's is not documented).
    tick_s : float
        Period of the streaming loop.
    keep_sent : bool
        Keep every event queued for sending, with its device timestamp (:meth:`sent_events`).
    **pty_kwargs
        :class:`~labbench.drivers.transport.pty.PtyEmulator` options (``link``, ...).
    """

    def __init__(self, source: np.ndarray | Callable[[int, int], np.ndarray] | None = None, *,
                 baud: int | None = 12_000_000, firmware: str = "edvs4337", reset_delay_s: float = 0.05,
                 fifo_bytes: int = 8192, tick_s: float = 0.002, keep_sent: bool = False, **pty_kwargs: Any) -> None:
        if firmware not in _NAME:
            raise ValueError(f"edvs emulator: firmware must be 'edvs4337' or 'edvs128', got {firmware!r}")
        if baud is not None and baud <= 0:
            raise ValueError(f"edvs emulator: baud must be > 0 or None, got {baud}")
        pty_kwargs.setdefault("name", "edvs-emulator")
        super().__init__(tick_s=tick_s, **pty_kwargs)
        if isinstance(source, np.ndarray):
            source = _ArraySource(source)
        self.source = source
        self.baud = baud
        self.firmware = firmware
        self.reset_delay_s = float(reset_delay_s)
        self.fifo_bytes = int(fifo_bytes)
        self.keep_sent = bool(keep_sent)
        self.commands: list[str] = []           # every line received, in order (tests)
        self.stats = dict.fromkeys(("events_sent", "dropped_events", "bytes_queued", "ignored_while_booting",
                                    "unknown_commands", "resets", "bias_flushes", "garbage_bytes",
                                    "delta_clipped"), 0)
        self._lock = threading.RLock()
        self._rx = bytearray()
        self._txq = bytearray()
        self._allow = 0.0
        self._sent: list[np.ndarray] = []
        self._t_start = time.monotonic()
        self._scene_prev: int | None = None
        self._last_tick = time.monotonic()
        self._booting_until = 0.0
        self._banner_due: float | None = None
        self._reset_state()

    # -- state --------------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.echo = True
        self.fmt_cmd = 0
        self.streaming = False
        self.ts_offset = self._scene_now()
        self.t_prev_dev = 0
        self.biases = list(DEFAULT_BIASES)
        self.flushed_biases = list(DEFAULT_BIASES)
        self._txq.clear()

    @property
    def wire(self) -> WireFormat:
        """The current event format."""
        return wire_format(self.fmt_cmd, self.firmware)

    def _scene_now(self) -> int:
        return int((time.monotonic() - self._t_start) * 1e6)

    def sent_events(self) -> np.ndarray:
        """Every event queued for sending (``keep_sent``), t = device timestamp (µs, unwrapped)."""
        with self._lock:
            return np.concatenate(self._sent) if self._sent else empty_events()

    def on_connect(self) -> None:          # a fresh connection is a freshly powered board
        with self._lock:
            self._rx.clear()
            self._banner_due = None
            self._reset_state()

    # -- faults -------------------------------------------------------------------------------
    def inject_garbage(self, data: bytes) -> None:
        """Queue ``data`` between two events (after what is queued now)."""
        with self._lock:
            self._txq += data
            self.stats["garbage_bytes"] += len(data)

    # -- commands -----------------------------------------------------------------------------
    def _reply(self, data: bytes) -> None:
        self._txq += data

    def on_data(self, data: bytes) -> None:
        with self._lock:
            self._rx += data
            while True:
                k = self._rx.find(b"\n")
                if k < 0:
                    break
                raw = bytes(self._rx[:k + 1])
                del self._rx[:k + 1]
                line = raw.rstrip(b"\r\n").strip()
                self.commands.append(line.decode("ascii", "replace"))
                if time.monotonic() < self._booting_until:
                    self.stats["ignored_while_booting"] += 1
                    continue
                if self.echo:
                    self._reply(raw)
                self._execute(line)

    def _execute(self, line: bytes) -> None:
        if not line:
            return
        if line == b"R":
            self.stats["resets"] += 1
            self._reset_state()
            self._booting_until = time.monotonic() + self.reset_delay_s
            self._banner_due = self._booting_until
        elif line == b"??":
            self._reply(_HELP)
        elif line == b"??E":
            self._reply(_FORMAT_TEXT[self.firmware])
        elif line == b"?V":
            self._reply(_NAME[self.firmware] + b" firmware emulator (labbench), V1.0, sensor DVS128 128x128\n")
        elif line in (b"!U0", b"!U1"):
            self.echo = line == b"!U1"
        elif line in (b"E+", b"+"):
            if not self.streaming:
                self.streaming = True
                self._scene_prev = self._scene_now()
        elif line in (b"E-", b"-"):
            self.streaming = False
        elif m := re.fullmatch(rb"!E(\d)", line):
            n = int(m.group(1))
            try:
                wire_format(n, self.firmware)
            except ValueError:
                self._reply(b"?? unsupported event format: " + line + b"\n")
                return
            self.fmt_cmd = n
        elif m := re.fullmatch(rb"!ET(?:(0)|=(\d+))?", line):
            t = int(m.group(2)) if m.group(2) else 0
            self.ts_offset = self._scene_now() - t
            self.t_prev_dev = t
        elif m := re.fullmatch(rb"!B(\d+)=(\d+)", line):
            r, v = int(m.group(1)), int(m.group(2))
            if r > 11 or v >= 1 << 24:
                self._reply(b"?? bias out of range (register 0..11, value 0..16777215): " + line + b"\n")
                return
            self.biases[r] = v
        elif line == b"!BF":
            self.flushed_biases = list(self.biases)
            self.stats["bias_flushes"] += 1
        elif m := re.fullmatch(rb"!BD(\d)", line):
            self.biases = list(DEFAULT_BIASES)
            self.flushed_biases = list(self.biases)
            self.stats["bias_flushes"] += 1
        elif m := re.fullmatch(rb"\?B(\d*)", line):
            regs = [int(m.group(1))] if m.group(1) else list(range(12))
            for r in regs:
                if r <= 11:
                    self._reply(b"-B%d=%d\n" % (r, self.biases[r]))
        elif _IGNORED.match(line):
            pass
        else:
            self.stats["unknown_commands"] += 1
            self._reply(b"?? unknown command: " + line + b"\n")

    def _banner(self) -> bytes:
        name = _NAME[self.firmware]
        return (b"\nDVS128 - " + name + b" board (labbench emulator)\n"
                b"  firmware: " + name + b" emulator V1.0, sensor 128x128\n  type ?? for help\n")

    # -- streaming ----------------------------------------------------------------------------
    def on_tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            dt = now - self._last_tick
            self._last_tick = now
            if self._banner_due is not None and now >= self._banner_due:
                self._banner_due = None
                self._reply(self._banner())
            if self.baud is None:
                self._allow = float("inf")
            elif self._txq:
                self._allow = min(self._allow + dt * self.baud / 10.0, 2.0 * self.fifo_bytes)
            else:
                self._allow = dt * self.baud / 10.0           # an idle line banks nothing
            if self.streaming and self.source is not None:
                self._enqueue_events(now)
            n = len(self._txq) if self.baud is None else min(len(self._txq), int(self._allow))
            if n <= 0:
                return
            out = bytes(self._txq[:n])
            del self._txq[:n]
            if self.baud is not None:
                self._allow -= n
        self.write(out, "events")

    def _enqueue_events(self, now: float) -> None:
        t1 = int((now - self._t_start) * 1e6)
        t0 = self._scene_prev if self._scene_prev is not None else t1
        if t1 - t0 > 500_000:          # hung or suspended for long: the scene went on unseen
            t0 = t1 - int(self.tick_s * 1e6)
        self._scene_prev = t1
        ev = self.source(t0, t1)
        if not len(ev):
            return
        ev = ev.copy()
        ev["t"] = ev["t"].astype(np.int64) - self.ts_offset
        ev = ev[ev["t"] >= 0]
        fmt = self.wire
        sizes = event_sizes(ev, fmt, self.t_prev_dev)
        room = self.fifo_bytes + (self._allow if self.baud is not None else float("inf")) - len(self._txq)
        k = int(np.searchsorted(np.cumsum(sizes), room, side="right")) if np.isfinite(room) else len(ev)
        self.stats["dropped_events"] += len(ev) - k
        ev = ev[:k]
        if not k:
            return
        if fmt.delta:
            d = np.diff(ev["t"], prepend=np.int64(self.t_prev_dev))
            self.stats["delta_clipped"] += int((d > MAX_DELTA_US).sum())
        data = encode(ev, fmt, self.t_prev_dev)
        self.t_prev_dev = int(ev["t"][-1])
        self._txq += data
        self.stats["events_sent"] += k
        self.stats["bytes_queued"] += len(data)
        if self.keep_sent:
            self._sent.append(ev)


def start_edvs(source: np.ndarray | Callable[[int, int], np.ndarray] | None = None, **kwargs: Any) -> EDVSEmulator:
    """Start an :class:`EDVSEmulator`; open ``emulator.path``, and ``emulator.close()`` when
    done (also a context manager)."""
    emu = EDVSEmulator(source, **kwargs)
    emu.start()
    return emu


def serve_edvs(source: np.ndarray | Callable[[int, int], np.ndarray] | None = None, *, out: TextIO | None = None,
               stop: threading.Event | None = None, **kwargs: Any) -> int:
    """Serve an emulated eDVS4337 on a pty until interrupted (``labbench emulate edvs``).

    Prints the path to open (a stable link to the pty) on ``out`` (default stdout), then
    serves until Ctrl-C, SIGTERM or ``stop``. ``source`` defaults to
    :func:`poisson_source` (100k events/s). Returns 0.
    """
    emu = start_edvs(poisson_source() if source is None else source, **kwargs)
    print(emu.path, file=out or sys.stdout, flush=True)
    return serve_until_interrupted(emu.close, stop)
