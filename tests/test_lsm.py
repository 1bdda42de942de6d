"""The LSM driver: LIF fidelity, Dale's law, complete spike streams, block invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labbench.drivers.lsm import LiquidStateMachine


@pytest.mark.parametrize("RI", [20.0, 30.0, 60.0])
def test_single_lif_fires_at_the_analytic_rate(RI):
    """Constant drive RI above threshold: ISI = t_ref + tau ln(RI / (RI - theta)) (Lapicque)."""
    tau, theta, t_ref = 20.0, 15.0, 2.0  # theta = v_th - E_L
    with LiquidStateMachine(units=1, p=0.0, dt=0.01, steps_per_sample=1000, input_connectivity=1.0,
                            input_scaling=1.0, t_ref=t_ref, seed=0) as lsm:
        lsm.W_in_[:] = 1.0
        steps = lsm.run(np.full((200, 1), RI)).raw["spikes"]["step"]
    isi = np.diff(steps) * 0.01
    analytic = t_ref + tau * math.log(RI / (RI - theta))
    assert len(isi) > 10
    assert isi.mean() == pytest.approx(analytic, rel=0.01)


def test_dale_law_and_wiring():
    with LiquidStateMachine(units=400, p=0.1, seed=3) as lsm:
        exc = lsm.excitatory_
        assert exc.sum() == 320
        adj = lsm.adjacency_.tocoo()
        assert not np.any(adj.row == adj.col)  # no autapses
        assert abs(adj.nnz / (400 * 399) - 0.1) < 0.01
        w = lsm._w
        pre = np.repeat(np.arange(400), np.diff(lsm._indptr))
        assert np.all(w[exc[pre]] > 0) and np.all(w[~exc[pre]] < 0)


def _driven(**kw):
    params = dict(units=200, p=0.1, w_exc=1.0, w_inh=-4.0, noise_rate=800.0, noise_weight=4.0,
                  input_scaling=10.0, dt=0.5, steps_per_sample=10, seed=1)
    params.update(kw)
    return LiquidStateMachine(**params)


def test_spike_stream_is_complete_and_features_follow_from_it():
    u = np.random.default_rng(0).uniform(0, 1, (300, 1))
    with _driven(features="counts") as lsm:
        b = lsm.run(u)
    st, ne = b.raw["spikes"]["step"], b.raw["spikes"]["neuron"]
    assert len(st) > 1000  # the network is active
    counts = np.zeros((300, 200))
    np.add.at(counts, (st // 10, ne), 1)
    np.testing.assert_array_equal(counts, b.features)
    with _driven(features="trace", tau_trace=20.0) as lsm:
        b = lsm.run(u)
    st, ne = b.raw["spikes"]["step"], b.raw["spikes"]["neuron"]
    # trace at the end of row r: sum over spikes at steps s <= 10 r + 9 of exp(-dt (10 r + 9 - s) / tau)
    r_end = np.arange(300) * 10 + 9
    trace = np.zeros((300, 200))
    for s, n in zip(st, ne):
        later = r_end >= s
        trace[later, n] += np.exp(-0.5 * (r_end[later] - s) / 20.0)
    np.testing.assert_allclose(b.features, trace, rtol=1e-5, atol=1e-6)


def test_blocks_equal_one_call_and_reset_replays():
    u = np.random.default_rng(1).uniform(0, 1, (120, 1))
    with _driven() as lsm:
        whole = lsm.run(u)
        lsm.reset()
        parts = [lsm.run(u[a:a + 37]) for a in range(0, 120, 37)]
    np.testing.assert_array_equal(whole.features, np.concatenate([p.features for p in parts]))
    np.testing.assert_array_equal(whole.raw["spikes"]["step"],
                                  np.concatenate([p.raw["spikes"]["step"] for p in parts]))


def test_silent_and_saturated_networks_are_reported():
    with LiquidStateMachine(units=50, p=0.1, input_scaling=0.0, steps_per_sample=10, seed=0) as lsm:
        assert lsm.health() == []  # nothing run yet
        lsm.run(np.zeros((50, 1)))
        (msg,) = lsm.health()
        assert msg.startswith("silent: no neuron spiked") and "0 Hz" in msg
    with LiquidStateMachine(units=50, p=0.1, input_connectivity=1.0, input_scaling=1e4, steps_per_sample=10,
                            seed=0) as lsm:
        lsm.W_in_[:] = 1.0
        lsm.run(np.ones((50, 1)))
        (msg,) = lsm.health()
        assert msg.startswith("saturated")
    with _driven() as lsm:
        lsm.run(np.random.default_rng(0).uniform(0, 1, (100, 1)))
        assert lsm.health() == []


def test_a_silent_protocol_runs_and_warns_in_the_summary_and_the_store(ray_session, store_root):
    import labbench as lb
    from labbench.spec.protocol import from_dict

    proto = {"protocol": {"name": "silent"}, "device": {"driver": "lsm", "params": {
        "units": 50, "input_scaling": 0.0, "steps_per_sample": 5}},
        "task": {"name": "narma"}, "run": {"washout": 20, "train": 100, "test": 50, "block": 50},
        "readouts": [{"kind": "ridge"}]}
    run = lb.run(from_dict(proto), store_root=store_root, progress=False)
    assert run.status == "complete" and run.warnings and run.warnings[0].startswith("silent")
    assert lb.open_run(run.store).attrs["warnings"] == run.warnings


def test_rate_coded_input_uses_independent_sources_and_the_mapping():
    """Poisson mode: rate = max_rate * clip(offset + gain * u, 0, 1), one train per source."""
    from pydantic import ValidationError

    params = dict(units=200, n_inputs=2, input_mode="poisson", input_sources=50, input_connectivity=0.2,
                  input_weight=6.0, max_rate=50.0, input_offset=0.5, input_gain=0.5, seed=1)
    rates = []
    for u in (-1.0, 0.0, 1.0):
        with LiquidStateMachine(**params) as lsm:
            assert lsm.W_in_.shape == (100, 200) and (lsm.W_in_ != 0).any(axis=1).all()
            n = len(lsm.run(np.full((50, 2), u)).raw["spikes"]["step"])
            rates.append(n / 200 / 0.5)   # 50 rows x 10 ms = 0.5 s
    assert rates[0] == 0 and 0 < rates[1] < rates[2]   # u = -1 maps to 0 Hz: no input, no spikes
    with pytest.raises(ValidationError, match="input_sources = 5 needs input_mode = 'poisson'"):
        LiquidStateMachine(units=10, input_sources=5)


def test_memory_capacity_through_rate_coded_input():
    """protocols/memory_capacity_lsm.toml's network, shorter: the LSM remembers the last rows
    a little (docs/protocols.md: MC 0.92 with 10,000 training rows; the ESN's is 37.8)."""
    from sklearn.linear_model import Ridge

    from conftest import PROTOCOLS
    from labbench.spec.protocol import load

    proto = load(PROTOCOLS / "memory_capacity_lsm.toml", ["task.max_delay=10"])
    data = proto.task.generate(4200, seed=0)
    with LiquidStateMachine(**proto.device_params()) as lsm:
        X = lsm.run(data.inputs).features.astype(np.float64)
    fit = Ridge(alpha=1.0).fit(X[200:3200], data.targets[200:3200])
    curve = proto.task.memory_curve(data.targets[3200:], fit.predict(X[3200:]))
    assert curve[0] > 0.3 and curve.sum() > 0.5 and curve[-1] < 0.05   # fades within ten rows


def test_count_input_delivers_n_spikes_at_the_rows_first_step():
    """input_mode = "counts" (a DVS's events binned to rows): a count of n on a channel is n
    input spikes at the row's first step, i.e. one spike of n times the weight; with one step
    per row a count of 1 is exactly the "spikes" raster mode."""
    rng = np.random.default_rng(5)
    ones = (rng.random((300, 3)) < 0.2).astype(float)
    common = dict(units=100, n_inputs=3, steps_per_sample=1, dt=1.0, seed=7, features="counts")
    with LiquidStateMachine(input_mode="counts", input_weight=15.0, **common) as a, \
            LiquidStateMachine(input_mode="spikes", input_weight=15.0, **common) as b:
        sa, sb = a.run(ones).raw["spikes"], b.run(ones).raw["spikes"]
    assert len(sa["step"]) > 50
    np.testing.assert_array_equal(sa["step"], sb["step"])
    np.testing.assert_array_equal(sa["neuron"], sb["neuron"])
    with LiquidStateMachine(input_mode="counts", input_weight=15.0, **common) as a, \
            LiquidStateMachine(input_mode="spikes", input_weight=45.0, **common) as b:
        sa, sb = a.run(3 * ones).raw["spikes"], b.run(ones).raw["spikes"]
    np.testing.assert_array_equal(sa["step"], sb["step"])
    np.testing.assert_array_equal(sa["neuron"], sb["neuron"])
