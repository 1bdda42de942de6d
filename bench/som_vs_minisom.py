"""labbench's self-organizing map against MiniSom 2.3.6, side by side in one process.

Both libraries run in the same Python process, on the same data, with the same map
size, hyperparameters and number of iterations, and their repeats are interleaved:
within each round every implementation runs once and the order rotates from one round
to the next (timings on the project's 2-vCPU VMs drift between runs; only ratios taken
this way mean much). Figures are medians over the repeats with (min-max).

Data
----
- digits: scikit-learn's ``load_digits`` (1797 x 64), divided by 16 so every pixel is
  in [0, 1], the same array for both libraries.
- gmm: a 10-component Gaussian mixture, 20 000 x 32: centres uniform in [0, 1]^32,
  isotropic noise of standard deviation 0.1 (``--data-seed``, default 0).

Parts
-----
(a) online: labbench ``SOM(mode="online").fit`` against MiniSom ``train_random``, maps
    10x10 and 20x20, Gaussian neighbourhood, ``asymptotic_decay`` for both learning rate
    and sigma, learning rate 0.5, sigma 1.0 (MiniSom's defaults) and sigma = side / 4,
    n_iterations 20 000 (digits) and 50 000 (gmm). Repeat ``k`` uses seed ``k`` for
    both: MiniSom(random_seed=k) and SOM(init="random", random_state=k), which draw
    the same initial weights (MiniSom's own initialisation, reproduced bit for bit) and
    the same sample order, so the two runs are the same computation; the maximum
    absolute difference of the final weights is recorded to show it. A third row,
    "labbench, own order", starts from a copy of MiniSom's initial weights
    (``init=W0``) but draws its own sample order (random_state=k + 1000): its
    quantization error shows the spread that the sample order alone causes.
(b) batch: labbench ``SOM(mode="batch").fit`` (Batch Map, Kohonen 2001 section 3.14)
    against MiniSom ``train_batch_offline`` (MiniSom 2.3.6's batch algorithm; its
    ``train_batch`` is NOT a batch SOM but sequential online training in data order).
    MiniSom blends the batch mean into the old weights with its learning rate; given
    ``learning_rate=1`` and a constant ``decay_function`` returning 1 it computes the
    pure Batch Map, as labbench does. Same maps and sigmas as (a), 10 epochs, starting
    from MiniSom's initial weights (copied into labbench with ``init=W0``).
(c) labelling: digits split ``perm = np.random.default_rng(0).permutation(1797)``,
    train ``perm[:1300]``, test ``perm[1300:]``; maps 10x10 and 15x15, sigma 1.0,
    learning rate 0.5, 20 000 online iterations on the training split, seeds 0-4. Each
    map's winners (labbench: ``SOM.transform``; MiniSom: ``winner`` of each sample,
    one-hot) feed labbench's ``VoteClassifier`` (Diehl & Cook unit labelling) fitted on
    the training split; accuracy on the test split.
(d) compile: the first ``fit`` in a fresh interpreter, with numba's cache empty
    (``NUMBA_CACHE_DIR`` pointing at a new temporary directory: JIT compile) and with
    the cache warm (load from the on-disk cache), against the warm call that follows;
    digits, 10x10, 20 000 iterations. Parts (a)-(c) time warm calls only (a warm-up
    ``fit`` runs first).

Quantization error (mean distance of each sample to its best-matching unit) and
topographic error (fraction of samples whose two best units are not 8-neighbours on
the grid) are MiniSom's definitions; both are computed by each library's own method
on the full dataset. Timing is ``time.perf_counter`` around the training call only
(for labbench that includes drawing the initial weights and the sample order); the
process CPU time of the call is recorded too. BLAS is limited to --blas-threads
(default 1) with threadpoolctl: MiniSom's per-sample training does not use BLAS,
labbench's online kernel neither, but its batch mode does. Each sample records the CPU
used by other processes while it ran (from /proc/stat); a sample during which they
used more than --quiet-cpu CPUs is redone, up to --max-tries times, keeping the least
disturbed.

Acceptance (per configuration of (a) and (b)): labbench's quantization error within 5%
of MiniSom's (ratio <= 1.05) and labbench at least as fast (median MiniSom time /
median labbench time >= 1).

Usage (in the project's venv, with MiniSom installed: ``pip install minisom==2.3.6``):

    python bench/som_vs_minisom.py             # full run (~10 min quiet; 31 min under load)
    python bench/som_vs_minisom.py --quick     # smoke run (a few minutes) -> ..._quick.json
    python bench/som_vs_minisom.py --parts online,labelling --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "som_vs_minisom.json"
DEFAULT_OUT_QUICK = ROOT / "bench" / "results" / "som_vs_minisom_quick.json"
PARTS = ("online", "batch", "labelling", "compile")
LEARNING_RATE = 0.5
QE_TOL = 1.05  # acceptance: labbench QE <= 1.05 x MiniSom's


# --------------------------------------------------------------------------- helpers
def summary(xs: list[float]) -> dict[str, Any]:
    xs = [float(x) for x in xs]
    return {"median": median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "samples": xs}


def fstat(s: dict[str, Any], fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def rotate(seq: list[Any], k: int) -> list[Any]:
    k %= len(seq)
    return seq[k:] + seq[:k]


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall, machine busy CPU-s, own process CPU-s)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = (v + [0] * 7)[:7]
    t = os.times()
    return time.perf_counter(), (user + nice + system + irq + softirq) / _TICK, t.user + t.system


def _foreign(a: tuple, b: tuple) -> float:
    wall = max(b[0] - a[0], 1e-9)
    return max(0.0, (b[1] - a[1]) - (b[2] - a[2])) / wall


class Timer:
    """Times calls, redoing those disturbed by other processes."""

    def __init__(self, quiet_cpu: float, max_tries: int) -> None:
        self.quiet_cpu = quiet_cpu
        self.max_tries = max_tries

    def __call__(self, setup: Callable[[], Any], run: Callable[[Any], Any]) -> dict[str, Any]:
        """Time ``run(setup())``, with a fresh ``setup()`` (untimed) for every try.

        Returns the kept try's object (``"obj"``), wall and CPU seconds, the CPU used by
        other processes meanwhile (``"foreign_cpu"``, in CPUs) and the number of tries.
        A try disturbed by more than ``quiet_cpu`` foreign CPUs is redone, up to
        ``max_tries`` in all, and the least disturbed try is kept.
        """
        best = None
        for i in range(self.max_tries):
            obj = setup()
            a = _cpu_snapshot()
            c0 = time.process_time()
            t0 = time.perf_counter()
            run(obj)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            load = _foreign(a, _cpu_snapshot())
            if best is None or load < best["foreign_cpu"]:
                best = {"obj": obj, "wall_s": wall, "cpu_s": cpu, "foreign_cpu": round(load, 3)}
            if load <= self.quiet_cpu:
                break
            time.sleep(2.0)
        best["tries"] = i + 1
        return best


def machine_info(blas_threads: int) -> dict[str, Any]:
    import minisom
    import numba
    import scipy
    import sklearn
    import threadpoolctl

    cpu: dict[str, str] = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                cpu.setdefault(k, v)

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    return {
        "cpu_model": cpu.get("model name", platform.processor()),
        "logical_cpus": os.cpu_count(),
        "hypervisor": "hypervisor" in cpu.get("flags", "").split(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "scikit-learn": sklearn.__version__,
        "minisom": getattr(minisom, "__version__", None) or _dist_version("minisom"),
        "blas": [{k: d.get(k) for k in ("internal_api", "version", "architecture")}
                 for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"],
        "blas_threads_limit": blas_threads,
        "git_head": git("rev-parse", "HEAD"),
        "git_dirty_som": git("status", "--porcelain", "--", "readouts/som.py"),
        "loadavg_start": os.getloadavg(),
    }


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- data
def load_data(data_seed: int) -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(data_seed)
    centres = rng.uniform(0.0, 1.0, (10, 32))
    labels = rng.integers(0, 10, 20_000)
    gmm = centres[labels] + 0.1 * rng.standard_normal((20_000, 32))
    return {"digits": digits.data / 16.0, "digits_target": digits.target, "gmm": gmm}


def one_hot(winners: np.ndarray, n_units: int) -> np.ndarray:
    out = np.zeros((winners.shape[0], n_units), dtype=np.float32)
    out[np.arange(winners.shape[0]), winners] = 1.0
    return out


def minisom_winners(m, X: np.ndarray) -> np.ndarray:
    """Flat (row-major) index of MiniSom's winner for each sample, via its public ``winner``."""
    shape = m.get_weights().shape[:2]
    return np.array([np.ravel_multi_index(m.winner(x), shape) for x in X], dtype=np.int64)


