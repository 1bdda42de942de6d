"""Spike-train fidelity measures in labbench.metrics: van Rossum distance and rate correlation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labbench.metrics import rate_correlation, van_rossum_distance


def _train(T: int, times: list[int]) -> np.ndarray:
    s = np.zeros((T, 1), dtype=bool)
    s[times, 0] = True
    return s


def test_equal_trains_are_at_distance_zero():
    s = np.random.default_rng(0).random((500, 20)) < 0.05
    mean, per = van_rossum_distance(s, s.copy(), tau_steps=10.0)
    assert mean == 0.0 and np.all(per == 0.0) and per.shape == (20,)


@pytest.mark.parametrize("shift, tau", [(1, 5.0), (3, 5.0), (10, 2.0), (7, 40.0)])
def test_one_shifted_spike_matches_the_analytic_value(shift, tau):
    # van Rossum 2001: D^2 = 1 - exp(-|shift| / tau) for one spike against its shifted copy
    d, _ = van_rossum_distance(_train(200, [20]), _train(200, [20 + shift]), tau)
    assert d == pytest.approx(math.sqrt(1.0 - math.exp(-shift / tau)), rel=1e-12)
    d_rev, _ = van_rossum_distance(_train(200, [20 + shift]), _train(200, [20]), tau)
    assert d_rev == pytest.approx(d, rel=1e-12)            # symmetric


def test_one_spike_against_none_and_the_tail_past_the_raster():
    # the integral runs to infinity: a spike in the last step still counts 1/2
    for t in (0, 99):
        d, _ = van_rossum_distance(_train(100, [t]), _train(100, []), tau_steps=30.0)
        assert d == pytest.approx(math.sqrt(0.5), rel=1e-12)


def test_matches_the_pair_sum_formula_on_random_trains():
    rng = np.random.default_rng(1)
    a, b = rng.random((300, 4)) < 0.05, rng.random((300, 4)) < 0.05
    tau = 7.5
    _, per = van_rossum_distance(a, b, tau)
    for n in range(4):
        ta, tb = np.flatnonzero(a[:, n]), np.flatnonzero(b[:, n])
        k = lambda x, y: np.exp(-np.abs(x[:, None] - y[None, :]) / tau).sum()
        d2 = 0.5 * (k(ta, ta) + k(tb, tb) - 2 * k(ta, tb))
        assert per[n] == pytest.approx(math.sqrt(max(d2, 0.0)), rel=1e-9, abs=1e-12)


def test_mean_is_the_average_over_neurons():
    a = np.zeros((100, 3), dtype=bool)
    b = a.copy()
    a[10, 0] = True            # neuron 0: one spike against none -> sqrt(1/2)
    a[10, 1] = b[12, 1] = True  # neuron 1: shifted by 2
    mean, per = van_rossum_distance(a, b, 4.0)
    expected = [math.sqrt(0.5), math.sqrt(1 - math.exp(-0.5)), 0.0]
    assert per == pytest.approx(expected, rel=1e-12)
    assert mean == pytest.approx(np.mean(expected), rel=1e-12)


def test_van_rossum_refuses_bad_input():
    a = np.zeros((10, 2), dtype=bool)
    with pytest.raises(ValueError, match="tau_steps"):
        van_rossum_distance(a, a, 0.0)
    with pytest.raises(ValueError, match=r"\(T, N\)"):
        van_rossum_distance(a, np.zeros((10, 3)), 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        van_rossum_distance(a, -np.ones((10, 2)), 1.0)


def test_rate_correlation():
    rng = np.random.default_rng(2)
    rates = rng.uniform(0.01, 0.2, 50)
    a = rng.random((4000, 50)) < rates
    b = rng.random((4000, 50)) < rates             # same rates, independent trains
    assert rate_correlation(a, a) == pytest.approx(1.0)
    assert rate_correlation(a, b) > 0.95
    # by hand: per-neuron counts / T, then Pearson
    ra, rb = a.mean(0), b.mean(0)
    assert rate_correlation(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1], rel=1e-12)
    assert rate_correlation(a, a[:, ::-1]) < 0.5   # rates scrambled across neurons
    flat = np.zeros((100, 5), dtype=bool)
    assert math.isnan(rate_correlation(flat, a[:100, :5]))   # a constant rate vector: undefined
