"""The Loihi emulator against analytic answers and a line-by-line numpy transcription of Lava 0.10.

No Lava here: the bit-exact comparison with real Lava runs in the Lava worker's test. These
tests pin each rule of lava-nc 0.10.0's ``PyLifModelBitAcc`` / ``PyDenseModelBitAcc`` with a
hand-computed answer that a plausible mistake (floor decay, symmetric wrap, per-weight shift,
no truncation, same-step delivery) would fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from labbench.drivers.loihi.emulator import Emulator, EmulatorSteps, effective_weights
from labbench.drivers.loihi.network import DenseLayer, LoihiNetwork


def net1(du: int = 4095, dv: int = 0, vth: int = 2**17 - 1, bias_mant: int = 0, bias_exp: int = 0,
         w_in: int = 0, in_exp: int = 0, in_mode: int = 0) -> LoihiNetwork:
    """One neuron, no recurrence (a zero weight), one input channel."""
    return LoihiNetwork(du=du, dv=dv, vth=vth, bias_mant=np.array([bias_mant]), bias_exp=bias_exp,
                        recurrent=DenseLayer(np.zeros((1, 1), int)),
                        input=DenseLayer(np.array([[w_in]]), in_exp, 8, in_mode))


def set_state(em: Emulator, **values: int) -> None:
    """Overwrite parts of the emulator's state through checkpoint/restore."""
    state = em.checkpoint()
    for key, value in values.items():
        state[key][:] = value
    em.restore(state)


def quiet(T: int, n_in: int = 1) -> np.ndarray:
    return np.zeros((T, n_in), bool)


# ---------------------------------------------------------------- LIF dynamics

def test_decay_is_sign_magnitude_not_floor():
    # du = 2047: factor 4096 - (2047 + 1) = 2048, i.e. halve (ds_offset = 1)
    em = Emulator(net1(du=2047))
    set_state(em, u=-5)
    assert em.run(quiet(1), record=True).u[0, 0] == -2          # floor would give -3
    set_state(em, u=5)
    assert em.run(quiet(1), record=True).u[0, 0] == 2
    # dv decays without the offset: dv = 2048 halves v exactly
    em = Emulator(net1(dv=2048))
    set_state(em, v=-7)
    assert em.run(quiet(1), record=True).v[0, 0] == -3          # -3.5 towards zero


def test_du_offset_makes_4095_a_full_decay():
    em = Emulator(net1(du=4095))
    set_state(em, u=1000)
    assert em.run(quiet(1), record=True).u[0, 0] == 0
    em = Emulator(net1(du=0))                                    # factor 4095
    set_state(em, u=4096)
    assert em.run(quiet(1), record=True).u[0, 0] == 4095


def test_u_wraps_at_24_bits_as_lava_does():
    # du = 4095 -> decayed u = 0, so u = a_in << 6; the Dense output due next step is in_buf
    em = Emulator(net1())
    cases = {2**17: 2**23,                     # exactly 2^23 is kept (Lava tests u > 2^23)
             2**17 + 1: 2**23 + 64 - 2**24,    # just above wraps to the negative side
             -(2**17): 2**23,                  # -2^23 wraps to +2^23 (Lava tests u <= -2^23)
             -(2**17) + 1: -(2**23) + 64}      # just above -2^23 is kept
    for in_buf, u_expected in cases.items():
        em.reset()
        set_state(em, in_buf=in_buf)
        assert em.run(quiet(1), record=True).u[0, 0] == u_expected, in_buf


def test_v_saturates_at_24_bits():
    # bias -4096 << 7 = -524288 per step, no decay: v = -524288 k until it clips at -(2^23 - 1)
    em = Emulator(net1(dv=0, bias_mant=-4096, bias_exp=7))
    v = em.run(quiet(20), record=True).v[:, 0]
    expected = np.maximum(-524288 * np.arange(1, 21), -(2**23 - 1))
    np.testing.assert_array_equal(v, expected)
    assert v[-1] == -(2**23 - 1)


def test_v_saturates_positive_and_the_largest_threshold_is_below_it():
    # u = 2^23 (kept by the wrap) drives v to +2^23 - 1 > vth_max << 6 = 2^23 - 64: a spike
    em = Emulator(net1(du=4095, vth=2**17 - 1))
    set_state(em, in_buf=2**17)
    out = em.run(quiet(1), record=True)
    assert out.u[0, 0] == 2**23 and out.spikes[0, 0] and out.v[0, 0] == 0


