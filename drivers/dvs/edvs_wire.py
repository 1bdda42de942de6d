"""The eDVS binary event formats on the wire: encoder, and a compiled, resynchronising decoder.

Every format starts an event with two address bytes ``1yyyyyyy pxxxxxxx``: the first byte's
most significant bit (MSB) is set as a sync marker, then y (0..127); the second byte holds
the polarity p (MSB, 1 = ON, as libcaer and jAER read it) and x (0..127). A timestamp may
follow, big-endian, in microseconds. The eDVS4337 firmware (mini-eDVS, PushBot; what iniVation
libcaer ``src/edvs.c`` drives) numbers the formats of its ``!E<n>`` command as

======  ============  ===================================================================
``!E0``  2 bytes       address only, no timestamp
``!E1``  3..5 bytes    address + delta timestamp: 1..3 bytes of 7 bits, MSB first, the MSB
                       of the **last** timestamp byte set; µs since the previous event
``!E2``  4 bytes       address + 16-bit absolute timestamp (wraps every 65.536 ms)
``!E3``  5 bytes       address + 24-bit timestamp (wraps every 16.78 s)
``!E4``  6 bytes       address + 32-bit timestamp (wraps every 71.6 min)
======  ============  ===================================================================

The older eDVS128 (FTDI) firmware numbers them **shifted by one**: ``!E1`` is the 16-bit,
``!E2`` the 24-bit and ``!E3`` the 32-bit format, and it has no delta format (jAER's
``eDVS128_HardwareInterface`` sends ``!E1`` and decodes ``[y][p|x][ts_hi][ts_lo]``; Danvil's
edvstools agree). Source and confidence of every row: ``docs/dvs_edvs.md`` and
``../shared/devices/edvs-protocol.md``; none of it is checked against hardware.

Absolute timestamps are unwrapped as libcaer does for ``!E2``: a raw timestamp smaller than
the previous one adds one period (``0x10000`` for 16 bits), and the same rule applies to the
24- and 32-bit formats with their own periods. ``!E0`` carries no time: its events get the
time the caller passes for the chunk (``t_chunk_us``; the driver passes the host's arrival
time), so their resolution is the read granularity.

Resynchronisation. The decoder loses sync at a byte that cannot start an event (MSB clear
where an event should start, or an ``!E1`` timestamp not ending within 3 bytes): ASCII
replies, echoes, line noise. It then skips bytes, counting them, up to the next byte with
its MSB set. If every byte skipped had its MSB clear (text: the usual case, replies and
echoes interleaved), that byte starts an event, so text between events costs exactly its
own bytes and no event. If binary garbage was skipped (MSB-set bytes that did not start a
well-formed event), a candidate must also be followed by ``lookahead`` further well-formed
events (each starting with an MSB-set byte; in the absolute formats each less than a quarter
of the timestamp period after the one before: slowly changing timestamp bytes keep their MSB
for long, so the sync bit alone would let the decoder lock inside events). Binary garbage
that happens to look like events is decoded as events, and one with a smaller timestamp
counts as a wrap (nothing can tell them apart). In the 24- and 32-bit formats, a synchronised
event more than a quarter period (4.2 s, 18 min) after the one before is taken as a loss of
sync too. A decision that needs bytes not yet received
waits for them (they stay in the carry-over), so decoding a stream in chunks cut anywhere gives
exactly what decoding it whole gives; ``final=True`` decides with what there is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numba
import numpy as np

from .events import empty_events

__all__ = [
    "EDVS128_FORMATS",
    "EDVS4337_FORMATS",
    "MAX_DELTA_US",
    "SENSOR_SIZE",
    "DecoderState",
    "EDVSDecoder",
    "WireFormat",
    "decode",
    "encode",
    "event_sizes",
    "wire_format",
]

#: the eDVS sensor: 128 x 128 pixels (7-bit addresses)
SENSOR_SIZE = (128, 128)
#: largest delta an ``!E1`` event can carry: 3 bytes of 7 bits
MAX_DELTA_US = (1 << 21) - 1


@dataclass(frozen=True)
class WireFormat:
    """One binary event format.

    Attributes
    ----------
    ts_bytes : int
        Timestamp bytes after the address (0, 2, 3 or 4); for the delta format the most (3).
    delta : bool
        Timestamps are 7-bit-per-byte deltas ending at a byte with its MSB set (``!E1`` of
        the eDVS4337).
    """

    ts_bytes: int
    delta: bool = False

    @property
    def label(self) -> str:
        """A short name: ``"none"``, ``"delta"``, ``"16-bit"``, ``"24-bit"`` or ``"32-bit"``."""
        if self.delta:
            return "delta"
        return "none" if self.ts_bytes == 0 else f"{8 * self.ts_bytes}-bit"

    @property
    def size(self) -> str:
        """Bytes per event, e.g. ``"4"`` or ``"3..5"``."""
        return "3..5" if self.delta else str(2 + self.ts_bytes)


#: ``!E<n>`` of the eDVS4337 firmware (libcaer, rottaca's PushBot decoder)
EDVS4337_FORMATS: dict[int, WireFormat] = {0: WireFormat(0), 1: WireFormat(3, True), 2: WireFormat(2),
                                           3: WireFormat(3), 4: WireFormat(4)}
#: ``!E<n>`` of the older eDVS128 firmware: numbering shifted by one, no delta format
EDVS128_FORMATS: dict[int, WireFormat] = {0: WireFormat(0), 1: WireFormat(2), 2: WireFormat(3),
                                          3: WireFormat(4)}


def wire_format(fmt: int, firmware: str = "edvs4337") -> WireFormat:
    """The :class:`WireFormat` that ``!E<fmt>`` selects on ``firmware`` (``"edvs4337"`` or
    ``"edvs128"``)."""
    table = {"edvs4337": EDVS4337_FORMATS, "edvs128": EDVS128_FORMATS}.get(firmware)
    if table is None:
        raise ValueError(f"edvs: firmware must be 'edvs4337' or 'edvs128', got {firmware!r}")
    if fmt not in table:
        raise ValueError(f"edvs: format !E{fmt} does not exist on the {firmware} firmware; expected one of "
                         f"{sorted(table)}")
    return table[fmt]


# -- encoder ----------------------------------------------------------------------------------
def event_sizes(events: np.ndarray, fmt: WireFormat, t_prev: int = 0) -> np.ndarray:
    """Bytes each event takes on the wire in ``fmt`` (``t_prev``: the time before the first
    event, for the delta format)."""
    n = len(events)
    if not fmt.delta:
        return np.full(n, 2 + fmt.ts_bytes, dtype=np.int64)
    d = np.minimum(np.diff(events["t"].astype(np.int64), prepend=np.int64(t_prev)), MAX_DELTA_US)
    return 3 + (d >= 1 << 7).astype(np.int64) + (d >= 1 << 14).astype(np.int64)


def encode(events: np.ndarray, fmt: WireFormat, t_prev: int = 0) -> bytes:
    """The bytes the firmware sends for ``events`` (vectorised).

    Parameters
    ----------
    events : ndarray of EVENT_DTYPE
        Sorted by ``t``; x and y in 0..127. Absolute timestamps are sent modulo their width
        (as the firmware's free-running counter wraps).
    fmt : WireFormat
    t_prev : int
        Delta format: the time of the event sent before ``events[0]`` (the firmware's last
        timestamp). A delta above :data:`MAX_DELTA_US` cannot be sent and is clipped to it
        (the firmware's behaviour there is not documented).

    Returns
    -------
    bytes
    """
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    if len(events) and (x.max() > 127 or y.max() > 127):
        bad = int(np.flatnonzero((x > 127) | (y > 127))[0])
        raise ValueError(f"edvs encode: event {bad} has x={x[bad]}, y={y[bad]}; the eDVS addresses 0..127")
    t = events["t"].astype(np.int64)
    if len(t) > 1 and (np.diff(t) < 0).any():
        raise ValueError("edvs encode: events must be sorted by t")
    a0 = (0x80 | y).astype(np.uint8)
    a1 = ((events["p"].astype(np.int64) << 7) | x).astype(np.uint8)
    if not fmt.delta:
        out = np.empty((len(events), 2 + fmt.ts_bytes), dtype=np.uint8)
        out[:, 0], out[:, 1] = a0, a1
        for k in range(fmt.ts_bytes):             # big-endian
            out[:, 2 + k] = (t >> (8 * (fmt.ts_bytes - 1 - k))) & 0xFF
        return out.tobytes()
    if not len(t):
        return b""
    if t[0] < t_prev:
        raise ValueError(f"edvs encode: the first event's t = {t[0]} is before t_prev = {t_prev}")
    d = np.minimum(np.diff(t, prepend=np.int64(t_prev)), MAX_DELTA_US)
    sizes = event_sizes(events, fmt, t_prev)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    out[starts], out[starts + 1] = a0, a1
    nts = sizes - 2
    last = starts + sizes - 1
    out[last] = 0x80 | (d & 0x7F)                 # the last timestamp byte has its MSB set
    two = nts >= 2
    out[last[two] - 1] = (d[two] >> 7) & 0x7F
    three = nts >= 3
    out[last[three] - 2] = (d[three] >> 14) & 0x7F
    return out.tobytes()


# -- decoder ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DecoderState:
    """What the decoder carries from one chunk to the next.

    Attributes
    ----------
    carry : bytes
        Bytes not decoded yet (a partial event, or bytes a resync decision waits for).
    synced : bool
        The decoder is aligned on event boundaries.
    t_last : int
        Time of the last event (µs, unwrapped).
    last_raw : int
        The last raw (wrapped) timestamp of an absolute format.
    wraps : int
        Timestamp wraps seen so far.
    skipped : int
        Bytes skipped while resynchronising, in total.
    resyncs : int
        Times the decoder lost sync.
    n_events : int
        Events decoded in total.
    dirty : bool
        Bytes with their MSB set were skipped since sync was lost (binary garbage).
    """

    carry: bytes = b""
    synced: bool = False
    t_last: int = 0
    last_raw: int = -1
    wraps: int = 0
    skipped: int = 0
    resyncs: int = 0
    n_events: int = 0
    dirty: bool = False


@numba.njit(cache=True, inline="always")
def _event_len(buf, i, n, ts_bytes, delta):
    """Length of a well-formed event at ``i``: > 0; -1: not an event; 0: needs more bytes."""
    if i >= n:
        return 0
    if buf[i] < 0x80:
        return -1
    if not delta:
        return 2 + ts_bytes if i + 2 + ts_bytes <= n else 0
    for k in range(3):
        j = i + 2 + k
        if j >= n:
            return 0
        if buf[j] >= 0x80:
            return 3 + k
    return -1


@numba.njit(cache=True, inline="always")
def _raw_ts(buf, i, ln):
    raw = np.int64(0)
    for j in range(i + 2, i + ln):
        raw = (raw << 8) | buf[j]
    return raw


@numba.njit(cache=True)
def _decode_kernel(buf, ts_bytes, delta, synced, dirty, t_last, last_raw, wraps, t_chunk, lookahead, final,
                   out_t, out_x, out_y, out_p):
    """Decode ``buf``; returns (events, consumed, skipped, resyncs, synced, dirty, t_last, last_raw, wraps)."""
    n = buf.shape[0]
    i = 0
    k = 0
    skipped = 0
    resyncs = 0
    period = np.int64(1) << np.int64(8 * ts_bytes)
    while i < n:
        ln = _event_len(buf, i, n, ts_bytes, delta)
        if ln == 0 and not final:
            break                                   # wait for the rest of the event
        if ln == 0:                                 # final: a partial event at the end is garbage
            skipped += n - i
            i = n
            break
        if ln < 0:
            if synced:
                synced = False
                resyncs += 1
            elif buf[i] >= 0x80:
                dirty = True
            skipped += 1
            i += 1
            continue
        if not synced and dirty:                    # after binary garbage: plausible only if events follow
            j = i + ln
            ok = True
            wait = False
            prev = _raw_ts(buf, i, ln)
            for _ in range(lookahead):
                ln2 = _event_len(buf, j, n, ts_bytes, delta)
                if ln2 < 0:
                    ok = False
                    break
                if ln2 == 0:
                    wait = not final
                    break
                if ts_bytes > 0 and not delta:      # absolute time: small steps forward only
                    raw = _raw_ts(buf, j, ln2)
                    if ((raw - prev) & (period - 1)) >= period >> 2:
                        ok = False
                        break
                    prev = raw
                j += ln2
            if wait:
                break
            if not ok:
                skipped += 1
                i += 1
                continue
        elif synced and ts_bytes >= 3 and not delta and last_raw >= 0:
            # 24/32-bit: a step of a quarter period (>= 4 s) is junk or misalignment, not time
            if ((_raw_ts(buf, i, ln) - last_raw) & (period - 1)) >= period >> 2:
                synced = False
                dirty = True
                resyncs += 1
                last_raw = -1
                skipped += 1
                i += 1
                continue
        synced = True
        dirty = False
        out_y[k] = buf[i] & 0x7F
        out_x[k] = buf[i + 1] & 0x7F
        out_p[k] = buf[i + 1] >= 0x80
        if delta:
            d = np.int64(0)
            for j in range(i + 2, i + ln):
                d = (d << 7) | (buf[j] & 0x7F)
            t_last += d
        elif ts_bytes > 0:
            raw = np.int64(0)
            for j in range(i + 2, i + ln):
                raw = (raw << 8) | buf[j]
            if last_raw >= 0 and raw < last_raw:
                wraps += 1
            last_raw = raw
            t_last = wraps * period + raw
        else:
            t_last = t_chunk
        out_t[k] = t_last
        k += 1
        i += ln
    return k, i, skipped, resyncs, synced, dirty, t_last, last_raw, wraps


def decode(chunk: bytes, fmt: WireFormat, state: DecoderState | None = None, *, t_chunk_us: int | None = None,
           lookahead: int = 2, final: bool = False) -> tuple[np.ndarray, DecoderState]:
    """Decode one chunk of the byte stream (compiled; no per-event Python).

    Parameters
    ----------
    chunk : bytes
        The bytes read, in any chunking.
    fmt : WireFormat
    state : DecoderState, optional
        From the previous chunk (default: a fresh, unsynchronised decoder).
    t_chunk_us : int, optional
        ``!E0`` only: the time given to this chunk's events (default: the state's ``t_last``).
    lookahead : int
        After binary garbage: well-formed events that must follow an MSB-set byte to
        resynchronise on it.
    final : bool
        No more bytes will come: decide with what there is (a partial event is skipped).

    Returns
    -------
    events : ndarray of EVENT_DTYPE
    state : DecoderState
    """
    st = state or DecoderState()
    buf = np.frombuffer(st.carry + bytes(chunk), dtype=np.uint8)
    cap = len(buf) // 2
    t = np.empty(cap, np.int64)
    x = np.empty(cap, np.uint16)
    y = np.empty(cap, np.uint16)
    p = np.empty(cap, np.bool_)
    t_chunk = st.t_last if t_chunk_us is None else int(t_chunk_us)
    k, used, skipped, resyncs, synced, dirty, t_last, last_raw, wraps = _decode_kernel(
        buf, fmt.ts_bytes, fmt.delta, st.synced, st.dirty, np.int64(st.t_last), np.int64(st.last_raw), np.int64(st.wraps),
        np.int64(t_chunk), int(lookahead), bool(final), t, x, y, p)
    ev = empty_events(k)
    ev["t"], ev["x"], ev["y"], ev["p"] = t[:k], x[:k], y[:k], p[:k]
    new = replace(st, carry=buf[used:].tobytes(), synced=bool(synced), dirty=bool(dirty), t_last=int(t_last), last_raw=int(last_raw),
                  wraps=int(wraps), skipped=st.skipped + int(skipped), resyncs=st.resyncs + int(resyncs),
                  n_events=st.n_events + int(k))
    return ev, new


class EDVSDecoder:
    """A stateful :func:`decode`: feed it chunks, get events.

    Parameters
    ----------
    fmt : WireFormat
    lookahead : int
        See :func:`decode`.
    """

    def __init__(self, fmt: WireFormat, lookahead: int = 2) -> None:
        self.fmt = fmt
        self.lookahead = int(lookahead)
        self.state = DecoderState()

    def feed(self, chunk: bytes, t_chunk_us: int | None = None, final: bool = False) -> np.ndarray:
        """The events completed by ``chunk`` (EVENT_DTYPE)."""
        ev, self.state = decode(chunk, self.fmt, self.state, t_chunk_us=t_chunk_us, lookahead=self.lookahead,
                                final=final)
        return ev

    def reset(self, keep_counts: bool = True) -> None:
        """Forget carry-over, sync and timestamps (after a device timestamp reset or a
        reconnection); keep the skipped/resync/event counters unless ``keep_counts`` is False."""
        s = self.state
        self.state = (DecoderState(skipped=s.skipped, resyncs=s.resyncs, n_events=s.n_events) if keep_counts
                      else DecoderState())

    @property
    def skipped(self) -> int:
        """Bytes skipped while resynchronising."""
        return self.state.skipped

