"""What watching costs: a long N=1000 ESN run with and without the monitor following it.

The same protocol (an N=1000 float32 ESN on NARMA-10, 100,000 steps in blocks of 1000, a
ridge readout trained live) runs through ``labbench.run`` several times in this process,
on one local Ray started once, alternating:

(1) alone;
(2) with the monitor following it: ``labbench monitor STORE --exit-when-done --stats F``
    started in its own process (off-screen Qt, ``QT_QPA_PLATFORM=offscreen``) the moment
    the store exists (``on_store``), exactly as ``labbench run --monitor`` starts it. It
    polls every 50 ms, draws every panel, and writes its frame statistics when the run has
    ended and it has drawn the last row.

(3) with a plain busy loop beside it that uses the same share of a CPU as the monitor did
    in (2), at the same priority (nice 10): how much any process that takes that much CPU
    costs the run on this machine, whatever it does with it.

Reported per repeat and as median [min-max]: the run's throughput (rows per second of
streaming, ``timings['samples_per_s']``) alone and followed, the throughput loss
``1 - followed / alone``, the frames the monitor actually painted per second while the run
was streaming (counted from Qt paint events of the plots' viewport), the median and 95th
percentile time of one refresh (poll the store + update the panels), and the monitor
process's CPU time.

Acceptance (issue 6): loss <= 10% and >= 10 frames per second.

Usage:  python bench/monitor_overhead.py              # 3 repeats, ~2 min
        python bench/monitor_overhead.py --steps 20000 --repeats 1 --no-write   # smoke
Results: bench/results/monitor_overhead.json and .md (a section for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "monitor_overhead.json"
OUT_MD = ROOT / "bench" / "results" / "monitor_overhead.md"
LOSS_TARGET, FPS_TARGET = 0.10, 10.0


def build_protocol(args: argparse.Namespace):
    from labbench.spec.protocol import from_dict

    washout = 1000
    test = args.steps // 5
    return from_dict({
        "protocol": {"name": "monitor_overhead", "seed": 0},
        "device": {"driver": "esn", "params": {"units": args.units, "spectral_radius": 0.9, "input_scaling": 0.1,
                                               "dtype": "float32", "seed": 0}},
        "task": {"name": "narma"},
        "run": {"washout": washout, "train": args.steps - washout - test, "test": test, "block": args.block},
        "readouts": [{"kind": "ridge", "alpha": 1e-6}],
    })


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


_BURN = ("import os, time\nos.nice({nice})\nwhile True:\n    t = time.perf_counter()\n"
         "    while time.perf_counter() - t < {on}: pass\n    time.sleep({off})")


def one_run(proto, store_root: str, *, monitor: bool, interval_ms: int, burn: float = 0.0,
            nice: int = 10) -> dict[str, Any]:
    """One run; with ``monitor`` the monitor follows it, with ``burn`` > 0 a plain busy loop
    (no I/O, no drawing) at the monitor's priority uses that fraction of a CPU meanwhile."""
    import labbench as lb

    burner = None
    if burn > 0:
        period = 0.05
        burner = subprocess.Popen([sys.executable, "-S", "-c", _BURN.format(nice=nice, on=period * burn,
                                                                           off=period * (1 - burn))])
    procs: list[subprocess.Popen] = []
    stats = Path(tempfile.mkstemp(prefix="lbmon_", suffix=".json")[1])
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")

    def on_store(path: Path) -> None:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "labbench.cli", "monitor", str(path), "--exit-when-done", "--stats", str(stats),
             "--interval-ms", str(interval_ms)], env=env, stderr=subprocess.DEVNULL))

    t0 = time.perf_counter()
    try:
        run = lb.run(proto, store_root=store_root, progress=False, on_store=on_store if monitor else None)
    finally:
        if burner is not None:
            burner.kill()
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"monitor": monitor, "wall_s": wall, "rows_per_s": run.timings["samples_per_s"],
                           "stream_s": run.timings["stream_s"], "store": str(run.store)}
    if monitor:
        proc = procs[0]
        cpu = float("nan")
        while proc.poll() is None:   # sample its CPU until it exits (after drawing the last row)
            cpu = _cpu_s(proc.pid)
            time.sleep(0.05)
        s = json.loads(stats.read_text())
        out.update(**{f"monitor_{k}": v for k, v in s.items()}, monitor_rc=proc.returncode, monitor_process_cpu_s=cpu)
        # while rows were arriving: refresh cycles (poll + update) and frames painted per second
        out["refresh_fps"] = s["refreshes_per_s"]
        out["painted_fps"] = s["painted_per_s"]
    stats.unlink(missing_ok=True)
    return out


