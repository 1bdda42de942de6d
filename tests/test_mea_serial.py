"""Serial MEA boards: framing, protocol, firmware emulator on a pty, and the SerialBoard driver.

- framing: CRC check values, hypothesis fuzzing of the parser (random bytes, frames in
  garbage, corrupted bytes, arbitrary chunking);
- wire: the exact bytes of the handshake and of a window with one pulse (PyMeasure style,
  against a scripted port), and the example conversation of docs/serial-protocol.md;
- end to end over a real pty against the firmware emulator serving a deterministic fake
  culture: data equal to the culture driven directly, garbage in the stream, bad CRCs,
  lost ACKs, a dropped connection (reconnect, gap), a silent device (DeviceTimeout within
  the heartbeat timeout), a device gone for good, streaming mode.

Every blocking path has a timeout; an alarm fails any test that runs over 30 s.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("serial")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from labbench.drivers.mea.firmware import MEAFirmware, emulate, start_emulator  # noqa: E402
from labbench.drivers.mea.layout import ElectrodeLayout  # noqa: E402
from labbench.drivers.mea.serial_board import (DeviceDisconnected, DeviceTimeout, ProtocolMismatch,  # noqa: E402
                                               SerialBoard, SerialBoardError)
from labbench.drivers.mea.serial_codec import (ACK, CONFIGURE, HELLO, NACK, RUN_WINDOW, START, ErrorCode,  # noqa: E402
                                               Msg, ProtocolError, encode_pulses, parse_samples, parse_spikes,
                                               spikes_payload)
from labbench.drivers.mea.stimulation import BiphasicPulse, ScheduledPulse  # noqa: E402
from labbench.drivers.transport.framing import (FLAG_FROM_DEVICE, MAX_PAYLOAD, FrameParser, crc8,  # noqa: E402
                                                crc16, encode_frame)
from conftest import fail_after  # noqa: E402
from mea_fakes import FakeCulture, ScriptedPort  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "serial-protocol.md"
PULSE = BiphasicPulse(10.0, 200.0)
HB_TIMEOUT = 0.5


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail, rather than hang, a test that waits on a silent device."""
    with fail_after(30):
        yield


@pytest.fixture
def rig():
    """rig(**firmware_kwargs) -> (emulator, board); both closed after the test."""
    made = []

    def make(culture=None, board_kw=None, **kw):
        kw = {"max_payload": 256, "heartbeat_ms": 50, **kw}
        emu = start_emulator(culture or FakeCulture(rate_hz=50), **kw)
        board = SerialBoard(emu.path, heartbeat_timeout_s=HB_TIMEOUT, ack_timeout_s=0.1, wire_log=True,
                            **(board_kw or {}))
        made.append((emu, board))
        return emu, board

    yield make
    for emu, board in made:
        board.close()
        emu.close()
        assert not emu.errors, emu.errors


class Faults:
    """One-shot actions on chosen device messages ("SPIKES", "WINDOW_DONE", "ACK:STIMULATE",
    ...), counted from 1, run in the emulator's writing thread just before the message."""

    def __init__(self, emu: MEAFirmware) -> None:
        self.counts: Counter = Counter()
        self.rules: list[tuple[str, int, object]] = []
        emu.tx_hook = self

    def at(self, key: str, n: int, action) -> Faults:
        self.rules.append((key, n, action))
        return self

    def __call__(self, data: bytes, kind: str | None) -> None:
        keys = [kind]
        if kind in ("ACK", "NACK"):
            keys.append(f"{kind}:{Msg(data[11]).name}")
        for key in keys:
            self.counts[key] += 1
            for k, n, action in self.rules:
                if k == key and self.counts[key] == n:
                    action()


def schedule(k: int) -> list[ScheduledPulse]:
    """Pulses of window k: none, or one or two pulses on a few electrodes."""
    if k % 3 == 0:
        return []
    return [ScheduledPulse(0.01 * (k % 3), (9, 10), PULSE), ScheduledPulse(0.05, (20 + k % 5,), PULSE)]


def assert_same(w, r) -> None:
    np.testing.assert_array_equal(w.spikes.electrode, r.spikes.electrode)
    np.testing.assert_array_equal(w.spikes.time_s, r.spikes.time_s)
    assert w.start_s == pytest.approx(r.start_s, abs=1e-12)
    assert not w.gaps


