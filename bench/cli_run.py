"""One ``labbench run`` as a user types it, in a fresh process, timed from outside.

Shared by the fixed-cost scripts (``run_startup.py``, ``trainer_drain.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TimedRun", "load_average", "timed_cli_run"]


def load_average() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


@dataclass
class TimedRun:
    """Wall time from outside, the load before and after, and the run's ``--json`` summary."""

    wall_s: float
    load_before: float
    load_after: float
    summary: dict[str, Any]


def timed_cli_run(protocol: Path, store_root: Path, env: dict[str, str], what: str = "run") -> TimedRun:
    """Run ``python -m labbench.cli run PROTOCOL --quiet --json`` from a neutral directory (so the
    checkout is not imported by accident from the current one).

    Raises
    ------
    RuntimeError
        When the run exits non-zero, with its last line of stderr.
    """
    load0 = load_average()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "labbench.cli", "run", str(protocol), "--quiet", "--json",
                           "--store-root", str(store_root)], env=env, cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{what}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
    return TimedRun(wall, load0, load_average(), json.loads(done.stdout.strip().splitlines()[-1]))
