"""The Loihi emulator against Lava 0.10's CPU runtime on the same networks, in steps per second.

Issue 17's speed target: the emulator (``drivers/loihi/emulator.py``, numba, in this process)
does >= 20x Lava's steps/s at N = 200 and N = 1,000 with 10 % recurrent density. Lava runs
``Loihi2SimCfg(select_tag="fixed_pt")`` (``PyLifModelBitAcc`` + ``PyDenseModelBitAcc``) in
its Python 3.10 worker (``drivers/loihi/lava_worker.py``), timed three ways:

- **lava inside**: the seconds the worker spends in Lava's ``run`` (around
  ``RunSteps(k, blocking=True)`` only: Lava's own step loop with its runtime processes);
- **lava end to end**: ``LavaBackend.run`` as the driver calls it (input to the worker,
  Lava, spikes back over the pipe);
- **lava reference** (a peer check, not the back end): the plainest Lava graph,
  ``lava.proc.io.source.RingBuffer`` holding the whole input -> Dense -> LIF <-> Dense and no
  sink, one ``run`` of T steps; and the same with Lava's ``sink.RingBuffer`` on ``LIF.s_out``
  (what a back end needs to get spikes out; not read, ``Var.get`` being element by element).
  This shows what the back end's own shared-memory I/O costs. Final u and v are compared
  with the emulator's.

The network: N LIF neurons (du = 400, dv = 200, vth = 16000, bias_mant 0..199 << 4),
recurrent Dense with 10 % density, weights -128..255 (mixed sign) and weight_exp
-log2(N/50), 20 inputs (density 20 %, weights 0..255, exp 2) firing with p = 0.05 per step;
about 5 % of neurons spike per step. The emulator's spikes equal Lava's (checked).
Each timing is the median of ``--repeats`` runs of ``--steps`` steps after a warm-up
(numba compile; Lava compile); the networks are reset between runs.

    .venv/bin/python bench/loihi_vs_lava.py [--sizes 200 1000] [--steps 2000] [--repeats 3]

Writes bench/results/loihi_vs_lava.json and .md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from labbench.drivers.loihi.emulator import Emulator
from labbench.drivers.loihi.lava_backend import LavaBackend, find_lava_python
from labbench.drivers.loihi.network import DenseLayer, LoihiNetwork
from labbench.drivers.transport.python_worker import PythonWorker

N_IN, P_IN, DENSITY = 20, 0.05, 0.1
RESULTS = Path(__file__).resolve().parent / "results"

#: the reference peer: Lava's own RingBuffer source with the input baked in, no sink
_REFERENCE = textwrap.dedent('''
    import importlib.util, os, sys, time
    import numpy as np
    spec = importlib.util.spec_from_file_location("worker_wire", os.environ["LABBENCH_WORKER_WIRE"])
    ww = importlib.util.module_from_spec(spec); spec.loader.exec_module(ww)
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as SinkBuffer
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    def run(*, x, warmup, sink, **net):
        def dense(key, w):
            mode = int(net[key + "_sign_mode"])
            return Dense(weights=w, weight_exp=int(net[key + "_weight_exp"]),
                         num_weight_bits=int(net[key + "_num_weight_bits"]), sign_mode=SignMode(mode) if mode else None)
        src = RingBuffer(data=x.T.astype(np.int32))
        d_in, d_rec = dense("input", net["input_weights"]), dense("recurrent", net["recurrent_weights"])
        lif = LIF(shape=(net["recurrent_weights"].shape[0],), du=int(net["du"]), dv=int(net["dv"]), vth=int(net["vth"]),
                  bias_mant=net["bias_mant"], bias_exp=int(net["bias_exp"]))
        src.s_out.connect(d_in.s_in); d_in.a_out.connect(lif.a_in)
        lif.s_out.connect(d_rec.s_in); d_rec.a_out.connect(lif.a_in)
        if sink:   # Lava's own sink, as a driver would need one (not read: Var.get is too slow)
            ring = SinkBuffer(shape=(lif.s_out.shape[0],), buffer=x.shape[0])
            lif.s_out.connect(ring.a_in)
        cfg = Loihi2SimCfg(select_tag="fixed_pt")
        lif.run(condition=RunSteps(num_steps=int(warmup)), run_cfg=cfg)       # compile + start the runtime
        t0 = time.perf_counter()
        lif.run(condition=RunSteps(num_steps=x.shape[0] - int(warmup)), run_cfg=cfg)
        run_s = time.perf_counter() - t0
        u, v = lif.u.get().astype(np.int32), lif.v.get().astype(np.int32)
        lif.stop()
        return {"run_s": run_s, "u": u, "v": v}

    sys.exit(ww.serve({"run": run}))
''')


def network(n: int, seed: int = 0) -> LoihiNetwork:
    """The benchmark network (see the module docstring)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 256, (n, n)) * (rng.random((n, n)) < DENSITY)
    wi = rng.integers(0, 256, (n, N_IN)) * (rng.random((n, N_IN)) < 0.2)
    return LoihiNetwork(du=400, dv=200, vth=16000, bias_mant=rng.integers(0, 200, n), bias_exp=4,
                        recurrent=DenseLayer(w.astype(np.int32), -int(np.log2(n / 50))),
                        input=DenseLayer(wi.astype(np.int32), 2))


