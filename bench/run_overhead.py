"""What the run path costs, and whether its memory stays flat in run length.

For each run length (default 10^4, 10^5 and 10^6 steps) a fresh child process runs the
same N=1000 float32 ESN on Mackey-Glass through ``labbench.run`` (its own local Ray, a
device actor, the Zarr store, a ridge trainer actor tailing the store) and reports the
peak resident memory (``ru_maxrss``) of every process of the run: the driver, which is
the store's writer, the device actor and every trainer actor. A fresh process per length
keeps one run's peak from hiding in the next one's. The memory target (issue 18): every
process's peak at 10^6 steps within 10% of its peak at 10^4 steps.

With ``--bare`` the child also runs the bare driver (``EchoStateNetwork.run`` block after
block, nothing stored) first and prints both throughputs and their ratio.

``--compare-pythonpath`` runs every length with a second source tree too (e.g. a frozen
copy of an older commit), labelled "before", and ``--pythonpath`` names the "after" tree
(default: the installed labbench), for before/after comparisons in one session;
``--rounds`` alternates them.

Usage: python bench/run_overhead.py [--steps 10000 100000 1000000] [--units 1000] [--block 2000]
                                    [--bare] [--compare-pythonpath /tmp/before] [--pythonpath /tmp/after]
                                    [--rounds 1]
Writes bench/results/run_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "QT_QPA_PLATFORM": "offscreen"}


def _protocol(steps: int, units: int, block: int, train_fraction: float) -> dict:
    washout = min(1000, steps // 10)
    train = int((steps - washout) * train_fraction)
    test = steps - washout - train
    params = {"units": units, "spectral_radius": 1.25, "leak": 0.3, "input_scaling": 1.0,
              "connectivity": 0.1, "input_connectivity": 0.2, "dtype": "float32", "seed": 0}
    return {
        "protocol": {"name": "run_overhead", "seed": 0},
        "device": {"driver": "esn", "params": params},
        "task": {"name": "mackey_glass"},
        "run": {"washout": washout, "train": train, "test": test, "block": block},
        "readouts": [{"kind": "ridge", "alpha": 1e-6}],
    }


class _Sampler:
    """Every 0.2 s, the resident memory of this process and of its Ray actors (descendants
    named ``ray::<Actor>``), split as /proc/<pid>/status does: RssAnon (private heap),
    RssShmem (shared memory: Ray's object store, mapped into every process that creates or
    reads an object) and RssFile. Keeps each role's peak of each."""

    def __init__(self) -> None:
        import threading

        self.peaks: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.2):
            procs = [("driver_writer", me)]
            try:
                for c in me.children(recursive=True):
                    name = " ".join(c.cmdline()[:1])
                    if name.startswith("ray::") and "Actor" in name:
                        procs.append((name[5:].split()[0].split(".")[0], c))
            except psutil.Error:
                pass
            for role, p in procs:
                try:
                    status = Path(f"/proc/{p.pid}/status").read_text().split("\n")
                except OSError:
                    continue
                fields = {ln.split(":")[0]: float(ln.split()[1]) / 1024 for ln in status
                          if ln.startswith(("VmRSS", "RssAnon", "RssShmem", "RssFile"))}
                peak = self.peaks.setdefault(role, {})
                for k, v in fields.items():
                    peak[k] = max(peak.get(k, 0.0), v)


