"""Runs a sweep: every trial as a Ray task, gathered into one sweep store as trials finish.

Trials fan out across whatever Ray cluster is connected (a task per trial, each asking for
its device's CPUs and custom resources), at most ``concurrency`` at a time (default: as
many as the cluster's CPUs hold). This process is the store's only writer: each finished
trial becomes a group ``trial-NNNN`` with its parameters, metrics, learning curves and
timings, and the root's ``summary`` (every trial, sorted by the ranking metric) and
``best`` are rewritten, so an interrupted sweep keeps every finished trial and its ranking.

Store layout::

    <sweep>.zarr          attrs: kind = "labbench.sweep", protocol text, sweep, status,
                                 ranking {readout, metric, maximise}, summary, best, trials
      trial-0000/         attrs: index, params, status, metrics, history, timings, warnings,
                                 node_id, error
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr

from ..spec.protocol import Protocol, load, trial_protocols
from ..store import jsonable, new_run_path, now_iso
from .interrupts import SigintGuard
from .placement import check_resources
from .progress import ProgressBar
from .ray_runtime import cancel_running, ensure_ray

__all__ = ["Sweep", "SweepStore", "read_sweep", "run_sweep"]


@dataclass
class Sweep:
    """The outcome of a sweep.

    Attributes
    ----------
    store : Path
        The sweep store.
    status : str
        ``complete`` (every trial ran; some may have failed, see ``summary``).
    summary : list of dict
        One row per trial: ``trial``, ``status``, the swept parameters and the ranking
        metric, best first (failed trials last).
    best : dict or None
        The best trial's row.
    """

    store: Path
    status: str
    summary: list[dict[str, Any]]
    best: dict[str, Any] | None
    timings: dict[str, float] = field(default_factory=dict)


class SweepStore:
    """The single writer of a sweep store."""

    def __init__(self, path: str | os.PathLike[str], proto: Protocol, ranking: tuple[str, str, bool],
                 n_trials: int) -> None:
        from ..version import __version__
        from ..store import versions

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._root = zarr.open_group(str(self.path), mode="w-")
        readout, metric, maximise = ranking
        self.ranking = {"readout": readout, "metric": metric, "maximise": maximise}
        self._rows: list[dict[str, Any]] = []
        self._root.update_attributes(jsonable({
            "labbench_version": __version__, "kind": "labbench.sweep", "protocol_name": proto.protocol.name,
            "protocol_text": proto.text, "protocol_source": proto.source, "overrides": proto.overrides,
            "sweep": proto.sweep.model_dump(mode="json"), "ranking": self.ranking, "n_trials": n_trials,
            "versions": versions(), "started": now_iso(), "ended": None, "status": "running", "error": None,
            "summary": [], "best": None, "writer_pid": os.getpid(), "host": platform.node()}))

    def add_trial(self, index: int, params: dict[str, Any], *, status: str, result: Any = None,
                  error: str | None = None) -> dict[str, Any]:
        """Write one finished trial and re-rank the summary; returns its summary row."""
        attrs: dict[str, Any] = {"index": index, "params": params, "status": status, "error": error}
        value = None
        if result is not None:
            attrs.update(metrics=result.metrics, history=result.history, timings=result.timings,
                         warnings=result.warnings, node_id=result.node_id)
            value = (result.metrics.get(self.ranking["readout"]) or {}).get(self.ranking["metric"])
        row = {"trial": index, "status": status, **params, self.ranking["metric"]: value}
        self._rows.append(row)
        # the group is born with its attributes: a reader never sees a trial without them
        self._root.create_group(f"trial-{index:04d}", attributes=jsonable(attrs))
        self.write_summary()
        return row

    def write_summary(self) -> None:
        """Rewrite the ranked ``summary`` and ``best`` from every trial recorded so far."""
        summary = self.summary
        metric = self.ranking["metric"]
        ok = [r for r in summary if r["status"] == "complete" and r[metric] is not None and r[metric] == r[metric]]
        self._root.update_attributes(jsonable({"summary": summary, "best": ok[0] if ok else None}))

    def set_attrs(self, **attrs: Any) -> None:
        self._root.update_attributes(jsonable(attrs))

    def finish(self, status: str, error: str | None = None) -> None:
        self._root.update_attributes(jsonable({"status": status, "error": error, "ended": now_iso()}))

    @property
    def summary(self) -> list[dict[str, Any]]:
        return rank(self._rows, self.ranking["metric"], self.ranking["maximise"])


def rank(rows: list[dict[str, Any]], metric: str, maximise: bool) -> list[dict[str, Any]]:
    """Rows sorted best first; failed trials and missing or NaN values last."""
    def key(r: dict[str, Any]) -> tuple[int, float]:
        v = r.get(metric)
        if r.get("status") != "complete" or v is None or v != v:
            return (1, 0.0)
        return (0, -v if maximise else v)

    return sorted(rows, key=key)


def run_sweep(protocol: Protocol | str | os.PathLike[str], *, set: dict[str, Any] | list[str] | None = None,  # noqa: A002
              address: str | None = None, store_root: str | os.PathLike[str] | None = None,
              progress: bool = True, console: Any = None) -> Sweep:
    """Run every trial of the protocol's ``[sweep]`` and gather them into one store.

    Every trial is validated before the first one starts (a bad key, an empty grid or a
    budget of 0 raises :class:`~labbench.spec.protocol.ProtocolError` and creates no store).
    A trial that raises is recorded as ``failed`` with its error and the sweep goes on;
    Ctrl-C cancels the trials still running, marks the store ``aborted`` and re-raises.
    """
    from .trial import run_trial

    proto = protocol if isinstance(protocol, Protocol) else load(protocol, overrides=set)
    if proto.sweep is None:
        raise ValueError(f"protocol {proto.protocol.name!r} has no [sweep] table")
    planned = trial_protocols(proto)          # every trial validated before anything starts
    first = proto.readouts[0].label if proto.readouts else "ridge"
    ranking = proto.sweep.ranking(first, proto.task.primary_metric)
    # started here: its workers go when this process shuts it down
    own_ray = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    timings = {"ray_startup_s": ensure_ray(address)}
    import ray    # after ensure_ray, which sets the variables Ray reads on import (loopback)

    dev = proto.all_devices[0]
    check_resources([dev])                   # a trial no node can take would wait forever
    cpus = dev.num_cpus if dev.num_cpus is not None else 1.0
    options = {"num_cpus": cpus, "resources": dict(dev.resources) or None, "max_retries": 0}
    remote = ray.remote(run_trial).options(**{k: v for k, v in options.items() if v is not None})
    concurrency = proto.sweep.concurrency or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1e-9)))

    root = Path(store_root if store_root is not None else proto.store.root)
    with SigintGuard() as guard:
        # a Ctrl-C lands after the store is made (never half-made) and is ignored while it is marked
        with guard.held():
            store = SweepStore(new_run_path(root, proto.protocol.name + "-sweep"), proto, ranking, len(planned))
        return _gather(store, proto, planned, remote, concurrency, timings, progress, console, own_ray, guard)


def _gather(store: SweepStore, proto: Protocol, planned: list, remote: Any, concurrency: int,
            timings: dict[str, float], progress: bool, console: Any, own_ray: bool, guard: SigintGuard) -> Sweep:
    """Run the trials, ``concurrency`` at a time, and add each to ``store`` as it finishes."""
    import ray

    ranking = store.ranking["readout"], store.ranking["metric"], store.ranking["maximise"]
    t0 = time.perf_counter()
    running: dict[Any, int] = {}
    nxt = 0
    bar = ProgressBar(len(planned), f"sweep {proto.protocol.name}", enabled=progress, console=console,
                       unit="trials")
    try:
        store.set_attrs(trials=[params for params, _ in planned], concurrency=concurrency)
        with bar:
            while nxt < len(planned) or running:
                # refill before writing the finished trial's result, so a core never waits
                # for the store
                while nxt < len(planned) and len(running) < concurrency:
                    running[remote.remote(planned[nxt][1])] = nxt
                    nxt += 1
                done, _ = ray.wait(list(running), num_returns=1)
                index = running.pop(done[0])
                if nxt < len(planned):
                    running[remote.remote(planned[nxt][1])] = nxt
                    nxt += 1
                params = planned[index][0]
                try:
                    result = ray.get(done[0])
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    text = "".join(traceback.format_exception_only(type(cause), cause)).strip()
                    store.add_trial(index, params, status="failed", error=text)
                else:
                    store.add_trial(index, params, status="complete", result=result)
                bar.advance(1)
        timings["sweep_s"] = time.perf_counter() - t0
        store.set_attrs(timings=timings)
        guard.stop()
        store.finish("complete")
    except KeyboardInterrupt:
        guard.stop()
        store.write_summary()
        store.finish("aborted", f"interrupted by the user (SIGINT) after {len(store.summary)} of "
                                f"{len(planned)} trials")
        cancel_running(running, own_ray)
        raise
    except BaseException as exc:
        guard.stop()
        store.finish("failed", "".join(traceback.format_exception_only(type(exc), exc)).strip())
        cancel_running(running, own_ray)
        raise
    summary = store.summary
    best = next((r for r in summary if r["status"] == "complete" and r.get(ranking[1]) is not None), None)
    return Sweep(store=store.path, status="complete", summary=summary, best=best, timings=timings)


def read_sweep(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The root attributes of a sweep store, or None when ``path`` is not one."""
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception:
        return None
    attrs = dict(root.attrs)
    return attrs if attrs.get("kind") == "labbench.sweep" else None

