"""Unsupervised STDP digit recognition (Diehl & Cook 2015) on scikit-learn's 8x8 digits.

Data, exactly as the ``digits`` task with the ``poisson`` driver produces them:
``sklearn.datasets.load_digits()`` (1797 images of 8x8 pixels, values 0..16); split
``perm = np.random.default_rng(0).permutation(1797)``, train pool ``perm[:1300]``, test
``perm[1300:]`` (497 images). Each image is shown for ``present`` steps of dt = 1 ms as
Poisson spikes, input channel i spiking in a step with probability
``min(1, pixel_i / 16 * max_rate * dt / 1000)``, then ``rest`` steps without input.

Procedure for one seed s (tests/test_stdp.py runs the "fast" configuration's seed 0 the
same way): ``rng = np.random.default_rng(s + 1)``; the layer is ``STDPLayer(seed=s,
**params)``. For each epoch the train pool is shuffled with ``rng`` and streamed through
``partial_fit_transform`` (one call per epoch; the dynamic state runs on across images).
Then, with plasticity off, a labelling pass over the train pool in its original order and
a test pass (``transform``), on rasters drawn once and shared by every layer of that
seed. A neuron's response to an image is its spike count over the presentation
(``pool_sequences(..., how="sum")``); ``VoteClassifier`` labels each neuron with the class
it answers most and predicts by the labelled neurons' mean response.

Reported per configuration and seed:
- ``acc_trained``: labels from the separate labelling pass (primary figure: the final
  weights and thresholds label themselves, with no plasticity or threshold drift
  during labelling);
- ``acc_trained_last_epoch``: labels from the spike counts of the last training epoch
  (what a trainer gets from ``partial_fit_transform`` without an extra pass);
- ``acc_untrained``: the same layer with its initial weights (``partial_fit(X[:0])``
  draws them, nothing is learned), labelled and tested with ``transform`` on the same
  rasters;
- ``acc_triplet``: the same, trained with the triplet rule instead of the pair rule;
- train time, spikes per test image, silent test images, neurons used.

Configurations: "fast" (the pytest configuration: 100 neurons, one epoch), "protocol"
(200 neurons, three epochs: protocols/digits_stdp.toml) and "n400" (400 neurons, three
epochs), each with the Euclidean weight normalisation (norm_ord=2) and with Diehl &
Cook's sum normalisation (suffix "_l1").

Usage:  python bench/stdp_digits.py           # every configuration, seeds 0-2 (~15 min)
        python bench/stdp_digits.py --quick   # "fast" configurations, seed 0 (~1 min)
Results: bench/results/stdp_digits.json (--quick: stdp_digits_quick.json). Timings were
taken on a shared machine: other jobs ran at the same time (load average recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "stdp_digits.json"
DEFAULT_OUT_QUICK = ROOT / "bench" / "results" / "stdp_digits_quick.json"

# Stimulus: 200 ms of Poisson spikes up to 150 Hz per image, 50 ms of silence.
STIMULUS = dict(present=200, rest=50, max_rate=150.0)

# Layer hyperparameters (the rest are STDPLayer's defaults: hard WTA, a_minus=1e-4,
# tau_plus=tau_minus=20 ms, w in [0, 1], w0 ~ U(0, 0.3), tau_e=1 ms, v_rest=v_reset=-65 mV,
# v_thresh=-52 mV, t_ref=5 ms, norm_every=10, dt=1 ms).
PAIR = dict(rule="pair", a_plus=0.02, traces="nearest", tau_m=50.0, theta_plus=0.05,
            tau_theta=2e4)
# Triplet rule (Pfister & Gerstner 2006, minimal: A3- = 0): half of the pair rule's
# potentiation is kept as A2+, and an equal A3+ multiplies the slow post trace o2, with
# tau_y = 40 ms as the slow post trace of Diehl & Cook's code (whose rule is A2+ = 0).
TRIPLET = dict(PAIR, rule="triplet", a_plus=0.01, a3_plus=0.01, a3_minus=0.0, tau_y=40.0)
L2 = dict(norm_ord=2, norm_total=3.5)
L1 = dict(norm_ord=1, norm_total=20.0)

CONFIGS: dict[str, dict[str, Any]] = {
    "fast": dict(n_neurons=100, epochs=1, norm=L2),
    "fast_l1": dict(n_neurons=100, epochs=1, norm=L1),
    "protocol": dict(n_neurons=200, epochs=3, norm=L2),
    "protocol_l1": dict(n_neurons=200, epochs=3, norm=L1),
    "n400": dict(n_neurons=400, epochs=3, norm=L2),
    "n400_l1": dict(n_neurons=400, epochs=3, norm=L1),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    perm = np.random.default_rng(0).permutation(len(digits.data))
    return digits.data, digits.target, perm[:1300], perm[1300:]


def poisson_digits(images: np.ndarray, present: int, rest: int, max_rate: float,
                   rng: np.random.Generator, dt: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Spike raster (n * (present + rest), 64) and sequence ids (-1 on rest rows)."""
    n, width = images.shape
    p = np.minimum(1.0, images / 16.0 * max_rate * dt / 1000.0)
    S = np.zeros((n, present + rest, width), dtype=bool)
    S[:, :present] = rng.random((n, present, width)) < p[:, None, :]
    seq = np.full((n, present + rest), -1, dtype=np.int64)
    seq[:, :present] = np.arange(n)[:, None]
    return S.reshape(-1, width), seq.ravel()