def test_spike_strictly_above_vth_shifted_and_reset_to_zero():
    # bias 64 per step, vth << 6 = 192: v = 64, 128, 192 (no spike: strict), 256 -> spike, 0
    em = Emulator(net1(dv=0, vth=3, bias_mant=64))
    out = em.run(quiet(12), record=True)
    np.testing.assert_array_equal(np.flatnonzero(out.spikes[:, 0]), [3, 7, 11])
    np.testing.assert_array_equal(out.v[:4, 0], [64, 128, 192, 0])
    np.testing.assert_array_equal(out.v[4:8, 0], [64, 128, 192, 0])


def test_bias_is_mantissa_shifted_by_exponent():
    for mant, exp in ((5, 3), (-5, 3), (4095, 7), (-4096, 0)):
        out = Emulator(net1(dv=0, bias_mant=mant, bias_exp=exp)).run(quiet(1), record=True)
        assert out.v[0, 0] == mant * 2**exp


# ---------------------------------------------------------------- Dense weights

def test_mixed_sign_weights_lose_their_lowest_bit_one_sign_does_not():
    mixed = DenseLayer(np.array([[3, -3, 255, -256, 1]]))
    np.testing.assert_array_equal(effective_weights(mixed), [[2, -4, 254, -256, 0]])
    exc = DenseLayer(np.array([[3, 5, 255, 1, 0]]))
    np.testing.assert_array_equal(effective_weights(exc), [[3, 5, 255, 1, 0]])
    inh = DenseLayer(np.array([[-3, -5, -255, -1, 0]]))
    np.testing.assert_array_equal(effective_weights(inh), [[-3, -5, -255, -1, 0]])
    # end to end: input weight 3 lands as 2 << 6 in a mixed matrix, 3 << 6 in an excitatory one
    for other, u_expected in ((-1, 2 * 64), (1, 3 * 64)):
        net = LoihiNetwork(du=4095, dv=0, vth=2**17 - 1, bias_mant=np.zeros(2, int), bias_exp=0,
                           recurrent=DenseLayer(np.zeros((2, 2), int)), input=DenseLayer(np.array([[3], [other]])))
        x = np.array([[1], [0]], bool)
        assert Emulator(net).run(x, record=True).u[1, 0] == u_expected


def test_weight_clipping_and_truncation_follow_sign_mode_and_bits():
    # clip to 8 bits per sign mode (clip_weights), then drop 8 - num_weight_bits (+1 if mixed) bits
    np.testing.assert_array_equal(effective_weights(DenseLayer(np.array([[300, -300]]))), [[254, -256]])
    np.testing.assert_array_equal(effective_weights(DenseLayer(np.array([[300, -7]]), sign_mode=2)), [[255, 0]])
    np.testing.assert_array_equal(effective_weights(DenseLayer(np.array([[-300, 7]]), sign_mode=3)), [[-255, 0]])
    np.testing.assert_array_equal(effective_weights(DenseLayer(np.array([[7, 13]]), num_weight_bits=6)), [[4, 12]])
    # inhibitory truncates the magnitude: -7 -> -4, not floor -8
    np.testing.assert_array_equal(effective_weights(DenseLayer(np.array([[-7, -13]]), num_weight_bits=6)),
                                  [[-4, -12]])
    # mixed, 6 bits: 3 low bits go, floor: 7 -> 0, -7 -> -8
    np.testing.assert_array_equal(effective_weights(DenseLayer(np.array([[7, -7, 13]]), num_weight_bits=6)),
                                  [[0, -8, 8]])


def test_weight_exp_shifts_the_accumulated_sum_both_ways():
    def u_after(weights: list[int], exp: int, mode: int = 0) -> int:
        n_in = len(weights)
        net = LoihiNetwork(du=4095, dv=0, vth=2**17 - 1, bias_mant=np.zeros(1, int), bias_exp=0,
                           recurrent=DenseLayer(np.zeros((1, 1), int)),
                           input=DenseLayer(np.array([weights]), exp, 8, mode))
        x = np.zeros((2, n_in), bool)
        x[0] = True
        return int(Emulator(net).run(x, record=True).u[1, 0])
    assert u_after([3], 2) == (3 << 2) << 6
    assert u_after([3], 7) == (3 << 7) << 6
    assert u_after([3], -1) == (3 >> 1) << 6               # 1
    assert u_after([-3], -1) == -2 << 6                    # floor(-1.5) = -2, not -1
    assert u_after([1, 1], -1) == 1 << 6                   # the sum is shifted, not each weight
    assert u_after([255], -8) == 0


# ---------------------------------------------------------------- timing

def test_input_reaches_u_one_step_after_the_source_emits_it():
    em = Emulator(net1(du=4095, w_in=10, in_mode=2))
    x = np.zeros((4, 1), bool)
    x[1] = True
    out = em.run(x, record=True)
    np.testing.assert_array_equal(out.u[:, 0], [0, 0, 10 << 6, 0])


