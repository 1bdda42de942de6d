"""Tests of the Kohonen self-organizing map (labbench.readouts.som)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

from labbench.readouts.labelling import VoteClassifier
from labbench.readouts.som import SOM

try:  # a dev dependency; the comparisons below are skipped without it
    from minisom import MiniSom
except ImportError:  # pragma: no cover - depends on the environment
    MiniSom = None

needs_minisom = pytest.mark.skipif(MiniSom is None, reason="minisom is not installed (pip install minisom)")


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data / 16.0, d.target


@pytest.fixture(scope="module")
def uniform2d():
    return np.random.default_rng(1).uniform(size=(2000, 2))


def _hand_update(W, x, t, T, lr0, sigma0, decay, lr_end=0.01, sigma_end=1.0):
    """One Kohonen step written out independently of the implementation (Kohonen 2001, eq. 3.3)."""
    rows, cols, _ = W.shape
    if decay == "asymptotic":
        eta, sigma = lr0 / (1 + 2 * t / T), sigma0 / (1 + 2 * t / T)
    elif decay == "exponential":
        eta, sigma = lr0 * (lr_end / lr0) ** (t / T), sigma0 * (sigma_end / sigma0) ** (t / T)
    else:
        eta, sigma = lr0 + (lr_end - lr0) * t / T, sigma0 + (sigma_end - sigma0) * t / T
    d = ((W - x) ** 2).sum(axis=2)
    rc, cc = np.unravel_index(np.argmin(d), (rows, cols))
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    h = np.exp(-((r - rc) ** 2 + (c - cc) ** 2) / (2 * sigma**2))
    return W + eta * h[:, :, None] * (x - W)


# --------------------------------------------------------------------- formulas


@pytest.mark.parametrize("decay", ["asymptotic", "exponential", "linear"])
def test_schedule_matches_the_formulas(decay):
    som = SOM(sigma=3.0, learning_rate=0.5, decay=decay, sigma_end=0.5, learning_rate_end=0.02,
              decay_steps=1000)
    for t in (0, 1, 250, 500, 1000, 3000):
        lr, sigma = som.schedule(t)
        if decay == "asymptotic":
            assert lr == pytest.approx(0.5 / (1 + t / 500), rel=1e-14)
            assert sigma == pytest.approx(3.0 / (1 + t / 500), rel=1e-14)
        elif decay == "exponential":
            f = min(t / 1000, 1.0)
            assert lr == pytest.approx(0.5 * (0.02 / 0.5) ** f, rel=1e-14)
            assert sigma == pytest.approx(3.0 * (0.5 / 3.0) ** f, rel=1e-14)
        else:
            f = min(t / 1000, 1.0)
            assert lr == pytest.approx(0.5 + (0.02 - 0.5) * f, rel=1e-14)
            assert sigma == pytest.approx(3.0 + (0.5 - 3.0) * f, rel=1e-14)
    if decay == "asymptotic":  # MiniSom's asymptotic_decay reaches a third at t = T
        assert som.schedule(1000) == pytest.approx((0.5 / 3, 1.0))


@pytest.mark.parametrize("decay", ["asymptotic", "exponential", "linear"])
def test_single_updates_match_a_hand_computation(decay):
    rng = np.random.default_rng(0)
    W0 = rng.normal(size=(3, 4, 2))
    x1, x2 = rng.normal(size=(2, 2))
    T, lr0, sigma0 = 10, 0.4, 1.5
    som = SOM(3, 4, sigma=sigma0, learning_rate=lr0, decay=decay, decay_steps=T, init=W0)
    som.partial_fit(x1[None])
    expected = _hand_update(W0, x1, 0, T, lr0, sigma0, decay)
    np.testing.assert_allclose(som.weights_, expected, rtol=1e-12, atol=1e-14)
    som.partial_fit(x2[None])  # t = 1: the schedule has moved on
    expected = _hand_update(expected, x2, 1, T, lr0, sigma0, decay)
    np.testing.assert_allclose(som.weights_, expected, rtol=1e-12, atol=1e-14)
    assert som.n_iter_ == 2 and som.n_samples_seen_ == 2


def test_batch_epoch_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    W0 = rng.normal(size=(2, 3, 2))
    X = rng.normal(size=(50, 2))
    som = SOM(2, 3, sigma=0.8, mode="batch", init=W0, decay_steps=4).partial_fit(X)
    bmu = ((X[:, None, :] - W0.reshape(6, 2)[None]) ** 2).sum(-1).argmin(1)
    r, c = np.divmod(np.arange(6), 3)
    H = np.exp(-((r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2) / (2 * 0.8**2))
    G = H[:, bmu]  # (units, samples): h between each unit and each sample's winner
    expected = (G @ X) / G.sum(1, keepdims=True)
    np.testing.assert_allclose(som.weights_.reshape(6, 2), expected, rtol=1e-12)
    assert som.n_iter_ == 1 and som.n_samples_seen_ == 50


# --------------------------------------------------------------------- training


def test_quantization_error_decreases_with_training(digits):
    X, _ = digits
    qe = []
    for n in (10, 1000, 20_000):
        som = SOM(8, 8, n_iterations=n, random_state=0).fit(X)
        qe.append(som.quantization_error(X))
    assert qe[0] > qe[1] > qe[2]
    assert qe[2] < 0.6 * qe[0]


def test_topographic_order_emerges_on_uniform_2d(uniform2d):
    X = uniform2d
    som = SOM(10, 10, sigma=3.0, learning_rate=0.5, n_iterations=20_000, random_state=0).fit(X)
    assert som.topographic_error(X) < 0.1
    # grid neighbours sit close together in input space compared with the map's extent
    W = som.weights_
    step = np.concatenate([np.linalg.norm(np.diff(W, axis=0), axis=2).ravel(),
                           np.linalg.norm(np.diff(W, axis=1), axis=2).ravel()])
    assert np.median(step) < 0.2
    # the same units in shuffled grid positions (learning_rate 1e-30 leaves init as it is)
    shuffled = W.reshape(100, 2)[np.random.default_rng(0).permutation(100)]
    unordered = SOM(10, 10, init=shuffled, n_iterations=1, learning_rate=1e-30).fit(X)
    assert unordered.quantization_error(X) == pytest.approx(som.quantization_error(X))
    assert unordered.topographic_error(X) > 0.5


def test_online_blocks_equal_one_call_on_the_concatenation(uniform2d):
    X = uniform2d[:1000]
    kw = dict(sigma=2.0, learning_rate=0.5, decay_steps=1000, random_state=3)
    whole = SOM(6, 5, **kw).partial_fit(X)
    blocks = SOM(6, 5, **kw)
    for idx in np.array_split(np.arange(1000), [1, 7, 300, 301, 640]):
        blocks.partial_fit(X[idx])
    np.testing.assert_array_equal(blocks.weights_, whole.weights_)
    assert blocks.n_iter_ == whole.n_iter_ == 1000


def test_fit_is_deterministic_given_the_seed(digits):
    X, _ = digits
    a = SOM(5, 5, n_iterations=3000, random_state=7).fit(X)
    b = SOM(5, 5, n_iterations=3000, random_state=7).fit(X)
    c = SOM(5, 5, n_iterations=3000, random_state=8).fit(X)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert not np.allclose(a.weights_, c.weights_)
    a.fit(X)  # fit starts over
    np.testing.assert_array_equal(a.weights_, b.weights_)


def test_batch_mode_converges(uniform2d):
    X = uniform2d
    # fixed radius: the Batch Map reaches a fixed point (assignments stop changing)
    som = SOM(6, 6, sigma=1.0, decay="linear", sigma_end=1.0, mode="batch", init="pca", decay_steps=1)
    qe = []
    for _ in range(40):
        before = som.weights_.copy() if hasattr(som, "weights_") else None
        som.partial_fit(X)
        qe.append(som.quantization_error(X))
    assert np.abs(som.weights_ - before).max() < 1e-12
    assert qe[-1] <= qe[0]
    # and a decaying-radius batch fit quantizes about as well as the online rule
    batch = SOM(6, 6, sigma=3.0, decay="exponential", sigma_end=0.5, n_iterations=30, mode="batch",
                init="pca").fit(X)
    online = SOM(6, 6, sigma=3.0, decay="exponential", sigma_end=0.5, n_iterations=20_000,
                 random_state=0).fit(X)
    assert batch.quantization_error(X) < 1.1 * online.quantization_error(X)
    assert batch.topographic_error(X) < 0.1


def test_inits(digits):
    X, _ = digits
    s = SOM(4, 5, init="sample", n_iterations=1, learning_rate=1e-30, random_state=0).fit(X)
    # learning_rate 1e-30 leaves the initial weights as they were: each is a sample
    flat = s.weights_.reshape(20, 64)
    assert all((np.abs(X - w).sum(1) == 0).any() for w in flat)
    assert len({tuple(w) for w in flat}) == 20  # without replacement
    p = SOM(4, 5, init="pca", n_iterations=1, learning_rate=1e-30).fit(X)
    centred = p.weights_.reshape(20, 64) - X.mean(0)
    assert np.linalg.matrix_rank(centred, tol=1e-8) == 2  # a grid in a plane through the mean
    np.testing.assert_allclose(p.weights_.mean(axis=(0, 1)), X.mean(0), atol=1e-12)
    W0 = np.random.default_rng(0).normal(size=(20, 64))
    a = SOM(4, 5, init=W0, n_iterations=1, learning_rate=1e-30).fit(X)
    np.testing.assert_array_equal(a.weights_, W0.reshape(4, 5, 64))
    r = SOM(4, 5, n_iterations=1, learning_rate=1e-30, random_state=0).fit(X)
    np.testing.assert_allclose(np.linalg.norm(r.weights_, axis=2), 1.0)  # MiniSom's unit vectors


# --------------------------------------------------------------------- outputs


def _hand_map():
    """A 2 x 3 map on 1-D inputs, weights chosen so that best/second-best pairs are known."""
    W = np.array([[0.0, 10.0, 20.0],
                  [30.0, 1.0, 40.0]])[:, :, None]
    som = SOM(2, 3, init=W, n_iterations=1, learning_rate=1e-30).fit(np.zeros((1, 1)))
    np.testing.assert_array_equal(som.weights_, W)  # a learning rate of 1e-30 moves nothing
    return som


def test_winners_qe_te_on_a_hand_made_map():
    som = _hand_map()
    X = np.array([[0.2], [0.9], [9.0], [19.0], [45.0], [28.0]])
    np.testing.assert_array_equal(som.winners(X), [0, 4, 1, 2, 5, 3])
    assert som.quantization_error(X) == pytest.approx(np.mean([0.2, 0.1, 1.0, 1.0, 5.0, 2.0]))
    # best/second: 0.2 -> (0,0)/(1,1) diagonal, adjacent;  0.9 -> (1,1)/(0,0) adjacent;
    # 9 -> (0,1)/(1,1) adjacent;  19 -> (0,2)/(0,1) adjacent;  45 -> (1,2)/(1,0) two apart: error;
    # 28 -> (1,0)/(0,2) two columns apart: error
    assert som.topographic_error(X) == pytest.approx(2 / 6)
    if MiniSom is not None:  # MiniSom's rectangular topographic error counts the same
        m = MiniSom(2, 3, 1, sigma=0.5)
        m._weights = som.weights_.copy()
        assert m.topographic_error(X) == pytest.approx(2 / 6)
        assert m.quantization_error(X) == pytest.approx(som.quantization_error(X))


def test_transform_is_the_one_hot_winner(digits):
    X, _ = digits
    som = SOM(4, 6, n_iterations=2000, random_state=0).fit(X)
    Z = som.transform(X[:300])
    assert Z.dtype == np.float32 and Z.shape == (300, 24)
    np.testing.assert_array_equal(Z.sum(1), 1.0)
    np.testing.assert_array_equal(Z.argmax(1), som.winners(X[:300]))
    np.testing.assert_array_equal(som.fit_transform(X[:50]).sum(1), 1.0)
    assert list(som.get_feature_names_out()[:2]) == ["som0", "som1"]


def test_one_unit_map_has_no_topographic_error():
    som = SOM(1, 1, n_iterations=5, random_state=0).fit(np.ones((3, 2)))
    with pytest.warns(UserWarning, match="not defined"):
        assert np.isnan(som.topographic_error(np.ones((3, 2))))


# --------------------------------------------------------------------- errors, sklearn


def test_feature_mismatch_is_named(digits):
    X, _ = digits
    som = SOM(3, 3, n_iterations=100, random_state=0).fit(X)
    wide = np.zeros((5, 100))
    for call in (som.transform, som.winners, som.partial_fit, som.quantization_error, som.topographic_error):
        with pytest.raises(ValueError, match="SOM was fitted on 64 features, got 100"):
            call(wide)
    with pytest.raises(NotFittedError):
        SOM().transform(X)
    with pytest.raises(ValueError, match="init weights have 3 features, X has 64"):
        SOM(2, 2, init=np.zeros((2, 2, 3))).fit(X)
    with pytest.raises(ValueError, match=r"init weights must have shape \(2, 2, n_features\)"):
        SOM(2, 2, init=np.zeros((3, 64))).fit(X)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(rows=0), "rows must be an integer >= 1"),
        (dict(cols=2.5), "cols must be an integer >= 1"),
        (dict(sigma=0.0), "sigma must be a finite real number > 0"),
        (dict(sigma=np.inf), "sigma must be"),
        (dict(learning_rate=1.5), r"learning_rate must be a finite real number > 0.0 and <= 1.0"),
        (dict(decay="inverse"), "decay must be one of 'asymptotic', 'exponential', 'linear'"),
        (dict(decay="exponential", learning_rate_end=0.0), "learning_rate_end must be a finite real number > 0"),
        (dict(decay="linear", sigma=0.5, sigma_end=1.0), r"sigma_end \(1.0\) must not exceed sigma \(0.5\)"),
        (dict(n_iterations=0), "n_iterations must be None or an integer >= 1"),
        (dict(decay_steps=-3), "decay_steps must be None or an integer >= 1"),
        (dict(mode="stochastic"), "mode must be one of 'online', 'batch'"),
        (dict(init="kmeans"), "init must be one of 'random', 'sample', 'pca'"),
    ],
)
def test_bad_hyperparameters_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        SOM(**params).fit(np.zeros((4, 2)))


def test_mode_cannot_change_midway():
    X = np.random.default_rng(0).normal(size=(20, 2))
    som = SOM(2, 2, decay_steps=100, random_state=0).partial_fit(X)
    with pytest.raises(ValueError, match="trained in mode 'online'; cannot continue in mode 'batch'"):
        som.set_params(mode="batch").partial_fit(X)
    som.fit(X)  # fit starts over in the new mode
    assert som.n_iter_ == 20  # default n_iterations of batch mode


def test_clone_and_params():
    W0 = np.zeros((2, 3, 4))
    som = SOM(2, 3, sigma=1.7, decay="linear", init=W0, mode="batch", random_state=5)
    c = clone(som)
    assert c.get_params()["sigma"] == 1.7 and c.get_params()["mode"] == "batch"
    np.testing.assert_array_equal(c.init, W0)
    som.fit(np.ones((10, 4)))
    c2 = clone(som)
    assert not hasattr(c2, "weights_")
    assert repr(SOM(4, 4, sigma=2.0)) == "SOM(cols=4, rows=4, sigma=2.0)"


def test_passes_sklearn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(SOM(3, 3, n_iterations=50, random_state=0), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed


# --------------------------------------------------------------------- digits, MiniSom


def test_digits_unit_labelling_accuracy(digits):
    """12x12 map, unit labelling: 0.968 measured (seed 0); seeds 0-9 gave 0.960-0.984."""
    X, y = digits
    perm = np.random.default_rng(0).permutation(1797)
    tr, te = perm[:1300], perm[1300:]
    som = SOM(12, 12, sigma=1.0, learning_rate=0.5, n_iterations=20_000, random_state=0).fit(X[tr])
    vote = VoteClassifier().fit(som.transform(X[tr]), y[tr])
    accuracy = np.mean(vote.predict(som.transform(X[te])) == y[te])
    assert accuracy >= 0.93


@needs_minisom
def test_quantization_error_within_5_percent_of_minisom(digits):
    X, _ = digits
    m = MiniSom(10, 10, 64, sigma=1.0, learning_rate=0.5, random_seed=0)
    W0 = m.get_weights().copy()
    m.train_random(X, 10_000)
    # same initial weights, own sample order: a different trajectory of the same algorithm
    ours = SOM(10, 10, sigma=1.0, learning_rate=0.5, n_iterations=10_000, init=W0, random_state=1).fit(X)
    ratio = ours.quantization_error(X) / m.quantization_error(X)
    assert abs(ratio - 1) < 0.05, ratio


@needs_minisom
def test_same_seed_reproduces_minisom_train_random(digits):
    X, _ = digits
    m = MiniSom(6, 7, 64, sigma=1.5, learning_rate=0.5, random_seed=3)
    m.train_random(X, 3000)
    ours = SOM(6, 7, sigma=1.5, learning_rate=0.5, n_iterations=3000, random_state=3).fit(X)
    np.testing.assert_allclose(ours.weights_, m.get_weights(), atol=1e-10)
    assert ours.quantization_error(X) == pytest.approx(m.quantization_error(X), rel=1e-10)
    assert ours.topographic_error(X) == pytest.approx(m.topographic_error(X))


@needs_minisom
def test_batch_mode_reproduces_minisom_train_batch_offline(digits):
    X, _ = digits
    m = MiniSom(5, 6, 64, sigma=2.0, learning_rate=1.0, decay_function=lambda lr, t, T: 1.0, random_seed=0)
    m.random_weights_init(X)
    W0 = m.get_weights().copy()
    m.train_batch_offline(X, 5)
    ours = SOM(5, 6, sigma=2.0, n_iterations=5, mode="batch", init=W0).fit(X)
    np.testing.assert_allclose(ours.weights_, m.get_weights(), atol=1e-10)
