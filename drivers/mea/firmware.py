"""Firmware emulator of a serial MEA board: any :class:`~.backend.MEABackend` behind serial
protocol version 1 (``docs/serial-protocol.md``, wire format in :mod:`.serial_codec`),
served on a pseudo-terminal.

In real use the backend is the in-silico culture, and ``labbench emulate mea`` prints the
tty path for :class:`~.serial_board.SerialBoard` (or any other program) to open. The
emulator behaves like a board:

- device time is a tick counter at ``sampling_rate_hz``, 0 when the backend opens;
- **stepped mode** (``START`` mode 1): ``RUN_WINDOW`` advances the backend by a window at
  once (faster than real time), answered by SPIKES frames and WINDOW_DONE; the frames of
  the last window are kept for ``RESEND`` until the next window, STOP, or a USB reset;
- **streaming mode** (``START`` mode 2): the backend advances in chunks of
  ``stream_chunk_s``, paced to the wall clock (``realtime_factor`` 1 = real time), and the
  spikes stream out as they are detected; nothing is kept for RESEND;
- HEARTBEAT frames every ``heartbeat_ms`` from their own thread, also while a window runs.
  Streaming computes a chunk at its start and sends its spikes at once. The heartbeat
  reports the end of the last chunk computed (``heartbeat_tick="computed"``) or the wall
  clock's tick within the chunk being played out (``"now"``), which is behind the last
  SPIKES frame's ``t_to``: a host that extrapolates the device's time from the last frame
  it read sees that time step back by up to a chunk;
- a dropped connection (:meth:`~labbench.drivers.transport.pty.PtyEmulator.drop`) is a USB
  reset: the board keeps its time, configuration, queued pulses and recording state, but
  loses its transmit buffers (the window kept for RESEND);
- every command is answered by ACK or NACK (INFO for HELLO) carrying its sequence number;
  a command repeated with the same sequence number is answered again, not executed again.
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from ..transport.framing import FLAG_FROM_DEVICE, Frame, FrameParser, encode_frame
from ..transport.pty import PtyEmulator
from ..transport.serving import serve_until_interrupted
from .backend import MEABackend
from .layout import ElectrodeLayout
from .serial_codec import (ACK, CONFIGURE, CONFIGURE_FLAG_SAMPLES, ERROR, HEARTBEAT, HELLO, NACK, NO_WINDOW,
                           PROTOCOL_VERSION, RESEND, RUN_WINDOW, START, WINDOW_DONE, DeviceInfo, ErrorCode,
                           Feature, Mode, Msg, ProtocolError, decode_pulses, mask_bytes, mask_to_bool,
                           parse_stimulate, spikes_payload, spikes_per_frame)
from .stimulation import ScheduledPulse

DEFAULT_FEATURES = Feature.STEPPED | Feature.STREAMING | Feature.RESEND | Feature.STIMULATION


class _Nack(Exception):
    def __init__(self, code: ErrorCode, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class MEAFirmware(PtyEmulator):
    """A serial MEA board emulated on a pty, in front of ``backend``.

    Parameters
    ----------
    backend : MEABackend
        What the board records from; opened by :meth:`start`, closed by :meth:`close`.
    sampling_rate_hz : int
        Ticks per second of device time.
    heartbeat_ms : int
        HEARTBEAT period (CONFIGURE may change it).
    max_payload : int
        Largest payload the board sends or accepts (64..4096).
    serial_number, model : str
        At most 16 ASCII characters each.
    firmware_version : (int, int, int)
    features : Feature
        What INFO advertises and the board accepts.
    protocol_version : int
        What INFO reports (tests set another to check the host refuses it).
    stream_chunk_s : float
        Streaming: device time per chunk of spikes.
    realtime_factor : float
        Streaming: device seconds per wall-clock second.
    max_pulses : int
        Capacity of the pulse queue.
    heartbeat_tick : {"computed", "now"}
        Streaming: the tick a HEARTBEAT reports, the end of the last chunk computed or the
        wall clock's tick within the chunk being played out (see the module notes).
    **pty_kwargs
        :class:`~labbench.drivers.transport.pty.PtyEmulator` options (``link``, ...).
    """

    def __init__(self, backend: MEABackend, *, sampling_rate_hz: int = 25_000, heartbeat_ms: int = 100,
                 max_payload: int = 1024, serial_number: str = "LBEMU-0001", model: str = "labbench-mea-emu",
                 firmware_version: tuple[int, int, int] = (1, 0, 0), features: Feature = DEFAULT_FEATURES,
                 protocol_version: int = PROTOCOL_VERSION, stream_chunk_s: float = 0.01,
                 realtime_factor: float = 1.0, max_pulses: int = 4096, heartbeat_tick: str = "computed",
                 **pty_kwargs: Any) -> None:
        if not 64 <= max_payload <= 4096:
            raise ValueError(f"firmware: max_payload must be 64..4096, got {max_payload}")
        for name, text in (("serial_number", serial_number), ("model", model)):
            if len(text.encode("ascii")) > 16:
                raise ValueError(f"firmware: {name} {text!r} is longer than 16 ASCII characters")
        if heartbeat_tick not in ("computed", "now"):
            raise ValueError(f"firmware: heartbeat_tick must be 'computed' or 'now', got {heartbeat_tick!r}")
        pty_kwargs.setdefault("name", "mea-firmware")
        super().__init__(tick_s=heartbeat_ms / 1000.0, **pty_kwargs)
        self.backend = backend
        self.layout: ElectrodeLayout = getattr(backend, "layout", None) or ElectrodeLayout()
        self.n_electrodes = self.layout.n_electrodes
        if spikes_per_frame(max_payload) < 1:
            raise ValueError(f"firmware: max_payload {max_payload} holds no spike")
        self.rate = int(sampling_rate_hz)
        self.heartbeat_ms = int(heartbeat_ms)
        self.max_payload = int(max_payload)
        self.serial_number, self.model = serial_number, model
        self.firmware_version = tuple(firmware_version)
        self.features = Feature(features)
        self.protocol_version = int(protocol_version)
        self.stream_chunk_s = float(stream_chunk_s)
        self.realtime_factor = float(realtime_factor)
        self.max_pulses = int(max_pulses)
        self.heartbeat_tick = heartbeat_tick
        self._playing: tuple[int, int, float, float] | None = None   # streaming: chunk t0, t1, wall start, period
        # device state (guarded by _dev)
        self._dev = threading.RLock()
        self._parser = FrameParser(self.max_payload)
        self.tick = 0
        self.mode = Mode.IDLE
        self.threshold_sd = 0.0
        self.record_mask = self.layout.usable.copy()
        self.samples_on = False
        self.last_window = NO_WINDOW
        self.done_seq = 0                               # seq of the last WINDOW_DONE sent
        self._queue: list[tuple[int, int, tuple[int, ...], Any]] = []    # (tick, order, electrodes, pulse)
        self._order = 0
        self._buffer: tuple[int, list[bytes], bytes] | None = None        # window, SPIKES payloads, WINDOW_DONE
        self._last_cmd: tuple[int, int] | None = None                     # (seq, type) of the last command
        self._last_reply: tuple[Msg, bytes] | None = None
        self._tx_seq = 0
        self._stream_stop = threading.Event()
        self._stream_thread: threading.Thread | None = None
        self.delivered: list[ScheduledPulse] = []      # every pulse delivered, device time (s) in t_s
        self.stats = dict.fromkeys(("commands", "duplicates", "nacks", "windows", "chunks", "resends",
                                    "echoed", "spikes_clipped"), 0)

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> str:
        """Open the backend, then serve on the pty; returns the path to open."""
        if not self._started:
            self.backend.open()
            self.tick = int(round(self.backend.time_s * self.rate))
        return super().start()

    def close(self) -> None:
        """Stop streaming and serving, close the pty, stop stimulation and close the backend."""
        self._stop_streaming()
        super().close()
        try:
            self.backend.stop_stimulation()
        finally:
            self.backend.close()

    def on_connect(self) -> None:
        with self._dev:
            self._parser.reset()
            self._last_cmd = self._last_reply = None

    def on_disconnect(self) -> None:
        with self._dev:                 # a USB reset: transmit buffers are gone
            self._buffer = None

    # -- wire ---------------------------------------------------------------------------------
    def send(self, mtype: Msg, payload: bytes = b"") -> int:
        """Frame and write one message (thread-safe; sequence numbers in write order).
        Returns its sequence number."""
        with self._wlock:
            seq = self._tx_seq
            self._tx_seq = (seq + 1) & 0xFFFF
            self.write(encode_frame(mtype, seq, payload, FLAG_FROM_DEVICE, self.max_payload), mtype.name)
            return seq

    def send_done(self, wid: int, payload: bytes) -> None:
        """WINDOW_DONE, then (atomically for heartbeats) announce it as the last window."""
        with self._wlock:
            self.done_seq = self.send(Msg.WINDOW_DONE, payload)
            self.last_window = wid

    def _heartbeat_tick(self) -> int:
        """:attr:`tick`, or (``heartbeat_tick="now"``, streaming) the wall clock's tick within
        the chunk being played out."""
        playing = self._playing
        if self.heartbeat_tick != "now" or playing is None or self.mode != Mode.STREAMING:
            return self.tick
        t0, t1, wall0, period = playing
        frac = min(max((time.monotonic() - wall0) / period, 0.0), 1.0)
        return int(t0 + frac * (t1 - t0))

    def on_tick(self) -> None:
        with self._wlock:
            self.send(Msg.HEARTBEAT, HEARTBEAT.pack(self._heartbeat_tick(), self.last_window, self.done_seq,
                                                    len(self._queue), int(self.mode), 0))

    def on_data(self, data: bytes) -> None:
        for frame in self._parser.feed(data):
            self._handle(frame)

    def _handle(self, frame: Frame) -> None:
        if frame.from_device:
            self.stats["echoed"] += 1
            return
        with self._dev:
            self.stats["commands"] += 1
            key = (frame.seq, frame.type)
            if frame.type != Msg.HELLO and key == self._last_cmd and self._last_reply is not None:
                self.stats["duplicates"] += 1      # a retransmission: answer again, do not execute again
                self.send(*self._last_reply)
                return
            after: Callable[[], None] | None = None
            try:
                if frame.type == Msg.HELLO:
                    _length(frame.payload, HELLO.size, "HELLO")
                    reply = (Msg.INFO, self._info(frame.seq))
                else:
                    handler = self._handlers.get(frame.type)
                    if handler is None:
                        raise _Nack(ErrorCode.UNKNOWN_TYPE, f"message type 0x{frame.type:02X} is not a command of "
                                                            f"protocol version 1")
                    after = handler(self, frame.payload)
                    reply = (Msg.ACK, ACK.pack(frame.seq, frame.type, 0))
            except (_Nack, ProtocolError) as e:
                code = e.code if isinstance(e, _Nack) else ErrorCode.BAD_LENGTH
                self.stats["nacks"] += 1
                reply = (Msg.NACK, NACK.pack(frame.seq, frame.type, 0, code) + str(e).encode()[:200])
                after = None
            self._last_cmd, self._last_reply = key, reply
            self.send(*reply)
            if after is not None:
                try:
                    after()
                except Exception as e:      # noqa: BLE001 - the host must hear of it, not wait for ever
                    self.errors.append(e)
                    self.send(Msg.ERROR, ERROR.pack(ErrorCode.INTERNAL)
                              + f"{type(e).__name__}: {e}".encode()[:200])

    # -- commands -----------------------------------------------------------------------------
    def _info(self, ref_seq: int) -> bytes:
        return DeviceInfo(ref_seq, self.protocol_version, self.firmware_version, self.n_electrodes,
                          self.layout.rows, self.layout.cols, self.rate, self.max_payload, self.heartbeat_ms,
                          self.features, self.tick, self.last_window, self.mode, self.max_pulses,
                          self.serial_number, self.model).pack()

    def _cmd_configure(self, p: bytes):
        m = mask_bytes(self.n_electrodes)
        _length(p, CONFIGURE.size + m, f"CONFIGURE (8 + {m}-byte electrode mask for {self.n_electrodes} electrodes)")
        threshold, hb, flags, reserved = CONFIGURE.unpack_from(p)
        if not np.isfinite(threshold) or threshold < 0:
            raise _Nack(ErrorCode.BAD_FIELD, f"CONFIGURE threshold_sd = {threshold}; expected >= 0 (0: default)")
        if hb and not 10 <= hb <= 10_000:
            raise _Nack(ErrorCode.BAD_FIELD, f"CONFIGURE heartbeat_ms = {hb}; expected 0 (keep) or 10..10000")
        if flags & ~CONFIGURE_FLAG_SAMPLES or reserved:
            raise _Nack(ErrorCode.BAD_FIELD, f"CONFIGURE flags = 0x{flags:02X}, reserved = {reserved}; only bit 0 "
                                             f"(SAMPLES) is defined")
        if flags & CONFIGURE_FLAG_SAMPLES and Feature.SAMPLES not in self.features:
            raise _Nack(ErrorCode.BAD_FIELD, "CONFIGURE asks for SAMPLES frames; this board does not send them")
        bits = np.unpackbits(np.frombuffer(p, np.uint8, m, CONFIGURE.size), bitorder="little")
        if bits[self.n_electrodes:].any():
            raise _Nack(ErrorCode.BAD_ELECTRODE, f"CONFIGURE mask names electrode "
                                                 f"{self.n_electrodes + int(np.argmax(bits[self.n_electrodes:]))}; "
                                                 f"the board has {self.n_electrodes}")
        if threshold:
            self.threshold_sd = float(threshold)
            setter = getattr(self.backend, "set_threshold", None)
            if callable(setter):
                setter(float(threshold))
        if hb:
            self.heartbeat_ms = hb
            self.tick_s = hb / 1000.0
        self.samples_on = bool(flags & CONFIGURE_FLAG_SAMPLES)
        self.record_mask = mask_to_bool(p[CONFIGURE.size:], self.n_electrodes) & self.layout.usable
        return None

    def _cmd_start(self, p: bytes):
        _length(p, START.size, "START")
        mode, r1, r2 = START.unpack(p)
        need = {Mode.STEPPED: Feature.STEPPED, Mode.STREAMING: Feature.STREAMING}.get(mode)
        if need is None or r1 or r2:
            raise _Nack(ErrorCode.BAD_FIELD, f"START mode = {mode}; expected 1 (stepped) or 2 (streaming)")
        if need not in self.features:
            raise _Nack(ErrorCode.UNKNOWN_TYPE, f"START {Mode(mode).name.lower()}: this board does not offer it")
        if mode == self.mode:
            return None
        self._stop_streaming()
        self.mode = Mode(mode)
        if self.mode == Mode.STREAMING:
            return self._start_streaming
        return None

    def _cmd_stop(self, p: bytes):
        _length(p, 0, "STOP")
        self._stop_streaming()
        self.mode = Mode.IDLE
        self._buffer = None
        return None

    def _cmd_stop_stim(self, p: bytes):
        _length(p, 0, "STOP_STIM")
        self._queue.clear()
        self.backend.stop_stimulation()
        return None

    def _cmd_stimulate(self, p: bytes):
        if Feature.STIMULATION not in self.features:
            raise _Nack(ErrorCode.UNKNOWN_TYPE, "STIMULATE: this board does not stimulate")
        base, reserved, rec = parse_stimulate(p, self.n_electrodes)
        if reserved:
            raise _Nack(ErrorCode.BAD_FIELD, f"STIMULATE reserved field is {reserved}; expected 0")
        if len(self._queue) + len(rec) > self.max_pulses:
            raise _Nack(ErrorCode.QUEUE_FULL, f"STIMULATE: {len(rec)} pulses on top of {len(self._queue)} queued "
                                              f"exceed the queue of {self.max_pulses}")
        if (rec["flags"] & 0xFE).any() or rec["reserved"].any():
            i = int(np.flatnonzero((rec["flags"] & 0xFE) | rec["reserved"])[0])
            raise _Nack(ErrorCode.BAD_FIELD, f"STIMULATE pulse {i}: flags 0x{rec['flags'][i]:02X} / reserved "
                                             f"{rec['reserved'][i]}: only flag bit 0 (cathodic first) is defined")
        for name, low in (("amp1", 1), ("amp2", 1), ("phase1", 1), ("phase2", 1)):
            bad = np.flatnonzero(rec[name] < low)
            if bad.size:
                raise _Nack(ErrorCode.BAD_FIELD, f"STIMULATE pulse {int(bad[0])}: {name} = 0; expected >= {low}")
        pulses = decode_pulses(rec, self.n_electrodes)
        usable = self.layout.usable
        for i, (t, els, _pulse) in enumerate(pulses):
            if not els:
                raise _Nack(ErrorCode.BAD_ELECTRODE, f"STIMULATE pulse {i}: empty electrode mask")
            bad = [e for e in els if not usable[e]]
            if bad:
                raise _Nack(ErrorCode.BAD_ELECTRODE, f"STIMULATE pulse {i}: electrode {bad[0]} is not usable")
            if base + t < self.tick:
                raise _Nack(ErrorCode.LATE, f"STIMULATE pulse {i} at tick {base + t} is before the device's time, "
                                            f"tick {self.tick}")
        for t, els, pulse in pulses:
            self._order += 1
            bisect.insort(self._queue, (base + t, self._order, els, pulse))
        return None

    def _cmd_run_window(self, p: bytes):
        _length(p, RUN_WINDOW.size, "RUN_WINDOW")
        wid, n, start = RUN_WINDOW.unpack(p)
        if self.mode != Mode.STEPPED:
            raise _Nack(ErrorCode.BAD_STATE, f"RUN_WINDOW needs START(stepped); the board is "
                                             f"{self.mode.name.lower()}")
        if start != self.tick:
            raise _Nack(ErrorCode.TICK_MISMATCH, f"RUN_WINDOW {wid} starts at tick {start}; the board is at tick "
                                                 f"{self.tick}")
        if n < 1 or wid == NO_WINDOW:
            raise _Nack(ErrorCode.BAD_FIELD, f"RUN_WINDOW window_id = {wid}, n_ticks = {n}; expected n_ticks >= 1 "
                                             f"and window_id != 0xFFFFFFFF")
        return lambda: self._run_window(wid, n)

    def _cmd_resend(self, p: bytes):
        if Feature.RESEND not in self.features:
            raise _Nack(ErrorCode.UNKNOWN_TYPE, "RESEND: this board keeps no window")
        if len(p) < RESEND.size:
            raise _Nack(ErrorCode.BAD_LENGTH, f"RESEND payload is {len(p)} bytes; expected at least {RESEND.size}")
        wid, n, _r = RESEND.unpack_from(p)
        _length(p, RESEND.size + 2 * n, f"RESEND of {n} frame indices")
        buf = self._buffer
        if buf is None or buf[0] != wid:
            raise _Nack(ErrorCode.NO_DATA, f"RESEND: window {wid} is no longer held"
                                           + (f" (the board holds window {buf[0]})" if buf else ""))
        idx = np.frombuffer(p, "<u2", n, RESEND.size).astype(int)
        if n and idx.max() >= len(buf[1]):
            raise _Nack(ErrorCode.BAD_FIELD, f"RESEND: frame {idx.max()} of window {wid}; it has {len(buf[1])}")
        frames = [buf[1][i] for i in idx] if n else buf[1]

        def resend() -> None:
            self.stats["resends"] += 1
            for payload in frames:
                self.send(Msg.SPIKES, payload)
            self.send_done(wid, buf[2])
        return resend

    _handlers: dict[int, Callable] = {
        Msg.CONFIGURE: _cmd_configure, Msg.START: _cmd_start, Msg.STOP: _cmd_stop, Msg.STOP_STIM: _cmd_stop_stim,
        Msg.STIMULATE: _cmd_stimulate, Msg.RUN_WINDOW: _cmd_run_window, Msg.RESEND: _cmd_resend,
    }

    # -- recording ----------------------------------------------------------------------------
    def _advance(self, window_id: int, n: int) -> tuple[list[bytes], int, int]:
        """Run the backend for ``n`` ticks with the pulses due; SPIKES payloads, spikes, pulses."""
        t0, t1 = self.tick, self.tick + n
        k = bisect.bisect_left(self._queue, (t1,))
        due, self._queue[:k] = self._queue[:k], []
        sched = [ScheduledPulse((t - t0) / self.rate, els, pulse) for t, _o, els, pulse in due]
        win = self.backend.record(n / self.rate, sched)
        self.delivered += [ScheduledPulse(t / self.rate, els, pulse) for t, _o, els, pulse in due]
        ticks = np.rint(np.asarray(win.spikes.time_s, dtype=np.float64) * self.rate).astype(np.int64)
        els = np.asarray(win.spikes.electrode, dtype=np.int64)
        ok = (els >= 0) & (els < self.n_electrodes)
        ticks, els = ticks[ok], els[ok]
        keep = self.record_mask[els]
        ticks, els = ticks[keep], els[keep]
        out = (ticks < t0) | (ticks >= t1)
        if out.any():
            self.stats["spikes_clipped"] += int(out.sum())
            ticks = np.clip(ticks, t0, t1 - 1)
        order = np.lexsort((els, ticks))
        ticks, els = ticks[order], els[order]
        self.tick = t1
        return self._spike_payloads(window_id, t0, t1, ticks, els), len(ticks), len(due)

    def _spike_payloads(self, wid: int, t0: int, t1: int, ticks: np.ndarray, els: np.ndarray) -> list[bytes]:
        """Cut sorted spikes into SPIKES payloads whose spans tile [t0, t1), cutting only
        between ticks."""
        cap = spikes_per_frame(self.max_payload)
        cuts = [0]
        n = len(ticks)
        while n - cuts[-1] > cap:
            j = cuts[-1] + cap
            j = int(np.searchsorted(ticks, ticks[j], "left"))      # do not split a tick
            if j <= cuts[-1]:
                raise RuntimeError(f"firmware: more than {cap} spikes at tick {ticks[cuts[-1]]}")
            cuts.append(j)
        cuts.append(n)
        bounds = [t0] + [int(ticks[c]) for c in cuts[1:-1]] + [t1]
        return [spikes_payload(wid, i, bounds[i], bounds[i + 1], ticks[a:b], els[a:b])
                for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]

    def _run_window(self, wid: int, n: int) -> None:
        t0 = self.tick
        payloads, n_spikes, n_pulses = self._advance(wid, n)
        done = WINDOW_DONE.pack(wid, n_spikes, t0, t0 + n, len(payloads), n_pulses)
        self._buffer = (wid, payloads, done) if Feature.RESEND in self.features else None
        for payload in payloads:
            self.send(Msg.SPIKES, payload)
        self.send_done(wid, done)       # a heartbeat never announces the window before its WINDOW_DONE
        self.stats["windows"] += 1

    def _start_streaming(self) -> None:
        self._stream_stop.clear()
        t = threading.Thread(target=self._stream_loop, name=f"{self.name}-stream", daemon=True)
        self._stream_thread = t
        t.start()

    def _stop_streaming(self) -> None:
        self._stream_stop.set()
        t, self._stream_thread = self._stream_thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)
        self._playing = None

    def _stream_loop(self) -> None:
        n = max(1, int(round(self.stream_chunk_s * self.rate)))
        period = n / self.rate / self.realtime_factor
        chunk = 0
        next_t = time.monotonic()
        while not self._stream_stop.is_set() and not self._closing.is_set():
            # a STOP being handled holds the lock and waits for this thread: never block on it
            if not self._dev.acquire(timeout=0.05):
                continue
            try:
                if self.mode != Mode.STREAMING:
                    break
                try:
                    t0 = self.tick
                    payloads, _, _ = self._advance(chunk, n)
                    self._playing = (t0, self.tick, time.monotonic(), period)
                except Exception as e:        # noqa: BLE001 - report, do not die silently
                    self.send(Msg.ERROR, ERROR.pack(ErrorCode.INTERNAL) + f"{type(e).__name__}: {e}".encode()[:200])
                    self.errors.append(e)
                    break
                for payload in payloads:
                    self.send(Msg.SPIKES, payload)
                self.stats["chunks"] += 1
            finally:
                self._dev.release()
            chunk = (chunk + 1) % NO_WINDOW
            next_t += period
            wait = next_t - time.monotonic()
            if wait < -10 * period:           # far behind real time: say so, do not burst
                self.send(Msg.ERROR, ERROR.pack(ErrorCode.OVERRUN) + b"backend slower than real time")
                next_t = time.monotonic()
            elif wait > 0:
                self._stream_stop.wait(wait)


def _length(p: bytes, size: int, what: str) -> None:
    if len(p) != size:
        raise _Nack(ErrorCode.BAD_LENGTH, f"{what} payload is {len(p)} bytes; expected {size}")


def start_emulator(backend: MEABackend, **kwargs: Any) -> MEAFirmware:
    """Start a firmware emulator serving ``backend``; open ``emulator.path`` to talk to it
    and ``emulator.close()`` when done (also a context manager)."""
    fw = MEAFirmware(backend, **kwargs)
    fw.start()
    return fw


def emulate(backend_factory: Callable[[], MEABackend], *, out: TextIO | None = None,
            stop: threading.Event | None = None, **kwargs: Any) -> int:
    """Serve ``backend_factory()`` on a pty until interrupted (``labbench emulate mea``).

    Prints the path to open (a stable link to the pty) on ``out`` (default stdout), then
    serves until Ctrl-C or until ``stop`` is set. Returns 0.
    """
    fw = start_emulator(backend_factory(), **kwargs)
    stream = out or sys.stdout
    print(fw.path, file=stream, flush=True)
    return serve_until_interrupted(fw.close, stop)
