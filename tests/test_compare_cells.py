"""One cell of ``labbench compare`` (issue 19): the battery, the families' plans, run_cell, and the
chained trial the DVS -> LSM family runs on."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import labbench as lb
from conftest import PROTOCOLS, small_protocol
from labbench.compare import ENTRIES, FAMILIES, build_protocol, get_family, run_cell
from labbench.compare.battery import FADING_HORIZON
from labbench.engine.trial import run_trial
from labbench.spec.protocol import from_dict, load


def _cell(family: str, entry: str, *, seed: int = 0, params: dict | None = None, device: str | None = None) -> dict:
    return {"device": device or family, "family": family, "entry": entry, "seed": seed, "scale": "quick",
            "mock": True, "params": params or {}}


# -- the battery and the plans ----------------------------------------------------------------------

def test_every_family_runs_each_entry_or_says_why_not():
    assert list(FAMILIES) == ["esn", "lsm", "mea", "bucket", "dvs_lsm", "loihi"]
    for fam in FAMILIES.values():
        assert set(fam.plans) | set(fam.omitted) == set(ENTRIES), fam.name
        assert not set(fam.plans) & set(fam.omitted)
        assert all(reason for reason in fam.omitted.values())
    assert "classification" in FAMILIES["mea"].omitted
    with pytest.raises(KeyError, match="does not run entry 'classification'"):
        get_family("mea").plan("classification")


@pytest.mark.parametrize("scale", ["quick", "full"])
@pytest.mark.parametrize(("family", "entry"), [(f, e) for f in FAMILIES for e in FAMILIES[f].entries])
def test_every_plan_builds_a_valid_protocol_on_its_mock(family, entry, scale):
    proto = build_protocol(family, entry, seed=2, scale=scale)           # validated: raises if not
    assert proto.protocol.seed == 2
    assert all(d.mock for d in proto.all_devices)
    assert proto.source.endswith(FAMILIES[family].plans[entry].protocol)
    assert proto.all_devices[-1].driver == FAMILIES[family].driver
    if entry == "classification":
        want = "saccade_digits" if family == "dvs_lsm" else "spoken_digits"
        assert proto.task.name == want
        if want == "spoken_digits":
            assert proto.task.kept == [0, 1]
    elif ENTRIES[entry].task is not None:
        assert proto.task.name == ENTRIES[entry].task


def test_the_esn_memory_capacity_plan_is_the_protocol_file_unchanged():
    for scale in ("quick", "full"):
        proto = build_protocol("esn", "memory_capacity", seed=0, scale=scale)
        assert proto.overrides == {"protocol.seed": 0, "device.mock": True}
        assert proto.resolved() == load(PROTOCOLS / "memory_capacity.toml").resolved() | {
            "device": {**proto.resolved()["device"], "mock": True}}
        assert proto.text == (PROTOCOLS / "memory_capacity.toml").read_text()


def test_device_params_override_the_plan_and_reach_the_right_stage():
    proto = build_protocol("bucket", "memory_capacity", params={"tank": {"damping": 2.0}, "seed": 7})
    params = proto.device_params()
    assert params["tank"]["damping"] == 2.0 and params["seed"] == 7
    assert params["motors"]["n_motors"] == 1                             # the rest of the nested table kept
    chain = build_protocol("dvs_lsm", "classification", params={"units": 200, "retina": {"row_ms": 4.0}})
    retina, liquid = chain.all_devices
    assert chain.device_params(liquid)["units"] == 200 and chain.device_params(retina)["row_ms"] == 4.0


def test_importing_the_package_stays_light():
    import subprocess

    code = "import sys, labbench.compare; print('ray' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- run_cell -----------------------------------------------------------------------------------------

def test_the_esn_memory_capacity_cell_equals_labbench_run_of_the_protocol_file(ray_session, store_root):
    result, curves = run_cell(_cell("esn", "memory_capacity", seed=0))
    assert result["status"] == "complete", result["error"]
    run = lb.run(PROTOCOLS / "memory_capacity.toml", store_root=store_root, progress=False)
    expected = run.metrics["ridge"]["memory_capacity"]
    assert result["primary"] == {"name": "memory_capacity", "value": expected, "maximise": True}
    assert result["metrics"]["memory_capacity"] == expected
    # the curve is the per-delay r² whose sum is the capacity
    delay, capacity = curves["memory_curve"]["delay"], curves["memory_curve"]["capacity"]
    np.testing.assert_array_equal(delay, np.arange(1, 201))
    assert capacity.sum() == pytest.approx(expected, rel=1e-12)
    assert np.all((capacity >= 0) & (capacity <= 1)) and capacity[0] > 0.9 > capacity[-1]
    prov = result["provenance"]
    assert prov["protocol_source"].endswith("protocols/memory_capacity.toml") and prov["driver"] == "esn"
    rebuilt = from_dict(json.loads(prov["protocol_text"]))                 # the effective protocol, as run
    assert rebuilt.resolved() == build_protocol("esn", "memory_capacity").resolved()
    assert prov["seed"] == 0 and prov["mock"] is True and prov["device_params"]["esn"]["units"] == 100
    assert result["cost"]["wall_s"] > 0 and result["cost"]["device_s"] > 0
    assert result["cost"]["energy_J"] is None and result["cost"]["charge_C"] is None


def test_a_kernel_cell_on_a_small_esn_gives_ranks_within_bounds():
    result, curves = run_cell(_cell("esn", "kernel", params={"units": 20}))
    assert result["status"] == "complete", result["error"]
    m = result["metrics"]
    assert 1 <= m["kernel_quality"] <= 20 and m["kernel_quality"] <= m["streams"]
    assert 1 <= m["generalisation_rank"] <= m["kernel_quality"]
    assert m["computational_capability"] == m["kernel_quality"] - m["generalisation_rank"]
    assert result["primary"]["value"] == m["computational_capability"] / m["streams"]
    spectrum = curves["kernel_spectrum"]["kernel"]
    assert spectrum[0] == 1.0 and np.all(np.diff(spectrum[np.isfinite(spectrum)]) <= 0)


def test_a_fading_cell_on_a_contracting_esn_fades_and_one_that_expands_does_not():
    result, curves = run_cell(_cell("esn", "fading_memory", params={"units": 20, "spectral_radius": 0.8}))
    assert result["status"] == "complete", result["error"]
    d = curves["fading"]["distance"]
    assert d[0] == pytest.approx(1.0)
    # spectral radius < 1: the two trajectories forget where they started
    assert d[10] < d[0] and d[50] < d[10] and d[-1] < 1e-3
    t = result["metrics"]["fading_time"]
    assert 0 < t < 200 and np.all(d[int(t):] < 0.01)
    # ranked by the distance left after FADING_HORIZON rows
    assert result["primary"]["name"] == f"distance_at_{FADING_HORIZON}"
    assert result["primary"]["value"] == d[FADING_HORIZON] < 0.1
    # a linear-ish ESN with spectral radius 1.5 and tiny inputs keeps its initial difference: ranked last
    result, curves = run_cell(_cell("esn", "fading_memory", params={"units": 20, "spectral_radius": 1.5,
                                                                    "input_scaling": 1e-4}))
    assert result["status"] == "complete", result["error"]
    assert np.isnan(result["metrics"]["fading_time"]) and result["primary"]["value"] > 0.5


def test_cells_report_the_costs_their_devices_measure():
    mea, _ = run_cell(_cell("mea", "fading_memory"))
    assert mea["status"] == "complete", mea["error"]
    assert mea["cost"]["charge_C"] > 0 and mea["cost"]["spikes"] > 0 and mea["cost"]["energy_J"] is None
    loihi, _ = run_cell(_cell("loihi", "fading_memory"))
    assert loihi["status"] == "complete", loihi["error"]
    assert loihi["cost"]["energy_J"] > 0 and loihi["cost"]["spikes"] > 0 and loihi["cost"]["charge_C"] is None


def test_an_xor_cell_runs_the_three_delays():
    result, curves = run_cell(_cell("esn", "xor", params={"units": 50}))
    assert result["status"] == "complete", result["error"]
    accs = [result["metrics"][f"accuracy_d{d}"] for d in (0, 1, 2)]
    assert result["primary"]["value"] == pytest.approx(np.mean(accs)) and all(0 <= a <= 1 for a in accs)
    assert result["provenance"]["variants"] == [{"task.delay": 0}, {"task.delay": 1}, {"task.delay": 2}]
    assert curves == {}


@pytest.mark.parametrize(("cell", "message"), [
    (_cell("esn", "memory_capacity", params={"units": -5}), "device.params.units"),
    (_cell("esn", "narma10", params={"no_such_param": 1}), "no_such_param"),
    (_cell("mea", "classification"), "does not run entry 'classification'"),
    (_cell("esn", "telepathy"), "unknown battery entry 'telepathy'"),
])
def test_a_failing_cell_returns_failed_with_a_one_line_error(cell, message):
    result, curves = run_cell(cell)
    assert result["status"] == "failed" and curves == {}
    assert message in result["error"] and "\n" not in result["error"]
    assert result["device"] == cell["device"] and result["seed"] == 0 and result["primary"]["value"] is None
    assert result["cost"]["wall_s"] >= 0


# -- chained trials ---------------------------------------------------------------------------------

def _tiny_dvs_lsm() -> dict:
    import tomllib

    table = tomllib.loads((PROTOCOLS / "dvs_lsm_digits.toml").read_text())
    table["devices"][1]["params"].update(units=120)
    table["task"]["n_test"] = 10
    table["run"].update(train=1400, test=700, block=350)
    return table


def test_a_chained_trial_scores_what_labbench_run_of_the_chain_scores(ray_session, store_root):
    proto = from_dict(_tiny_dvs_lsm(), mock=True)
    with threadpool_limits(limits=1, user_api="blas"):          # as the bench's trainers: one BLAS thread
        trial = run_trial(proto)
    run = lb.run(proto, store_root=store_root, progress=False)
    # the readouts train on the end of the chain (the liquid), as the bench's liquid readouts do
    assert set(trial.metrics) == {"linear"}
    assert trial.metrics["linear"] == run.by_device["liquid"]["linear"]
    assert trial.metrics["linear"]["n_test"] == 10
    assert trial.raw_rows["liquid"]["spikes"] > 0 and trial.raw_rows["retina"]["events"] > 0
    assert set(trial.summaries) == {"retina", "liquid"}


def test_a_chain_of_esns_in_a_trial_equals_the_bench_to_the_bit(ray_session, store_root):
    table = small_protocol(devices=[
        {"driver": "esn", "name": "front", "params": {"units": 30, "spectral_radius": 0.8, "seed": 1,
                                                      "dtype": "float64"}},
        {"driver": "esn", "name": "back", "input": "front", "params": {"units": 20, "spectral_radius": 0.5,
                                                                       "input_scaling": 0.3, "seed": 2,
                                                                       "dtype": "float64"}}])
    table.pop("device")
    proto = from_dict(table)
    with threadpool_limits(limits=1, user_api="blas"):
        trial = run_trial(proto, keep_test=True)
    run = lb.run(proto, store_root=store_root, progress=False)
    assert trial.metrics["ridge"] == run.by_device["back"]["ridge"]
    y_true, y_pred = trial.test["ridge"]
    assert y_true.shape == y_pred.shape == (150, 1)