def _unit_lr(learning_rate: float, t: int, max_iter: int) -> float:
    """MiniSom decay_function that keeps the learning rate at 1 (pure Batch Map)."""
    return 1.0


# --------------------------------------------------------------------------- parts
def part_online(data, configs, repeats, timer, log) -> list[dict[str, Any]]:
    from minisom import MiniSom

    from labbench.readouts.som import SOM

    out = []
    for name, side, sigma, n_iter in configs:
        X = data[name]
        nf = X.shape[1]
        log(f"(a) online {name} {side}x{side} sigma={sigma} n_iterations={n_iter}")
        SOM(side, side, sigma=sigma, n_iterations=200, random_state=0).fit(X)  # warm-up (JIT)
        rec: dict[str, dict[str, list]] = {k: {} for k in ("minisom", "labbench", "labbench_own_order")}
        max_dw = []
        for k in range(repeats):
            W0 = MiniSom(side, side, nf, sigma=sigma, learning_rate=LEARNING_RATE, random_seed=k).get_weights().copy()
            runs = {
                "minisom": (lambda k=k: MiniSom(side, side, nf, sigma=sigma, learning_rate=LEARNING_RATE,
                                                random_seed=k),
                            lambda m: m.train_random(X, n_iter)),
                "labbench": (lambda k=k: SOM(side, side, sigma=sigma, learning_rate=LEARNING_RATE,
                                             n_iterations=n_iter, random_state=k),
                             lambda s: s.fit(X)),
                "labbench_own_order": (lambda k=k, W0=W0: SOM(side, side, sigma=sigma, learning_rate=LEARNING_RATE,
                                                              n_iterations=n_iter, init=W0, random_state=k + 1000),
                                       lambda s: s.fit(X)),
            }
            trained = {}
            for impl in rotate(list(runs), k):
                t = timer(*runs[impl])
                trained[impl] = t["obj"]
                for key in ("wall_s", "cpu_s", "foreign_cpu", "tries"):
                    rec[impl].setdefault(key, []).append(t[key])
            m, ours, own = trained["minisom"], trained["labbench"], trained["labbench_own_order"]
            rec["minisom"].setdefault("qe", []).append(float(m.quantization_error(X)))
            rec["minisom"].setdefault("te", []).append(float(m.topographic_error(X)))
            for impl, est in (("labbench", ours), ("labbench_own_order", own)):
                rec[impl].setdefault("qe", []).append(est.quantization_error(X))
                rec[impl].setdefault("te", []).append(est.topographic_error(X))
            max_dw.append(float(np.abs(ours.weights_ - m.get_weights()).max()))
        res = _summarise(name, side, sigma, n_iter, X.shape, rec)
        res["max_abs_weight_diff_same_seed"] = max_dw
        out.append(res)
        log("   " + _line(res))
    return out


