"""Energy, time and resource estimates for Loihi (drivers/loihi/energy.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from labbench.drivers.loihi.energy import DAVIES_2018, estimate, resources
from labbench.drivers.loihi.network import DenseLayer, LoihiNetwork


def _net(n: int, rec: np.ndarray | None = None, inp: np.ndarray | None = None) -> LoihiNetwork:
    rec = np.zeros((n, n), np.int32) if rec is None else rec
    inp = np.zeros((n, 1), np.int32) if inp is None else inp
    return LoihiNetwork(du=410, dv=102, vth=1000, bias_mant=np.zeros(n, np.int32), bias_exp=0,
                        recurrent=DenseLayer(rec), input=DenseLayer(inp))


COUNTS = {"synaptic_ops": 1000, "neuron_updates": 500, "spikes": 20, "steps": 50}


def test_the_published_figures():
    # Davies et al. 2018, IEEE Micro 38(1), Table 2
    assert DAVIES_2018["energy_per_synaptic_op"] == 23.6e-12
    assert DAVIES_2018["energy_per_neuron_update_active"] == 81e-12
    assert DAVIES_2018["energy_per_neuron_update_inactive"] == 52e-12
    assert DAVIES_2018["energy_per_spike_within_tile"] == 1.7e-12
    assert DAVIES_2018["time_per_synaptic_op"] == 3.5e-9


def test_energy_and_time_equal_hand_arithmetic():
    est = estimate(COUNTS, _net(10))
    # 1000 x 23.6 pJ + 500 x 52 pJ + 20 x (81 - 52) pJ + 20 x 1.7 pJ
    energy = 1000 * 23.6e-12 + 500 * 52e-12 + 20 * 29e-12 + 20 * 1.7e-12
    assert est["energy_J"] == pytest.approx(energy, rel=1e-12) == pytest.approx(50.214e-9, rel=1e-12)
    assert est["energy_per_step_J"] == pytest.approx(energy / 50, rel=1e-12)
    lo, hi = est["energy_range_J"]
    assert lo == pytest.approx(23.6e-9 + 26e-9 + 0.034e-9) and hi == pytest.approx(23.6e-9 + 40.5e-9 + 0.034e-9)
    assert lo < est["energy_J"] < hi
    assert sum(est["energy_breakdown_J"].values()) == pytest.approx(energy, rel=1e-12)
    # one core: 1000 x 3.5 ns + 480 x 5.3 ns + 20 x 8.4 ns of work, plus a 1-tile barrier (113 ns) per step
    assert est["cores"] == 1
    assert est["time_s"] == pytest.approx(6212e-9 + 50 * 113e-9, rel=1e-12)
    assert est["time_per_step_s"] == pytest.approx(est["time_s"] / 50, rel=1e-12)


def test_energy_scales_linearly_with_counts():
    net = _net(10)
    one = estimate(COUNTS, net)
    for k in (2, 7, 1000):
        many = estimate({key: k * v for key, v in COUNTS.items()}, net)
        assert many["energy_J"] == pytest.approx(k * one["energy_J"], rel=1e-12)
        assert many["time_s"] == pytest.approx(k * one["time_s"], rel=1e-12)
        assert many["energy_per_step_J"] == pytest.approx(one["energy_per_step_J"], rel=1e-12)
    # each term on its own is linear too
    base = estimate({"synaptic_ops": 0, "neuron_updates": 0, "spikes": 0, "steps": 1}, net)["energy_J"]
    assert base == 0.0
    syn = estimate({"synaptic_ops": 10**6, "neuron_updates": 0, "spikes": 0, "steps": 1}, net)["energy_J"]
    assert syn == pytest.approx(23.6e-6, rel=1e-12)


def test_result_is_json_and_counts_are_checked():
    est = estimate(COUNTS, _net(10))
    back = json.loads(json.dumps(est))
    assert back["counts"] == COUNTS and "Davies" in back["source"]
    json.dumps(resources(_net(10)))
    with pytest.raises(ValueError, match="spikes"):
        estimate({"synaptic_ops": 1, "neuron_updates": 1, "steps": 1}, _net(10))
    with pytest.raises(ValueError, match="non-negative integer"):
        estimate(dict(COUNTS, spikes=-1), _net(10))


def test_cores_and_memory_for_known_networks():
    # 100 neurons, all-to-all 8-bit: dense format 100 x 100 x 8 = 80,000 bits < sparse 10,000 x 18
    full = np.full((100, 100), 3, np.int32)
    r = resources(_net(100, rec=full))
    assert r["synapses"] == {"recurrent": 10_000, "input": 0}
    assert r["loihi1"]["synapse_memory_per_layer"]["recurrent"] == {"format": "dense", "bits": 80_000,
                                                                    "weight_bits": 8}
    assert r["loihi1"]["cores"] == 1 and r["loihi2"]["cores"] == 1
    # sparse: 1,000 neurons with 10 synapses each -> 10,000 x (8 + 10) bits
    rec = np.zeros((1000, 1000), np.int32)
    rng = np.random.default_rng(0)
    for i in range(1000):
        rec[i, rng.choice(1000, 10, replace=False)] = 5
    r = resources(_net(1000, rec=rec))
    assert r["loihi1"]["synapse_memory_bits"] == 180_000 and r["loihi1"]["cores"] == 1
    # neurons bound the cores: 2,049 neurons need 3 Loihi 1 cores (1,024 compartments each)
    assert resources(_net(2049))["loihi1"]["cores"] == 3
    # memory binds: 1,000 all-to-all 8-bit = 8,000,000 bits over 128 KB (1,048,576 bits) cores -> 8
    r = resources(_net(1000, rec=np.ones((1000, 1000), np.int32)))
    assert r["loihi1"]["synapse_memory_bits"] == 8_000_000 and r["loihi1"]["cores"] == 8
    # Loihi 2 (lower bound from chip totals): 10^6 synapses over 937,500 per core -> 2 cores
    assert r["loihi2"]["cores"] == 2


def test_input_axons_per_core():
    inp = np.zeros((10, 4100), np.int32)
    inp[np.arange(4100) % 10, np.arange(4100)] = 1
    r = resources(_net(10, inp=inp))
    assert r["loihi1"]["input_axons_needed"] == 4100 and r["loihi1"]["input_axons_fit"] is False
    assert resources(_net(10, inp=inp[:, :100]))["loihi1"]["input_axons_fit"] is True


def test_more_cores_share_the_work_per_step():
    big = _net(3000)                                     # 3 cores: work / 3, barrier of one tile
    est = estimate(COUNTS, big)
    assert est["cores"] == 3
    assert est["time_s"] == pytest.approx(6212e-9 / 3 + 50 * 113e-9, rel=1e-12)
