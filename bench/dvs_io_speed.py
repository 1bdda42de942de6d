"""DVS event I/O speed: the run store's raw ``events`` stream, AEDAT4 write/read, the DV network path.

Everything runs side by side in one process (timings on these 2-core machines drift between
runs: compare the ratios). Each figure is the median of ``--repeats`` runs; CPU time
(``process_time``, all threads) is printed beside the wall time for the store, whose cost is
mostly zarr's per-chunk-file overhead in its I/O threads.

1. **Store append** (the issue's target: >= 5 M events/s): ``RunStore.append`` of blocks of
   10 rows whose raw stream ``events`` has columns t int64, x, y uint16, p bool, for blocks of
   10 k, 100 k and 1 M events; then the bench's own path, ``CoalescingWriter`` (it merges the
   blocks queued behind a slow write), fed 100 k-event blocks as fast as they come. Reference:
   the same columns appended to four flat files with ``ndarray.tofile`` (the disk's ceiling).
2. **AEDAT4 write** of N events at 346 x 260: labbench's ``write_aedat4`` (faery's encoder
   from numpy) against faery's own stream API and dv-processing's ``MonoCameraWriter`` (whose
   ``EventStore`` must be built event by event with ``push_back``: timed apart).
3. **AEDAT4 read** of that file: labbench's ``read_aedat4`` and ``AEDAT4Player`` (10 ms slices),
   against dv-processing's bare ``MonoCameraRecording`` loop, ``aedat.Decoder``, faery and
   ``tonic.io.read_aedat4``. Every reader's events are checked equal to what was written.
4. **DV network path**: ``serve_events`` (child process, loopback) -> ``NetworkSource``,
   every event checked, against a bare ``dv.io.NetworkReader`` loop on the same kind of server.

Usage:  python bench/dvs_io_speed.py [--events 2000000] [--repeats 3] [--no-write]
Results: bench/results/dvs_io_speed.json and .md (a section for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from labbench.drivers.dvs.aedat4 import AEDAT4Player, read_aedat4, write_aedat4
from labbench.drivers.dvs.dv_camera import NetworkSource, serve_events
from labbench.drivers.dvs.events import make_events, to_columns

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "dvs_io_speed.json"
OUT_MD = ROOT / "bench" / "results" / "dvs_io_speed.md"
W, H = 346, 260


def events(n: int, seed: int = 0) -> np.ndarray:
    """n events at ~1 M events/s on a 346 x 260 sensor."""
    rng = np.random.default_rng(seed)
    return make_events(np.cumsum(rng.integers(0, 3, n)), rng.integers(0, W, n), rng.integers(0, H, n),
                       rng.random(n) < 0.5)


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus))


# -- 1. the store ---------------------------------------------------------------------------
def _new_store(tmp: Path):
    from labbench.store import RunStore

    path = Path(tempfile.mkdtemp(dir=tmp)) / "r.zarr"
    store = RunStore(path, "", {"protocol_name": "dvs_io_speed"})
    store.add_device("dvs", spec={"n_inputs": 1, "n_features": 4}, describe={"driver": "dvs"}, n_outputs=1,
                     dtype="float32", chunk_rows=100)
    return store, path


ROWS = {"inputs": np.zeros((10, 1), np.float32), "features": np.zeros((10, 4), np.float32),
            "targets": np.zeros((10, 1)), "phase": np.zeros(10, np.int8)}


def store_append(tmp: Path, block: int, total: int, repeats: int) -> dict:
    from labbench.store import RunReader

    cols = to_columns(events(block))
    n_blocks = max(1, total // block)
    paths = []

    def run():
        store, path = _new_store(tmp)
        for _ in range(n_blocks):
            store.append("dvs", **ROWS, raw={"events": cols})
        store.finish("complete")
        paths.append(path)

    wall, cpu = timed(run, repeats)
    got = RunReader(paths[-1]).raw("dvs", "events")
    assert len(got["t"]) == block * n_blocks and np.array_equal(got["x"][-block:], cols["x"])
    return {"what": f"RunStore.append, {block:,} events/block", "events": block * n_blocks,
            "meps": block * n_blocks / wall / 1e6, "cpu_meps": block * n_blocks / cpu / 1e6}


def coalesced_append(tmp: Path, block: int, total: int, repeats: int) -> dict:
    from labbench.engine.coalescing_writer import CoalescingWriter

    cols = to_columns(events(block))
    n_blocks = max(1, total // block)
    appends = []

    def run():
        store, _ = _new_store(tmp)
        with CoalescingWriter(store) as w:
            for _ in range(n_blocks):
                w.put("dvs", **ROWS, raw={"events": cols})
        appends.append(w.appends)
        store.finish("complete")

    wall, cpu = timed(run, repeats)
    return {"what": f"CoalescingWriter, {block:,} events/block ({int(np.median(appends))} appends "
                    f"for {n_blocks} blocks)", "events": block * n_blocks,
            "meps": block * n_blocks / wall / 1e6, "cpu_meps": block * n_blocks / cpu / 1e6}


def paced_coalesced(tmp: Path, block: int, rate: float, seconds: float) -> dict:
    """A producer putting ``block``-event blocks at ``rate`` events/s for ``seconds`` through the
    bench's CoalescingWriter: does the store keep up (how far behind is it when production ends)?"""
    from labbench.engine.coalescing_writer import CoalescingWriter
    from labbench.store import RunReader

    cols = to_columns(events(block))
    n_blocks = round(rate * seconds / block)
    store, path = _new_store(tmp)
    t0 = time.perf_counter()
    with CoalescingWriter(store) as w:
        for i in range(n_blocks):
            wait = t0 + (i + 1) * block / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            w.put("dvs", **ROWS, raw={"events": cols})
        produced = time.perf_counter()
        w.flush()
    done = time.perf_counter()
    store.finish("complete")
    assert len(RunReader(path).raw("dvs", "events")["t"]) == block * n_blocks
    return {"what": f"CoalescingWriter fed {block:,}-event blocks at {rate / 1e6:g} M events/s for {seconds:g} s "
                    f"({w.appends} appends for {n_blocks} blocks; {done - produced:.2f} s behind at the end)",
            "events": block * n_blocks, "meps": block * n_blocks / (done - t0) / 1e6, "lag_s": done - produced}


