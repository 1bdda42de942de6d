"""The in-silico culture: speed against real time, spontaneous bursts, evoked responses.

Three measurements on the default culture (``CultureParams()``: 1000 Izhikevich neurons
on the 8 x 8 MCS layout, dt = 0.5 ms):

1. **Speed.** Simulated seconds per wall-clock second. The culture is built and the
   kernel compiled first. Then it records 20 s in windows of 1 s (how the MEA driver
   calls it: a block of 50 rows of 20 ms), spontaneous activity only. This is done for
   several network sizes, and for N = 1000 also with STDP on and under 1 Hz stimulation.
2. **Spontaneous bursts.** ``--minutes`` of spontaneous activity (default 5) per seed, in
   windows of 10 s. Network bursts are detected on the array-wide detected spikes with
   :func:`labbench.drivers.mea.bursts.detect_bursts` (Wagenaar 2005/2006 burstlets,
   >= 4 electrodes). The report gives bursts per minute, burst durations, inter-burst
   intervals and the fraction of spikes in bursts, to compare with the ranges in
   docs/mea-culture.md.
3. **Evoked responses.** 60 pulses of 10 uA x 200 us (2 nC per phase) at 1 Hz on one
   electrode. Detected spikes per electrode and pulse are counted 5-20 ms and 5-50 ms
   after each pulse (and in the 45 ms before each pulse, as the baseline), on the
   stimulated electrode, its 8 neighbours (<= 283 um) and the electrodes >= 800 um away.

Usage:  python bench/culture_speed.py                 # ~2-3 min on the 2-core machine
        python bench/culture_speed.py --minutes 1 --seeds 0 --no-write   # smoke
Results: bench/results/culture_speed.json and .md (a section for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from labbench.drivers.mea.bursts import detect_bursts
from labbench.drivers.mea.culture import InSilicoCulture
from labbench.drivers.mea.stimulation import BiphasicPulse, ScheduledPulse

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "culture_speed.json"
OUT_MD = ROOT / "bench" / "results" / "culture_speed.md"
STIM_ELECTRODE = 27          # D4, near the centre of the 8 x 8 grid
PULSE = BiphasicPulse(10.0, 200.0)


def speed(params: dict, seconds: float = 20.0, window: float = 1.0, stim_hz: float = 0.0) -> dict:
    c = InSilicoCulture(params)
    t0 = time.perf_counter()
    c.open()
    build = time.perf_counter() - t0
    c.record(2.0, [])                  # compile (cached after the first run) and settle
    n_win = int(round(seconds / window))
    pulses = [ScheduledPulse(k / stim_hz, (STIM_ELECTRODE,), PULSE) for k in range(int(window * stim_hz))] \
        if stim_hz else []
    spikes = 0
    t0 = time.perf_counter()
    for _ in range(n_win):
        c.record(window, pulses)
        spikes += len(c.last_neuron_spikes[0])
    wall = time.perf_counter() - t0
    return {"n_neurons": c.params.n_neurons, "stdp": c.params.stdp, "stim_hz": stim_hz, "simulated_s": seconds,
            "window_s": window, "wall_s": wall, "realtime_factor": seconds / wall, "build_s": build,
            "mean_rate_hz": spikes / c.params.n_neurons / seconds, "synapses": int(len(c.weights))}


def spontaneous(seed: int, minutes: float) -> dict:
    c = InSilicoCulture({"seed": seed})
    c.open()
    total = minutes * 60.0
    ts, es = [], []
    n_neuron_spikes = 0
    t0 = time.perf_counter()
    for _ in range(int(round(total / 10.0))):
        w = c.record(10.0, [])
        ts.append(w.spikes.time_s)
        es.append(w.spikes.electrode)
        n_neuron_spikes += len(c.last_neuron_spikes[0])
    wall = time.perf_counter() - t0
    t, e = np.concatenate(ts), np.concatenate(es)
    b = detect_bursts(t, e, total)
    s = b.summary()
    d = b.durations_s
    s.update({"seed": seed, "wall_s": wall, "realtime_factor": total / wall,
              "neuron_rate_hz": n_neuron_spikes / c.params.n_neurons / total,
              "electrode_rate_hz": len(t) / total / int(c.layout.usable.sum()),
              "duration_p10_p90_s": [float(np.percentile(d, 10)), float(np.percentile(d, 90))] if len(d) else None,
              "max_duration_s": float(d.max()) if len(d) else None})
    return s


def evoked(seed: int = 0, n_pulses: int = 60) -> dict:
    c = InSilicoCulture({"seed": seed})
    c.open()
    c.record(5.0, [])
    pulses = [ScheduledPulse(0.5 + k, (STIM_ELECTRODE,), PULSE) for k in range(n_pulses)]
    w = c.record(n_pulses + 0.5, pulses)
    t, e = w.spikes.time_s, w.spikes.electrode
    onsets = w.start_s + np.array([p.t_s for p in pulses])
    pos = c.layout.positions_um()
    dist = np.hypot(*(pos - pos[STIM_ELECTRODE]).T)
    usable = c.layout.usable
    groups = {"stimulated": np.arange(64) == STIM_ELECTRODE,
              "neighbours (<= 283 um)": (dist > 0) & (dist <= 283) & usable,
              "far (>= 800 um)": (dist >= 800) & usable}

    def per_pulse(lo: float, hi: float) -> np.ndarray:
        counts = np.zeros(64)
        for p in onsets:
            m = (t >= p + lo) & (t < p + hi)
            np.add.at(counts, e[m], 1)
        return counts / len(onsets)

    windows = {"baseline (-45..0 ms)": per_pulse(-0.045, 0.0), "5-20 ms": per_pulse(0.005, 0.020),
               "5-50 ms": per_pulse(0.005, 0.050)}
    out = {name: {wn: float(c_[mask].mean()) for wn, c_ in windows.items()} for name, mask in groups.items()}
    nt, nn = c.last_neuron_spikes
    dn = np.hypot(*(c.positions_um - pos[STIM_ELECTRODE]).T)
    direct = {}
    for lo, hi in ((0, 100), (100, 200), (200, 400)):
        ring = (dn >= lo) & (dn < hi)
        fired = sum(len(np.unique(nn[(nt >= p) & (nt < p + 0.004) & ring[nn]])) for p in onsets)
        direct[f"{lo}-{hi} um"] = fired / len(onsets) / max(int(ring.sum()), 1)
    return {"electrode": STIM_ELECTRODE, "pulse": PULSE.to_dict(), "charge_nc": PULSE.charge_nc[0],
            "n_pulses": n_pulses, "rate_hz": 1.0, "spikes_per_electrode_per_pulse": out,
            "fraction_of_neurons_firing_within_4_ms": direct}


def markdown(res: dict) -> str:
    lines = ["## The in-silico culture (`bench/culture_speed.py`)", "",
             f"Default culture (`CultureParams()`: 1000 Izhikevich neurons, 8 x 8 MCS layout, dt = 0.5 ms). "
             f"Machine: {res['machine']['cpus']} cores, Python {res['machine']['python']}, numba "
             f"{res['machine']['numba']}.", "", "```bash", "python bench/culture_speed.py", "```", "",
             "### Speed (spontaneous activity, windows of 1 s)", "",
             "| neurons | STDP | stimulation | synapses | mean rate (Hz) | simulated s per wall s |",
             "|---|---|---|---|---|---|"]
    for s in res["speed"]:
        lines.append(f"| {s['n_neurons']} | {'on' if s['stdp'] else 'off'} | "
                     f"{'1 Hz, 2 nC' if s['stim_hz'] else '-'} | {s['synapses']:,} | {s['mean_rate_hz']:.2f} | "
                     f"**{s['realtime_factor']:.1f}x** |")
    lines += ["", f"### Spontaneous network bursts ({res['minutes']:g} simulated minutes per seed)", "",
              "| seed | bursts/min | median duration (s) | mean duration (s) | 10-90 % duration (s) | "
              "median IBI (s) | CV IBI | spikes in bursts | electrodes/burst | electrode rate (Hz) | "
              "simulated s per wall s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in res["spontaneous"]:
        p = s["duration_p10_p90_s"] or [float("nan")] * 2
        lines.append(f"| {s['seed']} | {s['bursts_per_min']:.1f} | {s['median_duration_s']:.3f} | "
                     f"{s['mean_duration_s']:.3f} | {p[0]:.3f}-{p[1]:.3f} | {s['median_ibi_s']:.2f} | "
                     f"{s['cv_ibi']:.2f} | {s['fraction_spikes_in_bursts']:.2f} | "
                     f"{s['mean_electrodes_per_burst']:.1f} | {s['electrode_rate_hz']:.2f} | "
                     f"{s['realtime_factor']:.1f}x |")
    ev = res["evoked"]
    lines += ["", f"### Evoked responses ({ev['n_pulses']} pulses, {ev['charge_nc']:g} nC per phase, 1 Hz, "
              f"electrode {ev['electrode']})", "",
              "Detected spikes per electrode and pulse:", "",
              "| electrodes | baseline (-45..0 ms) | 5-20 ms | 5-50 ms |", "|---|---|---|---|"]
    for name, row in ev["spikes_per_electrode_per_pulse"].items():
        lines.append(f"| {name} | {row['baseline (-45..0 ms)']:.2f} | {row['5-20 ms']:.2f} | {row['5-50 ms']:.2f} |")
    lines += ["", "Fraction of neurons that fire within 4 ms of a pulse, by distance from the electrode: " +
              ", ".join(f"{k}: {v:.2f}" for k, v in ev["fraction_of_neurons_firing_within_4_ms"].items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    import numba

    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "numba": numba.__version__, "platform": platform.platform()},
                 "minutes": args.minutes, "speed": [], "spontaneous": []}
    for n in args.sizes:
        res["speed"].append(speed({"n_neurons": n}))
        print("speed", res["speed"][-1], flush=True)
    res["speed"].append(speed({"stdp": True}))
    print("speed", res["speed"][-1], flush=True)
    res["speed"].append(speed({}, stim_hz=1.0))
    print("speed", res["speed"][-1], flush=True)
    for seed in args.seeds:
        res["spontaneous"].append(spontaneous(seed, args.minutes))
        print("bursts", res["spontaneous"][-1], flush=True)
    res["evoked"] = evoked()
    print("evoked", json.dumps(res["evoked"], indent=1), flush=True)
    md = markdown(res)
    print(md)
    if not args.no_write:
        OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(res, indent=1))
        OUT_MD.write_text(md)


if __name__ == "__main__":
    main()
