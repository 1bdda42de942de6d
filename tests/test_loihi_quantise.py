"""Quantising the float LSM onto Loihi's formats (drivers/loihi/quantise.py).

The Loihi side is checked with a one-neuron transcription of Lava's fixed-point equations
(lava-nc 0.10.0 ``PyLifModelBitAcc.subthr_dynamics`` and ``PyDenseModelBitAcc``: Dense delivers
one step after the spike), written here so that these tests do not depend on the emulator.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from labbench.drivers.esn.driver import ESNParams
from labbench.drivers.loihi.network import LoihiNetwork
from labbench.drivers.loihi.quantise import decays, quantise_lsm, response_integral
from labbench.drivers.lsm import LiquidStateMachine, LSMParams

ONE = {"units": 1, "input_mode": "spikes", "input_connectivity": 1.0, "input_weight": 2.0, "t_ref": 0.0, "seed": 0}


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    p = x.astype(np.int64) * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def _lava_neuron(net: LoihiNetwork, spikes_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """v and spikes of a 1-neuron network fed 0/1 input spikes (T,), per Lava's fixed_pt models."""
    w = int(net.input.weights[0, 0])
    e = net.input.weight_exp
    T = len(spikes_in)
    a_in = np.zeros(T + 1, dtype=np.int64)
    acc = spikes_in.astype(np.int64) * w
    a_in[1:] = (acc << e) if e >= 0 else (acc >> -e)        # delivered one step late
    u = v = np.int64(0)
    vs, ss = np.zeros(T, np.int64), np.zeros(T, bool)
    for t in range(T):
        u = _decay(u, net.du + 1) + (a_in[t] << 6)
        v = np.clip(_decay(v, net.dv) + u, -(2**23 - 1), 2**23 - 1)
        if v > (net.vth << 6):
            ss[t] = True
            v = np.int64(0)
        vs[t] = v
    return vs, ss


def _float_psp(w: float, n: np.ndarray, dt=0.5, tau_m=20.0, tau_s=5.0) -> np.ndarray:
    """The LSM's exact membrane response (mV) n steps after a jump w of J (Rotter & Diesmann 1999)."""
    p_mm, p_ss = math.exp(-dt / tau_m), math.exp(-dt / tau_s)
    return w * tau_s / (tau_s - tau_m) * (p_ss ** (n + 1) - p_mm ** (n + 1))


# -- formulas -------------------------------------------------------------------------------------------
def test_decay_formulas():
    assert decays(0.5, 5.0, 20.0, "issue") == (410, 102)          # round(409.6), round(102.4)
    # exact: 4096 (1 - e^-0.1) = 389.79 -> 390 - ds_offset 1; 4096 (1 - e^-0.025) = 101.13
    assert decays(0.5, 5.0, 20.0, "exact") == (389, 101)
    assert decays(1.0, 1.0, 0.5, "issue") == (4095, 4095)           # clipped to 12 bits
    with pytest.raises(ValueError, match="decay rule"):
        decays(0.5, 5.0, 20.0, "euler")


def test_response_integral_is_the_sum_of_the_float_psp():
    n = np.arange(20000)
    assert response_integral(0.5, 20.0, 5.0) == pytest.approx(_float_psp(1.0, n).sum(), rel=1e-9)
    assert response_integral(0.5, 20.0, 20.0) == pytest.approx(
        (0.5 / 20.0 * np.exp(-0.5 * (n + 1) / 20.0) * (n + 1)).sum(), rel=1e-9)


def test_threshold_and_decays_follow_the_formulas():
    p = {"units": 200, "p": 0.1, "seed": 3}
    net, rep = quantise_lsm(p)
    assert (net.du, net.dv) == (410, 102) == (rep.du, rep.dv)
    assert net.vth == round((-55.0 - -70.0) * rep.scale / 64) == rep.vth
    assert 0 < net.vth <= 2**17 - 1
    assert rep.scale == net.meta["scale"]
    # effective time constants of the rounded decays (du + 1 for u: Lava's ds_offset)
    assert rep.time_constants_ms["tau_u_effective"] == pytest.approx(-0.5 / math.log((4096 - 411) / 4096))
    assert rep.time_constants_ms["tau_v_effective"] == pytest.approx(-0.5 / math.log((4096 - 102) / 4096))
    assert rep.time_constants_ms["inhibitory_becomes"] == 5.0


# -- wiring -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["poisson", "current"])
def test_same_wiring_and_input_wiring_as_the_float_lsm(mode):
    params = {"units": 300, "p": 0.1, "input_mode": mode, "input_sources": 3 if mode == "poisson" else 1,
                  "n_inputs": 2, "input_connectivity": 0.2, "seed": 7}
    net, _ = quantise_lsm(params)
    with LiquidStateMachine(**params) as lsm:
        adj = lsm.adjacency_.toarray()                 # pre x post
        exc = lsm.excitatory_
        w_in = lsm.W_in_
    rec = net.recurrent.weights                       # post x pre
    assert np.array_equal(rec.T != 0, adj)
    assert np.all(rec.T[exc] >= 0) and np.all(rec.T[~exc] <= 0)   # Dale's law by presynaptic class
    assert np.array_equal(net.input.weights.T != 0, w_in != 0)
    if mode == "current":
        assert np.array_equal(np.sign(net.input.weights.T), np.sign(w_in))


