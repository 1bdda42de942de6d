"""Runs a comparison suite: every cell as a Ray task, gathered into one comparison store.

A cell is one (device, battery entry, seed) of a suite (:meth:`labbench.spec.suite.Suite.cells`);
:func:`labbench.compare.cells.run_cell` measures it in one process and never raises (a cell
that fails comes back with status ``failed``). Cells fan out across whatever Ray cluster is
connected, as the trials of a sweep do (:mod:`labbench.engine.sweeper`): a task per cell,
asking for its device's CPUs and custom resources (so a rig's cells run on the node that
holds it), at most ``concurrency`` at a time. This process is the store's only writer
(:class:`labbench.store.comparison.ComparisonStore`): each finished cell becomes a group
with its result and curves and the root's ``ranking`` is rewritten, so an interrupted
suite (Ctrl-C) is marked ``aborted`` and keeps every cell that finished.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.protocol import DeviceSection
from ..spec.suite import Suite, load_suite
from ..store import new_run_path
from ..store.comparison import ComparisonStore, rank_cells
from .interrupts import SigintGuard
from .placement import check_resources
from .progress import ProgressBar
from .ray_runtime import cancel_running, ensure_ray

__all__ = ["Comparison", "DEFAULT_STORE_ROOT", "run_compare"]

#: where comparison stores go without ``store_root`` (the default ``store.root`` of runs and sweeps)
DEFAULT_STORE_ROOT = "runs"


@dataclass
class Comparison:
    """The outcome of a suite.

    Attributes
    ----------
    store : Path
        The comparison store.
    status : str
        ``complete`` (every cell ran; some may have failed, see ``failed``).
    ranking : dict
        Per entry, one row per device (``device``, ``mean``, ``std``, ``n``, ``values``,
        ``metric``), best first in the entry's direction.
    cells : int
        Cells run.
    failed : list of dict
        ``{device, entry, seed, error}`` of every cell that failed.
    not_applicable : list of dict
        ``{device, entry, why}``: entries a device's family cannot measure.
    timings : dict
        ``ray_startup_s``, ``compare_s`` and ``cells_s`` (the sum of the cells' own wall times).
    """

    store: Path
    status: str
    ranking: dict[str, list[dict[str, Any]]]
    cells: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    not_applicable: list[dict[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def run_compare(suite: Suite | str | os.PathLike[str], *, address: str | None = None,
                store_root: str | os.PathLike[str] | None = None, progress: bool = True,
                console: Any = None) -> Comparison:
    """Run every cell of ``suite`` on Ray and gather them into one comparison store.

    Parameters
    ----------
    suite : Suite or path-like
        A validated suite, or its file (validated by :func:`labbench.spec.suite.load_suite`).
    address : str, optional
        Ray cluster to join (default: ``RAY_ADDRESS``, the shared local Ray, or a fresh one).
    store_root : path-like, optional
        Directory of the store (default ``runs``).
    progress : bool
        Show a progress bar over the cells.
    console : rich.console.Console, optional
        Where the progress bar is drawn.

    Returns
    -------
    Comparison

    Raises
    ------
    SuiteError
        When ``suite`` is a file that does not validate (no store is created).
    KeyboardInterrupt
        On Ctrl-C, after the store is marked ``aborted`` (finished cells kept).
    """
    from ..compare.cells import run_cell

    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    cells = suite.cells()
    own_ray = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    timings = {"ray_startup_s": ensure_ray(address)}
    import ray    # after ensure_ray, which sets the variables Ray reads on import (loopback)

    placement = {d.name: suite.placement(d) for d in suite.devices}
    # a cell no node can take would wait forever
    check_resources([DeviceSection(driver=d.family, name=d.name, resources=placement[d.name][1])
                     for d in suite.devices])
    remotes = {}
    for name, (cpus, resources) in placement.items():
        opts: dict[str, Any] = {"num_cpus": cpus, "max_retries": 0}
        if resources:
            opts["resources"] = resources
        remotes[name] = ray.remote(run_cell).options(**opts)
    widest = max(cpus for cpus, _ in placement.values())
    concurrency = suite.suite.concurrency or max(1, int(ray.cluster_resources().get("CPU", 1) // max(widest, 1e-9)))

    attrs = {"suite_name": suite.suite.name, "description": suite.suite.description, "suite_text": suite.text,
             "suite_source": suite.source, "narrowed": suite.narrowed, "scale": suite.suite.scale,
             "devices": suite.device_info(), "entries": suite.entry_info(), "seeds": suite.seeds,
             "not_applicable": suite.not_applicable, "n_cells": len(cells), "concurrency": concurrency,
             "cells_planned": [{k: c[k] for k in ("device", "entry", "seed")} for c in cells]}
    root = Path(store_root if store_root is not None else DEFAULT_STORE_ROOT)
    with SigintGuard() as guard:
        # a Ctrl-C lands after the store is made (never half-made) and is ignored while it is marked
        with guard.held():
            store = ComparisonStore(new_run_path(root, suite.suite.name + "-compare"), attrs)
        return _gather(store, suite, cells, remotes, concurrency, timings, progress, console, own_ray, guard)


def _gather(store: ComparisonStore, suite: Suite, cells: list[dict[str, Any]], remotes: dict[str, Any],
            concurrency: int, timings: dict[str, float], progress: bool, console: Any, own_ray: bool,
            guard: SigintGuard) -> Comparison:
    """Run the cells, ``concurrency`` at a time, and add each to ``store`` as it finishes."""
    import ray

    entries = {e["name"]: e for e in suite.entry_info()}
    results: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    running: dict[Any, int] = {}
    nxt = 0
    bar = ProgressBar(len(cells), f"compare {suite.suite.name}", enabled=progress, console=console, unit="cells")

    def submit() -> None:
        nonlocal nxt
        cell = cells[nxt]
        running[remotes[cell["device"]].remote(cell)] = nxt
        nxt += 1

    try:
        with bar:
            while nxt < len(cells) or running:
                while nxt < len(cells) and len(running) < concurrency:
                    submit()
                done, _ = ray.wait(list(running), num_returns=1)
                index = running.pop(done[0])
                if nxt < len(cells):     # refill before writing, so a core never waits for the store
                    submit()
                result, curves = _outcome(cells[index], done[0])
                store.add_cell(result, curves)
                results.append(result)
                if result.get("status") != "complete":
                    failed.append({"device": result["device"], "entry": result["entry"], "seed": result["seed"],
                                   "error": result.get("error")})
                bar.advance(1)
        timings["compare_s"] = time.perf_counter() - t0
        timings["cells_s"] = sum(float(((r.get("cost") or {}).get("wall_s")) or 0.0) for r in results)
        store.set_attrs(timings=timings, n_failed=len(failed))
        guard.stop()
        store.finish("complete")
    except KeyboardInterrupt:
        guard.stop()
        store.set_attrs(n_failed=len(failed))
        store.finish("aborted", f"interrupted by the user (SIGINT) after {len(results)} of {len(cells)} cells")
        cancel_running(running, own_ray)
        raise
    except BaseException as exc:
        guard.stop()
        store.finish("failed", "".join(traceback.format_exception_only(type(exc), exc)).strip())
        cancel_running(running, own_ray)
        raise
    return Comparison(store=store.path, status="complete", ranking=rank_cells(results, entries), cells=len(results),
                      failed=failed, not_applicable=suite.not_applicable, timings=timings)


def _outcome(cell: dict[str, Any], ref: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(result, curves) of a finished cell task; a task that died (its worker lost, out of
    memory) becomes a ``failed`` cell with the cause."""
    import ray

    base = {"device": cell["device"], "family": cell["family"], "entry": cell["entry"], "seed": cell["seed"]}
    try:
        result, curves = ray.get(ref)
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None) or exc
        text = "".join(traceback.format_exception_only(type(cause), cause)).strip()
        return {**base, "status": "failed", "error": text, "metrics": {}, "primary": None}, {}
    # the store's paths come from the cell, whatever the result says
    return {**dict(result), **base}, dict(curves or {})