def _child(args: argparse.Namespace) -> None:
    """One run in this (fresh) process; prints one JSON line."""
    import resource

    import labbench as lb
    from labbench.spec.protocol import from_dict

    steps = args.steps[0]
    proto_dict = _protocol(steps, args.units, args.block, args.train_fraction)
    out: dict = {"steps": steps, "units": args.units, "block": args.block}
    if args.bare:
        proto = from_dict(proto_dict)
        data = proto.task.generate(steps, 0)
        with lb.open_device("esn", n_inputs=1, **proto_dict["device"]["params"]) as esn:
            esn.run(data.inputs[:10])
            esn.reset()
            t0 = time.perf_counter()
            for a in range(0, steps, args.block):
                esn.run(data.inputs[a:a + args.block])
            out["bare_steps_per_s"] = steps / (time.perf_counter() - t0)
        del data
    sampler = _Sampler()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        t0 = time.perf_counter()
        sampler.start()
        run = lb.run(from_dict(proto_dict), store_root=tmp, progress=False)
        sampler.stop()
        out["wall_s"] = time.perf_counter() - t0
    out["sampled_peak_mib"] = sampler.peaks
    t = run.timings
    out.update({
        "bench_steps_per_s": t.get("samples_per_s"),
        "ray_startup_s": t.get("ray_startup_s"), "device_startup_s": t.get("device_startup_s"),
        "stream_s": t.get("stream_s"), "trainers_lag_s": t.get("trainers_lag_s"),
        "evaluation_s": t.get("evaluation_s"),
        "peak_rss_mib": {
            "driver_writer": t.get("writer_peak_rss_mib"),
            "driver_writer_at_exit": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "device": t.get("device_peak_rss_mib"),
            **{f"trainer:{name}": (tt or {}).get("peak_rss_mib") for name, tt in (t.get("trainers") or {}).items()},
        },
        "metrics": run.metrics,
    })
    if "bare_steps_per_s" in out and out["bench_steps_per_s"]:
        out["ratio"] = out["bench_steps_per_s"] / out["bare_steps_per_s"]
    print("RESULT " + json.dumps(out, default=str), flush=True)


def _spawn(args: argparse.Namespace, steps: int, python: str, pythonpath: str | None) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--child", "--steps", str(steps), "--units", str(args.units),
           "--block", str(args.block), "--train-fraction", str(args.train_fraction)]
    if args.bare:
        cmd.append("--bare")
    if args.tmp:
        cmd += ["--tmp", args.tmp]
    env = {**os.environ, **ENV}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, cwd=args.tmp or tempfile.gettempdir())
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["load_avg"] = os.getloadavg()
            return res
    raise RuntimeError(f"child for {steps} steps failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--block", type=int, default=2000)
    ap.add_argument("--train-fraction", type=float, default=0.5)
    ap.add_argument("--bare", action="store_true", help="also time the bare driver (throughput ratio)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--compare-pythonpath", default=None,
                    help="a second source tree (PYTHONPATH) run alternately with this one, labelled 'before'")
    ap.add_argument("--pythonpath", default=None,
                    help="the source tree (PYTHONPATH) labelled 'after' (default: the installed labbench)")
    ap.add_argument("--tmp", default=None, help="where the run stores go (default: the system's temp dir)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "run_overhead.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return

    trees = [("after", args.pythonpath)] if args.compare_pythonpath is None else \
        [("before", args.compare_pythonpath), ("after", args.pythonpath)]
    results: list[dict] = []
    for r in range(args.rounds):
        for steps in args.steps:
            for label, path in (trees if r % 2 == 0 else trees[::-1]):
                res = _spawn(args, steps, sys.executable, path)
                res.update(tree=label, round=r)
                results.append(res)
                peaks = ", ".join(f"{k} {v:.0f}" for k, v in res["peak_rss_mib"].items() if v is not None)
                print(f"[{label}] {steps:>9,} steps  wall {res['wall_s']:.1f} s  peak RSS MiB: {peaks}  "
                      f"load {res['load_avg'][0]:.2f}", flush=True)
                for role, pk in (res.get("sampled_peak_mib") or {}).items():
                    print(f"      sampled {role:14s} " + "  ".join(f"{k} {v:.0f}" for k, v in sorted(pk.items())),
                          flush=True)
    print("\nmedian peak RSS (MiB) [min-max] by tree, steps and process:")
    summary: dict = {}
    for label, _ in trees:
        for steps in args.steps:
            rows = [x for x in results if x["tree"] == label and x["steps"] == steps]
            for proc in rows[0]["peak_rss_mib"]:
                vals = [x["peak_rss_mib"][proc] for x in rows if x["peak_rss_mib"].get(proc) is not None]
                if not vals:
                    continue
                summary.setdefault(label, {}).setdefault(proc, {})[steps] = {
                    "median": statistics.median(vals), "min": min(vals), "max": max(vals)}
                print(f"  {label:6s} {proc:22s} {steps:>9,}: {statistics.median(vals):7.0f} "
                      f"[{min(vals):.0f}-{max(vals):.0f}]")
    lo = min(args.steps)
    for by_proc in summary.values():
        for by in by_proc.values():
            for steps, v in by.items():
                if steps != lo and lo in by:
                    v["vs_smallest"] = v["median"] / by[lo]["median"]
    out = Path(args.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": results, "summary": summary}, indent=2, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    main()
