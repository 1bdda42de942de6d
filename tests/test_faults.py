"""Runs that survive faults: a device process killed mid-run, a device that stays down,
Ctrl-C, and resuming an aborted run (issue 5)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr

import labbench as lb
from conftest import SLOW_PROTOCOL as SLOW, small_protocol
from labbench.spec.protocol import from_dict

ESN = {"units": 60, "spectral_radius": 0.9, "input_scaling": 0.1, "seed": 4, "dtype": "float64"}
RUN = {"washout": 50, "train": 900, "test": 250, "block": 100}


def _crashing(tmp_path, **crash):
    return from_dict(small_protocol(device={"driver": "crashing_esn", "name": "esn",
                                            "params": {**ESN, **crash}, "max_restarts": 2, "timeout_s": 60},
                                    run=RUN))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ray_session):
    """The uninterrupted run: a plain ESN with the same parameters."""
    root = tmp_path_factory.mktemp("ref")
    run = lb.run(from_dict(small_protocol(device={"driver": "esn", "params": ESN}, run=RUN)), store_root=root,
                 progress=False)
    return run, zarr.open_group(str(run.store), mode="r")["esn"]


def test_a_sigkilled_device_is_restarted_and_its_state_replayed(ray_session, store_root, tmp_path, reference):
    proto = _crashing(tmp_path, crash_at_block=5, how="sigkill", once_marker=str(tmp_path / "killed"))
    run = lb.run(proto, store_root=store_root, progress=False)
    assert (tmp_path / "killed").exists()           # the worker really died once
    g = zarr.open_group(str(run.store), mode="r")["esn"]
    (restart,) = g.attrs["restarts"]
    assert restart["old_pid"] != restart["new_pid"] and restart["replayed_rows"] == restart["committed"] >= 300
    assert g.attrs["committed"] == 1200 and g["features"].shape == (1200, 60)
    np.testing.assert_array_equal(np.bincount(g["phase"][:]), [50, 900, 250])  # no row missing or doubled
    ref_run, ref = reference
    for key in ("inputs", "features", "targets", "phase"):
        assert g[key][:].tobytes() == ref[key][:].tobytes(), key
    assert run.metrics["ridge"]["nrmse"] == ref_run.metrics["ridge"]["nrmse"]


def test_a_device_that_stays_down_aborts_the_run_in_bounded_time(ray_session, store_root, tmp_path):
    # dies every time it reaches block 3, once rows 0-300 are in the store: so 300 rows are
    # committed at each death, however late block 2's reply reaches the writer on a busy machine
    proto = _crashing(tmp_path, crash_at_block=3, how="sigkill",
                      wait_committed=str(store_root / "*.zarr" / "esn" / "zarr.json"))
    t0 = time.monotonic()
    with pytest.raises(lb.DeviceDown, match=r"device 'esn' died 3 times \(device.max_restarts = 2\)"):
        lb.run(proto, store_root=store_root, progress=False)
    assert time.monotonic() - t0 < 60
    (path,) = store_root.iterdir()
    r = lb.open_run(path)
    assert r.status == "aborted" and "died 3 times" in r.attrs["error"]
    assert r.committed("esn") == 300 and len(r.device_attrs("esn")["restarts"]) == 2


def test_resume_finishes_an_aborted_run_as_if_it_never_stopped(ray_session, store_root, tmp_path, reference):
    proto = _crashing(tmp_path, crash_at_block=4, how="raise", once_marker=str(tmp_path / "raised"))
    with pytest.raises(lb.DeviceDown, match="amplifier saturated"):
        lb.run(proto, store_root=store_root, progress=False)
    (path,) = store_root.iterdir()
    assert lb.open_run(path).status == "aborted" and lb.open_run(path).committed("esn") == 400
    run = lb.resume(path, progress=False)
    assert run.store == path and run.status == "complete"
    g = zarr.open_group(str(path), mode="r")
    assert g.attrs["status"] == "complete" and g.attrs["resumed"][0]["from_rows"] == {"esn": 400}
    ref_run, ref = reference
    for key in ("inputs", "features", "targets", "phase"):
        assert g[f"esn/{key}"][:].tobytes() == ref[key][:].tobytes(), key
    assert run.metrics["ridge"]["nrmse"] == pytest.approx(ref_run.metrics["ridge"]["nrmse"], rel=1e-12)
    with pytest.raises(lb.StoreError, match="the run is complete; nothing to resume"):
        lb.resume(path, progress=False)


def test_resume_refuses_a_device_that_cannot_be_replayed(ray_session, store_root):
    proto = from_dict(small_protocol(device={"driver": "faulty", "name": "rig",
                                             "params": {"fail_at_block": 2}}))
    with pytest.raises(lb.DeviceDown):
        lb.run(proto, store_root=store_root, progress=False)
    (path,) = store_root.iterdir()
    with pytest.raises(lb.StoreError, match="device 'rig' .* is not deterministic"):
        lb.resume(path, progress=False)


def _interrupt_run(proto, root, ready, what: str) -> tuple[int, str, object]:
    """Start ``labbench run PROTO`` in a process of its own, wait until ``ready(store)``, press
    Ctrl-C (SIGINT); returns (exit code, stderr, store path). Waits at most 30 s for the exit."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "labbench.cli", "run", str(proto), "--quiet",
                             "--store-root", str(root), "--driver-path", "faulty=faulty_driver:FaultyReservoir"],
                            env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, what
            stores = list(root.glob("*.zarr")) if root.exists() else []
            if stores and (stores[0] / "zarr.json").exists() and ready(stores[0]):
                break
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 30
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # Ray processes that run started, and only those
        except ProcessLookupError:
            pass
    return proc.returncode, err, stores[0]


