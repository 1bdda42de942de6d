"""The MEA driver's own logic: encoder, safety guard, binning, with a spy back end.

The back end here records what it is asked to deliver and returns spikes we choose, so
the tests can prove what reaches a device (nothing, for an unsafe request) and how
detected spikes become features.
"""

from __future__ import annotations

import numpy as np
import pytest

from labbench.drivers.mea.backend import MEABackend, SpikeEvents, Window
from labbench.drivers.mea.driver import MEA
from labbench.drivers.mea.encoder import RateEncoder
from labbench.drivers.mea.layout import ElectrodeLayout
from labbench.drivers.mea.safety import SafetyGuard, SafetyLimits, UnsafeStimulation
from labbench.drivers.mea.stimulation import BiphasicPulse, ScheduledPulse, Stimulus


class SpyBackend(MEABackend):
    """Delivers nothing; remembers every request; returns the spikes it is given."""

    def __init__(self, layout: ElectrodeLayout, spikes: SpikeEvents | None = None) -> None:
        self.layout = layout
        self.requests: list[tuple[float, list[ScheduledPulse]]] = []
        self.spikes = spikes or SpikeEvents()
        self.now = 0.0
        self.stopped = 0
        self.closed = 0

    def open(self) -> dict:
        return {"name": "spy"}

    def record(self, duration_s, pulses):
        self.requests.append((duration_s, list(pulses)))
        start = self.now
        self.now += duration_s
        keep = (self.spikes.time_s >= start) & (self.spikes.time_s < self.now)
        return Window(SpikeEvents(self.spikes.time_s[keep], self.spikes.electrode[keep]), start, duration_s)

    def stop_stimulation(self):
        self.stopped += 1

    def close(self):
        self.closed += 1

    @property
    def time_s(self) -> float:
        return self.now


def _mea(spikes=None, **params) -> tuple[MEA, SpyBackend]:
    dev = MEA(**params)
    spy = SpyBackend(dev.layout, spikes)
    dev._make_backend = lambda: spy      # the driver's own code runs; only the device is a spy
    dev.open()
    return dev, spy


OK = BiphasicPulse(10.0, 200.0)          # 2 nC per phase


@pytest.mark.parametrize("case, pulses, message", [
    ("over-charge", [ScheduledPulse(0.0, (1,), BiphasicPulse(20.0, 200.0))], "4 nC per phase exceeds"),
    ("over-amplitude", [ScheduledPulse(0.0, (1,), BiphasicPulse(60.0, 40.0))], "exceeds the limit 50"),
    ("unbalanced", [ScheduledPulse(0.0, (1,), BiphasicPulse(10.0, 200.0, amplitude2_ua=5.0))],
     "not charge-balanced"),
    ("too fast", [ScheduledPulse(0.0, (1,), OK), ScheduledPulse(0.004, (1,), OK)], "faster than the limit"),
    ("forbidden electrode", [ScheduledPulse(0.0, (9,), OK)], "electrode 9 is forbidden"),
    ("unusable electrode", [ScheduledPulse(0.0, (0,), OK)], "electrode 0 is forbidden"),
    ("no such electrode", [ScheduledPulse(0.0, (64,), OK)], "electrode 64 does not exist"),
    ("negative width", [ScheduledPulse(0.0, (1,), BiphasicPulse(10.0, -200.0))], "must be a positive width"),
    ("zero amplitude", [ScheduledPulse(0.0, (1,), BiphasicPulse(0.0, 200.0))], "give the magnitude"),
    ("too narrow", [ScheduledPulse(0.0, (1,), BiphasicPulse(10.0, 10.0))], "below the minimum"),
    ("too wide", [ScheduledPulse(0.0, (1,), BiphasicPulse(1.0, 900.0))], "exceeds the limit 500"),
    ("negative time", [ScheduledPulse(-0.1, (1,), OK)], "not within the window"),
])
def test_every_unsafe_request_is_refused_before_the_device_sees_it(case, pulses, message):
    dev, spy = _mea(forbidden=[9])
    dev.encoder = type("E", (), {"encode": staticmethod(lambda u: pulses)})()   # a protocol asking for it
    with pytest.raises(UnsafeStimulation, match=message):
        dev.run(np.zeros((5, 1)))
    assert spy.requests == []              # nothing was sent
    dev.close()
    assert spy.stopped == 1 and spy.closed == 1


def test_the_rate_limit_holds_across_blocks():
    guard = SafetyGuard(SafetyLimits(max_rate_hz=100.0), 64)
    guard.check([ScheduledPulse(0.095, (3,), OK)], window_start_s=0.0)
    with pytest.raises(UnsafeStimulation, match="faster than the limit of 100"):
        guard.check([ScheduledPulse(0.0, (3,), OK)], window_start_s=0.1)    # 5 ms after, in the next block
    guard.check([ScheduledPulse(0.005, (3,), OK)], window_start_s=0.1)      # 10 ms after: fine


