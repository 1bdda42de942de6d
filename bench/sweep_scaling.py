"""Sweeps: the same ESN trials one after another in one process vs through the bench.

A 16-trial NARMA-10 sweep (protocols/narma10_sweep.toml, a 4 x 4 grid of spectral radius
x input scaling, resized by the flags below) is run in two ways:

(1) sequential: in THIS process, without Ray, ``labbench.engine.trial.run_trial`` on every
    protocol of ``labbench.engine.sweeper.trial_protocols(proto)``, one after another;
(2) bench: ``labbench.engine.sweeper.run_sweep(proto, store_root=<tmpdir>, progress=False)``:
    a fresh local Ray (started by the sweep itself and shut down after it), one Ray task
    per trial, as many at a time as the cluster has CPUs, gathered into one sweep store.

Both run exactly the same trial function on the same protocols, so their metrics must
agree (the script checks the test NRMSE of every trial to 1e-12).

Warm-up: before anything is timed, one small untimed trial (same network size, short run)
runs in this process. It compiles numba's kernels and writes them to numba's on-disk cache,
so neither path pays for JIT compilation. The Ray workers are fresh processes: they do not
compile, but they still import labbench and load the cached kernels on their first trial;
that cold start is part of what a real sweep costs and is counted in the bench's time
(``--warm-workers`` shows the steady state without it).

BLAS threads: Ray starts each 1-CPU task's worker with OMP_NUM_THREADS=1, so every trial
in the bench uses one BLAS thread. The sequential baseline uses the same, through
threadpoolctl (``--seq-blas-threads``, default 1; 0 leaves the library default). This keeps
the comparison about running trials side by side: with OpenBLAS's default of one thread per
core, the sequential run's dense linear algebra would also use the second core a little,
and on a loaded machine OpenBLAS's spinning threads made single trials several times slower.

Reported, per repeat and as median [min-max] over ``--repeats`` (default 3), the order of
the two paths alternating between repeats:

- ``seq_s``: sequential total (the sum of the 16 trials);
- ``bench_wall_s``: ``run_sweep`` wall time, including Ray start-up, trial validation and
  store creation; ``ray_startup_s`` (``timings['ray_startup_s']``) and ``sweep_s``
  (``timings['sweep_s']``: from the first trial submitted to the last one written);
- ``speedup_wall = seq_s / bench_wall_s`` and ``speedup_sweep = seq_s / sweep_s``;
- ``overhead_per_trial_s = (sweep_s * cores_used - seq_s) / n_trials``: the core-seconds
  the bench spent per trial beyond what the same trial costs in one process. With
  perfect scaling ``sweep_s`` would be ``seq_s / cores_used`` and this would be 0; it
  includes the workers' cold start (imports, loading cached kernels), task dispatch,
  result transfer and the writer, cores left idle at the end of the sweep (16 trials of
  unequal length on 2 cores), and any slowdown of a trial's own compute when trials share
  the machine (memory bandwidth, Ray's own processes, other jobs).
  It is split into ``in_trial_overhead_per_trial_s = (sum of the trials' own total_s in
  the workers - seq_s) / n_trials`` and the rest, ``outside_trial_overhead_per_trial_s``.
- the best trial (parameters and NRMSE) from the sweep's summary, and whether it is the
  trial with the lowest NRMSE in the sequential run;
- CPU-seconds: of the sequential run, and of the bench split into this process, Ray's
  services (GCS, raylet, dashboard, agents, monitors) and Ray's workers, read from
  /proc for this process and every process below it. ``worker_extra_cpu_per_worker_s =
  (workers' CPU-s - sequential CPU-s) / cores_used`` is what a worker spends beyond the
  trials themselves (its cold start), and does not depend much on other jobs;
- the machine's noise: CPUs used by other processes (``/proc/stat`` busy time minus this
  process tree's) and stolen by the hypervisor during each measurement, and before each
  repeat a capacity probe: the same pure-Python loop in one process, then in two at once
  (``capacity = 2 * t_one / t_two``: 2 on two free cores, about 1 when other jobs take a
  core's worth). Before each repeat the script waits (``--quiet-wait``, default 60 s) for a
  3 s window in which other processes use at most ``--quiet-cpu`` (0.5) CPUs.

The acceptance (issue 5) is a speed-up of at least 1.6x on the 2-core machine; it is
judged on the median ``speedup_wall`` (Ray start-up included, the strict reading) and
``speedup_sweep`` is shown next to it.

Ray is the sweep's own fresh local Ray (``labbench.engine.ray_runtime.ensure_ray``), on loopback: the
environment of ``labbench.engine.ray_runtime.RAY_ENV`` is set before anything imports ray, and the GCS
address is recorded. ``RAY_ADDRESS`` is ignored unless ``--address`` is given.

Usage:  python bench/sweep_scaling.py                # 3 repeats, ~3.5 min on 2 quiet cores
        python bench/sweep_scaling.py --repeats 1 --units 300 --train 1000 --no-write   # smoke, ~1 min
        python bench/sweep_scaling.py --warm-workers   # steady state: no Ray start-up, warm workers
        python bench/sweep_scaling.py --help
Results: bench/results/sweep_scaling.json and bench/results/sweep_scaling.md (a section
for docs/benchmarks.md); the figures in docs/benchmarks.md were written with ``--train
10000 / 30000 / 60000 --out bench/results/sweep_scaling_train{10,30,60}k.json --md ...``. The trial size (1000 units, 10,000 training steps) makes one
trial about 2 s of compute on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "protocols" / "narma10_sweep.toml"
OUT_JSON = ROOT / "bench" / "results" / "sweep_scaling.json"
OUT_MD = ROOT / "bench" / "results" / "sweep_scaling.md"
SR_KEY = "device.params.spectral_radius"
TOL = 1e-12
TARGET = 1.6


def _setup_ray_env(args: argparse.Namespace) -> None:
    """Loopback-only Ray env, set before anything imports ray (Ray reads
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import; imported earlier, it binds every interface)."""
    from labbench.engine.ray_runtime import RAY_ENV  # labbench.engine.ray_runtime does not import ray at module level

    assert "ray" not in sys.modules, "ray imported before the loopback environment was set"
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if not args.address:
        os.environ.pop("RAY_ADDRESS", None)


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu() -> dict[int, float]:
    """CPU-s (user + system, with reaped children) of every process below this one."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        cpu[pid] = sum(int(x) for x in fields[11:15]) / _TICK   # utime stime cutime cstime
    out, todo = {}, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        out[pid] = cpu.get(pid, 0.0)
        todo += children.get(pid, [])
    return out


