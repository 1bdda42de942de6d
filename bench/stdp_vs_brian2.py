"""labbench's STDPLayer against Brian2 on Brian2's STDP example, side by side in one process.

The task is Brian2's documented example ``examples/synapses/STDP.py`` (Song, Miller &
Abbott 2000, "Competitive Hebbian learning through spike-timing-dependent synaptic
plasticity", Nat. Neurosci. 3:919; Song & Abbott 2001), unchanged except that a
SpikeMonitor is added on the output neuron, ``brian2.seed`` is set and the objects are
named:

    N = 1000 Poisson inputs at F = 15 Hz -> 1 conductance-based LIF neuron
    dv/dt = (ge (Ee - v) + El - v) / taum,  dge/dt = -ge / taue   (method="euler")
    taum = 10 ms, Ee = 0 mV, vt = -54 mV, vr = -60 mV, El = -74 mV, taue = 5 ms
    synapses, all-to-all: on_pre: ge += w; Apre += dApre; w = clip(w + Apost, 0, gmax)
                          on_post: Apost += dApost; w = clip(w + Apre, 0, gmax)
    taupre = taupost = 20 ms, gmax = 0.01, dApre = 0.01 gmax,
    dApost = -dApre taupre / taupost * 1.05, w0 ~ U(0, gmax), dt = 0.1 ms,
    100 s of biological time (10^6 steps); the example's StateMonitor(S, "w",
    record=[0, 1]) and input SpikeMonitor are kept.

labbench runs the same model as an ``STDPLayer`` with one neuron (``song_layer``):
additive pair STDP with all-to-all traces (a_plus = dApre, a_minus = |dApost|), weights
clipped to [0, gmax], no normalisation, no inhibition, no threshold adaptation, no
refractory period. Its inputs have the same statistics as Brian2's PoissonGroup: each
input spikes in a step with probability F * dt, independently (drawn here as the gaps of
a Bernoulli process over the flattened raster, one second of biological time per block,
fed to the layer as a scipy.sparse CSR block). Differences that remain: the membrane is
integrated exactly over a step (Brian2: forward Euler; per-step factor exp(-x) against
1 - x with x ~ 0.01), Brian2's membrane starts at 0 mV (the example does not set it;
labbench starts at El), and the random streams differ, so only the statistics of the
outcome can agree: the final weight distribution (bimodal: the fraction of weights below
0.1 gmax and above 0.9 gmax) and the output firing rate.

Timings (``time.perf_counter``):
- labbench: "build" = numba compile of the kernel in a fresh numba cache (a temporary
  NUMBA_CACHE_DIR, so it is a real compile, not a cache load); "run" = the whole 100 s
  loop including the Poisson input generation; "kernel" = the layer calls alone.
  Median of --repeats runs (min-max), each with a different seed.
- Brian2 numpy and cython: "build+prep" = ``net.run(0 * ms)`` on a new network (code
  generation, and for cython the compile into a fresh cache directory under /tmp);
  "run" = the following ``net.run(T)``. For cython, the prep with a warm cache is also
  reported, timed in a child process that builds the same network on the same cache.
  Brian2's objects get fixed names per target, so that the generated code is the same
  whatever ran before in the process.
- Brian2 cpp_standalone (last, since it switches the device): "build+run" = the
  ``net.run(T)`` call with ``build_on_run=True`` (code generation, g++, one execution);
  "run" = a re-execution of the compiled ``./main`` (process wall) and the run time the
  binary reports itself.
Ratios are Brian2 time / labbench time. The machine is shared by other jobs: each part
records the CPU other processes used while it ran (``foreign_cpu``, in CPUs), and the
Linux load average before and after.

Running it: Brian2 2.9.0 (the newest on PyPI for Python 3.11; 2.10 needs 3.12 and 2.11
needs 3.13) does not import with NumPy 2.4 (``np.ndarray.ptp`` was removed), so it runs in
its own venv with NumPy < 2.4 and labbench installed into it::

    python3 -m venv /work/bench-venv-brian2
    /work/bench-venv-brian2/bin/pip install brian2 "numpy<2.4"
    /work/bench-venv-brian2/bin/pip install -e .        # labbench, from the repository root
    /work/bench-venv-brian2/bin/python bench/stdp_vs_brian2.py           # full (~6-8 min)
    /work/bench-venv-brian2/bin/python bench/stdp_vs_brian2.py --quick   # 10 s biological

The cython target also needs a C compiler (g++) and Python headers; cpp_standalone needs
g++. Brian2's caches go to a fresh directory under /tmp (never the home directory).
Without Brian2 the labbench part still runs and the Brian2 parts record the error.
Results: bench/results/stdp_vs_brian2.json (--quick: stdp_vs_brian2_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "stdp_vs_brian2.json"
DEFAULT_OUT_QUICK = ROOT / "bench" / "results" / "stdp_vs_brian2_quick.json"

# Brian2's example, in ms / mV
N_INPUTS = 1000
RATE_HZ = 15.0
DT_MS = 0.1
TAUM, TAUE, TAUPRE, TAUPOST = 10.0, 5.0, 20.0, 20.0
EE, VT, VR, EL = 0.0, -54.0, -60.0, -74.0
GMAX = 0.01
DAPRE = 0.01 * GMAX
DAPOST = -0.01 * TAUPRE / TAUPOST * 1.05 * GMAX
BLOCK_STEPS = 10_000  # labbench: one second of biological time per partial_fit call


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall, machine busy CPU-s, own process CPU-s incl. children)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = (v + [0] * 7)[:7]
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return time.perf_counter(), (user + nice + system + irq + softirq) / _TICK, own


def foreign_cpu(a: tuple, b: tuple) -> float:
    """CPUs used by other processes between two snapshots."""
    wall = max(b[0] - a[0], 1e-9)
    return round(max(0.0, (b[1] - a[1]) - (b[2] - a[2])) / wall, 3)


def weight_stats(w_over_gmax: np.ndarray) -> dict[str, Any]:
    w = np.asarray(w_over_gmax, dtype=np.float64)
    hist, _ = np.histogram(w, bins=20, range=(0.0, 1.0))
    return {
        "w_mean_over_gmax": float(w.mean()),
        "frac_w_below_0.1_gmax": float((w < 0.1).mean()),
        "frac_w_above_0.9_gmax": float((w > 0.9).mean()),
        "histogram_20_bins_0_to_gmax": hist.tolist(),
    }


# --------------------------------------------------------------------------- labbench
def song_layer(seed: int):
    """Song, Miller & Abbott (2000) / Brian2's example as an STDPLayer."""
    from labbench.readouts.stdp import STDPLayer

    return STDPLayer(
        n_neurons=1, rule="pair", a_plus=DAPRE, a_minus=-DAPOST, tau_plus=TAUPRE,
        tau_minus=TAUPOST, traces="all", mu=0.0, w_min=0.0, w_max=GMAX, w_init=(0.0, GMAX),
        norm_total=None, theta_plus=0.0, inhibition=None, tau_m=TAUM, tau_e=TAUE,
        v_rest=EL, v_reset=VR, v_thresh=VT, e_exc=EE, t_ref=0.0, dt=DT_MS, seed=seed,
    )