def summarise(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100_000, help="rows of the run (default 100000)")
    ap.add_argument("--units", type=int, default=1000, help="ESN units (default 1000)")
    ap.add_argument("--block", type=int, default=1000, help="block size (default 1000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--interval-ms", type=int, default=50, help="the monitor's poll period (default 50)")
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    ap.add_argument("--md", type=Path, default=OUT_MD)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from labbench.engine.ray_runtime import ensure_ray

    proto = build_protocol(args)
    startup = ensure_ray()
    root = tempfile.mkdtemp(prefix="lbmon_stores_")
    print(f"{args.steps:,} rows, N={args.units}, blocks of {args.block}; Ray started in {startup:.1f} s", flush=True)
    one_run(build_protocol(argparse.Namespace(**{**vars(args), "steps": 5000})), root, monitor=True,
            interval_ms=args.interval_ms)   # untimed: numba cache, imports, Qt fonts
    repeats = []
    for r in range(args.repeats):
        pair = {}
        for monitor in ([False, True] if r % 2 == 0 else [True, False]):
            res = one_run(proto, root, monitor=monitor, interval_ms=args.interval_ms)
            pair["followed" if monitor else "alone"] = res
            extra = (f"; monitor {res['refresh_fps'] or float('nan'):.1f} refreshes/s, painted "
                     f"{res['painted_fps'] or float('nan'):.1f} frames/s while rows arrived "
                     f"({res['monitor_following_s']:.1f} s), refresh median "
                     f"{1000 * res['monitor_refresh_s_median']:.1f} ms, CPU {res['monitor_process_cpu_s']:.1f} s (start-up {res['monitor_startup_cpu_s']:.1f})"
                     if monitor else "")
            print(f"[{r}] {'followed' if monitor else 'alone   '}: {res['rows_per_s']:,.0f} rows/s "
                  f"(stream {res['stream_s']:.2f} s){extra}", flush=True)
        pair["loss"] = 1.0 - pair["followed"]["rows_per_s"] / pair["alone"]["rows_per_s"]
        # the same CPU share as the monitor took, spent by a busy loop: what any process that
        # uses that much CPU beside the run costs it on this machine
        f = pair["followed"]
        share = min(1.0, f["monitor_process_cpu_s"] / max(f["monitor_wall_s"], 1e-9))
        b = one_run(proto, root, monitor=False, interval_ms=args.interval_ms, burn=share)
        pair["busy_loop"] = {**b, "cpu_share": share}
        pair["busy_loop_loss"] = 1.0 - b["rows_per_s"] / pair["alone"]["rows_per_s"]
        print(f"[{r}] throughput loss {100 * pair['loss']:.1f}%; a busy loop using the same {share:.2f} CPU "
              f"at the same priority: {100 * pair['busy_loop_loss']:.1f}%", flush=True)
        repeats.append(pair)

    stats = {
        "alone_rows_per_s": summarise([p["alone"]["rows_per_s"] for p in repeats]),
        "followed_rows_per_s": summarise([p["followed"]["rows_per_s"] for p in repeats]),
        "loss": summarise([p["loss"] for p in repeats]),
        "busy_loop_loss": summarise([p["busy_loop_loss"] for p in repeats]),
        "monitor_cpu_share": summarise([p["busy_loop"]["cpu_share"] for p in repeats]),
        "painted_fps": summarise([p["followed"]["painted_fps"] for p in repeats]),
        "refresh_fps": summarise([p["followed"]["refresh_fps"] for p in repeats]),
        "blocks_per_s": summarise([p["followed"]["rows_per_s"] / args.block for p in repeats]),
        "refresh_ms_median": summarise([1000 * p["followed"]["monitor_refresh_s_median"] for p in repeats]),
        "refresh_ms_p95": summarise([1000 * p["followed"]["monitor_refresh_s_p95"] for p in repeats]),
        "monitor_cpu_s": summarise([p["followed"]["monitor_process_cpu_s"] for p in repeats]),
        "monitor_wall_s": summarise([p["followed"]["monitor_wall_s"] for p in repeats]),
    }
    accept = {"loss_median": stats["loss"]["median"], "fps_median": stats["refresh_fps"]["median"],
              "pass_loss": stats["loss"]["median"] <= LOSS_TARGET,
              "pass_fps": stats["refresh_fps"]["median"] >= FPS_TARGET,
              "every_row_drawn": all(p["followed"]["monitor_rows"] == {"esn": args.steps} for p in repeats)}
    import labbench
    import pyqtgraph
    import ray
    from pyqtgraph.Qt import QtCore

    result = {"benchmark": "monitor_overhead", "command": "python bench/monitor_overhead.py " + " ".join(sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                          "pyqtgraph": pyqtgraph.__version__, "qt": QtCore.qVersion(),
                          "binding": pyqtgraph.Qt.QT_LIB, "labbench": labbench.__version__},
              "config": {k: v for k, v in vars(args).items() if k not in ("out", "md")},
              "stats": stats, "acceptance": accept, "repeats": repeats}

    def fmt(k: str, scale: float = 1.0, nd: int = 1, unit: str = "") -> str:
        s = stats[k]
        return f"{scale * s['median']:,.{nd}f}{unit} [{scale * s['min']:,.{nd}f}–{scale * s['max']:,.{nd}f}]"

    md = [
        "## The live monitor: what watching a run costs (`bench/monitor_overhead.py`) — issue 6", "",
        f"An N={args.units} float32 ESN on NARMA-10, {args.steps:,} rows in blocks of {args.block}, a ridge readout "
        "trained live, run through `labbench.run` alone and with `labbench monitor --exit-when-done` following "
        "it in its own process (off-screen Qt, as `labbench run --monitor` starts it; polls every "
        f"{args.interval_ms} ms and draws every panel: signals, 128-unit feature heatmap, metric history). "
        f"One Ray for all runs; alone and followed alternate; {args.repeats} repeats, median [min–max]. "
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, pyqtgraph {pyqtgraph.__version__}, "
        f"{pyqtgraph.Qt.QT_LIB} (Qt {QtCore.qVersion()}).", "",
        "```bash", "python bench/monitor_overhead.py", "```", "",
        "| | median [min–max] |", "|---|---|",
        f"| run alone (rows/s) | {fmt('alone_rows_per_s', nd=0)} |",
        f"| run followed by the monitor (rows/s) | {fmt('followed_rows_per_s', nd=0)} |",
        f"| throughput loss | {fmt('loss', 100, 1, ' %')} |",
        f"| CPU the monitor used, share of one CPU over its life (start-up included) | {fmt('monitor_cpu_share', nd=2)} |",
        f"| throughput loss with a plain busy loop using that CPU share instead (same priority, nice 10) | "
        f"{fmt('busy_loop_loss', 100, 1, ' %')} |",
        f"| refreshes per second while rows arrive (poll + redraw when new rows came) | {fmt('refresh_fps')} |",
        f"| frames painted per second while rows arrive | {fmt('painted_fps')} |",
        f"| blocks the run committed per second (a frame can only show a new block) | {fmt('blocks_per_s')} |",
        f"| one refresh: poll the store + update the panels, median | {fmt('refresh_ms_median', unit=' ms')} |",
        f"| one refresh, 95th percentile | {fmt('refresh_ms_p95', unit=' ms')} |",
        f"| monitor process CPU time | {fmt('monitor_cpu_s', unit=' s')} over {fmt('monitor_wall_s', unit=' s')} |",
        "",
        f"**Acceptance** (≤ 10 % loss, ≥ 10 refreshes/s): loss {'PASS' if accept['pass_loss'] else 'FAIL'} "
        f"({100 * accept['loss_median']:.1f} %), frame rate {'PASS' if accept['pass_fps'] else 'FAIL'} "
        f"({accept['fps_median']:.1f}/s); the monitor read and drew every row: "
        f"{'yes' if accept['every_row_drawn'] else 'NO'}.", ""]
    print("\n".join(md))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
        args.md.write_text("\n".join(md))
        print(f"wrote {args.out} and {args.md}")


if __name__ == "__main__":
    main()
