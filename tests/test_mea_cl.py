"""The Cortical Labs CL1 back end (drivers/mea/cl_backend.py).

Two kinds of test:

- here, under the project's Python, without ``cl``: the pure mapping of labbench pulses
  onto cl's StimDesign / BurstDesign / frames, its refusals, the error when ``cl`` is
  missing, and the window logic of :class:`ClBackend` against a small stand-in for the
  ``cl`` module;
- against Cortical Labs' cl-sdk 1.0 simulator, which needs Python >= 3.12: ``.ci/cl_venv.sh``
  makes ``.venv-cl`` and ``tests/cl_check.py`` runs there as a subprocess (or under
  ``$LABBENCH_CL_PYTHON``); skipped, saying why, when no such interpreter exists.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from labbench.drivers.mea import cl_backend as cb
from labbench.drivers.mea.safety import SafetyGuard, UnsafeStimulation
from labbench.drivers.mea.stimulation import BiphasicPulse, ScheduledPulse, Stimulus

ROOT = Path(__file__).resolve().parents[1]
FPS = 25_000
P = BiphasicPulse(2.0, 160)


# ---------------------------------------------------------------------------------------------
# electrodes <-> channels
# ---------------------------------------------------------------------------------------------

def test_channel_map_is_the_grid_transpose():
    m = cb.cl_channel_of_electrode()
    assert sorted(m.tolist()) == list(range(64))
    assert m[1] == 8 and m[8] == 1 and m[9] == 9            # B1 is cl channel 8 (row 0, column 1)
    assert np.array_equal(m[m], np.arange(64))              # its own inverse
    for e in range(64):                                     # same grid position on both sides
        row, col = divmod(e, 8)
        assert m[e] == col * 8 + row


def test_cl_layout_marks_ground_and_reference_unusable():
    lay = cb.cl_layout()
    assert (lay.rows, lay.cols) == (8, 8)
    assert lay.unusable == (0, 7, 32, 56, 63)               # channels 0, 56, 4 (reference), 7, 63
    assert lay.usable.sum() == 59


def test_channel_map_must_be_a_permutation():
    with pytest.raises(ValueError, match="permutation"):
        cb.cl_layout([0] * 64)
    with pytest.raises(ValueError, match="permutation"):
        cb.ClBackend(channel_of_electrode=list(range(60)))


def test_cl_safety_limits_are_no_looser_than_cl():
    lim = cb.cl_safety_limits()
    assert lim.max_amplitude_ua == 3.0 and lim.max_charge_nc == 3.0 and lim.max_rate_hz == 200.0
    guard = SafetyGuard(lim, 64, cb.cl_layout().unusable)
    with pytest.raises(UnsafeStimulation, match="amplitude_ua"):
        guard.check([ScheduledPulse(0.0, (9,), BiphasicPulse(4.0, 100))], 0.0)
    assert cb.cl_safety_limits(max_rate_hz=50).max_rate_hz == 50


# ---------------------------------------------------------------------------------------------
# a pulse -> StimDesign
# ---------------------------------------------------------------------------------------------

def test_stim_design_cathodic_and_anodic_first():
    assert cb.stim_design_for(P).args == (160, -2.0, 160, 2.0)
    assert cb.stim_design_for(BiphasicPulse(1.5, 200, cathodic_first=False)).args == (200, 1.5, 200, -1.5)
    # asymmetric but exact: each phase keeps its own width and current
    d = cb.stim_design_for(BiphasicPulse(3.0, 100, amplitude2_ua=1.5, phase2_us=200))
    assert d.phases == ((100, -3.0), (200, 1.5)) and d.duration_us == 300


@pytest.mark.parametrize("pulse, field", [
    (BiphasicPulse(1.0, 150), "phase_us"),                                   # not a multiple of 20 us
    (BiphasicPulse(1.0, 160, phase2_us=170), "phase2_us"),
    (BiphasicPulse(1.0, 10), "phase_us"),                                    # below one 20 us bin
    (BiphasicPulse(3.5, 100), "amplitude_ua"),                               # above cl's 3 uA
    (BiphasicPulse(1.0, 100, amplitude2_ua=3.2), "amplitude2_ua"),
    (BiphasicPulse(0.0, 100), "amplitude_ua"),
    (BiphasicPulse(-1.0, 100), "amplitude_ua"),
    (BiphasicPulse(float("nan"), 100), "amplitude_ua"),
    (BiphasicPulse(1.0, 100, interphase_us=40), "interphase_us"),            # cl has no gap
    (BiphasicPulse(3.0, 1020), "nC"),                                        # 3.06 nC > 3 nC
])
def test_stim_design_refuses_what_cl_cannot_express(pulse, field):
    with pytest.raises(ValueError, match=field):
        cb.stim_design_for(pulse)


def test_limits_are_configurable():
    lim = cb.ClStimLimits(max_current_ua=11.0)
    assert cb.stim_design_for(BiphasicPulse(10.0, 200), lim).args == (200, -10.0, 200, 10.0)
    # the charge limit still holds: 10 uA x 400 us = 4 nC
    with pytest.raises(ValueError, match="nC"):
        cb.stim_design_for(BiphasicPulse(10.0, 400), lim)
    fake_cl = SimpleNamespace(StimDesign=SimpleNamespace(_CURRENT_LIMIT_UA=11.0, _DURATION_BIN_US=20,
                                                         _PHASE_CHARGE_INJECTION_LIMIT_PC=3000.0),
                              BurstDesign=SimpleNamespace(_BURST_FREQUENCY_LIMIT_HZ=200))
    assert cb.ClStimLimits.from_cl(fake_cl).max_current_ua == 11.0
    assert cb.ClStimLimits.from_cl(SimpleNamespace()) == cb.ClStimLimits()


# ---------------------------------------------------------------------------------------------
# a window's pulses -> commands
# ---------------------------------------------------------------------------------------------

def plan(pulses, n_frames=25_000, **kw):
    return cb.plan_stimulation(pulses, n_frames, **kw)


def test_single_pulses_map_electrodes_to_channels_and_times_to_frames():
    pl = plan([ScheduledPulse(0.010, (9,), P), ScheduledPulse(0.020, (1, 2), P)])
    assert [(c.frame, c.channels, c.burst_hz) for c in pl.commands] == [(250, (9,), None), (500, (8, 16), None)]
    assert pl.expected == [(250, 9), (500, 8), (500, 16)]
    assert pl.rounding_max_s == 0.0 and pl.n_bursts == 0 and pl.frames() == [250, 500]


def test_off_grid_times_are_rounded_to_the_frame_or_refused_when_strict():
    pl = plan([ScheduledPulse(0.3333, (9,), P)])          # 8332.5 frames
    assert pl.commands[0].frame == 8333
    assert math.isclose(pl.rounding_max_s, 20e-6, rel_tol=1e-6)
    with pytest.raises(ValueError, match="t_s"):
        plan([ScheduledPulse(0.3333, (9,), P)], strict_timing=True)
    plan([ScheduledPulse(0.25, (9,), P)], strict_timing=True)


def test_a_periodic_train_becomes_one_burst():
    pulses = Stimulus((20, 21), P, count=10, rate_hz=100.0, offset_s=0.1).schedule()
    pl = plan(pulses)
    assert len(pl.commands) == 1
    c = pl.commands[0]
    assert (c.frame, c.burst_count, c.burst_hz, c.period_frames) == (2500, 10, 100.0, 250)
    assert c.channels == (34, 42)                           # electrodes 20, 21 -> row 2, columns 4, 5
    assert pl.expected[:2] == [(2500, 34), (2500, 42)] and len(pl.expected) == 20
    # cl's BurstDesign rounds its interval to 20 us: 100 Hz comes out as exactly 250 frames
    assert cb._cl_interval_us(c.burst_hz) == 10_000
    assert pl.busy_until[34] == 2500 + 10 * 250             # held one interval past the last pulse
    # without bursts: ten commands, the same stims
    pl2 = plan(pulses, use_bursts=False)
    assert len(pl2.commands) == 10 and pl2.expected == pl.expected


def test_trains_that_cl_cannot_send_exactly_go_pulse_by_pulse():
    # 30 Hz: 833.33 frames; rounded, the spacing alternates 833/834: only runs of equal spacing
    # can be bursts, and the frames sent are the rounded ones either way
    pl = plan(Stimulus((9,), P, count=6, rate_hz=30.0).schedule())
    assert [f for f, _ in pl.expected] == [0, 833, 1667, 2500, 3333, 4167]
    assert len(pl.commands) < 6 and all(len({b - a for a, b in zip(c.pulse_frames(), c.pulse_frames()[1:])}) <= 1
                                        for c in pl.commands)
    assert sorted(f for c in pl.commands for f in c.pulse_frames()) == [0, 833, 1667, 2500, 3333, 4167]
    # another pulse on the same electrode inside the train's span
    pulses = Stimulus((9,), P, count=4, rate_hz=50.0).schedule() + [ScheduledPulse(0.03, (9,), BiphasicPulse(1, 100))]
    pl = plan(pulses)
    assert [f for f, _ in pl.expected] == [0, 500, 750, 1000, 1500]
    assert [(c.frame, c.burst_count) for c in pl.commands] == [(0, 1), (500, 1), (750, 1), (1000, 2)]
    # a train running to the window's end: the channel would be held past it; all but its last pulse
    pl = plan(Stimulus((9,), P, count=5, rate_hz=100.0).schedule(), n_frames=1100)
    assert [(c.burst_count, c.frame) for c in pl.commands] == [(4, 0), (1, 1000)]
    # a single pulse is never a burst
    assert plan([ScheduledPulse(0.0, (9,), P)]).n_bursts == 0


def test_busy_channels_are_refused_not_delayed():
    # cl holds a channel 5 ms after a pulse (200 Hz); a pulse 2 ms later would go late
    with pytest.raises(ValueError, match="busy"):
        plan([ScheduledPulse(0.010, (9,), P), ScheduledPulse(0.012, (9,), P)])
    plan([ScheduledPulse(0.010, (9,), P), ScheduledPulse(0.015, (9,), P)])          # exactly 5 ms: fine
    plan([ScheduledPulse(0.010, (9,), P), ScheduledPulse(0.012, (10,), P)])         # another electrode: fine
    # held from the previous window (free_from is window-relative, may be negative)
    with pytest.raises(ValueError, match="previous window"):
        plan([ScheduledPulse(0.0, (9,), P)], free_from={9: 50})
    plan([ScheduledPulse(0.0, (9,), P)], free_from={9: 0})


@pytest.mark.parametrize("pulse, match", [
    (ScheduledPulse(0.01, (0,), P), "electrode 0"),          # grounded corner
    (ScheduledPulse(0.01, (56,), P), "electrode 56"),
    (ScheduledPulse(0.01, (32,), P), "electrode 32"),         # cl's reference channel 4
    (ScheduledPulse(0.01, (64,), P), "does not exist"),
    (ScheduledPulse(0.01, (), P), "empty"),
    (ScheduledPulse(-0.01, (9,), P), "t_s"),
    (ScheduledPulse(1.0, (9,), P), "window's end"),
    (ScheduledPulse(0.01, (9,), BiphasicPulse(5.0, 100)), "amplitude_ua"),
])
def test_plan_refusals_name_the_problem(pulse, match):
    with pytest.raises(ValueError, match=match):
        plan([pulse])


def test_ground_and_reference_stay_forbidden_with_any_layout():
    with pytest.raises(ValueError, match="electrode 32"):
        plan([ScheduledPulse(0.01, (32,), P)], unusable_electrodes=())
    with pytest.raises(ValueError, match="electrode 15"):
        plan([ScheduledPulse(0.01, (15,), P)], unusable_electrodes=(15,))


# ---------------------------------------------------------------------------------------------
# without cl
# ---------------------------------------------------------------------------------------------

def test_module_imports_without_cl():
    code = ("import sys; sys.modules['cl'] = None; sys.path.insert(0, %r); "
            "import drivers.mea.cl_backend as m; assert 'cl' not in [k for k, v in sys.modules.items() if v]; "
            "print(m.ClBackend.__name__)" % str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ClBackend"


def test_clear_error_when_cl_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cl", None)            # `import cl` raises ImportError
    be = cb.ClBackend()
    with pytest.raises(cb.ClUnavailableError) as err:
        be.open()
    msg = str(err.value)
    assert "pip install 'labbench[cl]'" in msg and "3.12" in msg and "CC BY-NC" in msg
    assert isinstance(err.value, ImportError)
    assert not be.is_open
    be.stop_stimulation()                                    # always safe
    be.close()
    be.close()
    with pytest.raises(RuntimeError, match="open"):
        be.record(0.1, [])


def test_an_api_without_what_the_back_end_needs_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "cl", types.ModuleType("cl"))
    with pytest.raises(cb.ClUnavailableError, match="lacks"):
        cb.import_cl()


def test_plan_validates_before_open():
    be = cb.ClBackend()
    n, pl = be.plan(0.5, Stimulus((20, 21), P, count=10, rate_hz=100.0, offset_s=0.1).schedule())
    assert n == 12_500 and pl.n_bursts == 1
    with pytest.raises(ValueError, match="duration_s"):
        be.plan(0.0, [])
    with pytest.raises(ValueError, match="grid"):
        cb.ClBackend(layout=cb.ElectrodeLayout(rows=4, cols=16, unusable=()))


# ---------------------------------------------------------------------------------------------
# ClBackend's windows against a stand-in for the cl module
# ---------------------------------------------------------------------------------------------

class FakeNeurons:
    """Just enough of cl.Neurons: a clock that moves when read (like cl-sdk's accelerated
    simulator) or when a test moves it (like a real device), spikes on channel 8 every
    1000 frames and on grounded channel 0 every 5000, and stim plans that deliver at
    ``at_timestamp`` + 2 frames (cl's 80 us lead)."""

    def __init__(self):
        self.now = 0
        self.queued: list[tuple[int, int]] = []
        self.runs: list[tuple[int, int]] = []
        self.interrupts = 0
        self.closed = False

    def timestamp(self):
        return self.now

    def get_frames_per_second(self):
        return FPS

    def get_channel_count(self):
        return 64

    def get_frame_duration_us(self):
        return 40.0

    def create_stim_plan(self):
        return FakePlan(self)

    def interrupt(self, channel_set):
        self.interrupts += 1
        self.queued = [q for q in self.queued if q[0] < self.now]

    def record(self, **kw):
        return SimpleNamespace(file={"path": "x.h5"}, stop=lambda: None)

    def read(self, count, from_ts, analysis=False):
        assert analysis
        to = from_ts + count
        self.now = max(self.now, to)
        spikes = [SimpleNamespace(timestamp=t, channel=8) for t in range(-(-from_ts // 1000) * 1000, to, 1000)]
        spikes += [SimpleNamespace(timestamp=t, channel=0) for t in range(-(-from_ts // 5000) * 5000, to, 5000)]
        stims = [SimpleNamespace(timestamp=t, channel=c) for t, c in self.queued if from_ts <= t < to]
        return SimpleNamespace(spikes=sorted(spikes, key=lambda s: s.timestamp), stims=stims)


class FakePlan:
    def __init__(self, neurons):
        self.n, self.ops = neurons, []

    def stim(self, channel_set, design, burst=None):
        self.ops.append((channel_set, design, burst))

    def run(self, at_timestamp):
        assert at_timestamp >= self.n.now, "queued late"
        self.n.runs.append((at_timestamp, self.n.now))
        for cs, design, burst in self.ops:
            count, period = (burst.count, round(FPS / burst.hz)) if burst else (1, 0)
            self.n.queued += [(at_timestamp + 2 + k * period, c) for k in range(count) for c in cs.channels]


@pytest.fixture
def fake_cl(monkeypatch):
    neurons = FakeNeurons()

    class Ctx:
        def __enter__(self):
            return neurons

        def __exit__(self, *exc):
            neurons.closed = True

    mod = types.ModuleType("fake_cl")
    mod.open = lambda: Ctx()
    mod.is_simulator = lambda: True
    mod.get_system_attributes = lambda: {"system_id": "cl1-test-000", "hostname": "test"}
    mod.ChannelSet = lambda *chs: SimpleNamespace(channels=tuple(chs))
    mod.StimDesign = lambda *args: SimpleNamespace(args=args)
    mod.BurstDesign = lambda count, hz: SimpleNamespace(count=count, hz=hz)
    monkeypatch.setitem(sys.modules, "fake_cl", mod)
    monkeypatch.setenv("LABBENCH_CL_MODULE", "fake_cl")   # the cl module is chosen outside any protocol
    for key in ("CL_SDK_ACCELERATED_TIME", "CL_SDK_VISUALISATION", "CL_SDK_RANDOM_SEED"):
        monkeypatch.setenv(key, "unset")                     # restored (removed) after the test
    mod.neurons = neurons
    return mod


def test_open_reports_provenance(fake_cl):
    be = cb.ClBackend(accelerated_time=True, seed=5)
    info = be.open()
    assert info["device"] == "cl1-test-000" and info["channels"] == 64 and info["frames_per_second"] == FPS
    assert info["simulator"] and info["accelerated_time"] and info["schedule_margin_s"] == 0.0
    assert info["layout"]["unusable"] == [0, 7, 32, 56, 63] and info["channel_of_electrode"][1] == 8
    assert os.environ["CL_SDK_VISUALISATION"] == "0" and os.environ["CL_SDK_RANDOM_SEED"] == "5"
    assert be.open() == info                                 # idempotent
    be.close()
    assert fake_cl.neurons.closed and fake_cl.neurons.interrupts == 2          # at open and at close


def test_windows_map_spikes_and_stay_contiguous(fake_cl):
    be = cb.ClBackend(accelerated_time=True)
    be.open()
    w1 = be.record(0.1, [])
    w2 = be.record(0.1, [])
    assert (w1.start_s, w1.duration_s, w2.start_s) == (0.0, 0.1, 0.1) and not w2.gaps
    # channel 8 -> electrode 1, every 1000 frames; grounded channel 0 dropped
    assert w1.spikes.electrode.tolist() == [1, 1, 1] and w1.spikes.time_s.tolist() == [0.0, 0.04, 0.08]
    assert w1.info["spikes_dropped_unusable"] == 1
    assert w1.spikes.time_s.dtype == np.float64 and w1.spikes.electrode.dtype == np.int32
    assert be.time_s == pytest.approx(0.2) and be.next_start_s == pytest.approx(0.2)
    be.close()


def test_stimulation_is_queued_at_exact_timestamps(fake_cl):
    be = cb.ClBackend(accelerated_time=True, chunk_s=0.05)
    be.open()
    be.record(0.1, [])
    pulses = [ScheduledPulse(0.010, (9,), P), *Stimulus((20,), P, count=5, rate_hz=100.0, offset_s=0.1).schedule()]
    w = be.record(0.2, pulses)
    n = fake_cl.neurons
    assert [at for at, _ in n.runs] == [2500 + 250 - 2, 2500 + 2500 - 2]        # one plan per start frame
    assert all(at >= now for at, now in n.runs)                                # never late
    assert w.info["stims_requested"] == w.info["stims_delivered"] == 6
    assert w.info["stims_missing"] == w.info["stims_unexpected"] == w.info["stims_late"] == 0
    assert w.info["bursts"] == 1 and w.info["stim_plans"] == 2 and w.info["chunks"] == 4
    assert not w.gaps and w.start_s == 0.1
    be.close()


def test_a_real_time_device_backfills_or_reports_a_gap(fake_cl):
    be = cb.ClBackend(schedule_margin_s=0.002)   # real-time: not accelerated
    be.open()
    n = fake_cl.neurons
    be.record(0.1, [])                                      # ends at frame 2500
    n.now += 500                                            # 20 ms of Python between windows
    w = be.record(0.1, [ScheduledPulse(0.05, (9,), P)])     # pulse far enough ahead: start where we left off
    assert w.start_s == pytest.approx(0.1) and not w.gaps and w.info["start_offset_s"] == pytest.approx(-0.02)
    assert w.info["stims_delivered"] == 1 and w.info["stims_missing"] == 0
    n.now += 500
    w = be.record(0.1, [ScheduledPulse(0.0, (10,), P)])     # pulse at once: must start after now + margin + lead
    start = 2500 * 2 + 500 + 50 + 2
    assert w.info["start_timestamp"] == start
    assert w.gaps == [pytest.approx((0.2, start / FPS))]
    assert w.info["stims_delivered"] == 1 and w.info["stims_missing"] == 0
    n.now += 200_000                                        # 8 s later: beyond the 4 s backfill
    w = be.record(0.1, [])
    assert w.gaps and w.gaps[0][1] == pytest.approx(w.start_s) and w.start_s == pytest.approx(n.now / FPS - 4.0)
    be.close()


def test_refused_windows_send_nothing(fake_cl):
    be = cb.ClBackend(accelerated_time=True)
    be.open()
    for bad in ([ScheduledPulse(0.01, (9,), BiphasicPulse(4.0, 100))],
                [ScheduledPulse(0.01, (0,), P)],
                [ScheduledPulse(0.01, (9,), P), ScheduledPulse(0.011, (9,), P)]):
        with pytest.raises(ValueError):
            be.record(0.1, bad)
    assert fake_cl.neurons.runs == [] and fake_cl.neurons.now == 0 and be.next_start_s == 0.0
    be.close()


def test_a_failing_read_stops_stimulation(fake_cl):
    be = cb.ClBackend(accelerated_time=True)
    be.open()

    def boom(*a, **k):
        raise TimeoutError("device went away")

    fake_cl.neurons.read = boom
    with pytest.raises(TimeoutError):
        be.record(0.1, [ScheduledPulse(0.05, (9,), P)])
    assert fake_cl.neurons.interrupts == 2                   # at open, then on the failure
    be.close()
    be.close()
    assert fake_cl.neurons.interrupts == 3 and fake_cl.neurons.closed


# ---------------------------------------------------------------------------------------------
# against cl-sdk 1.0's simulator (Python >= 3.12)
# ---------------------------------------------------------------------------------------------

def cl_python() -> str | None:
    explicit = os.environ.get("LABBENCH_CL_PYTHON")
    if explicit:
        return explicit
    venv = ROOT / ".venv-cl" / "bin" / "python"
    return str(venv) if venv.exists() else None


@pytest.fixture(scope="module")
def cl_summary(tmp_path_factory):
    py = cl_python()
    if py is None:
        reason = ("no Python >= 3.12 with cl-sdk 1.0: run .ci/cl_venv.sh (makes .venv-cl) or set "
                  "LABBENCH_CL_PYTHON")
        print(f"test_mea_cl: skipping the cl-sdk simulator tests: {reason}")
        pytest.skip(reason)
    assert os.path.exists(py), f"LABBENCH_CL_PYTHON={py} does not exist"
    work = tmp_path_factory.mktemp("cl")
    out_json = work / "cl_check.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    try:
        proc = subprocess.run([py, str(ROOT / "tests" / "cl_check.py"), "--json", str(out_json)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"tests/cl_check.py timed out after {e.timeout} s")
    assert out_json.exists(), f"cl_check.py wrote no summary (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                              f"{proc.stderr[-3000:]}"
    summary = json.loads(out_json.read_text())
    summary["_returncode"] = proc.returncode
    summary["_stderr"] = proc.stderr[-3000:]
    return summary


@pytest.mark.slow
def test_cl_sdk_simulator_passes_every_check(cl_summary):
    assert cl_summary["failures"] == [], json.dumps(cl_summary["failures"], indent=1) + cl_summary["_stderr"]
    assert cl_summary["ok"] and cl_summary["_returncode"] == 0
    assert cl_summary["cl_sdk"].startswith("1.")
    assert cl_summary["python"] >= "3.12"


@pytest.mark.slow
def test_cl_sdk_simulator_numbers(cl_summary):
    r = cl_summary["random"]["random"]
    info = r["info"]
    assert info["channels"] == 64 and info["frames_per_second"] == 25_000 and info["simulator"]
    quiet = r["quiet_windows"]
    assert len(quiet) == 3 and all(w["spikes"] > 0 and not w["gaps"] for w in quiet)
    s = r["stim_window"]
    assert s["stims_requested"] == s["stims_delivered"] == 25 and s["stims_missing"] == 0 and s["bursts"] == 1
    assert s["stim_error_max_s"] == 0.0
    assert r["stop_stimulation"]["delivered_after"] == 0
    assert r["accelerated_10s"]["speed"] > 1.0              # faster than real time
    assert set(r["refusals"]) >= {"current above cl's 3 uA", "grounded electrode", "cl StimDesign 4 uA"}
    e = cl_summary["echo"]["echo"]
    assert e["echoes"] == 68 and e["bursts"] == 1
    rt = cl_summary["realtime"]["realtime"]
    assert len(rt["windows"]) == 6 and all(w["spikes"] >= 0 for w in rt["windows"])
    assert 0.5 < rt["speed"] < 1.5                           # the wall clock


@pytest.mark.slow
def test_the_same_protocol_runs_whole_on_the_cl_sdk_simulator(tmp_path):
    """`labbench run protocols/mea_xor.toml` with only the device line changed, under Python >= 3.12
    (Ray actor, Zarr store, live readout): the CL1 simulator's system attributes are the provenance."""
    py = cl_python()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    if py is None or subprocess.run([py, "-c", "import labbench, cl"], cwd=tmp_path, env=env,
                                    capture_output=True).returncode:
        reason = "no Python >= 3.12 with cl-sdk and labbench installed (.ci/cl_venv.sh makes .venv-cl with both)"
        print(f"test_mea_cl: skipping the whole-run test: {reason}")
        pytest.skip(reason)
    labbench_cmd = str(Path(py).parent / "labbench")
    sets = ["device.params.backend=cl", "device.params.cl.accelerated_time=true",
            "run.washout=100", "run.train=400", "run.test=200"]
    cmd = [labbench_cmd, "run", str(ROOT / "protocols" / "mea_xor.toml"), "--store-root", str(tmp_path), "--json",
           "--quiet", *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "complete" and 0.0 <= result["metrics"]["ridge"]["accuracy"] <= 1.0
    import zarr

    g = zarr.open_group(result["store"], mode="r")
    mea = g["mea"]
    assert mea.attrs["committed"] == 700 and mea["features"].shape == (700, 64)
    describe = mea.attrs["describe"]
    device = describe["device"]
    assert describe["params"]["backend"] == "cl" and device["simulator"] and device["accelerated_time"]
    assert device["cl_sdk_version"].startswith("1.") and device["system_attributes"]["system_id"]  # provenance
    assert describe["layout"]["unusable"] == [0, 7, 32, 56, 63]                  # the CL1's own grid
    assert tuple(map(int, g.attrs["python"].split(".")[:2])) >= (3, 12)
    stim = mea["raw/stim/time_s"][:]
    assert len(stim) > 0 and len(mea["raw/spikes/time_s"][:]) > 0
    assert result["by_device"]["mea"]["device"]["recorded_s"] == pytest.approx(700 * 0.02)
