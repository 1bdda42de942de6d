"""Serial faults through the whole bench (``labbench.run``, a Ray device actor, the Zarr store).

The MEA protocol runs with ``backend = "serial"`` against the firmware emulator
(:func:`start_emulator`) on a pty in this process; a background thread waits until the
store has committed a block, then injects the fault:

- a connection dropped in the middle of a window: the driver reconnects, the run
  completes, every row is committed, and the span lost with the window's unsent frames
  is recorded as a gap (``metrics["device"]["gaps"]``, in the run and in the store); the
  spikes outside the gap are those of the culture driven directly;
- a device that stops answering: ``labbench.run`` raises :class:`labbench.DeviceDown`
  within the serial driver's heartbeat timeout (plus the bounded close of the board), the
  store is ``aborted`` naming the timeout, and every block committed before is kept.

Driver-level versions of these faults are in ``tests/test_mea_serial.py``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("serial")
import labbench as lb  # noqa: E402
from conftest import fail_after  # noqa: E402
from labbench.drivers.mea.culture import InSilicoCulture  # noqa: E402
from labbench.drivers.mea.driver import MEA  # noqa: E402
from labbench.drivers.mea.firmware import MEAFirmware, start_emulator  # noqa: E402
from labbench.drivers.mea.layout import ElectrodeLayout  # noqa: E402
from labbench.drivers.mea.serial_board import SerialBoard  # noqa: E402
from labbench.drivers.mea.serial_codec import SPIKES  # noqa: E402
from labbench.drivers.transport.framing import FrameParser  # noqa: E402
from labbench.spec.protocol import from_dict  # noqa: E402
from labbench.store import RunReader  # noqa: E402

RATE_HZ = 25_000                    # the emulator's tick rate (its default)
ROWS, BLOCK, ROW_S = 450, 50, 0.02
#: the serial driver's heartbeat timeout as the MEA driver builds it (SerialBoard's default;
#: MEAParams has no field for it)
HB_TIMEOUT_S = SerialBoard.__init__.__kwdefaults__["heartbeat_timeout_s"]
#: what the bench reports for a silent board: the serial driver's DeviceTimeout, either the
#: heartbeat timeout ("no valid frame ... stopped answering") or, when the silence begins
#: while a command waits for its ACK, the command's retries running out ("no reply to ...")
SILENT = r"DeviceTimeout: \S+: (no valid frame from the device for .* stopped answering|no reply to [A-Z_]+ )"


@pytest.fixture(autouse=True)
def _no_hang():
    """Fail, rather than hang, a test that runs far over its budget (Ray is up before this)."""
    with fail_after(90):
        yield


def _proto(url: str, **serial) -> dict:
    """XOR on a small culture through the serial board: 9 blocks of 50 rows (1 s each);
    ``serial`` are the board's options (``device.params.serial``)."""
    params = {"backend": "serial", "url": url, "row_ms": ROW_S * 1000, "features": "counts", "max_pulses": 3,
              "group_size": 8, "amplitude_ua": 3.0, "phase_us": 400.0, "seed": 0, "culture": {"n_neurons": 400},
              "serial": serial}
    return {"protocol": {"name": "mea_serial_faults", "seed": 0},
            "device": {"driver": "mea", "params": params, "timeout_s": 30.0, "max_restarts": 0},
            "task": {"name": "xor", "delay": 0, "hold": 5},
            "run": {"washout": 50, "train": 300, "test": 100, "block": BLOCK},
            "readouts": [{"kind": "ridge", "alpha": 1.0}]}


def _emulator() -> MEAFirmware:
    return start_emulator(InSilicoCulture({"n_neurons": 400, "seed": 0}, layout=ElectrodeLayout()))