def poisson_block(rng: np.random.Generator, n_steps: int, n_in: int, p: float):
    """Bernoulli(p) spikes on an (n_steps, n_in) grid, as a CSR array.

    The spike positions in the flattened raster are the partial sums of geometric gaps,
    which is exactly an independent Bernoulli(p) draw per cell (the process is
    memoryless, so restarting it at each block changes nothing).
    """
    import scipy.sparse

    total = n_steps * n_in
    m = int(p * total + 8 * np.sqrt(p * total) + 64)
    pos = np.cumsum(rng.geometric(p, size=m)) - 1
    while pos[-1] < total:
        pos = np.concatenate([pos, pos[-1] + np.cumsum(rng.geometric(p, size=m))])
    pos = pos[pos < total]
    rows, cols = np.divmod(pos, n_in)
    indptr = np.zeros(n_steps + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_steps), out=indptr[1:])
    data = np.ones(len(pos), dtype=np.float32)
    return scipy.sparse.csr_array((data, cols, indptr), shape=(n_steps, n_in))


def labbench_compile() -> float:
    """Compile the kernel (fresh numba cache) with a tiny run; return seconds."""
    t0 = time.perf_counter()
    layer = song_layer(0)
    layer.partial_fit_transform(poisson_block(np.random.default_rng(0), 10, N_INPUTS, 0.5))
    return time.perf_counter() - t0


