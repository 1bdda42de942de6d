"""The driver of an eDVS4337 board (mini-eDVS, PushBot) over a serial line: :class:`EDVSBoard`.

Opening follows iniVation libcaer's ``edvs.c`` and ``../shared/devices/edvs-protocol.md``:

1. ``R`` (reset), then read until the banner contains ``expect`` (``eDVS4337``, as libcaer
   checks, case-sensitively) and the line goes quiet;
2. ``!U0`` (echo off) and drain: its own echo still arrives;
3. ``??E`` and ``?V``: the format listing and the version choose the numbering of ``!E<n>``
   (the eDVS4337's, or the older eDVS128's, shifted by one: :mod:`.edvs_wire`);
4. the biases, ``!B<r>=<v>`` each, then ``!BF`` (none sent if ``biases`` is None);
5. ``!E<fmt>``, ``!ET0`` (timestamps from 0) and ``E+`` (stream).

:meth:`EDVSBoard.read` returns the events of a span of time and the gaps in it; the time
base is microseconds since the ``!ET0`` of :meth:`EDVSBoard.open` (device timestamps; for
``!E0``, which carries none, the host's arrival time). :meth:`EDVSBoard.close` always sends
``E-`` (also after an error, or Ctrl-C in a ``with`` block), then closes the port.

Faults, as for the serial MEA board (:mod:`labbench.drivers.mea.serial_board`):

- garbage in the stream: the decoder resynchronises on the address byte's MSB; skipped
  bytes are counted (``stats["skipped_bytes"]``);
- silence: no byte for ``timeout_s / 2`` sends a ``?V`` probe (a static scene sends no
  events, but a live board answers); no byte for ``timeout_s`` raises :class:`DeviceTimeout`
  carrying the events read so far (``.events``, ``.gaps``);
- unplugged (reads fail): reopen the port and redo the whole opening sequence within
  ``reconnect_s``; the time lost is a gap, and timestamps continue on the host's clock. A
  port that does not come back raises :class:`DeviceDisconnected` carrying the events so far.

pyserial is imported when a port is opened; ``rtscts=True`` as the real board needs (a pty
accepts the flag and ignores it).
"""

from __future__ import annotations

import logging
import re
import select
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .edvs_wire import (
    EDVS128_FORMATS,
    EDVS4337_FORMATS,
    EDVSDecoder,
    WireFormat,
    decode,
)
from .events import empty_events

__all__ = [
    "BIAS_REGISTERS",
    "DeviceDisconnected",
    "DeviceTimeout",
    "EDVSBoard",
    "EDVSBoardError",
    "EDVSRead",
    "ProtocolMismatch",
    "choose_formats",
    "parse_format_listing",
]

log = logging.getLogger(__name__)

#: bias register names -> index (libcaer's EDVS_CONFIG_BIAS_* order, not verified on the firmware)
BIAS_REGISTERS = {name: i for i, name in enumerate(
    ("CAS", "INJGND", "REQPD", "PUX", "DIFFOFF", "REQ", "REFR", "PUY", "DIFFON", "DIFF", "FOLL", "PR"))}


class EDVSBoardError(RuntimeError):
    """An eDVS board failed (base class of this driver's errors)."""

    def __init__(self, message: str, events: np.ndarray | None = None,
                 gaps: list[tuple[int, int]] | None = None) -> None:
        super().__init__(message)
        self.events = empty_events() if events is None else events
        self.gaps = list(gaps or [])


class DeviceTimeout(EDVSBoardError, TimeoutError):
    """The board stopped sending (nothing for ``timeout_s``, probe unanswered)."""


class DeviceDisconnected(EDVSBoardError, ConnectionError):
    """The port went away and did not come back within ``reconnect_s``."""


class ProtocolMismatch(EDVSBoardError, ValueError):
    """The device is not the board asked for (banner) or lacks the format asked for."""


