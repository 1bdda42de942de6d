"""The Ray the bench runs on: a fresh local Ray of its own (private: loopback only, reaped when
this process dies) or a cluster to join (with Ray's token authentication when a token is given)."""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
import time
import uuid
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

_reaper: subprocess.Popen | None = None
_reaper_pid = 0


def ensure_ray(address: str | None = None) -> float:
    """Start the embedded local Ray or join the cluster at ``address``; returns seconds spent.

    Parameters
    ----------
    address : str, optional
        A cluster to join (``auto``, ``host:port``); default ``RAY_ADDRESS``, else a fresh
        local Ray of this process's own.

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
    address = address or os.environ.get("RAY_ADDRESS") or None
    local = address is None
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
    import ray

    if ray.is_initialized():
        return 0.0
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                              "configure_logging": True, "log_to_driver": True}
    # the workers' import path leaves out this process's working directory (engine/worker_setup.py)
    kwargs["runtime_env"] = worker_runtime_env()
    if not local:
        ray.init(address=address, **kwargs)
        return time.perf_counter() - t0
    if not fresh_import and _cluster_mode_at_import(ray):
        raise RuntimeError("ray was imported before labbench could keep the local Ray on loopback: set "
                           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before importing ray (or import labbench first)")
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
    return time.perf_counter() - t0


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
