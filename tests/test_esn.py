"""The echo-state network driver: the update rule, reproducibility, batches and state."""

import numpy as np
import pytest
from pydantic import ValidationError

from labbench.drivers.esn import EchoStateNetwork
from labbench.drivers.esn.weights import spectral_radius


def reference_states(esn: EchoStateNetwork, u: np.ndarray) -> np.ndarray:
    """The textbook update in plain float64 numpy (Jaeger 2001; Lukoševičius 2012)."""
    a = esn.params.leak
    x = np.zeros(esn.params.units)
    out = np.empty((len(u), x.size))
    for t in range(len(u)):
        x = (1 - a) * x + a * np.tanh(esn.W_ @ x + esn.W_in_ @ u[t] + esn.bias_)
        out[t] = x
    return out


@pytest.fixture
def u():
    return np.random.default_rng(0).uniform(-1, 1, (300, 2))


@pytest.mark.parametrize("units", [7, 16, 100, 333])
def test_float64_matches_textbook_update(u, units):
    with EchoStateNetwork(units=units, n_inputs=2, spectral_radius=0.9, leak=0.4, bias=0.2, dtype="float64",
                          seed=2) as esn:
        got = esn.run(u).features
        np.testing.assert_allclose(got, reference_states(esn, u), rtol=0, atol=1e-12)


def test_float32_close_to_textbook_update(u):
    with EchoStateNetwork(units=200, n_inputs=2, spectral_radius=1.1, leak=0.3, seed=2) as esn:
        got = esn.run(u).features
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, reference_states(esn, u), rtol=0, atol=2e-5)


def test_same_seed_same_bits_other_seed_other_network(u):
    def states(seed, threads=1):
        with EchoStateNetwork(units=120, n_inputs=2, seed=seed, threads=threads) as esn:
            return esn.run(u).features

    a, b = states(5), states(5)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, states(6))
    # two threads split the same arithmetic differently compiled: equal up to float32 rounding
    np.testing.assert_allclose(states(5, threads=2), a, rtol=0, atol=1e-6)


def test_blocks_continue_the_state(u):
    with EchoStateNetwork(units=64, n_inputs=2, leak=0.5) as esn:
        whole = esn.run(u).features
        esn.reset()
        parts = np.concatenate([esn.run(u[:37]).features, esn.run(u[37:200]).features, esn.run(u[200:]).features])
    assert parts.tobytes() == whole.tobytes()


def test_spectral_radius_is_what_was_asked():
    with EchoStateNetwork(units=400, spectral_radius=1.25, connectivity=0.1) as esn:
        assert spectral_radius(esn.W_) == pytest.approx(1.25, rel=1e-6)
        assert esn.W_.nnz == round(0.1 * 400 * 400)


def test_gain_parametrisation_gives_radius_near_gain():
    # circular law: eigenvalues of N(0, g^2/(pN)) entries fill a disc of radius g
    with EchoStateNetwork(units=800, gain=1.5, connectivity=0.2, seed=3) as esn:
        assert spectral_radius(esn.W_) == pytest.approx(1.5, rel=0.1)
        assert np.std(esn.W_.data) == pytest.approx(1.5 / np.sqrt(0.2 * 800), rel=0.05)


def test_echo_state_property_forgets_initial_state():
    u = np.random.default_rng(1).uniform(-1, 1, (400, 1))
    with EchoStateNetwork(units=100, spectral_radius=0.8, dtype="float64") as esn:
        esn.set_state(np.random.default_rng(2).uniform(-1, 1, 100))
        a = esn.run(u).features
        esn.reset()
        b = esn.run(u).features
    assert np.abs(a[0] - b[0]).max() > 0.01
    assert np.abs(a[-1] - b[-1]).max() < 1e-8


def test_state_round_trip(u):
    with EchoStateNetwork(units=50, n_inputs=2) as esn:
        esn.run(u[:100])
        x = esn.get_state()
        tail = esn.run(u[100:]).features
        esn.set_state(x)
        assert esn.get_state().tobytes() == x.tobytes()
        assert esn.run(u[100:]).features.tobytes() == tail.tobytes()


def test_batch_equals_separate_sequences():
    ub = np.random.default_rng(3).uniform(-1, 1, (5, 120, 1))
    with EchoStateNetwork(units=70, spectral_radius=0.9, dtype="float64") as esn:
        batch = esn.run(ub).features
        assert batch.shape == (5, 120, 70)
        for i in range(5):
            esn.reset()
            np.testing.assert_allclose(batch[i], esn.run(ub[i]).features, atol=1e-12)


@pytest.mark.parametrize("params, key", [
    ({"spectral_radius": 1.0, "gain": 1.0}, "either spectral_radius or gain"),
    ({"leak": 0.0}, "leak"),
    ({"units": -3}, "units"),
    ({"connectivity": 1.5}, "connectivity"),
    ({"dtype": "float16"}, "dtype"),
    ({"unitz": 10}, "unitz"),
])
def test_bad_parameters_are_named(params, key):
    with pytest.raises(ValidationError, match=key):
        EchoStateNetwork(**params)
