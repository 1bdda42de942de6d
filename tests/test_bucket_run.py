"""The bucket through the bench (Ray + store): Fernando & Sojakka's XOR on the shadowgraph
camera against its controls, and the stored frames (--mock, speech and memory capacity:
tests/test_bucket_tasks.py)."""

from __future__ import annotations

import numpy as np
import tomllib
import zarr
from conftest import PROTOCOLS
from labbench.drivers.bucket.driver import Bucket, BucketParams
from labbench.drivers.bucket.tank import SimTank

import labbench as lb
from labbench.spec.protocol import from_dict


def _toml(name: str) -> dict:
    return tomllib.loads((PROTOCOLS / name).read_text())


def test_xor_on_the_shadowgraph_and_its_controls(ray_session, store_root):
    """bucket_xor.toml's device beside bucket_xor_controls.toml's (same trials, one run):
    >= 0.95 trial accuracy on the shadowgraph, <= 0.60 with the linear camera, <= 0.75 on
    the raw bits; the frames in the store are SimTank's for the same seed and drive."""
    xor, controls = _toml("bucket_xor.toml"), _toml("bucket_xor_controls.toml")
    assert xor["task"] == controls["task"] and xor["run"] == controls["run"]
    proto = {**controls, "devices": [xor["device"], *controls["devices"]]}
    proto["protocol"] = {**controls["protocol"], "name": "bucket_xor_all"}
    run = lb.run(from_dict(proto), store_root=store_root, progress=False)
    assert run.status == "complete", run.error
    m = run.metrics
    print({k: {n: round(v, 3) for n, v in x.items()} for k, x in m.items()})
    assert m["bucket/ridge"]["accuracy"] >= 0.95
    assert m["bucket/ridge"]["trials"] == xor["run"]["test"] // xor["task"]["hold"]
    assert m["bucket_linear/ridge"]["accuracy"] <= 0.60
    assert m["identity/ridge"]["accuracy"] <= 0.75

    g = zarr.open_group(str(run.store), mode="r")["bucket"]
    rows = sum(xor["run"][k] for k in ("washout", "train", "test"))
    frames = g["raw/frames/frame"]
    assert frames.shape == (rows, 64, 64) and frames.dtype == np.uint8
    assert frames.metadata.dimension_names == ("frames_row", "y", "x")
    assert g.attrs["describe"]["device"]["solver"] == "fd"    # SimTank.describe() is provenance
    # the first block again, straight from a SimTank of the same parameters and seed
    params = BucketParams(n_inputs=2, **xor["device"]["params"])
    block = xor["run"]["block"]
    tank = SimTank(params.sim_params(), seed=params.seed)
    again = tank.step(Bucket(n_inputs=2, **xor["device"]["params"]).duty(g["inputs"][:block]))
    np.testing.assert_array_equal(frames[:block], again)
    # features are the pooled frames
    from labbench.drivers.bucket.camera import pool_frames

    np.testing.assert_allclose(g["features"][:block], pool_frames(again, (16, 16)), atol=1e-6)
