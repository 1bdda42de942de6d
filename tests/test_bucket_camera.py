"""The simulated bucket's camera models: the linear camera obeys superposition (so it must fail
XOR), the shadowgraph and Sobel cameras do not; pooling, the 8-bit range and the sensor noise."""

from __future__ import annotations

import numpy as np
import pytest
from labbench.drivers.bucket.camera import (
    Camera,
    laplacian,
    pool_frames,
    sobel_magnitude,
)
from labbench.drivers.bucket.params import BucketSimParams, CameraParams
from labbench.drivers.bucket.tank import SimTank

QUIET = {"shot_noise": 0.0, "read_noise": 0.0}
STEADY = {"n_motors": 2, "amplitude_jitter": 0.0, "phase_jitter": 0.0}


def _xor_frames(model: str) -> dict[tuple[int, int], np.ndarray]:
    """Frames (int) of the four XOR inputs, each from still water, no noise, no jitter."""
    params = BucketSimParams(motors=STEADY, camera={"model": model, **QUIET})
    tank = SimTank(params, seed=0)
    out = {}
    for bits in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        tank.reset()
        out[bits] = tank.step(np.tile(np.array(bits, float), (20, 1))).astype(np.int64)
    return out


def test_linear_camera_obeys_superposition():
    f = _xor_frames("linear")
    assert np.all(f[(0, 0)] == 128)
    signal = np.abs(f[(1, 0)] - 128).max()
    assert signal > 20                                    # the waves are well inside the 8-bit range
    residual = f[(1, 1)] - 128 - ((f[(1, 0)] - 128) + (f[(0, 1)] - 128))
    assert np.abs(residual).max() <= 2                    # three roundings of at most 1/2 DN each


@pytest.mark.parametrize("model", ["shadowgraph", "sobel"])
def test_shadowgraph_and_sobel_break_superposition(model):
    f = _xor_frames(model)
    residual = f[(1, 1)] - f[(0, 0)] - ((f[(1, 0)] - f[(0, 0)]) + (f[(0, 1)] - f[(0, 0)]))
    signal = np.abs(f[(1, 0)] - f[(0, 0)]).max()
    assert signal > 50
    # clipping at caustics, saturation and the gradient magnitude: far beyond rounding
    assert np.abs(residual).max() > 50
    assert (np.abs(residual) > 5).mean() > 0.05


def test_frames_are_8_bit_and_use_the_range():
    tank = SimTank(BucketSimParams(), seed=1)
    frames = tank.step(np.ones((30, 4)))
    assert frames.dtype == np.uint8 and frames.shape == (30, *tank.frame_shape)
    assert frames.min() == 0 and frames.max() >= 250     # caustics: dark lines and bright foci