class _AfterFirstBlock:
    """``on_store`` callback: a thread that waits until the store has committed at least
    one block of ``mea``, then runs ``action`` once (and notes when, and how many rows
    were committed then)."""

    def __init__(self, action: Callable[[], None], timeout_s: float = 30.0) -> None:
        self.action = action
        self.timeout_s = timeout_s
        self.path: Path | None = None
        self.fired_at: float | None = None
        self.committed_then = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._wait, daemon=True, name="fault-after-first-block")

    def __call__(self, path: Path) -> None:
        self.path = Path(path)
        self.thread.start()

    def _wait(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        try:
            reader = RunReader(self.path)
            while time.monotonic() < deadline:
                try:
                    committed = reader.committed("mea")
                except Exception:       # noqa: BLE001 - attributes being rewritten: read again
                    committed = 0
                if committed >= BLOCK:
                    self.committed_then = committed
                    self.fired_at = time.monotonic()
                    self.action()
                    return
                time.sleep(0.01)
            self.error = TimeoutError(f"no block committed within {self.timeout_s} s")
        except BaseException as e:      # noqa: BLE001 - reported by the test
            self.error = e


class _DropMidWindow:
    """Emulator ``tx_hook``: once armed, drop the connection just before the next SPIKES
    frame with index ``at_frame`` leaves: in the middle of a window the device has already
    run, after it sent the window's first frames (a USB reset then loses the rest, and the
    window kept for RESEND with them)."""

    def __init__(self, emu: MEAFirmware, down_s: float, at_frame: int = 2) -> None:
        self.emu, self.down_s, self.at_frame = emu, down_s, at_frame
        self.armed = threading.Event()
        self.fired = threading.Event()
        self.window: tuple[int, int] | None = None       # (window id, first tick of the frame)

    def __call__(self, data: bytes, kind: str | None) -> None:
        if kind != "SPIKES" or not self.armed.is_set() or self.fired.is_set():
            return
        frame, = FrameParser().feed(data)
        wid, index, _count, t_from, _t_to = SPIKES.unpack_from(frame.payload)
        if index == self.at_frame:
            self.window = (wid, t_from)
            self.fired.set()
            self.emu.drop(self.down_s)


def _stored(path: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(path), mode="r")["mea"]
    return {"features": g["features"][:], "inputs": g["inputs"][:], "targets": g["targets"][:],
            "phase": g["phase"][:], "spikes": g["raw/spikes/time_s"][:], "electrodes": g["raw/spikes/electrode"][:],
            "stim": g["raw/stim/time_s"][:]}


def _culture_reference(proto, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Raw streams of the same culture driven directly (no serial link), block by block."""
    dev = MEA(**MEA.mock_params(proto.device_params()))
    dev.open()
    try:
        blocks = [dev.run(inputs[a:a + BLOCK]).raw for a in range(0, len(inputs), BLOCK)]
    finally:
        dev.close()
    return {f"{stream}/{col}": np.concatenate([b[stream][col] for b in blocks])
            for stream in ("spikes", "stim") for col in ("time_s", "electrode")}


def test_a_connection_dropped_mid_run_reconnects_records_the_gap_and_loses_no_block(ray_session, store_root):
    emu = _emulator()
    hook = _DropMidWindow(emu, down_s=0.3)
    emu.tx_hook = hook
    fault = _AfterFirstBlock(hook.armed.set)
    proto = from_dict(_proto(emu.path))
    t = time.monotonic()
    try:
        run = lb.run(proto, store_root=store_root, progress=False, on_store=fault)
    finally:
        emu.close()
    elapsed = time.monotonic() - t
    assert fault.error is None and fault.fired_at is not None and fault.committed_then >= BLOCK
    assert hook.fired.is_set() and emu.drops == 1, "the drop must have happened during the run"
    assert not emu.errors, emu.errors
    assert run.status == "complete" and elapsed < 30       # measured 6-10 s

    # every row committed, every array complete
    reader = RunReader(run.store)
    assert reader.status == "complete" and reader.committed("mea") == ROWS
    s = _stored(run.store)
    assert {len(s[k]) for k in ("features", "inputs", "targets", "phase")} == {ROWS}
    assert np.isfinite(s["features"]).all()

    # the gap: in the run's metrics and in the store's summary, the same
    dev = run.metrics["device"]
    assert dev["gaps"] and dev["gap_s"] > 0
    assert zarr.open_group(str(run.store), mode="r").attrs["metrics"]["mea"]["device"]["gaps"] == dev["gaps"]
    gaps = np.array(dev["gaps"])
    assert (gaps[:, 1] > gaps[:, 0]).all() and dev["gap_s"] == pytest.approx((gaps[:, 1] - gaps[:, 0]).sum())
    # it is the end of the dropped window (a block; device time 0 at the start of the run),
    # from the first frame that did not reach the host: the one the drop stopped, or an
    # earlier one still in flight in the pty when it went away
    (a, b), = gaps
    _wid, lost_from = hook.window
    k = int(lost_from // (BLOCK * ROW_S * RATE_HZ))
    assert k >= 1 and k * BLOCK * ROW_S <= a <= lost_from / RATE_HZ + 1e-9
    assert b == pytest.approx((k + 1) * BLOCK * ROW_S, abs=1e-9)

    # spikes around the gap: none inside it, each counted once in the features
    t_s, el = s["spikes"], s["electrodes"]
    assert not ((t_s >= a) & (t_s < b)).any()
    assert ((t_s >= 0) & (t_s < ROWS * ROW_S)).all()
    assert s["features"].sum() == len(t_s)
    inside = (np.arange(ROWS) * ROW_S >= a - 1e-9) & ((np.arange(ROWS) + 1) * ROW_S <= b + 1e-9)
    assert inside.any() and not s["features"][inside].any()
    # ... and outside it, exactly the culture's (to the protocol's 40 us tick)
    ref = _culture_reference(proto, s["inputs"])
    ref_t, ref_el = ref["spikes/time_s"], ref["spikes/electrode"]
    ref_tick = np.rint(ref_t * RATE_HZ)
    keep = (ref_tick < round(a * RATE_HZ)) | (ref_tick >= round(b * RATE_HZ))
    assert 0 < keep.sum() < len(ref_t)
    np.testing.assert_allclose(t_s, ref_t[keep], atol=1 / RATE_HZ + 1e-9)
    np.testing.assert_array_equal(el, ref_el[keep])
    # the stimulation log is whole, the dropped window's pulses included (they were delivered)
    stim_el = zarr.open_group(str(run.store), mode="r")["mea/raw/stim/electrode"][:]
    assert len(s["stim"]) > 0
    np.testing.assert_allclose(s["stim"], ref["stim/time_s"], atol=1 / RATE_HZ + 1e-9)
    np.testing.assert_array_equal(stim_el, ref["stim/electrode"])


@pytest.mark.parametrize("heartbeat_timeout_s", [None, 0.5], ids=["default", "set-in-protocol"])
def test_a_device_that_stops_answering_aborts_the_run_within_the_heartbeat_timeout(ray_session, store_root,
                                                                                   heartbeat_timeout_s):
    serial = {} if heartbeat_timeout_s is None else {"heartbeat_timeout_s": heartbeat_timeout_s}
    hb_timeout = heartbeat_timeout_s or HB_TIMEOUT_S
    emu = _emulator()
    fault = _AfterFirstBlock(emu.silence)
    aborted_at: list[float] = []

    def watch_status() -> None:         # when does the store say "aborted"?
        while fault.fired_at is None and fault.error is None:
            time.sleep(0.01)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and fault.path is not None:
            try:
                if RunReader(fault.path).status == "aborted":
                    aborted_at.append(time.monotonic())
                    return
            except Exception:           # noqa: BLE001 - attributes being rewritten: read again
                pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch_status, daemon=True)
    watcher.start()
    try:
        with pytest.raises(lb.DeviceDown, match=SILENT) as info:
            lb.run(from_dict(_proto(emu.path, **serial)), store_root=store_root, progress=False, on_store=fault)
        raised_at = time.monotonic()
    finally:
        emu.close()
    watcher.join(timeout=5)
    assert fault.error is None and fault.fired_at is not None
    # the run is marked aborted within the heartbeat timeout (plus the bench's reaction), and
    # labbench.run returns soon after: closing the board (STOP_STIM, STOP) gives up at once
    # on a device already silent for the heartbeat timeout (measured: ~0.9 s and ~1.05 s)
    assert aborted_at and aborted_at[0] - fault.fired_at < hb_timeout + 1.0
    assert raised_at - fault.fired_at < hb_timeout + 1.5

    reader = RunReader(fault.path)
    assert reader.status == "aborted"
    error = reader.attrs["error"]
    assert error == str(info.value) and re.search(SILENT, error) and "'mea'" in error
    # every block committed before the silence is still there, whole and readable
    committed = reader.committed("mea")
    assert committed >= fault.committed_then >= BLOCK and committed % BLOCK == 0 and committed < ROWS
    rows = reader.read("mea", readouts=False)
    assert {len(v) for v in rows.values()} == {committed}
    s = _stored(fault.path)                 # the store was trimmed to the committed rows
    assert {len(s[k]) for k in ("features", "inputs", "targets", "phase")} == {committed}
    spikes = reader.raw("mea", "spikes")
    assert len(spikes["time_s"]) == len(spikes["electrode"]) == s["features"].sum() > 0
    assert (spikes["time_s"] < committed * ROW_S).all()
