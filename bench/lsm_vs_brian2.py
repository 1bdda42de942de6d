"""labbench's LSM against Brian2 on the same LIF network, side by side in one process.

The network (both simulators, identical parameters): N LIF neurons (80% excitatory,
Dale's law), current-based exponential synapses, random connectivity p = 0.1 without
self-connections, 100 Poisson inputs at 20 Hz reaching every neuron, dt = 0.1 ms, 1 s of
biological time::

    tau_m dv/dt = E_L - v + J_e + J_i      (held at v_reset for t_ref after a spike)
    tau_e dJ_e/dt = -J_e,   tau_i dJ_i/dt = -J_i
    tau_m = 20 ms, E_L = v_reset = -70 mV, v_th = -55 mV, t_ref = 2 ms, tau_e = 5 ms, tau_i = 10 ms
    J_e += 0.5 mV per excitatory spike (delay 1.5 ms), J_i -= 4 mV per inhibitory spike (0.8 ms),
    J_e += 1.6 mV per input spike (no delay)

Both integrate the linear subthreshold dynamics exactly (Brian2 ``method="exact"``). The
random streams (wiring, input spikes) differ, so only statistics can agree: population
rate, the coefficient of variation of inter-spike intervals (neurons with >= 3 spikes) and
the Fano factor of spike counts in 50 ms windows. Brian2 delivers a spike after the state
update of its arrival step and labbench before it: the effective delay differs by one step.

A second part removes the randomness: Brian2 gets labbench's wiring (``Synapses.connect(i=,
j=)``) and labbench's input spike raster (``SpikeGeneratorGroup``, shifted by one step for
Brian2's delivery after the state update), numpy target; the two spike trains are then
compared spike by spike, and the index of the first difference is reported (after it,
rounding differences near threshold grow, as in any chaotic network).

Timings: labbench "run" = ``LiquidStateMachine.run`` on the 1 s input (numba compiled
before); Brian2 numpy and cython "run" = ``net.run(1 s)`` after a ``net.run(0 ms)`` that
generates (and for cython compiles) the code; cpp_standalone "run" = the simulation time
the binary reports, "build" = code generation and compilation. The binary's run time is
``std::clock()`` (process CPU time, see Brian2's ``templates/network.cpp``), so labbench's CPU
time (``cpu_s``) is recorded too and the cpp_standalone ratio is also given against it:
on a loaded machine wall time and CPU time differ a lot.

Run it in a venv with Brian2 (Brian2 2.9.0 needs numpy < 2.4 on Python 3.11)::

    python3 -m venv /work/bench-venv-brian2
    /work/bench-venv-brian2/bin/pip install "brian2==2.9.0" "numpy<2.4" cython
    /work/bench-venv-brian2/bin/pip install -e .
    /work/bench-venv-brian2/bin/python bench/lsm_vs_brian2.py [--sizes 1000 4000] [--targets numpy cython cpp_standalone]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PARAMS = dict(excitatory_fraction=0.8, p=0.1, w_exc=0.5, w_inh=-4.0, delay_exc=1.5, delay_inh=0.8, tau_m=20.0,
              tau_e=5.0, tau_i=10.0, e_l=-70.0, v_th=-55.0, v_reset=-70.0, t_ref=2.0)
N_IN, RATE_IN, W_IN, DT, T_MS = 100, 20.0, 1.6, 0.1, 1000.0


def statistics(steps: np.ndarray, neurons: np.ndarray, n: int) -> dict[str, float]:
    """Population rate (Hz), mean ISI CV and mean Fano factor (50 ms windows)."""
    t = steps * DT
    rate = len(t) / n / (T_MS / 1000.0)
    order = np.lexsort((t, neurons))
    t, nr = t[order], neurons[order]
    cvs = []
    for k in range(n):
        tk = t[nr == k]
        if len(tk) >= 3:
            isi = np.diff(tk)
            cvs.append(isi.std() / isi.mean())
    bins = np.arange(0, T_MS + 50, 50.0)
    counts = np.zeros((n, len(bins) - 1))
    np.add.at(counts, (nr, np.clip(np.digitize(t, bins) - 1, 0, len(bins) - 2)), 1)
    active = counts.sum(1) > 0
    fano = counts[active].var(1) / np.maximum(counts[active].mean(1), 1e-12)
    return {"rate_hz": float(rate), "cv_isi": float(np.mean(cvs)) if cvs else float("nan"),
            "fano_50ms": float(np.mean(fano)) if active.any() else float("nan"), "n_spikes": int(len(steps))}


def run_labbench(n: int, seed: int) -> dict:
    from labbench.drivers.lsm import LiquidStateMachine

    rows = int(T_MS / 10)  # 10 ms rows of 100 steps
    kw = dict(units=n, n_inputs=N_IN, input_mode="poisson", max_rate=RATE_IN, input_connectivity=1.0,
              input_weight=W_IN, dt=DT, steps_per_sample=100, features="counts", seed=seed, **PARAMS)
    with LiquidStateMachine(**kw) as lsm:  # warm-up: compile
        lsm.run(np.ones((2, N_IN)))
    with LiquidStateMachine(**kw) as lsm:
        t0, c0 = time.perf_counter(), time.process_time()
        b = lsm.run(np.ones((rows, N_IN)))
        run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {"run_s": run_s, "cpu_s": cpu_s, **statistics(b.raw["spikes"]["step"], b.raw["spikes"]["neuron"], n)}


def _brian2_neurons(b2, n: int):
    """The LIF population of the benchmark as a Brian2 NeuronGroup (exact integration), at rest."""
    ms, mV = b2.ms, b2.mV
    b2.defaultclock.dt = DT * ms
    ns = {"E_L": PARAMS["e_l"] * mV, "v_th": PARAMS["v_th"] * mV, "v_reset": PARAMS["v_reset"] * mV,
          "tau_m": PARAMS["tau_m"] * ms, "tau_e": PARAMS["tau_e"] * ms, "tau_i": PARAMS["tau_i"] * ms}
    eqs = """dv/dt = (E_L - v + je + ji) / tau_m : volt (unless refractory)
             dje/dt = -je / tau_e : volt
             dji/dt = -ji / tau_i : volt"""
    G = b2.NeuronGroup(n, eqs, threshold="v >= v_th", reset="v = v_reset", refractory=PARAMS["t_ref"] * ms,
                       method="exact", namespace=ns)
    G.v = PARAMS["e_l"] * mV
    return G


def run_brian2(n: int, target: str, seed: int) -> dict:
    import brian2 as b2

    b2.start_scope()
    b2.seed(seed)
    out: dict = {}
    if target == "cpp_standalone":
        outdir = tempfile.mkdtemp(prefix=f"lsm_cpp_{n}_")
        b2.set_device("cpp_standalone", directory=outdir, build_on_run=False)
    else:
        b2.set_device("runtime")
        b2.prefs.codegen.target = target
    ms, mV, Hz = b2.ms, b2.mV, b2.Hz
    G = _brian2_neurons(b2, n)
    n_exc = int(round(0.8 * n))
    Se = b2.Synapses(G[:n_exc], G, on_pre=f"je_post += {PARAMS['w_exc']}*mV", delay=PARAMS["delay_exc"] * ms)
    Se.connect(condition="i != j", p=PARAMS["p"])
    Si = b2.Synapses(G[n_exc:], G, on_pre=f"ji_post += {PARAMS['w_inh']}*mV", delay=PARAMS["delay_inh"] * ms)
    Si.connect(condition="i + n_exc != j", p=PARAMS["p"], namespace={"n_exc": n_exc}) if False else \
        Si.connect(condition=f"i + {n_exc} != j", p=PARAMS["p"])
    P = b2.PoissonGroup(N_IN, RATE_IN * Hz)
    Sp = b2.Synapses(P, G, on_pre=f"je_post += {W_IN}*mV")
    Sp.connect()
    mon = b2.SpikeMonitor(G)
    net = b2.Network(G, Se, Si, P, Sp, mon)
    if target == "cpp_standalone":
        net.run(T_MS * ms)
        t0 = time.perf_counter()
        b2.device.build(directory=None, compile=True, run=True, debug=False)
        out["build_and_run_s"] = time.perf_counter() - t0
        out["run_s"] = float(b2.device._last_run_time)
        out["build_s"] = out["build_and_run_s"] - out["run_s"]
        steps = np.round(np.asarray(mon.t / ms) / DT).astype(np.int64)
        neurons = np.asarray(mon.i)
        b2.device.reinit()
        b2.device.activate()
        b2.set_device("runtime")
    else:
        t0 = time.perf_counter()
        net.run(0 * ms)
        out["prep_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        net.run(T_MS * ms)
        out["run_s"] = time.perf_counter() - t0
        steps = np.round(np.asarray(mon.t / ms) / DT).astype(np.int64)
        neurons = np.asarray(mon.i)
    return {**out, **statistics(steps, neurons, n)}


def identical_spikes(n: int, n_steps: int, seed: int = 5) -> dict:
    """Same wiring and same input spikes in both simulators: how long do the spike trains agree?"""
    import brian2 as b2

    from labbench.drivers.lsm import LiquidStateMachine

    rng = np.random.default_rng(seed)
    raster = (rng.random((n_steps, N_IN)) < RATE_IN * DT / 1000).astype(np.float64)
    raster[0] = 0  # Brian2 delivers an input spike after the update of its step: none can act in step 0
    kw = dict(units=n, n_inputs=N_IN, input_mode="spikes", input_connectivity=1.0, input_weight=W_IN, dt=DT,
              steps_per_sample=1, features="counts", seed=0, **PARAMS)
    with LiquidStateMachine(**kw) as lsm:
        b = lsm.run(raster)
        adj, exc = lsm.adjacency_.tocoo(), lsm.excitatory_
    ours = sorted(zip(b.raw["spikes"]["step"].tolist(), b.raw["spikes"]["neuron"].tolist()))
    b2.start_scope()
    b2.set_device("runtime")
    b2.prefs.codegen.target = "numpy"
    ms, mV = b2.ms, b2.mV
    G = _brian2_neurons(b2, n)
    e = exc[adj.row]
    Se = b2.Synapses(G, G, on_pre=f"je_post += {PARAMS['w_exc']}*mV", delay=PARAMS["delay_exc"] * ms)
    Se.connect(i=adj.row[e], j=adj.col[e])
    Si = b2.Synapses(G, G, on_pre=f"ji_post += {PARAMS['w_inh']}*mV", delay=PARAMS["delay_inh"] * ms)
    Si.connect(i=adj.row[~e], j=adj.col[~e])
    r, c = np.nonzero(raster)
    S = b2.SpikeGeneratorGroup(N_IN, c, (r - 1) * DT * ms)
    Sp = b2.Synapses(S, G, on_pre=f"je_post += {W_IN}*mV")
    Sp.connect()
    mon = b2.SpikeMonitor(G)
    b2.Network(G, Se, Si, S, Sp, mon).run(n_steps * DT * ms)
    theirs = sorted(zip(np.round(np.asarray(mon.t / ms) / DT).astype(int).tolist(), np.asarray(mon.i).tolist()))
    k = next((i for i in range(min(len(ours), len(theirs))) if ours[i] != theirs[i]), min(len(ours), len(theirs)))
    return {"n": n, "steps": n_steps, "spikes_labbench": len(ours), "spikes_brian2": len(theirs),
            "identical_spikes_before_first_difference": k,
            "first_difference_step": ours[k][0] if k < len(ours) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--targets", nargs="+", default=["numpy", "cython", "cpp_standalone"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--identical-steps", type=int, default=3000, help="steps of the same-wiring comparison")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "lsm_vs_brian2.json")
    args = ap.parse_args()
    os.environ.setdefault("BRIAN_CACHE_DIR", "/tmp/brian_cache")
    results: dict = {"params": {**PARAMS, "n_inputs": N_IN, "rate_in_hz": RATE_IN, "w_in_mV": W_IN, "dt_ms": DT,
                                "t_ms": T_MS}, "sizes": {}}
    for n in args.sizes:
        rows = {"labbench": [run_labbench(n, s) for s in args.seeds]}
        print(f"N={n} labbench: " + ", ".join(f"{k} {np.median([r[k] for r in rows['labbench']]):.4g}"
                                             for k in ("run_s", "rate_hz", "cv_isi", "fano_50ms")), flush=True)
        for target in args.targets:
            rows[target] = [run_brian2(n, target, s) for s in args.seeds]
            print(f"N={n} brian2 {target}: " + ", ".join(
                f"{k} {np.median([r[k] for r in rows[target]]):.4g}" for k in ("run_s", "rate_hz", "cv_isi",
                                                                                "fano_50ms")), flush=True)
        summary = {name: {k: float(np.median([r[k] for r in rs])) for k in ("run_s", "rate_hz", "cv_isi", "fano_50ms")}
                   for name, rs in rows.items()}
        lb = summary["labbench"]
        summary["ratios_run_s_over_labbench"] = {t: summary[t]["run_s"] / lb["run_s"] for t in args.targets}
        if "cpp_standalone" in args.targets:  # its run time is std::clock(), i.e. CPU time: compare like with like
            lb_cpu = float(np.median([r["cpu_s"] for r in rows["labbench"]]))
            summary["ratio_cpp_standalone_over_labbench_cpu"] = summary["cpp_standalone"]["run_s"] / lb_cpu
        results["sizes"][str(n)] = {"runs": rows, "median": summary}
        print(json.dumps(summary, indent=1), flush=True)
    results["identical_wiring_and_input"] = identical_spikes(1000, args.identical_steps)
    print(json.dumps(results["identical_wiring_and_input"]), flush=True)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
