"""The simulated DVS: simulated seconds per wall-clock second, ours beside a numpy peer, one core.

Two workloads (issue 16's speed targets):

- ``saccade``: 34 x 34 saccade digits (300 ms, 1 kHz frames, default pixel model), target
  >= 30x real time;
- ``davis346``: 346 x 260, a wrapped moving bar (20 px wide, 300 px/s, log contrast ~1.4) in
  50 ms blocks at 1 kHz, about 1 M events/s, target >= 1x real time.

The peer is a straightforward per-frame numpy implementation of the same model as v2e runs
it (vectorised over pixels, one frame at a time: the low-pass, n = floor(|D| / C) events per
pixel and frame with linearly interpolated times, refractory and shot noise decided per
frame, leak as drift). It does not interleave refractory delays with crossings, so its
stream differs in detail; its event count is printed beside ours. Scene rendering is timed
apart from the pixel model. Wall time is the median of ``--repeats`` runs; numba and BLAS
hold to one thread.

``--digits`` adds the saccade-digit feasibility check: all 1,797 scikit-learn digits, count
maps per saccade (2 x 2 pooled), log1p, logistic regression on a stratified 40 % hold-out,
beside static 8 x 8 pixels with the same readout.

Usage:  python bench/dvs_sim_speed.py [--repeats 3] [--digits]
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import math
import time

import numpy as np
from labbench.drivers.dvs import scenes
from labbench.drivers.dvs.features import bin_rows, count_maps
from labbench.drivers.dvs.pixel import PixelArray, PixelParams


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


#: CPU seconds of the last timed() call (one thread: what an unshared core would take)
CPU = {"last": 0.0}


def timed(fn, repeats: int) -> tuple[float, object]:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    CPU["last"] = float(np.median(cpus))
    return float(np.median(walls)), out


def saccade_speed(repeats: int, n_samples: int = 40) -> dict:
    images, _ = scenes.load_digit_images()
    t_us = scenes.saccade_times()
    params = PixelParams()
    px = PixelArray(params, (34, 34), seed=0)
    px.emit(scenes.saccade_digit(images[0], t_us), t_us)                      # compile / load the cache
    render_s, frames = timed(lambda: [scenes.saccade_digit(images[i], t_us) for i in range(n_samples)], repeats)

    def ours():
        n = 0
        for i, f in enumerate(frames):
            px.reset(i)
            n += len(px.emit(f, t_us))
        return n

    ours_s, n_ours = timed(ours, repeats)
    ours_cpu = CPU["last"]
    peer_s, n_peer = timed(lambda: sum(numpy_peer(params, f, t_us, i) for i, f in enumerate(frames)), repeats)
    sim = n_samples * 0.3
    return {"workload": "saccade 34x34", "sim_s": sim, "ours_x": sim / ours_s, "ours_cpu_x": sim / ours_cpu, "peer_x": sim / peer_s,
            "ours_with_render_x": sim / (ours_s + render_s), "events_per_sample": n_ours / n_samples,
            "peer_events_per_sample": n_peer / n_samples}


def davis_speed(repeats: int, seconds: float = 1.0) -> dict:
    shape = (260, 346)
    params = PixelParams()
    t_all = scenes.frame_times(seconds, 1000)
    kw = {"speed_px_s": 300.0, "width_px": 20.0, "background": 0.1, "contrast": 0.5}
    blocks = [t_all[i:i + 51] for i in range(0, len(t_all) - 1, 50)]         # 50 ms blocks sharing an end frame
    render_s, frames = timed(lambda: [scenes.moving_bar(b, shape, **kw) for b in blocks], 1)
    px = PixelArray(params, shape, seed=0)

    def ours():
        px.reset()
        n = len(px.emit(frames[0], blocks[0]))
        for f, b in zip(frames[1:], blocks[1:], strict=True):
            n += len(px.emit(f[1:], b[1:]))
        return n

    ours_s, n_ours = timed(ours, repeats)
    ours_cpu = CPU["last"]
    whole = np.concatenate([frames[0]] + [f[1:] for f in frames[1:]])
    peer_s, n_peer = timed(lambda: numpy_peer(params, whole, t_all), max(1, repeats // 2))
    return {"workload": "davis346 moving bar", "sim_s": seconds, "ours_x": seconds / ours_s, "ours_cpu_x": seconds / ours_cpu,
            "peer_x": seconds / peer_s, "ours_with_render_x": seconds / (ours_s + render_s),
            "events_per_s": n_ours / seconds, "peer_events_per_s": n_peer / seconds}


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
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        for r in (saccade_speed(args.repeats), davis_speed(args.repeats)):
            extra = {k: round(v) for k, v in r.items() if "events" in k}
            print(f"{r['workload']:22s} ours {r['ours_x']:7.1f}x real time (CPU {r['ours_cpu_x']:.1f}x; {r['ours_with_render_x']:.1f}x with "
                  f"the scene), numpy peer {r['peer_x']:6.2f}x, ratio {r['ours_x'] / r['peer_x']:.1f}  {extra}",
                  flush=True)
        if args.digits:
            print("saccade digits (1,797, stratified 40 % hold-out):", digits_accuracy())
    print("load average at the end:", " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
