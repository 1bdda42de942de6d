"""PythonWorker + worker_wire: a script in another interpreter answering with numpy arrays.

"The other interpreter" is this venv's own python (so these tests need no Python 3.10);
the worker script imports the wire by path, as lava_worker.py does in the Lava venv.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from labbench.drivers.transport.python_worker import (
    WIRE_PATH,
    PythonWorker,
    WorkerError,
)
from labbench.drivers.transport.worker_wire import read_message, write_message

SCRIPT = textwrap.dedent('''
    import importlib.util, os, subprocess, sys, time
    spec = importlib.util.spec_from_file_location("worker_wire", os.environ["LABBENCH_WORKER_WIRE"])
    ww = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ww)

    def echo(**kw):
        print("noise on stdout must not reach the wire")
        return kw

    def double(*, x):
        return {"y": x * 2, "n": int(x.size)}

    def boom():
        raise ValueError("bad value\\nsecond line")

    def sleep(*, s):
        time.sleep(s)
        return {}

    def die():
        print("dying now", file=sys.stderr, flush=True)
        os._exit(3)

    def spawn():
        return {"pid": subprocess.Popen(["sleep", "60"]).pid}

    def stubborn():
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        handlers["close"] = lambda: time.sleep(60)
        return {}

    handlers = {"echo": echo, "double": double, "boom": boom, "sleep": sleep, "die": die,
                "spawn": spawn, "stubborn": stubborn, "pid": lambda: {"pid": os.getpid()}}
    if len(sys.argv) > 1:
        open(sys.argv[1], "w").write(str(os.getpid()))
    sys.exit(ww.serve(handlers))
''')


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "echo_worker.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def worker(script):
    with PythonWorker(sys.executable, script, timeout_s=60) as w:
        yield w


def _gone(pid: int, within_s: float = 10.0) -> bool:
    """True once ``pid`` no longer exists or is a zombie (waited for at most ``within_s``)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_ready_message_names_the_interpreter(worker):
    assert worker.info["python"] == sys.version.split()[0]
    assert worker.info["pid"] == worker.pid and worker.alive


def test_arrays_and_scalars_round_trip_exactly(worker):
    rng = np.random.default_rng(0)
    values = {
        "b": rng.random((7, 3)) < 0.5, "i8": np.arange(-5, 5, dtype=np.int8), "u16": np.array([65535], np.uint16),
        "i32": rng.integers(-2**31, 2**31 - 1, (4, 5, 6), dtype=np.int32), "f32": rng.random(9, np.float32),
        "f64": np.array([np.nan, np.inf, -0.0, 1e-300]), "c": np.array([1 + 2j]), "zero_d": np.float64(2.5),
        "empty": np.zeros((0, 4), np.int32), "strided": np.arange(20.0).reshape(4, 5)[:, ::2],
        "big_endian": np.arange(3, dtype=">i4"),
        "s": "text ü", "n": 7, "x": 1.5, "flag": True, "none": None,
    }
    out = worker.call("echo", **values)
    assert set(out) == set(values)
    for key, value in values.items():
        if isinstance(value, (np.ndarray, np.generic)):
            assert out[key].dtype == np.asarray(value).dtype, key
            assert out[key].shape == np.shape(value), key
            np.testing.assert_array_equal(out[key], value)
        else:
            assert out[key] == value and type(out[key]) is type(value), key


def test_handler_computes_in_the_worker(worker):
    out = worker.call("double", x=np.arange(5, dtype=np.int64))
    np.testing.assert_array_equal(out["y"], [0, 2, 4, 6, 8])
    assert out["n"] == 5


def test_tens_of_megabytes_move_intact(worker):
    a = np.random.default_rng(1).random(5_000_000)           # 40 MB
    t0 = time.perf_counter()
    out = worker.call("echo", a=a)
    dt = time.perf_counter() - t0
    assert np.array_equal(out["a"], a)
    print(f"40 MB there and back in {dt * 1e3:.0f} ms ({2 * a.nbytes / dt / 1e6:.0f} MB/s)")


