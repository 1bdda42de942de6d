"""Shared fixtures: one Ray per test session (on loopback), temporary store roots."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path

import pytest

# pydantic before anything else of ours: pytest-qt has imported PySide6 by now, and shiboken's
# import hook, inspecting pydantic while pydantic is half-initialised, breaks its lazy imports
# (ImportError: cannot import name 'import_string' from partially initialized module)
from pydantic import BaseModel, Field  # noqa: F401, I001

from labbench.engine.ray_runtime import RAY_ENV

for _key, _value in RAY_ENV.items():
    os.environ.setdefault(_key, _value)
# a local Ray that `labbench ray start` left running on this machine is not the tests' (runs would
# connect to it): they see an empty record directory unless a test points it elsewhere
os.environ["LABBENCH_RAY_DIR"] = os.path.join(tempfile.gettempdir(), f"labbench-tests-no-shared-ray-{os.getpid()}")
# the monitor's tests draw with Qt off-screen: no display needed (and none is used if present)
os.environ["QT_QPA_PLATFORM"] = "offscreen"

ROOT = Path(__file__).resolve().parents[1]
PROTOCOLS = ROOT / "protocols"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray for the whole session (per-test start-up would cost ~5 s each)."""
    import ray

    if not ray.is_initialized():
        # the test-only drivers in tests/ must be importable by the actors' worker processes
        # address="local": always a Ray of our own, never a cluster some `ray start` left its
        # address for in /tmp/ray/ray_current_cluster
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2,
                 _node_ip_address="127.0.0.1", logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    yield ray
    # shut down at the end of the session only; never `ray stop`
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def test_drivers():
    """The test-only drivers of tests/faulty_driver.py, registered explicitly as `faulty` and
    `crashing_esn` (a protocol names drivers, never modules; the Ray workers import the class
    through the PYTHONPATH that ray_session gives them)."""
    from faulty_driver import CrashingESN, FaultyReservoir

    from labbench.reservoir import register_driver

    register_driver("faulty", FaultyReservoir)
    register_driver("crashing_esn", CrashingESN)
    yield
    register_driver("faulty", None)
    register_driver("crashing_esn", None)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@contextlib.contextmanager
def fail_after(seconds: int):
    """Raise TimeoutError in the main thread after ``seconds`` (SIGALRM): a test that would
    hang on a silent device fails instead."""
    def boom(signum, frame):
        raise TimeoutError(f"test ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


#: a run of the test driver 'faulty' slow enough (0.2 s per 50-row block) to be interrupted mid-stream
SLOW_PROTOCOL = """
[protocol]
name = "slow"
[device]
driver = "faulty"
name = "rig"
params = { fail_at_block = -1, delay_s = 0.2 }
[task]
name = "narma"
[run]
washout = 50
train = 4000
test = 950
block = 50
"""


def sigkill_run(protocol_text: str, tmp_path: Path, device: str, at_rows: int, *, timeout_s: float = 180) -> Path:
    """Start ``labbench run`` on ``protocol_text`` in a process of its own, SIGKILL it (and the
    Ray processes it started) once ``device`` has ``at_rows`` committed rows, and return its
    store: a run whose writer died mid-stream."""
    import subprocess
    import sys
    import time

    import labbench as lb

    proto_path = tmp_path / "kill.toml"
    proto_path.write_text(protocol_text)
    killed_root = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "labbench.cli", "run", str(proto_path), "--quiet",
                             "--store-root", str(killed_root)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        committed = 0
        while committed < at_rows:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
            stores = list(killed_root.glob("*.zarr")) if killed_root.exists() else []
            if stores and (stores[0] / device / "zarr.json").exists():
                committed = lb.open_run(stores[0]).committed(device)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        try:  # the Ray processes that run started, and only those
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    (store,) = killed_root.glob("*.zarr")
    return store


def small_protocol(**overrides) -> dict:
    """A fast protocol as a dict (NARMA-10 on a 50-unit ESN)."""
    proto = {
        "protocol": {"name": "small", "seed": 3},
        "device": {"driver": "esn", "params": {"units": 50, "spectral_radius": 0.8, "input_scaling": 0.1,
                                               "seed": 1, "dtype": "float64"}},
        "task": {"name": "narma"},
        "run": {"washout": 50, "train": 400, "test": 150, "block": 64},
        "readouts": [{"kind": "ridge", "alpha": 1e-8}],
    }
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        if field:
            proto.setdefault(section, {})[field] = value
        else:
            proto[section] = value
    return proto
