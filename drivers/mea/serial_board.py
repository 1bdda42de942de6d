"""The driver of MEA boards over USB serial: :class:`SerialBoard`, protocol version 1.

:class:`SerialBoard` is the :class:`~.backend.MEABackend` that drives a board speaking
``docs/serial-protocol.md`` through any pyserial URL (``/dev/ttyACM0``,
``socket://host:port``, ``rfc2217://host:port``): handshake, configuration, stepped and
streaming recording, retransmission, RESEND of damaged windows, heartbeat timeouts,
reconnection with the gaps it leaves, and the driver's exceptions. The wire format
(message types, payload layouts, packing and checking) is :mod:`.serial_codec`.

pyserial is imported only when a port is opened.
"""

from __future__ import annotations

import logging
import math
import select
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..transport.framing import MAX_PAYLOAD, Frame, FrameParser, encode_frame
from .backend import MEABackend, SpikeEvents, Window
from .layout import ElectrodeLayout
from .serial_codec import (ACK, CONFIGURE, ERROR, HEARTBEAT, HELLO, NACK, NO_WINDOW, PROTOCOL_VERSION, RESEND,
                           RUN_WINDOW, START, WINDOW_DONE, DeviceInfo, ErrorCode, Feature, Mode, Msg, ProtocolError,
                           SerialBoardError, SpikesFrame, _expect_len, electrode_mask, encode_pulses, parse_samples,
                           parse_spikes, stimulate_payloads)
from .stimulation import ScheduledPulse

log = logging.getLogger(__name__)


class DeviceTimeout(SerialBoardError, TimeoutError):
    """The device stopped answering (no frame within the heartbeat timeout, or no reply)."""


class DeviceDisconnected(SerialBoardError, ConnectionError):
    """The connection was lost and every reconnection attempt failed."""


class ProtocolMismatch(SerialBoardError):
    """The device is not the one this driver was configured for (version, electrodes, rate)."""


class DeviceNack(SerialBoardError):
    """The device refused a command (NACK)."""

    def __init__(self, message: str, code: int, text: str) -> None:
        super().__init__(message)
        self.code = code
        self.text = text


