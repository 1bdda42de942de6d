"""The eDVS4337 over a serial line: wire formats, the firmware emulator on a pty, the EDVSBoard driver.

- wire: exact bytes of known events in every format (``!E1`` delta bytes, big-endian
  timestamps), hypothesis round trips for every format of both firmware numberings, chunking
  at random boundaries equal to decoding whole, ASCII garbage skipped to the byte with every
  event recovered, random-byte garbage resynchronised, 16/24-bit timestamps unwrapped;
- the emulator alone: banner after ``R``, echo and the echo of ``!U0``, replies, pacing to
  the link's byte budget with counted drops;
- the real driver against the emulator: the exact bytes it sends at open and close, every
  format end to end (decoded == what the emulator sent), the eDVS128 numbering chosen from
  ``??E``, and the faults: garbage, silence (DeviceTimeout, events kept), unplug (reconnect
  with a gap, or DeviceDisconnected), ``E-`` after an error and after Ctrl-C.

Every blocking path has a timeout; an alarm fails any test that runs over 30 s.
"""

from __future__ import annotations

import io
import itertools
import threading
import time

import numpy as np
import pytest

pytest.importorskip("serial")
import serial
from conftest import fail_after
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from labbench.drivers.dvs.edvs_board import (
    DeviceDisconnected,
    DeviceTimeout,
    EDVSBoard,
    ProtocolMismatch,
    choose_formats,
    parse_format_listing,
)
from labbench.drivers.dvs.edvs_emulator import (
    DEFAULT_BIASES,
    EDVSEmulator,
    poisson_source,
    serve_edvs,
    start_edvs,
)
from labbench.drivers.dvs.edvs_wire import (
    EDVS128_FORMATS,
    EDVS4337_FORMATS,
    MAX_DELTA_US,
    DecoderState,
    EDVSDecoder,
    WireFormat,
    decode,
    encode,
    wire_format,
)
from labbench.drivers.dvs.events import make_events

ALL_FORMATS = sorted({*EDVS4337_FORMATS.values(), *EDVS128_FORMATS.values()}, key=lambda f: (f.delta, f.ts_bytes))
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _no_hang():
    with fail_after(30):
        yield


def random_events(n: int, seed: int = 0, max_step: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(0, max_step, n))
    return make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n).astype(bool))


def expected(ev: np.ndarray, fmt: WireFormat, t_chunk: int = 0) -> np.ndarray:
    out = ev.copy()
    if fmt.ts_bytes == 0:
        out["t"] = t_chunk
    return out


# -- wire: exact bytes -----------------------------------------------------------------------
def test_known_event_in_every_format_byte_for_byte():
    ev = make_events([0x01234567], [5], [7], [True])
    assert encode(ev, wire_format(0)) == bytes([0x87, 0x85])
    assert encode(ev, wire_format(2)) == bytes([0x87, 0x85, 0x45, 0x67])              # 16-bit, big-endian
    assert encode(ev, wire_format(3)) == bytes([0x87, 0x85, 0x23, 0x45, 0x67])
    assert encode(ev, wire_format(4)) == bytes([0x87, 0x85, 0x01, 0x23, 0x45, 0x67])
    off = make_events([0], [127], [0], [False])
    assert encode(off, wire_format(0)) == bytes([0x80, 0x7F])
    assert wire_format(1, "edvs128") == wire_format(2)                                 # the shifted numbering
    assert wire_format(3, "edvs128") == wire_format(4)


@pytest.mark.parametrize(("delta", "ts"), [(0, [0x80]), (127, [0xFF]), (128, [0x01, 0x80]), (16383, [0x7F, 0xFF]),
                                           (16384, [0x01, 0x00, 0x80]), (MAX_DELTA_US, [0x7F, 0x7F, 0xFF])])
def test_delta_timestamp_bytes(delta, ts):
    ev = make_events([1000 + delta], [1], [2], [False])
    data = encode(ev, wire_format(1), t_prev=1000)
    assert data == bytes([0x82, 0x01, *ts])
    out, _ = decode(data, wire_format(1), DecoderState(t_last=1000), final=True)
    assert out["t"].tolist() == [1000 + delta]


def test_encoder_refuses_addresses_the_edvs_does_not_have():
    with pytest.raises(ValueError, match=r"event 1 has x=128, y=3; the eDVS addresses 0..127"):
        encode(make_events([0, 1], [1, 128], [2, 3], [True, True]), wire_format(2))
    with pytest.raises(ValueError, match=r"format !E4 does not exist on the edvs128 firmware"):
        wire_format(4, "edvs128")


# -- wire: properties ------------------------------------------------------------------------
@HYP
@given(n=st.integers(0, 400), seed=st.integers(0, 2**31), fmt=st.sampled_from(ALL_FORMATS),
       cuts=st.lists(st.integers(0, 3000), max_size=12))