def test_an_unsafe_encoder_is_refused_when_the_driver_is_built():
    with pytest.raises(UnsafeStimulation, match="exceeds the limit 3"):
        MEA(amplitude_ua=20.0, phase_us=200.0)
    with pytest.raises(UnsafeStimulation, match="faster than the limit"):
        MEA(row_ms=5.0, max_pulses=4)          # 4 pulses in 5 ms on the same electrodes
    with pytest.raises(ValueError, match="only 59 usable"):
        MEA(n_inputs=20, group_size=4)


def test_encoder_maps_values_to_pulse_counts_on_disjoint_groups():
    layout = ElectrodeLayout()
    enc = RateEncoder(layout, 3, 0.02, OK, group_size=4, max_pulses=4, low=-1.0, high=1.0, seed=5)
    groups = enc.groups
    flat = [e for g in groups for e in g]
    assert len(flat) == len(set(flat)) == 12 and all(layout.usable[e] for e in flat)
    u = np.array([[-1.0, 0.0, 1.0], [2.0, -5.0, 0.5]])
    assert enc.counts(u).tolist() == [[0, 2, 4], [4, 0, 3]]
    pulses = enc.encode(u)
    assert len(pulses) == 2 + 4 + 4 + 3
    for p in pulses:
        assert 0 <= p.t_s < 0.04
    row1_ch2 = sorted(p.t_s for p in pulses if p.electrodes == groups[2] and p.t_s >= 0.02)
    np.testing.assert_allclose(row1_ch2, 0.02 + np.arange(3) * 0.02 / 3)
    assert enc.groups == RateEncoder(layout, 3, 0.02, OK, group_size=4, max_pulses=4, seed=5).groups


def test_spikes_are_binned_per_row_and_electrode_and_logged():
    t = np.array([0.001, 0.019, 0.0205, 0.041, 0.5])
    e = np.array([1, 1, 2, 3, 4], dtype=np.int32)
    dev, spy = _mea(SpikeEvents(t, e), row_ms=20.0)
    block = dev.run(np.array([[1.0], [0.0], [0.5]]))
    f = block.features
    assert f.shape == (3, 64)
    assert f[0, 1] == 2 and f[1, 2] == 1 and f[2, 3] == 1 and f.sum() == 4     # 0.5 s is not in this window
    assert block.raw["spikes"]["time_s"].tolist() == [0.001, 0.019, 0.0205, 0.041]
    # stimulation log: 2 pulses in row 0 and 1 in row 2 (max_pulses 2), on the 4 electrodes of the group
    group = dev.encoder.groups[0]
    assert sorted(set(block.raw["stim"]["electrode"].tolist())) == sorted(group)
    np.testing.assert_allclose(sorted(set(block.raw["stim"]["time_s"].tolist())), [0.0, 0.01, 0.04])
    (duration, pulses), = spy.requests
    assert duration == pytest.approx(0.06) and len(pulses) == 3
    # the next block continues in device time
    block = dev.run(np.zeros((25, 1)))
    assert block.features[:, 4].sum() == 1 and block.features[25 - 1 - 0, 4] == 0
    assert np.flatnonzero(block.features[:, 4]).tolist() == [int((0.5 - 0.06) / 0.02)]


def test_rates_are_an_exponential_trace_in_hertz():
    t = np.array([0.0])
    dev, _ = _mea(SpikeEvents(t, np.array([5], dtype=np.int32)), row_ms=10.0, features="rates", tau_ms=50.0)
    f = dev.run(np.zeros((20, 1))).features[:, 5]
    a = np.exp(-10.0 / 50.0)
    np.testing.assert_allclose(f[0], (1 - a) * 100.0, rtol=1e-6)       # 1 spike in 10 ms = 100 Hz, filtered
    np.testing.assert_allclose(f[1:], f[0] * a ** np.arange(1, 20), rtol=1e-5)


def test_stimulus_trains_expand_to_scheduled_pulses():
    s = Stimulus((3, 4), OK, count=3, rate_hz=50.0, offset_s=0.01)
    assert [p.t_s for p in s.schedule()] == pytest.approx([0.01, 0.03, 0.05])
    with pytest.raises(ValueError, match="needs rate_hz"):
        Stimulus((3,), OK, count=2).schedule()


def test_serial_board_options_are_checked_with_the_protocol():
    from labbench.spec.protocol import ProtocolError, from_dict

    proto = {"protocol": {"name": "t"}, "task": {"name": "xor"}, "run": {"washout": 10, "train": 100},
             "device": {"driver": "mea", "params": {"backend": "serial", "url": "/dev/ttyX",
                                                    "serial": {"mode": "streaming", "heartbeat_timout_s": 2}}}}
    with pytest.raises(ProtocolError, match=r"device.params.serial: .*unknown serial board option\(s\) "
                                            r"heartbeat_timout_s \(known: mode, .*heartbeat_timeout_s"):
        from_dict(proto)
    proto["device"]["params"]["serial"] = {"mode": "streaming", "heartbeat_timeout_s": 2.0}
    assert from_dict(proto).device.params["serial"]["heartbeat_timeout_s"] == 2.0