def cpu_snapshot() -> dict[str, Any]:
    """Wall clock, the machine's busy and stolen CPU-s, this process tree's CPU-s."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    t = os.times()
    return {"wall": time.perf_counter(), "busy": (user + nice + system + irq + softirq) / _TICK,
            "steal": steal / _TICK, "self": t.user + t.system + t.children_user + t.children_system,
            "tree": _proc_cpu()}


def _kind(pid: int) -> str:
    """``worker`` (a Ray worker process: ``ray::IDLE``, ``ray::run_trial``, ...) or ``ray`` (Ray's services)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return "ray"
    if cmd.startswith("ray::") and not cmd.endswith("Agent"):
        return "worker"
    return "ray"


def cpu_usage(a: dict[str, Any], b: dict[str, Any], *, by_kind: bool = False) -> dict[str, float]:
    """Between two snapshots: own CPU-s (this process and its descendants, e.g. Ray's), and
    the CPUs that other processes used and that the hypervisor stole, on average.
    ``by_kind`` also splits own CPU into this process, Ray's services and Ray's workers."""
    wall = max(b["wall"] - a["wall"], 1e-9)
    deltas = {pid: c - a["tree"].get(pid, 0.0) for pid, c in b["tree"].items()}
    own = (b["self"] - a["self"]) + sum(deltas.values())
    out = {"own_cpu_s": own, "foreign_cpus": max(0.0, (b["busy"] - a["busy"]) - own) / wall,
           "steal_cpus": (b["steal"] - a["steal"]) / wall}
    if by_kind:
        out["cpu_self_s"] = b["self"] - a["self"]
        out["cpu_ray_services_s"] = sum(d for pid, d in deltas.items() if _kind(pid) == "ray")
        workers = [d for pid, d in deltas.items() if _kind(pid) == "worker"]
        out["cpu_workers_s"] = sum(workers)
        out["worker_processes"] = len(workers)
    return out


_SPIN = "import time\nt=time.perf_counter()\ns=0\nfor i in range({n}): s+=i\nprint(time.perf_counter()-t)"


def capacity_probe(seconds: float) -> dict[str, float] | None:
    """How many CPUs this job can actually get now: the same pure-Python loop in one process,
    then in two processes at once; ``capacity = 2 * t_one / t_two`` (2.0 on two idle cores,
    about 1.0 when other jobs take one core's worth, lower when they take more)."""
    import subprocess

    if seconds <= 0:
        return None
    n = int(seconds * 6e6)   # ~1 s per 6e6 iterations on the 2-core machine when idle

    def spin(k: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-S", "-c", _SPIN.format(n=n)], stdout=subprocess.PIPE, text=True)
                 for _ in range(k)]
        return max(float(p.communicate()[0]) for p in procs)

    one = spin(1)
    two = spin(2)
    return {"one_s": one, "two_s": two, "capacity_cpus": 2 * one / two}


def wait_quiet(max_wait: float, threshold: float, window: float = 3.0) -> dict[str, Any]:
    """Wait (up to ``max_wait`` s) for a window in which other processes use <= ``threshold`` CPUs."""
    t0 = time.perf_counter()
    while True:
        a = cpu_snapshot()
        time.sleep(window)
        foreign = cpu_usage(a, cpu_snapshot())["foreign_cpus"]
        waited = time.perf_counter() - t0
        if foreign <= threshold or waited >= max_wait:
            return {"foreign_cpus": foreign, "waited_s": waited, "quiet": foreign <= threshold}


def build_protocol(args: argparse.Namespace, *, warmup: bool = False):
    """The sweep protocol: narma10_sweep.toml resized by the flags (16 trials by default)."""
    from labbench.spec.protocol import from_dict

    text = PROTOCOL.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    data["device"]["params"]["units"] = args.units
    data["run"].update(washout=args.washout, train=args.train, test=args.test, block=args.block)
    sweep = data["sweep"]
    if args.trials != 16:
        k = math.ceil(args.trials / 4)
        sweep[SR_KEY] = [round(0.6 + 0.4 * i / max(k - 1, 1), 4) for i in range(k)]
        if 4 * k > args.trials:
            sweep["budget"] = args.trials
    if warmup:  # same network, a short run, a few trials
        data["run"].update(washout=50, train=300, test=100, block=min(args.block, 200))
        sweep[SR_KEY] = sweep[SR_KEY][:1]
        sweep.pop("budget", None)
    return from_dict(data, source=str(PROTOCOL), text=text)


def nrmse(metrics: dict[str, Any]) -> float:
    return float(metrics["ridge"]["nrmse"])


def run_sequential(proto, blas_threads: int) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from labbench.spec.protocol import trial_protocols
    from labbench.engine.trial import run_trial

    planned = trial_protocols(proto)
    trial_s, metrics = [], []
    limit = threadpool_limits(limits=blas_threads) if blas_threads > 0 else None
    try:
        a = cpu_snapshot()
        t0 = time.perf_counter()
        for _params, tp in planned:
            t1 = time.perf_counter()
            result = run_trial(tp)
            trial_s.append(time.perf_counter() - t1)
            metrics.append(result.metrics)
        total = time.perf_counter() - t0
        usage = cpu_usage(a, cpu_snapshot())
    finally:
        if limit is not None:
            limit.restore_original_limits()
    values = [nrmse(m) for m in metrics]
    best = min(range(len(values)), key=lambda i: values[i])
    return {"seq_s": total, "trial_s": trial_s, "nrmse": values, "best_trial": best,
            "params": [p for p, _ in planned], **usage}


def _worker_env() -> dict[str, Any]:
    """What a 1-CPU Ray worker runs with (called as a Ray task, untimed)."""
    import numpy  # noqa: F401 - loads OpenBLAS so threadpoolctl sees it
    from threadpoolctl import threadpool_info

    return {"pid": os.getpid(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "blas_threads": [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]}


def run_bench(proto, args: argparse.Namespace, store_root: str, *, probe: bool) -> dict[str, Any]:
    import ray
    import zarr

    from labbench.engine.sweeper import read_sweep, run_sweep

    a = cpu_snapshot()
    t0 = time.perf_counter()
    sweep = run_sweep(proto, address=args.address, store_root=store_root, progress=False)
    wall = time.perf_counter() - t0
    usage = cpu_usage(a, cpu_snapshot(), by_kind=True)
    attrs = read_sweep(sweep.store)
    root = zarr.open_group(str(sweep.store), mode="r")
    n = attrs["n_trials"]
    values, worker_s, status = [], [], []
    for i in range(n):
        g = dict(root[f"trial-{i:04d}"].attrs)
        status.append(g["status"])
        values.append(nrmse(g["metrics"]) if g["status"] == "complete" else float("nan"))
        worker_s.append((g.get("timings") or {}).get("total_s", float("nan")))
    cluster_cpus = ray.cluster_resources().get("CPU", 0.0)
    gcs = ray.get_runtime_context().gcs_address
    nodes = len([nd for nd in ray.nodes() if nd.get("Alive")])
    workers = None
    if probe:
        fn = ray.remote(num_cpus=1)(_worker_env)
        workers = ray.get([fn.remote() for _ in range(int(attrs["concurrency"]))])
    return {"bench_wall_s": wall, "ray_startup_s": sweep.timings["ray_startup_s"],
            "sweep_s": sweep.timings["sweep_s"],
            "setup_s": wall - sweep.timings["ray_startup_s"] - sweep.timings["sweep_s"],
            "cores_used": int(attrs["concurrency"]), "cluster_cpus": cluster_cpus, "ray_nodes": nodes,
            "gcs_address": gcs,
            "worker_trial_s": worker_s, "nrmse": values, "status": status, "best": sweep.best,
            "store_status": attrs["status"], "worker_env": workers, **usage}


def warm_workers(args: argparse.Namespace, store_root: str) -> float:
    """Start Ray and run a small sweep so every worker has imported labbench and loaded the kernels."""
    from labbench.engine.sweeper import run_sweep

    sweep = run_sweep(build_protocol(args, warmup=True), address=args.address, store_root=store_root,
                      progress=False)
    return sweep.timings["ray_startup_s"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summarise(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=16, help="trials in the sweep (default 16: the 4 x 4 grid)")
    ap.add_argument("--units", type=int, default=1000, help="ESN units (default 1000)")
    ap.add_argument("--washout", type=int, default=200)
    ap.add_argument("--train", type=int, default=10000, help="training steps per trial (default 10000)")
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--block", type=int, default=1000, help="block size of a trial's run (default 1000)")
    ap.add_argument("--repeats", type=int, default=3, help="whole measurements (default 3)")
    ap.add_argument("--seq-blas-threads", type=int, default=1,
                    help="BLAS threads of the sequential run (default 1, as in a Ray worker; 0: library default)")
    ap.add_argument("--warm-workers", action="store_true",
                    help="start Ray and warm its workers once (untimed) and keep it between repeats: "
                         "the steady state without Ray start-up and worker cold start")
    ap.add_argument("--probe-s", type=float, default=2.0,
                    help="before each repeat, time a ~N s CPU loop in one and then two processes to measure "
                         "how many CPUs the job can get (default 2; 0: skip)")
    ap.add_argument("--quiet-cpu", type=float, default=0.5,
                    help="before each repeat, wait for a 3 s window in which other processes use at most this "
                         "many CPUs (default 0.5) ...")
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="... but at most this many seconds (default 60)")
    ap.add_argument("--address", default=None, help="Ray cluster to join (default: a private local Ray)")
    ap.add_argument("--out", type=Path, default=OUT_JSON, help=f"results JSON (default {OUT_JSON.relative_to(ROOT)})")
    ap.add_argument("--md", type=Path, default=OUT_MD, help=f"markdown section (default {OUT_MD.relative_to(ROOT)})")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="only rewrite the markdown (--md) from a results JSON of this script, then exit")
    args = ap.parse_args()
    if args.render:
        args.md.write_text(markdown(json.loads(args.render.read_text()), args))
        print(f"wrote {args.md}")
        return

    _setup_ray_env(args)
    import numpy as np
    import ray

    from labbench.engine.trial import run_trial

    proto = build_protocol(args)
    n_trials = proto.sweep.size()
    cpus = os.cpu_count()
    print(f"sweep: {n_trials} ESN trials on NARMA-10, {args.units} units, run {args.washout}+{args.train}+"
          f"{args.test} steps in blocks of {args.block}; {cpus} CPUs; {args.repeats} repeats", flush=True)

    # warm-up: compile numba's kernels into its on-disk cache (neither path pays for JIT)
    from labbench.spec.protocol import trial_protocols

    t0 = time.perf_counter()
    run_trial(trial_protocols(build_protocol(args, warmup=True))[0][1])
    warm_s = time.perf_counter() - t0
    print(f"warm-up (untimed): one small trial in this process, {warm_s:.1f} s: numba kernels compiled or "
          f"loaded from numba's on-disk cache, so neither path below includes JIT compilation; "
          f"the Ray workers still import labbench and load the cached kernels on their first trial "
          f"(counted in the bench's time{'' if not args.warm_workers else ', except with --warm-workers'})",
          flush=True)

    repeats: list[dict[str, Any]] = []
    stores = tempfile.mkdtemp(prefix="lbss_stores_")
    warm_startup = None
    try:
        if args.warm_workers:
            warm_startup = warm_workers(args, stores)
            print(f"--warm-workers: Ray started ({warm_startup:.1f} s) and its workers warmed (untimed)", flush=True)
        for r in range(args.repeats):
            order = ["seq", "bench"] if r % 2 == 0 else ["bench", "seq"]
            rec: dict[str, Any] = {"repeat": r, "order": order}
            if args.quiet_wait > 0:
                rec["pre_quiet"] = wait_quiet(args.quiet_wait, args.quiet_cpu)
            rec["probe"] = capacity_probe(args.probe_s)
            print(f"[{r}] machine before the repeat: other processes used "
                  f"{rec.get('pre_quiet', {}).get('foreign_cpus', float('nan')):.2f} CPUs"
                  + (f" after waiting {rec['pre_quiet']['waited_s']:.0f} s" if 'pre_quiet' in rec else "")
                  + (f"; two CPU-bound processes got {rec['probe']['capacity_cpus']:.2f} CPUs"
                     if rec["probe"] else ""), flush=True)
            for what in order:
                load0 = os.getloadavg()[0]
                if what == "seq":
                    s = run_sequential(proto, args.seq_blas_threads)
                    rec.update(seq_s=s["seq_s"], seq_trial_s=s["trial_s"], seq_nrmse=s["nrmse"],
                               seq_best_trial=s["best_trial"], params=s["params"], seq_cpu_s=s["own_cpu_s"],
                               seq_foreign_cpus=s["foreign_cpus"], seq_steal_cpus=s["steal_cpus"])
                    print(f"[{r}] sequential: {s['seq_s']:.2f} s ({s['seq_s'] / n_trials:.2f} s/trial), "
                          f"CPU {s['own_cpu_s']:.1f} s; meanwhile other processes used {s['foreign_cpus']:.2f} CPUs, "
                          f"stolen {s['steal_cpus']:.2f}", flush=True)
                else:
                    b = run_bench(proto, args, stores, probe=(r == 0))
                    if not args.warm_workers:
                        ray.shutdown()   # the next repeat starts a fresh Ray (never `ray stop`)
                    rec.update({k: v for k, v in b.items() if k not in ("nrmse", "own_cpu_s", "foreign_cpus",
                                                                          "steal_cpus")},
                               bench_nrmse=b["nrmse"], bench_cpu_s=b["own_cpu_s"],
                               bench_foreign_cpus=b["foreign_cpus"], bench_steal_cpus=b["steal_cpus"])
                    print(f"[{r}] bench: {b['bench_wall_s']:.2f} s wall = Ray start-up {b['ray_startup_s']:.2f} s "
                          f"+ setup {b['setup_s']:.2f} s + sweep {b['sweep_s']:.2f} s on {b['cores_used']} cores "
                          f"({b['worker_processes']} worker processes); "
                          f"CPU {b['own_cpu_s']:.1f} s (this process, Ray and its workers); meanwhile other "
                          f"processes used {b['foreign_cpus']:.2f} CPUs, stolen {b['steal_cpus']:.2f}", flush=True)
                rec[f"{what}_loadavg_1min"] = [load0, os.getloadavg()[0]]
            diffs = [abs(a - b) for a, b in zip(rec["seq_nrmse"], rec["bench_nrmse"])]
            rec["max_abs_nrmse_diff"] = max(diffs)
            rec["same_metrics"] = all(st == "complete" for st in rec["status"]) and rec["max_abs_nrmse_diff"] <= TOL
            rec["speedup_wall"] = rec["seq_s"] / rec["bench_wall_s"]
            rec["speedup_sweep"] = rec["seq_s"] / rec["sweep_s"]
            rec["overhead_per_trial_s"] = (rec["sweep_s"] * rec["cores_used"] - rec["seq_s"]) / n_trials
            worker_total = float(np.nansum(rec["worker_trial_s"]))
            rec["in_trial_overhead_per_trial_s"] = (worker_total - rec["seq_s"]) / n_trials
            rec["outside_trial_overhead_per_trial_s"] = (
                rec["sweep_s"] * rec["cores_used"] - worker_total) / n_trials
            best = rec["best"]
            rec["best_is_sequential_best"] = best is not None and best["trial"] == rec["seq_best_trial"]
            rec["worker_extra_cpu_per_worker_s"] = (rec["cpu_workers_s"] - rec["seq_cpu_s"]) / rec["cores_used"]
            print(f"[{r}] speed-up {rec['speedup_wall']:.2f}x wall (with Ray start-up), "
                  f"{rec['speedup_sweep']:.2f}x sweep only; overhead {rec['overhead_per_trial_s']:.2f} s/trial "
                  f"(in-trial {rec['in_trial_overhead_per_trial_s']:.2f}, "
                  f"outside {rec['outside_trial_overhead_per_trial_s']:.2f}); "
                  f"same NRMSE per trial: {rec['same_metrics']} (max |diff| {rec['max_abs_nrmse_diff']:.1e}); "
                  f"best: trial {best['trial']}", flush=True)
            repeats.append(rec)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(stores, ignore_errors=True)

    keys = ["seq_s", "bench_wall_s", "ray_startup_s", "setup_s", "sweep_s", "speedup_wall", "speedup_sweep",
            "overhead_per_trial_s", "in_trial_overhead_per_trial_s", "outside_trial_overhead_per_trial_s",
            "seq_cpu_s", "bench_cpu_s", "cpu_self_s", "cpu_ray_services_s", "cpu_workers_s",
            "worker_extra_cpu_per_worker_s", "seq_foreign_cpus", "bench_foreign_cpus", "seq_steal_cpus",
            "bench_steal_cpus"]
    stats = {k: summarise([rec[k] for rec in repeats]) for k in keys}
    stats["seq_per_trial_s"] = summarise([rec["seq_s"] / n_trials for rec in repeats])
    stats["worker_per_trial_s"] = summarise([float(np.nanmean(rec["worker_trial_s"])) for rec in repeats])
    if all(rec["probe"] for rec in repeats):
        stats["capacity_cpus"] = summarise([rec["probe"]["capacity_cpus"] for rec in repeats])
    best = repeats[0]["best"]
    metric_ok = all(rec["same_metrics"] for rec in repeats)
    best_ok = all(rec["best"] == best and rec["best_is_sequential_best"] for rec in repeats)
    accept = {
        "target": TARGET,
        "speedup_wall_median": stats["speedup_wall"]["median"],
        "speedup_sweep_median": stats["speedup_sweep"]["median"],
        "pass_wall": stats["speedup_wall"]["median"] >= TARGET,
        "pass_sweep_only": stats["speedup_sweep"]["median"] >= TARGET,
        "summary_names_best": best is not None and best_ok,
    }
    import labbench
    import numba

    result = {
        "benchmark": "sweep_scaling",
        "command": "python bench/sweep_scaling.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": cpus, "cores_used": repeats[0]["cores_used"], "cluster_cpus": repeats[0]["cluster_cpus"],
                    "ray_nodes": repeats[0]["ray_nodes"], "ray_gcs_address": repeats[0]["gcs_address"],
                    "processor": _cpu_model(),
                    "python": platform.python_version(), "ray": ray.__version__, "numpy": np.__version__,
                    "numba": numba.__version__, "labbench": labbench.__version__},
        "config": {"protocol": str(PROTOCOL.relative_to(ROOT)), "n_trials": n_trials, "units": args.units,
                   "washout": args.washout, "train": args.train, "test": args.test, "block": args.block,
                   "repeats": args.repeats, "seq_blas_threads": args.seq_blas_threads,
                   "warm_workers": args.warm_workers, "warm_workers_ray_startup_s": warm_startup,
                   "probe_s": args.probe_s, "quiet_cpu": args.quiet_cpu, "quiet_wait_s": args.quiet_wait,
                   "grid": {k: v for k, v in proto.sweep.params.items()}, "budget": proto.sweep.budget},
        "warmup": {"seconds": warm_s, "note": "one small untimed trial in this process before timing: numba kernels "
                   "are compiled (or loaded) into numba's on-disk cache, so no JIT compilation is timed; fresh "
                   "Ray workers import labbench and load the cached kernels on their first trial, counted in the "
                   "bench's time" + (" (not here: --warm-workers)" if args.warm_workers else "")},
        "worker_env": repeats[0]["worker_env"],
        "stats": stats,
        "same_metrics": metric_ok,
        "max_abs_nrmse_diff": max(rec["max_abs_nrmse_diff"] for rec in repeats),
        "best": best,
        "acceptance": accept,
        "repeats": [{k: v for k, v in rec.items() if k != "worker_env"} for rec in repeats],
    }

    def fmt(k: str, unit: str = " s", nd: int = 2) -> str:
        s = stats[k]
        return f"{s['median']:.{nd}f}{unit} [{s['min']:.{nd}f}-{s['max']:.{nd}f}]"

    cores = repeats[0]["cores_used"]
    print("\n=== summary (median [min-max] over %d repeats) ===" % args.repeats)
    print(f"cores used by the bench: {cores} (cluster CPUs {repeats[0]['cluster_cpus']:.0f}, "
          f"{repeats[0]['ray_nodes']} node(s), GCS at {repeats[0]['gcs_address']}); "
          f"worker env: {repeats[0]['worker_env']}")
    print(f"sequential, one process:   {fmt('seq_s')}  ({fmt('seq_per_trial_s')} per trial)")
    print(f"bench wall, with Ray start-up: {fmt('bench_wall_s')}")
    print(f"  Ray start-up:            {fmt('ray_startup_s')}")
    print(f"  validation + store:      {fmt('setup_s')}")
    print(f"  sweep (without start-up): {fmt('sweep_s')}")
    print(f"speed-up, wall:            {fmt('speedup_wall', 'x')}")
    print(f"speed-up, sweep only:      {fmt('speedup_sweep', 'x')}")
    print(f"overhead per trial = (sweep_s x {cores} - seq_s) / {n_trials}: {fmt('overhead_per_trial_s')}")
    print(f"  of which in the trials' own compute: {fmt('in_trial_overhead_per_trial_s')}; "
          f"outside them: {fmt('outside_trial_overhead_per_trial_s')}")
    print(f"CPU-s used: sequential {fmt('seq_cpu_s')}, bench {fmt('bench_cpu_s')} = this process "
          f"{fmt('cpu_self_s')} + Ray's services {fmt('cpu_ray_services_s')} + workers {fmt('cpu_workers_s')}")
    print(f"  workers' CPU beyond the sequential run's, per worker (cold start: imports, cached kernels; "
          f"contention): {fmt('worker_extra_cpu_per_worker_s')}")
    print(f"machine noise: other processes used {fmt('seq_foreign_cpus', ' CPUs')} during the sequential runs and "
          f"{fmt('bench_foreign_cpus', ' CPUs')} during the bench runs; stolen by the hypervisor "
          f"{fmt('seq_steal_cpus', '')} / {fmt('bench_steal_cpus', '')} CPUs"
          + (f"; two CPU-bound processes got {fmt('capacity_cpus', ' CPUs')} before the repeats"
             if "capacity_cpus" in stats else ""))
    print(f"same NRMSE per trial in both paths (|diff| <= {TOL:g}): {metric_ok} "
          f"(max |diff| {result['max_abs_nrmse_diff']:.1e})")
    print(f"best trial (sweep summary): {best}; the sequential run's best too: {best_ok}")
    verdict = "PASS" if accept["pass_wall"] else "FAIL"
    print(f"acceptance (>= {TARGET}x, median, with Ray start-up): {verdict} ({accept['speedup_wall_median']:.2f}x); "
          f"sweep only: {'PASS' if accept['pass_sweep_only'] else 'FAIL'} ({accept['speedup_sweep_median']:.2f}x)")

    if args.no_write:
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    args.md.write_text(markdown(result, args))
    print(f"wrote {args.out} and {args.md}")


def markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    st, cfg, acc, m = res["stats"], res["config"], res["acceptance"], res["machine"]
    n = cfg["n_trials"]
    cores = m["cores_used"]

    def row(label: str, k: str, unit: str = "s", nd: int = 2) -> str:
        s = st[k]
        return f"| {label} | {s['median']:.{nd}f} {unit} | {s['min']:.{nd}f}–{s['max']:.{nd}f} {unit} |"

    grid = ", ".join(f"`{k}` = {v}" for k, v in cfg["grid"].items())
    foreign = [rec[k] for rec in res["repeats"] for k in ("seq_foreign_cpus", "bench_foreign_cpus")]
    best = res["best"]
    env = (res.get("worker_env") or [{}])[0]
    wenv = (env.get("OMP_NUM_THREADS"), env.get("blas_threads"))
    best_txt = ", ".join(f"`{k}` = {v}" for k, v in best.items() if k not in ("trial", "status", "nrmse"))
    lines = [
        "## Sweeps: sequential vs through the bench (`bench/sweep_scaling.py`)",
        "",
        f"{n} ESN trials on NARMA-10 (`protocols/narma10_sweep.toml`: {grid}; {cfg['units']} units, "
        f"{cfg['washout']} + {cfg['train']} + {cfg['test']} steps in blocks of {cfg['block']}, ridge readout). "
        "The same trials run (1) one after another in one process, without Ray "
        "(`labbench.engine.trial.run_trial` on each of `trial_protocols(proto)`), and (2) through "
        "`labbench.engine.sweeper.run_sweep`, which starts a local Ray and runs one task per trial on every core, "
        "gathered into one sweep store. One small untimed trial first fills numba's on-disk cache, so neither "
        "side pays for JIT compilation. "
        + ("Here (`--warm-workers`) Ray was started and its workers warmed once, untimed, before the repeats: "
           "the numbers are the steady state without Ray start-up and worker cold start. "
           if cfg["warm_workers"] else
           "The fresh Ray workers still import labbench and load the cached kernels on their first trial, and "
           "that cost is counted. ")
        + f"Both sides use one BLAS thread per trial (checked in the workers: `OMP_NUM_THREADS={wenv[0]}`, as "
        f"Ray sets it for 1-CPU tasks, and BLAS threads {wenv[1]} in the {len(wenv[1] or [])} BLAS libraries "
        f"loaded; the sequential run limits BLAS with threadpoolctl, `--seq-blas-threads {cfg['seq_blas_threads']}`).",
        "",
        "**Reproduce** (in the project's venv):",
        "",
        "```bash",
        f"{res['command'].strip():<40} # these numbers -> bench/results/sweep_scaling.json and .md",
        "python bench/sweep_scaling.py --help     # trials, units, run lengths, repeats, BLAS threads",
        "```",
        "",
        f"Machine: {m['cpus']} cores ({m['processor']}), Python {m['python']}, Ray {m['ray']}, numba {m['numba']}; "
        f"the bench used {cores} cores (one trial per core). The machine is shared with other jobs; during "
        f"these measurements they used {min(foreign):.2f}–{max(foreign):.2f} CPUs (rows at the end of the table). "
        f"Median and range over {cfg['repeats']} repeat{'s' if cfg['repeats'] != 1 else ''}; the order of the two "
        "paths alternates between repeats.",
        "",
        "| | median | min–max |",
        "|---|---|---|",
        row("sequential, one process", "seq_s"),
        row("  per trial", "seq_per_trial_s"),
        row("through the bench, wall (with Ray start-up)", "bench_wall_s"),
        row("  Ray start-up", "ray_startup_s"),
        row("  validation and store creation", "setup_s"),
        row("  sweep (first trial submitted to last trial written)", "sweep_s"),
        row("  a trial's own time in a worker (mean)", "worker_per_trial_s"),
        row("speed-up, wall", "speedup_wall", "×"),
        row("speed-up, sweep only", "speedup_sweep", "×"),
        row(f"overhead per trial, (sweep × {cores} − sequential) / {n}", "overhead_per_trial_s"),
        row("  in the trials' own compute", "in_trial_overhead_per_trial_s"),
        row("  outside them (worker start, dispatch, writer, idle cores)", "outside_trial_overhead_per_trial_s"),
        row("CPU time, sequential (this process)", "seq_cpu_s"),
        row("CPU time, bench, all processes", "bench_cpu_s"),
        row("  this process (Ray start-up and client, dispatch, store writer)", "cpu_self_s"),
        row("  Ray's services (GCS, raylet, dashboard, agents, monitors)", "cpu_ray_services_s"),
        row("  Ray's workers (the trials, imports, loading cached kernels)", "cpu_workers_s"),
        row(f"  workers' CPU beyond the sequential run's, per worker ({cores} workers)",
            "worker_extra_cpu_per_worker_s"),
        row("other jobs' CPU use during the sequential run", "seq_foreign_cpus", "CPUs"),
        row("other jobs' CPU use during the bench run", "bench_foreign_cpus", "CPUs"),
        row("CPU stolen by the hypervisor during the sequential run", "seq_steal_cpus", "CPUs"),
        row("CPU stolen by the hypervisor during the bench run", "bench_steal_cpus", "CPUs"),
        *([row("CPUs two CPU-bound processes got, before each repeat (2.00 = both cores free)",
               "capacity_cpus", "CPUs")] if "capacity_cpus" in st else []),
        "",
        f"Both paths gave the same test NRMSE for every trial: "
        f"{'yes' if res['same_metrics'] else 'NO'} (largest difference {res['max_abs_nrmse_diff']:.1e}, "
        f"tolerance {TOL:g}). The sweep's summary names trial {best['trial']} as the best ({best_txt}: "
        f"NRMSE {best['nrmse']:.4f}), the trial with the lowest NRMSE in the sequential run too"
        f"{'' if acc['summary_names_best'] else ' — NOT in every repeat'}.",
        "",
        f"**Acceptance** (issue 5: ≥ {TARGET}× on the 2-core machine, median): "
        f"**{'PASS' if acc['pass_wall'] else 'FAIL'}** with Ray start-up included "
        f"({acc['speedup_wall_median']:.2f}×); {'PASS' if acc['pass_sweep_only'] else 'FAIL'} for the sweep alone "
        f"({acc['speedup_sweep_median']:.2f}×); the summary names the best trial: "
        f"{'PASS' if acc['summary_names_best'] else 'FAIL'}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
