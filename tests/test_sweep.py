"""Several devices in one run, and parameter sweeps (issue 5)."""

import json

import numpy as np
import pytest
import zarr

import labbench as lb
from conftest import small_protocol
from labbench.cli import main
from labbench.spec.protocol import ProtocolError, from_dict
from labbench.spec.sweep import Range, SweepSpec, flatten_sweep_table, trials

SWEEP = {"method": "grid", "device.params.spectral_radius": [0.5, 0.95], "device.params.input_scaling": [0.05, 0.5]}


# -- describing a sweep --------------------------------------------------------------------

def test_grid_is_the_product_in_key_order_and_a_budget_takes_a_seeded_subset():
    spec = SweepSpec.model_validate(flatten_sweep_table({"a.x": [1, 2, 3], "b.y": ["p", "q"]}))
    assert trials(spec) == [{"a.x": a, "b.y": b} for a in (1, 2, 3) for b in ("p", "q")]
    sub = SweepSpec.model_validate(flatten_sweep_table({"budget": 4, "seed": 1, "a.x": [1, 2, 3], "b.y": ["p", "q"]}))
    assert len(trials(sub)) == 4 and trials(sub) == trials(sub)
    assert all(t in trials(spec) for t in trials(sub))


def test_random_sampling_is_seeded_and_respects_ranges():
    table = {"method": "random", "budget": 50, "seed": 3, "a.lr": {"low": 1e-4, "high": 1e-1, "log": True},
             "a.n": {"low": 10, "high": 20, "integer": True}, "a.kind": ["x", "y"]}
    spec = SweepSpec.model_validate(flatten_sweep_table(table))
    t = trials(spec)
    assert len(t) == 50 and t == trials(spec)
    lr = np.array([x["a.lr"] for x in t])
    assert (lr >= 1e-4).all() and (lr <= 1e-1).all() and (lr < 1e-2).mean() > 0.4   # log-uniform, not uniform
    assert {x["a.n"] for x in t} <= set(range(10, 21)) and {x["a.kind"] for x in t} == {"x", "y"}
    assert isinstance(spec.params["a.lr"], Range)


def test_nested_tables_and_an_explicit_params_table_are_the_same_sweep():
    a = flatten_sweep_table({"device": {"params": {"leak": [0.1, 0.2]}}})
    b = flatten_sweep_table({"params": {"device.params.leak": [0.1, 0.2]}})
    c = flatten_sweep_table({"device.params.leak": [0.1, 0.2]})
    assert a == b == c == {"params": {"device.params.leak": [0.1, 0.2]}}


@pytest.mark.parametrize("sweep, message", [
    ({"device.params.spectral_radus": [0.5, 0.9]},
     'sweep."device.params.spectral_radus": trial 0 (device.params.spectral_radus = 0.5): '
     'device.params.spectral_radus: unknown key'),
    ({"device.params.units": [10, -5]}, 'sweep."device.params.units": trial 1 (device.params.units = -5)'),
    ({"device.params.spectral_radius": []}, "'device.params.spectral_radius': empty list of values"),
    ({"budget": 0, "device.params.spectral_radius": [0.5]}, "sweep.budget: Input should be greater than 0"),
    ({"method": "random", "device.params.leak": [0.5]}, "budget: random sampling needs a number of trials"),
    ({"device.params.leak": {"low": 0.1, "high": 1}}, "a range needs method = \"random\""),
    ({"metric": "rigde.nrmse", "device.params.leak": [0.5]}, "sweep.metric: no readout 'rigde' to rank by"),
    ({}, "no parameter to sweep"),
])
def test_bad_sweeps_fail_before_anything_starts_naming_the_key(sweep, message, store_root):
    with pytest.raises(ProtocolError) as err:
        from_dict(small_protocol(sweep=sweep))
    assert message in str(err.value)
    assert not any(store_root.iterdir())


# -- running one ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swept(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    proto = from_dict(small_protocol(sweep=SWEEP))
    return proto, lb.run(proto, store_root=root, progress=False)


def test_a_sweep_gathers_every_trial_into_one_store_ranked(swept):
    proto, result = swept
    assert result.status == "complete" and len(result.summary) == 4
    values = [row["nrmse"] for row in result.summary]
    assert values == sorted(values) and result.best == result.summary[0]
    root = zarr.open_group(str(result.store), mode="r")
    assert root.attrs["kind"] == "labbench.sweep" and root.attrs["status"] == "complete"
    assert sorted(name for name, _ in root.groups()) == [f"trial-{i:04d}" for i in range(4)]
    t = root["trial-0003"].attrs
    assert t["params"] == {"device.params.spectral_radius": 0.95, "device.params.input_scaling": 0.5}
    assert t["status"] == "complete" and len(t["history"]["ridge"]["row"]) > 1