# -- weights ----------------------------------------------------------------------------------------------
def test_weights_on_the_grid_are_exact():
    # tau_i = tau_e: the inhibitory jump is exactly -4 x the excitatory one -> mantissas 64 and -256
    net, rep = quantise_lsm({"units": 200, "w_exc": 0.5, "w_inh": -2.0, "tau_i": 5.0, "seed": 1})
    assert rep.mantissas["excitatory"] == 64 and rep.mantissas["inhibitory"] == -256
    assert rep.relative_weight_error["recurrent"] == 0.0
    assert set(np.unique(net.recurrent.weights)) == {-256, 0, 64}
    assert net.recurrent.sign_mode == 1


@pytest.mark.parametrize("w_exc, w_inh, tau_i", [(0.5, -2.0, 10.0), (0.37, -2.9, 7.3), (1.5, -0.2, 10.0)])
def test_relative_weight_error_is_small(w_exc, w_inh, tau_i):
    params = {"units": 200, "w_exc": w_exc, "w_inh": w_inh, "tau_i": tau_i, "input_mode": "poisson",
                  "input_weight": 3.0, "input_sources": 5, "seed": 2}
    net, rep = quantise_lsm(params)
    err = rep.relative_weight_error
    assert 0.0 <= err["recurrent"] < 0.02 and 0.0 <= err["input"] < 0.01
    # the largest |weight| uses the full mantissa range of the mixed-sign Dense
    assert np.abs(net.recurrent.weights).max() in (254, 256)
    assert np.all(net.recurrent.weights % 2 == 0)      # mixed sign: Lava drops the lowest bit


def test_u_and_v_stay_inside_24_bits_at_the_stated_rate():
    _, rep = quantise_lsm({"units": 1000, "seed": 0}, rate_hz=50.0)
    h = rep.headroom
    assert h["u_bound"] <= h["limit"] and h["v_bound"] <= h["limit"] == 2**23 - 1
    _, hot = quantise_lsm({"units": 1000, "seed": 0}, rate_hz=400.0)   # more headroom: smaller exponent
    assert hot.weight_exp < rep.weight_exp and hot.headroom["v_bound"] <= 2**23 - 1


# -- the membrane response ------------------------------------------------------------------------------
@pytest.mark.parametrize("decay, tol_peak, tol_shape", [("issue", 0.05, 0.05), ("exact", 0.005, 0.01)])
def test_subthreshold_response_to_one_input_spike(decay, tol_peak, tol_shape):
    """Loihi's PSP (in mV via the scale) against the float LSM's exact one, aligned for Dense's
    one-step delivery: integral within 1 %, peak within ``tol_peak``, every step within
    ``tol_shape`` of the peak (the forward-Euler 'issue' decays are ~3.5 % off in shape)."""
    net, rep = quantise_lsm(ONE, decay=decay)
    T = 400
    spikes = np.zeros(T, dtype=np.int8)
    spikes[0] = 1
    v, s = _lava_neuron(net, spikes)
    assert not s.any()
    v_mv = v[1:] / rep.scale                              # arrival one step after the spike
    ref = _float_psp(2.0, np.arange(T - 1))
    assert v_mv.sum() == pytest.approx(ref.sum(), rel=0.01)
    assert v_mv.max() == pytest.approx(ref.max(), rel=tol_peak)
    assert np.argmax(v_mv) == np.argmax(ref)
    assert np.abs(v_mv - ref).max() < tol_shape * ref.max()


@pytest.mark.parametrize("period", [1, 2, 3])
def test_firing_rate_under_periodic_input_matches_the_float_lsm(period):
    """Suprathreshold: the float LSM class (t_ref = 0) and the quantised neuron, driven by the
    same input spike train, fire at rates within 5 % (the mapping keeps each PSP's charge)."""
    params = dict(ONE, input_weight=6.0, steps_per_sample=1)
    T = 3000
    spikes = (np.arange(T) % period == 0).astype(np.int8)
    with LiquidStateMachine(**params) as lsm:
        n_float = len(lsm.run(spikes[:, None].astype(float)).raw["spikes"]["step"])
    net, _ = quantise_lsm(params)
    _, s = _lava_neuron(net, spikes)
    assert n_float > 20
    assert s.sum() == pytest.approx(n_float, rel=0.05)


# -- the report and refusals ---------------------------------------------------------------------------
def test_report_is_json_and_lists_what_is_dropped():
    with pytest.warns(UserWarning, match="v_reset"):
        _, rep = quantise_lsm(LSMParams(units=100, noise_rate=10.0, v_reset=-65.0, seed=0))
    d = json.loads(json.dumps(rep.to_dict()))
    text = " ".join(d["dropped"])
    for word in ("refractory", "delays", "tau_i", "noise", "analog input"):
        assert word in text
    assert any("v_reset" in w for w in d["warnings"])
    assert set(d["relative_weight_error"]) == {"recurrent", "input"}
    _, clean = quantise_lsm({"units": 50, "t_ref": 0.0, "tau_i": 5.0, "input_mode": "spikes", "seed": 0})
    text = " ".join(clean.dropped)
    assert "refractory" not in text and "tau_i" not in text and "noise" not in text and "delays" in text


def test_refuses_an_esn():
    for params in ({"units": 100, "spectral_radius": 0.9, "leak": 0.3}, ESNParams(units=100)):
        with pytest.raises(ValueError, match="an ESN is not a LIF network"):
            quantise_lsm(params)
    with pytest.raises(ValueError, match="units"):
        quantise_lsm({"units": -3})
    with pytest.raises(TypeError, match="dict or LSMParams"):
        quantise_lsm([1, 2])


def test_network_round_trips_through_plain_arrays():
    net, _ = quantise_lsm({"units": 100, "seed": 4})
    a = net.to_arrays()
    b = LoihiNetwork.from_arrays(a).to_arrays()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
