"""The in-silico culture (MEA mock): reproducible, window-invariant, bursting like a culture,
responding to stimulation where it is stimulated, recording only on usable electrodes,
plastic only with STDP on; and the burst detector on spike trains with known bursts."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from labbench.drivers.mea import culture as culture_module
from labbench.drivers.mea.bursts import array_wide_rate, detect_bursts
from labbench.drivers.mea.culture import CultureParams, InSilicoCulture
from labbench.drivers.mea.layout import ElectrodeLayout
from labbench.drivers.mea.stimulation import BiphasicPulse, ScheduledPulse

#: documented targets (docs/mea-culture.md, "Targets and why"): dense cortical cultures,
#: 3rd-5th week in vitro (Wagenaar, Pine & Potter 2006)
BURSTS_PER_MIN = (2.0, 30.0)
MEDIAN_BURST_S = (0.05, 1.0)

PULSE = BiphasicPulse(10.0, 200.0)          # 2 nC per phase, the MEA driver's default pulse


def _culture(**params) -> InSilicoCulture:
    c = InSilicoCulture(params)
    c.open()
    return c


def _pulses(t0: float, n: int, period: float, electrode: int) -> list[ScheduledPulse]:
    return [ScheduledPulse(t0 + k * period, (electrode,), PULSE) for k in range(n)]


# -- parameters, life cycle ----------------------------------------------------------------------
def test_params_refuse_unknown_keys_and_name_them():
    with pytest.raises(ValidationError, match="n_neuron"):
        InSilicoCulture({"n_neuron": 100})
    with pytest.raises(ValidationError, match="std_u"):
        CultureParams(std_u=1.5)
    with pytest.raises(ValidationError, match="stdp_w_max"):
        CultureParams(stdp=True, w_ee=0.05, w_spread=0.5, stdp_w_max=0.06)
    with pytest.raises(TypeError, match="CultureParams"):
        InSilicoCulture(42)


def test_open_reports_the_device_and_time_accumulates():
    c = InSilicoCulture({"n_neurons": 200, "seed": 3})
    with pytest.raises(RuntimeError, match="open"):
        c.record(0.1, [])
    info = c.open()
    assert info["name"] == "in-silico culture" and info["n_neurons"] == 200 and info["n_excitatory"] == 160
    assert info["n_electrodes"] == 64 and info["usable_electrodes"] == 59
    assert info["dt_ms"] == 0.5 and info["seed"] == 3 and info["sample_rate_hz"] == 25000.0
    assert c.open() == info                      # idempotent
    w1 = c.record(0.25, [])
    w2 = c.record(0.5, [])
    assert (w1.start_s, w1.duration_s, w2.start_s) == (0.0, 0.25, 0.25)
    assert c.time_s == pytest.approx(0.75)
    assert np.all((w2.spikes.time_s >= 0.25) & (w2.spikes.time_s <= 0.75))
    with pytest.raises(ValueError, match="duration_s = -0.1"):
        c.record(-0.1, [])
    with pytest.raises(ValueError, match="pulse 0 at t_s = 0.5"):
        c.record(0.5, _pulses(0.5, 1, 0.1, 27))  # outside [0, duration)
    with pytest.raises(ValueError, match="electrode 15, which is unusable"):
        c.record(0.5, _pulses(0.0, 1, 0.1, 15))
    with pytest.raises(ValueError, match="electrode 64, which does not exist"):
        c.record(0.5, _pulses(0.0, 1, 0.1, 64))
    c.stop_stimulation()
    c.close()
    c.close()


# -- reproducibility -----------------------------------------------------------------------------
def test_same_seed_same_spikes_other_seed_other_spikes():
    pulses = _pulses(0.5, 4, 0.75, 27)
    a, b, other = _culture(seed=7), _culture(seed=7), _culture(seed=8)
    wa, wb, wo = a.record(4.0, pulses), b.record(4.0, pulses), other.record(4.0, pulses)
    assert len(wa.spikes) > 100
    np.testing.assert_array_equal(wa.spikes.time_s, wb.spikes.time_s)
    np.testing.assert_array_equal(wa.spikes.electrode, wb.spikes.electrode)
    np.testing.assert_array_equal(a.last_neuron_spikes[1], b.last_neuron_spikes[1])
    assert len(wa.spikes) != len(wo.spikes) or not np.array_equal(wa.spikes.time_s, wo.spikes.time_s)
    # reset() replays the same culture from time 0; reset(seed) builds another one
    a.reset()
    assert a.time_s == 0.0
    again = a.record(4.0, pulses)
    np.testing.assert_array_equal(again.spikes.time_s, wa.spikes.time_s)
    a.reset(seed=8)
    np.testing.assert_array_equal(a.record(4.0, pulses).spikes.time_s, wo.spikes.time_s)


def test_windows_split_anywhere_give_the_spikes_of_one_window(monkeypatch):
    """Same total length, same pulses (with STDP on, so that the weights must agree too),
    and a spike buffer so small that the kernel has to stop and resume inside windows."""
    pulses = _pulses(0.3, 6, 0.5, 27) + _pulses(0.55, 3, 0.9, 44)
    whole = _culture(seed=2, stdp=True)
    w = whole.record(3.5, pulses)
    monkeypatch.setattr(culture_module, "_MIN_SPIKE_BUFFER", 10)
    monkeypatch.setattr(culture_module, "_BUFFER_RATE_HZ", 0.0)
    split = _culture(seed=2, stdp=True)
    times, elecs, neurons = [], [], []
    start = 0.0
    for length in (0.8, 0.0005, 1.2, 1.4995):          # a one-step window too; a pulse at a cut
        inside = [ScheduledPulse(p.t_s - start, p.electrodes, p.pulse) for p in pulses
                  if start <= p.t_s < start + length - 1e-12]
        part = split.record(length, inside)
        assert part.start_s == pytest.approx(start)
        times.append(part.spikes.time_s)
        elecs.append(part.spikes.electrode)
        neurons.append(split.last_neuron_spikes[1])
        start += length
    assert split.time_s == pytest.approx(3.5)
    assert len(w.spikes) > 500
    np.testing.assert_array_equal(np.concatenate(times), w.spikes.time_s)
    np.testing.assert_array_equal(np.concatenate(elecs), w.spikes.electrode)
    np.testing.assert_array_equal(np.concatenate(neurons), whole.last_neuron_spikes[1])
    np.testing.assert_array_equal(split.weights, whole.weights)


def test_windows_off_the_step_grid_keep_exact_time_and_bounds():
    """Windows of any length (here ticks of a 25 kHz board, not multiples of dt): device
    time is the exact sum, each window holds exactly the spikes in its span, and the spikes
    equal those of one window when no pulse falls into a step two windows share."""
    pulses = _pulses(0.3, 4, 0.5, 27)                    # on the step grid
    whole = _culture(seed=5)
    w = whole.record(2.2, pulses)
    split = _culture(seed=5)
    rng = np.random.default_rng(0)
    times, neurons, detected, elecs, start = [], [], [], [], 0.0
    while start < 2.2 - 1e-12:
        length = min(int(rng.integers(1, 4000)) / 25000.0, 2.2 - start)     # 40 us .. 160 ms
        inside = [ScheduledPulse(max(0.0, p.t_s - start), p.electrodes, p.pulse) for p in pulses
                  if start - 1e-12 <= p.t_s < start + length - 1e-12]
        part = split.record(length, inside)
        assert part.start_s == pytest.approx(start, abs=1e-12)
        assert np.all((part.spikes.time_s >= start - 1e-12) & (part.spikes.time_s < start + length))
        times.append(split.last_neuron_spikes[0])
        neurons.append(split.last_neuron_spikes[1])
        detected.append(part.spikes.time_s)
        elecs.append(part.spikes.electrode)
        start += length
    assert split.time_s == pytest.approx(2.2)
    assert len(times) > 20
    np.testing.assert_array_equal(np.concatenate(times), whole.last_neuron_spikes[0])
    np.testing.assert_array_equal(np.concatenate(neurons), whole.last_neuron_spikes[1])
    np.testing.assert_allclose(np.concatenate(detected), w.spikes.time_s, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.concatenate(elecs), w.spikes.electrode)
    assert len(w.spikes) > 100


# -- spontaneous activity --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spontaneous():
    """Two simulated minutes of the default culture, recorded in 10 s windows."""
    c = _culture(seed=0)
    ts, es = [], []
    for _ in range(12):
        w = c.record(10.0, [])
        ts.append(w.spikes.time_s)
        es.append(w.spikes.electrode)
    return c, np.concatenate(ts), np.concatenate(es)


def test_spontaneous_network_bursts_match_dense_cultures(spontaneous):
    c, t, e = spontaneous
    b = detect_bursts(t, e, 120.0)
    s = b.summary()
    assert BURSTS_PER_MIN[0] <= s["bursts_per_min"] <= BURSTS_PER_MIN[1], s
    assert MEDIAN_BURST_S[0] <= s["median_duration_s"] <= MEDIAN_BURST_S[1], s
    assert b.durations_s.max() < 3.0                       # depression ends every burst
    assert s["fraction_spikes_in_bursts"] > 0.3           # bursts dominate, as in Wagenaar's cultures
    assert s["mean_electrodes_per_burst"] > 30             # network-wide, not local
    # bursts stand out: the array-wide rate in bursts is far above the median between them
    _, asdr = array_wide_rate(t, 120.0, 0.1)
    assert asdr.max() > 20 * max(np.median(asdr), 1.0)


def test_without_depression_activity_does_not_end_in_bursts():
    rates = {}
    for tau in (0.0, 5000.0):
        c = _culture(seed=0, std_tau_rec_ms=tau)
        c.record(3.0, _pulses(0.1, 1, 1.0, 27))           # a pulse ignites activity in both
        n = c.last_neuron_spikes[1]
        late = c.last_neuron_spikes[0] > 1.5
        rates[tau] = np.count_nonzero(late & c.excitatory[n]) / c.excitatory.sum() / 1.5
    assert rates[0.0] > 20.0 and rates[5000.0] < 5.0, rates


# -- recording -----------------------------------------------------------------------------------
def test_unusable_electrodes_never_record_and_detections_come_from_nearby_neurons():
    layout = ElectrodeLayout(unusable=(0, 7, 15, 56, 63, 20, 27, 36))
    c = InSilicoCulture({"seed": 1}, layout=layout)
    c.open()
    w = c.record(8.0, _pulses(0.5, 5, 1.0, 28))
    nt, nn = c.last_neuron_spikes
    assert not np.isin(w.spikes.electrode, list(layout.unusable)).any()
    # not vacuous: neurons right next to the unusable electrodes did fire
    pos = layout.positions_um()
    near_unusable = np.hypot(*(c.positions_um[:, None, :] - pos[list(layout.unusable)][None]).transpose(2, 0, 1))
    close = (near_unusable < 40).any(axis=1)
    assert close.sum() > 5 and np.isin(nn, np.flatnonzero(close)).any()
    # every usable electrode that has a neuron within 40 um detected something
    usable = layout.usable_indices
    covered = [e for e in usable if (np.hypot(*(c.positions_um - pos[e]).T) < 40).any()]
    assert set(covered) <= set(np.unique(w.spikes.electrode))
    # a detection at (t, e) is a spike, at that sample, of a neuron within detect_max_um of e
    fs = c.params.sample_rate_hz
    sample = np.floor(nt * fs).astype(np.int64)                 # the sample a spike falls in
    dist = np.hypot(*(c.positions_um[nn][:, None, :] - pos[None]).transpose(2, 0, 1))   # (spikes, electrodes)
    ok = {(s, el) for s, row in zip(sample, dist) for el in np.flatnonzero(row <= c.params.detect_max_um)}
    det = zip(np.round(w.spikes.time_s * fs).astype(np.int64), w.spikes.electrode)
    assert all((s, int(el)) in ok for s, el in det)
    assert np.allclose(w.spikes.time_s * fs, np.round(w.spikes.time_s * fs))   # on the 25 kHz grid
    assert np.all(np.diff(w.spikes.time_s) >= 0)


# -- stimulation ---------------------------------------------------------------------------------
def test_pulses_evoke_responses_near_the_stimulated_electrode():
    el = 27
    c = _culture(seed=0)
    c.record(3.0, [])
    pulses = _pulses(0.5, 30, 1.0, el)
    w = c.record(30.5, pulses)
    t, e = w.spikes.time_s, w.spikes.electrode
    onsets = w.start_s + np.array([p.t_s for p in pulses])
    pos = c.layout.positions_um()
    dist = np.hypot(*(pos - pos[el]).T)
    near = (dist > 0) & (dist <= 283) & c.layout.usable           # the 8 neighbours
    far = (dist >= 800) & c.layout.usable

    def per_electrode(lo, hi, mask):
        hits = sum(np.count_nonzero((t >= p + lo) & (t < p + hi) & mask[e]) for p in onsets)
        return hits / len(onsets) / mask.sum()

    evoked_near, evoked_far = per_electrode(0.005, 0.05, near), per_electrode(0.005, 0.05, far)
    baseline_near = per_electrode(-0.045, 0.0, near)
    assert evoked_near > 3 * baseline_near, (evoked_near, baseline_near)
    assert evoked_near > evoked_far, (evoked_near, evoked_far)
    # the early (direct and monosynaptic) response is local: 5-20 ms
    assert per_electrode(0.005, 0.02, near) > 3 * per_electrode(0.005, 0.02, far)
    # direct activation falls with distance (Stoney's I = I0 + K r^2) and grows with charge
    dn = np.hypot(*(c.positions_um - pos[el]).T)

    def fired(culture, lo_um, hi_um):
        """Fraction of the neurons lo..hi um from the electrode that fire within 4 ms of a pulse."""
        nt, nn = culture.last_neuron_spikes
        ring = (dn >= lo_um) & (dn < hi_um)
        distinct = sum(len(np.unique(nn[(nt >= p) & (nt < p + 0.004) & ring[nn]])) for p in onsets)
        return distinct / len(onsets) / ring.sum()

    assert fired(c, 0, 80) > 0.7 and fired(c, 200, 400) < 0.05
    # more charge, a wider disc: Q_th(D) = q0 + K D^2 reaches ~110 um at 1 nC, ~190 um at 3 nC
    reach = {}
    for amplitude in (5.0, 15.0):
        other = _culture(seed=0)
        other.record(3.0, [])
        other.record(30.5, [ScheduledPulse(p.t_s, p.electrodes, BiphasicPulse(amplitude, 200.0)) for p in pulses])
        reach[amplitude] = fired(other, 0, 300)
    assert reach[15.0] > 2 * reach[5.0], reach


# -- plasticity ----------------------------------------------------------------------------------
def test_stdp_changes_excitatory_weights_only_when_on():
    pulses = _pulses(0.2, 10, 0.5, 27)
    off = _culture(seed=4)
    off.record(5.0, pulses)
    np.testing.assert_array_equal(off.weights, off.initial_weights)
    on = _culture(seed=4, stdp=True)
    on.record(5.0, pulses)
    changed = on.weights != on.initial_weights
    assert changed.sum() > 1000
    assert not changed[~on.plastic].any()                           # only E->E synapses learn
    assert on.weights[on.plastic].min() >= 0.0 and on.weights[on.plastic].max() <= on.params.stdp_w_max
    # potentiation and depression both happen
    diff = on.weights - on.initial_weights
    assert (diff > 0).sum() > 100 and (diff < 0).sum() > 100
    on.reset()                                                     # reset undoes learning
    np.testing.assert_array_equal(on.weights, on.initial_weights)


# -- the burst detector --------------------------------------------------------------------------
def test_detect_bursts_finds_planted_bursts():
    rng = np.random.default_rng(0)
    T, n_el = 60.0, 20
    # sparse background: 0.5 Hz per electrode
    bg_t = rng.uniform(0, T, int(0.5 * T * n_el))
    bg_e = rng.integers(0, n_el, len(bg_t))
    # five bursts of 0.3 s on 12 electrodes, 15 spikes each
    onsets = np.array([5.0, 17.0, 26.5, 40.0, 52.0])
    bt, be = [], []
    for o in onsets:
        for el in range(12):
            bt.append(np.sort(rng.uniform(o, o + 0.3, 15)))
            be.append(np.full(15, el))
    t = np.concatenate([bg_t, *bt])
    e = np.concatenate([bg_e, *be])
    b = detect_bursts(t, e, T)
    assert len(b) == 5
    # each burst covers its planted 0.3 s; a background spike up to 100 ms (the ISI cap)
    # before or after may join a burstlet on that electrode
    assert np.all((b.start_s >= onsets - 0.1) & (b.start_s <= onsets + 0.05))
    assert np.all((b.end_s >= onsets + 0.25) & (b.end_s <= onsets + 0.45))
    s = b.summary()
    assert s["bursts_per_min"] == pytest.approx(5.0)
    np.testing.assert_allclose(b.ibi_s, np.diff(onsets), atol=0.1)
    # 900 of 1500 spikes were planted in bursts, plus the ~2 % of background inside them
    assert 0.6 <= s["fraction_spikes_in_bursts"] < 0.63
    assert np.all(b.n_electrodes >= 12)
    # background alone has no network burst; too few electrodes is not a network burst
    assert len(detect_bursts(bg_t, bg_e, T)) == 0
    assert len(detect_bursts(t, e, T, min_electrodes=13)) == 0
    with pytest.raises(ValueError, match="recording_s"):
        detect_bursts(t, e, 0.0)
