"""The bucket driver by itself (no Ray, no store): inputs to motor duty under the ceiling, the
spec of its features and frames, determinism, the back ends and the mock swap."""

from __future__ import annotations

import numpy as np
import pytest
from labbench.drivers.bucket.driver import DUTY_CEILING, Bucket
from pydantic import ValidationError

import labbench as lb

SMALL = {"tank": {"grid": 32}, "camera": {"resolution": [32, 32], "pool": [8, 8]}}


def test_inputs_become_duty_clipped_to_the_ceiling():
    b = Bucket(n_inputs=2, motor_inputs=[3, 1], max_duty=0.6, **SMALL)
    u = np.array([[0.2, 0.9], [1.5, -0.3], [np.nan, 0.6]])
    d = b.duty(u)
    assert d.shape == (3, 4)
    np.testing.assert_allclose(d[:, 3], [0.2, 0.6, 0.0])      # input 0 drives motor 3, clipped at 0.6
    np.testing.assert_allclose(d[:, 1], [0.6, 0.0, 0.6])      # input 1 drives motor 1
    assert not d[:, [0, 2]].any()                              # motors no input drives stay off
    with pytest.raises(ValidationError, match="max_duty"):
        Bucket(n_inputs=1, max_duty=DUTY_CEILING + 0.1)        # a protocol may only lower the ceiling
    with pytest.raises(ValidationError, match="two inputs drive the same motor"):
        Bucket(n_inputs=2, motor_inputs=[1, 1])
    with pytest.raises(ValidationError, match="motor_inputs"):
        Bucket(n_inputs=5)                                     # 5 inputs, 4 motors, no mapping


def test_features_frames_and_determinism():
    u = np.zeros((40, 2))
    u[5:30, 0] = 1.0
    with lb.open_device("bucket", n_inputs=2, seed=4, **SMALL) as b:
        assert b.spec.n_features == 64 and b.spec.realtime is False and b.deterministic
        assert b.spec.raw["frames"].cell_shape("frame") == (32, 32)
        first = b.run(u)
        b.reset(seed=4)
        again = b.run(u[:17]), b.run(u[17:])
        desc = b.describe()
    frames = first.raw["frames"]["frame"]
    assert frames.shape == (40, 32, 32) and frames.dtype == np.uint8
    assert first.features.shape == (40, 64) and first.features.dtype == np.float32
    assert 0.0 <= first.features.min() and first.features.max() <= 1.0
    assert frames[10:30].std() > frames[:3].std()              # the motor made waves
    np.testing.assert_array_equal(np.concatenate([a.raw["frames"]["frame"] for a in again]), frames)
    assert desc["driver"] == "bucket" and desc["backend"] == "sim" and "solver" in desc["device"]


def test_backends_and_the_mock_swap():
    assert Bucket.backends()["sim"] == (True, "ok")
    assert set(Bucket.backends()) == {"sim", "rig"}
    params = {"backend": "rig", "rig": {"port": "/dev/ttyACM0"}, "seed": 2}
    assert Bucket.backend_of(params) == "rig"
    assert Bucket.mock_params(params) == {"backend": "sim", "seed": 2}
    assert Bucket(backend="rig", n_inputs=2).spec.realtime is True
    n_features, nbytes = Bucket.footprint({"n_inputs": 2, **SMALL})
    assert n_features == 64 and nbytes > 32 * 32 * 8
