"""Byte framing for serial devices: sync word, checked header, payload, CRC-16.

One frame on the wire (all integers little-endian)::

    offset  size  field
    0       2     sync      A5 5A
    2       1     type      message type (the device protocol's business)
    3       1     flags     bit 0: 1 = sent by the device, 0 = sent by the host; other bits 0
    4       2     seq       sequence number of the sender (u16, wraps)
    6       2     length    payload bytes N (0 .. max_payload)
    8       1     hcheck    CRC-8/SMBUS (poly 0x07, init 0x00) of bytes 2..7
    9       N     payload
    9+N     2     crc       CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of bytes 2..8+N

:class:`FrameParser` is incremental: feed it whatever the port returned, get back the
complete frames. It resynchronises after garbage: a candidate whose header check fails,
whose length is impossible (> ``max_payload``) or whose CRC is wrong costs exactly one byte
(counted in :attr:`FrameParser.dropped_bytes`), and the search for the next sync word
starts at the following byte, so a real frame that a false candidate overlapped is still
found. The header check lets a false sync word in garbage be rejected at once, without
waiting for a payload that will never come.

The checks are done in C (:func:`binascii.crc_hqx`) and the search with
:meth:`bytes.find`; Python runs once per frame, never once per byte of payload.
"""

from __future__ import annotations

import binascii
import struct
from typing import NamedTuple

SYNC = b"\xA5\x5A"
HEADER_SIZE = 9          # sync, type, flags, seq, length, hcheck
TRAILER_SIZE = 2         # crc
OVERHEAD = HEADER_SIZE + TRAILER_SIZE
MAX_PAYLOAD = 4096       # the largest payload any device of protocol version 1 may declare
FLAG_FROM_DEVICE = 0x01

_HEAD = struct.Struct("<BBHH")
_CRC = struct.Struct("<H")


def _crc8_table() -> bytes:
    table = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table[i] = c
    return bytes(table)


_CRC8 = _crc8_table()


def crc8(data) -> int:
    """CRC-8/SMBUS (poly 0x07, init 0, no reflection); ``crc8(b"123456789") == 0xF4``."""
    c = 0
    for b in data:
        c = _CRC8[c ^ b]
    return c


def crc16(data) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); ``crc16(b"123456789") == 0x29B1``."""
    return binascii.crc_hqx(data, 0xFFFF)


class Frame(NamedTuple):
    """One decoded frame."""

    type: int
    flags: int
    seq: int
    payload: bytes

    @property
    def from_device(self) -> bool:
        return bool(self.flags & FLAG_FROM_DEVICE)


def encode_frame(ftype: int, seq: int, payload: bytes = b"", flags: int = 0,
                 max_payload: int = MAX_PAYLOAD) -> bytes:
    """The bytes of one frame.

    Parameters
    ----------
    ftype : int
        Message type, 0..255.
    seq : int
        Sender's sequence number; taken modulo 65536.
    payload : bytes
        At most ``max_payload`` bytes.
    flags : int
        0..255 (bit 0 marks frames sent by the device).
    """
    if not 0 <= ftype <= 0xFF:
        raise ValueError(f"frame: type {ftype} does not fit in one byte (0..255)")
    if not 0 <= flags <= 0xFF:
        raise ValueError(f"frame: flags {flags} do not fit in one byte (0..255)")
    if len(payload) > max_payload:
        raise ValueError(f"frame: payload of {len(payload)} bytes exceeds max_payload {max_payload}")
    head = _HEAD.pack(ftype, flags, seq & 0xFFFF, len(payload))
    body = head + bytes((crc8(head),)) + bytes(payload)
    return SYNC + body + _CRC.pack(crc16(body))


class FrameParser:
    """Incremental frame parser with resynchronisation.

    Parameters
    ----------
    max_payload : int
        Longest payload accepted; a header announcing more is treated as garbage. Set it
        to what the peer declared as soon as it is known (smaller is more robust).

    Attributes
    ----------
    bytes_in, frames, dropped_bytes, bad_header, bad_crc : int
        Counters. Every byte fed is, at any time, in exactly one of: a delivered frame,
        ``dropped_bytes``, or :attr:`pending`.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        if not 0 <= max_payload <= 0xFFFF:
            raise ValueError(f"frame parser: max_payload must be 0..65535, got {max_payload}")
        self.max_payload = int(max_payload)
        self._buf = bytearray()
        self.bytes_in = 0
        self.frames = 0
        self.frame_bytes = 0
        self.dropped_bytes = 0
        self.bad_header = 0
        self.bad_crc = 0

    @property
    def pending(self) -> int:
        """Bytes buffered: the start of a frame not yet complete."""
        return len(self._buf)

    def stats(self) -> dict[str, int]:
        return {"bytes_in": self.bytes_in, "frames": self.frames, "dropped_bytes": self.dropped_bytes,
                "bad_header": self.bad_header, "bad_crc": self.bad_crc, "pending": self.pending}

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they completed, in order."""
        buf = self._buf
        buf += data
        self.bytes_in += len(data)
        out: list[Frame] = []
        n = len(buf)
        pos = 0
        sync0 = SYNC[0]
        maxp = self.max_payload
        with memoryview(buf) as mv:
            while True:
                i = buf.find(SYNC, pos)
                if i < 0:
                    keep = 1 if n > pos and buf[n - 1] == sync0 else 0   # half a sync word
                    self.dropped_bytes += n - keep - pos
                    pos = n - keep
                    break
                self.dropped_bytes += i - pos
                pos = i
                if n - i < HEADER_SIZE:
                    break
                ftype, flags, seq, length = _HEAD.unpack_from(buf, i + 2)
                if length > maxp or crc8(mv[i + 2:i + 8]) != buf[i + 8]:
                    self.bad_header += 1
                    self.dropped_bytes += 1
                    pos = i + 1
                    continue
                end = i + HEADER_SIZE + length + TRAILER_SIZE
                if n < end:
                    break
                if crc16(mv[i + 2:end - 2]) != _CRC.unpack_from(buf, end - 2)[0]:
                    self.bad_crc += 1
                    self.dropped_bytes += 1
                    pos = i + 1
                    continue
                out.append(Frame(ftype, flags, seq, bytes(mv[i + HEADER_SIZE:end - 2])))
                self.frame_bytes += end - i
                pos = end
        del buf[:pos]
        self.frames += len(out)
        return out

    def flush(self) -> list[Frame]:
        """Declare the end of the stream: a frame still incomplete never will be. Its
        first byte is dropped and the rest searched again, so frames it overlapped are
        still returned."""
        out = self.feed(b"")
        while self._buf:
            del self._buf[0]
            self.dropped_bytes += 1
            out += self.feed(b"")
        return out

    def reset(self) -> None:
        """Forget buffered bytes (counted as dropped), e.g. after reopening the port."""
        self.dropped_bytes += len(self._buf)
        self._buf.clear()