# ---------------------------------------------------------------------------------------------
# framing
# ---------------------------------------------------------------------------------------------

def test_crc_check_values():
    assert crc8(b"123456789") == 0xF4
    assert crc16(b"123456789") == 0x29B1


def test_encode_frame_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="type 256"):
        encode_frame(256, 0)
    with pytest.raises(ValueError, match="5000 bytes exceeds max_payload 4096"):
        encode_frame(1, 0, bytes(5000))


frames_st = st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF),
                               st.binary(max_size=300)), min_size=1, max_size=8)


def feed_in_chunks(parser: FrameParser, data: bytes, cuts: list[int]) -> list:
    out, last = [], 0
    for c in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        out += parser.feed(data[last:c])
        last = c
    return out + parser.flush()


@settings(max_examples=200, deadline=None, database=None)
@given(frames_st, st.lists(st.integers(0, 10_000), max_size=6))
def test_round_trip_any_chunking(frames, cuts):
    wire = b"".join(encode_frame(t, s, p, f) for t, f, s, p in frames)
    parser = FrameParser()
    got = feed_in_chunks(parser, wire, cuts)
    assert [(f.type, f.flags, f.seq, f.payload) for f in got] == [(t, f, s, p) for t, f, s, p in frames]
    assert parser.dropped_bytes == parser.bad_crc == parser.bad_header == 0


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000), st.lists(st.integers(0, 5000), max_size=5), st.integers(0, MAX_PAYLOAD))
def test_random_bytes_never_crash_and_every_byte_is_accounted(data, cuts, max_payload):
    parser = FrameParser(max_payload)
    got = feed_in_chunks(parser, data, cuts)
    assert parser.pending == 0
    assert parser.bytes_in == len(data) == parser.dropped_bytes + parser.frame_bytes
    assert all(len(f.payload) <= max_payload for f in got)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames_st, st.lists(st.binary(max_size=400), min_size=9, max_size=9),
       st.lists(st.integers(0, 20_000), max_size=6))
def test_frames_embedded_in_garbage_are_all_recovered(frames, garbage, cuts):
    wire = bytearray(garbage[0])
    for (t, f, s, p), g in zip(frames, garbage[1:]):
        wire += encode_frame(t, s, p, f) + g
    parser = FrameParser(300)
    got = feed_in_chunks(parser, bytes(wire), cuts)
    assert [(f.type, f.flags, f.seq, f.payload) for f in got] == [(t, f, s, p) for t, f, s, p in frames]
    assert parser.dropped_bytes == sum(map(len, garbage[:len(frames) + 1]))


@settings(max_examples=200, deadline=None, database=None)
@given(frames_st, st.integers(0, 7), st.integers(0, 10_000), st.integers(1, 255))
def test_a_corrupted_byte_loses_that_frame_only(frames, which, offset, xor):
    encoded = [encode_frame(t, s, p, f) for t, f, s, p in frames]
    which %= len(encoded)
    bad = bytearray(encoded[which])
    bad[offset % len(bad)] ^= xor
    parser = FrameParser()
    got = parser.feed(b"".join(encoded[:which]) + bytes(bad) + b"".join(encoded[which + 1:])) + parser.flush()
    want = [(t, f, s, p) for i, (t, f, s, p) in enumerate(frames) if i != which]
    assert [(f.type, f.flags, f.seq, f.payload) for f in got] == want


def test_impossible_length_is_rejected_without_waiting():
    parser = FrameParser(max_payload=64)
    big = encode_frame(1, 0, bytes(100), max_payload=MAX_PAYLOAD)   # a valid header announcing 100 bytes
    good = encode_frame(2, 1, b"ok")
    got = parser.feed(big[:9] + good)
    assert [(f.type, f.payload) for f in got] == [(2, b"ok")]
    assert parser.bad_header == 1 and parser.dropped_bytes == 9


