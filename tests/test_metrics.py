"""Tests for labbench.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from labbench.metrics import memory_capacity, nrmse, valid_prediction_time


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- nrmse ----------------------------------------------------------------------


def test_nrmse_perfect_is_zero(rng):
    y = rng.standard_normal((500, 3))
    assert nrmse(y, y) == 0.0


def test_nrmse_mean_prediction_is_one(rng):
    y = rng.standard_normal((500, 2))
    assert nrmse(y, np.full_like(y, y.mean())) == pytest.approx(1.0, abs=1e-12)


def test_nrmse_uses_population_std_over_all_elements(rng):
    y = rng.standard_normal((50, 2)) * [1.0, 5.0]
    p = y + 0.1 * rng.standard_normal(y.shape)
    expected = np.sqrt(np.mean((p - y) ** 2)) / np.std(y, ddof=0)
    assert nrmse(y, p) == pytest.approx(expected, rel=1e-14)
    assert isinstance(nrmse(y, p), float)


def test_nrmse_float32_input_computed_in_float64():
    y = np.linspace(0, 1, 1001, dtype=np.float32)
    p = y + np.float32(1e-4)
    assert nrmse(y, p) == pytest.approx(nrmse(y.astype(np.float64), p.astype(np.float64)), rel=1e-12)


def test_nrmse_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(10, 1\).*\(10,\)"):
        nrmse(np.zeros((10, 1)), np.zeros(10))


def test_nrmse_constant_target_is_nan():
    assert np.isnan(nrmse(np.ones(5), np.zeros(5)))


# -- memory capacity -----------------------------------------------------------


def test_memory_capacity_identity_is_k(rng):
    y = rng.uniform(-0.8, 0.8, (1000, 7))
    total, per = memory_capacity(y, y)
    assert total == pytest.approx(7.0)
    np.testing.assert_allclose(per, 1.0)
    assert per.shape == (7,)


def test_memory_capacity_of_noise_is_near_zero(rng):
    y = rng.uniform(-0.8, 0.8, (5000, 20))
    total, per = memory_capacity(y, rng.standard_normal(y.shape))
    # spurious corr^2 ~ 1/T per delay
    assert total < 20 * 5 / 5000
    assert np.all(per >= 0)


def test_memory_capacity_is_scale_and_offset_invariant(rng):
    y = rng.uniform(-1, 1, (400, 3))
    p = y + 0.5 * rng.standard_normal(y.shape)
    total, _ = memory_capacity(y, p)
    total2, _ = memory_capacity(y, 3.0 * p - 2.0)
    assert total == pytest.approx(total2, rel=1e-12)
    expected = sum(np.corrcoef(y[:, k], p[:, k])[0, 1] ** 2 for k in range(3))
    assert total == pytest.approx(expected, rel=1e-12)


def test_memory_capacity_constant_column_scores_zero(rng):
    y = rng.standard_normal((100, 2))
    p = y.copy()
    p[:, 1] = 0.3
    total, per = memory_capacity(y, p)
    assert per[1] == 0.0 and total == pytest.approx(1.0)


def test_memory_capacity_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        memory_capacity(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"\(T, K\)"):
        memory_capacity(np.zeros(10), np.zeros(10))


# -- valid prediction time -----------------------------------------------------


def _exp_error_forecast(rng, horizon=400, d=3, e0=1e-3, growth=0.05):
    """Truth plus an error whose norm is e0 * exp(growth * h) (h = 1..H) in a random direction."""
    truth = rng.standard_normal((horizon, d)) * 10.0
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    h = np.arange(1, horizon + 1)
    pred = truth + (e0 * np.exp(growth * h))[:, None] * direction
    return truth, pred


def test_vpt_crosses_where_expected(rng):
    truth, pred = _exp_error_forecast(rng)
    norm, f, dt, lam = 2.0, 0.4, 0.02, 0.9
    # e(h) = 1e-3 exp(0.05 h) / 2 > 0.4  <=>  h > ln(800) / 0.05
    h_star = int(np.floor(np.log(f * norm / 1e-3) / 0.05)) + 1
    vpt = valid_prediction_time(truth, pred, dt=dt, lyapunov_exponent=lam, threshold=f, norm=norm)
    assert isinstance(vpt, float)
    assert vpt == pytest.approx((h_star - 1) * dt * lam)


def test_vpt_censored_when_never_crossing(rng):
    truth = rng.standard_normal((100, 3))
    vpt = valid_prediction_time(truth, truth + 1e-9, dt=0.01, lyapunov_exponent=2.0, norm=1.0)
    assert vpt == pytest.approx(100 * 0.01 * 2.0)


def test_vpt_immediate_crossing_is_zero(rng):
    truth = rng.standard_normal((50, 3))
    assert valid_prediction_time(truth, truth + 10.0, dt=0.02, lyapunov_exponent=0.9, norm=1.0) == 0.0


def test_vpt_nan_counts_as_crossing(rng):
    truth = rng.standard_normal((50, 2))
    pred = truth.copy()
    pred[10:] = np.nan
    vpt = valid_prediction_time(truth, pred, dt=0.1, lyapunov_exponent=1.0, norm=1.0)
    assert vpt == pytest.approx(10 * 0.1)


def test_vpt_default_norm_is_rms_norm_of_truth():
    truth = np.full((20, 2), 3.0)  # ||x|| = 3 sqrt(2)
    pred = truth.copy()
    pred[5:, 0] += 0.5 * 3.0 * np.sqrt(2)  # e = 0.5 > 0.4 from h = 6
    assert valid_prediction_time(truth, pred, dt=1.0, lyapunov_exponent=1.0) == pytest.approx(5.0)


def test_vpt_batched_matches_single(rng):
    pairs = [_exp_error_forecast(rng, growth=g) for g in (0.03, 0.05, 0.2)]
    truth = np.stack([t for t, _ in pairs])
    pred = np.stack([p for _, p in pairs])
    kw = dict(dt=0.02, lyapunov_exponent=0.906)
    for norm in (None, 5.0):
        batched = valid_prediction_time(truth, pred, norm=norm, **kw)
        assert batched.shape == (3,)
        single = [valid_prediction_time(t, p, norm=norm, **kw) for t, p in pairs]
        np.testing.assert_allclose(batched, single)
    assert batched[0] > batched[1] > batched[2]


def test_vpt_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        valid_prediction_time(np.zeros((5, 3)), np.zeros((5, 2)), dt=1.0, lyapunov_exponent=1.0)
    with pytest.raises(ValueError):
        valid_prediction_time(np.zeros(5), np.zeros(5), dt=1.0, lyapunov_exponent=1.0)


def test_memory_capacity_non_finite_is_nan(rng):
    y = rng.standard_normal((100, 2))
    p = y.copy()
    p[3, 0] = np.nan
    total, per = memory_capacity(y, p)
    assert np.isnan(per[0]) and per[1] == pytest.approx(1.0) and np.isnan(total)
