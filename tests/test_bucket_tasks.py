"""The bucket's other protocols through the bench: --mock on a rig protocol, and memory capacity."""

from __future__ import annotations

import numpy as np
import zarr
from conftest import PROTOCOLS

import labbench as lb
from labbench.spec.protocol import from_dict, load


def test_mock_runs_a_rig_protocol_on_the_simulation(ray_session, store_root):
    """A protocol for the real rig (an Arduino on a port that is not there) runs on the
    simulated tank with --mock, and gives the frames the sim protocol gives."""
    base = {"protocol": {"name": "bucket_rig_small", "seed": 0},
            "task": {"name": "pattern_xor", "hold": 30, "settle": 15},
            "run": {"washout": 30, "train": 240, "test": 120, "block": 120},
            "readouts": [{"kind": "ridge", "alpha": 1.0}]}
    sim_params = {"seed": 3, "motors": {"n_motors": 2, "frequency_hz": 4.0}, "camera": {"optical_gain": 0.3}}
    rig = {**base, "device": {"driver": "bucket", "params": {**sim_params, "backend": "rig", "max_duty": 0.8,
                                                             "rig": {"port": "/dev/ttyNOPE", "camera": 7}}}}
    mocked = lb.run(from_dict(rig, mock=True), store_root=store_root, progress=False)
    assert mocked.status == "complete", mocked.error
    desc = zarr.open_group(str(mocked.store), mode="r")["bucket"].attrs["describe"]
    assert desc["backend"] == "sim" and desc["params"]["rig"] == {} and desc["params"]["max_duty"] == 0.8
    sim = {**base, "device": {"driver": "bucket", "params": {**sim_params, "max_duty": 0.8}}}
    plain = lb.run(from_dict(sim), store_root=store_root, progress=False)
    a = lb.open_run(mocked.store).raw("bucket", "frames")["frame"]
    b = lb.open_run(plain.store).raw("bucket", "frames")["frame"]
    assert a.shape == (390, 64, 64)
    np.testing.assert_array_equal(a, b)


def test_memory_capacity_of_the_bucket(ray_session, store_root):
    """bucket_memory_capacity.toml: the waves remember a few frames of one motor's duty (MC
    well above the no-reservoir 0 of the delayed recall, far below the bound of 256 features)."""
    run = lb.run(load(PROTOCOLS / "bucket_memory_capacity.toml"), store_root=store_root, progress=False)
    assert run.status == "complete", run.error
    mc = run.metrics["ridge"]["memory_capacity"]
    print(f"bucket memory capacity: {mc:.2f}")
    assert 2.0 < mc < 50.0
