"""Tests for ``labbench.readouts.rls``: recursive least squares and FORCE learning."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge

from labbench.drivers.esn import EchoStateNetwork
from labbench.metrics import nrmse
from labbench.readouts import IncrementalRidge
from labbench.readouts.rls import FORCE, RLS
from labbench.tasks import MackeyGlass

# --------------------------------------------------------------------------- helpers


def _random_blocks(rng: np.random.Generator, n: int, n_cuts: int) -> list[np.ndarray]:
    """Index blocks of a random split of range(n), starting with three 1-row blocks."""
    cuts = rng.choice(np.arange(4, n), size=n_cuts, replace=False)
    return np.split(np.arange(n), np.concatenate([[1, 2, 3], np.sort(cuts)]))


def _feed(model, X, y, blocks):
    for block in blocks:
        assert model.partial_fit(X[block], y[block]) is model
    return model


def _rel_err(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def regression_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12)) * rng.uniform(0.3, 3.0, size=12) + rng.normal(size=12)
    W = rng.normal(size=(12, 3))
    Y = X @ W + rng.normal(size=3) + 0.1 * rng.normal(size=(400, 3))
    return X, Y


@pytest.fixture(scope="module")
def mackey_glass_states():
    """Mackey-Glass one-step data through a 300-unit ESN (protocol parameters, fewer units)."""
    washout, train, test = 100, 3000, 2000
    data = MackeyGlass().generate(washout + train + test, seed=0)
    with EchoStateNetwork(units=300, spectral_radius=1.25, leak=0.3, input_scaling=1.0, connectivity=0.1,
                          input_connectivity=0.2, seed=0, dtype="float64") as esn:
        states = esn.run(data.inputs).features
    tr = slice(washout, washout + train)
    te = slice(washout + train, washout + train + test)
    return states[tr], data.targets[tr, 0], states[te], data.targets[te, 0]


# ------------------------------------------------------------------ RLS == ridge


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_rls_without_forgetting_is_ridge_over_random_splits(regression_data, fit_intercept):
    X, Y = regression_data
    rng = np.random.default_rng(1)
    for delta in (1e-6, 1e-2, 1.0, 30.0):
        ref = IncrementalRidge(alpha=delta, fit_intercept=fit_intercept).fit(X, Y)
        closed = Ridge(alpha=delta, fit_intercept=fit_intercept, solver="cholesky").fit(X, Y)
        assert _rel_err(ref.coef_, closed.coef_) < 1e-10
        for _ in range(3):
            blocks = _random_blocks(rng, len(X), n_cuts=int(rng.integers(1, 30)))
            model = _feed(RLS(forgetting=1.0, delta=delta, fit_intercept=fit_intercept), X, Y, blocks)
            assert model.n_samples_seen_ == len(X) and model.n_features_in_ == 12
            assert model.coef_.shape == (3, 12) and model.intercept_.shape == (3,)
            assert _rel_err(model.coef_, ref.coef_) < 1e-6
            if fit_intercept:
                assert _rel_err(model.intercept_, ref.intercept_) < 1e-6
            else:
                assert np.all(model.intercept_ == 0.0)
            assert _rel_err(model.predict(X), ref.predict(X)) < 1e-6
            # the inverse correlation matrix is the inverse of the regularised Gram matrix
            if not fit_intercept:
                gram = X.T @ X + delta * np.eye(12)
                assert _rel_err(model.P_, np.linalg.inv(gram)) < 1e-6


def test_rls_one_dimensional_targets_follow_sklearn_shapes(regression_data):
    X, Y = regression_data
    y = Y[:, 0]
    model = RLS(delta=0.5).fit(X, y)
    ref = Ridge(alpha=0.5, solver="cholesky").fit(X, y)
    assert model.coef_.shape == (12,) and isinstance(model.intercept_, float)
    assert model.predict(X).shape == (400,)
    assert _rel_err(model.coef_, ref.coef_) < 1e-6
    assert abs(model.intercept_ - ref.intercept_) < 1e-6 * abs(ref.intercept_)
    column = RLS(delta=0.5).fit(X, Y[:, :1])
    assert column.coef_.shape == (1, 12) and column.intercept_.shape == (1,)
    assert column.predict(X).shape == (400, 1)
    assert model.score(X, y) > 0.99  # RegressorMixin


def _asymmetry(P: np.ndarray) -> float:
    return float(np.abs(P - P.T).max() / np.abs(P).max())


def test_rls_block_invariance_and_symmetry(regression_data):
    """Any block split gives the one-call result, to rounding.

    Not bit for bit: the kernel groups updates four at a time within a call, so the
    split changes the order of some roundings. Measured over 50 random splits: weights
    and predictions within 7e-14 (relative, 2-norm), P within 1.5e-12 (forgetting
    0.97, where P reflects a short window), everything within 4e-15 without forgetting.
    """
    X, Y = regression_data
    rng = np.random.default_rng(2)
    # forgetting=0.9 folds the 1/lambda scale into P every ~90 updates (re-symmetrising it)
    for params in (dict(), dict(forgetting=0.97, delta=0.1), dict(forgetting=0.9, fit_intercept=False)):
        whole = RLS(**params).partial_fit(X, Y)
        exact = params.get("forgetting", 1.0) == 1.0
        for blocks in (_random_blocks(rng, len(X), 25), [[i] for i in range(len(X))]):
            split = _feed(RLS(**params), X, Y, blocks)
            assert _rel_err(split.coef_, whole.coef_) < (1e-13 if exact else 1e-12)
            assert _rel_err(split.intercept_ + 1.0, whole.intercept_ + 1.0) < 1e-12
            assert _rel_err(split.predict(X), whole.predict(X)) < (1e-13 if exact else 1e-12)
            assert _rel_err(split.P_, whole.P_) < (1e-13 if exact else 1e-10)
        assert _asymmetry(whole.P_) < 1e-12
        assert np.linalg.eigvalsh(whole.P_).min() > 0


def test_rls_stays_symmetric_and_exact_over_a_long_run_with_forgetting():
    """20,000 updates at N=60 with forgetting 0.995: P must neither drift from symmetry
    nor from the closed-form exponentially weighted solution."""
    rng = np.random.default_rng(6)
    n, d = 20_000, 60
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    X = np.tanh(rng.normal(size=(n, d)) @ mix)
    y = X @ rng.normal(size=d) + np.sin(np.arange(n) / 50.0) + 0.01 * rng.normal(size=n)
    lam = 0.995
    model = _feed(RLS(forgetting=lam, delta=1e-3), X, y, np.array_split(np.arange(n), 13))
    assert _asymmetry(model.P_) < 1e-11
    tail = 4000  # lam^4000 = 2e-9: older samples (and the penalty) no longer matter
    Z = np.c_[X[-tail:], np.ones(tail)]
    w = lam ** np.arange(tail - 1, -1, -1)
    A = (Z * w[:, None]).T @ Z
    b = (Z * w[:, None]).T @ y[-tail:]
    exact = np.linalg.solve(A, b)
    assert _rel_err(np.r_[model.coef_, model.intercept_], exact) < 1e-7  # measured 4e-10
    assert _rel_err(model.P_, np.linalg.inv(A)) < 1e-7  # measured 3e-9


def test_rls_on_ill_conditioned_reservoir_states_matches_ridge(mackey_glass_states):
    X, y, _, _ = mackey_glass_states
    assert np.linalg.cond(np.cov(X.T)) > 1e8, "reservoir states should be badly conditioned"
    for delta in (1e-6, 1e-3):
        model = _feed(RLS(delta=delta), X, y, np.array_split(np.arange(len(y)), 7))
        ref = IncrementalRidge(alpha=delta).fit(X, y)
        assert _rel_err(model.coef_, ref.coef_) < 1e-6
        assert abs(model.intercept_ - ref.intercept_) < 1e-6 * max(1.0, abs(ref.intercept_))
        assert _asymmetry(model.P_) < 1e-12


# ------------------------------------------------------------------- forgetting


def test_forgetting_tracks_a_switch_of_the_target_weights():
    rng = np.random.default_rng(3)
    n, d = 2000, 6
    X = rng.normal(size=(n, d))
    w_old, w_new = rng.normal(size=d), rng.normal(size=d)
    y = np.where(np.arange(n) < n // 2, X @ w_old, X @ w_new) + 0.01 * rng.normal(size=n)
    blocks = np.array_split(np.arange(n), 9)
    forgetting = _feed(RLS(forgetting=0.99, delta=1.0, fit_intercept=False), X, y, blocks)
    remembering = _feed(RLS(forgetting=1.0, delta=1.0, fit_intercept=False), X, y, blocks)
    assert _rel_err(forgetting.coef_, w_new) < 0.02
    assert _rel_err(remembering.coef_, w_new) > 0.3  # the average of old and new
    assert _rel_err(remembering.coef_, (w_old + w_new) / 2) < 0.1
    # and it keeps up: the error of the latest predictions is at the noise level
    assert np.std(forgetting.predict(X[-200:]) - y[-200:]) < 0.03


# ------------------------------------------------------------ Mackey-Glass (acceptance)


def test_rls_reaches_ridge_nrmse_on_mackey_glass(mackey_glass_states):
    """Acceptance: one-step MG prediction, RLS test NRMSE within 10% of the ridge solution's.

    300-unit ESN (protocols/mackey_glass.toml parameters, float64 states), washout
    100, train 3000, test 2000. Ridge alpha 1e-6 as in the protocol; RLS
    forgetting=1, delta=1e-6 (the same penalty), fed in blocks of 500.
    """
    Xtr, ytr, Xte, yte = mackey_glass_states
    ridge = IncrementalRidge(alpha=1e-6).fit(Xtr, ytr)
    rls = _feed(RLS(forgetting=1.0, delta=1e-6), Xtr, ytr, np.array_split(np.arange(len(ytr)), 6))
    ridge_nrmse = nrmse(yte, ridge.predict(Xte))
    rls_nrmse = nrmse(yte, rls.predict(Xte))
    assert ridge_nrmse < 0.01
    assert rls_nrmse <= 1.10 * ridge_nrmse, (rls_nrmse, ridge_nrmse)


def test_force_learns_mackey_glass_from_the_first_block(mackey_glass_states):
    Xtr, ytr, Xte, yte = mackey_glass_states
    force = FORCE(alpha=1e-2)
    force.partial_fit(Xtr[:500], ytr[:500])
    err = force.train_error_
    assert err.shape == (500,)
    sd = np.std(ytr)
    assert err[0] == pytest.approx(abs(ytr[0]))  # the first output is 0
    # FORCE pulls the output onto the target within a few samples (small alpha) ...
    assert err[1:10].mean() < 0.1 * sd
    # ... and the error keeps falling over the first block (measured: 0.0145 -> 0.0055)
    assert err[400:].mean() < 0.6 * err[10:100].mean()
    force.partial_fit(Xtr[500:], ytr[500:])
    assert force.train_error_.shape == (len(ytr),)
    # and over later blocks (measured: 0.0031 over the last 500)
    assert force.train_error_[-500:].mean() < 0.8 * err[400:].mean()
    assert nrmse(yte, force.predict(Xte)) < 0.05


# ------------------------------------------------------------------------ FORCE


def test_force_is_rls_on_the_updated_rows(regression_data):
    X, Y = regression_data
    rng = np.random.default_rng(4)
    # update_every=1: the very same recursion as RLS(forgetting=1, delta=alpha)
    force = _feed(FORCE(alpha=0.3), X, Y, _random_blocks(rng, len(X), 12))
    rls = RLS(delta=0.3, fit_intercept=False).fit(X, Y)
    np.testing.assert_allclose(force.coef_, rls.coef_, rtol=1e-12, atol=1e-14)
    # update_every=3: learns from rows 0, 3, 6, ... only, whatever the block split
    force3 = _feed(FORCE(alpha=0.3, update_every=3), X, Y, _random_blocks(rng, len(X), 17))
    rls3 = RLS(delta=0.3, fit_intercept=False).fit(X[::3], Y[::3])
    np.testing.assert_allclose(force3.coef_, rls3.coef_, rtol=1e-12, atol=1e-14)
    assert force3.n_samples_seen_ == len(X) and force3.train_error_.shape == (len(X),)
    with_intercept = FORCE(alpha=0.3, fit_intercept=True).fit(X, Y)
    np.testing.assert_allclose(with_intercept.intercept_, RLS(delta=0.3).fit(X, Y).intercept_, rtol=1e-12)


def test_force_step_returns_the_output_before_the_update(regression_data):
    X, Y = regression_data
    y = Y[:, 0]
    force = FORCE(alpha=1.0).partial_fit(X[:50], y[:50])
    stepped = clone(force).partial_fit(X[:50], y[:50])
    for t in range(50, 80):
        before = float(stepped.predict(X[t : t + 1])[0])
        z = stepped.step(X[t], y[t])
        assert isinstance(z, float) and z == pytest.approx(before, rel=1e-12, abs=1e-12)
        assert stepped.train_error_[-1] == pytest.approx(abs(y[t] - z), rel=1e-12)
    force.partial_fit(X[50:80], y[50:80])
    np.testing.assert_allclose(stepped.coef_, force.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stepped.train_error_, force.train_error_, rtol=1e-12, atol=1e-14)
    # learning off: output only, nothing learnt or counted
    coef = stepped.coef_.copy()
    assert stepped.step(X[90]) == pytest.approx(float(stepped.predict(X[90:91])[0]), rel=1e-12)
    assert stepped.n_samples_seen_ == 80 and np.array_equal(stepped.coef_, coef)
    # multi-output step returns an array
    multi = FORCE().partial_fit(X[:5], Y[:5])
    assert multi.step(X[5], Y[5]).shape == (3,)


def test_force_closed_loop_sine_generation():
    """FORCE with output feedback (Sussillo & Abbott 2009, Fig. 2 style).

    A 300-unit ESN whose only input is the readout's own output z (fed back with
    scale 0.3) is driven by z while FORCE learns a sine of period 50 steps for 3000
    steps; then learning is switched off and the network runs free for 500 steps.
    """
    period, n_train, n_free = 50.0, 3000, 500
    target = np.sin(2 * np.pi * np.arange(n_train + n_free) / period)
    force = FORCE(alpha=0.1)
    with EchoStateNetwork(units=300, gain=1.2, leak=0.3, input_scaling=0.3, connectivity=0.1, seed=0,
                          dtype="float64") as esn:
        esn.set_state(np.random.default_rng(0).uniform(-0.5, 0.5, 300))
        z = 0.0
        trained = np.empty(n_train)
        for t in range(n_train):
            x = esn.run(np.array([[z]])).features[0]
            z = force.step(x, target[t])
            trained[t] = z
        coef = force.coef_.copy()
        free = np.empty(n_free)
        for t in range(n_free):
            x = esn.run(np.array([[z]])).features[0]
            z = force.step(x)  # learning off
            free[t] = z
    assert np.array_equal(force.coef_, coef) and force.n_samples_seen_ == n_train
    # while learning, the fed-back output already follows the target
    assert nrmse(target[100:n_train], trained[100:]) < 0.05
    # free run: keeps generating the sine, in phase, for hundreds of steps
    assert nrmse(target[n_train:], free) < 0.05
    assert np.abs(free - target[n_train:]).max() < 0.1


# ------------------------------------------------------------ validation and API


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, float("nan"), True, "1"])
def test_rls_rejects_bad_forgetting(value):
    with pytest.raises(ValueError, match=r"forgetting must be a real number in \(0, 1\], got " + repr(value)
                       .replace("(", r"\(").replace(".", r"\.")):
        RLS(forgetting=value).fit(np.ones((3, 2)), np.ones(3))


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf")])
def test_rls_rejects_bad_delta_and_force_bad_alpha(value):
    with pytest.raises(ValueError, match=f"delta must be a finite real number > 0, got {value!r}"):
        RLS(delta=value).fit(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match=f"alpha must be a finite real number > 0, got {value!r}"):
        FORCE(alpha=value).fit(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="alpha must be"):
        FORCE(alpha=value).step(np.ones(2), 1.0)


@pytest.mark.parametrize("value", [0, -2, 1.5])
def test_force_rejects_bad_update_every(value):
    with pytest.raises(ValueError, match=f"update_every must be an integer >= 1, got {value!r}"):
        FORCE(update_every=value).fit(np.ones((3, 2)), np.ones(3))


@pytest.mark.parametrize("cls", [RLS, FORCE])
def test_width_mismatch_names_expected_and_given(regression_data, cls):
    X, Y = regression_data
    model = cls().partial_fit(X[:10], Y[:10, 0])
    name = cls.__name__
    with pytest.raises(ValueError, match=f"X has 5 features, but {name} is expecting 12"):
        model.partial_fit(X[10:20, :5], Y[10:20, 0])
    with pytest.raises(ValueError, match=f"X has 13 features, but {name} is expecting 12"):
        model.predict(np.c_[X[:3], X[:3, :1]])
    with pytest.raises(ValueError, match=f"y has 2 outputs, but {name} is expecting 1"):
        model.partial_fit(X[:4], Y[:4, :2])
    with pytest.raises(ValueError, match="inconsistent numbers of samples: 4 != 3"):
        model.partial_fit(X[:4], Y[:3, 0])
    with pytest.raises(ValueError, match="NaN"):
        model.partial_fit(np.full((2, 12), np.nan), Y[:2, 0])
    assert model.n_samples_seen_ == 10  # nothing learnt from the rejected blocks
    if cls is FORCE:
        with pytest.raises(ValueError, match=f"X has 11 features, but {name} is expecting 12"):
            model.step(X[0, :11], 1.0)
        with pytest.raises(ValueError, match="y has 2 outputs"):
            model.step(X[0], [1.0, 2.0])


@pytest.mark.parametrize("cls", [RLS, FORCE])
def test_sklearn_conventions(regression_data, cls):
    X, Y = regression_data
    model = cls()
    assert model.get_params() == clone(model).get_params()
    assert not hasattr(model, "n_features_in_")
    with pytest.raises(NotFittedError):
        model.predict(X)
    with pytest.raises(NotFittedError):
        model.coef_  # noqa: B018
    assert model.fit(X[:100], Y[:100]) is model
    blank = clone(model)
    assert not hasattr(blank, "n_samples_seen_")
    # fit forgets what came before
    model.fit(X[200:300] * 3.0, Y[200:300] + 1.0)
    model.fit(X[:100], Y[:100])
    np.testing.assert_array_equal(model.coef_, cls().fit(X[:100], Y[:100]).coef_)
    # pickling preserves the state: continuing gives the same result
    restored = pickle.loads(pickle.dumps(model))
    model.partial_fit(X[100:], Y[100:])
    restored.partial_fit(X[100:], Y[100:])
    np.testing.assert_array_equal(model.coef_, restored.coef_)
    assert model.P_.shape == ((13, 13) if model.fit_intercept else (12, 12))


def test_rls_raises_when_p_breaks_down_and_keeps_earlier_rows():
    X = np.ones((5, 3))
    X[3] = 1e160  # x'Px overflows
    model = RLS(fit_intercept=False)
    with pytest.raises(FloatingPointError, match="at sample 3"):
        model.partial_fit(X, np.ones(5))
    assert model.n_samples_seen_ == 3
    ref = RLS(fit_intercept=False).fit(X[:3], np.ones(3))
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-12)
    np.testing.assert_allclose(model.P_, ref.P_, rtol=1e-12, atol=1e-15)