def part_batch(data, configs, repeats, timer, log) -> list[dict[str, Any]]:
    from minisom import MiniSom

    from labbench.readouts.som import SOM

    out = []
    for name, side, sigma, epochs in configs:
        X = data[name]
        nf = X.shape[1]
        log(f"(b) batch {name} {side}x{side} sigma={sigma} epochs={epochs}")
        SOM(side, side, sigma=sigma, n_iterations=1, mode="batch", random_state=0).fit(X)  # warm-up
        rec: dict[str, dict[str, list]] = {k: {} for k in ("minisom", "labbench")}
        max_dw = []
        for k in range(repeats):
            def make_minisom(k=k):
                return MiniSom(side, side, nf, sigma=sigma, learning_rate=1.0, decay_function=_unit_lr,
                               random_seed=k)

            W0 = make_minisom().get_weights().copy()
            runs = {
                "minisom": (make_minisom, lambda m: m.train_batch_offline(X, epochs)),
                "labbench": (lambda W0=W0: SOM(side, side, sigma=sigma, n_iterations=epochs, mode="batch", init=W0),
                             lambda s: s.fit(X)),
            }
            trained = {}
            for impl in rotate(list(runs), k):
                t = timer(*runs[impl])
                trained[impl] = t["obj"]
                for key in ("wall_s", "cpu_s", "foreign_cpu", "tries"):
                    rec[impl].setdefault(key, []).append(t[key])
            m, ours = trained["minisom"], trained["labbench"]
            rec["minisom"].setdefault("qe", []).append(float(m.quantization_error(X)))
            rec["minisom"].setdefault("te", []).append(float(m.topographic_error(X)))
            rec["labbench"].setdefault("qe", []).append(ours.quantization_error(X))
            rec["labbench"].setdefault("te", []).append(ours.topographic_error(X))
            max_dw.append(float(np.abs(ours.weights_ - m.get_weights()).max()))
        res = _summarise(name, side, sigma, epochs, X.shape, rec)
        res["max_abs_weight_diff_same_init"] = max_dw
        out.append(res)
        log("   " + _line(res))
    return out


