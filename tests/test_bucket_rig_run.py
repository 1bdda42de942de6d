"""Fernando & Sojakka's XOR (protocols/bucket_xor.toml, shortened) through the whole bench on
the ``rig`` back end, i.e. the real pyfirmata2 and OpenCV code in a Ray device actor, against
the StandardFirmata and MJPEG emulators in front of a simulated tank, compared with the same
protocol on ``sim``.

Shortened to 60 training and 40 test trials of 1.2 s (the protocol's trial); the emulated
tank runs at twice real time (``BucketEmulator(speed=2)``, the rig pacing at 50 rows per
wall-clock second) so that the rig run takes ~62 s. The stated tolerance: the rig's trial
accuracy within 5 points (two test trials) of sim's. With 30 training trials the readout's
row accuracy was only ~0.85 on sim and ~0.81 on the rig, so one or two of 20 test trials
flipped on a busy machine (a 0.90 once); with 60 it is ~0.95 on both (measured under load,
docs/bucket.md).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest

from labbench.spec.protocol import tomllib

pytest.importorskip("pyfirmata2", reason="the rig needs pyfirmata2 (pip install 'labbench[bucket]')")
pytest.importorskip("cv2", reason="the rig needs opencv-python-headless (pip install 'labbench[bucket]')")

from conftest import PROTOCOLS, fail_after
from labbench.drivers.bucket.emulator import BucketEmulator
from labbench.drivers.bucket.params import BucketSimParams
from labbench.drivers.bucket.tank import SimTank

import labbench as lb
from labbench.spec.protocol import from_dict

HOLD, SETTLE, TRAIN, TEST = 30, 15, 60, 40          # rows per trial, scored rows, trials
SPEED = 2.0


def _proto() -> dict:
    p = tomllib.loads((PROTOCOLS / "bucket_xor.toml").read_text())
    p["task"].update(hold=HOLD, settle=SETTLE)
    p["run"] = {"washout": 2 * HOLD, "train": TRAIN * HOLD, "test": TEST * HOLD, "block": 5 * HOLD}
    return p


@pytest.mark.slow
def test_bucket_xor_through_the_emulators_matches_sim(ray_session, tmp_path):
    with fail_after(300):
        sim = lb.run(from_dict(_proto()), store_root=tmp_path / "sim", progress=False)
        assert sim.status == "complete"
        acc_sim = sim.metrics["ridge"]["accuracy"]

        proto = _proto()
        dev = proto["device"]["params"]
        tank = SimTank(BucketSimParams(**{k: dev.get(k, {}) for k in ("tank", "motors", "camera")}),
                       seed=dev["seed"])
        pins = [3, 5, 6, 9][:tank.params.motors.n_motors]
        with BucketEmulator(tank, motor_pins=pins, speed=SPEED) as emu:
            rig_dev = copy.deepcopy(dev)
            rig_dev["backend"] = "rig"
            rig_dev["camera"] = {**dev.get("camera", {}), "fps": tank.params.camera.fps * SPEED}
            rig_dev["rig"] = {"port": emu.tty, "camera": emu.url, "motor_pins": pins, "setup_wait_s": 0.1}
            proto["device"]["params"] = rig_dev
            t = time.monotonic()
            rig = lb.run(from_dict(proto), store_root=tmp_path / "rig", progress=False)
            took = time.monotonic() - t
        assert rig.status == "complete"
        acc_rig = rig.metrics["ridge"]["accuracy"]
        rows = 2 * HOLD + (TRAIN + TEST) * HOLD
        print(f"XOR trial accuracy: sim {acc_sim:.2f}, rig through the emulators {acc_rig:.2f} "
              f"({rows} rows in {took:.1f} s at {SPEED}x; {len(rig.metrics['device']['gaps'])} gap rows, "
              f"{rig.metrics['device']['gap_s']:.2f} s)")
        assert took >= rows / (tank.params.camera.fps * SPEED)          # paced to the wall clock
        assert acc_sim >= 0.9
        assert abs(acc_rig - acc_sim) <= 0.05 + 1e-9, (acc_sim, acc_rig, rig.metrics)
        assert np.isfinite(acc_rig)
