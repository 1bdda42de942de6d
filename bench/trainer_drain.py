"""Where a live run's drain goes (issue 18): the trainer placed on the run's time line.

Runs ``labbench run protocols/mackey_glass.toml`` (a fresh process, its own local Ray, as a user
types it) a few times and splits what happens after the last block is written, from the run's
``timings`` and the trainer's own (``trainers.<name>``, wall-clock instants included):

- ``trainer_ready_after_stream_s``: how long after the stream ended the trainer began
  (its actor's start-up: a Ray worker process, the training stack's imports);
- ``trainer_rows_after_stream_s``: from the stream's end (or the trainer's start, if later) to
  the trainer having read the last rows (catching up on the backlog);
- ``trainer_tail_s``: from the last rows read to the trainer's end (the last block, the final
  evaluation, the metrics, the readout group's status);
- ``handback_s``: from the trainer's end to the bench holding its result (Ray's return);
- the trainer's totals: ``learn_s`` (of it ``write_s``), ``read_s``, ``wait_s``, ``setup_s``.

    python bench/trainer_drain.py --rounds 3 [--ways before=/tmp/base,after=]   # --out FILE.json

``--ways`` names source trees to compare in paired rounds (each round runs every way once, in
a rotating order): ``name=DIR`` runs the ``labbench`` package in DIR (a frozen copy, with
``drivers`` and ``readouts`` inside it, as ``bench/run_startup.py --baseline`` takes),
``name=`` this checkout.

The instants come from two clocks of one machine (``time.time()`` in the run's process and in
the trainer's): good to a few milliseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from cli_run import timed_cli_run  # bench/cli_run.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
       "QT_QPA_PLATFORM": "offscreen"}



def run_once(protocol: Path, work: Path, pythonpath: str | None) -> dict:
    """One run in a fresh process; its split and the trainer's time line."""
    import zarr

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env.update(ENV)
    env["LABBENCH_RAY_DIR"] = str(work / "no-ray")      # never a shared Ray: a fresh one
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    run = timed_cli_run(protocol, work / "runs", env)
    out, wall, load0 = run.summary, run.wall_s, run.load_before
    t = out["timings"]
    root = zarr.open_group(out["store"], mode="r")
    started = dt.datetime.fromisoformat(root.attrs["started"]).timestamp()   # the store's creation began
    stream_end = started + t["store_open_s"] + t["stream_s"]
    drain_end = stream_end + t["drain_s"]
    tr = next(iter(t["trainers"].values()))
    row = {"wall_s": wall, "load": load0, "load_after": run.load_after,
           **{k: t.get(k) for k in ("ray_startup_s", "device_startup_s", "store_open_s", "startup_s", "stream_s",
                                    "drain_s", "evaluation_s", "wall_s")},
           **{f"trainer_{k}": tr.get(k) for k in ("learn_s", "write_s", "read_s", "wait_s", "setup_s", "finish_s")},
           "nrmse": out["metrics"]["ridge"]["nrmse"], "nrmse_free_run": out["metrics"]["ridge"].get("nrmse_free_run")}
    row["run_wall_s"] = row.pop("wall_s")
    row["wall_s"] = wall
    if "started_unix" in tr:
        row["trainer_ready_after_stream_s"] = tr["started_unix"] - stream_end
        row["trainer_rows_after_stream_s"] = tr["last_rows_unix"] - max(stream_end, tr["started_unix"])
        row["trainer_tail_s"] = tr["ended_unix"] - tr["last_rows_unix"]
        row["handback_s"] = drain_end - tr["ended_unix"]
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--protocol", default=str(ROOT / "protocols" / "mackey_glass.toml"))
    ap.add_argument("--ways", default="this=", help="name=DIR,... (empty DIR: this checkout)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    ways = [tuple(w.split("=", 1)) for w in args.ways.split(",") if w]
    work = Path(tempfile.mkdtemp(prefix="trainer_drain-"))
    rows = []
    for r in range(args.rounds):
        for name, code in ways[r % len(ways):] + ways[:r % len(ways)]:
            row = {"way": name, "round": r, **run_once(Path(args.protocol), work, code or None)}
            rows.append(row)
            print(f"[{r}] {name:8s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
                  flush=True)
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)]
    print("\nmedian (min-max) over rounds:")
    print(f"  {'':32s} " + "".join(f"{name:>24s}" for name, _ in ways))
    for k in keys:
        cells = []
        for name, _ in ways:
            vals = [row[k] for row in rows if row["way"] == name and row.get(k) is not None]
            cells.append(f"{statistics.median(vals):8.3f} ({min(vals):.2f}-{max(vals):.2f})" if vals else "-")
        print(f"  {k:32s} " + "".join(f"{c:>24s}" for c in cells))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