def test_parser_throughput():
    """Bulk parsing: 1 MB of 1 KB frames, with garbage between them."""
    rng = np.random.default_rng(0)
    frames = [encode_frame(0x85, i, rng.bytes(1000), FLAG_FROM_DEVICE) for i in range(1000)]
    wire = b"".join(f + rng.bytes(16) for f in frames)
    parser = FrameParser()
    t = time.perf_counter()
    n = sum(len(parser.feed(wire[k:k + 4096])) for k in range(0, len(wire), 4096))
    dt = time.perf_counter() - t
    assert n == 1000 and parser.dropped_bytes == 16_000
    assert len(wire) / dt > 5e6, f"{len(wire) / dt / 1e6:.1f} MB/s"


# ---------------------------------------------------------------------------------------------
# the wire, byte for byte
# ---------------------------------------------------------------------------------------------

HANDSHAKE = [
    ("a5 5a 01 00 00 00 04 00 7d 01 00 00 00 c8 87",
     "a5 5a 81 01 00 00 48 00 54 00 00 01 00 01 00 00 00 40 00 08 08 a8 61 00 00 00 01 64 00 1b 00 00 00 00 00 00 00 "
     "00 00 00 00 ff ff ff ff 00 00 00 10 4c 42 45 4d 55 2d 30 30 30 31 00 00 00 00 00 00 6c 61 62 62 65 6e 63 68 2d "
     "6d 65 61 2d 65 6d 75 33 90"),
    ("a5 5a 06 00 01 00 00 00 e0 94 07", "a5 5a 82 01 01 00 04 00 9e 01 00 06 00 86 8d"),
    ("a5 5a 02 00 02 00 10 00 29 00 00 00 00 00 00 00 00 7e 7f ff ff ff ff ff 7e c3 1a",
     "a5 5a 82 01 02 00 04 00 a4 02 00 02 00 9a bd"),
    ("a5 5a 03 00 03 00 04 00 15 01 00 00 00 ce 11", "a5 5a 82 01 03 00 04 00 b2 03 00 03 00 e3 da"),
]
WINDOW = [
    ("a5 5a 05 00 04 00 24 00 2f 00 00 00 00 00 00 00 00 01 00 00 00 32 00 00 00 e8 03 e8 03 c8 00 c8 00 00 00 01 00 "
     "00 06 00 00 00 00 00 00 45 87", "a5 5a 82 01 04 00 04 00 d0 04 00 05 00 9c cd"),
    ("a5 5a 07 00 05 00 10 00 c6 01 00 00 00 fa 00 00 00 00 00 00 00 00 00 00 00 61 1e",
     "a5 5a 82 01 05 00 04 00 c6 05 00 07 00 b6 ff"
     "a5 5a 85 01 06 00 24 00 8d 01 00 00 00 00 00 02 00 00 00 00 00 00 00 00 00 fa 00 00 00 00 00 00 00 af 00 00 00 "
     "09 00 af 00 00 00 0a 00 d2 18"
     "a5 5a 86 01 07 00 1c 00 b1 01 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 fa 00 00 00 00 00 00 00 01 00 01 00 "
     "81 55"),
]
CLOSE = [
    ("a5 5a 06 00 06 00 00 00 82 a4 2c", "a5 5a 82 01 08 00 04 00 38 06 00 06 00 96 f9"),
    ("a5 5a 04 00 07 00 00 00 c6 56 ee", "a5 5a 82 01 09 00 04 00 2e 07 00 04 00 bc cb"),
]


def scripted(*parts):
    return ScriptedPort([(bytes.fromhex(w), bytes.fromhex(r)) for part in parts for w, r in part])


def test_handshake_wire_bytes():
    port = scripted(HANDSHAKE, [("a5 5a 06 00 04 00 00 00 ae c9 8d", "a5 5a 82 01 04 00 04 00 d0 04 00 06 00 cf 98"),
                                ("a5 5a 04 00 05 00 00 00 ea 3b 4f", "a5 5a 82 01 05 00 04 00 c6 05 00 04 00 e5 aa")])
    board = SerialBoard("scripted://", port_factory=lambda url: port, wire_log=True)
    info = board.open()
    assert info["serial_number"] == "LBEMU-0001" and info["firmware"] == "1.0.0" and info["mode"] == "stepped"
    assert info["n_electrodes"] == 64 and info["sampling_rate_hz"] == 25000 and info["max_payload"] == 256
    assert [b.hex(" ") for b in board.wire_log] == [w for w, _ in HANDSHAKE]
    board.close()
    assert port.step == len(port.script) and not port.is_open