def run_labbench(bio_s: float, seed: int) -> dict[str, Any]:
    n_steps = int(round(bio_s * 1000 / DT_MS))
    rng = np.random.default_rng(seed)
    p = RATE_HZ * DT_MS / 1000
    a = _cpu_snapshot()
    t0 = time.perf_counter()
    layer = song_layer(seed).partial_fit(np.zeros((0, N_INPUTS)))  # draws w0 ~ U(0, gmax)
    kernel_s = 0.0
    n_in_spikes = 0
    out_times = []
    for start in range(0, n_steps, BLOCK_STEPS):
        steps = min(BLOCK_STEPS, n_steps - start)
        X = poisson_block(rng, steps, N_INPUTS, p)
        n_in_spikes += X.nnz
        t1 = time.perf_counter()
        out = layer.partial_fit_transform(X)
        kernel_s += time.perf_counter() - t1
        out_times.append(start + np.flatnonzero(out[:, 0]))
    run_s = time.perf_counter() - t0
    b = _cpu_snapshot()
    spikes = np.concatenate(out_times) * DT_MS / 1000  # s
    last = min(10.0, bio_s)
    res = {
        "bio_s": bio_s, "seed": seed, "run_s": run_s, "kernel_s": kernel_s,
        "input_generation_and_overhead_s": run_s - kernel_s,
        "output_spikes": int(len(spikes)), "input_spikes": int(n_in_spikes),
        "output_rate_hz": len(spikes) / bio_s,
        f"output_rate_last_{last:g}s_hz": float((spikes >= bio_s - last).sum() / last),
        "foreign_cpu": foreign_cpu(a, b),
    }
    res.update(weight_stats(layer.weights_[:, 0] / GMAX))
    return res


