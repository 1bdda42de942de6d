"""The wire format of serial protocol version 1 for MEA boards (``docs/serial-protocol.md``).

Message types, capability bits, modes and error codes; payload layouts (:mod:`struct`
formats and NumPy record dtypes); and the pure functions that pack, unpack and check
payloads. No I/O: the driver (:class:`~.serial_board.SerialBoard`) and the firmware
emulator (:mod:`.firmware`) both build on this module, so the two cannot drift apart. The
document is the normative text; ``tests/test_mea_serial.py`` checks its example
conversation against this code. Framing (sync, header, CRCs) is
:mod:`labbench.drivers.transport.framing`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Any

import numpy as np

from .stimulation import BiphasicPulse, ScheduledPulse

PROTOCOL_VERSION = 1
NO_WINDOW = 0xFFFFFFFF          # "no window" in window-id fields


class Msg(IntEnum):
    """Message types (frame ``type`` byte). Host to device below 0x80, device to host above."""

    HELLO = 0x01
    CONFIGURE = 0x02
    START = 0x03
    STOP = 0x04
    STIMULATE = 0x05
    STOP_STIM = 0x06
    RUN_WINDOW = 0x07
    RESEND = 0x08
    INFO = 0x81
    ACK = 0x82
    NACK = 0x83
    HEARTBEAT = 0x84
    SPIKES = 0x85
    WINDOW_DONE = 0x86
    SAMPLES = 0x87
    ERROR = 0x88


class Feature(IntFlag):
    """Capability bits of INFO ``features``."""

    STEPPED = 0x01          # RUN_WINDOW (simulators)
    STREAMING = 0x02        # START(streaming): real-time streaming
    SAMPLES = 0x04          # raw SAMPLES frames on request
    RESEND = 0x08           # RESEND of the last window
    STIMULATION = 0x10      # STIMULATE


class Mode(IntEnum):
    """Device recording state (START ``mode``, HEARTBEAT/INFO ``state``)."""

    IDLE = 0
    STEPPED = 1
    STREAMING = 2


class ErrorCode(IntEnum):
    """NACK and ERROR codes."""

    BAD_LENGTH = 1          # payload length does not match its layout
    BAD_FIELD = 2           # a field is out of range
    UNKNOWN_TYPE = 3        # message type not known (or feature not supported)
    BAD_STATE = 4           # not allowed in the device's state (e.g. RUN_WINDOW while idle)
    TICK_MISMATCH = 5       # RUN_WINDOW start_tick is not the device's tick
    NO_DATA = 6             # RESEND of a window the device no longer holds
    LATE = 7                # STIMULATE pulse earlier than the device's time
    QUEUE_FULL = 8          # more pulses than the device can queue
    BAD_ELECTRODE = 9       # electrode missing or unusable
    VERSION = 10            # protocol version not supported
    OVERRUN = 11            # the device fell behind real time / dropped data
    INTERNAL = 12           # firmware fault


# payload layouts (little-endian, packed)
HELLO = struct.Struct("<HH")                       # protocol_version, reserved
INFO = struct.Struct("<HHBBHHBBIHHIQIBBH16s16s")   # 72 bytes, see DeviceInfo
CONFIGURE = struct.Struct("<fHBB")                 # threshold_sd, heartbeat_ms, flags, reserved; + mask
START = struct.Struct("<BBH")                      # mode, reserved, reserved
STIMULATE = struct.Struct("<QHH")                  # base_tick, n_pulses, reserved; + records
RUN_WINDOW = struct.Struct("<IIQ")                 # window_id, n_ticks, start_tick
RESEND = struct.Struct("<IHH")                     # window_id, n_indices, reserved; + u16 indices
ACK = struct.Struct("<HBB")                        # ref_seq, ref_type, reserved
NACK = struct.Struct("<HBBH")                      # ref_seq, ref_type, reserved, code; + UTF-8 text
HEARTBEAT = struct.Struct("<QIHHBB")               # tick, last_window, done_seq, queued_pulses, state, reserved
SPIKES = struct.Struct("<IHHQQ")                   # window_id, index, count, t_from, t_to; + records
WINDOW_DONE = struct.Struct("<IIQQHH")             # window_id, n_spikes, t_start, t_end, n_frames, n_pulses
SAMPLES = struct.Struct("<QHHf")                   # first_tick, n_channels, n_samples, uv_per_lsb; + int16
ERROR = struct.Struct("<H")                        # code; + UTF-8 text
SPIKE_RECORD = np.dtype([("dt", "<u4"), ("electrode", "<u2")])      # 6 bytes
PULSE_FIXED = 16                                   # bytes of a pulse record before its electrode mask
CONFIGURE_FLAG_SAMPLES = 0x01
PULSE_FLAG_CATHODIC_FIRST = 0x01
AMPLITUDE_UNIT_UA = 0.01                           # pulse amplitudes are carried in 10 nA units


class SerialBoardError(RuntimeError):
    """A serial MEA board failed (base class of the codec's and the driver's errors)."""


class ProtocolError(SerialBoardError, ValueError):
    """A frame passed its CRC but does not follow the protocol (names the field)."""


def mask_bytes(n_electrodes: int) -> int:
    """Bytes of an electrode bit mask (bit ``e % 8`` of byte ``e // 8``)."""
    return (int(n_electrodes) + 7) // 8


def electrode_mask(electrodes, n_electrodes: int) -> bytes:
    """Bit mask of ``electrodes`` (indices) on an array of ``n_electrodes``."""
    bits = np.zeros(mask_bytes(n_electrodes) * 8, dtype=bool)
    bits[np.asarray(list(electrodes), dtype=np.int64)] = True
    return np.packbits(bits, bitorder="little").tobytes()


def mask_to_bool(mask: bytes, n_electrodes: int) -> np.ndarray:
    """Boolean array of length ``n_electrodes`` from a bit mask."""
    return np.unpackbits(np.frombuffer(mask, np.uint8), bitorder="little")[:n_electrodes].astype(bool)


def pulse_dtype(n_electrodes: int) -> np.dtype:
    """Record of one STIMULATE pulse: fixed 16 bytes, then the electrode mask."""
    return np.dtype([("t", "<u4"), ("amp1", "<u2"), ("amp2", "<u2"), ("phase1", "<u2"), ("phase2", "<u2"),
                     ("interphase", "<u2"), ("flags", "u1"), ("reserved", "u1"),
                     ("mask", "u1", (mask_bytes(n_electrodes),))])


@dataclass(frozen=True)
class DeviceInfo:
    """The INFO payload: what a board says about itself."""

    ref_seq: int
    protocol_version: int
    firmware: tuple[int, int, int]
    n_electrodes: int
    rows: int
    cols: int
    sampling_rate_hz: int
    max_payload: int
    heartbeat_ms: int
    features: Feature
    tick: int
    last_window: int
    state: Mode
    max_pulses: int
    serial_number: str
    model: str

    def pack(self) -> bytes:
        return INFO.pack(self.ref_seq, self.protocol_version, *self.firmware, self.n_electrodes, self.rows,
                         self.cols, self.sampling_rate_hz, self.max_payload, self.heartbeat_ms, int(self.features),
                         self.tick, self.last_window, int(self.state), 0, self.max_pulses,
                         self.serial_number.encode("ascii"), self.model.encode("ascii"))

    @classmethod
    def unpack(cls, payload: bytes) -> DeviceInfo:
        if len(payload) != INFO.size:
            raise ProtocolError(f"INFO: payload is {len(payload)} bytes; protocol version 1 has {INFO.size}")
        (ref, ver, fw1, fw2, fw3, nel, rows, cols, rate, maxp, hb, feat, tick, last, state, _r, maxpul,
         serial, model) = INFO.unpack(payload)
        if state not in Mode._value2member_map_:
            raise ProtocolError(f"INFO: state byte {state} is not a mode (0 idle, 1 stepped, 2 streaming)")
        return cls(ref, ver, (fw1, fw2, fw3), nel, rows, cols, rate, maxp, hb, Feature(feat), tick, last,
                   Mode(state), maxpul, _text(serial), _text(model))

    def to_dict(self) -> dict[str, Any]:
        return {"protocol_version": self.protocol_version, "firmware": ".".join(map(str, self.firmware)),
                "serial_number": self.serial_number, "model": self.model, "n_electrodes": self.n_electrodes,
                "rows": self.rows, "cols": self.cols, "sampling_rate_hz": self.sampling_rate_hz,
                "max_payload": self.max_payload, "heartbeat_ms": self.heartbeat_ms,
                "features": [f.name for f in Feature if f in self.features], "max_pulses": self.max_pulses}


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("ascii", errors="replace")


def encode_pulses(pulses: list[ScheduledPulse], rate_hz: float, n_electrodes: int,
                  n_ticks: int | None = None) -> np.ndarray:
    """STIMULATE records of ``pulses`` (times relative to the window start).

    Times become ticks (nearest), amplitudes 10 nA units (nearest); phase widths must be
    whole microseconds. Anything that does not fit its field raises ValueError naming the
    pulse, the field, the value and the range.
    """
    n = len(pulses)
    rec = np.zeros(n, dtype=pulse_dtype(n_electrodes))
    if n == 0:
        return rec
    cols = np.array([(sp.t_s, sp.pulse.amplitude_ua, sp.pulse.second_amplitude_ua, sp.pulse.phase_us,
                      sp.pulse.second_phase_us, sp.pulse.interphase_us) for sp in pulses], dtype=np.float64)
    ticks = np.rint(cols[:, 0] * rate_hz)
    amps = np.rint(cols[:, 1:3] / AMPLITUDE_UNIT_UA)
    widths = np.rint(cols[:, 3:6])

    def fail(i: int, what: str) -> None:
        sp = pulses[i]
        raise ValueError(f"serial protocol: pulse {i} at t={sp.t_s} s on electrodes {list(sp.electrodes)}: {what}")

    limit_t = 2**32 if n_ticks is None else n_ticks
    for i in np.flatnonzero(~np.isfinite(cols).all(axis=1) | (ticks < 0) | (ticks >= limit_t)):
        fail(i, f"time {cols[i, 0]} s is tick {ticks[i]:.0f}, outside the window's 0..{limit_t - 1} ticks "
                f"at {rate_hz:g} Hz")
    for i, j in zip(*np.nonzero((amps < 1) | (amps > 0xFFFF))):
        fail(i, f"{('amplitude_ua', 'amplitude2_ua')[j]} = {cols[i, 1 + j]} uA does not fit the 16-bit field "
                f"of 10 nA units (0.01..655.35 uA)")
    off = np.abs(widths - cols[:, 3:6])
    low = np.array([1, 1, 0])
    for i, j in zip(*np.nonzero((off > 1e-3) | (widths < low) | (widths > 0xFFFF))):
        name = ("phase_us", "phase2_us", "interphase_us")[j]
        fail(i, f"{name} = {cols[i, 3 + j]} us; the protocol carries whole microseconds, "
                f"{low[j]}..65535")
    bits = np.zeros((n, mask_bytes(n_electrodes) * 8), dtype=bool)
    for i, sp in enumerate(pulses):
        el = np.asarray(sp.electrodes, dtype=np.int64)
        if el.size == 0:
            fail(i, "no electrode")
        bad = el[(el < 0) | (el >= n_electrodes)]
        if bad.size:
            fail(i, f"electrode {int(bad[0])} does not exist on a {n_electrodes}-electrode board")
        bits[i, el] = True
    rec["t"] = ticks
    rec["amp1"], rec["amp2"] = amps[:, 0], amps[:, 1]
    rec["phase1"], rec["phase2"], rec["interphase"] = widths[:, 0], widths[:, 1], widths[:, 2]
    rec["flags"] = [PULSE_FLAG_CATHODIC_FIRST if sp.pulse.cathodic_first else 0 for sp in pulses]
    rec["mask"] = np.packbits(bits, axis=1, bitorder="little")
    return rec


def stimulate_payloads(records: np.ndarray, base_tick: int, max_payload: int) -> list[bytes]:
    """STIMULATE payloads carrying ``records``, as many per frame as ``max_payload`` allows."""
    per = (max_payload - STIMULATE.size) // records.dtype.itemsize
    if per < 1:
        raise ValueError(f"serial protocol: max_payload {max_payload} cannot hold one pulse record "
                         f"({STIMULATE.size} + {records.dtype.itemsize} bytes)")
    return [STIMULATE.pack(base_tick, len(chunk), 0) + chunk.tobytes()
            for chunk in (records[k:k + per] for k in range(0, len(records), per))]


def parse_stimulate(payload: bytes, n_electrodes: int) -> tuple[int, int, np.ndarray]:
    """(base_tick, reserved, records) of a STIMULATE payload; ProtocolError if its length
    does not match its pulse count."""
    if len(payload) < STIMULATE.size:
        raise ProtocolError(f"STIMULATE: payload of {len(payload)} bytes is shorter than its "
                            f"{STIMULATE.size}-byte header")
    base, n, reserved = STIMULATE.unpack_from(payload)
    dt = pulse_dtype(n_electrodes)
    want = STIMULATE.size + n * dt.itemsize
    if len(payload) != want:
        raise ProtocolError(f"STIMULATE: n_pulses = {n}, so the payload should be {STIMULATE.size} + {n} x "
                            f"{dt.itemsize} = {want} bytes; it is {len(payload)}")
    return base, reserved, np.frombuffer(payload, dt, n, STIMULATE.size)


def decode_pulses(records: np.ndarray, n_electrodes: int) -> list[tuple[int, tuple[int, ...], BiphasicPulse]]:
    """(tick offset, electrodes, pulse) of STIMULATE records."""
    bits = np.unpackbits(records["mask"], axis=1, bitorder="little")[:, :n_electrodes].astype(bool)
    amp = records[["amp1", "amp2"]]
    return [(int(r["t"]), tuple(int(e) for e in np.flatnonzero(b)),
             BiphasicPulse(float(a["amp1"]) * AMPLITUDE_UNIT_UA, float(r["phase1"]),
                           float(a["amp2"]) * AMPLITUDE_UNIT_UA, float(r["phase2"]), float(r["interphase"]),
                           bool(r["flags"] & PULSE_FLAG_CATHODIC_FIRST)))
            for r, a, b in zip(records, amp, bits)]


def spikes_payload(window_id: int, index: int, t_from: int, t_to: int, ticks: np.ndarray,
                   electrodes: np.ndarray) -> bytes:
    """One SPIKES payload; ``ticks`` absolute, sorted, within ``[t_from, t_to)``."""
    rec = np.empty(len(ticks), dtype=SPIKE_RECORD)
    rec["dt"] = np.asarray(ticks, dtype=np.int64) - t_from
    rec["electrode"] = electrodes
    return SPIKES.pack(window_id, index, len(rec), t_from, t_to) + rec.tobytes()


def spikes_per_frame(max_payload: int) -> int:
    return (max_payload - SPIKES.size) // SPIKE_RECORD.itemsize


@dataclass
class SpikesFrame:
    window_id: int
    index: int
    t_from: int
    t_to: int
    ticks: np.ndarray           # absolute device ticks, int64
    electrodes: np.ndarray      # int32


def parse_spikes(payload: bytes, n_electrodes: int, seq: int = -1) -> SpikesFrame:
    """Check and decode a SPIKES payload in bulk."""
    where = f"SPIKES frame (seq {seq})"
    if len(payload) < SPIKES.size:
        raise ProtocolError(f"{where}: payload of {len(payload)} bytes is shorter than its {SPIKES.size}-byte header")
    wid, index, count, t_from, t_to = SPIKES.unpack_from(payload)
    want = SPIKES.size + count * SPIKE_RECORD.itemsize
    if len(payload) != want:
        raise ProtocolError(f"{where}: count = {count}, so the payload should be {SPIKES.size} + {count} x 6 = "
                            f"{want} bytes; it is {len(payload)}")
    if t_to < t_from:
        raise ProtocolError(f"{where}: span ends at tick {t_to} before it starts at tick {t_from}")
    rec = np.frombuffer(payload, SPIKE_RECORD, count, SPIKES.size)
    dt = rec["dt"].astype(np.int64)
    el = rec["electrode"].astype(np.int32)
    if count:
        if dt[-1] >= t_to - t_from or (count > 1 and (np.diff(dt) < 0).any()):
            i = int(np.flatnonzero(np.r_[np.diff(dt) < 0, dt[-1] >= t_to - t_from])[0])
            raise ProtocolError(f"{where}: spike {i} has dt = {dt[min(i + 1, count - 1)]} ticks; spikes must be "
                                f"sorted and within the frame's span of {t_to - t_from} ticks")
        if el.max() >= n_electrodes:
            i = int(np.argmax(el >= n_electrodes))
            raise ProtocolError(f"{where}: spike {i} is on electrode {el[i]}; the board has {n_electrodes} "
                                f"(0..{n_electrodes - 1})")
    return SpikesFrame(wid, index, t_from, t_to, dt + t_from, el)


def parse_samples(payload: bytes, seq: int = -1) -> tuple[int, np.ndarray, float]:
    """(first_tick, samples (n_samples, n_channels) int16, uV per LSB) of a SAMPLES payload."""
    where = f"SAMPLES frame (seq {seq})"
    if len(payload) < SAMPLES.size:
        raise ProtocolError(f"{where}: payload of {len(payload)} bytes is shorter than its {SAMPLES.size}-byte header")
    first, nch, ns, scale = SAMPLES.unpack_from(payload)
    want = SAMPLES.size + 2 * nch * ns
    if len(payload) != want:
        raise ProtocolError(f"{where}: {ns} samples x {nch} channels need {want} bytes; the payload is {len(payload)}")
    return first, np.frombuffer(payload, "<i2", nch * ns, SAMPLES.size).reshape(ns, nch), float(scale)


def _expect_len(name: str, payload: bytes, size: int, at_least: bool = False) -> None:
    if (len(payload) < size) if at_least else (len(payload) != size):
        least = "at least " if at_least else ""
        raise ProtocolError(f"{name}: payload is {len(payload)} bytes; expected {least}{size}")

