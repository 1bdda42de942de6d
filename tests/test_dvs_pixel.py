"""The simulated DVS pixel model and its scenes, against analytic answers (issue 16 acceptance)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from labbench.drivers.dvs import scenes
from labbench.drivers.dvs.events import EVENT_DTYPE
from labbench.drivers.dvs.pixel import (
    PixelArray,
    PixelParams,
    initial_state,
    sensor_shape,
    step,
)
from scipy import stats

EPS = 0.05
QUIET = {"sigma_threshold": 0.0, "leak_rate_hz": 0.0, "shot_noise_rate_hz": 0.0}


def level(log_value: float) -> float:
    """The intensity whose log(I + eps) is ``log_value``."""
    return math.exp(log_value) - EPS


@pytest.mark.parametrize("cutoff_hz", [0.0, 300.0])
@pytest.mark.parametrize("delta", [0.73, -0.73, 1.51, -1.19])
def test_a_log_step_gives_floor_delta_over_c_events(delta, cutoff_hz):
    px = PixelArray(PixelParams(cutoff_hz=cutoff_hz, **QUIET), (1, 1), seed=3)
    base = math.log((0.05 if delta > 0 else 0.6) + EPS)                      # both levels inside [0, 1]
    i0, i1 = level(base), level(base + delta)
    frames = np.array([i0] * 10 + [i1] * 290, np.float32)[:, None, None]    # step at 10 ms, then 290 ms
    ev = px.emit(frames, np.arange(300) * 1000)
    assert len(ev) == math.floor(abs(delta) / 0.2)
    assert np.all(ev["p"] == (delta > 0))
    assert ev["t"].min() > 9000                                               # nothing before the step
    assert np.all(np.diff(ev["t"]) >= 500)                                   # the refractory period spreads them


def test_a_linear_log_ramp_gives_evenly_spaced_events():
    rate = 20.0                                                               # log units per second
    t_us = np.arange(0, 100_001, 1000)                                        # 1 kHz, 100 ms
    frames = np.array([level(math.log(0.1 + EPS) + rate * t * 1e-6) for t in t_us], np.float32)[:, None, None]
    ev = PixelArray(PixelParams(cutoff_hz=0.0, **QUIET), (1, 1), seed=0).emit(frames, t_us)
    spacing = 0.2 / rate * 1e6                                                # C / slope = 10 ms
    assert len(ev) == 9 and np.all(ev["p"])                                   # 2.0 log units / 0.2, the 10th at the end
    assert np.allclose(np.diff(ev["t"]), spacing, atol=2)                    # float32 frames, µs rounding
    assert abs(ev["t"][0] - spacing) <= 2


@pytest.mark.parametrize("direction_deg,polarity", [(0.0, True), (180.0, False)])
def test_a_moving_edge_gives_v_delta_over_c_events_per_second_per_row(direction_deg, polarity):
    v, width = 200.0, 1e6                                                     # px/s; wider than any sensor: an edge
    delta = 1.0 + 1e-3                                                        # log contrast; delta / C = 5.005
    bg = 0.1 if polarity else level(math.log(0.1 + EPS) + delta)
    contrast = (level(math.log(0.1 + EPS) + delta) - 0.1) * (1 if polarity else -1)
    shape = (3, 128)
    t_us = scenes.frame_times(0.7, 1000)
    offset = -64.0                                                            # leading edge at the sensor's side
    frames = scenes.moving_bar(t_us, shape, speed_px_s=v, direction_deg=direction_deg, width_px=width,
                               background=bg, contrast=contrast, offset_px=offset, wrap=False)
    ev = PixelArray(PixelParams(**QUIET), shape, seed=1).emit(frames, t_us)
    assert np.all(ev["p"] == polarity)
    ta, tb = 100_000, 500_000                                                 # the edge crosses pixels 20..100
    n = np.count_nonzero((ev["t"] >= ta) & (ev["t"] < tb)) / shape[0]
    expected = v * delta / 0.2 * (tb - ta) * 1e-6                             # 400.4 events per row
    assert abs(n - expected) <= 0.02 * expected, (n, expected)               # +-1 pixel of edge position = 1.2 %


@pytest.mark.parametrize("intensity", [0.0, 1.0])
def test_shot_noise_of_a_static_scene_is_poisson(intensity):
    rate, seconds, shape = 0.05, 100.0, (64, 64)
    params = PixelParams(sigma_threshold=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=rate)
    t_us = scenes.frame_times(seconds, 20)
    frames = np.full((len(t_us),) + shape, intensity, np.float32)
    ev = PixelArray(params, shape, seed=7).emit(frames, t_us)
    inten01 = (255 * intensity + 20) / 275                                    # v2e: rate (1 + (0.25 - 1) inten01)
    lam = rate * (1 + (0.25 - 1) * inten01) * seconds * shape[0] * shape[1]
    lo, hi = stats.poisson.ppf([0.005, 0.995], lam)
    assert lo <= len(ev) <= hi, (len(ev), lam)
    on_lo, on_hi = stats.binom.ppf([0.005, 0.995], len(ev), 0.5)
    assert on_lo <= ev["p"].sum() <= on_hi


def test_leak_events_come_at_the_leak_rate():
    seconds, shape = 150.0, (64, 64)                                          # 1.5 leak periods
    params = PixelParams(shot_noise_rate_hz=0.0)                              # sigma 0.03: rate stays leak_rate_hz
    t_us = scenes.frame_times(seconds, 10)
    ev = PixelArray(params, shape, seed=2).emit(np.full((len(t_us),) + shape, 0.4, np.float32), t_us)
    n = shape[0] * shape[1]                                                   # each pixel: 1 + Bernoulli(0.5) events
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 0.5) + n
    assert lo <= len(ev) <= hi and np.all(ev["p"])
    per_pixel = np.bincount(ev["y"].astype(int) * shape[1] + ev["x"], minlength=n)
    assert set(np.unique(per_pixel)) <= {1, 2}


def _busy_scene(seed: int, t_frames: int = 120, shape=(16, 20)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.random((t_frames,) + shape, dtype=np.float32)
    t_us = np.cumsum(rng.integers(200, 1500, t_frames)).astype(np.int64)
    return frames, t_us


NOISY = PixelParams(shot_noise_rate_hz=50.0, leak_rate_hz=20.0)


def test_no_two_events_of_a_pixel_are_closer_than_the_refractory_period():
    frames, t_us = _busy_scene(0)
    ev = PixelArray(NOISY, frames.shape[1:], seed=4).emit(frames, t_us)
    assert len(ev) > 5000
    assert np.all(np.diff(ev["t"]) >= 0)                                      # sorted
    key = ev["y"].astype(np.int64) * frames.shape[2] + ev["x"]
    order = np.lexsort((ev["t"], key))
    same = np.diff(key[order]) == 0
    gaps = np.diff(ev["t"][order])[same]
    assert gaps.min() >= 500


def test_a_fixed_seed_gives_an_identical_stream():
    frames, t_us = _busy_scene(1)
    a = PixelArray(NOISY, frames.shape[1:], seed=11).emit(frames, t_us)
    b = PixelArray(NOISY, frames.shape[1:], seed=11).emit(frames, t_us)
    c = PixelArray(NOISY, frames.shape[1:], seed=12).emit(frames, t_us)
    assert a.dtype == EVENT_DTYPE and a.tobytes() == b.tobytes()
    assert len(a) != len(c) or a.tobytes() != c.tobytes()
    px = PixelArray(NOISY, frames.shape[1:], seed=11)
    px.emit(frames, t_us)
    px.reset()                                                                # same seed again
    assert px.emit(frames, t_us).tobytes() == a.tobytes()


def test_block_after_block_equals_one_call():
    frames, t_us = _busy_scene(2)
    whole = PixelArray(NOISY, frames.shape[1:], seed=5).emit(frames, t_us)
    px = PixelArray(NOISY, frames.shape[1:], seed=5)
    cuts = [0, 1, 2, 17, 18, 64, 119, 120]
    parts = [px.emit(frames[a:b], t_us[a:b]) for a, b in itertools.pairwise(cuts)]
    assert np.concatenate(parts).tobytes() == whole.tobytes()


def test_step_is_pure_and_checks_its_input():
    params = PixelParams()
    s0 = initial_state(params, (4, 5), seed=1)
    frames, t_us = _busy_scene(3, 10, (4, 5))
    s1, e1 = step(params, s0, frames, t_us)
    s1b, e1b = step(params, s0, frames, t_us)                                 # s0 untouched: same answer
    assert e1.tobytes() == e1b.tobytes() and np.array_equal(s1.lref, s1b.lref)
    assert np.isnan(s0.lp).all()
    with pytest.raises(ValueError, match="not after the previous frame"):
        step(params, s1, frames[:2], t_us[:2])
    with pytest.raises(ValueError, match="expected \\(T, 4, 5\\)"):
        step(params, s0, frames[:, :3], t_us)
    with pytest.raises(ValueError, match="strictly increasing"):
        step(params, s0, frames[:2], np.array([5, 5]))


def test_thresholds_are_drawn_once_from_the_seed():
    px = PixelArray(PixelParams(), (100, 100), seed=9)
    cp, cn = px.thresholds
    assert abs(cp.mean() - 0.2) < 0.002 and abs(cp.std() - 0.03) < 0.002 and cp.min() >= 0.01
    assert not np.array_equal(cp, cn)
    px.reset()
    assert np.array_equal(px.thresholds[0], cp)


def test_sensor_sizes():
    assert sensor_shape("davis346") == (260, 346) and sensor_shape("nmnist") == (34, 34)
    assert sensor_shape((640, 480)) == (480, 640)
    with pytest.raises(ValueError, match="unknown"):
        sensor_shape("dvs999")


# ---------------------------------------------------------------------------------------------
# scenes


def test_saccade_path_runs_the_triangle_in_three_moves():
    v = scenes.SACCADE_VERTICES_PX
    p = scenes.saccade_path(np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4]))
    assert np.allclose(p[[0, 2, 3, 4, 5]], [v[0], v[1], v[2], v[0], v[0]])
    assert np.allclose(p[1], (v[0] + v[1]) / 2)


def test_saccade_digit_draws_the_image_enlarged_and_shifted():
    img = np.ones((8, 8))
    t = np.array([0])
    f = scenes.saccade_digit(img, t, background=0.2, ink=0.9, vertices_px=np.zeros((3, 2)))[0]
    assert f.shape == (34, 34)
    # the 28 px square at 3..31; the outer 8 x 8 cells fade to the background over their outer half
    assert np.allclose(f[5:29, 5:29], 0.9) and np.allclose(f[0], 0.2) and np.allclose(f[:, -1], 0.2)
    assert 0.2 < f[17, 2] < f[17, 3] < f[17, 4] < 0.9
    g = scenes.saccade_digit(img, t, background=0.2, ink=0.9, vertices_px=np.array([[2.0, -1.0]] * 3))[0]
    assert np.allclose(g[0:33, 2:34], f[1:34, 0:32], atol=1e-6)              # moved 2 px right, 1 px up


def test_moving_bar_and_disk_levels():
    t = np.array([0, 50_000])
    bar = scenes.moving_bar(t, (8, 40), speed_px_s=100, width_px=4, background=0.2, contrast=0.5,
                            offset_px=0.0, wrap=False)
    # at t=0 the leading edge is at the centre (x = 20): pixels 16..19 covered; 50 ms later 5 px further
    assert np.allclose(bar[0, :, 16:20], 0.7) and np.allclose(bar[0, :, :16], 0.2)
    assert np.allclose(bar[1, :, 21:25], 0.7) and np.isclose(bar[1].sum(), 0.2 * 320 + 0.5 * 4 * 8)
    disk = scenes.rotating_disk(np.array([0, 125_000]), (64, 64), omega_rad_s=2 * math.pi, sector_rad=math.pi / 2,
                                background=0.0, disk=0.25, sector=1.0)
    # the sector starts at angle 0 (x+, y+ quadrant) and turns by pi/4 in 125 ms
    assert np.isclose(disk[0, 40, 40], 1.0) and np.isclose(disk[0, 23, 40], 0.25) and disk[0, 0, 0] == 0
    assert np.isclose(disk[1, 32 + 12, 32], 1.0) and np.isclose(disk[1, 40, 45], 0.25)


def test_from_frames_scales_uint8_and_refuses_out_of_range():
    f = scenes.from_frames(np.array([[[0, 255]]], np.uint8))
    assert f.dtype == np.float32 and np.array_equal(f, [[[0.0, 1.0]]])
    with pytest.raises(ValueError, match="expected \\[0, 1\\]"):
        scenes.from_frames(np.array([[[1.5]]]))
    with pytest.raises(ValueError, match="need a scale"):
        scenes.from_frames(np.zeros((1, 2, 2), np.int32))


def test_saccade_digits_are_separable_by_counts():
    """300 digits, counts per saccade and polarity, log1p, logistic: far above chance (0.1)."""
    from labbench.drivers.dvs.features import bin_rows, count_maps
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    images, labels = scenes.load_digit_images()
    idx = np.arange(300)
    t_us = scenes.saccade_times()
    px = PixelArray(PixelParams(), (34, 34), seed=0)
    feats = []
    for i in idx:
        px.reset(int(i))
        ev = px.emit(scenes.saccade_digit(images[i], t_us), t_us)
        off = bin_rows(ev, [0, 100_000, 200_000, 300_001])
        feats.append(count_maps(ev, (34, 34), (4, 4), offsets=off).ravel())
    x = np.log1p(np.array(feats))
    xtr, xte, ytr, yte = train_test_split(x, labels[idx], test_size=0.4, stratify=labels[idx], random_state=0)
    acc = LogisticRegression(max_iter=2000).fit(xtr, ytr).score(xte, yte)
    print(f"saccade digits, 300 samples, 4x4-pooled counts per saccade: hold-out accuracy {acc:.3f}")
    assert acc >= 0.75