def test_window_with_one_pulse_wire_bytes():
    port = scripted(HANDSHAKE, WINDOW, CLOSE)
    board = SerialBoard("scripted://", port_factory=lambda url: port, wire_log=True)
    board.open()
    w = board.record(0.01, [ScheduledPulse(0.002, (9, 10), PULSE)])
    board.close()
    assert [b.hex(" ") for b in board.wire_log] == [w for w, _ in HANDSHAKE + WINDOW + CLOSE]
    assert port.step == len(port.script)
    np.testing.assert_array_equal(w.spikes.electrode, [9, 10])
    np.testing.assert_allclose(w.spikes.time_s, [175 / 25000] * 2)
    assert (w.start_s, w.duration_s, w.gaps) == (0.0, 0.01, [])
    assert w.info["pulses_delivered"] == 1 and w.info["complete"]


def test_doc_example_is_this_conversation():
    lines = re.findall(r"^([HD][<>]) ([0-9a-f ]+)$", DOC.read_text(), flags=re.M)
    host = [h for d, h in lines if d == "H>"]
    assert host == [w for w, _ in HANDSHAKE + WINDOW + CLOSE]
    device = "".join(h for d, h in lines if d == "D<")
    assert device.replace(" ", "") == "".join(r for _, r in HANDSHAKE + WINDOW + CLOSE).replace(" ", "")
    parser = FrameParser()
    for d, h in lines:
        (frame,) = parser.feed(bytes.fromhex(h))
        assert frame.from_device == (d == "D<")
    assert parser.dropped_bytes == 0


def test_pulses_that_do_not_fit_the_protocol_are_refused_naming_the_field():
    ok = ScheduledPulse(0.0, (9,), PULSE)
    with pytest.raises(ValueError, match=r"pulse 1 .*phase_us = 150.5 us; the protocol carries whole microseconds"):
        encode_pulses([ok, ScheduledPulse(0.0, (9,), BiphasicPulse(10.0, 150.5))], 25000, 64)
    with pytest.raises(ValueError, match=r"amplitude_ua = 700.0 uA does not fit"):
        encode_pulses([ScheduledPulse(0.0, (9,), BiphasicPulse(700.0, 20.0))], 25000, 64)
    with pytest.raises(ValueError, match=r"electrode 64 does not exist on a 64-electrode board"):
        encode_pulses([ScheduledPulse(0.0, (64,), PULSE)], 25000, 64)
    with pytest.raises(ValueError, match=r"outside the window's 0..249 ticks"):
        encode_pulses([ScheduledPulse(0.01, (9,), PULSE)], 25000, 64, n_ticks=250)


def test_malformed_spikes_frames_are_named():
    good = spikes_payload(1, 0, 100, 200, np.array([110, 150]), np.array([3, 4]))
    assert parse_spikes(good, 64).ticks.tolist() == [110, 150]
    with pytest.raises(ProtocolError, match=r"count = 2, so the payload should be 24 \+ 2 x 6 = 36 bytes; it is 35"):
        parse_spikes(good[:-1], 64, seq=7)
    with pytest.raises(ProtocolError, match=r"spike 1 is on electrode 4; the board has 4"):
        parse_spikes(good, 4)
    with pytest.raises(ProtocolError, match="sorted and within the frame's span of 100 ticks"):
        parse_spikes(spikes_payload(1, 0, 100, 200, np.array([150, 110]), np.array([3, 4])), 64)
    with pytest.raises(ProtocolError, match="SAMPLES frame"):
        parse_samples(b"\0" * 16 + b"\0", 3)


# ---------------------------------------------------------------------------------------------
# end to end over a pty
# ---------------------------------------------------------------------------------------------

def test_stepped_windows_match_the_culture_driven_directly(rig):
    emu, board = rig()
    info = board.open()
    assert info["mode"] == "stepped" and info["serial_number"] == "LBEMU-0001"
    ref = FakeCulture(rate_hz=50)
    lat = []
    for k in range(6):
        w = board.record(0.1, schedule(k))
        assert_same(w, ref.record(0.1, schedule(k)))
        assert w.info["frames"] > 1 and w.info["complete"]
        lat.append(w.info["latency_s"])
    assert board.time_s == pytest.approx(0.6)
    # the pulses reached the culture exactly as asked (times on the tick grid)
    asked = [(round(k * 0.1 + p.t_s, 6), p.electrodes, p.pulse.to_dict()) for k in range(6) for p in schedule(k)]
    got = [(round(p.t_s, 6), p.electrodes, p.pulse.to_dict()) for p in emu.delivered]
    assert got == asked
    assert np.median(lat) < 0.05