# ------------------------------------------------------------------------------ Brian2
def build_brian2_network(b2, seed: int, tag: str):
    """Brian2's example, verbatim but for the seed, a SpikeMonitor on the neuron and names.

    The objects are named after ``tag`` (one per target), so that the generated code,
    and with it Brian2's cython cache, does not depend on what ran before in the process.
    """
    from brian2 import Hz, NeuronGroup, PoissonGroup, SpikeMonitor, StateMonitor, Synapses, ms, mV

    b2.seed(seed)
    N = N_INPUTS
    taum = TAUM * ms
    taupre = TAUPRE * ms
    taupost = taupre
    Ee = EE * mV
    vt = VT * mV
    vr = VR * mV
    El = EL * mV
    taue = TAUE * ms
    F = RATE_HZ * Hz
    gmax = GMAX
    dApre = 0.01
    dApost = -dApre * taupre / taupost * 1.05
    dApost *= gmax
    dApre *= gmax
    eqs_neurons = """
    dv/dt = (ge * (Ee-v) + El - v) / taum : volt
    dge/dt = -ge / taue : 1
    """
    poisson_input = PoissonGroup(N, rates=F, name=f"poisson_input_{tag}")
    neurons = NeuronGroup(1, eqs_neurons, threshold="v>vt", reset="v = vr", method="euler",
                          name=f"neurons_{tag}")
    S = Synapses(
        poisson_input, neurons,
        """w : 1
           dApre/dt = -Apre / taupre : 1 (event-driven)
           dApost/dt = -Apost / taupost : 1 (event-driven)""",
        on_pre="""ge += w
                  Apre += dApre
                  w = clip(w + Apost, 0, gmax)""",
        on_post="""Apost += dApost
                   w = clip(w + Apre, 0, gmax)""",
        name=f"synapses_{tag}",
    )
    S.connect()
    S.w = "rand() * gmax"
    mon = StateMonitor(S, "w", record=[0, 1], name=f"w_monitor_{tag}")
    s_mon = SpikeMonitor(poisson_input, name=f"input_spikes_{tag}")
    o_mon = SpikeMonitor(neurons, name=f"output_spikes_{tag}")
    net = b2.Network(poisson_input, neurons, S, mon, s_mon, o_mon, name=f"network_{tag}")
    # the example runs at module level, where these names are found; here they are
    # handed to net.run explicitly
    namespace = dict(taum=taum, taupre=taupre, taupost=taupost, Ee=Ee, vt=vt, vr=vr, El=El,
                     taue=taue, gmax=gmax, dApre=dApre, dApost=dApost)
    return net, namespace, S, s_mon, o_mon


def brian2_outcome(S, s_mon, o_mon, bio_s: float) -> dict[str, Any]:
    t = np.asarray(o_mon.t[:] / (1.0 * __import__("brian2").second))
    last = min(10.0, bio_s)
    res = {
        "output_spikes": int(o_mon.num_spikes), "input_spikes": int(s_mon.num_spikes),
        "output_rate_hz": int(o_mon.num_spikes) / bio_s,
        f"output_rate_last_{last:g}s_hz": float((t >= bio_s - last).sum() / last),
    }
    res.update(weight_stats(np.asarray(S.w[:]) / GMAX))
    return res


def run_brian2_runtime(target: str, bio_s: float, seed: int, cache_dir: str) -> dict[str, Any]:
    import brian2 as b2
    from brian2 import ms, second

    b2.prefs.codegen.target = target
    b2.prefs.codegen.runtime.cython.cache_dir = cache_dir
    a = _cpu_snapshot()
    net, ns, S, s_mon, o_mon = build_brian2_network(b2, seed, target)
    t0 = time.perf_counter()
    net.run(0 * ms, namespace=ns)
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    net.run(bio_s * second, namespace=ns)
    run = time.perf_counter() - t0
    b = _cpu_snapshot()
    res = {"target": target, "bio_s": bio_s, "seed": seed, "build_prep_s": prep, "run_s": run,
           "total_s": prep + run, "foreign_cpu": foreign_cpu(a, b)}
    res.update(brian2_outcome(S, s_mon, o_mon, bio_s))
    if target == "cython":
        # prep with the compiled code in the cache, as a second run sees it: in a new
        # process (this one holds the objects of the first network and their names)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--cython-warm-prep", cache_dir, str(seed)],
                              capture_output=True, text=True, check=True)
        res["warm_process_wall_s"] = time.perf_counter() - t0
        res["warm_prep_s"] = json.loads(proc.stdout.strip().splitlines()[-1])["prep_s"]
    return res


def cython_warm_prep(cache_dir: str, seed: int) -> None:
    """Child process: build the network and time ``net.run(0 * ms)`` with a warm cache."""
    import brian2 as b2
    from brian2 import ms

    b2.prefs.codegen.target = "cython"
    b2.prefs.codegen.runtime.cython.cache_dir = cache_dir
    net, ns = build_brian2_network(b2, seed, "cython")[:2]
    t0 = time.perf_counter()
    net.run(0 * ms, namespace=ns)
    print(json.dumps({"prep_s": time.perf_counter() - t0}))