def _holes(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Parts of [start, end) not covered by ``spans``."""
    holes, cursor = [], start
    for a, b in sorted(spans):
        if b <= cursor:
            continue
        if a > cursor:
            holes.append((cursor, min(a, end)))
        cursor = max(cursor, b)
        if cursor >= end:
            break
    if cursor < end:
        holes.append((cursor, end))
    return [h for h in holes if h[1] > h[0]]


class _LinkLost(Exception):
    """Internal: the port failed (read/write error): reconnect."""


class _Collector:
    """SPIKES frames of one stepped window, by frame index."""

    def __init__(self, window_id: int, start: int, end: int) -> None:
        self.window_id, self.start, self.end = window_id, start, end
        self.frames: dict[int, SpikesFrame] = {}
        self.done: tuple[int, int, int] | None = None       # n_frames, n_spikes, n_pulses
        self.mark: int | None = None        # last device seq received before the latest request
        self.duplicates = 0
        self.want_all = False

    def add(self, f: SpikesFrame, seq: int) -> None:
        if f.t_from < self.start or f.t_to > self.end:
            raise ProtocolError(f"SPIKES frame (seq {seq}) of window {f.window_id} spans ticks {f.t_from}..{f.t_to}, "
                                f"outside the window's {self.start}..{self.end}")
        if f.index in self.frames:
            self.duplicates += 1
        self.frames[f.index] = f

    def missing(self) -> list[int]:
        return [] if self.done is None else [i for i in range(self.done[0]) if i not in self.frames]

    def assemble(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        fs = [self.frames[i] for i in sorted(self.frames)]
        ticks = np.concatenate([f.ticks for f in fs]) if fs else np.zeros(0, np.int64)
        els = np.concatenate([f.electrodes for f in fs]) if fs else np.zeros(0, np.int32)
        return ticks, els, _holes([(f.t_from, f.t_to) for f in fs], self.start, self.end)


class _Stream:
    """SPIKES frames of a real-time stream, until a window takes them."""

    def __init__(self) -> None:
        self.frames: list[SpikesFrame] = []
        self.covered_to: int | None = None
        self.first_from: int | None = None
        self.overlaps = 0

    def add(self, f: SpikesFrame) -> None:
        if self.covered_to is not None and f.t_from < self.covered_to:
            self.overlaps += 1          # a repeat of what we have: ignore
            return
        if self.first_from is None:
            self.first_from = f.t_from
        self.frames.append(f)
        self.covered_to = f.t_to

    def take(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        fs = [f for f in self.frames if f.t_to > start and f.t_from < end]
        ticks = np.concatenate([f.ticks for f in fs]) if fs else np.zeros(0, np.int64)
        els = np.concatenate([f.electrodes for f in fs]) if fs else np.zeros(0, np.int32)
        keep = (ticks >= start) & (ticks < end)
        holes = _holes([(f.t_from, f.t_to) for f in fs], start, end)
        self.frames = [f for f in self.frames if f.t_to > end]
        return ticks[keep], els[keep], holes


class SerialBoard(MEABackend):
    """An MEA stimulator/amplifier board speaking serial protocol version 1.

    Parameters
    ----------
    url : str
        Any pyserial URL: ``/dev/ttyACM0``, a pty from ``labbench emulate mea``,
        ``socket://host:port``, ``rfc2217://host:port``.
    layout : ElectrodeLayout, optional
        The array this driver expects (default 8 x 8). The device must report the same
        electrode count (and grid, if it reports one).
    mode : {"auto", "stepped", "streaming"}
        ``stepped``: the host advances the device window by window (RUN_WINDOW;
        simulators and emulators); ``streaming``: the device runs on its own clock and
        streams (real boards). ``auto`` takes stepped when the device offers it.
    sampling_rate_hz : int, optional
        Refuse a device whose tick rate differs.
    threshold_sd : float
        Spike detection threshold sent in CONFIGURE, in multiples of the noise SD
        (0: the device's default).
    record_electrodes : iterable of int, optional
        Electrodes that record (default: the layout's usable ones).
    heartbeat_ms : int, optional
        Heartbeat period to ask of the device (default: keep the device's).
    heartbeat_timeout_s : float
        No valid frame for this long means the device stopped answering.
    ack_timeout_s, max_retries : float, int
        A command not acknowledged in ``ack_timeout_s`` is sent again (same sequence
        number, so the device executes it once), at most ``max_retries`` times.
    max_resends : int
        RESEND requests for frames of a window that arrived damaged or not at all.
    reconnect_attempts, backoff_s, backoff_max_s : int, float, float
        After a read/write error, reopen the port up to ``reconnect_attempts`` times,
        waiting ``backoff_s``, then twice as long each time (at most ``backoff_max_s``).
    reconnect_on_timeout : bool
        Treat a heartbeat timeout like a lost connection (reconnect) instead of raising
        :class:`DeviceTimeout` at once.
    window_timeout_s : float, optional
        Longest a window may take while the device keeps sending heartbeats (default
        ``10 + 10 x duration`` seconds).
    stream_lead_s : float
        Streaming: the earliest a pulse is scheduled ahead of the device's time.
    wire_log : bool
        Keep every chunk of bytes written in :attr:`wire_log` (tests, debugging).
    port_factory : callable, optional
        ``port_factory(url) -> port`` instead of ``serial.serial_for_url`` (a port needs
        ``read``, ``write``, ``in_waiting``, ``timeout``, ``reset_input_buffer``, ``close``).
    serial_kwargs : dict, optional
        Passed to ``serial.serial_for_url`` (baudrate is irrelevant on USB CDC and ptys).
    on_samples : callable, optional
        ``on_samples(first_tick, samples)`` for SAMPLES frames, if the device sends them.
    """

    def __init__(self, url: str, *, layout: ElectrodeLayout | None = None, mode: str = "auto",
                 sampling_rate_hz: int | None = None, threshold_sd: float = 0.0,
                 record_electrodes=None, heartbeat_ms: int | None = None, heartbeat_timeout_s: float = 1.0,
                 ack_timeout_s: float = 0.2, max_retries: int = 3, max_resends: int = 3,
                 reconnect_attempts: int = 6, backoff_s: float = 0.05, backoff_max_s: float = 2.0,
                 reconnect_on_timeout: bool = False, window_timeout_s: float | None = None,
                 stream_lead_s: float = 0.02, wire_log: bool = False,
                 port_factory: Callable[[str], Any] | None = None, serial_kwargs: dict | None = None,
                 on_samples: Callable[[int, np.ndarray], None] | None = None) -> None:
        if mode not in ("auto", "stepped", "streaming"):
            raise ValueError(f"serial board: mode must be 'auto', 'stepped' or 'streaming', got {mode!r}")
        if heartbeat_timeout_s <= 0 or ack_timeout_s <= 0:
            raise ValueError("serial board: heartbeat_timeout_s and ack_timeout_s must be > 0")
        self.url = url
        self.layout = layout or ElectrodeLayout()
        self.requested_mode = mode
        self.expected_rate = sampling_rate_hz
        self.threshold_sd = float(threshold_sd)
        rec = self.layout.usable_indices if record_electrodes is None else record_electrodes
        self.record_electrodes = np.asarray(list(rec), dtype=np.int64)
        bad = self.record_electrodes[(self.record_electrodes < 0)
                                     | (self.record_electrodes >= self.layout.n_electrodes)]
        if bad.size:
            raise ValueError(f"serial board: record_electrodes has electrode {int(bad[0])}; the layout has "
                             f"0..{self.layout.n_electrodes - 1}")
        self.heartbeat_ms = heartbeat_ms
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.ack_timeout_s = float(ack_timeout_s)
        self.max_retries = int(max_retries)
        self.max_resends = int(max_resends)
        self.reconnect_attempts = int(reconnect_attempts)
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.reconnect_on_timeout = bool(reconnect_on_timeout)
        self.window_timeout_s = window_timeout_s
        self.stream_lead_s = float(stream_lead_s)
        self.wire_log: list[bytes] | None = [] if wire_log else None
        self.port_factory = port_factory
        self.serial_kwargs = dict(serial_kwargs or {})
        self.on_samples = on_samples
        self.poll_s = 0.02
        self.device: DeviceInfo | None = None
        self.mode: Mode | None = None
        self.device_errors: list[tuple[int, str]] = []
        self.parser = FrameParser(MAX_PAYLOAD)
        self.stats: dict[str, int] = dict.fromkeys(
            ("retransmits", "resends", "disconnects", "reconnects", "rx_seq_gaps", "stale_frames",
             "duplicate_frames", "samples_frames", "nacks"), 0)
        self._port = None
        self._fd: int | None = None
        self._seq = 0
        self._rx_seq: int | None = None
        self._replies: dict[int, Frame] = {}
        self._last_rx = 0.0
        self._dev_tick = 0
        self._dev_tick_at = 0.0
        self._now_hi = 0
        self._dev_state = Mode.IDLE
        self._dev_last_window = NO_WINDOW
        self._dev_done_seq = 0
        self._window: _Collector | None = None
        self._stream = _Stream()
        self._tick0: int | None = None
        self._next_tick: int | None = None
        self._next_window = 0
        self._failed: str | None = None
        self._link_errors: tuple[type[BaseException], ...] = (OSError, ValueError)
        self._timeout_errors: tuple[type[BaseException], ...] = ()

    # -- MEABackend ---------------------------------------------------------------------------
    @property
    def rate(self) -> int:
        if self.device is None:
            raise SerialBoardError(f"{self.url}: not open")
        return self.device.sampling_rate_hz

    @property
    def info(self) -> dict[str, Any]:
        d = {"driver": "serial", "url": self.url}
        if self.device is not None:
            d.update(self.device.to_dict(), mode=self.mode.name.lower() if self.mode is not None else None)
        return d

    @property
    def time_s(self) -> float:
        """Device time now (s since open). Streaming: an estimate, from the last tick the
        device reported and the host's clock since; it never moves backwards."""
        if self.device is None or self._tick0 is None:
            return 0.0
        if self.mode == Mode.STREAMING:
            return (self._device_now() - self._tick0) / self.rate
        tick = self._tick0 if self._next_tick is None else self._next_tick
        return (tick - self._tick0) / self.rate

    @property
    def next_start_s(self) -> float:
        """The earliest device time (s since open) at which the next window can begin: where
        the last one ended (a streaming window may start later, never earlier). The safety
        guard checks a window here; :attr:`Window.start_s` says where it really began."""
        if self.device is None or self._tick0 is None or self._next_tick is None:
            return 0.0
        return (self._next_tick - self._tick0) / self.rate

    def open(self) -> dict[str, Any]:
        """Connect, handshake, configure and start recording (idempotent). A port that
        cannot be opened raises :class:`DeviceDisconnected`; a device that does not answer,
        :class:`DeviceTimeout`; the wrong device, :class:`ProtocolMismatch`."""
        if self._port is None:
            try:
                self._connect(first=True)
            except _LinkLost as e:
                self._close_port()
                raise DeviceDisconnected(str(e)) from e
            except BaseException:
                self._close_port()
                raise
        return self.info

    def record(self, duration_s: float, pulses: list[ScheduledPulse]) -> Window:
        """Advance the device by ``duration_s``, delivering ``pulses``; see the class notes."""
        self.open()
        n = int(round(duration_s * self.rate))
        if not math.isfinite(duration_s) or n < 1 or n >= 2**32:
            raise ValueError(f"serial board: duration_s = {duration_s} is {n} ticks at {self.rate} Hz; "
                             f"a window is 1..{2**32 - 1} ticks")
        records = encode_pulses(pulses, self.rate, self.device.n_electrodes, n)
        if len(records) and Feature.STIMULATION not in self.device.features:
            raise SerialBoardError(f"{self.url}: the device does not offer STIMULATION; {len(records)} pulses asked")
        if self._failed:
            raise SerialBoardError(f"{self.url}: an earlier failure ({self._failed}) left the device in an unknown "
                                   f"state; close() and open() again")
        t_wall = time.monotonic()
        before = {**self.stats, **self.parser.stats()}
        try:
            if self.mode == Mode.STREAMING:
                start, ticks, els, holes, extra = self._record_streaming(n, records)
            else:
                start, ticks, els, holes, extra = self._record_stepped(n, records)
        except _LinkLost as e:       # a path that could not reconnect by itself
            self._failed = str(e)
            raise DeviceDisconnected(str(e)) from e
        except BaseException as e:
            self._failed = f"{type(e).__name__}: {e}"
            raise
        after = {**self.stats, **self.parser.stats()}
        rate, t0 = self.rate, self._tick0
        info = {k: after[k] - before[k] for k in ("retransmits", "resends", "reconnects", "bad_crc", "bad_header",
                                                 "dropped_bytes", "rx_seq_gaps", "stale_frames")}
        info.update(extra, latency_s=time.monotonic() - t_wall, mode=self.mode.name.lower())
        return Window(spikes=SpikeEvents((ticks - t0) / rate, els.astype(np.int32)),
                      start_s=(start - t0) / rate, duration_s=n / rate,
                      gaps=[((a - t0) / rate, (b - t0) / rate) for a, b in holes], info=info)

    def stop_stimulation(self) -> None:
        """STOP_STIM: cancel queued pulses. Never raises; a failure is logged."""
        if self._port is None:
            return
        try:
            self._command(Msg.STOP_STIM, b"")
        except Exception as e:      # noqa: BLE001 - always safe to call
            log.warning("%s: STOP_STIM failed: %s", self.url, e)

    def close(self) -> None:
        """STOP_STIM and STOP (best effort, bounded), then close the port. Always safe."""
        if self._port is None:
            return
        try:
            for mtype in (Msg.STOP_STIM, Msg.STOP):
                try:
                    self._command(mtype, b"", retries=1)
                except Exception as e:     # noqa: BLE001 - close must not raise
                    log.warning("%s: %s on close failed: %s", self.url, mtype.name, e)
                    if isinstance(e, _LinkLost):
                        break
        finally:
            self._close_port()
            self._failed = None

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- connection ---------------------------------------------------------------------------
    def _open_port(self):
        try:
            import serial
        except ImportError as e:     # pragma: no cover - pyserial is a dependency
            if self.port_factory is None:
                raise SerialBoardError("the serial MEA back end needs pyserial: pip install pyserial") from e
        else:
            self._link_errors = (OSError, ValueError, serial.SerialException)
            self._timeout_errors = (serial.SerialTimeoutException,)
        try:
            if self.port_factory is not None:
                return self.port_factory(self.url)
            kw = {"timeout": 0, "write_timeout": self.heartbeat_timeout_s, **self.serial_kwargs}
            return serial.serial_for_url(self.url, **kw)
        except self._link_errors as e:
            raise _LinkLost(f"cannot open {self.url}: {e}") from e

    def _connect(self, first: bool = False) -> DeviceInfo:
        port = self._open_port()
        self._port = port
        try:
            self._fd = port.fileno()
            port.timeout = 0
        except Exception:            # noqa: BLE001 - rfc2217://, loop://, test ports: no fileno
            self._fd = None
            port.timeout = self.poll_s
        try:
            port.reset_input_buffer()
        except Exception as e:       # noqa: BLE001
            raise _LinkLost(f"{self.url}: {e}") from e
        self.parser.reset()
        self.parser.max_payload = MAX_PAYLOAD
        self._rx_seq = None
        self._replies.clear()
        self._last_rx = time.monotonic()
        dev = self._handshake(first)
        if first:
            self._stream = _Stream()
            self._tick0 = dev.tick
            self._next_tick = dev.tick if self.mode == Mode.STEPPED else None
            self._next_window = (dev.last_window + 1) % NO_WINDOW
        self._setup()
        return dev

    def _handshake(self, first: bool) -> DeviceInfo:
        frame = self._command(Msg.HELLO, HELLO.pack(PROTOCOL_VERSION, 0))
        if frame.type != Msg.INFO:
            raise ProtocolError(f"{self.url}: HELLO was answered by {_name(frame.type)}, expected INFO")
        dev = DeviceInfo.unpack(frame.payload)
        where = f"{self.url} ({dev.model} {dev.serial_number})"
        if dev.protocol_version != PROTOCOL_VERSION:
            raise ProtocolMismatch(f"{where}: the device speaks serial protocol version {dev.protocol_version}; "
                                   f"this driver speaks version {PROTOCOL_VERSION}")
        if dev.n_electrodes != self.layout.n_electrodes:
            raise ProtocolMismatch(f"{where}: the device has {dev.n_electrodes} electrodes; the layout expects "
                                   f"{self.layout.n_electrodes} ({self.layout.rows} x {self.layout.cols})")
        if dev.rows and dev.cols and (dev.rows, dev.cols) != (self.layout.rows, self.layout.cols):
            raise ProtocolMismatch(f"{where}: the device's grid is {dev.rows} x {dev.cols}; the layout expects "
                                   f"{self.layout.rows} x {self.layout.cols}")
        if self.expected_rate is not None and dev.sampling_rate_hz != self.expected_rate:
            raise ProtocolMismatch(f"{where}: the device samples at {dev.sampling_rate_hz} Hz; expected "
                                   f"{self.expected_rate} Hz")
        if not 64 <= dev.max_payload <= MAX_PAYLOAD:
            raise ProtocolMismatch(f"{where}: max_payload {dev.max_payload} is outside 64..{MAX_PAYLOAD}")
        if dev.sampling_rate_hz < 1:
            raise ProtocolMismatch(f"{where}: sampling rate {dev.sampling_rate_hz} Hz")
        want = {"auto": None, "stepped": Mode.STEPPED, "streaming": Mode.STREAMING}[self.requested_mode]
        if want is None:
            want = Mode.STEPPED if Feature.STEPPED in dev.features else Mode.STREAMING
        need = Feature.STEPPED if want == Mode.STEPPED else Feature.STREAMING
        if need not in dev.features:
            raise ProtocolMismatch(f"{where}: {want.name.lower()} mode asked, the device offers "
                                   f"{[f.name for f in Feature if f in dev.features]}")
        if not first and dev.serial_number != self.device.serial_number:
            raise ProtocolMismatch(f"{self.url}: reconnected to serial number {dev.serial_number}, "
                                   f"was {self.device.serial_number}")
        self.device = dev
        self.mode = want
        self.parser.max_payload = dev.max_payload
        self._dev_tick, self._dev_tick_at = dev.tick, time.monotonic()
        if first:
            self._now_hi = dev.tick
        self._dev_last_window, self._dev_state = dev.last_window, dev.state
        hb = (self.heartbeat_ms or dev.heartbeat_ms) / 1000.0
        if hb and self.heartbeat_timeout_s < 2 * hb:
            raise ValueError(f"serial board: heartbeat_timeout_s = {self.heartbeat_timeout_s} s is shorter than two "
                             f"heartbeat periods of the device ({hb * 1000:.0f} ms)")
        return dev

    def _setup(self) -> None:
        """STOP_STIM (whatever was queued before us), CONFIGURE, START."""
        n_el = self.device.n_electrodes
        self._command(Msg.STOP_STIM, b"")
        self._command(Msg.CONFIGURE, CONFIGURE.pack(self.threshold_sd, self.heartbeat_ms or 0, 0, 0)
                      + electrode_mask(self.record_electrodes, n_el))
        self._command(Msg.START, START.pack(int(self.mode), 0, 0))

    def _close_port(self) -> None:
        port, self._port, self._fd = self._port, None, None
        if port is not None:
            try:
                port.close()
            except Exception:        # noqa: BLE001
                pass

    def _reconnect(self, cause: BaseException) -> DeviceInfo:
        self.stats["disconnects"] += 1
        log.warning("%s: connection lost (%s); reconnecting", self.url, cause)
        self._close_port()
        delay, t0, last = self.backoff_s, time.monotonic(), cause
        for _attempt in range(self.reconnect_attempts):
            time.sleep(delay)
            delay = min(2 * delay, self.backoff_max_s)
            try:
                dev = self._connect()
                self.stats["reconnects"] += 1
                return dev
            except (_LinkLost, DeviceTimeout) as e:
                last = e
                self._close_port()
        raise DeviceDisconnected(f"{self.url}: connection lost ({cause}); {self.reconnect_attempts} reconnection "
                                 f"attempts over {time.monotonic() - t0:.1f} s failed, the last with: {last}")

    # -- bytes --------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self._port is None:
            raise _LinkLost(f"{self.url}: port closed")
        if self.wire_log is not None:
            self.wire_log.append(bytes(data))
        try:
            self._port.write(data)
        except self._timeout_errors as e:
            raise DeviceTimeout(f"{self.url}: the device does not read what we write ({e})") from e
        except self._link_errors as e:
            raise _LinkLost(f"{self.url}: write failed: {e}") from e

    def _read_some(self, wait: float) -> bytes:
        port = self._port
        if port is None:
            raise _LinkLost(f"{self.url}: port closed")
        try:
            if self._fd is not None:
                if not select.select([self._fd], [], [], wait)[0]:
                    return b""
                return port.read(65536)
            n = port.in_waiting
            return port.read(n if n else 1)
        except self._link_errors as e:
            raise _LinkLost(f"{self.url}: read failed: {e}") from e

    def _pump(self, until: float) -> None:
        """Read once (waiting at most until ``until``), dispatch the frames; raise
        DeviceTimeout when nothing valid arrived for ``heartbeat_timeout_s``."""
        now = time.monotonic()
        silent_at = self._last_rx + self.heartbeat_timeout_s
        data = self._read_some(max(0.0, min(until, silent_at) - now))
        if data:
            for frame in self.parser.feed(data):
                self._dispatch(frame)
        now = time.monotonic()
        if now - self._last_rx > self.heartbeat_timeout_s:
            msg = (f"{self.url}: no valid frame from the device for {now - self._last_rx:.2f} s (heartbeat timeout "
                   f"{self.heartbeat_timeout_s} s; last device tick heard {self._dev_tick}): the device stopped "
                   f"answering")
            if self.reconnect_on_timeout:
                raise _LinkLost(msg)
            raise DeviceTimeout(msg)

    def _dispatch(self, frame: Frame) -> None:
        if not frame.from_device:
            raise SerialBoardError(f"{self.url}: received a host frame ({_name(frame.type)}, seq {frame.seq}): the "
                                   f"port echoes what we write (a tty not in raw mode, or loop://)")
        if self._rx_seq is not None and frame.seq != (self._rx_seq + 1) & 0xFFFF:
            self.stats["rx_seq_gaps"] += (frame.seq - self._rx_seq - 1) & 0xFFFF
        self._rx_seq = frame.seq
        self._last_rx = time.monotonic()
        t, p = frame.type, frame.payload
        if t == Msg.HEARTBEAT:
            _expect_len("HEARTBEAT", p, HEARTBEAT.size)
            tick, last, done_seq, _queued, state, _r = HEARTBEAT.unpack(p)
            if state not in Mode._value2member_map_:
                raise ProtocolError(f"HEARTBEAT (seq {frame.seq}): state byte {state}; expected 0, 1 or 2")
            if self.mode != Mode.STREAMING or tick >= self._dev_tick:
                # streaming: SPIKES may run ahead of the heartbeat's tick; the clock never steps back
                self._dev_tick, self._dev_tick_at = tick, self._last_rx
            self._dev_last_window, self._dev_state, self._dev_done_seq = last, Mode(state), done_seq
        elif t in (Msg.ACK, Msg.NACK, Msg.INFO):
            _expect_len(_name(t), p, 2, at_least=True)
            self._replies[struct.unpack_from("<H", p)[0]] = frame
        elif t == Msg.SPIKES:
            f = parse_spikes(p, self.device.n_electrodes if self.device else 0xFFFF, frame.seq)
            if f.t_to > self._dev_tick:
                self._dev_tick, self._dev_tick_at = f.t_to, self._last_rx
            if self.mode == Mode.STREAMING:
                self._stream.add(f)
            elif self._window is not None and f.window_id == self._window.window_id:
                self._window.add(f, frame.seq)
            else:
                self.stats["stale_frames"] += 1
        elif t == Msg.WINDOW_DONE:
            _expect_len("WINDOW_DONE", p, WINDOW_DONE.size)
            wid, n_spikes, t_start, t_end, n_frames, n_pulses = WINDOW_DONE.unpack(p)
            w = self._window
            if w is None or wid != w.window_id:
                self.stats["stale_frames"] += 1
                return
            if (t_start, t_end) != (w.start, w.end):
                raise ProtocolError(f"WINDOW_DONE (seq {frame.seq}) of window {wid}: span {t_start}..{t_end}, "
                                    f"expected {w.start}..{w.end}")
            if n_frames < 1:
                raise ProtocolError(f"WINDOW_DONE (seq {frame.seq}) of window {wid}: n_frames = 0; a window has "
                                    f"at least one SPIKES frame")
            w.done = (n_frames, n_spikes, n_pulses)
        elif t == Msg.SAMPLES:
            first, samples, _scale = parse_samples(p, frame.seq)
            self.stats["samples_frames"] += 1
            if self.on_samples is not None:
                self.on_samples(first, samples)
        elif t == Msg.ERROR:
            _expect_len("ERROR", p, ERROR.size, at_least=True)
            code = ERROR.unpack_from(p)[0]
            text = p[ERROR.size:].decode("utf-8", errors="replace")
            self.device_errors.append((code, text))
            log.warning("%s: device error %s: %s", self.url, _code_name(code), text)
            if code == ErrorCode.INTERNAL:
                raise SerialBoardError(f"{self.url}: the device reports an internal fault: {text}")
        else:
            raise ProtocolError(f"{self.url}: frame seq {frame.seq} has message type 0x{t:02X}, which protocol "
                                f"version 1 does not define")

    # -- commands -----------------------------------------------------------------------------
    def _command(self, mtype: Msg, payload: bytes, *, retries: int | None = None,
                 satisfied: Callable[[], bool] | None = None) -> Frame | None:
        """Send one command and wait for its ACK (INFO for HELLO), retransmitting with the
        same sequence number. Raises DeviceNack on a NACK."""
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        data = encode_frame(mtype, seq, payload, 0, MAX_PAYLOAD)
        self._replies.clear()
        tries = 1 + (self.max_retries if retries is None else retries)
        sent_at = time.monotonic()
        for attempt in range(tries):
            if attempt:
                self.stats["retransmits"] += 1
            self._write(data)
            deadline = time.monotonic() + self.ack_timeout_s
            while True:
                rep = self._replies.pop(seq, None)
                if rep is not None:
                    if rep.type == Msg.NACK:
                        _expect_len("NACK", rep.payload, NACK.size, at_least=True)
                        _ref, _rt, _r, code = NACK.unpack_from(rep.payload)
                        text = rep.payload[NACK.size:].decode("utf-8", errors="replace")
                        self.stats["nacks"] += 1
                        raise DeviceNack(f"{self.url}: the device refused {mtype.name} (seq {seq}): "
                                         f"{_code_name(code)}: {text}", code, text)
                    want = Msg.INFO if mtype == Msg.HELLO else Msg.ACK
                    if rep.type != want:
                        raise ProtocolError(f"{self.url}: {mtype.name} (seq {seq}) was answered by "
                                            f"{_name(rep.type)}, expected {want.name}")
                    if want == Msg.ACK:
                        _expect_len("ACK", rep.payload, ACK.size)
                        if ACK.unpack(rep.payload)[1] != mtype:
                            raise ProtocolError(f"{self.url}: ACK of seq {seq} names message type "
                                                f"0x{ACK.unpack(rep.payload)[1]:02X}, we sent {mtype.name}")
                    return rep
                if satisfied is not None and satisfied():
                    return None
                if time.monotonic() >= deadline:
                    break
                self._pump(deadline)
        # frames the device sent before it went quiet can still arrive in the first try's wait:
        # it is answering only if something came after that
        if self._last_rx < sent_at + self.ack_timeout_s:
            raise DeviceTimeout(f"{self.url}: no reply to {mtype.name} (seq {seq}) after {tries} tries of "
                                f"{self.ack_timeout_s} s, and no frame at all for "
                                f"{time.monotonic() - self._last_rx:.2f} s: the device stopped answering")
        raise DeviceTimeout(f"{self.url}: no reply to {mtype.name} (seq {seq}) after {tries} tries of "
                            f"{self.ack_timeout_s} s, although the device sends heartbeats")

    # -- stepped mode -------------------------------------------------------------------------
    def _record_stepped(self, n: int, records: np.ndarray):
        wid = self._next_window
        start = self._next_tick
        w = _Collector(wid, start, start + n)
        payloads = stimulate_payloads(records, start, self.device.max_payload) if len(records) else []
        ran = False
        self._window = w
        try:
            while True:
                try:
                    if not ran:
                        for p in payloads:
                            self._command(Msg.STIMULATE, p)
                        w.mark = self._rx_seq
                        self._command(Msg.RUN_WINDOW, RUN_WINDOW.pack(wid, n, start),
                                      satisfied=lambda: bool(w.frames) or w.done is not None)
                        ran = True
                    self._await_window(w)
                    break
                except _LinkLost as e:
                    dev = self._reconnect(e)
                    if dev.tick == w.end and dev.last_window == wid:
                        ran, w.want_all = True, True        # it ran: fetch what we missed
                    elif dev.tick == start:
                        ran = False                         # it never ran: run it again
                    else:
                        raise SerialBoardError(
                            f"{self.url}: after reconnecting the device is at tick {dev.tick} (last window "
                            f"{dev.last_window}); window {wid} should leave it at {start} (not run) or "
                            f"{w.end} (run). Was it reset? Reopen the back end.") from e
        finally:
            self._window = None
        self._next_tick = w.end
        self._next_window = (wid + 1) % NO_WINDOW
        ticks, els, holes = w.assemble()
        if w.done is not None and not holes and len(ticks) != w.done[1]:
            raise ProtocolError(f"{self.url}: WINDOW_DONE of window {wid} counts {w.done[1]} spikes; its "
                                f"{len(w.frames)} SPIKES frames carry {len(ticks)}")
        extra = {"window_id": wid, "frames": len(w.frames), "duplicate_frames": w.duplicates,
                 "pulses_delivered": w.done[2] if w.done else None, "complete": not holes}
        return start, ticks, els, holes, extra

    def _await_window(self, w: _Collector) -> None:
        timeout = self.window_timeout_s
        if timeout is None:
            timeout = 10.0 + 10.0 * (w.end - w.start) / self.rate
        deadline = time.monotonic() + timeout
        resends = 0
        while True:
            # a heartbeat says the device sent this window's WINDOW_DONE (after our latest
            # request) and it did not reach us
            lost_done = (w.done is None and self._dev_last_window == w.window_id and self._dev_tick >= w.end
                         and (w.mark is None or 0 < (self._dev_done_seq - w.mark) & 0xFFFF < 0x8000))
            if w.done is None and (w.want_all or lost_done):
                # the device finished the window, but its WINDOW_DONE (or everything) did not reach us
                if resends >= self.max_resends or not self._resend(w, []):
                    return
                resends += 1
                w.want_all = False
            elif w.done is not None:
                missing = w.missing()
                if not missing:
                    return
                if resends >= self.max_resends or not self._resend(w, missing):
                    return
                resends += 1
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"{self.url}: window {w.window_id} ({w.end - w.start} ticks) not complete after "
                                    f"{timeout:.1f} s although the device sends heartbeats")
            self._pump(deadline)

    def _resend(self, w: _Collector, indices: list[int]) -> bool:
        """RESEND ``indices`` of window ``w`` (all if empty); False if the device no longer has it."""
        if Feature.RESEND not in self.device.features:
            return False
        self.stats["resends"] += 1
        room = (self.device.max_payload - RESEND.size) // 2
        idx = indices if len(indices) <= room else []
        w.done = None
        w.mark = self._rx_seq
        try:
            self._command(Msg.RESEND, RESEND.pack(w.window_id, len(idx), 0) + np.asarray(idx, "<u2").tobytes())
        except DeviceNack as e:
            if e.code == ErrorCode.NO_DATA:
                return False
            raise
        return True

    # -- streaming mode -----------------------------------------------------------------------
    def _device_now(self) -> int:
        """Estimate of the device's tick now (streaming: it runs on its own clock); never
        less than an earlier estimate."""
        now = int(self._dev_tick + (time.monotonic() - self._dev_tick_at) * self.rate)
        self._now_hi = max(self._now_hi, now)
        return self._now_hi

    def _record_streaming(self, n: int, records: np.ndarray):
        rate = self.rate
        while self._stream.first_from is None:         # the stream has not begun yet
            self._pump_or_reconnect(time.monotonic() + self.poll_s)
        start = self._next_tick if self._next_tick is not None else self._stream.first_from
        extra: dict[str, Any] = {"skipped_s": 0.0, "pulses_uncertain": 0}
        if len(records):
            start, records = self._stream_stimulate(records, start, extra)
        end = start + n
        deadline = time.monotonic() + (self.window_timeout_s or 10.0 + 10.0 * n / rate)
        while self._stream.covered_to is None or self._stream.covered_to < end:
            if time.monotonic() > deadline:
                raise DeviceTimeout(f"{self.url}: the stream did not reach tick {end} in time "
                                    f"(it is at tick {self._stream.covered_to})")
            if self._pump_or_reconnect(deadline) and len(records):
                # the reconnection cleared the device's queue: send again what is still ahead
                _, records = self._stream_stimulate(records, start, extra, shift=False)
        ticks, els, holes = self._stream.take(start, end)
        self._next_tick = end
        return start, ticks, els, holes, extra

    def _stream_stimulate(self, records: np.ndarray, start: int, extra: dict, shift: bool = True):
        """Queue ``records`` (relative to ``start``) on a streaming device. With ``shift``,
        the window starts later if its first pulse would be less than ``stream_lead_s``
        ahead of the device. After a reconnection (the device queue is cleared) only the
        pulses still ahead are sent; the others count as ``pulses_uncertain``."""
        rate = self.rate
        lead = int(math.ceil(self.stream_lead_s * rate))
        late_retry = True
        while True:
            if shift:
                earliest = start + int(records["t"].min())
                need = self._device_now() + lead
                if earliest < need:
                    start += need - earliest
                    extra["skipped_s"] += (need - earliest) / rate
            else:
                ahead = records[start + records["t"].astype(np.int64) >= self._device_now() + lead]
                extra["pulses_uncertain"] += len(records) - len(ahead)
                records = ahead
            try:
                for p in stimulate_payloads(records, start, self.device.max_payload) if len(records) else []:
                    self._command(Msg.STIMULATE, p)
                return start, records
            except DeviceNack as e:
                if e.code != ErrorCode.LATE or not late_retry:
                    raise
                late_retry, lead = False, 2 * lead
                self._command(Msg.STOP_STIM, b"")
            except _LinkLost as e:
                self._reconnect(e)              # clears the queue on the device
                shift = False

    def _pump_or_reconnect(self, until: float) -> bool:
        try:
            self._pump(until)
            return False
        except _LinkLost as e:
            self._reconnect(e)
            return True


def _name(mtype: int) -> str:
    try:
        return Msg(mtype).name
    except ValueError:
        return f"type 0x{mtype:02X}"


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code}"
