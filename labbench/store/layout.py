"""Names, paths and provenance helpers shared by the run store's writer and readers.

The layout of a run store is described in :mod:`labbench.store`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

PHASES = {"washout": 0, "train": 1, "test": 2}
STATUSES = ("running", "complete", "aborted", "failed")
TIME_ARRAYS = ("inputs", "features", "targets", "phase")
# a live store holds writers' temporary files (``*.partial``); zarr warns about them when
# a reader lists a group, which is expected and harmless
warnings.filterwarnings("ignore", message=r".*\.partial is not recognized", category=UserWarning)


class StoreError(Exception):
    """A path that is not a readable labbench run store."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def new_run_path(root: str | os.PathLike[str], protocol_name: str) -> Path:
    """``root/<UTC timestamp>_<protocol>.zarr``, never an existing path."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", protocol_name).strip("-") or "run"
    root = Path(root)
    path = root / f"{stamp}_{safe}.zarr"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}_{safe}-{n}.zarr"
    return path


def jsonable(obj: Any) -> Any:
    """Round-trip through JSON so attributes never hold numpy scalars or tuples."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)



def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("numpy", "zarr", "ray", "numba", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out



def writer_is_dead(attrs: dict[str, Any]) -> bool:
    """Whether the writer process of a store is gone (decidable on its own host only)."""
    import psutil

    pid = attrs.get("writer_pid")
    return attrs.get("host") == platform.node() and isinstance(pid, int) and not psutil.pid_exists(pid)

