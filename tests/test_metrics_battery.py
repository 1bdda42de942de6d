"""Tests for the battery's reservoir property measures in labbench.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from labbench.metrics import (
    computational_capability,
    fading_memory_distance,
    fading_time,
    generalisation_rank,
    kernel_quality,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(19)


# -- kernel quality / generalisation rank ------------------------------------------------------


@pytest.mark.parametrize(("m", "n"), [(30, 80), (120, 50), (1, 10), (10, 1)])
def test_random_states_have_full_rank(rng, m, n):
    assert kernel_quality(rng.standard_normal((m, n))) == min(m, n)


def test_window_of_states_is_concatenated(rng):
    # (m, T, N): each stream's window is one row of length T*N, so 20 streams in 3 x 4 windows -> 12
    assert kernel_quality(rng.standard_normal((20, 3, 4))) == 12
    assert kernel_quality(rng.standard_normal((5, 3, 4))) == 5


@pytest.mark.parametrize("k", [1, 3, 7])
def test_combinations_of_k_vectors_have_rank_k_despite_small_noise(rng, k):
    basis = rng.standard_normal((k, 100))
    states = rng.standard_normal((40, k)) @ basis + 1e-6 * rng.standard_normal((40, 100))
    assert kernel_quality(states) == k
    assert generalisation_rank(states) == k
    # the threshold is the parameter that decides: below the noise floor every direction counts
    assert kernel_quality(states, rtol=1e-12) == 40


def test_noisy_copies_of_one_state_generalise_to_rank_one(rng):
    x0 = rng.standard_normal(60)
    states = x0 + 1e-4 * rng.standard_normal((25, 60))
    assert generalisation_rank(states) == 1
    # noise as large as the state itself is no longer generalised away
    assert generalisation_rank(x0 + rng.standard_normal((25, 60))) > 10


def test_rank_is_scale_invariant(rng):
    states = rng.standard_normal((30, 4)) @ rng.standard_normal((4, 50)) + 1e-5 * rng.standard_normal((30, 50))
    ranks = {kernel_quality(states * c) for c in (1e-6, 1.0, 1e3, 1e9)}
    assert ranks == {4}


def test_rank_ignores_a_direction_just_below_rtol_and_counts_one_just_above():
    s = np.diag([1.0, 0.5, 0.011, 0.009])
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 4)))[0]
    assert kernel_quality(q @ s @ q.T, rtol=0.01) == 3
    assert kernel_quality(q @ s @ q.T, rtol=0.005) == 4


def test_zero_states_have_rank_zero():
    assert kernel_quality(np.zeros((5, 7))) == 0


def test_esn_kernel_quality_exceeds_generalisation_rank(rng):
    # a small tanh ESN: different streams spread its end states, noisy copies of one stream do not
    n, steps, m = 50, 60, 40
    w = rng.standard_normal((n, n))
    w *= 0.8 / np.max(np.abs(np.linalg.eigvals(w)))
    w_in = rng.uniform(-1, 1, n)

    def end_states(u):  # u: (m, steps); vectorised over the m streams
        x = np.zeros((u.shape[0], n))
        for t in range(steps):
            x = np.tanh(x @ w.T + u[:, t, None] * w_in)
        return x

    kq = kernel_quality(end_states(rng.uniform(-1, 1, (m, steps))))
    base = rng.uniform(-1, 1, steps)
    gr = generalisation_rank(end_states(base + 0.01 * rng.standard_normal((m, steps))))
    assert kq > gr >= 1
    assert computational_capability(kq, gr) == kq - gr > 0


def test_computational_capability_is_the_difference():
    assert computational_capability(30, 4) == 26.0
    assert computational_capability(12.5, 2.5) == 10.0
    with pytest.raises(ValueError, match="kq=-1"):
        computational_capability(-1, 2)
    with pytest.raises(ValueError, match="gr=nan"):
        computational_capability(3, float("nan"))


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 3, 4, 5)), np.zeros((0, 4))])
def test_rank_bad_shapes_raise_naming_the_shape(bad):
    with pytest.raises(ValueError, match=r"kernel_quality.*" + re_shape(bad.shape)):
        kernel_quality(bad)
    with pytest.raises(ValueError, match=r"generalisation_rank.*" + re_shape(bad.shape)):
        generalisation_rank(bad)


def test_rank_rejects_non_finite_states_and_bad_rtol(rng):
    x = rng.standard_normal((4, 6))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite"):
        kernel_quality(x)
    with pytest.raises(ValueError, match="rtol"):
        kernel_quality(rng.standard_normal((4, 6)), rtol=0.0)
    with pytest.raises(ValueError, match="rtol"):
        generalisation_rank(rng.standard_normal((4, 6)), rtol=1.0)


def re_shape(shape: tuple[int, ...]) -> str:
    import re

    return re.escape(str(shape))


# -- fading memory -----------------------------------------------------------------------------


def _linear_pair(rng, rho: float, a: float, steps: int = 120, n: int = 30):
    """Two runs of x[t+1] = a W x[t] + w_in u[t] (same u), W symmetric with spectral radius rho."""
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    eig = np.concatenate([[rho], rng.uniform(-0.5 * rho, 0.5 * rho, n - 1)])  # a clear leading mode
    w = (q * eig) @ q.T
    w_in = rng.standard_normal(n)
    u = rng.uniform(-1, 1, steps)
    x0 = rng.standard_normal((2, n))
    # unrolled: x[t] = A^t x0 + sum_s A^(t-1-s) w_in u[s]; the input part is common to both runs
    powers = np.stack([np.linalg.matrix_power(a * w, t) for t in range(steps)])  # (T, n, n)
    drive = np.einsum("tij,j->ti", powers, w_in)  # A^t w_in
    common = np.stack([drive[:t][::-1].T @ u[:t] if t else np.zeros(n) for t in range(steps)])
    free = np.einsum("tij,bj->bti", powers, x0)
    return free[0] + common, free[1] + common


@pytest.mark.parametrize(("rho", "a"), [(0.9, 0.9), (0.95, 0.7)])
def test_stable_linear_reservoir_fades_at_rate_a_rho(rng, rho, a):
    xa, xb = _linear_pair(rng, rho, a)
    d = fading_memory_distance(xa, xb)
    assert d[0] == pytest.approx(1.0)
    t = np.arange(d.size)
    late = slice(20, 60)  # after the sub-leading modes (|eig| <= rho/2) have died out, before round-off
    slope, log_c = np.polyfit(t[late], np.log(d[late]), 1)
    assert np.exp(slope) == pytest.approx(a * rho, rel=1e-3)
    # d(t) ~ c (a rho)^t, c = the initial difference's share on the leading mode: crosses 1 % there
    ft = fading_time(d, 0.01)
    assert ft is not None
    assert abs(ft - (np.log(0.01) - log_c) / np.log(a * rho)) <= 1.0
    assert np.all(d[ft:] < 0.01) and d[ft - 1] >= 0.01


def test_expanding_linear_reservoir_does_not_fade(rng):
    xa, xb = _linear_pair(rng, rho=1.2, a=1.0)
    d = fading_memory_distance(xa, xb)
    assert d[-1] > 1e6
    assert fading_time(d) is None
    assert fading_time(fading_memory_distance(xa, xb, reference="states")) is None


def test_fading_distance_is_scale_invariant(rng):
    xa, xb = _linear_pair(rng, rho=0.9, a=0.9, steps=40)
    for reference in ("initial", "states"):
        d1 = fading_memory_distance(xa, xb, reference=reference)
        d2 = fading_memory_distance(1000.0 * xa, 1000.0 * xb, reference=reference)
        np.testing.assert_allclose(d2, d1, rtol=1e-12)


def test_states_reference_is_rms_state_norm(rng):
    xa, xb = rng.standard_normal((2, 10, 4))
    d = fading_memory_distance(xa, xb, reference="states")
    scale = np.sqrt(np.mean(np.concatenate([np.sum(xa**2, 1), np.sum(xb**2, 1)])))
    np.testing.assert_allclose(d, np.linalg.norm(xa - xb, axis=1) / scale, rtol=1e-12)


def test_fading_distance_batch_equals_stacked_pairs(rng):
    xa, xb = rng.standard_normal((2, 3, 15, 5))
    d = fading_memory_distance(xa, xb)
    assert d.shape == (3, 15)
    for i in range(3):
        np.testing.assert_allclose(d[i], fading_memory_distance(xa[i], xb[i]))


def test_identical_starts_and_diverged_runs_give_nan(rng):
    x = rng.standard_normal((5, 3))
    assert np.isnan(fading_memory_distance(x, x)).all()
    y = x + 1.0
    y[3] = np.inf
    d = fading_memory_distance(x, y)
    assert np.isnan(d[3]) and np.isfinite(d[[0, 1, 2, 4]]).all()


def test_fading_distance_bad_shapes_raise_naming_both(rng):
    with pytest.raises(ValueError, match=re_shape((10, 4)) + ".*" + re_shape((10, 5))):
        fading_memory_distance(np.zeros((10, 4)), np.zeros((10, 5)))
    with pytest.raises(ValueError, match=re_shape((10,)) + ".*" + re_shape((10,))):
        fading_memory_distance(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="reference"):
        fading_memory_distance(np.zeros((3, 2)), np.ones((3, 2)), reference="max")


def test_fading_time_rules():
    assert fading_time([1.0, 0.5, 0.005, 0.002]) == 2
    assert fading_time([0.001, 0.002]) == 0
    assert fading_time([1.0, 0.005, 0.5, 0.005]) == 3  # dipped and came back: counts from the last crossing
    assert fading_time([1.0, 0.005, 0.02]) is None  # not below at the end of the record
    assert fading_time([1.0, 0.005, np.nan]) is None  # nan never counts as below
    assert fading_time([1.0, 0.2, 0.05], fraction=0.1) == 2
    batch = fading_time(np.array([[1.0, 0.001, 0.001], [1.0, 1.0, 1.0]]))
    np.testing.assert_array_equal(batch, [1.0, np.inf])
    with pytest.raises(ValueError, match=re_shape((2, 2, 2))):
        fading_time(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="fraction"):
        fading_time([1.0], fraction=0.0)