def flat_files(tmp: Path, block: int, total: int, repeats: int) -> dict:
    cols = to_columns(events(block))
    n_blocks = max(1, total // block)

    def run():
        d = Path(tempfile.mkdtemp(dir=tmp))
        files = {c: open(d / c, "ab") for c in cols}  # noqa: SIM115
        for _ in range(n_blocks):
            for c, v in cols.items():
                v.tofile(files[c])
                files[c].flush()
        for f in files.values():
            f.close()

    wall, cpu = timed(run, repeats)
    return {"what": f"reference: 4 flat files, ndarray.tofile, {block:,} events/block", "events": block * n_blocks,
            "meps": block * n_blocks / wall / 1e6, "cpu_meps": block * n_blocks / cpu / 1e6}


# -- 2./3. AEDAT4 ---------------------------------------------------------------------------
def aedat4_write(tmp: Path, ev: np.ndarray, repeats: int) -> tuple[list[dict], Path]:
    import dv_processing as dv
    import faery

    n = len(ev)
    ours = tmp / "labbench.aedat4"
    rows = []
    wall, _ = timed(lambda: write_aedat4(ours, ev, (W, H)), repeats)
    rows.append({"what": "labbench write_aedat4 (faery encoder, LZ4)", "meps": n / wall / 1e6})

    fa = np.empty(n, faery.EVENTS_DTYPE)
    fa["t"], fa["x"], fa["y"], fa["on"] = ev["t"], ev["x"], ev["y"], ev["p"]
    wall, _ = timed(lambda: faery.events_stream_from_array(fa, dimensions=(W, H)).to_file(tmp / "faery.aedat4"),
                    repeats)
    rows.append({"what": "faery events_stream_from_array(...).to_file (LZ4)", "meps": n / wall / 1e6})

    m = min(n, 500_000)  # push_back is slow: time it on a part
    store = dv.EventStore()

    def build():
        nonlocal store
        store = dv.EventStore()
        for t, x, y, p in zip(ev["t"][:m].tolist(), ev["x"][:m].tolist(), ev["y"][:m].tolist(),
                              ev["p"][:m].tolist(), strict=True):
            store.push_back(t, x, y, p)

    wall_build, _ = timed(build, 1)
    rows.append({"what": f"dv-processing EventStore.push_back per event ({m:,} events)", "meps": m / wall_build / 1e6})

    def write_dv():
        writer = dv.io.MonoCameraWriter(str(tmp / "dv.aedat4"), dv.io.MonoCameraWriter.EventOnlyConfig("dv", (W, H)))
        writer.writeEvents(store)
        del writer

    wall_write, _ = timed(write_dv, repeats)
    rows.append({"what": "dv-processing MonoCameraWriter.writeEvents (store already built, LZ4)",
                 "meps": m / wall_write / 1e6})
    rows.append({"what": "dv-processing from numpy: push_back + MonoCameraWriter",
                 "meps": m / (wall_build + wall_write) / 1e6})
    got, _ = read_aedat4(tmp / "dv.aedat4")
    assert np.array_equal(got, ev[:m]), "dv-processing's file differs"
    return rows, ours


def aedat4_read(path: Path, ev: np.ndarray, repeats: int) -> list[dict]:
    import aedat
    import dv_processing as dv
    import faery
    import tonic.io

    n, rows, out = len(ev), [], {}

    def ours():
        out["ours"] = read_aedat4(path)[0]

    def player():
        p = AEDAT4Player(path)
        out["player"] = np.concatenate([p.read_until(e) for e in range(10_000, p.duration_us + 10_000, 10_000)])

    def dv_bare():
        rec = dv.io.MonoCameraRecording(str(path))
        parts = []
        while (b := rec.getNextEventBatch()) is not None:
            parts.append(b.numpy())
        out["dv"] = np.concatenate(parts)

    def aedat_dec():
        out["aedat"] = np.concatenate([pk["events"] for pk in aedat.Decoder(path) if "events" in pk])

    def faery_read():
        out["faery"] = faery.events_stream_from_file(path).to_array()

    def tonic_read():
        out["tonic"] = tonic.io.read_aedat4(str(path))

    for name, fn, what in [("ours", ours, "labbench read_aedat4 (dv MonoCameraRecording -> EVENT_DTYPE)"),
                           ("player", player, "labbench AEDAT4Player, 10 ms slices"),
                           ("dv", dv_bare, "dv-processing MonoCameraRecording loop, numpy() only"),
                           ("aedat", aedat_dec, "aedat.Decoder"),
                           ("faery", faery_read, "faery events_stream_from_file(...).to_array()"),
                           ("tonic", tonic_read, "tonic.io.read_aedat4 (aedat inside)")]:
        wall, _ = timed(fn, repeats)
        rows.append({"what": what, "meps": n / wall / 1e6})
    rel = ev.copy()
    rel["t"] -= ev["t"][0]
    assert np.array_equal(out["ours"], ev) and np.array_equal(out["player"], rel)
    assert np.array_equal(out["dv"]["timestamp"], ev["t"]) and np.array_equal(out["dv"]["x"], ev["x"])
    for k in ("aedat", "faery", "tonic"):
        assert np.array_equal(out[k]["t"], ev["t"]) and np.array_equal(out[k]["on"], ev["p"]), k
        assert np.array_equal(out[k]["x"], ev["x"]) and np.array_equal(out[k]["y"], ev["y"]), k
    return rows


# -- 4. the DV network path -----------------------------------------------------------------
def network(ev: np.ndarray) -> list[dict]:
    import dv_processing as dv

    n, rows = len(ev), []
    with serve_events(ev, (W, H), after="close") as srv:
        t0 = time.perf_counter()
        src = NetworkSource("127.0.0.1", srv.port)
        parts = []
        try:
            for e in range(10_000, 10**12, 10_000):
                parts.append(src.read_until(e))
        except ConnectionError:
            pass
        wall = time.perf_counter() - t0
        got = np.concatenate(parts)
        got["t"] += src.t0_us
        assert np.array_equal(got, ev), "network path lost or changed events"
    rows.append({"what": "serve_events -> NetworkSource.read_until (10 ms slices), every event checked",
                 "meps": n / wall / 1e6})
    with serve_events(ev, (W, H), after="close") as srv:
        t0 = time.perf_counter()
        reader, got_n = dv.io.NetworkReader("127.0.0.1", srv.port), 0
        while True:
            b = reader.getNextEventBatch()
            if b is None:
                if not reader.isRunning():
                    break
                time.sleep(0.001)
                continue
            got_n += len(b.numpy())
        wall = time.perf_counter() - t0
        del reader
        assert got_n == n
    rows.append({"what": "same server -> bare dv.io.NetworkReader loop, numpy() only", "meps": n / wall / 1e6})
    return rows


def _cpu(row: dict) -> str:
    return f"{row['cpu_meps']:.2f}" if "cpu_meps" in row else "–"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    ev = events(args.events, seed=1)
    with tempfile.TemporaryDirectory(prefix="dvs_io_speed-") as d:
        tmp = Path(d)
        total = args.events
        store = [store_append(tmp, 10_000, min(total, 500_000), args.repeats),
                 store_append(tmp, 100_000, total, args.repeats),
                 store_append(tmp, 1_000_000, max(total, 4_000_000), args.repeats),
                 coalesced_append(tmp, 100_000, total, args.repeats),
                 paced_coalesced(tmp, 100_000, 5e6, 4.0), paced_coalesced(tmp, 100_000, 8e6, 4.0),
                 flat_files(tmp, 100_000, total, args.repeats)]
        write, path = aedat4_write(tmp, ev, args.repeats)
        read = aedat4_read(path, ev, args.repeats)
    net = network(ev[: min(len(ev), 1_000_000)])
    meta = {"python": platform.python_version(), "machine": platform.machine(), "events": args.events,
            "repeats": args.repeats, "sensor": [W, H]}
    lines = ["## DVS event I/O (bench/dvs_io_speed.py)", "",
             f"{args.events:,} events at {W}x{H}, median of {args.repeats}; M events/s (higher is better).", ""]
    for title, rows in [("Store append (target >= 5 M events/s)", store), ("AEDAT4 write", write),
                        ("AEDAT4 read", read), ("DV network path (loopback)", net)]:
        lines += [f"### {title}", "", "| what | M events/s | CPU M events/s |", "|---|---:|---:|"]
        lines += [f"| {r['what']} | {r['meps']:.2f} | {_cpu(r)} |" for r in rows]
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        OUT_JSON.write_text(json.dumps({"meta": meta, "store": store, "aedat4_write": write, "aedat4_read": read,
                                        "network": net}, indent=1))
        OUT_MD.write_text(text + "\n")


if __name__ == "__main__":
    main()
