"""The simulated DVS: simulated seconds per second of one core, ours beside a numpy peer.

Two workloads (issue 16's speed targets), each end to end as the driver runs them, the scene
rendered in the loop:

- ``saccade``: 34 x 34 saccade digits, each a fresh recording of 300 ms (5 ms rows with 5
  subframes = 1 kHz frames, the pixels reset per digit, the default pixel model); target
  >= 30x real time;
- ``davis346``: 346 x 260, a wrapped moving bar (20 px wide, 300 px/s, log contrast ~1.4),
  rendered and simulated in 50 ms blocks at 1 kHz, about 0.9 M events/s; target >= 1x.

The peer is a straightforward numpy implementation of the same scenes (the formulas vectorised
over the whole block in float64; its frames are checked equal to ours) and of the same pixel
model as v2e runs it (vectorised over pixels, one frame at a time: the low-pass, n = floor(|D|
/ C) events per pixel and frame with linearly interpolated times, refractory and shot noise
decided per frame, leak as drift). It does not interleave refractory delays with crossings,
so its stream differs in detail; its event count is printed beside ours.

Each figure is the median of ``--repeats`` runs, as wall time and as the process's CPU time.
numba and BLAS hold to one thread, so CPU time is what one unshared core would take; the
targets are judged on it, as the machine running the benchmarks is shared (the wall time also
counts the other processes; the load average is printed).

``--digits`` adds the saccade-digit feasibility check: all 1,797 scikit-learn digits, count
maps per saccade (2 x 2 pooled), log1p, logistic regression on a stratified 40 % hold-out,
beside static 8 x 8 pixels with the same readout.

Usage:  python bench/dvs_sim_speed.py [--repeats 3] [--digits] [--no-write]
Results: bench/results/dvs_sim_speed.json and .md
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
from labbench.drivers.dvs import scenes
from labbench.drivers.dvs.features import bin_rows, count_maps
from labbench.drivers.dvs.pixel import PixelArray, PixelParams

ROOT = Path(__file__).resolve().parents[1]
OUT_JSON = ROOT / "bench" / "results" / "dvs_sim_speed.json"
OUT_MD = ROOT / "bench" / "results" / "dvs_sim_speed.md"
BAR = {"speed_px_s": 300.0, "width_px": 20.0, "background": 0.1, "contrast": 0.5}


def numpy_bar(t_us: np.ndarray, shape: tuple[int, int], speed_px_s: float, width_px: float, background: float,
              contrast: float) -> np.ndarray:
    """The wrapped moving bar (direction 0, entering at t = 0), vectorised over the block in numpy."""
    h, w = shape
    s = np.broadcast_to(np.arange(w) + 0.5 - w / 2, (h, w))
    half = 0.5 * w
    lead = -half + np.mod(speed_px_s * np.asarray(t_us, dtype=np.float64) * 1e-6, 2 * half + width_px + 1.0)
    lead = lead[:, None, None]
    cover = np.clip(np.minimum(s + 0.5, lead) - np.maximum(s - 0.5, lead - width_px), 0.0, 1.0)
    return (background + contrast * cover).astype(np.float32)


def numpy_saccade(image: np.ndarray, t_us: np.ndarray, t0_us: int, background: float = 0.3) -> np.ndarray:
    """The saccade digit in numpy: bilinear weight matrices per frame, two batched matmuls."""
    canvas, digit = 34, 28
    ih, iw = image.shape
    off = scenes.saccade_path((np.asarray(t_us, dtype=np.float64) - t0_us) * 1e-6)
    centre = np.arange(canvas) + 0.5 - canvas / 2

    def weights(coord: np.ndarray, n: int) -> np.ndarray:
        c = np.clip(coord + 1.0, 0.0, n + 1.0)
        i0 = np.minimum(np.floor(c).astype(np.int64), n)
        f = c - i0
        wts = np.zeros(coord.shape + (n + 2,))
        np.put_along_axis(wts, i0[..., None], (1 - f)[..., None], axis=-1)
        np.put_along_axis(wts, i0[..., None] + 1, f[..., None], axis=-1)
        return wts

    wx = weights((centre[None, :] - off[:, :1] + digit / 2) * (iw / digit) - 0.5, iw)
    wy = weights((centre[None, :] - off[:, 1:] + digit / 2) * (ih / digit) - 0.5, ih)
    ink_map = (wy @ np.pad(image, 1)) @ wx.transpose(0, 2, 1)
    return (background + (1.0 - background) * np.clip(ink_map, 0.0, 1.0)).astype(np.float32)


def numpy_peer(params: PixelParams, frames: np.ndarray, t_us: np.ndarray, seed: int = 0) -> int:
    """The same pixel model, frame by frame in numpy (v2e's way); returns the number of events."""
    rng = np.random.default_rng(seed)
    shape = frames.shape[1:]
    cp = np.maximum(rng.normal(params.pos_threshold, params.sigma_threshold, shape), params.min_threshold)
    cn = np.maximum(rng.normal(params.neg_threshold, params.sigma_threshold, shape), params.min_threshold)
    lp = np.log(np.clip(frames[0], 0, 1) + params.log_eps).astype(np.float64)
    lref = lp - rng.random(shape) * cp
    t_last = np.full(shape, -np.inf)
    n_events = 0
    chunks = []
    for k in range(1, len(t_us)):
        dt = (t_us[k] - t_us[k - 1]) * 1e-6
        inten = np.clip(frames[k], 0, 1)
        inten01 = (255 * inten + 20) / 275
        new = np.log(inten + params.log_eps)
        a = -np.expm1(-2 * math.pi * params.cutoff_hz * inten01 * dt)
        lb = lp + a * (new - lp)
        lref -= params.leak_rate_hz * cp * dt
        d = lb - lref
        n_on = np.floor(np.maximum(d, 0) / cp).astype(np.int64)
        n_off = np.floor(np.maximum(-d, 0) / cn).astype(np.int64)
        ok = t_us[k - 1] - t_last >= params.refractory_s * 1e6
        n_on[~ok] = 0
        n_off[~ok] = 0
        lref += n_on * cp - n_off * cn
        fired = (n_on + n_off) > 0
        if fired.any():
            ys, xs = np.nonzero(fired)
            n = (n_on + n_off)[fired]
            rep_y, rep_x = np.repeat(ys, n), np.repeat(xs, n)
            j = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
            ts = t_us[k - 1] + (j + 1) / np.repeat(n, n) * (t_us[k] - t_us[k - 1])
            chunks.append((ts.astype(np.int64), rep_x, rep_y))
            n_events += int(n.sum())
            t_last[fired] = t_us[k]
        rate = params.shot_noise_rate_hz / 2 * ((params.shot_noise_bright_factor - 1) * inten01 + 1) * dt
        u = rng.random(shape)
        n_events += int((u < 2 * rate).sum())                                  # shot noise (not interleaved)
        lp = lb
    if chunks:
        t = np.concatenate([c[0] for c in chunks])
        np.argsort(t, kind="stable")
    return n_events


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and median CPU seconds of ``repeats`` calls, and the last result."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), out


def saccade_speed(repeats: int, n_samples: int = 40) -> dict:
    images, _ = scenes.load_digit_images()
    params = PixelParams()
    px = PixelArray(params, (34, 34), seed=0)
    row_us, sub, rows = 5000, 5, 60                                          # as the driver: 60 rows of 5 ms

    def frame_times(i: int) -> tuple[int, np.ndarray]:
        t0 = i * (rows + 10) * row_us                                         # 10 blank rows between digits
        return t0, t0 + (np.arange(rows * sub, dtype=np.int64) + 1) * row_us // sub

    t0, t = frame_times(0)
    px.emit(scenes.saccade_digit(images[0], t, t0_us=t0), t)                  # compile / load the caches
    for i in range(3):
        t0, t = frame_times(i)
        assert np.array_equal(scenes.saccade_digit(images[i], t, t0_us=t0), numpy_saccade(images[i], t, t0))

    def ours():
        n = 0
        for i in range(n_samples):
            t0, t = frame_times(i)
            px.reset(i)
            n += len(px.emit(scenes.saccade_digit(images[i], t, t0_us=t0), t))
        return n

    def peer():
        n = 0
        for i in range(n_samples):
            t0, t = frame_times(i)
            n += numpy_peer(params, numpy_saccade(images[i], t, t0), t, i)
        return n

    def render_only():
        out = []
        for i in range(n_samples):
            t0, t = frame_times(i)
            out.append(scenes.saccade_digit(images[i], t, t0_us=t0))
        return out

    sim = n_samples * rows * row_us * 1e-6
    ours_w, ours_c, n_ours = timed(ours, repeats)
    peer_w, peer_c, n_peer = timed(peer, repeats)
    _, render_c, _ = timed(render_only, repeats)
    return {"workload": "saccade 34x34", "sim_s": sim, "ours_wall_x": sim / ours_w, "ours_cpu_x": sim / ours_c,
            "peer_wall_x": sim / peer_w, "peer_cpu_x": sim / peer_c, "scene_cpu_share": render_c / ours_c,
            "events_per_s": n_ours / sim, "peer_events_per_s": n_peer / sim}


def davis_speed(repeats: int, seconds: float = 1.0) -> dict:
    shape = (260, 346)
    params = PixelParams()
    t_all = scenes.frame_times(seconds, 1000)
    blocks = [t_all[:1]] + [t_all[i + 1:i + 51] for i in range(0, len(t_all) - 1, 50)]   # 50 ms blocks
    px = PixelArray(params, shape, seed=0)
    assert np.array_equal(scenes.moving_bar(blocks[1], shape, **BAR), numpy_bar(blocks[1], shape, **BAR))
    px.emit(scenes.moving_bar(blocks[0], shape, **BAR), blocks[0])            # compile / load the caches

    def ours():
        px.reset()
        return sum(len(px.emit(scenes.moving_bar(b, shape, **BAR), b)) for b in blocks)

    def peer():
        return numpy_peer(params, numpy_bar(t_all, shape, **BAR), t_all)

    def render_only():
        return [scenes.moving_bar(b, shape, **BAR) for b in blocks]

    ours_w, ours_c, n_ours = timed(ours, repeats)
    peer_w, peer_c, n_peer = timed(peer, max(1, repeats // 2))
    _, render_c, _ = timed(render_only, repeats)
    return {"workload": "davis346 moving bar", "sim_s": seconds, "ours_wall_x": seconds / ours_w,
            "ours_cpu_x": seconds / ours_c, "peer_wall_x": seconds / peer_w, "peer_cpu_x": seconds / peer_c,
            "scene_cpu_share": render_c / ours_c, "events_per_s": n_ours / seconds,
            "peer_events_per_s": n_peer / seconds}


def digits_accuracy() -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    images, labels = scenes.load_digit_images()
    t_us = scenes.saccade_times()
    px = PixelArray(PixelParams(), (34, 34), seed=0)
    feats, counts = [], []
    for i, img in enumerate(images):
        px.reset(i)
        ev = px.emit(scenes.saccade_digit(img, t_us), t_us)
        counts.append(len(ev))
        feats.append(count_maps(ev, (34, 34), (2, 2), offsets=bin_rows(ev, [0, 100_000, 200_000, 300_001])).ravel())
    out = {"events_per_sample_mean": float(np.mean(counts))}
    for name, x in (("dvs_counts", np.log1p(np.array(feats))), ("static_pixels", images.reshape(len(images), -1))):
        xtr, xte, ytr, yte = train_test_split(x, labels, test_size=0.4, stratify=labels, random_state=0)
        out[name] = float(LogisticRegression(max_iter=3000).fit(xtr, ytr).score(xte, yte))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--digits", action="store_true", help="also the full saccade-digit accuracy check")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/dvs_sim_speed.*")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(1):
        for r in (saccade_speed(args.repeats), davis_speed(args.repeats)):
            rows.append(r)
            print(f"{r['workload']:20s} ours {r['ours_cpu_x']:6.1f}x real time CPU ({r['ours_wall_x']:.1f}x wall), "
                  f"numpy peer {r['peer_cpu_x']:5.2f}x CPU ({r['peer_wall_x']:.2f}x wall), ratio "
                  f"{r['ours_cpu_x'] / r['peer_cpu_x']:.1f} CPU ({r['ours_wall_x'] / r['peer_wall_x']:.1f} wall); "
                  f"scene {100 * r['scene_cpu_share']:.0f} % of ours; events/s {r['events_per_s']:,.0f} "
                  f"(peer {r['peer_events_per_s']:,.0f})", flush=True)
        digits = digits_accuracy() if args.digits else None
        if digits:
            print("saccade digits (1,797, stratified 40 % hold-out):", digits)
    load = os.getloadavg()
    print("load average at the end:", " ".join(f"{v:.2f}" for v in load))
    if args.no_write:
        return
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(json.dumps({"rows": rows, "digits": digits, "load_average": load,
                                    "machine": platform.processor() or platform.machine()}, indent=1))
    lines = ["| workload | ours, CPU | ours, wall | numpy peer, CPU | peer, wall | ratio CPU (wall) | events/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['ours_cpu_x']:.1f}x | {r['ours_wall_x']:.1f}x | {r['peer_cpu_x']:.2f}x | "
                     f"{r['peer_wall_x']:.2f}x | {r['ours_cpu_x'] / r['peer_cpu_x']:.0f} "
                     f"({r['ours_wall_x'] / r['peer_wall_x']:.0f}) | {r['events_per_s']:,.0f} |")
    lines.append(f"\nSimulated seconds per second, scene included; load average {load[0]:.1f} on "
                 f"{os.cpu_count()} cores.")
    OUT_MD.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