def run_brian2_standalone(bio_s: float, seed: int, directory: str) -> dict[str, Any]:
    import brian2 as b2
    from brian2 import second

    b2.set_device("cpp_standalone", directory=directory, build_on_run=True)
    a = _cpu_snapshot()
    net, ns, S, s_mon, o_mon = build_brian2_network(b2, seed, "standalone")
    t0 = time.perf_counter()
    net.run(bio_s * second, namespace=ns)
    build_run = time.perf_counter() - t0
    b = _cpu_snapshot()
    res = {"target": "cpp_standalone", "bio_s": bio_s, "seed": seed,
           "codegen_compile_run_s": build_run,
           "first_run_in_binary_s": float(b2.device._last_run_time),
           "foreign_cpu": foreign_cpu(a, b)}
    res.update(brian2_outcome(S, s_mon, o_mon, bio_s))
    # re-execute the compiled binary: the run without any build
    a = _cpu_snapshot()
    t0 = time.perf_counter()
    subprocess.run(["./main"], cwd=directory, check=True, capture_output=True)
    res["rerun_process_wall_s"] = time.perf_counter() - t0
    with open(os.path.join(directory, "results", "last_run_info.txt")) as f:
        res["rerun_in_binary_s"] = float(f.read().split()[0])
    res["rerun_foreign_cpu"] = foreign_cpu(a, _cpu_snapshot())
    return res