def test_recurrent_spike_arrives_one_step_later():
    # neuron 0 spikes at step 0 (bias 1 > vth 0); neuron 1 (bias -1) gets w = 7 at step 1
    net = LoihiNetwork(du=4095, dv=0, vth=0, bias_mant=np.array([1, -4096]), bias_exp=0,
                       recurrent=DenseLayer(np.array([[0, 0], [7, 0]])), input=DenseLayer(np.zeros((2, 1), int)))
    out = Emulator(net).run(quiet(3), record=True)
    assert out.spikes[0, 0] and out.u[0, 1] == 0
    np.testing.assert_array_equal(out.u[1:, 1], [7 << 6, 7 << 6])


# ---------------------------------------------------------------- against Lava's numpy code

def _clip_truncate(w: np.ndarray, mode: int, bits: int) -> np.ndarray:
    """lava/utils/weightutils.py clip_weights(num_bits=8) + truncate_weights, transcribed."""
    if mode == 0:
        mode = 2 if w.min() >= 0 else 3 if w.max() <= 0 else 1
    w = w.copy().astype(np.int32)
    mixed, inh = int(mode == 1), int(mode == 3)
    w = -w if inh else w
    w = np.clip(w, -(2**8) * mixed, 2**8 - 1)
    k = 8 - bits + mixed
    w = (w >> k) << k
    return -w if inh else w


