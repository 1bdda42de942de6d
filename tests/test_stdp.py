"""STDPLayer: learning rules against hand-computed sums, dynamics, sklearn API, digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from labbench.readouts.labelling import VoteClassifier
from labbench.readouts.pooling import pool_sequences
from labbench.readouts.stdp import STDPLayer, _exp_neg

# --------------------------------------------------------------------------- helpers

TEACHER_W = 1000.0  # a "teacher" input that makes the neuron spike on the next step
W_TEST = 1.0  # starting weight of the synapse under test (channel 1)


def probe_layer(**params) -> STDPLayer:
    """One neuron, no inhibition / normalisation / threshold adaptation / refractoriness.

    Channel 0 is a teacher whose spike at step s drives the neuron over threshold at
    step s + 1 (tau_e = 0.1 ms: its conductance is gone one step later); channel 1 is
    the synapse under test, too weak to make the neuron spike.
    """
    base = dict(n_neurons=1, norm_total=None, theta_plus=0.0, inhibition=None, t_ref=0.0,
                tau_e=0.1, w_max=10 * TEACHER_W, w_min=0.0, dt=1.0, seed=0)
    base.update(params)
    layer = STDPLayer(**base).partial_fit(np.zeros((0, 2)))
    layer.weights_[:] = [[TEACHER_W], [W_TEST]]
    return layer


def run_probe(layer: STDPLayer, pre_steps, teacher_steps, n_steps: int):
    """Feed the test spikes; return (weight change of channel 1, post spike steps)."""
    X = np.zeros((n_steps, 2), dtype=bool)
    X[list(teacher_steps), 0] = True
    X[list(pre_steps), 1] = True
    out = layer.partial_fit_transform(X)
    return layer.weights_[1, 0] - W_TEST, np.flatnonzero(out[:, 0])


def reference_dw(pre, post, a2p, a3p, a2m, a3m, tau_plus, tau_minus, tau_x, tau_y, dt=1.0):
    """Pfister & Gerstner (2006) eqs. 3-4, all-to-all, as explicit sums over spike pairs.

    A pre spike at t depresses by o1(t) (A2- + A3- r2(t - eps)) with o1 summing the
    post spikes strictly before t; a post spike at t potentiates by
    r1(t) (A2+ + A3+ o2(t - eps)) with r1 summing the pre spikes at or before t (same
    step: pre first). Written independently of the trace code.
    """
    pre = np.asarray(pre, float) * dt
    post = np.asarray(post, float) * dt
    dw = 0.0
    for t in post:
        r1 = np.exp(-(t - pre[pre <= t]) / tau_plus).sum()
        o2 = np.exp(-(t - post[post < t]) / tau_y).sum()
        dw += r1 * (a2p + a3p * o2)
    for t in pre:
        o1 = np.exp(-(t - post[post < t]) / tau_minus).sum()
        r2 = np.exp(-(t - pre[pre < t]) / tau_x).sum()
        dw -= o1 * (a2m + a3m * r2)
    return dw


def random_raster(n_steps, n_in, rate, seed):
    rng = np.random.default_rng(seed)
    # channel-dependent rates so that learning has something to find
    p = rate * (0.2 + 1.6 * rng.random(n_in))
    return rng.random((n_steps, n_in)) < p


# --------------------------------------------------------------------------- pair rule


def test_pair_rule_sign_and_magnitude():
    kw = dict(rule="pair", a_plus=0.01, a_minus=0.012, tau_plus=20.0, tau_minus=25.0)
    # pre at 10, post at 15: potentiation a_plus * exp(-5 / tau_plus)
    dw, post = run_probe(probe_layer(**kw), pre_steps=[10], teacher_steps=[14], n_steps=60)
    assert post.tolist() == [15]
    assert dw > 0
    assert dw == pytest.approx(0.01 * math.exp(-5 / 20.0), rel=1e-12)
    # post at 10, pre at 15: depression a_minus * exp(-5 / tau_minus)
    dw, post = run_probe(probe_layer(**kw), pre_steps=[15], teacher_steps=[9], n_steps=60)
    assert post.tolist() == [10]
    assert dw < 0
    assert dw == pytest.approx(-0.012 * math.exp(-5 / 25.0), rel=1e-12)
    # same step counts as pre-before-post (Brian2's on_pre runs before on_post)
    dw, post = run_probe(probe_layer(**kw), pre_steps=[10], teacher_steps=[9], n_steps=60)
    assert post.tolist() == [10]
    assert dw == pytest.approx(0.01, rel=1e-12)


def test_pair_rule_all_to_all_and_nearest_traces():
    kw = dict(rule="pair", a_plus=0.01, a_minus=0.0, tau_plus=20.0)
    dw_all, _ = run_probe(probe_layer(traces="all", **kw), [10, 20], [29], 60)
    dw_near, _ = run_probe(probe_layer(traces="nearest", **kw), [10, 20], [29], 60)
    assert dw_all == pytest.approx(0.01 * (math.exp(-20 / 20) + math.exp(-10 / 20)), rel=1e-12)
    assert dw_near == pytest.approx(0.01 * math.exp(-10 / 20), rel=1e-12)


def test_pair_rule_matches_reference_on_a_spike_train():
    kw = dict(rule="pair", a_plus=0.005, a_minus=0.006, tau_plus=16.8, tau_minus=33.7)
    pre = [3, 17, 18, 40, 41, 77, 120, 121, 160]
    teacher = [9, 16, 44, 70, 99, 119, 150]
    dw, post = run_probe(probe_layer(**kw), pre, teacher, 200)
    assert post.tolist() == [t + 1 for t in teacher]
    ref = reference_dw(pre, post, 0.005, 0.0, 0.006, 0.0, 16.8, 33.7, 1.0, 1.0)
    assert dw == pytest.approx(ref, rel=1e-11)


# ------------------------------------------------------------------------ triplet rule

# Pfister & Gerstner (2006), Table 4: visual cortex, minimal all-to-all model.
VISUAL = dict(a_plus=5e-10, a3_plus=6.2e-3, a_minus=7e-3, a3_minus=0.0,
              tau_plus=16.8, tau_minus=33.7, tau_x=101.0, tau_y=125.0)


def test_triplet_rule_matches_hand_computed_triplets():
    params = dict(VISUAL, a3_minus=2.3e-4)  # the full model's A3-, so r2 is exercised
    ref_args = (params["a_plus"], params["a3_plus"], params["a_minus"], params["a3_minus"],
                params["tau_plus"], params["tau_minus"], params["tau_x"], params["tau_y"])
    # post-pre-post: the second post potentiates through o2 of the first
    dw, post = run_probe(probe_layer(rule="triplet", **params), [30], [19, 39], 80)
    assert post.tolist() == [20, 40]
    by_hand = (-params["a_minus"] * math.exp(-10 / 33.7)
               + math.exp(-10 / 16.8) * (5e-10 + 6.2e-3 * math.exp(-20 / 125.0)))
    assert dw == pytest.approx(by_hand, rel=1e-11)
    assert dw == pytest.approx(reference_dw([30], post, *ref_args), rel=1e-11)
    # pre-post-pre: the second pre depresses through r2 of the first
    dw, post = run_probe(probe_layer(rule="triplet", **params), [20, 40], [29], 80)
    assert post.tolist() == [30]
    by_hand = (math.exp(-10 / 16.8) * 5e-10
               - math.exp(-10 / 33.7) * (7e-3 + 2.3e-4 * math.exp(-20 / 101.0)))
    assert dw == pytest.approx(by_hand, rel=1e-11)
    # a longer irregular train
    pre = [5, 6, 30, 52, 53, 90, 130, 131, 132, 170]
    teacher = [10, 28, 29, 60, 88, 129, 160, 161]
    dw, post = run_probe(probe_layer(rule="triplet", **params), pre, teacher, 220)
    assert dw == pytest.approx(reference_dw(pre, post, *ref_args), rel=1e-11)


def pairing_protocol(rule, delta, freq, n_pairs=15, **params):
    """n_pairs pre/post pairings at ``freq`` Hz, post - pre = ``delta`` ms (dt = 1 ms)."""
    period = int(round(1000 / freq))
    start = 50
    pre = [start + k * period for k in range(n_pairs)]
    post = [t + delta for t in pre]
    layer = probe_layer(rule=rule, **params)
    dw, got = run_probe(layer, pre, [t - 1 for t in post], start + n_pairs * period + 50)
    assert got.tolist() == post
    return dw, pre, post


def test_triplet_rule_frequency_dependence():
    """Pfister & Gerstner (2006), Fig. 5 (Sjöström et al. 2001 pairing protocol)."""
    freqs = [1, 10, 20, 40, 50]
    ref_args = (VISUAL["a_plus"], VISUAL["a3_plus"], VISUAL["a_minus"], VISUAL["a3_minus"],
                VISUAL["tau_plus"], VISUAL["tau_minus"], VISUAL["tau_x"], VISUAL["tau_y"])
    plus, minus = [], []
    for f in freqs:
        dw, pre, post = pairing_protocol("triplet", +10, f, **VISUAL)
        assert dw == pytest.approx(reference_dw(pre, post, *ref_args), rel=1e-10)
        plus.append(dw)
        dw, pre, post = pairing_protocol("triplet", -10, f, **VISUAL)
        assert dw == pytest.approx(reference_dw(pre, post, *ref_args), rel=1e-10)
        minus.append(dw)
    # pre-post pairing: potentiation grows with the pairing frequency
    assert all(b > a for a, b in zip(plus, plus[1:])), plus
    assert plus[0] < 0.2 * plus[-1]
    # post-pre pairing: depression at low frequency, potentiation at 50 Hz
    assert minus[0] < 0 < minus[-1], minus
    # the pair rule with the same pair amplitudes shows no such growth
    pair = [pairing_protocol("pair", +10, f, **dict(VISUAL, a_plus=6.2e-3))[0] for f in freqs]
    assert all(b <= a for a, b in zip(pair, pair[1:])), pair


# --------------------------------------------------------------------------- dynamics


@pytest.mark.parametrize("params", [
    dict(),  # hard WTA, normalisation, adaptive thresholds
    dict(rule="triplet", inhibition=5.0, traces="nearest", mu=0.5, norm_every=7),
])
def test_blocks_equal_one_call(params):
    X = random_raster(3000, 20, 0.08, seed=1)
    kw = dict(n_neurons=12, seed=3, norm_total=6.0, theta_plus=0.5, tau_theta=500.0, **params)
    one = STDPLayer(**kw)
    out_one = np.vstack([one.partial_fit_transform(X[:2000]), one.transform(X[2000:])])
    assert out_one.sum() > 20  # the layer is active
    blocks = STDPLayer(**kw)
    outs, cuts = [], [0, 1, 38, 500, 1234, 2000]
    for a, b in zip(cuts, cuts[1:]):
        outs.append(blocks.partial_fit_transform(X[a:b]))
    outs.append(blocks.transform(X[2000:2001]))
    outs.append(blocks.transform(sp.csr_matrix(X[2001:])))  # sparse input, same result
    np.testing.assert_array_equal(np.vstack(outs), out_one)
    np.testing.assert_array_equal(blocks.weights_, one.weights_)
    np.testing.assert_array_equal(blocks.theta_, one.theta_)
    np.testing.assert_array_equal(blocks.v_, one.v_)
    # partial_fit (no output) learns the same as partial_fit_transform
    quiet = STDPLayer(**kw)
    quiet.partial_fit(X[:700]).partial_fit(X[700:2000])
    np.testing.assert_array_equal(quiet.weights_, one.weights_)


def test_fit_restarts_and_reset_state_keeps_weights():
    X = random_raster(1500, 16, 0.1, seed=2)
    layer = STDPLayer(n_neurons=8, seed=0, norm_total=5.0).fit(X)
    W, theta = layer.weights_.copy(), layer.theta_.copy()
    layer.transform(X[:300])
    layer.reset_state()
    np.testing.assert_array_equal(layer.weights_, W)
    np.testing.assert_array_equal(layer.theta_, theta)
    assert np.all(layer.v_ == layer.v_rest) and not layer.ge_.any() and not layer.pre_trace_.any()
    out_b = layer.transform(X[:300])
    layer.reset_state()
    np.testing.assert_array_equal(layer.transform(X[:300]), out_b)  # same start, same spikes
    again = layer.fit(X)
    np.testing.assert_array_equal(again.weights_, W)  # fit forgets and relearns the same


def test_weight_bounds_hold():
    X = random_raster(4000, 16, 0.2, seed=3)
    kw = dict(n_neurons=6, seed=0, w_min=0.05, w_max=0.4, w_init=(0.1, 0.3), norm_total=None,
              inhibition=None, theta_plus=0.0, v_thresh=-60.0)
    for mu in (0.0, 1.0):
        up = STDPLayer(a_plus=0.5, a_minus=0.01, mu=mu, **kw).fit(X).weights_
        down = STDPLayer(a_plus=0.0, a_minus=0.5, mu=mu, **kw).fit(X).weights_
        for W in (up, down):
            assert W.min() >= 0.05 and W.max() <= 0.4
        if mu == 0.0:  # additive updates run into the bounds
            assert (up == 0.4).mean() > 0.5 and (down == 0.05).mean() > 0.5
        else:  # soft bounds approach them
            assert up.mean() > 0.35 and down.mean() < 0.1


def test_normalisation_holds():
    X = random_raster(2000, 32, 0.1, seed=4)
    layer = STDPLayer(n_neurons=10, seed=0, norm_total=7.5, norm_every=10, w_max=1.0)
    layer.partial_fit(X[:0])
    np.testing.assert_allclose(layer.weights_.sum(axis=0), 7.5, rtol=1e-12)
    layer.partial_fit(X)  # 2000 steps: ends on a normalisation
    assert layer.weights_.max() < 1.0  # clipping did not bind, so sums are exact
    np.testing.assert_allclose(layer.weights_.sum(axis=0), 7.5, rtol=1e-12)
    auto = STDPLayer(n_neurons=3, seed=0).partial_fit(X[:0])  # "auto": 0.1 per input
    np.testing.assert_allclose(auto.weights_.sum(axis=0), 3.2, rtol=1e-12)
    l2 = STDPLayer(n_neurons=10, seed=0, norm_ord=2, norm_total=1.5, norm_every=10).partial_fit(X)
    np.testing.assert_allclose(np.linalg.norm(l2.weights_, axis=0), 1.5, rtol=1e-12)
    assert l2.weights_.max() < 1.0


def test_hard_wta_one_spike_per_step():
    X = random_raster(2000, 32, 0.3, seed=5)  # strong drive: many neurons above threshold
    kw = dict(n_neurons=30, seed=0, norm_total=20.0, t_ref=0.0, theta_plus=0.0)
    hard = STDPLayer(inhibition="hard", **kw)
    out = hard.fit_transform(X)
    assert out.sum() > 100
    assert out.sum(axis=1).max() == 1
    assert out.dtype == np.float32 and out.shape == (2000, 30)
    free = STDPLayer(inhibition=None, **kw).fit_transform(X)
    assert free.sum(axis=1).max() > 1  # the same drive without WTA fires several at once


def test_transform_freezes_weights_and_thresholds():
    X = random_raster(2000, 16, 0.15, seed=6)
    layer = STDPLayer(n_neurons=8, seed=0, norm_total=6.0, theta_plus=0.2, tau_theta=1000.0)
    layer.partial_fit(X[:1000])
    theta, W = layer.theta_.copy(), layer.weights_.copy()
    assert theta.max() > 0
    out = layer.transform(X[1000:])
    assert out.sum() > 0
    np.testing.assert_array_equal(layer.theta_, theta)
    np.testing.assert_array_equal(layer.weights_, W)
    layer.partial_fit(X[1000:])
    assert not np.array_equal(layer.theta_, theta)


def test_input_width_and_errors():
    layer = STDPLayer(n_neurons=4).fit(np.zeros((10, 64)))
    with pytest.raises(ValueError, match="STDPLayer was fitted on 64 inputs, got 100"):
        layer.partial_fit(np.zeros((10, 100)))
    with pytest.raises(ValueError, match="STDPLayer was fitted on 64 inputs, got 100"):
        layer.transform(np.zeros((10, 100)))
    with pytest.raises(ValueError, match="2-D"):
        layer.transform(np.zeros(64))
    with pytest.raises(NotFittedError):
        STDPLayer().transform(np.zeros((10, 64)))
    with pytest.raises(ValueError, match="n_neurons is 5 but the layer was fitted with 4"):
        layer.set_params(n_neurons=5).transform(np.zeros((10, 64)))
    for bad in (dict(rule="quad"), dict(inhibition="soft"), dict(n_neurons=0), dict(tau_m=0),
                dict(w_min=1.0, w_max=0.5), dict(norm_total=-1.0), dict(traces="some")):
        with pytest.raises(ValueError):
            STDPLayer(**bad).fit(np.zeros((5, 3)))


def test_sklearn_clone_and_params():
    X = random_raster(1000, 10, 0.1, seed=7)
    layer = STDPLayer(n_neurons=5, rule="triplet", w_init=(0.1, 0.2), seed=4).fit(X)
    twin = clone(layer)
    assert twin.get_params() == layer.get_params()
    assert not hasattr(twin, "weights_")
    np.testing.assert_array_equal(twin.fit(X).weights_, layer.weights_)
    assert "STDPLayer(" in repr(layer)


def test_exp_neg_accuracy():
    x = -np.concatenate([np.linspace(0, 1, 1001), np.geomspace(1e-8, 49.0, 1001)])
    got = np.array([_exp_neg(v) for v in x])
    np.testing.assert_allclose(got, np.exp(x), rtol=2e-13, atol=0)
    assert _exp_neg(-1e4) < 1e-21


def test_song_abbott_configuration_is_expressible():
    """Song, Miller & Abbott (2000): one conductance-based neuron, additive clipped STDP."""
    gmax = 0.01
    layer = STDPLayer(n_neurons=1, rule="pair", a_plus=0.01 * gmax, a_minus=0.0105 * gmax,
                      tau_plus=20.0, tau_minus=20.0, w_min=0.0, w_max=gmax, w_init=(0.0, gmax),
                      norm_total=None, theta_plus=0.0, inhibition=None, tau_m=10.0, tau_e=5.0,
                      v_rest=-74.0, v_reset=-60.0, v_thresh=-54.0, e_exc=0.0, t_ref=0.0,
                      dt=0.1, seed=0)
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.random((20000, 1000)) < 15 * 1e-4)  # 2 s at 15 Hz
    out = layer.partial_fit_transform(X)
    rate = out.sum() / 2.0
    assert 5 < rate < 150  # the neuron fires at tens of Hz
    assert layer.weights_.min() >= 0 and layer.weights_.max() <= gmax


# ----------------------------------------------------------------------------- digits


def poisson_digits(images, present, rest, max_rate, rng, dt=1.0):
    """The ``digits`` task through the ``poisson`` driver: one block per image."""
    n, width = images.shape
    p = np.minimum(1.0, images / 16.0 * max_rate * dt / 1000.0)
    S = np.zeros((n, present + rest, width), dtype=bool)
    S[:, :present] = rng.random((n, present, width)) < p[:, None, :]
    seq = np.full((n, present + rest), -1, dtype=np.int64)
    seq[:, :present] = np.arange(n)[:, None]
    return S.reshape(-1, width), seq.ravel()


# bench/stdp_digits.py, configuration "fast", seed 0
STIMULUS = dict(present=200, rest=50, max_rate=150.0)
LAYER_FAST = dict(n_neurons=100, rule="pair", a_plus=0.02, traces="nearest", tau_m=50.0,
                  theta_plus=0.05, tau_theta=2e4, norm_ord=2, norm_total=3.5, seed=0)
EPOCHS_FAST = 1


@pytest.mark.slow
def test_digits_accuracy_bar():
    """Diehl & Cook labelling on 8x8 digits: >= 80 % and >= 20 points over no learning."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.data, digits.target
    perm = np.random.default_rng(0).permutation(len(images))
    train, test = perm[:1300], perm[1300:]
    rng = np.random.default_rng(1)
    orders = [train[rng.permutation(len(train))] for _ in range(EPOCHS_FAST)]
    epochs = [poisson_digits(images[o], rng=rng, **STIMULUS)[0] for o in orders]
    lab_S, lab_seq = poisson_digits(images[train], rng=rng, **STIMULUS)
    test_S, test_seq = poisson_digits(images[test], rng=rng, **STIMULUS)

    def accuracy(layer):
        lab = pool_sequences(layer.transform(lab_S), lab_seq, how="sum")[0]
        vote = VoteClassifier(classes=np.arange(10)).fit(lab, labels[train])
        counts = pool_sequences(layer.transform(test_S), test_seq, how="sum")[0]
        assert (counts.sum(axis=1) > 0).mean() > 0.95  # the layer answers nearly every image
        return float((vote.predict(counts) == labels[test]).mean())

    trained = STDPLayer(**LAYER_FAST)
    for S in epochs:
        trained.partial_fit(S)
    untrained = STDPLayer(**LAYER_FAST).partial_fit(np.zeros((0, 64)))  # initial weights only
    acc_trained, acc_untrained = accuracy(trained), accuracy(untrained)
    assert acc_trained >= 0.80, (acc_trained, acc_untrained)
    assert acc_trained - acc_untrained >= 0.20, (acc_trained, acc_untrained)
