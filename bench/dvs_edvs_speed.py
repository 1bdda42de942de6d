"""eDVS wire decoding: labbench's compiled parser against a straightforward per-byte Python parser.

Both decode the same byte stream (``--events`` random events on 128 x 128 with realistic
inter-event times, encoded in each format ``!E0``..``!E4``) in 64 KiB chunks, as the driver
reads them, in one process, side by side; the peer is the loop a first driver would write
(one Python step per byte, sync on the MSB, E2 unwrap with +0x10000 as libcaer). Reported:
events/s of each and the ratio (median of ``--repeats``). The outputs are checked equal.

``--pty`` adds the end-to-end rate: the firmware emulator (unpaced, ``baud=None``) streams
a Poisson source through a real pty to :class:`~labbench.drivers.dvs.edvs_board.EDVSBoard`.

Usage:  python bench/dvs_edvs_speed.py [--events 1000000] [--repeats 3] [--pty]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from labbench.drivers.dvs.edvs_wire import EDVSDecoder, WireFormat, encode, wire_format
from labbench.drivers.dvs.events import make_events

CHUNK = 65536


def python_parser(data: bytes, fmt: WireFormat) -> list[tuple[int, int, int, bool]]:
    """The peer: one Python step per byte."""
    out, buf = [], []
    t_last, last_raw, wrap = 0, -1, 0
    n = 2 + fmt.ts_bytes
    for i in range(0, len(data), CHUNK):
        for b in data[i:i + CHUNK]:
            if not buf and b < 0x80:
                continue
            buf.append(b)
            if fmt.delta:
                if len(buf) < 3 or buf[-1] < 0x80:
                    continue
                d = 0
                for c in buf[2:]:
                    d = (d << 7) | (c & 0x7F)
                t_last += d
            else:
                if len(buf) < n:
                    continue
                if fmt.ts_bytes:
                    raw = 0
                    for c in buf[2:]:
                        raw = (raw << 8) | c
                    if raw < last_raw:
                        wrap += 1 << (8 * fmt.ts_bytes)
                    last_raw = raw
                    t_last = wrap + raw
            out.append((t_last, buf[1] & 0x7F, buf[0] & 0x7F, buf[1] >= 0x80))
            buf = []
    return out


def ours(data: bytes, fmt: WireFormat) -> np.ndarray:
    dec = EDVSDecoder(fmt)
    parts = [dec.feed(data[i:i + CHUNK], t_chunk_us=0) for i in range(0, len(data), CHUNK)]
    return np.concatenate(parts)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def pty_rate(seconds: float, fmt: int) -> dict:
    from labbench.drivers.dvs.edvs_board import EDVSBoard
    from labbench.drivers.dvs.edvs_emulator import poisson_source, start_edvs

    emu = start_edvs(poisson_source(3_000_000, seed=0), baud=None, fifo_bytes=1 << 22)
    try:
        with EDVSBoard(emu.path, fmt=fmt, timeout_s=2.0) as board:
            t0 = time.perf_counter()
            r = board.read(duration_s=seconds)
            wall = time.perf_counter() - t0
        return {"fmt": fmt, "events": len(r.events), "wall_s": wall, "events_per_s": len(r.events) / wall,
                "emulator_dropped": emu.stats["dropped_events"], "tx_overflow_bytes": emu.tx_overflow}
    finally:
        emu.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--peer-events", type=int, default=200_000, help="events for the (slow) Python peer")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pty", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.events
    ev = make_events(np.cumsum(rng.exponential(5.0, n)).astype(np.int64), rng.integers(0, 128, n),
                     rng.integers(0, 128, n), rng.integers(0, 2, n).astype(bool))
    ours(encode(ev[:100], wire_format(2)), wire_format(2))          # load the compiled decoder
    print(f"{'format':8} {'bytes/ev':>8} {'labbench Mev/s':>15} {'python Mev/s':>13} {'ratio':>7}")
    for f in range(5):
        fmt = wire_format(f)
        data = encode(ev, fmt)
        peer_data = encode(ev[:args.peer_events], fmt)
        t_ours, out = timed(lambda: ours(data, fmt), args.repeats)       # noqa: B023
        t_peer, ref = timed(lambda: python_parser(peer_data, fmt), 1)     # noqa: B023
        k = args.peer_events
        assert len(out) == n and len(ref) == k
        if f:
            assert np.array_equal(out["t"][:k], [r[0] for r in ref])
        assert np.array_equal(out["x"][:k], [r[1] for r in ref]) and np.array_equal(out["y"][:k], [r[2] for r in ref])
        r_ours, r_peer = n / t_ours / 1e6, k / t_peer / 1e6
        print(f"!E{f} {fmt.label:6} {fmt.size:>6} {r_ours:15.1f} {r_peer:13.2f} {r_ours / r_peer:6.0f}x")
    if args.pty:
        for f in (0, 2):
            print("pty end to end:", pty_rate(1.0, f))


if __name__ == "__main__":
    main()
