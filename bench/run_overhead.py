"""What the run path costs: a long ESN run through `labbench run` vs the bare driver.

Runs the same N=1000 float32 ESN on the same Mackey-Glass input twice in one process:
(1) bare: ``EchoStateNetwork.run`` block after block in this process, nothing stored;
(2) bench: ``labbench.run`` of the same protocol (Ray actor, Zarr store, a ridge trainer
actor tailing the store, learning the train rows and predicting the test rows). Prints both throughputs,
their ratio, Ray start-up, and the peak resident memory of this process and of the
device actor (the bench's memory is bounded by the block size, not the run length).

Usage: python bench/run_overhead.py [--steps 1000000] [--units 1000] [--block 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--block", type=int, default=2000)
    ap.add_argument("--train-fraction", type=float, default=0.5)
    args = ap.parse_args()

    import labbench as lb
    from labbench.spec.protocol import from_dict

    washout = 1000
    train = int((args.steps - washout) * args.train_fraction)
    test = args.steps - washout - train
    params = {"units": args.units, "spectral_radius": 1.25, "leak": 0.3, "input_scaling": 1.0,
              "connectivity": 0.1, "input_connectivity": 0.2, "dtype": "float32", "seed": 0}
    proto_dict = {
        "protocol": {"name": "run_overhead", "seed": 0},
        "device": {"driver": "esn", "params": params},
        "task": {"name": "mackey_glass"},
        "run": {"washout": washout, "train": train, "test": test, "block": args.block},
        "readouts": [{"kind": "ridge", "alpha": 1e-6}],
    }
    proto = from_dict(proto_dict)
    data = proto.task.generate(args.steps, 0)

    # (1) the bare driver, same blocks
    with lb.open_device("esn", n_inputs=1, **params) as esn:
        esn.run(data.inputs[:10])
        esn.reset()
        t0 = time.perf_counter()
        for a in range(0, args.steps, args.block):
            esn.run(data.inputs[a:a + args.block])
        bare_s = time.perf_counter() - t0
    bare_rate = args.steps / bare_s
    print(f"bare driver: {bare_rate:,.0f} steps/s ({bare_s:.1f} s)", flush=True)

    # (2) through the bench
    with tempfile.TemporaryDirectory() as tmp:
        run = lb.run(proto, store_root=tmp, progress=True)
        t = run.timings
        import ray

        bench_rate = t["samples_per_s"]
    result = {"steps": args.steps, "units": args.units, "block": args.block, "bare_steps_per_s": bare_rate,
              "bench_steps_per_s": bench_rate, "ratio": bench_rate / bare_rate,
              "ray_startup_s": t["ray_startup_s"], "device_startup_s": t["device_startup_s"],
              "stream_s": t["stream_s"], "trainers_lag_s": t.get("trainers_lag_s"),
              "peak_rss_writer_mib": t["writer_peak_rss_mib"], "peak_rss_device_mib": t["device_peak_rss_mib"],
              "metrics": run.metrics}
    print(json.dumps(result, indent=2, default=str))
    out = Path(__file__).resolve().parent / "results" / "run_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    ray.shutdown()


if __name__ == "__main__":
    main()