def test_garbage_in_the_stream_loses_nothing(rig):
    emu, board = rig()
    garbage = np.random.default_rng(7).bytes(10_000)
    Faults(emu).at("SPIKES", 20, lambda: emu.inject(garbage))     # in the middle of window 2
    board.open()
    ref = FakeCulture(rate_hz=50)
    for k in range(5):
        w = board.record(0.1, schedule(k))
        assert_same(w, ref.record(0.1, schedule(k)))
    assert emu.injected_bytes == 10_000
    assert board.parser.dropped_bytes == 10_000
    assert board.stats["resends"] == 0


def test_bad_crcs_are_dropped_counted_and_recovered(rig):
    emu, board = rig()
    (Faults(emu).at("SPIKES", 10, lambda: emu.corrupt())            # window 1: two SPIKES frames
     .at("SPIKES", 13, lambda: emu.corrupt())
     .at("WINDOW_DONE", 3, lambda: emu.corrupt())                    # window 2's WINDOW_DONE
     .at("ACK:STIMULATE", 3, lambda: emu.corrupt())                  # a lost ACK: the host sends again
     .at("ACK:RUN_WINDOW", 5, lambda: emu.corrupt()))               # a lost ACK, the frames arrive anyway
    board.open()
    ref = FakeCulture(rate_hz=50)
    for k in range(6):
        w = board.record(0.1, schedule(k))
        assert_same(w, ref.record(0.1, schedule(k)))
    assert emu.corrupted == 5
    assert board.parser.bad_crc == 5
    assert board.stats["resends"] == 2 and board.stats["retransmits"] == 1
    assert emu.stats["duplicates"] == 1                 # the repeated STIMULATE was not executed twice
    assert len(emu.delivered) == sum(len(schedule(k)) for k in range(6))


def test_dropped_connection_mid_window_reconnects_and_records_the_gap(rig):
    emu, board = rig()
    Faults(emu).at("SPIKES", 20, lambda: emu.drop(0.3))
    board.open()
    ref = FakeCulture(rate_hz=50)
    t = time.monotonic()
    for k in range(5):
        w, r = board.record(0.1, schedule(k)), ref.record(0.1, schedule(k))
        if k != 2:
            assert_same(w, r)
            continue
        assert w.gaps, "the lost span must be a gap"
        (a, b), = w.gaps
        assert w.start_s <= a < b == pytest.approx(w.start_s + 0.1)
        outside = (r.spikes.time_s < a) | (r.spikes.time_s >= b)
        np.testing.assert_array_equal(w.spikes.time_s, r.spikes.time_s[outside])
        np.testing.assert_array_equal(w.spikes.electrode, r.spikes.electrode[outside])
        assert len(w.spikes) < len(r.spikes) and not w.info["complete"] and w.info["reconnects"] == 1
    assert time.monotonic() - t < 5
    assert board.stats["reconnects"] == 1 and emu.drops == 1


def test_connection_lost_before_the_window_ran_runs_it_again(rig):
    emu, board = rig()
    Faults(emu).at("ACK:STIMULATE", 2, lambda: emu.drop(0.2))     # window 2: the ACK never leaves
    board.open()
    ref = FakeCulture(rate_hz=50)
    for k in range(4):
        assert_same(board.record(0.1, schedule(k)), ref.record(0.1, schedule(k)))
    assert board.stats["reconnects"] == 1
    asked = [(round(k * 0.1 + p.t_s, 6), p.electrodes) for k in range(4) for p in schedule(k)]
    assert [(round(p.t_s, 6), p.electrodes) for p in emu.delivered] == asked     # each pulse exactly once


