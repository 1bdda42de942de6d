"""Tests for ``labbench.readouts``: incremental ridge, the scikit-learn wrapper, the registry."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.svm import SVR

from labbench.readouts import (
    READOUTS,
    IncrementalRidge,
    SklearnReadout,
    make_readout,
)

# --------------------------------------------------------------------------- helpers


def _random_blocks(rng: np.random.Generator, n: int, n_cuts: int) -> list[np.ndarray]:
    """Index blocks of a random split of range(n), starting with three 1-row blocks."""
    cuts = rng.choice(np.arange(4, n), size=n_cuts, replace=False)
    cuts = np.concatenate([[1, 2, 3], np.sort(cuts)])
    return np.split(np.arange(n), cuts)


def _feed(model, X, y, blocks):
    for block in blocks:
        assert model.partial_fit(X[block], y[block]) is model
    return model


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def well_conditioned():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)) * rng.uniform(0.5, 3.0, size=8) + rng.normal(size=8)
    w = rng.normal(size=8)
    y = X @ w + 2.5 + 0.1 * rng.normal(size=300)
    return X, y


@pytest.fixture(scope="module")
def reservoir_like():
    """float32 tanh of a few correlated random walks: a badly conditioned feature matrix."""
    rng = np.random.default_rng(1)
    T, d = 5000, 200
    walks = np.cumsum(rng.normal(size=(T, 8)), axis=0) / np.sqrt(T)
    drive = walks @ rng.normal(size=(8, d)) + 1e-3 * rng.normal(size=(T, d)) + rng.normal(size=d)
    X = np.tanh(drive).astype(np.float32)
    y = walks @ rng.normal(size=8) + np.sin(0.05 * np.arange(T))
    return X, y


# ---------------------------------------------------------------- IncrementalRidge


def test_ridge_equals_batch_sklearn_over_random_splits(well_conditioned):
    X, y = well_conditioned
    rng = np.random.default_rng(42)
    for alpha in (1e-6, 0.1, 10.0):
        ref = Ridge(alpha=alpha, solver="cholesky").fit(X, y)
        for _ in range(15):
            blocks = _random_blocks(rng, len(X), n_cuts=int(rng.integers(1, 40)))
            model = _feed(IncrementalRidge(alpha=alpha), X, y, blocks)
            assert model.n_samples_seen_ == len(X)
            assert model.n_features_in_ == X.shape[1]
            assert model.coef_.shape == ref.coef_.shape == (8,)
            np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=0)
            np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8)
            assert isinstance(model.intercept_, float)
            np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-8)


def test_ridge_every_block_a_single_row(well_conditioned):
    X, y = well_conditioned
    model = _feed(IncrementalRidge(alpha=0.1), X, y, [[i] for i in range(len(X))])
    ref = Ridge(alpha=0.1, solver="cholesky").fit(X, y)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8)


def test_ridge_ill_conditioned_reservoir_float32(reservoir_like):
    X32, y = reservoir_like
    X64 = X32.astype(np.float64)
    cond = np.linalg.cond(np.cov(X64.T))
    assert cond > 1e9, "fixture should be badly conditioned"
    rng = np.random.default_rng(7)
    for alpha in (1e-8, 1e-6):
        ref = Ridge(alpha=alpha, solver="cholesky").fit(X64, y)
        model = _feed(IncrementalRidge(alpha=alpha), X32, y, _random_blocks(rng, len(y), 25))
        assert model.comoment_XX_.dtype == np.float64
        assert _rel_err(model.coef_, ref.coef_) < 1e-6
        assert abs(model.intercept_ - ref.intercept_) <= 1e-6 * max(1.0, abs(ref.intercept_))
        assert _rel_err(model.predict(X32), ref.predict(X64)) < 1e-6


def test_ridge_no_cancellation_with_large_feature_offset():
    # Summing raw X^T X and subtracting n * mean mean^T loses ~1e-4 relative here;
    # the centred co-moment merge must not.
    rng = np.random.default_rng(3)
    X = 1e6 + rng.normal(size=(2000, 10))
    y = X @ rng.normal(size=10) + 0.1 * rng.normal(size=2000)
    ref = Ridge(alpha=1e-3, solver="cholesky").fit(X, y)
    model = _feed(IncrementalRidge(alpha=1e-3), X, y, np.array_split(np.arange(2000), 37))
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8)


def test_ridge_multi_output(well_conditioned):
    X, _ = well_conditioned
    rng = np.random.default_rng(5)
    Y = X @ rng.normal(size=(8, 3)) + rng.normal(size=3) + 0.1 * rng.normal(size=(len(X), 3))
    ref = Ridge(alpha=0.5, solver="cholesky").fit(X, Y)
    model = _feed(IncrementalRidge(alpha=0.5), X, Y, _random_blocks(rng, len(X), 20))
    assert model.coef_.shape == (3, 8) and model.intercept_.shape == (3,)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8)
    assert model.predict(X).shape == (len(X), 3)

    # A single target given as a column keeps 2-D shapes throughout (as
    # LinearRegression does; Ridge itself ravels coef_ and predictions here).
    col = IncrementalRidge(alpha=0.5).fit(X, Y[:, :1])
    ref_col = Ridge(alpha=0.5, solver="cholesky").fit(X, Y[:, 0])
    assert col.coef_.shape == (1, 8) and col.intercept_.shape == (1,)
    assert col.predict(X).shape == (len(X), 1)
    np.testing.assert_allclose(col.coef_[0], ref_col.coef_, rtol=1e-8)


def test_ridge_without_intercept(well_conditioned):
    X, y = well_conditioned
    ref = Ridge(alpha=0.3, fit_intercept=False, solver="cholesky").fit(X, y)
    model = _feed(
        IncrementalRidge(alpha=0.3, fit_intercept=False),
        X,
        y,
        _random_blocks(np.random.default_rng(9), len(X), 12),
    )
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8)
    assert model.intercept_ == 0.0
    np.testing.assert_allclose(model.predict(X), X @ ref.coef_, rtol=1e-8)


def test_ridge_solution_is_lazy_and_follows_hyperparameters(well_conditioned):
    X, y = well_conditioned
    model = IncrementalRidge(alpha=1.0).partial_fit(X[:100], y[:100])
    first = model.coef_.copy()
    assert model.coef_ is model.coef_  # cached between calls
    model.partial_fit(X[100:], y[100:])
    np.testing.assert_allclose(model.coef_, Ridge(alpha=1.0).fit(X, y).coef_, rtol=1e-8)
    assert not np.allclose(model.coef_, first)
    # Re-solving for another alpha needs no data.
    model.set_params(alpha=25.0, fit_intercept=False)
    ref = Ridge(alpha=25.0, fit_intercept=False, solver="cholesky").fit(X, y)
    np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8)


def test_ridge_fit_resets(well_conditioned):
    X, y = well_conditioned
    model = IncrementalRidge(alpha=0.1).partial_fit(X[:50] * 7, y[:50] - 3)
    assert model.fit(X, y) is model
    assert model.n_samples_seen_ == len(X)
    np.testing.assert_allclose(model.coef_, Ridge(alpha=0.1).fit(X, y).coef_, rtol=1e-8)


def test_ridge_singular_falls_back_to_lstsq():
    rng = np.random.default_rng(11)
    a = rng.normal(size=(200, 3))
    X = np.c_[a, a[:, 0]]  # duplicated column: X_c^T X_c is singular
    y = a @ [1.0, -1.0, 2.0] + 0.5
    model = IncrementalRidge(alpha=0.0).fit(X, y)
    assert np.all(np.isfinite(model.coef_))
    np.testing.assert_allclose(model.predict(X), LinearRegression().fit(X, y).predict(X), atol=1e-8)
    # minimum-norm solution splits the weight evenly over the duplicated column
    np.testing.assert_allclose(model.coef_[[0, 3]], [0.5, 0.5], atol=1e-8)


def test_ridge_feature_mismatch_names_expected_and_given(well_conditioned):
    X, y = well_conditioned
    model = IncrementalRidge().partial_fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="X has 5 features, but IncrementalRidge is expecting 8"):
        model.partial_fit(X[10:20, :5], y[10:20])
    with pytest.raises(ValueError, match="X has 9 features, but IncrementalRidge is expecting 8"):
        model.predict(np.c_[X[:3], X[:3, :1]])
    with pytest.raises(ValueError, match="y has 2 outputs, but IncrementalRidge is expecting 1"):
        model.partial_fit(X[:4], np.c_[y[:4], y[:4]])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.partial_fit(X[:4], y[:3])
    assert model.n_samples_seen_ == 10  # failed blocks leave the state alone


def test_ridge_bad_alpha_and_not_fitted(well_conditioned):
    X, y = well_conditioned
    with pytest.raises(NotFittedError):
        IncrementalRidge().predict(X)
    assert not hasattr(IncrementalRidge(), "coef_")
    with pytest.raises(ValueError, match="alpha"):
        IncrementalRidge(alpha=-1.0).fit(X, y).coef_  # noqa: B018


def test_ridge_clone_and_pickle_round_trip(well_conditioned):
    X, y = well_conditioned
    model = IncrementalRidge(alpha=0.2, fit_intercept=False).partial_fit(X[:100], y[:100])
    twin = clone(model)
    assert twin.get_params() == {"alpha": 0.2, "fit_intercept": False}
    assert not hasattr(twin, "n_samples_seen_")
    np.testing.assert_array_equal(twin.fit(X[:100], y[:100]).coef_, model.coef_)

    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    restored.partial_fit(X[100:], y[100:])  # keeps learning after the trip
    ref = Ridge(alpha=0.2, fit_intercept=False, solver="cholesky").fit(X, y)
    np.testing.assert_allclose(restored.coef_, ref.coef_, rtol=1e-8)


# ----------------------------------------------------------------- SklearnReadout


def test_sklearn_readout_default_ridge_refits_lazily(well_conditioned):
    X, y = well_conditioned
    readout = SklearnReadout()
    blocks = np.array_split(np.arange(len(X)), 5)
    readout.partial_fit(X[blocks[0]], y[blocks[0]])
    readout.partial_fit(X[blocks[1]], y[blocks[1]])
    assert readout.n_refits_ == 0  # nothing fitted until a prediction needs it
    seen = np.concatenate(blocks[:2])
    np.testing.assert_allclose(readout.predict(X), Ridge().fit(X[seen], y[seen]).predict(X))
    readout.predict(X)
    assert readout.n_refits_ == 1  # no new data, no refit
    for block in blocks[2:]:
        readout.partial_fit(X[block], y[block])
    np.testing.assert_allclose(readout.predict(X), Ridge().fit(X, y).predict(X))
    assert readout.n_refits_ == 2 and readout.n_samples_seen_ == len(X)
    assert isinstance(readout.estimator_, Ridge) and readout.estimator is None


def test_sklearn_readout_refit_every(well_conditioned):
    X, y = well_conditioned
    readout = SklearnReadout(Ridge(alpha=2.0), refit_every=100)
    for start in range(0, 300, 30):  # 10 blocks of 30 rows
        readout.partial_fit(X[start : start + 30], y[start : start + 30])
        if start == 90:  # 120 rows seen: first refit happened at 120 >= 100
            assert readout.n_refits_ == 1
            np.testing.assert_allclose(
                readout.predict(X), Ridge(alpha=2.0).fit(X[:120], y[:120]).predict(X)
            )
    # refits at 120 and 240; the last 60 rows wait for the next threshold
    assert readout.n_refits_ == 2
    ref = Ridge(alpha=2.0).fit(X[:240], y[:240])
    np.testing.assert_allclose(readout.predict(X), ref.predict(X))
    readout.refit()
    np.testing.assert_allclose(readout.predict(X), Ridge(alpha=2.0).fit(X, y).predict(X))
    with pytest.raises(ValueError, match="refit_every"):
        SklearnReadout(refit_every=0).partial_fit(X, y)


def test_sklearn_readout_forwards_partial_fit(well_conditioned):
    X, y = well_conditioned
    blocks = np.array_split(np.arange(len(X)), 6)
    template = SGDRegressor(random_state=0, learning_rate="constant", eta0=1e-3)
    readout = SklearnReadout(template)
    manual = clone(template)
    for block in blocks:
        readout.partial_fit(X[block], y[block])
        manual.partial_fit(X[block], y[block])
    assert readout.n_refits_ == 0 and readout.n_samples_seen_ == len(X)
    np.testing.assert_array_equal(readout.estimator_.coef_, manual.coef_)
    np.testing.assert_array_equal(readout.predict(X), manual.predict(X))
    assert not hasattr(template, "coef_")  # the given estimator is never fitted


def test_sklearn_readout_classifier_classes_on_first_call():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    first = np.flatnonzero(y == 0)[:5]  # first block holds a single class
    rest = np.setdiff1d(np.arange(400), first)

    with pytest.raises(ValueError, match="classes"):
        SklearnReadout(SGDClassifier(random_state=0)).partial_fit(X[first], y[first])

    readout = SklearnReadout(SGDClassifier(random_state=0), classes=[0, 1])
    assert is_classifier(readout) and not is_regressor(readout)
    readout.partial_fit(X[first], y[first])
    for block in np.array_split(rest, 5):
        readout.partial_fit(X[block], y[block])
    np.testing.assert_array_equal(readout.classes_, [0, 1])
    assert readout.score(X, y) == readout.estimator_.score(X, y) > 0.9
    assert readout.decision_function(X[:3]).shape == (3,)

    # The argument form, as in scikit-learn, works too.
    by_arg = SklearnReadout(SGDClassifier(random_state=0))
    by_arg.partial_fit(X[first], y[first], classes=np.array([0, 1]))
    np.testing.assert_array_equal(by_arg.classes_, [0, 1])


@pytest.mark.parametrize("estimator", [LogisticRegression(), SVR(), Ridge()])
def test_sklearn_readout_column_targets_raise_no_conversion_warning(estimator):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 3))
    target = (X[:, :1] > 0).astype(int) if is_classifier(estimator) else X[:, :1] * 2.0
    readout = SklearnReadout(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataConversionWarning)
        for block in np.array_split(np.arange(120), 3):
            readout.partial_fit(X[block], target[block])
        y_pred = readout.predict(X)
        score = readout.score(X, target)
        readout.fit(X, target)
    assert y_pred.shape == (120, 1)  # shaped like the training targets
    assert score > 0.8
    if is_classifier(estimator):
        assert readout.predict_proba(X[:4]).shape == (4, 2)
    else:
        assert not hasattr(readout, "predict_proba")


def test_sklearn_readout_regressor_score_and_fit(well_conditioned):
    X, y = well_conditioned
    readout = SklearnReadout(Ridge(alpha=0.5)).partial_fit(X[:20], y[:20])
    assert readout.fit(X, y) is readout
    assert readout.n_samples_seen_ == len(X)
    assert is_regressor(readout)
    ref = Ridge(alpha=0.5).fit(X, y)
    assert readout.score(X, y) == pytest.approx(ref.score(X, y))
    np.testing.assert_allclose(readout.predict(X), ref.predict(X))


def test_sklearn_readout_buffer_does_not_alias_caller(well_conditioned):
    X, y = well_conditioned
    Xb, yb = X[:150].copy(), y[:150].copy()
    readout = SklearnReadout(Ridge()).partial_fit(Xb, yb)
    Xb[:] = 0.0  # a live trainer reusing its block buffer
    yb[:] = 0.0
    np.testing.assert_allclose(readout.predict(X), Ridge().fit(X[:150], y[:150]).predict(X))


def test_sklearn_readout_validation_and_state(well_conditioned):
    X, y = well_conditioned
    with pytest.raises(NotFittedError):
        SklearnReadout().predict(X)
    readout = SklearnReadout().partial_fit(X[:10], y[:10])
    with pytest.raises(ValueError, match="X has 3 features, but SklearnReadout is expecting 8"):
        readout.partial_fit(X[:5, :3], y[:5])
    with pytest.raises(ValueError, match="X has 3 features, but SklearnReadout is expecting 8"):
        readout.predict(X[:5, :3])
    with pytest.raises(ValueError, match="per sample"):
        readout.partial_fit(X[:5], np.c_[y[:5], y[:5]])
    assert readout.n_samples_seen_ == 10


def test_sklearn_readout_clone_and_pickle(well_conditioned):
    X, y = well_conditioned
    readout = SklearnReadout(SVR(C=3.0), refit_every=50, classes=None)
    readout.partial_fit(X[:100], y[:100])
    twin = clone(readout)
    assert not hasattr(twin, "estimator_") and twin.refit_every == 50
    assert twin.get_params()["estimator__C"] == 3.0
    restored = pickle.loads(pickle.dumps(readout))
    np.testing.assert_array_equal(restored.predict(X), readout.predict(X))
    restored.partial_fit(X[100:], y[100:])
    # refit at 100 rows (first block), then at 300 (second block, 200 >= 50)
    assert restored.n_samples_seen_ == len(X) and restored.n_refits_ == 2
    np.testing.assert_allclose(restored.predict(X), SVR(C=3.0).fit(X, y).predict(X))


# ------------------------------------------------------------------- make_readout


def test_make_readout_registry():
    assert READOUTS["ridge"] is IncrementalRidge and READOUTS["sklearn"] is SklearnReadout
    ridge = make_readout("ridge", alpha=1e-4, fit_intercept=False)
    assert isinstance(ridge, IncrementalRidge)
    assert ridge.get_params() == {"alpha": 1e-4, "fit_intercept": False}
    assert make_readout("sklearn").get_params()["estimator"] is None


def test_make_readout_sklearn_dotted_path(well_conditioned):
    X, y = well_conditioned
    readout = make_readout(
        "sklearn",
        estimator="sklearn.linear_model.Ridge",
        estimator_params={"alpha": 3.0},
        refit_every=10,
    )
    assert type(readout.estimator) is Ridge and readout.estimator.alpha == 3.0
    assert readout.refit_every == 10
    np.testing.assert_allclose(readout.fit(X, y).predict(X), Ridge(alpha=3.0).fit(X, y).predict(X))
    # estimator_params also apply to an instance (on a clone) and to the default Ridge
    given = SGDRegressor()
    from_instance = make_readout("sklearn", estimator=given, estimator_params={"alpha": 0.5})
    assert from_instance.estimator.alpha == 0.5 and given.alpha != 0.5
    assert make_readout("sklearn", estimator_params={"alpha": 7.0}).estimator.alpha == 7.0


def test_make_readout_errors():
    with pytest.raises(ValueError, match=r"'no-such-kind'.*known kinds: 'ridge'"):
        make_readout("no-such-kind")
    with pytest.raises(ValueError, match=r"'alpah'.*'ridge'"):
        make_readout("ridge", alpah=1.0)
    with pytest.raises(ValueError, match=r"'estimator_params'"):
        make_readout("ridge", estimator_params={})
    with pytest.raises(ValueError, match=r"'bogus'.*Ridge"):
        make_readout(
            "sklearn", estimator="sklearn.linear_model.Ridge", estimator_params={"bogus": 1}
        )
    with pytest.raises(ValueError, match=r"'bogus'.*SGDRegressor"):
        make_readout("sklearn", estimator=SGDRegressor(), estimator_params={"bogus": 1})
    # estimator names come from an allow-list: nothing else is imported
    with pytest.raises(ValueError, match="estimator 'sklearn.linear_model.Nope' is not allowed"):
        make_readout("sklearn", estimator="sklearn.linear_model.Nope")
    with pytest.raises(ValueError, match="estimator 'numpy.linalg.solve' is not allowed"):
        make_readout("sklearn", estimator="numpy.linalg.solve")
    assert isinstance(make_readout("sklearn", estimator="SVR").estimator, SVR)