def test_round_trip_and_any_chunking_equal_whole(n, seed, fmt, cuts):
    ev = random_events(n, seed, max_step=60_000)
    data = encode(ev, fmt)
    whole, st_whole = decode(data, fmt, t_chunk_us=7)
    assert np.array_equal(whole, expected(ev, fmt, 7)) and st_whole.skipped == 0 and st_whole.carry == b""
    dec = EDVSDecoder(fmt)
    parts = [dec.feed(data[a:b], t_chunk_us=7) for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)])]
    parts.append(dec.feed(b"", t_chunk_us=7, final=True))
    assert np.array_equal(np.concatenate(parts), whole)


@HYP
@given(seed=st.integers(0, 2**31), fmt=st.sampled_from(ALL_FORMATS),
       inserts=st.lists(st.tuples(st.integers(0, 200), st.binary(min_size=1, max_size=40)), max_size=5),
       cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_ascii_garbage_is_skipped_to_the_byte_and_every_event_recovered(seed, fmt, inserts, cuts):
    """Replies and echoes (bytes < 0x80) between events: skipped and counted exactly."""
    ev = random_events(200, seed)
    chunks = [encode(ev[i:i + 1], fmt, int(ev["t"][i - 1]) if i else 0) for i in range(len(ev))] + [b""]
    garbage = 0
    for at, junk in inserts:
        junk = bytes(b & 0x7F for b in junk)
        chunks[at] = junk + chunks[at]
        garbage += len(junk)
    data = b"".join(chunks)
    dec = EDVSDecoder(fmt)
    bounds = [0, *sorted(cuts), len(data)]
    out = np.concatenate([dec.feed(data[a:b], t_chunk_us=3) for a, b in itertools.pairwise(bounds)]
                         + [dec.feed(b"", t_chunk_us=3, final=True)])
    assert np.array_equal(out, expected(ev, fmt, 3))
    assert dec.skipped == garbage


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.label)
def test_random_garbage_resyncs_and_recovers_the_events_after_it(fmt):
    rng = np.random.default_rng(7)
    for trial in range(20):
        ev = random_events(300, seed=trial)
        a = encode(ev[:100], fmt)
        b = encode(ev[100:], fmt, int(ev["t"][99]))
        junk = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        out, state = decode(a + junk + b, fmt, t_chunk_us=0, final=True)
        want = expected(ev, fmt)
        assert np.array_equal(out[:100], want[:100]), trial                   # before: exact
        assert all(np.array_equal(out[-190:][k], want[-190:][k]) for k in "xyp"), trial   # the tail exactly
        if fmt.ts_bytes and not fmt.delta:
            # timestamps too, up to whole wraps: junk decoded as an event can look like a wrap (documented)
            period = 1 << (8 * fmt.ts_bytes)
            assert np.array_equal(out[-190:]["t"] % period, want[-190:]["t"] % period), trial
            assert len(np.unique(out[-190:]["t"] - want[-190:]["t"])) == 1, trial
        assert state.skipped >= 1 or len(out) > 300, trial                  # the junk was skipped or decoded
        assert state.carry == b""