@pytest.mark.parametrize("when", ["before", "mid-window"])
def test_silent_device_raises_within_the_heartbeat_timeout(rig, when):
    emu, board = rig()
    board.open()
    board.record(0.1, [])
    if when == "before":
        emu.silence()
    else:
        Faults(emu).at("SPIKES", 3, lambda: emu.silence())
    t = time.monotonic()
    with pytest.raises(DeviceTimeout, match="stopped answering"):
        board.record(0.1, schedule(1))
    assert time.monotonic() - t < HB_TIMEOUT + 0.25
    with pytest.raises(SerialBoardError, match="close\\(\\) and open\\(\\) again"):
        board.record(0.1, [])           # the window's fate is unknown: no silent continuation
    t = time.monotonic()
    board.close()                       # safe, bounded, after a failure
    assert time.monotonic() - t < 2 * HB_TIMEOUT + 0.5
    emu.tx_hook = None
    emu.silence(False)                  # the firmware comes back: a new session works
    board.open()
    assert board.time_s == 0.0 and not board.record(0.1, []).gaps


def test_hung_firmware_that_recovers_with_reconnect_on_timeout(rig):
    emu, board = rig(board_kw={"reconnect_on_timeout": True, "reconnect_attempts": 6})
    board.open()
    ref = FakeCulture(rate_hz=50)
    assert_same(board.record(0.1, []), ref.record(0.1, []))

    def hang():
        emu.silence()
        threading.Timer(HB_TIMEOUT + 0.4, emu.silence, args=(False,)).start()

    Faults(emu).at("SPIKES", 3, hang)          # window 1 runs, but its frames go nowhere
    w = board.record(0.1, schedule(1))
    assert_same(w, ref.record(0.1, schedule(1)))   # the board kept the window: RESEND recovers it all
    assert board.stats["reconnects"] == 1 and w.info["resends"] >= 1


def test_device_gone_for_good_gives_up_after_bounded_attempts(rig):
    emu, board = rig(board_kw={"reconnect_attempts": 3, "backoff_s": 0.05})
    board.open()
    board.record(0.05, [])
    emu.drop(60.0)
    t = time.monotonic()
    with pytest.raises(DeviceDisconnected, match="3 reconnection attempts"):
        board.record(0.05, [])
    assert time.monotonic() - t < 2.0
    board.close()


def test_heartbeats_keep_a_slow_window_alive(rig):
    emu, board = rig(FakeCulture(rate_hz=50, compute_s=3 * HB_TIMEOUT))
    board.open()
    w = board.record(0.1, [])
    assert len(w.spikes) > 0 and not w.gaps and w.info["latency_s"] > 3 * HB_TIMEOUT


class BrokenCulture(FakeCulture):
    def record(self, duration_s, pulses):
        raise RuntimeError("simulator exploded")


def test_a_firmware_fault_is_reported_not_waited_for(rig):
    emu, board = rig(BrokenCulture())
    board.open()
    t = time.monotonic()
    with pytest.raises(SerialBoardError, match="internal fault: RuntimeError: simulator exploded"):
        board.record(0.1, [])
    assert time.monotonic() - t < 1.0
    assert len(emu.errors) == 1
    emu.errors.clear()


def test_version_and_electrode_mismatch_are_refused(rig):
    _, board = rig(protocol_version=2)
    with pytest.raises(ProtocolMismatch, match="speaks serial protocol version 2; this driver speaks version 1"):
        board.open()
    emu, _ = rig()
    small = SerialBoard(emu.path, layout=ElectrodeLayout(rows=4, cols=4, unusable=()), heartbeat_timeout_s=0.5)
    with pytest.raises(ProtocolMismatch, match="the device has 64 electrodes; the layout expects 16"):
        small.open()
    small.close()


def test_a_port_that_cannot_be_opened_is_named(tmp_path):
    board = SerialBoard(str(tmp_path / "ttyNOPE"))
    with pytest.raises(DeviceDisconnected, match="cannot open .*ttyNOPE"):
        board.open()
    board.close()


def test_a_port_that_echoes_is_named():
    board = SerialBoard("loop://", heartbeat_timeout_s=0.5)
    with pytest.raises(SerialBoardError, match="the port echoes what we write"):
        board.open()
    board.close()


