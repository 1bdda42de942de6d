"""MEA stimulation safety: hard ceilings, lifting them only with a signed-off file, and the
guard's clock (docs/mea.md, "Safety").

- the ceilings (3 nC per phase, 200 pulses/s, balanced charge, the layout's reference and
  unusable electrodes) cannot be loosened by a protocol: a looser value is refused at
  validation and nothing reaches the board (zero bytes on the wire);
- a signed-off ``--unsafe-limits`` file lifts a limit, up to a hard maximum;
- the guard checks each window at the tick where the board places it, and its clock never
  moves backwards: a streaming board whose heartbeat reports "now" is never refused a safe
  schedule (with the old guard, which checked at the board's extrapolated time, 5 of these
  20 runs were refused: "electrode 19 pulsed 4.92 ms after its previous pulse").
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("serial")
from labbench.drivers.mea.driver import MEA  # noqa: E402
from labbench.drivers.mea.firmware import start_emulator  # noqa: E402
from labbench.drivers.mea.safety import SafetyGuard, SafetyLimits, UnsafeStimulation  # noqa: E402
from labbench.drivers.mea.serial_board import SerialBoard  # noqa: E402
from labbench.drivers.mea.stimulation import BiphasicPulse, ScheduledPulse  # noqa: E402

from conftest import fail_after  # noqa: E402
from mea_fakes import FakeCulture  # noqa: E402


def _min_gap_ms(delivered) -> float:
    """Smallest interval between two pulses on one electrode, as the board delivered them."""
    times: dict[int, list[float]] = {}
    for p in delivered:
        for e in p.electrodes:
            times.setdefault(e, []).append(p.t_s)
    gaps = [np.diff(sorted(t)).min() for t in times.values() if len(t) > 1]
    return 1000 * min(gaps) if gaps else np.inf


def test_streaming_against_a_real_time_board_whose_heartbeat_says_now_is_never_falsely_refused():
    """20 short streaming runs (25 blocks of 40 ms, random 0/1 inputs: pulses 5 ms apart, at
    the rate limit, some windows placed right after the last, others later): all complete,
    and the board never delivered two pulses on one electrode closer than 5 ms."""
    completed, refusals, delivered = 0, [], 0
    with fail_after(240):
        for run in range(20):
            emu = start_emulator(FakeCulture(rate_hz=20, seed=run), heartbeat_ms=10, stream_chunk_s=0.02,
                                 heartbeat_tick="now")
            dev = MEA(backend="serial", url=emu.path, row_ms=10.0, max_pulses=2, group_size=2)
            dev._make_backend = lambda emu=emu, dev=dev: SerialBoard(   # the driver's own code; only the options
                emu.path, layout=dev.layout, mode="streaming", heartbeat_timeout_s=1.0)
            rng = np.random.default_rng(run)
            try:
                dev.open()
                for _ in range(25):
                    dev.run(rng.integers(0, 2, (4, 1)).astype(float))
                completed += 1
            except UnsafeStimulation as e:
                refusals.append(f"run {run}: {e}")
            finally:
                dev.close()
                emu.close()
            assert not emu.errors, emu.errors
            assert _min_gap_ms(emu.delivered) >= 5.0 - 1e-6
            delivered += len(emu.delivered)
    assert refusals == [] and completed == 20
    assert delivered > 20 * 100          # not vacuous: every run stimulated, at the limit


# ---------------------------------------------------------------------------------------------
# ceilings: a protocol may only tighten
# ---------------------------------------------------------------------------------------------
TWENTY_NC = {"amplitude_ua": 50.0, "phase_us": 400.0}       # 50 uA x 400 us = 20 nC per phase


def _xor_protocol(**params) -> dict:
    return {"protocol": {"name": "mea-limits", "seed": 1},
            "device": {"driver": "mea", "params": {"row_ms": 20.0, **params}},
            "task": {"name": "xor", "delay": 1},
            "run": {"washout": 10, "train": 40, "test": 20, "block": 10}}


def test_a_protocol_cannot_lift_the_charge_ceiling_and_nothing_reaches_the_board():
    from labbench.spec.protocol import ProtocolError, from_dict

    # at validation: one line naming the key, the value and the ceiling
    with pytest.raises(ProtocolError) as err:
        from_dict(_xor_protocol(max_charge_nc=100, **TWENTY_NC), source="limits.toml")
    problem = next(p for p in err.value.problems if "max_charge_nc" in p)
    assert "max_charge_nc = 100 is above the ceiling 3" in problem and "\n" not in problem
    # and a driver built around validation sends not one byte to the board
    emu = start_emulator(FakeCulture(), heartbeat_ms=50)
    try:
        with pytest.raises(ValueError, match="max_charge_nc = 100 is above the ceiling 3"):
            MEA(backend="serial", url=emu.path, max_charge_nc=100, **TWENTY_NC)
        with pytest.raises(UnsafeStimulation, match="20 nC per phase exceeds the limit 3"):
            MEA(backend="serial", url=emu.path, **TWENTY_NC)     # the ceiling applies without any key
        assert emu.rx_bytes == 0
        # an open board: a 20 nC request is refused with zero bytes after the handshake
        dev = MEA(backend="serial", url=emu.path, serial={"mode": "stepped"})
        dev.open()
        dev.run(np.zeros((2, 1)))
        before = emu.rx_bytes
        dev.encoder = dataclasses.replace(dev.encoder, pulse=BiphasicPulse(50.0, 400.0))   # what it wanted
        with pytest.raises(UnsafeStimulation, match="20 nC per phase exceeds the limit 3"):
            dev.run(np.ones((2, 1)))
        assert emu.rx_bytes == before and emu.delivered == []
        dev.close()
    finally:
        emu.close()


@pytest.mark.parametrize("key, value, ceiling", [("max_rate_hz", 500, "200"), ("max_amplitude_ua", 80, "50"),
                                                 ("max_phase_us", 900, "500")])
def test_every_looser_limit_is_refused_at_validation(key, value, ceiling):
    from labbench.spec.protocol import ProtocolError, from_dict

    with pytest.raises(ProtocolError, match=f"{key} = {value} is above the ceiling {ceiling}"):
        from_dict(_xor_protocol(**{key: value}))
    tighter = from_dict(_xor_protocol(**{key: value / 10}))      # tightening is fine
    assert tighter.device.params[key] == value / 10


def test_unusable_empty_cannot_unlock_the_reference_electrodes():
    from labbench.spec.protocol import from_dict

    proto = from_dict(_xor_protocol(unusable=[], forbidden=[]))      # valid, but it removes nothing
    dev = MEA(**proto.device_params())
    assert {0, 7, 15, 56, 63} <= set(dev.layout.unusable)
    assert not set(dev.encoder.stimulated) & {0, 7, 15, 56, 63}
    dev.encoder = type("E", (), {"encode": staticmethod(
        lambda u: [ScheduledPulse(0.0, (15,), BiphasicPulse(10.0, 200.0))])})()    # the reference
    dev.open()
    with pytest.raises(UnsafeStimulation, match="electrode 15 is forbidden"):
        dev.run(np.zeros((1, 1)))
    dev.close()
    # a protocol may add electrodes, never remove the array's
    assert set(MEA(unusable=[20]).layout.unusable) == {0, 7, 15, 20, 56, 63}
    assert 21 in MEA(forbidden=[21]).guard.forbidden and 15 in MEA(forbidden=[21]).guard.forbidden


# ---------------------------------------------------------------------------------------------
# lifting a ceiling: only with the [limits] of a signed-off file, up to a hard maximum
# ---------------------------------------------------------------------------------------------
def test_lifted_limits_apply_up_to_the_hard_maximum():
    dev = MEA(unsafe_limits={"max_charge_nc": 20.0}, **TWENTY_NC)
    dev.open()
    dev.run(np.ones((3, 1)))              # 20 nC pulses delivered to the in-silico culture
    assert dev.last_window["pulses"] > 0 and dev.describe()["limits_lifted"] is True
    assert dev.describe()["safety"]["max_charge_nc"] == 20.0
    dev.close()
    with pytest.raises(UnsafeStimulation, match="20 nC per phase exceeds the limit 2.5"):
        MEA(unsafe_limits={"max_charge_nc": 20.0}, max_charge_nc=2.5, **TWENTY_NC)   # the protocol still tightens
    for limits, message in [({"max_charge_nc": 25.0}, "above the hard maximum 20"),
                            ({"balance_tolerance": 0.5}, "limits.balance_tolerance cannot be lifted"),
                            ({"forbidden": []}, "limits.forbidden cannot be lifted"),
                            ({"max_charge_nc": "lots"}, "expected a number"),
                            ({"max_rate_hz": 100.0}, "below the ceiling 200"),
                            ({}, "is empty")]:
        with pytest.raises(ValueError, match=message):
            MEA(unsafe_limits=limits)
    # nothing but that argument lifts a ceiling: not the guard, not the limits themselves
    with pytest.raises(ValueError, match="looser than the ceiling"):
        SafetyGuard(SafetyLimits(max_charge_nc=10.0), 64)
    with pytest.raises(ValueError, match="hard maximum 20"):
        SafetyLimits(max_charge_nc=100.0)


# ---------------------------------------------------------------------------------------------
# the guard's clock
# ---------------------------------------------------------------------------------------------
def test_the_guards_clock_is_the_schedules_and_never_moves_backwards():
    pulse = BiphasicPulse(10.0, 200.0)
    guard = SafetyGuard(SafetyLimits(), 64)
    assert guard.check([ScheduledPulse(0.035, (3,), pulse)], 1.0) == 1.0
    guard.placed(1.0, 0.04)                          # placed where checked: ends at 1.04
    # a device clock that stepped back 10 ms (a heartbeat) does not move the guard back
    assert guard.check([ScheduledPulse(0.0, (3,), pulse)], 1.03) == pytest.approx(1.04)
    assert guard.check([ScheduledPulse(0.038, (3,), pulse)], 1.03) == pytest.approx(1.04)
    guard.placed(1.06, 0.04)                         # the board started it 20 ms later than checked
    assert guard.clock_s == pytest.approx(1.10)
    # that pulse is remembered where it was delivered (1.098, not 1.078): 2 ms before the next window
    with pytest.raises(UnsafeStimulation, match="electrode 3 pulsed 2 ms after"):
        guard.check([ScheduledPulse(0.0, (3,), pulse)], 1.10)
    assert guard.check([ScheduledPulse(0.003, (3,), pulse)], 1.0) == pytest.approx(1.10)   # 5 ms: fine


# ---------------------------------------------------------------------------------------------
# --unsafe-limits: a signed-off file, through the bench, recorded in the store
# ---------------------------------------------------------------------------------------------
SIGNED = '''[sign_off]
name = "A. Researcher"
reason = "charge-response curve up to 20 nC per phase (test)"
date = 2026-12-04

[limits]
max_charge_nc = 20.0
'''


def _twenty_nc_protocol(**params) -> dict:
    return {"protocol": {"name": "mea_lifted", "seed": 0},
            "device": {"driver": "mea", "params": {"row_ms": 20.0, "max_pulses": 1, "group_size": 4, "seed": 0,
                                                   "culture": {"n_neurons": 200}, **TWENTY_NC, **params}},
            "task": {"name": "xor", "delay": 0, "hold": 5},
            "run": {"washout": 20, "train": 60, "test": 20, "block": 50},
            "readouts": [{"kind": "ridge", "alpha": 1.0}]}


def _toml(table: dict) -> str:
    """A protocol dict as TOML (tables of scalars and inline tables, what these protocols hold)."""
    import json

    def value(v) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    out = []
    for name, body in table.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            out.append(f"[[{name}]]" if isinstance(body, list) else f"[{name}]")
            out += [f"{k} = {value(v)}" for k, v in row.items()]
    return "\n".join(out) + "\n"


def test_a_signed_off_file_lifts_the_limit_and_the_store_records_it(ray_session, store_root, tmp_path):
    import hashlib

    import labbench as lb
    from labbench.spec.protocol import from_dict
    from labbench.store import RunReader

    limits = tmp_path / "limits.toml"
    limits.write_text(SIGNED)
    run = lb.run(from_dict(_twenty_nc_protocol()), store_root=store_root, progress=False, unsafe_limits=limits)
    attrs = RunReader(run.store).attrs
    rec = attrs["unsafe_limits"]
    assert rec["path"] == str(limits.resolve()) and rec["text"] == SIGNED
    assert rec["sha256"] == hashlib.sha256(SIGNED.encode()).hexdigest()
    assert (rec["signed_off_by"], rec["date"], rec["limits"], rec["devices"]) == (
        "A. Researcher", "2026-12-04", {"max_charge_nc": 20.0}, ["mea"])
    assert "20 nC" in rec["reason"]
    import zarr

    g = zarr.open_group(str(run.store), mode="r")["mea"]
    assert g.attrs["describe"]["safety"]["max_charge_nc"] == 20.0 and g.attrs["describe"]["limits_lifted"]
    assert len(g["raw/stim/time_s"][:]) > 0                     # 20 nC pulses were delivered
    assert "unsafe_limits" not in attrs["protocol_table"]["device"]["params"]   # never through the protocol
    # without the file the same protocol is refused by the guard before any pulse
    with pytest.raises(lb.DeviceDown, match="20 nC per phase exceeds the limit 3"):
        lb.run(from_dict(_twenty_nc_protocol()), store_root=store_root, progress=False)
    # resuming it needs the very same file (sha256), named again (checked first; the MEA is not
    # deterministic, so its runs cannot be resumed anyway)
    from labbench.spec.unsafe_limits import UnsafeLimitsError
    from labbench.store import RunStore

    RunStore.reopen(run.store).finish("aborted", "test: pretend it stopped")
    with pytest.raises(UnsafeLimitsError, match="made with lifted safety limits"):
        lb.resume(run.store, progress=False)
    other = tmp_path / "other.toml"
    other.write_text(SIGNED.replace("(test)", "(another test)"))
    with pytest.raises(UnsafeLimitsError, match=f"that same file, not {other.resolve()}"):
        lb.resume(run.store, progress=False, unsafe_limits=other)
    with pytest.raises(lb.StoreError, match="'mea' \\(mea\\) is not deterministic"):
        lb.resume(run.store, progress=False, unsafe_limits=limits)      # the file passes


@pytest.mark.parametrize("text, message", [
    (SIGNED.replace('name = "A. Researcher"\n', ""), "sign_off.name is missing or empty"),
    (SIGNED.replace('reason = "charge-response curve up to 20 nC per phase (test)"\n', 'reason = " "\n'),
     "sign_off.reason is missing or empty"),
    (SIGNED.replace("date = 2026-12-04\n", ""), "sign_off.date is missing"),
    (SIGNED.split("[limits]")[0], "no [limits] table"),
    ("[limits]\nmax_charge_nc = 20.0\n", "no [sign_off] table"),
    (SIGNED.replace("max_charge_nc = 20.0", "max_charge_nc = 50.0"), "above the hard maximum 20"),
    (SIGNED.replace("max_charge_nc = 20.0", "unusable = 1"), "limits.unusable cannot be lifted"),
])
def test_an_unusable_limits_file_is_refused_with_exit_2_and_no_store(tmp_path, capsys, text, message):
    from labbench.cli import main

    proto = tmp_path / "p.toml"
    proto.write_text(_toml(_twenty_nc_protocol()))
    limits = tmp_path / "limits.toml"
    limits.write_text(text)
    runs = tmp_path / "runs"
    assert main(["run", str(proto), "--unsafe-limits", str(limits), "--store-root", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(limits) in err and err.count("\n") == 0
    assert not runs.exists() or not any(runs.iterdir())


def test_a_protocol_asking_for_100_nc_exits_2_on_the_cli(tmp_path, capsys):
    from labbench.cli import main

    proto = tmp_path / "p.toml"
    proto.write_text(_toml(_twenty_nc_protocol(max_charge_nc=100)))
    assert main(["run", str(proto), "--store-root", str(tmp_path / "runs"), "--quiet"]) == 2
    assert "max_charge_nc = 100 is above the ceiling 3" in capsys.readouterr().err
