"""The fixed cost of a small run (issue 18): wall time of ``labbench run protocols/mackey_glass.toml``.

Three ways, in paired rounds (each round runs every way once, in a rotating order, so the
machine's load drifts over all of them alike):

- ``base``: the code of a baseline copy (``--baseline DIR``: a directory holding a ``labbench``
  package with ``drivers`` and ``readouts`` inside, e.g. ``git archive`` of an older commit),
  imported through ``PYTHONPATH``; it starts a fresh local Ray, as before issue 18;
- ``fresh``: this checkout (or ``--checkout DIR``, a copy laid out like the baseline's), no
  shared Ray recorded: the run starts its own local Ray;
- ``shared``: the same code, with a local Ray left running by ``labbench ray start`` (started
  once before the rounds, stopped after them): the run connects to it, and starts its actors
  cold (``LABBENCH_WARM=0``), as before the warm pool;
- ``warm``: the same Ray, and the run takes a warm device and trainer actor of its pool
  (``engine/warm_pool.py``). Every run is followed by a pause (``--settle``, default 4 s) so that
  the pool's refill after a warm run does not land in the next run.

Each run is the command a user types, in a fresh process (``python -m labbench.cli run ...
--quiet --json``), timed from outside; its run summary gives the split (start-up, stream,
drain, evaluation). ``--profile`` adds, per way, the phases outside the run itself: the
imports of the CLI (timed in a separate process) and the exit (the rest: Ray's shutdown).

    python bench/run_startup.py --rounds 5 --baseline /tmp/o_base   # -> bench/results/run_startup.json

With other work going on in the same tree (e.g. a kernel whose numba cache is recompiled after
every edit), compare two frozen copies that differ only in the change measured: ``--baseline``
and ``--checkout``. ``--warmup`` runs each way once first, unrecorded (numba's caches).

Processes run from a neutral working directory so that the checkout's own ``labbench`` is not
imported by accident from the current directory.
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

from cli_run import timed_cli_run  # bench/cli_run.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "QT_QPA_PLATFORM": "offscreen"}
SPLIT = ("ray_startup_s", "device_startup_s", "store_open_s", "startup_s", "stream_s", "drain_s", "trainers_lag_s",
         "evaluation_s", "wall_s")



_CHECKOUT: str | None = None     # --checkout: the code of the "fresh" and "shared" ways


def _env(way: str, baseline: str | None, ray_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env.update(ENV)
    env["LABBENCH_RAY_DIR"] = ray_dir
    if way == "shared":
        env["LABBENCH_WARM"] = "0"
    code = baseline if way == "base" else _CHECKOUT
    if code:
        env["PYTHONPATH"] = code
    return env


def run_once(way: str, protocol: Path, store_root: Path, baseline: str | None, ray_dir: str) -> dict:
    """One ``labbench run`` in a fresh process: outside wall, load before/after, and the run's timings."""
    run = timed_cli_run(protocol, store_root, _env(way, baseline, ray_dir), what=way)
    out, wall = run.summary, run.wall_s
    t = out["timings"]
    row = {"way": way, "wall_s": wall, "load_before": run.load_before, "load_after": run.load_after,
           **{f"run_{k}": t.get(k) for k in SPLIT}, "nrmse": out["metrics"]["ridge"]["nrmse"],
           "warm_actors": t.get("warm_actors", 0)}
    if "wall_s" not in t:    # the baseline has no wall_s: what its parts add up to
        row["run_wall_s"] = sum(t.get(k, 0.0) for k in ("ray_startup_s", "device_startup_s", "stream_s",
                                                          "trainers_lag_s", "evaluation_s"))
    row["outside_run_s"] = wall - row["run_wall_s"]
    return row


def import_time(way: str, baseline: str | None, ray_dir: str) -> float:
    """Seconds a fresh process takes to import what ``labbench run`` imports before it starts Ray."""
    code = ("import time; t = time.perf_counter(); import labbench.cli; from labbench.engine import bench; "
            "print(time.perf_counter() - t)")
    done = subprocess.run([sys.executable, "-c", code], env=_env(way, baseline, ray_dir), cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", default=None, help="directory with the baseline's labbench package")
    ap.add_argument("--protocol", default=str(ROOT / "protocols" / "mackey_glass.toml"))
    ap.add_argument("--checkout", default=None, help="directory with the new code's labbench package (default: "
                    "the installed checkout)")
    ap.add_argument("--warmup", action="store_true", help="one unrecorded run per way first")
    ap.add_argument("--ways", default="base,fresh,shared,warm")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds of pause after every run")
    ap.add_argument("--profile", action="store_true", help="also time the imports per way")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "run_startup.json"))
    args = ap.parse_args()
    global _CHECKOUT
    _CHECKOUT = args.checkout
    ways = [w for w in args.ways.split(",") if w and (w != "base" or args.baseline)]
    work = Path(tempfile.mkdtemp(prefix="run_startup-"))
    empty_dir, shared_dir = str(work / "no-ray"), str(work / "ray")
    dirs = {"base": empty_dir, "fresh": empty_dir, "shared": shared_dir, "warm": shared_dir}
    uses_shared = bool({"shared", "warm"} & set(ways))
    rows: list[dict] = []
    env = _env("shared", None, shared_dir)
    try:
        if uses_shared:
            subprocess.run([sys.executable, "-m", "labbench.cli", "ray", "start"], env=env,
                           cwd=tempfile.gettempdir(), check=True, capture_output=True)
        for way in ways if args.warmup else []:
            run_once(way, Path(args.protocol), work / "runs", args.baseline, dirs[way])
            time.sleep(args.settle)
        for r in range(args.rounds):
            order = ways[r % len(ways):] + ways[:r % len(ways)]
            for way in order:
                row = run_once(way, Path(args.protocol), work / "runs", args.baseline, dirs[way])
                row["round"] = r
                rows.append(row)
                time.sleep(args.settle)
                print(f"[{r}] {way:6s} wall {row['wall_s']:6.2f} s  run {row['run_wall_s']:6.2f} s  "
                      + "  ".join(f"{k[4:-2]} {row[k]:.2f}" for k in row if k.startswith("run_") and row[k] is not None
                                  and k not in ("run_wall_s",))
                      + f"  warm {row['warm_actors']}  load {row['load_before']:.1f}", flush=True)
        imports = {}
        if args.profile:
            for way in ways:
                imports[way] = _summary([import_time(way, args.baseline, dirs[way]) for _ in range(3)])
    finally:
        if uses_shared:
            subprocess.run([sys.executable, "-m", "labbench.cli", "ray", "stop"], env=env, cwd=tempfile.gettempdir(),
                           check=False, capture_output=True)
    result = {"protocol": args.protocol, "rounds": args.rounds, "rows": rows, "imports_s": imports,
              "summary": {way: {k: _summary([row[k] for row in rows if row["way"] == way and row.get(k) is not None])
                                for k in ("wall_s", "run_wall_s", "outside_run_s", "load_before",
                                          *(f"run_{s}" for s in SPLIT))
                                if any(row.get(k) is not None for row in rows if row["way"] == way)}
                          for way in ways},
              "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for way in ways:
        s = result["summary"][way]
        print(f"{way:6s} wall median {s['wall_s']['median']:.2f} s (min {s['wall_s']['min']:.2f}, max "
              f"{s['wall_s']['max']:.2f}); load {s['load_before']['median']:.1f}"
              + (f"; imports {imports[way]['median']:.2f} s" if way in imports else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