def test_close_sends_stop_stim_and_stop(rig):
    emu, board = rig()
    board.open()
    board.record(0.1, schedule(1))
    culture = emu.backend
    stops = culture.stops
    board.close()
    parser = FrameParser()
    sent = [f.type for chunk in board.wire_log for f in parser.feed(chunk)]
    assert sent[-2:] == [Msg.STOP_STIM, Msg.STOP]
    assert culture.stops == stops + 1
    board.close()                       # idempotent


def test_firmware_nacks_name_the_problem():
    import serial

    emu = start_emulator(FakeCulture(), heartbeat_ms=50)
    port = serial.serial_for_url(emu.path, timeout=0.05)
    parser = FrameParser()

    def ask(seq, mtype, payload=b""):
        port.write(encode_frame(mtype, seq, payload))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            for f in parser.feed(port.read(4096)):
                if f.type != Msg.HEARTBEAT:
                    return f
        raise AssertionError("no reply")

    try:
        port.write(np.random.default_rng(3).bytes(10_000))            # garbage first: no harm done
        assert ask(0, Msg.HELLO, HELLO.pack(1, 0)).type == Msg.INFO
        r = ask(1, Msg.RUN_WINDOW, RUN_WINDOW.pack(1, 250, 0))
        assert r.type == Msg.NACK and NACK.unpack_from(r.payload)[3] == ErrorCode.BAD_STATE
        assert b"RUN_WINDOW needs START(stepped)" in r.payload
        assert ask(2, Msg.START, START.pack(1, 0, 0)).type == Msg.ACK
        r = ask(3, Msg.RUN_WINDOW, RUN_WINDOW.pack(1, 250, 99))
        assert NACK.unpack_from(r.payload)[3] == ErrorCode.TICK_MISMATCH
        assert b"starts at tick 99; the board is at tick 0" in r.payload
        r = ask(4, Msg.CONFIGURE, CONFIGURE.pack(0, 0, 0, 0))
        assert NACK.unpack_from(r.payload)[3] == ErrorCode.BAD_LENGTH and b"expected 16" in r.payload
        r = ask(5, 0x42)
        assert NACK.unpack_from(r.payload)[3] == ErrorCode.UNKNOWN_TYPE
        r = ask(5, 0x42)                                             # a retransmission: same answer
        assert r.type == Msg.NACK and emu.stats["duplicates"] == 1
        assert ACK.size == 4 and emu._parser.dropped_bytes == 10_000
    finally:
        port.close()
        emu.close()
    assert not emu.errors


def test_streaming_mode_real_time_with_a_gap_after_a_drop(rig):
    emu, board = rig(board_kw={"mode": "streaming"}, stream_chunk_s=0.005)
    assert board.open()["mode"] == "streaming"
    pulses = [ScheduledPulse(0.02, (9,), PULSE)]
    windows = [board.record(0.05, pulses if k % 2 else []) for k in range(4)]
    for a, b in zip(windows, windows[1:]):
        assert b.start_s == pytest.approx(a.start_s + a.duration_s + b.info["skipped_s"], abs=1e-9)
    for w in windows:
        assert not w.gaps and w.info["mode"] == "streaming"
        assert ((w.spikes.time_s >= w.start_s) & (w.spikes.time_s < w.start_s + w.duration_s)).all()
    # each pulse was delivered at the device time the window says
    expected = [round(w.start_s + 0.02, 6) for k, w in enumerate(windows) if k % 2]
    assert [round(p.t_s, 6) for p in emu.delivered] == expected
    emu.drop(0.15)
    lost = [board.record(0.05, []) for _ in range(6)]
    assert any(w.gaps for w in lost) and board.stats["reconnects"] == 1
    assert not lost[-1].gaps


def test_emulate_prints_the_path_and_serves_until_stopped():
    out, stop = io.StringIO(), threading.Event()
    t = threading.Thread(target=emulate, args=(lambda: FakeCulture(),), daemon=True,
                         kwargs={"out": out, "stop": stop, "heartbeat_ms": 50})
    t.start()
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    path = out.getvalue().strip()
    assert path
    board = SerialBoard(path, heartbeat_timeout_s=0.5)
    assert board.open()["model"] == "labbench-mea-emu"
    assert board.record(0.05, []).duration_s == 0.05
    board.close()
    stop.set()
    t.join(timeout=5)
    assert not t.is_alive() and not Path(path).exists()