def test_ctrl_c_aborts_the_run_keeps_committed_blocks_and_exits_non_zero(tmp_path):
    proto = tmp_path / "slow.toml"
    proto.write_text(SLOW)
    code, err, store = _interrupt_run(
        proto, tmp_path / "runs", lambda p: (p / "rig" / "zarr.json").exists() and lb.open_run(p).committed("rig") >= 150,
        "the run never got going")
    assert code == 130, err
    assert "interrupted" in err
    r = lb.open_run(store)
    assert r.status == "aborted" and "SIGINT" in r.attrs["error"]
    n = r.committed("rig")
    assert n >= 150 and n % 50 == 0
    data = r.read("rig")
    np.testing.assert_array_equal(data["features"][:, 0], data["inputs"][:, 0])   # every kept block is whole


SLOW_SWEEP = SLOW + """
[sweep]
concurrency = 1
"device.params.delay_s" = [0.01, 0.011, 0.012, 0.013, 0.014, 0.015]
"""


def test_ctrl_c_on_a_sweep_keeps_the_finished_trials(tmp_path):
    proto = tmp_path / "sweep.toml"
    proto.write_text(SLOW_SWEEP.replace("train = 4000", "train = 400").replace("test = 950", "test = 50"))
    code, err, store = _interrupt_run(
        proto, tmp_path / "runs", lambda p: bool(zarr.open_group(str(p), mode="r").attrs.get("summary")),
        "no trial finished")
    assert code == 130, err
    root_group = zarr.open_group(str(store), mode="r")
    attrs = root_group.attrs
    assert attrs["status"] == "aborted" and "SIGINT" in attrs["error"]
    kept = sorted(name for name, _ in root_group.groups())
    assert 1 <= len(kept) < 6 and len(attrs["summary"]) == len(kept)
    assert all(root_group[k].attrs["status"] == "complete" for k in kept)


@pytest.mark.parametrize("delay_s, presses", [(0.0, 1), (0.3, 1), (1.0, 1), (2.5, 1), (0.3, 2)])
def test_ctrl_c_at_any_moment_never_leaves_the_store_running(tmp_path, delay_s, presses):
    """Ctrl-C while the store is being made, as devices start streaming, mid-run, and twice:
    the store always ends ``aborted`` (it was ``running`` once in 5 tries, issue 14)."""
    proto = tmp_path / "slow.toml"
    proto.write_text(SLOW)
    root = tmp_path / "runs"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(__file__), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "labbench.cli", "run", str(proto), "--quiet", "--store-root",
                             str(root), "--driver-path", "faulty=faulty_driver:FaultyReservoir"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not (root.exists() and list(root.glob("*.zarr"))):   # the store is being made
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no store within 120 s"
            time.sleep(0.01)
        time.sleep(delay_s)
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130, err
    (store,) = root.glob("*.zarr")
    r = lb.open_run(store)
    assert r.status == "aborted" and "SIGINT" in r.attrs["error"], (r.status, r.attrs.get("error"), err)