def test_a_trial_scores_exactly_what_a_run_with_its_parameters_scores(swept, store_root):
    proto, result = swept
    best = result.best
    params = {k: v for k, v in best.items() if k.startswith("device.")}
    single = lb.run(from_dict(small_protocol(), overrides=params), store_root=store_root, progress=False)
    assert single.metrics["ridge"]["nrmse"] == pytest.approx(best["nrmse"], rel=1e-9)


def test_show_prints_the_table_and_the_best_trial(swept, capsys):
    _, result = swept
    assert main(["show", str(result.store)]) == 0
    out = capsys.readouterr().out
    assert "(sweep)" in out and "4/4 finished" in out and "ranked by ridge.nrmse (lower is better)" in out
    assert f"best: trial {result.best['trial']}" in out and "--no-sweep --set device.params.spectral_radius=" in out
    assert main(["show", str(result.store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["trial"] == result.best["trial"]


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(ray_session, store_root):
    proto = from_dict(small_protocol(
        device={"driver": "faulty", "params": {"fail_at_block": -1}},
        sweep={"device.params.fail_at_block": [-1, 2]}))
    result = lb.run(proto, store_root=store_root, progress=False)
    assert [r["status"] for r in result.summary] == ["complete", "failed"]
    failed = zarr.open_group(str(result.store), mode="r")["trial-0001"].attrs
    assert "sensor on fire" in failed["error"] and result.best["trial"] == 0


# -- several devices in one run ------------------------------------------------------------

def test_several_devices_receive_the_same_input_and_are_compared(ray_session, store_root, capsys, tmp_path):
    devices = [{"driver": "esn", "params": {"units": 40, "spectral_radius": 0.8, "input_scaling": 0.1, "seed": 1}},
               {"driver": "esn", "name": "esn_big", "params": {"units": 80, "spectral_radius": 0.8,
                                                               "input_scaling": 0.1, "seed": 1}},
               {"driver": "identity"}]
    proto = from_dict({k: v for k, v in small_protocol().items() if k != "device"} | {"devices": devices},
                      overrides={"devices.1.params.units": 70})
    result = lb.run(proto, store_root=store_root, progress=False)
    assert set(result.by_device) == {"esn", "esn_big", "identity"}
    assert set(result.metrics) == {"esn/ridge", "esn_big/ridge", "identity/ridge"}
    r = lb.open_run(result.store)
    assert r.devices == ["esn", "esn_big", "identity"]
    inputs = [r.read(d)["inputs"].astype(np.float64) for d in r.devices]
    np.testing.assert_allclose(inputs[0], inputs[1]) and np.testing.assert_allclose(inputs[0], inputs[2])
    assert r.read("esn_big")["features"].shape == (600, 70)
    assert r.metrics["identity"]["ridge"]["nrmse"] > r.metrics["esn_big"]["ridge"]["nrmse"]

    path = tmp_path / "multi.toml"
    path.write_text(PROTOCOL_TWO_DEVICES)
    assert main(["run", str(path), "--quiet", "--store-root", str(store_root)]) == 0
    out = capsys.readouterr().out
    assert "esn / ridge" in out and "identity / ridge" in out and "on esn, identity" in out


PROTOCOL_TWO_DEVICES = """
[protocol]
name = "two"
[[devices]]
driver = "esn"
params = { units = 30, spectral_radius = 0.8, input_scaling = 0.1 }
[[devices]]
driver = "identity"
[task]
name = "narma"
[run]
washout = 20
train = 300
test = 100
block = 100
"""


def test_device_tables_are_checked():
    base = {k: v for k, v in small_protocol().items() if k != "device"}
    with pytest.raises(ProtocolError, match=r"devices\[1\].name: device group 'esn' is also devices\[0\]'s"):
        from_dict(base | {"devices": [{"driver": "esn"}, {"driver": "esn"}]})
    with pytest.raises(ProtocolError, match="either one \\[device\\] table or a \\[\\[devices\\]\\] array"):
        from_dict(small_protocol() | {"devices": [{"driver": "esn"}]})
    with pytest.raises(ProtocolError, match=r"devices\[0\].params.unitz: unknown key"):
        from_dict(base | {"devices": [{"driver": "esn", "params": {"unitz": 3}}]})
    with pytest.raises(ProtocolError, match="sweep: a sweep varies one device"):
        from_dict(base | {"devices": [{"driver": "esn"}, {"driver": "identity"}],
                          "sweep": {"devices.0.params.units": [10, 20]}})
