"""The Ray the bench runs on: a fresh local Ray of its own (quiet, loopback only) or a cluster to join."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from .worker_setup import runtime_env as worker_runtime_env

#: environment that keeps Ray quiet, local and on loopback (see shared/PLATFORM.md)
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
}


def ensure_ray(address: str | None = None) -> float:
    """Start local Ray (no dashboard, quiet) or join ``address``; returns seconds spent."""
    # before `import ray`: Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is imported
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    if ray.is_initialized():
        return 0.0
    address = address or os.environ.get("RAY_ADDRESS") or None
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                              "configure_logging": True, "log_to_driver": True}
    # the workers' import path leaves out this process's working directory (engine/worker_setup.py)
    kwargs["runtime_env"] = worker_runtime_env()
    if address is None:
        # the embedded default: always a fresh local Ray of our own, never a cluster that a
        # `ray start` on this machine happens to have left running (join one with --address)
        address = "local"
        kwargs["object_store_memory"] = 512 * 1024**2
        kwargs["_node_ip_address"] = "127.0.0.1"
    ray.init(address=address, **kwargs)
    return time.perf_counter() - t0