def bench_size(n: int, steps: int, repeats: int, python: Path) -> dict:
    net = network(n)
    x = np.random.default_rng(1).random((steps, N_IN)) < P_IN
    em = Emulator(net)
    em.run(x[:50])                                   # numba compile
    em_times = []
    for _ in range(repeats * 3):
        em.reset()
        t0 = time.perf_counter()
        ref = em.run(x)
        em_times.append(time.perf_counter() - t0)
    lava_inside, lava_e2e = [], []
    with LavaBackend(net, python) as lava:
        lava.run(x[:50])                             # Lava compile, runtime start
        for _ in range(repeats):
            lava.reset()
            before = lava.timing["run_s"]
            t0 = time.perf_counter()
            out = lava.run(x)
            lava_e2e.append(time.perf_counter() - t0)
            lava_inside.append(lava.timing["run_s"] - before)
            if not np.array_equal(out.spikes, ref.spikes):
                raise AssertionError(f"N={n}: Lava's spikes differ from the emulator's")
    warm = 50
    em_tail = Emulator(net)
    final = em_tail.run(x, record=True)
    ref_times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "lava_reference.py"
        script.write_text(_REFERENCE)
        with PythonWorker(python, script, timeout_s=1800) as w:
            for _, sink in itertools.product(range(repeats), (False, True)):
                out = w.call("run", x=x, warmup=warm, sink=sink, **net.to_arrays())
                ref_times[sink].append(float(out["run_s"]))
                if not (np.array_equal(out["u"], final.u[-1]) and np.array_equal(out["v"], final.v[-1])):
                    raise AssertionError(f"N={n}: the reference Lava run ends in another state than the emulator")
    med = statistics.median
    r = {
        "n": n, "steps": steps, "spike_rate": float(ref.spikes.mean()),
        "synapses": int(np.count_nonzero(net.recurrent.weights)),
        "emulator_steps_per_s": steps / med(em_times),
        "lava_inside_steps_per_s": steps / med(lava_inside),
        "lava_end_to_end_steps_per_s": steps / med(lava_e2e),
        "lava_reference_steps_per_s": (steps - warm) / med(ref_times[False]),
        "lava_reference_sink_steps_per_s": (steps - warm) / med(ref_times[True]),
    }
    r["ratio_vs_inside"] = r["emulator_steps_per_s"] / r["lava_inside_steps_per_s"]
    r["ratio_vs_end_to_end"] = r["emulator_steps_per_s"] / r["lava_end_to_end_steps_per_s"]
    r["ratio_vs_reference"] = r["emulator_steps_per_s"] / r["lava_reference_steps_per_s"]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    python = find_lava_python()
    if python is None or not Path(python).exists():
        raise SystemExit("no Lava interpreter: set LABBENCH_LAVA_PYTHON or run .ci/lava_venv.sh")
    load_before = os.getloadavg()[0]
    rows = []
    for n in args.sizes:
        r = bench_size(n, args.steps, args.repeats, Path(python))
        rows.append(r)
        print(f"N={n:5d}  rate {r['spike_rate']:.3f}  emulator {r['emulator_steps_per_s']:10,.0f} steps/s  "
              f"lava inside {r['lava_inside_steps_per_s']:7,.0f}  end-to-end {r['lava_end_to_end_steps_per_s']:7,.0f}  "
              f"reference {r['lava_reference_steps_per_s']:7,.0f} (with sink {r['lava_reference_sink_steps_per_s']:7,.0f})  ->  {r['ratio_vs_inside']:.0f}x inside, "
              f"{r['ratio_vs_end_to_end']:.0f}x end-to-end, {r['ratio_vs_reference']:.0f}x reference", flush=True)
    load = max(load_before, os.getloadavg()[0])
    info = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
            "lava": "lava-nc 0.10.0, Loihi2SimCfg(select_tag='fixed_pt')", "load_average_max": round(load, 2),
            "steps": args.steps, "repeats": args.repeats, "results": rows}
    if args.no_save:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loihi_vs_lava.json").write_text(json.dumps(info, indent=2) + "\n")
    lines = ["| N (10 % density) | spikes/neuron/step | emulator steps/s | Lava inside | Lava end to end | "
             "Lava reference: RingBuffer, no sink | reference with RingBuffer sink | "
             "ratio (inside / end to end / reference) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['spike_rate']:.3f} | {r['emulator_steps_per_s']:,.0f} | "
                     f"{r['lava_inside_steps_per_s']:,.0f} | {r['lava_end_to_end_steps_per_s']:,.0f} | "
                     f"{r['lava_reference_steps_per_s']:,.0f} | {r['lava_reference_sink_steps_per_s']:,.0f} | "
                     f"{r['ratio_vs_inside']:.0f}x / "
                     f"{r['ratio_vs_end_to_end']:.0f}x / {r['ratio_vs_reference']:.0f}x |")
    lines.append("")
    lines.append(f"{args.steps} steps, median of {args.repeats} runs (emulator {3 * args.repeats}); wall clock; "
                 f"load average up to {load:.1f} on {os.cpu_count()} cores. Spikes equal between emulator and Lava.")
    (RESULTS / "loihi_vs_lava.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