def vote_accuracy(label_counts, label_y, test_counts, test_y) -> float:
    from labbench.readouts.labelling import VoteClassifier

    vote = VoteClassifier(classes=np.arange(10)).fit(label_counts, label_y)
    return float((vote.predict(test_counts) == test_y).mean())


def run_seed(name: str, seed: int, data) -> dict[str, Any]:
    from labbench.readouts.pooling import pool_sequences
    from labbench.readouts.stdp import STDPLayer

    X, y, train, test = data
    cfg = CONFIGS[name]
    stim = STIMULUS
    rng = np.random.default_rng(seed + 1)
    epochs = cfg["epochs"]
    orders = []
    for _ in range(epochs):
        orders.append(train[rng.permutation(len(train))])
    # rasters are drawn in the order the test file draws them: epoch after epoch, then the
    # labelling and test passes
    rasters = []
    for order in orders:
        rasters.append(poisson_digits(X[order], stim["present"], stim["rest"], stim["max_rate"], rng))
    lab_S, lab_seq = poisson_digits(X[train], stim["present"], stim["rest"], stim["max_rate"], rng)
    te_S, te_seq = poisson_digits(X[test], stim["present"], stim["rest"], stim["max_rate"], rng)

    def counts(out, seq):
        return pool_sequences(out, seq, how="sum")[0]

    res: dict[str, Any] = {"config": name, "seed": seed}
    for rule, params in (("pair", PAIR), ("triplet", TRIPLET)):
        layer = STDPLayer(n_neurons=cfg["n_neurons"], seed=seed, **params, **cfg["norm"])
        t0 = time.perf_counter()
        for k, (S, seq) in enumerate(rasters):
            out = layer.partial_fit_transform(S)
        train_s = time.perf_counter() - t0
        last_counts, last_y = counts(out, seq), y[orders[-1]]
        t0 = time.perf_counter()
        lab_counts = counts(layer.transform(lab_S), lab_seq)
        te_counts = counts(layer.transform(te_S), te_seq)
        eval_s = time.perf_counter() - t0
        acc = vote_accuracy(lab_counts, y[train], te_counts, y[test])
        acc_last = vote_accuracy(last_counts, last_y, te_counts, y[test])
        steps = sum(len(S) for S, _ in rasters)
        res[rule] = {
            "acc_trained": acc, "acc_trained_last_epoch": acc_last,
            "train_s": train_s, "train_steps": steps, "train_steps_per_s": steps / train_s,
            "eval_s": eval_s, "spikes_per_test_image": float(te_counts.sum(1).mean()),
            "silent_test_images": float((te_counts.sum(1) == 0).mean()),
            "neurons_winning_a_test_image": int(len(np.unique(te_counts.argmax(1)))),
            "theta_mean_mV": float(layer.theta_.mean()),
        }
        if rule == "pair":
            untrained = STDPLayer(n_neurons=cfg["n_neurons"], seed=seed, **params, **cfg["norm"])
            untrained.partial_fit(np.zeros((0, X.shape[1])))
            u_lab = counts(untrained.transform(lab_S), lab_seq)
            u_te = counts(untrained.transform(te_S), te_seq)
            res["acc_untrained"] = vote_accuracy(u_lab, y[train], u_te, y[test])
            res["untrained_spikes_per_test_image"] = float(u_te.sum(1).mean())
    res["loadavg_1min"] = round(os.getloadavg()[0], 2)
    log(json.dumps(res))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the fast configurations, seed 0")
    ap.add_argument("--configs", nargs="*", choices=list(CONFIGS), default=None)
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    configs = args.configs or (["fast", "fast_l1"] if args.quick else list(CONFIGS))
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    out_path = args.out or (DEFAULT_OUT_QUICK if args.quick else DEFAULT_OUT)

    import numba
    import sklearn

    data = load_split()
    # compile (or load from numba's cache) before timing anything
    from labbench.readouts.stdp import STDPLayer
    t0 = time.perf_counter()
    STDPLayer(n_neurons=2).fit(np.zeros((3, 64)))
    jit_s = time.perf_counter() - t0

    runs = [run_seed(name, s, data) for name in configs for s in seeds]
    summary = {}
    for name in configs:
        rs = [r for r in runs if r["config"] == name]
        summary[name] = {
            "n_neurons": CONFIGS[name]["n_neurons"], "epochs": CONFIGS[name]["epochs"],
            "norm": CONFIGS[name]["norm"], "seeds": [r["seed"] for r in rs],
            "acc_pair": mean(r["pair"]["acc_trained"] for r in rs),
            "acc_pair_min": min(r["pair"]["acc_trained"] for r in rs),
            "acc_pair_last_epoch_labels": mean(r["pair"]["acc_trained_last_epoch"] for r in rs),
            "acc_triplet": mean(r["triplet"]["acc_trained"] for r in rs),
            "acc_triplet_last_epoch_labels": mean(r["triplet"]["acc_trained_last_epoch"] for r in rs),
            "acc_untrained": mean(r["acc_untrained"] for r in rs),
            "acc_untrained_max": max(r["acc_untrained"] for r in rs),
            "train_s_pair": mean(r["pair"]["train_s"] for r in rs),
            "train_steps_per_s_pair": mean(r["pair"]["train_steps_per_s"] for r in rs),
        }
    result = {
        "stimulus": STIMULUS, "dt_ms": 1.0, "pair_params": PAIR, "triplet_params": TRIPLET,
        "configs": {k: CONFIGS[k] for k in configs}, "summary": summary, "runs": runs,
        "jit_or_cache_load_s": jit_s,
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "numba": numba.__version__, "scikit-learn": sklearn.__version__},
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "note": "shared machine: other jobs ran at the same time"},
    }
    print(f"\n{'config':12s} {'neurons':>7s} {'epochs':>6s} {'pair':>6s} {'(last ep.)':>10s} "
          f"{'triplet':>7s} {'untrained':>9s} {'train s':>8s}")
    for name, s in summary.items():
        print(f"{name:12s} {s['n_neurons']:7d} {s['epochs']:6d} {s['acc_pair']:6.3f} "
              f"{s['acc_pair_last_epoch_labels']:10.3f} {s['acc_triplet']:7.3f} "
              f"{s['acc_untrained']:9.3f} {s['train_s_pair']:8.2f}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {out_path}")


if __name__ == "__main__":
    main()
