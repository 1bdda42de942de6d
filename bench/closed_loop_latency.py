"""What a closed loop costs: its latency and jitter with the policy in the device's actor, in the bench, and in one process.

The same closed loop runs three ways in this process, in paired rounds (each round runs all
three, in a rotating order, so a change in the machine's load hits them alike):

(1) **actor** (``run.closed_loop = "actor"``, the default): ``labbench.run`` with the policy
    shipped to the device's Ray actor, which loops block -> policy -> next block itself and
    hands the blocks back in chunks; the store is written by the bench's writer thread.
(2) **bench** (``run.closed_loop = "bench"``): ``labbench.run`` with the policy in the
    writer's process: every block goes to the bench and the next one comes back (one Ray
    round trip per block).
(3) **in process**: the same driver and the same policy called directly, one after the
    other, no Ray and no store: the least a loop can cost.

Latency is measured the same way in all three: the device's idle time between the end of
one block and the start of the next, on the device process's clock (the runs store it per
block). All three see the same device, seed and policy, so they make the same decisions
(checked: every block's command must agree). Reported per mode: the median over rounds of
the latency median, p99 and max, their min-max over rounds, jitter, blocks per second, and
the load average before and after each round.

Protocols: ``mea_closed_loop.toml`` (rate clamp on the in-silico culture, 40-row blocks)
and ``mea_feedback.toml`` (DishBrain-style trials, 10-row blocks).

Usage:  python bench/closed_loop_latency.py                       # both protocols, 3 rounds, ~5 min
        python bench/closed_loop_latency.py --rounds 1 --blocks 40 --no-write   # smoke
Results: bench/results/closed_loop_latency.json and .md (a section for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
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
MODES = ("actor", "bench", "in_process")
LABELS = {"actor": "actor (policy in the device's actor)", "bench": "bench (policy in the writer, Ray round trip)",
          "in_process": "in process (no Ray, no store)"}
STATS = ("latency_ms_median", "latency_ms_p99", "latency_ms_max", "jitter_ms_std", "jitter_ms_mad", "blocks_per_s")


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
    """``labbench.run`` on the protocol (its ``run.closed_loop`` says where the policy runs)."""
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
    ap.add_argument("--rounds", type=int, default=3, help="paired rounds (each runs every mode once)")
    ap.add_argument("--protocols", nargs="+", default=["mea_closed_loop", "mea_feedback"])
    ap.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    args = ap.parse_args(argv)

    from labbench.engine.ray_runtime import ensure_ray
    from labbench.spec.protocol import load

    ensure_ray()
    results: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": _cpus()}, "runs": {}}
    rows = []
    for name in args.protocols:
        proto = load(ROOT / "protocols" / f"{name}.toml")
        block = proto.run.block
        blocks = args.blocks or proto.run.total // block
        total = blocks * block
        protos = {mode: load(ROOT / "protocols" / f"{name}.toml",
                             overrides={"run.washout": 0, "run.train": total, "run.test": 0,
                                        "run.closed_loop": mode}) for mode in ("actor", "bench")}
        rounds: list[dict[str, Any]] = []
        same = True
        for k in range(args.rounds):
            order = MODES[k % 3:] + MODES[:k % 3]
            load_before = os.getloadavg()
            out: dict[str, Any] = {}
            for mode in order:
                if mode == "in_process":
                    out[mode] = in_process(protos["actor"], blocks)
                else:
                    with tempfile.TemporaryDirectory() as tmp:
                        out[mode] = through_bench(protos[mode], blocks, Path(tmp))
            commands = {m: out[m].pop("commands").astype(np.float64) for m in MODES}
            same = same and all(np.allclose(commands["in_process"], commands[m]) for m in ("actor", "bench"))
            out["load_before"], out["load_after"] = load_before, os.getloadavg()
            rounds.append(out)
            print(f"{name} round {k + 1}/{args.rounds} (order {', '.join(order)}; load "
                  f"{load_before[0]:.2f} -> {out['load_after'][0]:.2f}): " + "; ".join(
                      f"{m} median {out[m]['latency_ms_median']:.3f} ms p99 {out[m]['latency_ms_p99']:.3f} ms"
                      for m in MODES))
        summary = {m: _summary([r[m] for r in rounds]) for m in MODES}
        loads = [x for r in rounds for x in (r["load_before"][0], r["load_after"][0])]
        results["runs"][name] = {"blocks": blocks, "block_rows": block, "same_decisions": same,
                                 "load_1min": [min(loads), max(loads)], "summary": summary, "rounds": rounds}
        rows.append((name, blocks, block, summary, same, (min(loads), max(loads)), args.rounds))
        print(f"{name}: {blocks} blocks of {block} rows, {args.rounds} rounds, same decisions: {same}, "
              f"load {min(loads):.2f}-{max(loads):.2f}")
        for m in MODES:
            r = summary[m]
            print(f"  {m:>10}: latency median {_fmt(r['latency_ms_median'])} ms, p99 "
                  f"{_fmt(r['latency_ms_p99'])} ms, max {_fmt(r['latency_ms_max'])} ms, "
                  f"{r['blocks_per_s']['median']:.1f} blocks/s")
        ratio = summary["bench"]["latency_ms_median"]["median"] / summary["actor"]["latency_ms_median"]["median"]
        print(f"  bench / actor latency x{ratio:.1f}")
    if not args.no_write:
        OUT_JSON.write_text(json.dumps(results, indent=1, default=float))
        OUT_MD.write_text(_markdown(rows))
        print(f"wrote {OUT_JSON.relative_to(ROOT)} and {OUT_MD.relative_to(ROOT)}")
    return 0


def _summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Median and min-max over the rounds of each statistic."""
    return {key: {"median": float(np.median([r[key] for r in runs])), "min": float(min(r[key] for r in runs)),
                  "max": float(max(r[key] for r in runs))} for key in STATS}


def _fmt(stat: dict[str, float], digits: int = 3) -> str:
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _markdown(rows) -> str:
    lines = [("| protocol | blocks × rows | rounds | load (1 min) | loop | latency median (ms) | p99 (ms) | max (ms) | "
              "jitter std (ms) | jitter MAD (ms) | blocks/s |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, blocks, block, summary, same, (lo, hi), n in rows:
        for m in MODES:
            r = summary[m]
            lines.append(f"| `{name}.toml` | {blocks} × {block} | {n} | {lo:.1f}–{hi:.1f} | {LABELS[m]} | "
                         f"{_fmt(r['latency_ms_median'])} | {_fmt(r['latency_ms_p99'])} | "
                         f"{_fmt(r['latency_ms_max'], 2)} | {r['jitter_ms_std']['median']:.3f} | "
                         f"{r['jitter_ms_mad']['median']:.3f} | {_fmt(r['blocks_per_s'], 1)} |")
    lines.append("")
    lines.append("Medians over paired rounds, (min–max) over rounds. Same decisions in every mode: "
                 + ", ".join(f"`{r[0]}` {'yes' if r[4] else 'NO'}" for r in rows) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