def part_labelling(data, sides, seeds, n_iter, log) -> list[dict[str, Any]]:
    from minisom import MiniSom

    from labbench.readouts.labelling import VoteClassifier
    from labbench.readouts.som import SOM

    X, y = data["digits"], data["digits_target"]
    perm = np.random.default_rng(0).permutation(1797)
    tr, te = perm[:1300], perm[1300:]
    out = []
    for side in sides:
        log(f"(c) labelling digits {side}x{side} sigma=1.0 n_iterations={n_iter} seeds={list(seeds)}")
        acc: dict[str, list[float]] = {"minisom": [], "labbench": [], "labbench_own_order": []}
        for k in seeds:
            m = MiniSom(side, side, X.shape[1], sigma=1.0, learning_rate=LEARNING_RATE, random_seed=k)
            W0 = m.get_weights().copy()
            m.train_random(X[tr], n_iter)
            ours = SOM(side, side, sigma=1.0, learning_rate=LEARNING_RATE, n_iterations=n_iter,
                       random_state=k).fit(X[tr])
            own = SOM(side, side, sigma=1.0, learning_rate=LEARNING_RATE, n_iterations=n_iter, init=W0,
                      random_state=k + 1000).fit(X[tr])
            feats = {"minisom": lambda Z: one_hot(minisom_winners(m, Z), side * side),
                     "labbench": ours.transform, "labbench_own_order": own.transform}
            for impl, f in feats.items():
                vc = VoteClassifier().fit(f(X[tr]), y[tr])
                acc[impl].append(float(np.mean(vc.predict(f(X[te])) == y[te])))
        res = {"map": f"{side}x{side}", "sigma": 1.0, "learning_rate": LEARNING_RATE, "n_iterations": n_iter,
               "seeds": list(seeds), "accuracy": {k: summary(v) for k, v in acc.items()}}
        out.append(res)
        log("   " + ", ".join(f"{k} {fstat(res['accuracy'][k], '{:.3f}')}" for k in acc))
    return out


_COMPILE_SNIPPET = r"""
import json, time, numpy as np
t0 = time.perf_counter()
from labbench.readouts.som import SOM
t_import = time.perf_counter() - t0
from sklearn.datasets import load_digits
X = load_digits().data / 16.0
s = SOM(10, 10, sigma=1.0, learning_rate=0.5, n_iterations=20000, random_state=0)
t = time.perf_counter(); s.fit(X); first = time.perf_counter() - t
t = time.perf_counter(); s.fit(X); warm = time.perf_counter() - t
print(json.dumps({"import_s": t_import, "first_fit_s": first, "warm_fit_s": warm}))
"""


def part_compile(repeats: int, log) -> dict[str, Any]:
    log("(d) first call: cold numba cache (compile) and warm cache (load), fresh interpreters")
    res: dict[str, Any] = {"cold_cache": [], "warm_cache": []}
    # make sure the project's own numba cache is current (written for this source)
    subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], cwd=ROOT, capture_output=True, timeout=600, check=True)
    for k in range(repeats):
        for which in rotate(["cold_cache", "warm_cache"], k):
            env = dict(os.environ)
            with tempfile.TemporaryDirectory() as tmp:
                if which == "cold_cache":
                    env["NUMBA_CACHE_DIR"] = tmp
                p = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env, cwd=ROOT,
                                   capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise RuntimeError(p.stderr)
            res[which].append(json.loads(p.stdout.strip().splitlines()[-1]))
    stats = {}
    for which in ("cold_cache", "warm_cache"):
        stats[which] = {key: summary([r[key] for r in res[which]])
                        for key in ("import_s", "first_fit_s", "warm_fit_s")}
    log("   " + "; ".join(f"{w}: first fit {fstat(s['first_fit_s'])} s, then {fstat(s['warm_fit_s'])} s"
                          for w, s in stats.items()))
    return {"config": "digits 10x10, sigma 1.0, 20 000 iterations", "raw": res, "stats": stats}