def _lava_numpy(net: LoihiNetwork, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run_spk methods of PyLifModelBitAcc and PyDenseModelBitAcc (lava-nc 0.10.0), in numpy."""
    n = net.n_neurons
    w_rec = _clip_truncate(net.recurrent.weights, net.recurrent.sign_mode, net.recurrent.num_weight_bits)
    w_in = _clip_truncate(net.input.weights, net.input.sign_mode, net.input.num_weight_bits)
    u = np.zeros(n, np.int32)
    v = np.zeros(n, np.int32)
    buf_rec = np.zeros(n, np.int32)
    buf_in = np.zeros(n, np.int32)
    bias = np.left_shift(net.bias_mant.astype(np.int32), net.bias_exp)
    vth = np.left_shift(net.vth, 6)
    us, vs, ss = [], [], []

    def shift(acc: np.ndarray, e: int) -> np.ndarray:
        r = np.left_shift(acc, e) if e > 0 else np.right_shift(acc, -e)
        return r.astype(np.int32)                       # the int32 channel

    with np.errstate(over="ignore"):
        for t in range(x.shape[0]):
            a_in = np.zeros(n, np.int16) + buf_rec + buf_in
            d = np.int64(u) * (4096 - (net.du + 1))
            d = np.int32(np.sign(d) * np.right_shift(np.abs(d), 12))
            d += np.left_shift(a_in, 6)
            w = np.where(d > 2**23, d - 2**24, d)
            w = np.where(w <= -(2**23), d + 2**24, w)
            u[:] = w
            dvv = np.int64(v) * (4096 - net.dv)
            dvv = np.int32(np.sign(dvv) * np.right_shift(np.abs(dvv), 12))
            v[:] = np.clip(dvv + u + bias, -(2**23) + 1, 2**23 - 1)
            s = v > vth
            v[s] = 0
            us.append(u.copy()), vs.append(v.copy()), ss.append(s)
            buf_rec = shift(w_rec[:, s].sum(axis=1), net.recurrent.weight_exp)
            buf_in = shift(w_in[:, x[t].astype(bool)].sum(axis=1), net.input.weight_exp)
    return np.array(ss), np.array(us), np.array(vs)


def random_net(seed: int, n: int, n_in: int, wrap: bool = False) -> LoihiNetwork:
    rng = np.random.default_rng(seed)

    def layer(shape: tuple[int, int], density: float) -> DenseLayer:
        mode = int(rng.integers(0, 4))
        lo, hi = {0: (-256, 256), 1: (-300, 300), 2: (-20, 300), 3: (-300, 20)}[mode]
        w = rng.integers(lo, hi, shape) * (rng.random(shape) < density)
        return DenseLayer(w, int(rng.integers(-8, 8)), int(rng.integers(1, 9)), mode)
    rec, inp = layer((n, n), float(rng.choice([0.1, 1.0]))), layer((n, n_in), 0.5)
    du, dv = int(rng.integers(0, 4096)), int(rng.integers(0, 4096))
    if wrap:   # excitatory, maximal exponent, no decay: u runs over 24 bits
        rec, inp, du, dv = DenseLayer(np.abs(rec.weights), 7, 8, 2), DenseLayer(np.full((n, n_in), 255), 7), 0, 0
    return LoihiNetwork(du=du, dv=dv, vth=int(rng.integers(0, 2000)), bias_mant=rng.integers(-4096, 4096, n),
                        bias_exp=int(rng.integers(0, 8)), recurrent=rec, input=inp)


@pytest.mark.parametrize("seed,n,wrap", [(2, 40, False), (3, 120, False), (4, 60, True), (9, 90, False), (6, 40, False)])
def test_kernel_equals_lavas_numpy_code(seed, n, wrap):
    net = random_net(seed, n, 3, wrap)
    x = np.random.default_rng(seed + 100).random((300, 3)) < 0.3
    s, u, v = _lava_numpy(net, x)
    out = Emulator(net).run(x, record=True)
    np.testing.assert_array_equal(out.spikes, s)
    np.testing.assert_array_equal(out.u, u)
    np.testing.assert_array_equal(out.v, v)
    assert 0 < s.mean() < 1
    if wrap:
        assert np.abs(u).max() > 2**23          # the regime really wraps


# ---------------------------------------------------------------- state and counts

def test_checkpoint_restore_is_bit_identical():
    net = random_net(7, 80, 4)
    rng = np.random.default_rng(0)
    xa, xb = rng.random((200, 4)) < 0.3, rng.random((150, 4)) < 0.3
    em = Emulator(net)
    em.run(xa)
    state = em.checkpoint()
    first = em.run(xb, record=True)
    counts = em.counts
    em.restore(state)
    again = em.run(xb, record=True)
    fresh = Emulator(net)
    fresh.restore(state)
    resumed = fresh.run(xb, record=True)
    whole = Emulator(net).run(np.vstack([xa, xb]), record=True)
    assert first.spikes.any() and not first.spikes.all()
    for r in (again, resumed):
        np.testing.assert_array_equal(r.spikes, first.spikes)
        np.testing.assert_array_equal(r.u, first.u)
        np.testing.assert_array_equal(r.v, first.v)
    np.testing.assert_array_equal(whole.v[200:], first.v)
    assert em.counts == counts == fresh.counts and counts["steps"] == 350
    # the checkpoint is a copy, not a view of the live state
    assert int(state["step"]) == 200


def test_counts_equal_hand_counts():
    # neuron 0 spikes every step (bias 1 > vth 0); 1 and 2 never (bias -4096 << 7).
    # Recurrent (mixed): 0 -> 1 weight 1 truncates to 0 (absent), 0 -> 2 weight -2: fan-out 1.
    # Input: channel 0 -> neurons 0, 1, 2 (fan-out 3), channel 1 -> neuron 2 (fan-out 1).
    rec = np.array([[0, 0, 0], [1, 0, 0], [-2, 0, 0]])
    w_in = np.array([[1, 0], [1, 0], [1, 1]])
    net = LoihiNetwork(du=100, dv=100, vth=0, bias_mant=np.array([1, -4096, -4096]), bias_exp=7,
                       recurrent=DenseLayer(rec), input=DenseLayer(w_in))
    x = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], bool)
    em = Emulator(net)
    out = em.run(x)
    np.testing.assert_array_equal(out.spikes, np.tile([True, False, False], (4, 1)))
    assert out.u is None and out.v is None
    assert em.counts == {"synaptic_ops": 4 * 1 + (3 + 4 + 0 + 1), "neuron_updates": 12, "spikes": 4, "steps": 4}
    em.reset()
    assert em.counts == {"synaptic_ops": 0, "neuron_updates": 0, "spikes": 0, "steps": 0}
    assert not em.checkpoint()["u"].any()


def test_empty_run_and_result_type():
    em = Emulator(net1())
    out = em.run(np.zeros((0, 1), bool), record=True)
    assert isinstance(out, EmulatorSteps) and out.spikes.shape == (0, 1) and out.u.shape == (0, 1)
    assert em.counts["steps"] == 0


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("x,match", [
    (np.zeros(5, bool), r"spikes_in must have shape \(T, 1\), got \(5,\)"),
    (np.zeros((5, 2), bool), r"spikes_in must have shape \(T, 1\), got \(5, 2\)"),
    (np.full((5, 1), 2), r"spikes_in must hold only 0 and 1"),
    (np.full((5, 1), "a"), r"spikes_in must be bool, integer or float 0/1"),
])
def test_clear_one_line_errors_for_bad_input(x, match):
    with pytest.raises(ValueError, match=match) as info:
        Emulator(net1()).run(x)
    assert "\n" not in str(info.value)


def test_clear_errors_for_bad_state_and_network():
    em = Emulator(net1())
    with pytest.raises(ValueError, match=r"checkpoint state lacks \['in_buf'\]"):
        em.restore({k: v for k, v in em.checkpoint().items() if k != "in_buf"})
    bad = em.checkpoint()
    bad["u"] = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match=r"state\['u'\] has shape \(3,\), expected \(1,\)"):
        em.restore(bad)
    with pytest.raises(TypeError, match="network must be a LoihiNetwork"):
        Emulator({"du": 1})
