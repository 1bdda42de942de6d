"""The Ray the bench runs on: a fresh local Ray of its own (private: loopback only, reaped when
this process dies), the running local Ray that ``labbench ray start`` left for runs to share
(loopback only; a run connects to it and never stops it), or a cluster to join (with Ray's
token authentication when a token is given)."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .worker_setup import runtime_env as worker_runtime_env

#: environment that keeps the embedded Ray quiet, local and on loopback (see docs/platform.md)
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
}

#: set in the environment of the embedded Ray's processes (not of this process): the reaper
#: (:mod:`labbench.engine.ray_reaper`) ends every process that carries this process's value
OWNER_ENV = "LABBENCH_RAY_OWNER"

#: where ``labbench ray start`` records its Ray (default: ``$XDG_RUNTIME_DIR/labbench``, else
#: ``~/.cache/labbench``); tests point it at a directory of their own
STATE_DIR_ENV = "LABBENCH_RAY_DIR"

_reaper: subprocess.Popen | None = None
_reaper_pid = 0
_session: RaySession | None = None


@dataclass(frozen=True)
class RaySession:
    """How this process got its Ray.

    Attributes
    ----------
    mode : str
        ``started`` (a fresh local Ray of this process's own, stopped when it exits),
        ``shared`` (the running local Ray of ``labbench ray start``, left running) or
        ``joined`` (a cluster at ``address``).
    address : str
        The GCS address (``local`` for a fresh local Ray).
    seconds : float
        Time spent starting or connecting.
    """

    mode: str
    address: str
    seconds: float

    def describe(self) -> str:
        """A few words for a run summary."""
        return {"started": "fresh local Ray", "shared": f"running local Ray at {self.address}",
                "joined": f"cluster at {self.address}"}.get(self.mode, self.mode)


def session() -> RaySession | None:
    """How this process's Ray was obtained by :func:`connect` (``None`` before)."""
    return _session


def ensure_ray(address: str | None = None) -> float:
    """:func:`connect`, returning only the seconds spent."""
    return connect(address).seconds


def connect(address: str | None = None) -> RaySession:
    """Start the embedded local Ray, connect to the running shared one, or join the cluster at ``address``.

    Parameters
    ----------
    address : str, optional
        A cluster to join (``auto``, ``host:port``); default ``RAY_ADDRESS``, else the
        running local Ray recorded by ``labbench ray start`` (:func:`shared_ray`) when it
        answers, else a fresh local Ray of this process's own.

    Returns
    -------
    RaySession
        How Ray was obtained and how long it took (``mode`` 0 s if Ray was already up).

    Notes
    -----
    The local Ray is private: every listener of its processes binds 127.0.0.1 (checked after
    start-up), authentication is off, and a reaper process ends all of its processes a few
    seconds after this process dies, even by SIGKILL. Joining a cluster does not turn
    authentication off: with ``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH`` set and
    ``RAY_AUTH_MODE`` unset, token authentication is used (docs/cluster.md).

    Raises
    ------
    RuntimeError
        When Ray was imported before labbench could keep the local Ray on loopback, or the
        local Ray's node address is not a loopback address.
    """
    global _session
    address = address or os.environ.get("RAY_ADDRESS") or None
    shared = shared_ray() if address is None else None
    local = address is None or shared is not None
    fresh_import = "ray" not in sys.modules
    # before `import ray`: Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is imported, and
    # with it unset it replaces 127.0.0.1 by the machine's network address (every server then
    # listens on all interfaces)
    for key, value in RAY_ENV.items():
        if key != "RAY_AUTH_MODE" or local:
            os.environ.setdefault(key, value)
    if not local and "RAY_AUTH_MODE" not in os.environ and (
            os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_MODE"] = "token"
    t0 = time.perf_counter()
    import ray

    if ray.is_initialized():
        prior = _session or RaySession("joined" if address else "started", address or "local", 0.0)
        return RaySession(prior.mode, prior.address, 0.0)
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                              "configure_logging": True, "log_to_driver": True}
    # the workers' import path leaves out this process's working directory (engine/worker_setup.py)
    kwargs["runtime_env"] = worker_runtime_env()
    if not local:
        ray.init(address=address, **kwargs)
        _session = RaySession("joined", address, time.perf_counter() - t0)
        return _session
    if not fresh_import and _cluster_mode_at_import(ray):
        raise RuntimeError("ray was imported before labbench could keep the local Ray on loopback: set "
                           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray (or import labbench first)")
    if shared is not None:
        # the Ray of `labbench ray start`: on loopback (checked when it started), not ours to
        # stop (ray.shutdown only disconnects this driver) nor to reap (no reaper is told of it)
        ray.init(address=shared["address"], **kwargs)
        _session = RaySession("shared", shared["address"], time.perf_counter() - t0)
        return _session
    # the embedded default: always a fresh local Ray of our own, never a cluster that a
    # `ray start` on this machine happens to have left running (join one with --address)
    kwargs["object_store_memory"] = 512 * 1024**2
    kwargs["_node_ip_address"] = "127.0.0.1"
    owner = _start_reaper()
    os.environ[OWNER_ENV] = owner            # inherited by Ray's processes started now, and theirs
    try:
        ray.init(address="local", **kwargs)
    finally:
        os.environ.pop(OWNER_ENV, None)      # ... but not by this process's later children
    _tell_reaper(ray)
    node_ip = ray.util.get_node_ip_address()
    if not is_loopback(node_ip):
        ray.shutdown()
        raise RuntimeError(f"the local Ray came up on {node_ip}, not on loopback: set "
                           f"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray")
    _session = RaySession("started", "local", time.perf_counter() - t0)
    return _session


def exit_now(code: int) -> None:
    """End this process at once with ``code`` when it holds a Ray (the ``labbench run`` command,
    its store finished and its summary printed), instead of waiting seconds for Ray's shutdown.

    A fresh local Ray of its own is then ended by the reaper (SIGKILL, ~1 s later, as after
    any exit); the shared local Ray and a cluster only see this driver go, and end its
    workers. Returns (does nothing) when no Ray was started or connected.
    """
    if _session is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def current_node_id() -> str | None:
    """The Ray node this process runs on when it holds a Ray (a task's or an actor's), else
    ``None``; never imports Ray itself."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def cancel_running(refs: Iterable[Any], own_ray: bool) -> None:
    """Stop the Ray tasks still running (a sweep's trials, a comparison's cells) once their
    store is safe.

    On a Ray connection this process opened (local or a cluster), nothing: the tasks belong
    to this process and Ray ends them when it exits, and ``ray.cancel`` can race with a
    task's reply and crash the process inside Ray (a ``RAY_CHECK`` in its task manager,
    ray-project/ray#54846). On a Ray the caller owns (a cluster, a notebook's session), they
    are cancelled so they free their CPUs.
    """
    import ray

    if own_ray:
        return
    for ref in refs:
        ray.cancel(ref, force=True)


def state_file() -> Path:
    """The file that records the shared local Ray of ``labbench ray start``."""
    root = os.environ.get(STATE_DIR_ENV)
    if not root:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        root = (str(Path(runtime) / "labbench") if runtime and os.path.isdir(runtime)
                else str(Path.home() / ".cache" / "labbench"))
    return Path(root) / "ray.json"


def shared_ray() -> dict[str, Any] | None:
    """The running shared local Ray (``{address, owner, temp_dir, pid, started}``), or ``None``
    when none is recorded or the recorded one no longer answers on its loopback port."""
    try:
        info = json.loads(state_file().read_text())
        host, port = str(info["address"]).rsplit(":", 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not is_loopback(host) or not _answers(host, int(port)):
        return None
    return info


def start_shared_ray(num_cpus: int | None = None, timeout_s: float = 120.0, warm: int = 1) -> dict[str, Any]:
    """``labbench ray start``: a local Ray on 127.0.0.1 that runs share until :func:`stop_shared_ray`.

    Its address and how to find its processes are recorded in :func:`state_file`. Every
    listener of its processes is on loopback (checked; it is stopped again if not). With
    ``warm`` > 0 it keeps that many warm device actors and as many trainer actors ready for
    runs (:mod:`labbench.engine.warm_pool`); the record's ``warm`` says how many (0: none).

    Raises
    ------
    RuntimeError
        One is already running, it did not come up, or it listens beyond loopback.
    """
    running = shared_ray()
    if running is not None:
        raise RuntimeError(f"a local Ray is already running at {running['address']} (labbench ray stop ends it)")
    owner = f"shared-{uuid.uuid4().hex}"
    temp_dir = Path(tempfile.gettempdir()) / f"lbray-{owner[7:15]}"
    port = _free_port()
    env = {**os.environ, **RAY_ENV, "RAY_AUTH_MODE": "disabled", OWNER_ENV: owner}
    env.pop("RAY_ADDRESS", None)
    ray_cli = Path(sys.executable).with_name("ray")
    cmd = [str(ray_cli) if ray_cli.exists() else sys.executable, *([] if ray_cli.exists() else
           ["-m", "ray.scripts.scripts"]), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
           f"--object-store-memory={512 * 1024**2}", "--dashboard-host=127.0.0.1"]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={int(num_cpus)}")
    # a session of its own: a terminal's Ctrl-C or hang-up does not reach the Ray it leaves running
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True, timeout=timeout_s, check=False)
    info = {"address": f"127.0.0.1:{port}", "owner": owner, "temp_dir": str(temp_dir),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "num_cpus": num_cpus}
    if done.returncode != 0 or not _answers("127.0.0.1", port):
        _stop_processes(info)
        tail = (done.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"ray start failed (exit {done.returncode}): {tail[0]}")
    exposed = [f"{ip}:{p}" for ip, p in listening_sockets(owned_pids(info)) if not is_loopback(ip)]
    if exposed:
        _stop_processes(info)
        raise RuntimeError(f"the local Ray listened beyond loopback ({', '.join(exposed)}); stopped it")
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))
    if warm > 0:
        info["warm"] = _start_pool(int(warm))
        path.write_text(json.dumps(info))
    return info


def _start_pool(warm: int) -> int:
    """Start the warm pool on the shared Ray just recorded (a driver of its own, in a subprocess,
    so that this process never imports Ray); the number of hosts of each kind it keeps (0 if it
    could not start: runs then start their actors cold)."""
    code = (f"from labbench.engine import ray_runtime as rr, warm_pool as wp; rr.connect(); "
            f"wp.ensure_pool({warm}, {warm}); rr.exit_now(0)")
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    # from a neutral directory: the pool's job puts its working directory on its workers' path
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tempfile.gettempdir(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    return warm if done.returncode == 0 else 0


def stop_shared_ray() -> dict[str, Any] | None:
    """``labbench ray stop``: end the shared local Ray's processes (only those) and forget it;
    its record, or ``None`` when none was recorded. Never ``ray stop``, which ends every Ray
    of the machine by name."""
    try:
        info = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    _stop_processes(info)
    state_file().unlink(missing_ok=True)
    return info


def owned_pids(info: dict[str, Any]) -> list[int]:
    """Pids of the processes of the shared Ray recorded as ``info``."""
    from .ray_reaper import owned

    return owned(str(info.get("owner", "")), str(info.get("temp_dir", "")).rstrip("/") + "/")


def listening_sockets(pids: list[int]) -> list[tuple[str, int]]:
    """``(ip, port)`` of every listening inet socket of ``pids`` (empty when psutil cannot map sockets here)."""
    try:
        import psutil
    except ImportError:
        return []
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):      # not allowed to list sockets here
        return []
    wanted = set(pids)
    return [(c.laddr.ip, c.laddr.port) for c in conns if c.status == "LISTEN" and c.pid in wanted]


def _stop_processes(info: dict[str, Any], grace_s: float = 3.0) -> None:
    """SIGTERM the shared Ray's processes, SIGKILL those left after ``grace_s``."""
    if not info.get("owner") or not info.get("temp_dir"):
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        pids = owned_pids(info)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        end = time.monotonic() + wait
        while pids and time.monotonic() < end:
            time.sleep(0.1)
            pids = owned_pids(info)
        if not pids:
            return


def _answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _cluster_mode_at_import(ray: Any) -> bool:
    """Whether the imported Ray read RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER as on (its default on Linux),
    i.e. would turn 127.0.0.1 into the machine's network address."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    return bool(getattr(constants, "ENABLE_RAY_CLUSTER", False))


def _tell_reaper(ray: Any) -> None:
    """Send the reaper the new Ray's session directory (how it finds processes that retitled themselves)."""
    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(node, "_global_node", None)
    session_dir = getattr(node, "get_session_dir_path", lambda: "")()
    if _reaper is not None and _reaper.stdin is not None and session_dir:
        try:
            _reaper.stdin.write(f"{session_dir}\n".encode())
            _reaper.stdin.flush()
        except OSError:
            pass


def _start_reaper() -> str:
    """Start (once per process) the reaper that ends this process's Ray when it dies; its token."""
    global _reaper, _reaper_pid
    if _reaper is not None and _reaper_pid == os.getpid() and _reaper.poll() is None:
        return _reaper.args[-1]
    owner = f"{os.getpid()}-{uuid.uuid4().hex}"
    script = Path(__file__).with_name("ray_reaper.py")
    # the reaper waits for EOF on its stdin: the write end is this process's, closed by the
    # kernel when it exits however it exits; a session of its own keeps Ctrl-C away from it
    _reaper = subprocess.Popen([sys.executable, str(script), owner], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, close_fds=True)
    _reaper_pid = os.getpid()
    return owner
