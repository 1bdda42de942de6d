"""Event cameras failing mid-run, through the whole bench (issue 16, as for the MEA board):
an eDVS that falls silent stops the run as DeviceDown, the store is marked aborted with every
committed block kept, and the board is told to stop streaming (``E-``)."""

from __future__ import annotations

import threading
import time

import pytest
import zarr

import labbench as lb
from conftest import fail_after
from labbench.drivers.dvs.edvs_emulator import start_edvs
from labbench.drivers.dvs.sim_source import scene_source
from labbench.spec.protocol import from_dict


def _edvs_protocol(port: str) -> dict:
    return {"protocol": {"name": "edvs_fault", "seed": 0},
            "device": {"driver": "dvs", "timeout_s": 30, "max_restarts": 0,
                       "params": {"backend": "edvs", "sensor": "dvs128", "row_ms": 10.0, "pool": [16, 16],
                                  "edvs": {"port": port, "timeout_s": 0.5}}},
            "task": {"name": "narma"},
            "run": {"washout": 20, "train": 280, "test": 100, "block": 20},
            "readouts": [{"kind": "ridge", "alpha": 1.0}]}


def test_a_silent_edvs_aborts_the_run_and_keeps_the_committed_rows(ray_session, store_root):
    emu = start_edvs(scene_source("bar", size=(128, 128)))
    try:
        proto = from_dict(_edvs_protocol(emu.path))
        def hang_after_streaming() -> None:                     # the firmware hangs once it streamed a while
            deadline = time.monotonic() + 60
            while emu.stats["events_sent"] < 50_000 and time.monotonic() < deadline:
                time.sleep(0.01)
            emu.silence()

        hang = threading.Thread(target=hang_after_streaming, daemon=True)
        hang.start()
        with fail_after(120), pytest.raises(lb.DeviceDown, match=r"no byte for"):
            lb.run(proto, store_root=store_root, progress=False)
        hang.join()
        emu.silence(False)                                       # it wakes up and reads what was sent
        deadline = time.monotonic() + 10
        while "E-" not in emu.commands and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "E-" in emu.commands                              # the driver stopped the stream on close
    finally:
        emu.close()
    (store,) = store_root.iterdir()
    root = zarr.open_group(str(store), mode="r")
    assert root.attrs["status"] == "aborted" and "no byte for" in root.attrs["error"]
    committed = root["dvs"].attrs["committed"]
    assert 20 <= committed < 400 and committed % 20 == 0         # whole blocks, kept
    events = lb.open_run(store).raw("dvs", "events")
    assert len(events["t"]) > 0 and events["t"].max() < committed * 10_000
