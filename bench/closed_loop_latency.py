"""What a closed loop through the bench costs: its latency and jitter, beside the same loop in one process.

The same closed loop runs two ways in this process:

(1) **bench**: ``labbench.run`` on a protocol (the device in a Ray actor, the policy in the
    writer's process, the store written by its own thread). Latency is what the bench
    stores per block: the device's idle time between the end of one block and the start
    of the next, on the device process's clock.
(2) **in process**: the same driver and the same policy called directly, one after the
    other, no Ray and no store: the least a loop can cost (latency = the policy's time
    plus the Python in between), measured the same way.

Both see the same device, seed and policy, so both make the same decisions (checked: the
commands must agree). Reported: median, 99th percentile and max latency, jitter (std and
median absolute deviation), blocks per second, and the bench/in-process ratios.

Protocols: ``mea_closed_loop.toml`` (rate clamp on the in-silico culture, 40-row blocks)
and ``mea_feedback.toml`` (DishBrain-style trials, 10-row blocks).

Usage:  python bench/closed_loop_latency.py                 # both protocols, ~1.5 min
        python bench/closed_loop_latency.py --blocks 40 --no-write   # smoke
Results: bench/results/closed_loop_latency.json and .md (a section for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "closed_loop_latency.json"
OUT_MD = ROOT / "bench" / "results" / "closed_loop_latency.md"


def in_process(proto, blocks: int) -> dict[str, Any]:
    """The loop with the driver and the policy in this process: no Ray, no store."""
    from labbench.spec.policy import LoopBlock, loop_timing
    from labbench.reservoir import get_driver

    dev = proto.all_devices[0]
    reservoir = get_driver(dev.driver)(**proto.device_params(dev))
    reservoir.open()
    policy = proto.task.policy(proto.protocol.seed)
    block = proto.run.block
    latency, policy_s, commands = [], [], []
    prev, last_end = None, None
    t_start = time.perf_counter()
    try:
        for k in range(blocks):
            t0 = time.perf_counter()
            nb = policy(prev, block)
            policy_s.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            latency.append(float("nan") if last_end is None else t1 - last_end)
            features = reservoir.run(nb.inputs).features
            last_end = time.perf_counter()
            prev = LoopBlock(k, k * block, nb.inputs, features, nb.targets)
            commands.append(nb.inputs[0].copy())
    finally:
        reservoir.close()
    wall = time.perf_counter() - t_start
    return {**loop_timing(np.array(latency), np.array(policy_s)), "blocks_per_s": blocks / wall,
            "commands": np.array(commands)}


def through_bench(proto, blocks: int, root: Path) -> dict[str, Any]:
    import labbench as lb
    from labbench.spec.policy import loop_timing
    from labbench.store import RunReader

    run = lb.run(proto, store_root=root, progress=False)
    loop = RunReader(run.store).raw(proto.all_devices[0].group, "loop")
    inputs = RunReader(run.store).read(proto.all_devices[0].group, readouts=False)["inputs"]
    block = proto.run.block
    return {**loop_timing(loop["latency_s"], loop["policy_s"]), "blocks_per_s": blocks / run.timings["stream_s"],
            "store_appends": run.timings.get("store_appends"), "commands": inputs[::block][:blocks]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=0, help="blocks per run (default: the protocol's whole run)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = ap.parse_args(argv)

    from labbench.engine.ray_runtime import ensure_ray
    from labbench.spec.protocol import load

    ensure_ray()
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": _cpus()}, "runs": {}}
    rows = []
    for name in ("mea_closed_loop", "mea_feedback"):
        proto = load(ROOT / "protocols" / f"{name}.toml")
        block = proto.run.block
        blocks = args.blocks or proto.run.total // block
        total = blocks * block
        proto = load(ROOT / "protocols" / f"{name}.toml",
                     overrides={"run.washout": 0, "run.train": total, "run.test": 0})
        with tempfile.TemporaryDirectory() as tmp:
            bench = through_bench(proto, blocks, Path(tmp))
        local = in_process(proto, blocks)
        same = bool(np.allclose(bench.pop("commands").astype(np.float64), local.pop("commands")))
        results["runs"][name] = {"blocks": blocks, "block_rows": block, "same_decisions": same,
                                 "bench": bench, "in_process": local}
        rows.append((name, blocks, block, bench, local, same))
        print(f"{name}: {blocks} blocks of {block} rows, same decisions: {same}")
        for label, r in (("bench", bench), ("in process", local)):
            print(f"  {label:>10}: latency median {r['latency_ms_median']:.2f} ms, p99 {r['latency_ms_p99']:.2f} ms, "
                  f"max {r['latency_ms_max']:.2f} ms, jitter std {r['jitter_ms_std']:.2f} ms / "
                  f"MAD {r['jitter_ms_mad']:.2f} ms, {r['blocks_per_s']:.1f} blocks/s")
        print(f"  bench / in process: latency x{bench['latency_ms_median'] / local['latency_ms_median']:.1f}, "
              f"blocks/s x{bench['blocks_per_s'] / local['blocks_per_s']:.2f}")
    if not args.no_write:
        OUT_JSON.write_text(json.dumps(results, indent=1, default=float))
        OUT_MD.write_text(_markdown(rows))
        print(f"wrote {OUT_JSON.relative_to(ROOT)} and {OUT_MD.relative_to(ROOT)}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _markdown(rows) -> str:
    lines = ["| protocol | blocks × rows | loop | latency median (ms) | p99 (ms) | max (ms) | jitter std (ms) | "
             "jitter MAD (ms) | blocks/s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, blocks, block, bench, local, same in rows:
        for label, r in (("bench (Ray actor + store)", bench), ("in process (no Ray, no store)", local)):
            lines.append(f"| `{name}.toml` | {blocks} × {block} | {label} | {r['latency_ms_median']:.2f} | "
                         f"{r['latency_ms_p99']:.2f} | {r['latency_ms_max']:.2f} | {r['jitter_ms_std']:.2f} | "
                         f"{r['jitter_ms_mad']:.2f} | {r['blocks_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