def test_16_and_24_bit_timestamps_are_unwrapped():
    t = np.arange(0, 40_000_000, 30_000)                                   # 40 s: 610 16-bit wraps, 2 24-bit
    ev = make_events(t, t % 128, (t // 7) % 128, t % 3 == 0)
    for f in (2, 3):
        out, state = decode(encode(ev, wire_format(f)), wire_format(f), final=True)
        assert np.array_equal(out["t"], t)
        assert state.wraps == (t[-1] >> (8 * wire_format(f).ts_bytes))


# -- the emulator alone ----------------------------------------------------------------------
@pytest.fixture
def emulators():
    made: list[EDVSEmulator] = []

    def make(source=None, **kw):
        emu = start_edvs(source, **kw)
        made.append(emu)
        return emu

    yield make
    for emu in made:
        emu.close()
        assert not emu.errors, emu.errors


def _read_until(port, token: bytes, timeout: float = 3.0) -> bytes:
    buf, end = b"", time.monotonic() + timeout
    while token not in buf and time.monotonic() < end:
        buf += port.read(4096)
    return buf


def test_emulator_banner_echo_and_replies(emulators):
    emu = emulators()
    with serial.serial_for_url(emu.path, baudrate=12_000_000, rtscts=True, timeout=0.05) as port:
        port.write(b"R\n")
        assert b"eDVS4337" in _read_until(port, b"for help\n")
        port.write(b"!U0\n")
        assert _read_until(port, b"!U0\n") == b"!U0\n"                   # the echo of !U0 itself still arrives
        port.write(b"?V\n")
        assert _read_until(port, b"\n").startswith(b"eDVS4337 firmware")   # no echo any more
        port.write(b"!B3=123\n!B12=1\n")
        assert _read_until(port, b"\n") == b"?? bias out of range (register 0..11, value 0..16777215): !B12=1\n"
        port.write(b"!BF\n?B3\n")
        assert _read_until(port, b"\n") == b"-B3=123\n"
        port.write(b"frobnicate\n")
        assert _read_until(port, b"\n") == b"?? unknown command: frobnicate\n"
    assert emu.flushed_biases[3] == 123 and emu.flushed_biases[0] == DEFAULT_BIASES[0]


def test_emulator_paces_to_the_link_budget_and_counts_drops(emulators):
    """100 kbaud carries 10 kB/s; 50k events/s of 4 bytes (200 kB/s) cannot all go."""
    emu = emulators(poisson_source(50_000, seed=3), baud=100_000, fifo_bytes=1024)
    with serial.serial_for_url(emu.path, timeout=0.02) as port:
        port.write(b"R\n")
        _read_until(port, b"for help\n")
        port.write(b"!U0\n!E2\nE+\n")
        t0, got = time.monotonic(), 0
        while time.monotonic() - t0 < 0.5:
            got += len(port.read(65536))
        elapsed = time.monotonic() - t0
    assert emu.stats["dropped_events"] > 0
    assert got <= 10_000 * elapsed + 1024 + 2 * 10_000 * emu.tick_s + 64      # never faster than the line


# -- the driver against the emulator ---------------------------------------------------------
@pytest.fixture
def rig(emulators):
    """rig(source, board_kw, **emulator_kw) -> (emulator, board); the board closed after."""
    boards: list[EDVSBoard] = []

    def make(source=None, board_kw=None, **kw):
        emu = emulators(poisson_source(20_000, seed=1) if source is None else source, keep_sent=True, **kw)
        board = EDVSBoard(emu.path, wire_log=True, **{"timeout_s": 0.6, **(board_kw or {})})
        boards.append(board)
        return emu, board

    yield make
    for b in boards:
        b.close()


def _wait_for(cond, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while not cond() and time.monotonic() < end:
        time.sleep(0.01)
    return cond()


def test_open_and_close_bytes_on_the_wire(rig):
    emu, board = rig(board_kw={"fmt": 3, "biases": {"PR": 217, 0: 1992, "diff": 13125}})
    board.open()
    assert board.wire_log == [b"R\n", b"!U0\n", b"??E\n", b"?V\n", b"!B0=1992\n", b"!B9=13125\n", b"!B11=217\n",
                              b"!BF\n", b"!E3\n", b"!ET0\n", b"E+\n"]
    board.close()
    assert board.wire_log[-1] == b"E-\n" and len(board.wire_log) == 12
    assert _wait_for(lambda: emu.commands[-1:] == ["E-"])
    assert emu.commands == ["R", "!U0", "??E", "?V", "!B0=1992", "!B9=13125", "!B11=217", "!BF", "!E3", "!ET0",
                            "E+", "E-"]
    assert emu.flushed_biases[9] == 13125 and emu.fmt_cmd == 3 and not emu.streaming
    d = board.describe()
    assert d["format"] == "24-bit" and d["format_source"] == "??E" and "eDVS4337" in d["banner"]


@pytest.mark.parametrize("fmt", [0, 1, 2, 3, 4])
def test_every_format_end_to_end(rig, fmt):
    emu, board = rig(board_kw={"fmt": fmt})
    board.open()
    r = board.read(until_us=250_000)
    board.close()
    sent = emu.sent_events()
    n = len(r.events)
    assert n > 1000 and not r.gaps and r.info["skipped_bytes"] == 0
    assert np.all(np.diff(r.events["t"]) >= 0) and r.events["t"][-1] < 250_000
    if fmt == 0:        # no timestamps on the wire: the host's arrival times, monotone
        assert all(np.array_equal(r.events[k], sent[:n][k]) for k in "xyp")
    else:
        assert np.array_equal(r.events, sent[:n])
    rest = board._pending
    assert len(rest) == 0 or rest["t"][0] >= 250_000


def test_edvs128_numbering_is_chosen_from_the_format_listing(rig):
    emu, board = rig(firmware="edvs128", board_kw={"fmt": 1, "expect": None})
    board.open()
    assert board.wire == WireFormat(2) and board.format_source == "??E"
    r = board.read(until_us=150_000)
    assert len(r.events) > 500 and np.array_equal(r.events, emu.sent_events()[:len(r.events)])


def test_format_choice_falls_back_on_the_version():
    assert choose_formats("", "eDVS128 V1.2")[1] == "?V: eDVS128"
    assert choose_formats("garbled", "EDVS-4337 V2")[0] == EDVS4337_FORMATS
    assert choose_formats("", "")[1] == "default: eDVS4337"
    assert parse_format_listing(" !E1 - 4 bytes per event, 16 bit timestamp\n !E2   - 5 bytes\n") == \
        {1: WireFormat(2), 2: WireFormat(3)}


def test_wrong_board_and_missing_format_are_named(rig):
    _, board = rig(firmware="edvs128", board_kw={"banner_timeout_s": 0.5})
    with pytest.raises(ProtocolMismatch, match=r"no banner containing 'eDVS4337' within 0.5 s of 'R'"):
        board.open()
    _, board = rig(board_kw={"fmt": 7})
    with pytest.raises(ProtocolMismatch, match=r"fmt 7 \(!E7\) is not offered; the board lists !E\[0, 1, 2, 3, 4\]"):
        board.open()


def test_garbage_in_the_stream_is_skipped_counted_and_nothing_lost(rig):
    emu, board = rig(board_kw={"fmt": 2})
    board.open()
    r1 = board.read(until_us=100_000)
    junk = b"?? unknown command: hello\n" * 3
    emu.inject_garbage(junk)
    r2 = board.read(until_us=250_000)
    got = np.concatenate([r1.events, r2.events])
    assert r2.info["skipped_bytes"] == len(junk) and r2.info["resyncs"] == 1
    assert np.array_equal(got, emu.sent_events()[:len(got)])


def test_silence_raises_device_timeout_with_the_events_kept(rig):
    emu, board = rig(board_kw={"fmt": 4, "timeout_s": 0.4})
    board.open()
    r1 = board.read(until_us=100_000)
    emu.silence()
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"no byte for 0\.\d+ s \(timeout_s = 0.4 s, \?V probe unanswered\)") as ei:
        board.read(duration_s=5.0)
    assert time.monotonic() - t0 < 3.0 and board.stats["probes"] == 1
    got = np.concatenate([r1.events, ei.value.events])
    assert len(ei.value.events) > 0 and np.array_equal(got, emu.sent_events()[:len(got)])
    emu.silence(False)
    board.close()                                  # E- is sent after the error, and arrives
    assert _wait_for(lambda: "E-" in emu.commands)


def test_a_quiet_scene_is_not_silence(rig):
    """No events for longer than timeout_s: the ?V probe's answer keeps the board alive."""
    _emu, board = rig(source=make_events([], [], [], []), board_kw={"timeout_s": 0.3})
    board.open()
    r = board.read(duration_s=1.0)
    assert len(r.events) == 0 and board.stats["probes"] >= 2


def test_unplugged_board_reconnects_and_the_gap_is_recorded(rig):
    emu, board = rig(board_kw={"fmt": 2, "reconnect_s": 3.0})
    board.open()
    r1 = board.read(until_us=100_000)
    emu.drop(down_s=0.3)
    r2 = board.read(until_us=board.now_us + 800_000)
    assert board.stats["reconnects"] == 1 and len(r2.gaps) == 1
    g0, g1 = r2.gaps[0]
    assert 100_000 <= g0 < g1 and g1 - g0 >= 250_000
    t = np.concatenate([r1.events["t"], r2.events["t"]])
    assert np.all(np.diff(t) >= 0)
    assert not ((t > g0) & (t < g1)).any() and (t >= g1).sum() > 1000      # streaming again after the gap
    assert emu.commands.count("R") == 2 and emu.commands.count("E+") == 2


def test_unplugged_for_good_raises_device_disconnected_with_the_events(rig):
    emu, board = rig(board_kw={"fmt": 2, "reconnect_s": 0.4})
    board.open()
    r1 = board.read(until_us=100_000)
    emu.drop(down_s=60)
    with pytest.raises(DeviceDisconnected, match=r"connection lost .*; not back within 0.4 s") as ei:
        board.read(duration_s=5.0)
    got = np.concatenate([r1.events, ei.value.events])
    assert len(got) > 0 and np.array_equal(got, emu.sent_events()[:len(got)])


def test_ctrl_c_in_a_with_block_still_sends_e_minus(rig):
    emu, board = rig()
    with pytest.raises(KeyboardInterrupt), board:
        board.read(duration_s=0.05)
        raise KeyboardInterrupt
    assert board.wire_log[-1] == b"E-\n"
    assert _wait_for(lambda: emu.commands[-1:] == ["E-"] and not emu.streaming)


def test_serve_edvs_prints_the_path_and_serves_until_stopped():
    out, stop = io.StringIO(), threading.Event()
    th = threading.Thread(target=serve_edvs, kwargs={"out": out, "stop": stop}, daemon=True)
    th.start()
    assert _wait_for(lambda: out.getvalue().endswith("\n"))
    path = out.getvalue().strip()
    with EDVSBoard(path, fmt=2) as board:
        assert len(board.read(until_us=100_000).events) > 100
    stop.set()
    th.join(10)
    assert not th.is_alive()