def _summarise(name, side, sigma, n, shape, rec) -> dict[str, Any]:
    stats = {impl: {k: summary(v) for k, v in r.items()} for impl, r in rec.items()}
    t_m = stats["minisom"]["wall_s"]["median"]
    t_o = stats["labbench"]["wall_s"]["median"]
    qe_m = stats["minisom"]["qe"]["median"]
    qe_o = stats["labbench"]["qe"]["median"]
    # paired ratios, repeat by repeat
    speed_pairs = [a / b for a, b in zip(rec["minisom"]["wall_s"], rec["labbench"]["wall_s"])]
    qe_pairs = [b / a for a, b in zip(rec["minisom"]["qe"], rec["labbench"]["qe"])]
    res = {
        "data": name, "shape": list(shape), "map": f"{side}x{side}", "sigma": sigma, "n": n,
        "stats": stats,
        "speedup_wall_median": t_m / t_o,
        "speedup_cpu_median": stats["minisom"]["cpu_s"]["median"] / stats["labbench"]["cpu_s"]["median"],
        "speedup_paired": summary(speed_pairs),
        "qe_ratio_median": qe_o / qe_m,
        "qe_ratio_paired": summary(qe_pairs),
    }
    if "labbench_own_order" in stats:
        res["qe_ratio_own_order_median"] = stats["labbench_own_order"]["qe"]["median"] / qe_m
    res["pass_qe"] = bool(res["qe_ratio_median"] <= QE_TOL and res.get("qe_ratio_own_order_median", 1.0) <= QE_TOL)
    res["pass_speed"] = bool(res["speedup_wall_median"] >= 1.0)
    return res


def _line(r: dict[str, Any]) -> str:
    s = r["stats"]
    own = f", own-order QE ratio {r['qe_ratio_own_order_median']:.3f}" if "qe_ratio_own_order_median" in r else ""
    return (f"MiniSom {fstat(s['minisom']['wall_s'])} s, labbench {fstat(s['labbench']['wall_s'])} s "
            f"(x{r['speedup_wall_median']:.1f}); QE {s['minisom']['qe']['median']:.4f} vs "
            f"{s['labbench']['qe']['median']:.4f} (ratio {r['qe_ratio_median']:.4f}{own}); TE "
            f"{s['minisom']['te']['median']:.3f} vs {s['labbench']['te']['median']:.3f}")