def guarded(name: str, fn, *args) -> dict[str, Any]:
    log(f"-- {name}")
    load0 = os.getloadavg()[0]
    try:
        res = fn(*args)
    except Exception as exc:  # noqa: BLE001 - a peer failing must not lose the other results
        res = {"error": f"{type(exc).__name__}: {exc}"}
    res["loadavg_1min_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    log(json.dumps({k: v for k, v in res.items() if not k.startswith("histogram")}))
    return res


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("numpy", "numba", "scipy", "brian2", "Cython"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = "not installed"
    try:
        out["g++"] = subprocess.run(["g++", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    except OSError:
        out["g++"] = "not found"
    return out


def machine() -> dict[str, Any]:
    cpu = {}
    try:
        for line in open("/proc/cpuinfo"):
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                cpu.setdefault(k, v)
    except OSError:
        pass
    return {"cpu_model": cpu.get("model name", platform.processor()),
            "logical_cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 s of biological time everywhere")
    ap.add_argument("--bio-s", type=float, default=None, help="biological time (default 100, quick 10)")
    ap.add_argument("--numpy-bio-s", type=float, default=None,
                    help="biological time for Brian2's numpy target (default: --bio-s)")
    ap.add_argument("--repeats", type=int, default=3, help="labbench repeats")
    ap.add_argument("--skip", nargs="*", default=[], choices=["numpy", "cython", "cpp_standalone"])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cython-warm-prep", nargs=2, metavar=("CACHE_DIR", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cython_warm_prep:
        cython_warm_prep(args.cython_warm_prep[0], int(args.cython_warm_prep[1]))
        return
    bio_s = args.bio_s or (10.0 if args.quick else 100.0)
    numpy_bio_s = args.numpy_bio_s or bio_s
    out_path = args.out or (DEFAULT_OUT_QUICK if args.quick else DEFAULT_OUT)

    work = tempfile.mkdtemp(prefix="labbench-stdp-bench-")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(work, "numba")  # a real compile, below
    results: dict[str, Any] = {"bio_s": bio_s, "dt_ms": DT_MS, "versions": versions(), "machine": machine()}
    log(json.dumps(results))

    results["labbench_build_s"] = guarded("labbench numba compile", lambda: {"compile_s": labbench_compile()})
    runs = [guarded(f"labbench run {k}", run_labbench, bio_s, k) for k in range(args.repeats)]
    results["labbench"] = runs
    ok = [r for r in runs if "run_s" in r]
    lab_run = median(r["run_s"] for r in ok)
    lab_kernel = median(r["kernel_s"] for r in ok)
    lab_total = lab_run + results["labbench_build_s"].get("compile_s", float("nan"))

    brian: dict[str, Any] = {}
    if "numpy" not in args.skip:
        brian["numpy"] = guarded("brian2 numpy", run_brian2_runtime, "numpy", numpy_bio_s, 2024,
                                 os.path.join(work, "cython_unused"))
    if "cython" not in args.skip:
        brian["cython"] = guarded("brian2 cython (cold cache)", run_brian2_runtime, "cython", bio_s,
                                  2024, os.path.join(work, "brian2_cython_cache"))
    if "cpp_standalone" not in args.skip:
        brian["cpp_standalone"] = guarded("brian2 cpp_standalone", run_brian2_standalone, bio_s, 2024,
                                          os.path.join(work, "brian2_standalone"))
    results["brian2"] = brian

    # summary table: seconds for bio_s of biological time
    rows = [{"implementation": "labbench STDPLayer (numba)", "run_s": lab_run, "kernel_only_s": lab_kernel,
             "build_s": results["labbench_build_s"].get("compile_s"), "total_s": lab_total}]
    np_res = brian.get("numpy", {})
    if "run_s" in np_res:
        scale = bio_s / np_res["bio_s"]
        rows.append({"implementation": "Brian2 numpy", "run_s": np_res["run_s"] * scale,
                     "build_s": np_res["build_prep_s"], "total_s": np_res["build_prep_s"] + np_res["run_s"] * scale,
                     "extrapolated_from_bio_s": np_res["bio_s"] if scale != 1 else None})
    cy = brian.get("cython", {})
    if "run_s" in cy:
        rows.append({"implementation": "Brian2 cython", "run_s": cy["run_s"], "build_s": cy["build_prep_s"],
                     "total_s": cy["total_s"], "warm_prep_s": cy.get("warm_prep_s")})
    sa = brian.get("cpp_standalone", {})
    if "rerun_in_binary_s" in sa:
        rows.append({"implementation": "Brian2 cpp_standalone", "run_s": sa["rerun_process_wall_s"],
                     "run_in_binary_s": sa["rerun_in_binary_s"],
                     "build_s": sa["codegen_compile_run_s"] - sa["first_run_in_binary_s"],
                     "total_s": sa["codegen_compile_run_s"]})
    for r in rows[1:]:
        r["ratio_run_vs_labbench"] = r["run_s"] / lab_run
        r["ratio_total_vs_labbench"] = r["total_s"] / lab_total
    results["summary"] = rows
    outcome = {"labbench": {k: median(r[k] for r in ok) for k in
                            ("w_mean_over_gmax", "frac_w_below_0.1_gmax", "frac_w_above_0.9_gmax",
                             "output_rate_hz")}}
    for name, r in brian.items():
        if "output_rate_hz" in r:
            outcome[f"brian2_{name}"] = {k: r[k] for k in outcome["labbench"]}
    results["outcome"] = outcome

    print(f"\nSTDP example, {bio_s:g} s biological time (dt = {DT_MS} ms), seconds:")
    print(f"{'implementation':32s} {'run':>9s} {'build':>9s} {'total':>9s} {'run/lab':>8s} {'total/lab':>9s}")
    for r in rows:
        print(f"{r['implementation']:32s} {r['run_s']:9.3f} {r['build_s'] or 0:9.3f} {r['total_s']:9.3f} "
              f"{r.get('ratio_run_vs_labbench', 1.0):8.1f} {r.get('ratio_total_vs_labbench', 1.0):9.1f}")
    print("\noutcome (median over labbench repeats):")
    for name, o in outcome.items():
        print(f"{name:24s} " + "  ".join(f"{k}={v:.3f}" for k, v in o.items()))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {out_path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