@dataclass
class EDVSRead:
    """What :meth:`EDVSBoard.read` returns.

    Attributes
    ----------
    events : ndarray of EVENT_DTYPE
        Sorted by t (µs since the opening ``!ET0``).
    gaps : list of (int, int)
        Spans [t0, t1) µs in which the board was not heard (reconnections).
    t_end_us : int
        The read covers times before this.
    info : dict
        Counters of this read (skipped bytes, resyncs, reconnects, ...).
    """

    events: np.ndarray
    gaps: list[tuple[int, int]] = field(default_factory=list)
    t_end_us: int = 0
    info: dict[str, int] = field(default_factory=dict)


def parse_format_listing(text: str) -> dict[int, WireFormat]:
    """The formats a ``??E`` reply lists: lines starting ``!E<n>`` and naming ``<k> bytes``
    (a range ``3..5`` means the delta format); formats whose size cannot be read are left out."""
    out: dict[int, WireFormat] = {}
    for m in re.finditer(r"^[ \t]*!E(\d)\b[^\n]*?(\d+)[ \t]*(?:\.\.|-)?[ \t]*(\d+)?[ \t]*bytes", text, re.MULTILINE):
        n, lo, hi = int(m.group(1)), int(m.group(2)), m.group(3)
        if hi is not None:
            out[n] = WireFormat(int(hi) - 2, True)
        elif 2 <= lo <= 6:
            out[n] = WireFormat(lo - 2)
    return out


def choose_formats(formats_reply: str, version_reply: str, banner: str = "") -> tuple[dict[int, WireFormat], str]:
    """The ``!E<n>`` numbering to use, and where it came from.

    The ``??E`` listing decides when it can be read; else ``?V`` (or the banner) naming
    ``4337`` or ``128``; else the eDVS4337's numbering (libcaer's assumption).

    Returns
    -------
    formats : dict of int -> WireFormat
    source : str
        ``"??E"``, ``"?V: eDVS4337"``, ``"?V: eDVS128"`` or ``"default: eDVS4337"``.
    """
    listed = parse_format_listing(formats_reply)
    if listed:
        return listed, "??E"
    for text in (version_reply, banner):
        if "4337" in text:
            return dict(EDVS4337_FORMATS), "?V: eDVS4337"
        if re.search(r"(?i)edvs[-_ ]?128", text):
            return dict(EDVS128_FORMATS), "?V: eDVS128"
    return dict(EDVS4337_FORMATS), "default: eDVS4337"