def test_pool_frames_shape_and_values():
    frames = np.zeros((3, 4, 6), dtype=np.uint8)
    frames[:, :2, :3] = 255
    frames[1] = 51
    pooled = pool_frames(frames, (2, 2))
    assert pooled.dtype == np.float32 and pooled.shape == (3, 4)
    np.testing.assert_allclose(pooled[0], [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(pooled[1], 0.2, rtol=1e-6)
    # a pool that does not divide the frame: area-weighted averages, mean preserved
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, (2, 64, 64), dtype=np.uint8)
    p = pool_frames(f, (5, 7))
    assert p.shape == (2, 35) and 0.0 <= p.min() and p.max() <= 1.0
    np.testing.assert_allclose(p.mean(axis=1), f.mean(axis=(1, 2)) / 255, rtol=1e-5)
    with pytest.raises(ValueError):
        pool_frames(f, (65, 8))


@pytest.mark.parametrize("shot,read", [(0.25, 1.0), (0.0, 3.0), (1.0, 0.0)])
def test_still_water_noise_has_the_set_statistics(shot, read):
    cam = CameraParams(shot_noise=shot, read_noise=read, brightness=100.0, saturation=255.0)
    tank = SimTank(BucketSimParams(camera=cam.model_dump()), seed=5)
    frames = tank.step(np.zeros((40, 4))).astype(float)
    level = 255.0 * np.tanh(100.0 / 255.0)                 # the saturating sensor's response to I0
    std = np.sqrt(shot * level + read**2)
    assert frames.mean() == pytest.approx(level, abs=0.1)
    assert frames.std() == pytest.approx(np.sqrt(std**2 + 1 / 12), rel=0.05)  # plus the rounding
    assert abs(np.corrcoef(frames[:, 10, 10], frames[:, 10, 11])[0, 1]) < 0.4  # independent pixels


def test_sobel_of_still_water_without_noise_is_black():
    tank = SimTank(BucketSimParams(camera={"model": "sobel", **QUIET}), seed=0)
    assert tank.step(np.zeros((3, 4))).max() == 0


def test_sobel_magnitude_of_a_ramp():
    ramp = np.tile(np.arange(8.0) * 3, (1, 8, 1))          # 3 DN per pixel along x
    g = sobel_magnitude(ramp)
    np.testing.assert_allclose(g[0, :, 1:-1], 3.0)


def test_screen_kernel_matches_the_shadowgraph_formula():
    rng = np.random.default_rng(2)
    params = CameraParams(resolution=[16, 16], optical_gain=0.33, brightness=128.0)
    cam = Camera(params, (16, 16), 0.01)
    heights = 2e-4 * rng.standard_normal((3, 4, 16, 16))
    expected = (128.0 * np.maximum(1 - 0.33 * laplacian(heights, 0.01), 0)).mean(axis=1)
    assert (expected == 0).any()                          # some pixels are clipped
    np.testing.assert_allclose(cam.irradiance(heights), expected, rtol=1e-12, atol=1e-9)


def test_exposure_averages_the_last_substeps():
    short = Camera(CameraParams(exposure_s=0.01), (8, 8), 0.01)
    assert short.exposure_samples(8).tolist() == [6, 7]
    full = Camera(CameraParams(), (8, 8), 0.01)
    assert full.exposure_samples(8).tolist() == list(range(8))
    assert full.exposure_samples(16).tolist() == list(range(1, 16, 2))     # at most 8 samples
    with pytest.raises(ValueError, match="exposure"):
        CameraParams(exposure_s=0.1)


def test_camera_resolution_differs_from_the_grid():
    tank = SimTank(BucketSimParams(tank={"grid": 48}, camera={"resolution": [32, 40]}), seed=0)
    frames = tank.step(np.ones((5, 4)))
    assert frames.shape == (5, 32, 40)


def _xor_accuracy(model: str, n_trials: int = 120, hold: int = 25, last: int = 5) -> float:
    """Fernando & Sojakka's XOR on SimTank alone: 2 motors, bits held 1 s, a logistic readout
    on the 16 x 16 pooled frames (last 5 of each trial), trained on the first half of the
    trials, accuracy per frame on the second half."""
    from sklearn.linear_model import LogisticRegression

    bits = np.random.default_rng(2).integers(0, 2, (n_trials, 2))
    tank = SimTank(BucketSimParams(motors={"n_motors": 2}, camera={"model": model}), seed=2)
    frames = tank.step(np.repeat(bits.astype(float), hold, axis=0))
    x = pool_frames(frames, (16, 16)).reshape(n_trials, hold, -1)[:, -last:].reshape(n_trials * last, -1)
    y = np.repeat(bits[:, 0] ^ bits[:, 1], last)
    half = n_trials // 2 * last
    clf = LogisticRegression(max_iter=3000).fit(x[:half], y[:half])
    return float((clf.predict(x[half:]) == y[half:]).mean())


def test_xor_is_learnable_through_the_nonlinear_cameras_only():
    assert _xor_accuracy("sobel") >= 0.95
    assert _xor_accuracy("shadowgraph") >= 0.85
    assert _xor_accuracy("linear") <= 0.65               # superposition: chance
