"""The reference figures of the shipped protocols, over several reservoir seeds.

Runs each protocol in ``protocols/`` through ``labbench.run`` (Ray actor, run store,
live readout) once per reservoir seed (``device.params.seed`` = 0..4 by default) and
prints the median (min–max) of its headline metric next to the acceptance figure and
the ReservoirPy figure measured on this machine kind (shared/peer-bench/RESULTS.md).

Usage: python bench/protocol_figures.py [--seeds 5] [--only narma10 ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# protocol -> (metric, acceptance test, acceptance text, ReservoirPy median on this machine kind)
FIGURES = {
    "mackey_glass": ("nrmse", lambda v: v <= 1e-3, "≤ 1e-3", "2.9e-4"),
    "narma10": ("nrmse", lambda v: v <= 0.22, "≤ 0.22", "0.20"),
    "memory_capacity": ("memory_capacity", lambda v: 35 <= v <= 100, "≥ 35 and ≤ N = 100", "40.4"),
    "lorenz": ("valid_prediction_time", lambda v: v >= 10, "≥ 10 Lyapunov times", "12.6"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="reservoir seeds 0..SEEDS-1")
    ap.add_argument("--only", nargs="*", default=list(FIGURES), help="protocols to run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "protocol_figures.json")
    args = ap.parse_args()

    import labbench as lb

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            metric, ok, wanted, peer = FIGURES[name]
            values, extras = [], []
            for seed in range(args.seeds):
                run = lb.run(ROOT / "protocols" / f"{name}.toml", set={"device.params.seed": seed},
                             store_root=tmp, progress=False)
                m = run.metrics["ridge"]
                values.append(float(m[metric]))
                extras.append({k: v for k, v in m.items() if isinstance(v, (int, float))})
                print(f"  {name} seed {seed}: {metric} = {values[-1]:.4g}", flush=True)
            med = statistics.median(values)
            results[name] = {"metric": metric, "median": med, "min": min(values), "max": max(values),
                             "values": values, "all_metrics": extras, "acceptance": wanted,
                             "passes": bool(ok(med)), "reservoirpy_median": peer}
            print(f"{name:16s} {metric:22s} median {med:.4g} ({min(values):.4g}–{max(values):.4g}) "
                  f"acceptance {wanted}: {'PASS' if ok(med) else 'FAIL'}   ReservoirPy {peer}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
