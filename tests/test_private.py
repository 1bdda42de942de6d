"""The embedded Ray stays private (issue 14): during a `labbench run` every listening socket of
the run's processes is on loopback, and a SIGKILLed run leaves no Ray process behind.

The run's processes are the `labbench run` process, its descendants, and every process
whose command line names its Ray session (``session_<date>_<pid of the run>``) with their
descendants: Ray's GCS, raylet, agents and workers, re-parented or not.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import SLOW_PROTOCOL as SLOW
from labbench.engine.ray_runtime import is_loopback


def _env() -> dict[str, str]:
    """The test session's environment without the Ray variables a user may not have set:
    the run itself must keep its Ray private."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    return env


def start_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`labbench run` of a slow protocol in a session of its own; returns once it is streaming."""
    proto = tmp_path / "slow.toml"
    proto.write_text(SLOW)
    root = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "labbench.cli", "run", str(proto), "--quiet", "--store-root",
                             str(root), "--driver-path", "faulty=faulty_driver:FaultyReservoir"],
                            env=_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    import labbench as lb

    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the run did not start streaming within 180 s"
        stores = list(root.glob("*.zarr")) if root.exists() else []
        if stores and (stores[0] / "rig" / "zarr.json").exists() and lb.open_run(stores[0]).committed("rig") >= 100:
            return proc, stores[0]
        time.sleep(0.2)


def run_processes(pid: int) -> dict[int, psutil.Process]:
    """The run's process tree and its Ray session's processes (see the module's docstring)."""
    found: dict[int, psutil.Process] = {}

    def add(p: psutil.Process) -> None:
        found[p.pid] = p
        try:
            for c in p.children(recursive=True):
                found[c.pid] = c
        except psutil.Error:
            pass

    try:
        add(psutil.Process(pid))
    except psutil.NoSuchProcess:
        pass
    session = re.compile(rf"session_\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+_{pid}\b")
    for p in psutil.process_iter(["cmdline"]):
        if session.search(" ".join(p.info["cmdline"] or [])):
            add(p)
    return found


def alive(procs: dict[int, psutil.Process]) -> list[str]:
    """Those of ``procs`` still running (the same process: psutil checks the start time; zombies are dead)."""
    out = []
    for p in procs.values():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {p.name()}")
        except psutil.Error:
            pass
    return out


def _kill_all(proc: subprocess.Popen, procs: dict[int, psutil.Process]) -> None:
    """Clean up whatever a failed test left: the run's process group and every process it had."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in procs.values():
        try:
            if p.is_running():
                p.kill()
        except psutil.Error:
            pass
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def streaming_run(tmp_path_factory):
    """A `labbench run` that is streaming, and its processes as seen then."""
    proc, store = start_run(tmp_path_factory.mktemp("private"))
    procs = run_processes(proc.pid)
    yield proc, store, procs
    _kill_all(proc, {**procs, **run_processes(proc.pid)})


def test_every_listening_socket_of_a_run_is_on_loopback(streaming_run):
    proc, _, procs = streaming_run
    names = {p.name() for p in procs.values() if p.is_running()}
    assert any("raylet" in n for n in names) and any("gcs_server" in n for n in names), names
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied as exc:
        pytest.skip(f"psutil cannot list this machine's sockets here ({exc}); nothing to check")
    listening = [(c.laddr.ip, c.laddr.port, c.pid) for c in conns
                 if c.status == psutil.CONN_LISTEN and c.pid in procs]
    if not listening:
        pytest.skip("psutil sees no listening socket of the run's processes (no permission to map sockets "
                    "to processes here); nothing to check")
    exposed = [f"{ip}:{port} ({procs[pid].name()}, pid {pid})" for ip, port, pid in listening if not is_loopback(ip)]
    assert not exposed, f"listening beyond loopback: {exposed}"
    # the GCS, the raylet and the device's worker each listen (on loopback)
    owners = {procs[pid].name() for _, _, pid in listening}
    assert {"gcs_server", "raylet"} <= owners, owners


def test_a_sigkilled_run_leaves_no_ray_process_behind(streaming_run):
    proc, store, procs = streaming_run
    procs = {**procs, **run_processes(proc.pid)}       # the workers started since
    assert len(procs) >= 5, procs
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while alive(procs) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive(procs), f"still running 20 s after the run was killed: {alive(procs)}"
    import labbench as lb

    assert lb.open_run(store).status == "running"    # nobody could mark it: resume sees the dead writer


def test_the_reaper_never_kills_the_process_that_started_it(tmp_path):
    """The reaper wakes when its pipe closes, which happens while its owner is still exiting;
    an owner slow to exit (ray.shutdown on a busy machine) holds the Ray's driver log open, and
    was once SIGKILLed by its own reaper (exit status -9 instead of 130 after a Ctrl-C)."""
    from labbench.engine import ray_reaper

    session = tmp_path / "session"
    session.mkdir()
    script = (
        "import subprocess, sys, time\n"
        f"log = open({str(session / 'driver.log')!r}, 'w')      # a Ray driver keeps its log open\n"
        f"reaper = subprocess.Popen([sys.executable, {ray_reaper.__file__!r}, 'owner-test'],\n"
        "                          stdin=subprocess.PIPE, start_new_session=True)\n"
        f"reaper.stdin.write(b'{session}\\n'); reaper.stdin.flush(); reaper.stdin.close()   # EOF, as at exit\n"
        "time.sleep(3.0)                                             # a slow exit\n"
        "sys.exit(7)\n")
    proc = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert proc.returncode == 7
