"""The simulated bucket: simulated seconds per wall-clock second, camera included, one core.

For each solver (``fd``, ``spectral``) and grid (64 x 64 and 128 x 128; the camera at the
grid's resolution) and camera model, a :class:`~labbench.drivers.bucket.tank.SimTank` is
built and warmed up (numba compiles, cached after the first run), then it is stepped through
``--seconds`` of simulated time in blocks of 25 frames (1 s at 25 fps, how the driver calls
it) with four motors switching on and off at random every second. Wall time is the median
of ``--repeats`` runs, reported beside the process's CPU time (one thread: what one unshared
core would take; the wall time also counts the other processes of a busy machine). numba,
BLAS and scipy.fft are held to one thread.

``--xor`` adds the quick check of the camera models on Fernando & Sojakka's XOR that chose
the defaults: 2 motors, bits held 1 s, 200 trials split 50/50 by trial, logistic regression
on the 16 x 16-pooled frames, accuracy per frame over the last 5 frames of each test trial
and over the second half of each trial.

Usage:  python bench/bucket_speed.py [--seconds 20] [--repeats 3] [--xor] [--no-write]
Results: bench/results/bucket_speed.json and .md (a section for docs/benchmarks.md).
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from labbench.drivers.bucket.camera import pool_frames
from labbench.drivers.bucket.params import BucketSimParams
from labbench.drivers.bucket.tank import SimTank
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "bucket_speed.json"
OUT_MD = ROOT / "bench" / "results" / "bucket_speed.md"


def speed(solver: str, grid: int, model: str, seconds: float, repeats: int) -> dict:
    params = BucketSimParams(tank={"solver": solver, "grid": grid},
                             camera={"model": model, "resolution": [grid, grid]})
    tank = SimTank(params, seed=0)
    fps = params.camera.fps
    rng = np.random.default_rng(0)
    n_blocks = round(seconds)
    drive = np.repeat(rng.integers(0, 2, (n_blocks, 4)).astype(float), int(fps), axis=0)
    tank.step(drive[: int(fps)])                    # compile, warm up
    walls, cpus = [], []
    for _ in range(repeats):
        tank.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in range(n_blocks):
            tank.step(drive[b * int(fps):(b + 1) * int(fps)])
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    wall, cpu = float(np.median(walls)), float(np.median(cpus))
    d = tank.describe()
    return {"solver": solver, "grid": grid, "camera": model, "fps": fps, "simulated_s": n_blocks,
            "wall_s": wall, "wall_all_s": walls, "realtime_factor": n_blocks / wall,
            "cpu_s": cpu, "cpu_realtime_factor": n_blocks / cpu,
            "substeps_per_frame": d["substeps_per_frame"], "dt_s": d["dt_s"], "courant": d["courant"]}


def xor_check(model: str, n_trials: int = 200, hold: int = 25) -> dict:
    from sklearn.linear_model import LogisticRegression

    params = BucketSimParams(motors={"n_motors": 2}, camera={"model": model})
    bits = np.random.default_rng(0).integers(0, 2, (n_trials, 2))
    frames = SimTank(params, seed=0).step(np.repeat(bits.astype(float), hold, axis=0))
    x = pool_frames(frames, (16, 16)).reshape(n_trials, hold, -1)
    y = bits[:, 0] ^ bits[:, 1]
    half = n_trials // 2
    out = {"camera": model}
    for name, first in (("last5", hold - 5), ("second_half", hold // 2)):
        n = hold - first
        clf = LogisticRegression(C=1.0, max_iter=3000)
        clf.fit(x[:half, first:].reshape(-1, x.shape[-1]), np.repeat(y[:half], n))
        pred = clf.predict(x[half:, first:].reshape(-1, x.shape[-1]))
        out[f"frame_acc_{name}"] = float((pred == np.repeat(y[half:], n)).mean())
        out[f"trial_acc_{name}"] = float(((pred.reshape(-1, n).mean(1) > 0.5) == y[half:]).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--xor", action="store_true", help="also the XOR check of the camera models")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = []
    with threadpool_limits(1):
        for solver in ("fd", "spectral"):
            for grid in (64, 128):
                for model in (("shadowgraph", "sobel", "linear") if grid == 64 else ("shadowgraph",)):
                    r = speed(solver, grid, model, args.seconds, args.repeats)
                    rows.append(r)
                    print(f"{solver:9s} {grid:4d}x{grid:<4d} {model:12s} {r['substeps_per_frame']:3d} sub-steps/frame"
                          f"  {r['realtime_factor']:7.1f}x real time (wall), {r['cpu_realtime_factor']:7.1f}x (CPU)"
                          f"  ({r['wall_s']:.2f} s wall for {r['simulated_s']} s)", flush=True)
        xor = [xor_check(m) for m in ("shadowgraph", "sobel", "linear")] if args.xor else []
    for r in xor:
        print(f"XOR {r['camera']:12s} frame accuracy last 5 frames {r['frame_acc_last5']:.3f}, "
              f"second half {r['frame_acc_second_half']:.3f}; trial {r['trial_acc_second_half']:.2f}")
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg_end": list(os.getloadavg()), "threads": 1}
    print("load average at the end:", " ".join(f"{v:.2f}" for v in meta["loadavg_end"]))
    if args.no_write:
        return
    OUT_JSON.write_text(json.dumps({"meta": meta, "speed": rows, "xor": xor}, indent=1))
    lines = ["| solver | grid = camera | camera | sub-steps / frame | x real time (wall) | x real time (CPU) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['solver']} | {r['grid']}x{r['grid']} | {r['camera']} | {r['substeps_per_frame']} | "
              f"{r['realtime_factor']:.1f} | {r['cpu_realtime_factor']:.1f} |" for r in rows]
    if xor:
        lines += ["", "| camera | XOR frame acc. (last 5 frames) | (second half) | trial acc. (second half) |",
                  "|---|---|---|---|"]
        lines += [f"| {r['camera']} | {r['frame_acc_last5']:.3f} | {r['frame_acc_second_half']:.3f} | "
                  f"{r['trial_acc_second_half']:.2f} |" for r in xor]
    OUT_MD.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
