"""What every Ray worker of a bench does first: keep the run's working directory off its import path.

``ray.init`` puts the driver's current directory (and its script's directory) on every
worker's ``sys.path``, in front of the installed packages, so a stray ``zarr.py`` or a
module a protocol used to name, lying in the directory a run was started from, would be
imported by the device and readout workers. :func:`runtime_env` is passed to ``ray.init``
by :func:`labbench.engine.ray_runtime.ensure_ray`; its set-up hook :func:`private_imports`
runs in each worker before any task and takes those entries out again.

The hook also fixes the worker's mmap threshold (:mod:`labbench.engine.memory`), so the
device and trainer actors' memory stays flat in run length.

Code a worker needs comes from installed packages, ``PYTHONPATH`` (which workers inherit),
or is sent by value (classes defined in ``__main__`` or a notebook).
"""

from __future__ import annotations

import os
import sys
from typing import Any

#: environment variable carrying the directories to keep off the workers' import path
STRIP_ENV = "LABBENCH_WORKER_STRIP_PATHS"


def runtime_env() -> dict[str, Any]:
    """The job-level ``runtime_env`` for ``ray.init`` that runs :func:`private_imports` in every worker."""
    return {"worker_process_setup_hook": f"{__name__}.private_imports",
            "env_vars": {STRIP_ENV: os.getcwd()}}


def private_imports() -> None:
    """Remove the driver's working directory (and ``""``, ``"."``) from this worker's ``sys.path``;
    fix its mmap threshold (:func:`labbench.engine.memory.keep_large_arrays_mapped`)."""
    try:
        # Ray adds the driver's directories when the job's first task arrives: have it do so
        # now, so that they can be taken out before any task runs (Ray 2.x; without it, the
        # entries Ray adds later stay, which tests/test_protocol_data.py would catch)
        from ray._raylet import maybe_initialize_job_config

        maybe_initialize_job_config()
    except Exception:   # pragma: no cover - another Ray version
        pass
    drop = {"", ".", *filter(None, os.environ.get(STRIP_ENV, "").split(os.pathsep))}
    sys.path[:] = [p for p in sys.path if p not in drop]
    from .memory import keep_large_arrays_mapped

    keep_large_arrays_mapped()
