"""MEA protocols through the bench: the same protocol on the in-silico culture in process
and on the firmware emulator through the real serial driver; --mock; safety on the wire."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

import labbench as lb
from labbench.drivers.mea.culture import InSilicoCulture
from labbench.drivers.mea.driver import MEA
from labbench.drivers.mea.firmware import start_emulator
from labbench.drivers.mea.layout import ElectrodeLayout
from labbench.drivers.mea.safety import UnsafeStimulation
from labbench.drivers.mea.serial_codec import Msg
from labbench.drivers.transport.framing import FrameParser
from labbench.spec.protocol import from_dict


def _xor(**device) -> dict:
    params = {"row_ms": 20.0, "features": "counts", "max_pulses": 3, "group_size": 8, "amplitude_ua": 3.0,
              "phase_us": 400.0, "seed": 0, "culture": {"n_neurons": 400}, **device}
    return {"protocol": {"name": "mea_small", "seed": 0},
            "device": {"driver": "mea", "params": params},
            "task": {"name": "xor", "delay": 0, "hold": 5},
            "run": {"washout": 50, "train": 600, "test": 200, "block": 100},
            "readouts": [{"kind": "ridge", "alpha": 1.0}]}


def _arrays(store) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(store), mode="r")["mea"]
    return {"features": g["features"][:], "spikes": g["raw/spikes/time_s"][:],
            "electrodes": g["raw/spikes/electrode"][:], "stim": g["raw/stim/time_s"][:]}


def test_the_same_protocol_on_the_culture_and_through_the_serial_emulator(ray_session, store_root):
    local = lb.run(from_dict(_xor()), store_root=store_root, progress=False)
    fw = start_emulator(InSilicoCulture({"n_neurons": 400, "seed": 0}, layout=ElectrodeLayout()))
    try:
        serial = lb.run(from_dict(_xor(backend="serial", url=fw.path)), store_root=store_root, progress=False)
    finally:
        fw.close()
    a, b = _arrays(local.store), _arrays(serial.store)
    assert len(a["spikes"]) > 1000
    # the serial protocol carries spike times in 40 us ticks (25 kHz): equal to a tick (a
    # time half-way between two ticks may round either way)
    tick = 1 / 25_000
    np.testing.assert_allclose(b["spikes"], a["spikes"], atol=tick + 1e-9)
    np.testing.assert_array_equal(b["electrodes"], a["electrodes"])
    np.testing.assert_array_equal(b["features"], a["features"])
    np.testing.assert_allclose(b["stim"], a["stim"], atol=tick + 1e-9)
    assert serial.metrics["ridge"]["accuracy"] == pytest.approx(local.metrics["ridge"]["accuracy"])
    attrs = zarr.open_group(str(serial.store), mode="r")["mea"].attrs["describe"]
    assert attrs["params"]["backend"] == "serial" and attrs["device"]      # the board's info, as provenance


def test_mock_swaps_any_backend_for_the_culture(ray_session, store_root):
    proto = from_dict(_xor(backend="serial", url="/dev/ttyNOPE"))
    mocked = proto.model_copy(update={"device": proto.device.model_copy(update={"mock": True})})
    assert mocked.device_params()["backend"] == "culture" and "url" not in mocked.device_params()
    run = lb.run(mocked, store_root=store_root, progress=False)
    assert run.status == "complete" and run.metrics["ridge"]["accuracy"] > 0.5


def test_unsafe_stimulation_never_reaches_the_wire():
    """An unsafe request through the real serial driver: refused, and not one STIMULATE
    frame among the bytes written (the handshake is all that went out)."""
    fw = start_emulator(InSilicoCulture({"n_neurons": 200, "seed": 0}, layout=ElectrodeLayout()))
    try:
        dev = MEA(backend="serial", url=fw.path, n_inputs=1, amplitude_ua=3.0, phase_us=400.0)
        from labbench.drivers.mea.serial_board import SerialBoard

        dev._make_backend = lambda: SerialBoard(fw.path, layout=dev.layout, wire_log=True)
        dev.open()
        board = dev.backend
        dev.run(np.ones((5, 1)))                      # a safe block: STIMULATE goes out
        sent = _types(board.wire_log)
        assert Msg.STIMULATE in sent and Msg.RUN_WINDOW in sent
        board.wire_log.clear()
        unsafe = [(20.0, 400.0), (3.0, 600.0)]        # 8 nC per phase; 600 us phases
        for amp, width in unsafe:
            dev.encoder = type(dev.encoder)(dev.layout, 1, 0.02, type(dev.encoder.pulse)(amp, width),
                                            8, 3, 0.0, 1.0, 0)
            with pytest.raises(UnsafeStimulation):
                dev.run(np.ones((5, 1)))
        assert board.wire_log == []                   # nothing at all was written
        dev.close()
        assert Msg.STOP_STIM in _types(board.wire_log)
    finally:
        fw.close()


def _types(chunks: list[bytes]) -> list[int]:
    parser = FrameParser()
    return [f.type for f in parser.feed(b"".join(chunks))]