def markdown(results: dict[str, Any]) -> str:
    parts = []
    for key, title, n_label in (("online", "Online (train_random vs fit, mode='online')", "iterations"),
                                ("batch", "Batch (train_batch_offline vs fit, mode='batch')", "epochs")):
        rows = []
        for r in results.get(key, []):
            s = r["stats"]
            own = (f"{s['labbench_own_order']['qe']['median']:.4f}" if "labbench_own_order" in s else "–")
            rows.append([
                r["data"], r["map"], f"{r['sigma']:g}", f"{r['n']:,}",
                fstat(s["minisom"]["wall_s"]), fstat(s["labbench"]["wall_s"]),
                f"{r['speedup_wall_median']:.1f}×",
                f"{s['minisom']['qe']['median']:.4f}", f"{s['labbench']['qe']['median']:.4f}", own,
                f"{r['qe_ratio_median']:.4f}",
                f"{s['minisom']['te']['median']:.3f}", f"{s['labbench']['te']['median']:.3f}",
                "PASS" if r["pass_qe"] and r["pass_speed"] else "FAIL",
            ])
        if rows:
            parts.append(f"**{title}**\n\n" + table(
                ["data", "map", "σ", n_label, "MiniSom s", "labbench s", "speed-up", "QE MiniSom",
                 "QE labbench", "QE labbench own order", "QE ratio", "TE MiniSom", "TE labbench",
                 "accept"], rows))
    lab = results.get("labelling", [])
    if lab:
        rows = [[r["map"], f"{r['n_iterations']:,}", str(len(r["seeds"])),
                 fstat(r["accuracy"]["minisom"], "{:.3f}"), fstat(r["accuracy"]["labbench"], "{:.3f}"),
                 fstat(r["accuracy"]["labbench_own_order"], "{:.3f}")] for r in lab]
        parts.append("**Digits by unit labelling (VoteClassifier), test accuracy**\n\n" + table(
            ["map", "iterations", "seeds", "MiniSom", "labbench", "labbench own order"], rows))
    comp = results.get("compile")
    if comp:
        rows = [[w, fstat(s["import_s"]), fstat(s["first_fit_s"]), fstat(s["warm_fit_s"])]
                for w, s in comp["stats"].items()]
        parts.append(f"**First call ({comp['config']}), seconds**\n\n" + table(
            ["numba cache", "import", "first fit", "second fit"], rows))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer iterations and repeats")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per configuration (default 3, quick 1)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--blas-threads", type=int, default=1)
    ap.add_argument("--quiet-cpu", type=float, default=0.25,
                    help="redo a sample if other processes used more CPUs than this meanwhile")
    ap.add_argument("--max-tries", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {unknown}; known: {PARTS}")
    repeats = args.repeats or (1 if args.quick else 3)
    out_path = args.out or (DEFAULT_OUT_QUICK if args.quick else DEFAULT_OUT)

    import threadpoolctl

    def log(msg: str) -> None:
        print(msg, flush=True)

    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "command": "python bench/som_vs_minisom.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick, "repeats": repeats, "data_seed": args.data_seed,
        "quiet_cpu_threshold": args.quiet_cpu, "max_tries": args.max_tries,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine_info(args.blas_threads),
        "learning_rate": LEARNING_RATE, "decay": "asymptotic (both learning rate and sigma)",
        "neighbourhood": "gaussian", "topology": "rectangular",
    }
    data = load_data(args.data_seed)
    timer = Timer(args.quiet_cpu, args.max_tries)
    sides = (10, 20)
    n_online = {"digits": 5_000 if args.quick else 20_000, "gmm": 10_000 if args.quick else 50_000}
    epochs = 3 if args.quick else 10
    online_cfg = [(name, side, sigma, n_online[name]) for name in ("digits", "gmm") for side in sides
                  for sigma in (1.0, side / 4)]
    batch_cfg = [(name, side, sigma, epochs) for name in ("digits", "gmm") for side in sides
                 for sigma in (1.0, side / 4)]
    if args.quick:
        batch_cfg = [c for c in batch_cfg if not (c[0] == "gmm" and c[1] == 20)]

    with threadpoolctl.threadpool_limits(limits=args.blas_threads, user_api="blas"):
        if "online" in parts:
            results["online"] = part_online(data, online_cfg, repeats, timer, log)
        if "batch" in parts:
            results["batch"] = part_batch(data, batch_cfg, repeats, timer, log)
        if "labelling" in parts:
            seeds = range(2) if args.quick else range(5)
            results["labelling"] = part_labelling(data, (10, 15), seeds, 20_000, log)
    if "compile" in parts:
        results["compile"] = part_compile(1 if args.quick else 3, log)

    checks = []
    for key in ("online", "batch"):
        for r in results.get(key, []):
            checks.append({
                "part": key, "config": f"{r['data']} {r['map']} sigma={r['sigma']:g}",
                "qe_ratio": r["qe_ratio_median"], "speedup": r["speedup_wall_median"],
                "pass": r["pass_qe"] and r["pass_speed"],
            })
    results["acceptance"] = {"criteria": f"QE ratio labbench/MiniSom <= {QE_TOL} and speed-up >= 1",
                             "all_pass": all(c["pass"] for c in checks), "checks": checks}
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - t_start
    results["markdown"] = markdown(results)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=1) + "\n")
    log("\n" + results["markdown"])
    verdict = ("n/a" if not checks else "PASS" if results["acceptance"]["all_pass"] else "FAIL")
    log(f"\nacceptance: {verdict} "
        f"({sum(c['pass'] for c in checks)}/{len(checks)}); wrote {out_path} in {results['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
