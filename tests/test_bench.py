"""`labbench run` end to end: Ray actor, run store, readouts, failures and SIGKILL."""

import time

import numpy as np
import pytest
import zarr
from conftest import sigkill_run, small_protocol

import labbench as lb
from labbench.cli import main
from labbench.spec.protocol import from_dict


def test_run_records_everything_and_matches_the_bare_driver(ray_session, store_root):
    proto = from_dict(small_protocol())
    result = lb.run(proto, store_root=store_root, progress=False)
    assert result.status == "complete"
    nrmse = result.metrics["ridge"]["nrmse"]
    assert 0 < nrmse < 0.6  # a 50-unit ESN learns NARMA-10 somewhat, and certainly better than the mean

    root = zarr.open_group(str(result.store), mode="r")  # plain zarr, no labbench
    assert root.attrs["status"] == "complete"
    assert root.attrs["protocol"]["device"]["params"]["units"] == 50
    g = root["esn"]
    assert g.attrs["committed"] == 600 and g["features"].shape == (600, 50)
    np.testing.assert_array_equal(np.bincount(g["phase"][:]), [50, 400, 150])

    # the features are exactly what the driver computes on the stored inputs
    with lb.open_device("esn", **proto.device_params()) as esn:
        expected = esn.run(g["inputs"][:]).features
    assert g["features"][:].tobytes() == expected.tobytes()

    # predictions only where the phase is test, and they score what the summary says
    pred = g["readouts/ridge/predictions"][:]
    test = g["phase"][:] == 2
    assert np.isnan(pred[~test]).all() and np.isfinite(pred[test]).all()
    from labbench.metrics import nrmse as nrmse_fn

    assert nrmse_fn(g["targets"][:][test], pred[test]) == pytest.approx(nrmse)
    assert lb.open_run(result.store).metrics["esn"]["ridge"]["nrmse"] == pytest.approx(nrmse)


def test_free_run_predictions_are_stored(ray_session, store_root):
    proto = from_dict(small_protocol(task={"name": "mackey_glass", "free_run": True, "free_run_horizon": 20,
                                           "free_run_starts": 4, "free_run_spacing": 25, "free_run_sync": 100},
                                     run={"washout": 100, "train": 500, "test": 200, "block": 100}))
    result = lb.run(proto, store_root=store_root, progress=False)
    m = result.metrics["ridge"]
    assert {"nrmse", "nrmse_free_run", "valid_steps"} <= set(m)
    g = zarr.open_group(str(result.store), mode="r")["esn/readouts/ridge"]
    assert g["free_run"].shape == (4, 20, 1) and g["free_run_starts"].shape == (4,)


def test_a_driver_that_raises_on_its_third_block_aborts_the_run_and_keeps_two_blocks(ray_session, store_root):
    proto = from_dict(small_protocol(device={"driver": "faulty", "name": "rig",
                                             "params": {"fail_at_block": 2}}))
    t0 = time.monotonic()
    with pytest.raises(lb.DeviceDown, match="device 'rig' failed on rows 128–192: RuntimeError: sensor on fire"):
        lb.run(proto, store_root=store_root, progress=False)
    assert time.monotonic() - t0 < 30
    (path,) = store_root.iterdir()
    r = lb.open_run(path)
    assert r.status == "aborted" and "sensor on fire" in r.attrs["error"]
    assert r.committed("rig") == 2 * 64
    np.testing.assert_array_equal(r.read("rig")["features"][:, 0], r.read("rig")["inputs"][:, 0])


def test_cli_run_and_show(ray_session, store_root, tmp_path, capsys):
    proto = tmp_path / "p.toml"
    proto.write_text("""
[protocol]
name = "cli"
[device]
driver = "esn"
params = { units = 30, spectral_radius = 0.8, input_scaling = 0.1 }
[task]
name = "narma"
[run]
washout = 20
train = 300
test = 100
block = 100
""")
    assert main(["run", str(proto), "--store-root", str(store_root), "--set", "device.params.units=40"]) == 0
    out = capsys.readouterr().out
    assert "nrmse" in out and "store:" in out and "samples/s" in out
    (path,) = store_root.iterdir()
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "420/420 samples" in out and "'units': 40" in out and "nrmse" in out
    assert main(["show", str(tmp_path / "nope.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'nope.zarr'}: no such run store"


#: 40,000 rows: still streaming for ~1.3 s (idle machine, ~26k rows/s) after the kill at 5,000 committed rows,
#: and the uninterrupted run and the resume each stream half of what the first version did (80,000)
KILL_PROTOCOL = """
[protocol]
name = "kill"
seed = 7
[device]
driver = "esn"
params = { units = 400, spectral_radius = 0.9, dtype = "float64", seed = 3 }
[task]
name = "narma"
[run]
washout = 100
train = 30000
test = 9900
block = 250
"""


def test_sigkilled_run_leaves_a_readable_store_equal_to_an_uninterrupted_run(ray_session, store_root, tmp_path):
    killed = sigkill_run(KILL_PROTOCOL, tmp_path, "esn", 5000)
    root = zarr.open_group(str(killed), mode="r")  # opens with plain zarr
    assert root.attrs["status"] == "running"
    n = root["esn"].attrs["committed"]
    assert 5000 <= n < 40000
    full = lb.run(from_dict(__import__("tomllib").loads(KILL_PROTOCOL)), store_root=store_root, progress=False)
    ref = zarr.open_group(str(full.store), mode="r")["esn"]
    for key in ("inputs", "features", "targets", "phase"):
        assert root[f"esn/{key}"][:n].tobytes() == ref[key][:n].tobytes(), key

    # the writer is dead: `labbench resume` finishes the run, and it equals the uninterrupted one
    assert main(["resume", str(killed), "--quiet"]) == 0
    done = zarr.open_group(str(killed), mode="r")
    assert done.attrs["status"] == "complete" and done.attrs["resumed"][0]["from_rows"] == {"esn": n}
    for key in ("inputs", "features", "targets", "phase"):
        assert done[f"esn/{key}"][:].tobytes() == ref[key][:].tobytes(), key
    assert done.attrs["metrics"]["esn"]["ridge"]["nrmse"] == pytest.approx(full.metrics["ridge"]["nrmse"], rel=1e-12)