class EDVSBoard:
    """An eDVS4337 on a serial port; see the module notes.

    Parameters
    ----------
    port : str
        A pyserial URL: ``/dev/ttyUSB0``, a pty from ``labbench emulate edvs``, ``socket://..``.
    baudrate : int
        12M, 8M, 4M or 2M on a real board (libcaer tries them in that order).
    fmt : int
        The ``!E<fmt>`` to select, in the board's own numbering (eDVS4337: 0..4).
    biases : mapping, optional
        Register index (0..11) or name (``"PR"``, ...) -> value (0..2^24-1); None: keep the
        board's.
    timeout_s : float
        No byte for this long (a probe unanswered) raises :class:`DeviceTimeout`.
    expect : str, optional
        Text the banner must contain (None: any board, e.g. an eDVS128).
    reconnect_s : float
        How long to keep trying to reopen an unplugged port.
    banner_timeout_s, quiet_s : float
        The banner must come within ``banner_timeout_s``; a reply is complete when the line
        has been quiet for ``quiet_s``.
    probe : bool
        Send ``?V`` after ``timeout_s / 2`` of silence (see the module notes).
    wire_log : bool
        Keep every write in :attr:`wire_log` (tests).
    serial_kwargs : dict, optional
        More ``serial.serial_for_url`` options.
    """

    def __init__(self, port: str, baudrate: int = 12_000_000, fmt: int = 2, biases: Mapping[int | str, int] | None = None,
                 timeout_s: float = 1.0, *, expect: str | None = "eDVS4337", reconnect_s: float = 3.0,
                 banner_timeout_s: float = 2.0, quiet_s: float = 0.05, probe: bool = True, wire_log: bool = False,
                 serial_kwargs: dict | None = None) -> None:
        if timeout_s <= 0 or reconnect_s < 0 or quiet_s <= 0:
            raise ValueError(f"edvs board: timeout_s ({timeout_s}) and quiet_s ({quiet_s}) must be > 0, "
                             f"reconnect_s ({reconnect_s}) >= 0")
        self.port = port
        self.baudrate = int(baudrate)
        self.fmt = int(fmt)
        self.biases = self._check_biases(biases)
        self.timeout_s = float(timeout_s)
        self.expect = expect
        self.reconnect_s = float(reconnect_s)
        self.banner_timeout_s = float(banner_timeout_s)
        self.quiet_s = float(quiet_s)
        self.probe = bool(probe)
        self.wire_log: list[bytes] | None = [] if wire_log else None
        self.serial_kwargs = dict(serial_kwargs or {})
        self.banner = self.version = self.formats_reply = ""
        self.formats: dict[int, WireFormat] = {}
        self.format_source = ""
        self.wire: WireFormat | None = None
        self.stats = dict.fromkeys(("skipped_bytes", "resyncs", "events", "reconnects", "probes", "unordered"), 0)
        self._serial = None
        self._fd: int | None = None
        self._decoder: EDVSDecoder | None = None
        self._t0_host = 0.0            # host time of the first !ET0
        self._offset_us = 0            # output time = device time + offset (changes on reconnect)
        self._last_rx = 0.0
        self._probed = False
        self._pending = empty_events()
        self._gaps: list[tuple[int, int]] = []
        self._t_last = -1
        self._link_errors: tuple[type[BaseException], ...] = (OSError,)

    @staticmethod
    def _check_biases(biases: Mapping[int | str, int] | None) -> dict[int, int] | None:
        if biases is None:
            return None
        out = {}
        for key, value in biases.items():
            reg = BIAS_REGISTERS.get(key.upper()) if isinstance(key, str) else int(key)
            if reg is None or not 0 <= reg <= 11:
                raise ValueError(f"edvs board: bias {key!r}: expected a register 0..11 or one of "
                                 f"{', '.join(BIAS_REGISTERS)}")
            if not 0 <= int(value) < 1 << 24:
                raise ValueError(f"edvs board: bias {key!r} = {value}: expected 0..16777215")
            out[reg] = int(value)
        return dict(sorted(out.items()))

    # -- public -------------------------------------------------------------------------------
    def open(self) -> dict[str, Any]:
        """Connect and start streaming (idempotent); returns :meth:`describe`."""
        if self._serial is None:
            decode(b"", EDVS4337_FORMATS[2])     # load the compiled decoder now (~1 s), not mid-stream
            self._connect(first=True)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """Port, firmware banner and version, format and where its meaning came from, biases."""
        return {"port": self.port, "baudrate": self.baudrate, "banner": self.banner.strip(),
                "version": self.version.strip(), "fmt": self.fmt,
                "format": None if self.wire is None else self.wire.label, "format_source": self.format_source,
                "biases": self.biases, "stats": dict(self.stats)}

    @property
    def now_us(self) -> int:
        """The host's estimate of the current time in the output time base."""
        return int((time.monotonic() - self._t0_host) * 1e6)

    def read(self, duration_s: float | None = None, until_us: int | None = None) -> EDVSRead:
        """Read events for ``duration_s`` seconds, or until time ``until_us``.

        With ``until_us``, events at or after it are kept for the next read, and the read
        ends when an event at or after ``until_us`` arrived or the host's clock passed it by
        ``quiet_s`` (a quiet scene).

        Raises
        ------
        DeviceTimeout, DeviceDisconnected
            With ``.events`` and ``.gaps``: everything read so far, none lost.
        """
        if (duration_s is None) == (until_us is None):
            raise ValueError("edvs board: read() needs exactly one of duration_s and until_us")
        self.open()
        deadline = None if duration_s is None else time.monotonic() + float(duration_s)
        parts = [self._pending]
        self._pending = empty_events()
        before = dict(self.stats)
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if until_us is not None and (self._t_last >= until_us or self.now_us >= until_us
                                             + int(self.quiet_s * 1e6)):
                    break
                wait = 0.02 if deadline is None else max(0.0, min(0.02, deadline - now))
                parts.append(self._pump(wait))
        except EDVSBoardError as e:
            e.events = _concat(parts + [e.events])
            e.gaps = self._take_gaps()
            raise
        ev = _concat(parts)
        if until_us is not None:
            k = int(np.searchsorted(ev["t"], until_us, side="left"))
            ev, self._pending = ev[:k], ev[k:]
            t_end = int(until_us)
        else:
            t_end = self.now_us
        info = {k: self.stats[k] - before[k] for k in self.stats}
        return EDVSRead(ev, self._take_gaps(), t_end, info)

    def close(self) -> None:
        """Send ``E-`` (always, best effort), then close the port. Safe to call twice."""
        if self._serial is None:
            return
        try:
            self._write(b"E-\n")
        except Exception as e:      # noqa: BLE001 - close must not raise
            log.warning("%s: E- on close failed: %s", self.port, e)
        finally:
            self._close_port()

    def __enter__(self) -> EDVSBoard:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection ---------------------------------------------------------------------------
    def _open_port(self) -> None:
        import serial

        self._link_errors = (OSError, serial.SerialException)
        kw = {"baudrate": self.baudrate, "rtscts": True, "timeout": 0, "write_timeout": self.timeout_s,
              **self.serial_kwargs}
        self._serial = serial.serial_for_url(self.port, **kw)
        try:
            self._fd = self._serial.fileno()
        except Exception:            # noqa: BLE001 - socket://, loop://: no fileno
            self._fd = None
            self._serial.timeout = 0.01

    def _close_port(self) -> None:
        s, self._serial, self._fd = self._serial, None, None
        if s is not None:
            try:
                s.close()
            except Exception:        # noqa: BLE001
                pass

    def _connect(self, first: bool) -> None:
        try:
            self._open_port()
        except self._link_errors as e:
            self._close_port()
            raise DeviceDisconnected(f"edvs board: cannot open {self.port}: {e}") from None
        try:
            self._handshake(first)
        except _LinkLost as e:
            self._close_port()
            raise DeviceDisconnected(f"edvs board: {self.port}: lost while opening: {e}") from None
        except BaseException:
            self.close()
            raise

    def _handshake(self, first: bool) -> None:
        self._serial.reset_input_buffer()
        self._write(b"R\n")
        banner = self._collect(self.banner_timeout_s, until=self.expect, need_bytes=True)
        if self.expect is not None and self.expect not in banner:
            raise ProtocolMismatch(f"edvs board: {self.port}: no banner containing {self.expect!r} within "
                                   f"{self.banner_timeout_s} s of 'R' (got {banner[-200:]!r})")
        self.banner = banner
        self._write(b"!U0\n")
        self._collect(self.quiet_s * 4)      # the echo of !U0 itself, then quiet
        self._write(b"??E\n")
        self.formats_reply = self._collect(self.banner_timeout_s, need_bytes=True)
        self._write(b"?V\n")
        self.version = self._collect(self.banner_timeout_s, need_bytes=True)
        self.formats, self.format_source = choose_formats(self.formats_reply, self.version, self.banner)
        if self.fmt not in self.formats:
            raise ProtocolMismatch(f"edvs board: {self.port}: fmt {self.fmt} (!E{self.fmt}) is not offered; the board "
                                   f"lists !E{sorted(self.formats)} ({self.format_source})")
        self.wire = self.formats[self.fmt]
        if self.biases is not None:
            for reg, value in self.biases.items():
                self._write(b"!B%d=%d\n" % (reg, value))
            self._write(b"!BF\n")
        self._write(b"!E%d\n" % self.fmt)
        self._write(b"!ET0\n")
        t_et = time.monotonic()
        self._write(b"E+\n")
        if first:
            self._t0_host = t_et
            self._decoder = EDVSDecoder(self.wire)
        else:
            self._decoder.reset()
        self._offset_us = int((t_et - self._t0_host) * 1e6)
        self._last_rx = time.monotonic()
        self._probed = False

    def _collect(self, timeout_s: float, until: str | None = None, need_bytes: bool = False) -> str:
        """Read text until ``until`` appeared (or, without it, something arrived) and the
        line was quiet for ``quiet_s``, or ``timeout_s`` passed."""
        buf = bytearray()
        end = time.monotonic() + timeout_s
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            done = (until is None or until.encode() in buf) and (buf or not need_bytes)
            if done and now - quiet_since >= self.quiet_s:
                break
            if now >= end:
                break
            data = self._read_some(min(self.quiet_s, end - now))
            if data:
                buf += data
                quiet_since = time.monotonic()
        return buf.decode("ascii", "replace")

    def _reconnect(self, cause: BaseException) -> None:
        t_lost = max(self._t_last, int((self._last_rx - self._t0_host) * 1e6))
        self._close_port()
        end = time.monotonic() + self.reconnect_s
        last: BaseException = cause
        while True:
            try:
                self._connect(first=False)
                break
            except (DeviceDisconnected, DeviceTimeout, ProtocolMismatch) as e:
                last = e
                self._close_port()
            if time.monotonic() >= end:
                raise DeviceDisconnected(f"edvs board: {self.port}: connection lost ({cause}); not back within "
                                         f"{self.reconnect_s} s (last attempt: {last})")
            time.sleep(0.05)
        self.stats["reconnects"] += 1
        self._gaps.append((t_lost, self._offset_us))
        log.warning("%s: reconnected after %s", self.port, cause)

    # -- bytes --------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.wire_log is not None:
            self.wire_log.append(bytes(data))
        try:
            self._serial.write(data)
        except self._link_errors as e:
            raise DeviceDisconnected(f"edvs board: {self.port}: write of {data!r} failed: {e}") from None

    def _read_some(self, wait: float) -> bytes:
        try:
            if self._fd is not None:
                if not select.select([self._fd], [], [], max(wait, 0.0))[0]:
                    return b""
                return self._serial.read(65536)
            n = self._serial.in_waiting
            return self._serial.read(n if n else 1)
        except self._link_errors as e:
            raise _LinkLost(str(e)) from None

    def _pump(self, wait: float) -> np.ndarray:
        """Read once, decode; handles silence and a lost link."""
        try:
            data = self._read_some(wait)
        except _LinkLost as e:
            self._reconnect(e)
            return empty_events()
        now = time.monotonic()
        if not data:
            silent = now - self._last_rx
            if silent > self.timeout_s:
                raise DeviceTimeout(f"edvs board: {self.port}: no byte for {silent:.2f} s (timeout_s = "
                                    f"{self.timeout_s} s{', ?V probe unanswered' if self._probed else ''}): the "
                                    f"board stopped sending")
            if self.probe and not self._probed and silent > self.timeout_s / 2:
                self._probed = True
                self.stats["probes"] += 1
                self._write(b"?V\n")
            return empty_events()
        self._last_rx = now
        self._probed = False
        dec = self._decoder
        s0 = dec.state
        ev = dec.feed(data, t_chunk_us=int((now - self._t0_host) * 1e6) - self._offset_us)
        self.stats["skipped_bytes"] += dec.state.skipped - s0.skipped
        self.stats["resyncs"] += dec.state.resyncs - s0.resyncs
        if len(ev):
            ev["t"] += self._offset_us
            t = ev["t"]
            ok = t >= np.maximum.accumulate(np.maximum(t, self._t_last))   # keep t sorted: drop what runs back
            if not ok.all():
                self.stats["unordered"] += int((~ok).sum())
                ev = ev[ok]
            if len(ev):
                self._t_last = int(ev["t"][-1])
        self.stats["events"] += len(ev)
        return ev

    def _take_gaps(self) -> list[tuple[int, int]]:
        g, self._gaps = self._gaps, []
        return g


class _LinkLost(Exception):
    """A read failed: the port went away."""


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts) if parts else empty_events()
