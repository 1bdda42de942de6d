"""Devices chained into a pipeline: ``input = "<device>"`` feeds one device's features to
another, row for row, inside one run (issue 16: DVS -> LSM, bucket camera -> DVS, DVS -> Loihi).

The chain here is made of software reservoirs, so that what is tested is the bench's
feature, not a driver: a 40-unit ESN ("front") read by a 30-unit ESN ("back")."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import labbench as lb
from conftest import small_protocol
from labbench.spec.protocol import ProtocolError, from_dict

FRONT = {"units": 40, "spectral_radius": 0.8, "input_scaling": 0.5, "seed": 1, "dtype": "float64"}
BACK = {"units": 30, "spectral_radius": 0.5, "input_scaling": 0.3, "seed": 2, "dtype": "float64"}
RUN = {"washout": 50, "train": 700, "test": 250, "block": 100}


def _chain(back_driver: str = "esn", **back_extra) -> dict:
    return small_protocol(device=None, devices=[
        {"driver": "esn", "name": "front", "params": FRONT},
        {"driver": back_driver, "name": "back", "input": "front", "params": {**BACK, **back_extra},
         "max_restarts": 2, "timeout_s": 60},
    ], run=RUN)


def _without_device(proto: dict) -> dict:
    proto.pop("device", None)
    return proto


@pytest.fixture(scope="module")
def chained(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("chain")
    run = lb.run(from_dict(_without_device(_chain())), store_root=root, progress=False)
    return run, zarr.open_group(str(run.store), mode="r")


def test_a_chained_device_reads_the_features_of_the_device_it_names(chained):
    run, g = chained
    assert run.status == "complete"
    front, back = g["front"], g["back"]
    assert front.attrs["committed"] == back.attrs["committed"] == 1000
    # the back ESN's inputs are the front ESN's features, every row, bit for bit
    assert back["inputs"].shape == (1000, 40)
    np.testing.assert_array_equal(back["inputs"][:], front["features"][:].astype(back["inputs"].dtype))
    assert back["features"].shape == (1000, 30)
    # ... and they are what a 30-unit ESN makes of those rows when run by hand
    from labbench.drivers.esn import EchoStateNetwork

    with EchoStateNetwork(**BACK, n_inputs=40) as esn:
        by_hand = esn.run(np.asarray(front["features"][:], dtype=np.float64)).features
    np.testing.assert_allclose(back["features"][:], by_hand, rtol=0, atol=1e-6)
    # both devices' streams are stored, and readouts train on either
    assert set(run.by_device) == {"front", "back"}
    for device in ("front", "back"):
        assert np.isfinite(run.metrics[f"{device}/ridge"]["nrmse"])
    assert g.attrs["devices"] == ["front", "back"]


def test_a_chained_device_that_dies_is_rebuilt_from_its_stored_inputs(ray_session, store_root, tmp_path, chained):
    _, ref = chained
    proto = _without_device(_chain("crashing_esn", crash_at_block=4, how="sigkill",
                                   once_marker=str(tmp_path / "killed")))
    run = lb.run(from_dict(proto), store_root=store_root, progress=False)
    assert (tmp_path / "killed").exists()                  # the back stage's worker really died once
    g = zarr.open_group(str(run.store), mode="r")
    (restart,) = g["back"].attrs["restarts"]
    assert restart["replayed_rows"] == restart["committed"] >= 300
    for device in ("front", "back"):
        for key in ("inputs", "features", "phase"):
            assert g[device][key][:].tobytes() == ref[device][key][:].tobytes(), (device, key)


@pytest.mark.parametrize("devices, expected", [
    ([{"driver": "esn", "name": "a", "input": "nobody"}], "devices[0].input: no device named 'nobody'"),
    ([{"driver": "esn", "name": "a", "input": "a"}], "devices[0].input: a device cannot read its own features"),
    ([{"driver": "esn", "name": "a", "input": "b"}, {"driver": "esn", "name": "b", "input": "a"}],
     "(a cycle)"),
    ([{"driver": "esn", "name": "a"}, {"driver": "esn", "name": "b", "input": "a", "params": {"n_inputs": 3}}],
     "devices[1].params.n_inputs: device 'a' gives 100 feature(s) per row (got 3)"),
])
def test_bad_chains_are_refused_naming_the_key(devices, expected):
    proto = _without_device(small_protocol(device=None, devices=devices))
    with pytest.raises(ProtocolError) as info:
        from_dict(proto)
    assert expected in str(info.value), str(info.value)


def test_chains_refuse_closed_loop_tasks_and_sweeps():
    proto = _without_device(small_protocol(device=None, devices=[
        {"driver": "esn", "name": "a"}, {"driver": "esn", "name": "b", "input": "a"}]))
    proto["sweep"] = {"params": {"devices.0.params.spectral_radius": [0.5, 0.9]}}
    with pytest.raises(ProtocolError, match=r"sweeps do not run chained devices"):
        from_dict(proto)