def test_handler_error_is_one_line_and_the_worker_lives_on(worker):
    with pytest.raises(WorkerError) as err:
        worker.call("boom")
    msg = str(err.value)
    assert "\n" not in msg and "op 'boom' failed: ValueError: bad value | second line" in msg
    with pytest.raises(WorkerError, match="unknown op 'nope'"):
        worker.call("nope")
    assert worker.call("double", x=np.ones(2))["n"] == 2


def test_object_arrays_are_refused_before_sending(worker):
    with pytest.raises(TypeError, match="value 'o' has dtype object"):
        worker.call("echo", o=np.array([{"a": 1}], dtype=object))
    assert worker.call("double", x=np.ones(1))["n"] == 1


def test_wire_rejects_a_pickled_dtype_on_read(tmp_path):
    path = tmp_path / "msg"
    with open(path, "wb") as f:
        write_message(f, "x", arrays={"a": np.arange(3)})
    raw = path.read_bytes().replace(b'"<i8"', b'"|O8"')
    path.write_bytes(raw)
    with open(path, "rb") as f, pytest.raises(RuntimeError, match="only numeric/bool"):
        read_message(f)


def test_timeout_kills_the_worker_with_one_clear_line(script):
    w = PythonWorker(sys.executable, script, timeout_s=1.0)
    try:
        with pytest.raises(WorkerError, match=r"gave no answer to op 'sleep' within 1 s \(killed\)") as err:
            w.call("sleep", s=30.0)
        assert sys.executable in str(err.value)
        assert not w.alive
        with pytest.raises(WorkerError, match="is not running"):
            w.call("double", x=np.ones(1))
    finally:
        w.close()


def test_dead_worker_reports_exit_status_and_stderr(script):
    with PythonWorker(sys.executable, script, timeout_s=30) as w:
        with pytest.raises(WorkerError) as err:
            w.call("die")
    msg = str(err.value)
    assert "ended during op 'die'" in msg and "exit status 3" in msg and "dying now" in msg
    assert "\n" not in msg


def test_missing_interpreter_and_script(script, tmp_path):
    with pytest.raises(WorkerError, match=r"worker interpreter /nonexistent/python3\.10 cannot be started"):
        PythonWorker("/nonexistent/python3.10", script)
    with pytest.raises(WorkerError, match="worker script .*missing.py does not exist"):
        PythonWorker(sys.executable, tmp_path / "missing.py")


def test_interpreter_that_is_not_python(script, tmp_path):
    fake = tmp_path / "fakepython"
    fake.write_text("#!/bin/sh\necho 'fakepython: no such module' >&2\nexit 4\n")
    fake.chmod(0o755)
    with pytest.raises(WorkerError, match=r"ended during start-up \(exit status 4\); last stderr: fakepython: no such"):
        PythonWorker(fake, script, timeout_s=30)


def test_close_kills_the_workers_own_children(script):
    w = PythonWorker(sys.executable, script, timeout_s=30)
    grandchild = w.call("spawn")["pid"]
    assert not _gone(grandchild, within_s=0.0)
    assert w.close() == 0
    assert _gone(grandchild), "a process the worker started outlived close()"


def test_close_kills_a_worker_that_will_not_stop(script):
    w = PythonWorker(sys.executable, script, timeout_s=30, grace_s=0.5)
    w.call("stubborn")
    assert w.close() == -signal.SIGKILL
    assert not w.alive
    assert w.close() == -signal.SIGKILL       # twice is safe


def test_worker_exits_when_its_parent_is_killed(script, tmp_path):
    pidfile = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from labbench.drivers.transport.python_worker import PythonWorker
        w = PythonWorker(sys.executable, {str(script)!r}, args=[{str(pidfile)!r}], timeout_s=60)
        print("up", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE)
    try:
        assert parent.stdout.readline().strip() == b"up"
        pid = int(pidfile.read_text())
        assert not _gone(pid, within_s=0.0)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert _gone(pid), "the worker outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)


def test_wire_path_is_importable_alone():
    """The worker side must need only the standard library and numpy (no labbench import)."""
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('w', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(sorted(k for k in sys.modules if k.startswith('labbench')))")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(WIRE_PATH)], capture_output=True, text=True, check=False,
                         timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
