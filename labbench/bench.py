"""The bench: runs a validated protocol on a device in a Ray actor and records it in a run store.

Execution is separated from description: :mod:`labbench.protocol` says what to do;
this module does the I/O. The device actor computes block ``k+1`` while this process
(the store's one writer) writes block ``k``, so the device never waits for the disk.
Each readout is trained by its own trainer actor that tails the store as it is written
(:mod:`labbench.live`), so the writer never waits for learning either; when the stream
ends the bench collects the trained readouts and runs the closed-loop evaluation in the
device actor.
"""

from __future__ import annotations

import logging
import os
import resource
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .live import TrainResult
from .metrics import nrmse
from .protocol import Protocol, load
from .store import PHASES, ReadoutWriter, RunReader, RunStore, new_run_path

#: environment that keeps Ray quiet, local and on loopback (see shared/PLATFORM.md)
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
}

#: device calls in flight ahead of the writer
_PIPELINE_DEPTH = 2


@dataclass
class Run:
    """The outcome of :func:`run`.

    Attributes
    ----------
    store : Path
        The run's Zarr store; open it with :func:`labbench.open_run` or plain ``zarr``.
    status : str
        ``complete`` (failed and aborted runs raise instead).
    metrics : dict
        ``{readout name: {metric: value}}`` for the device.
    timings : dict
        Ray start-up, device start-up, streaming throughput and evaluation times.
    warnings : list of str
        The device's own warnings about the run (``Reservoir.health``), also in the store.
    """

    store: Path
    status: str
    metrics: dict[str, dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    #: warnings about the device's behaviour (e.g. a silent or saturated spiking network)
    warnings: list[str] = field(default_factory=list)

    def reader(self) -> RunReader:
        return RunReader(self.store)


def ensure_ray(address: str | None = None) -> float:
    """Start local Ray (no dashboard, quiet) or join ``address``; returns seconds spent."""
    import ray

    if ray.is_initialized():
        return 0.0
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS") or None
    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                              "configure_logging": True, "log_to_driver": True}
    if address is None:
        kwargs["object_store_memory"] = 512 * 1024**2
        kwargs["_node_ip_address"] = "127.0.0.1"
    ray.init(address=address, **kwargs)
    return time.perf_counter() - t0


def run(
    protocol: Protocol | str | os.PathLike[str],
    *,
    set: dict[str, Any] | list[str] | None = None,  # noqa: A002 - mirrors the CLI's --set
    address: str | None = None,
    store_root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    console: Any = None,
) -> Run:
    """Run a protocol and record it.

    Parameters
    ----------
    protocol : Protocol or path
        A validated protocol, or the path of a TOML file.
    set : dict or list of "key=value"
        Overrides applied before validation (when ``protocol`` is a path).
    address : str, optional
        Ray cluster to join (default: ``RAY_ADDRESS`` or a local Ray started on demand).
    store_root : path, optional
        Directory of the run store (default: the protocol's ``store.root``).
    progress : bool
        Show a progress bar (samples, rate, ETA).

    Returns
    -------
    Run

    Raises
    ------
    ProtocolError
        Before anything starts, if the protocol is invalid (no store is created).
    KeyboardInterrupt
        After marking the store ``aborted`` and closing the device.
    """
    proto = protocol if isinstance(protocol, Protocol) else load(protocol, overrides=set)
    return _Execution(proto, address=address, store_root=store_root, progress=progress, console=console).run()


class _Execution:
    def __init__(self, proto: Protocol, *, address, store_root, progress, console) -> None:
        self.proto = proto
        self.address = address
        self.store_root = Path(store_root if store_root is not None else proto.store.root)
        self.progress = progress
        self.console = console
        self.timings: dict[str, float] = {}

    def run(self) -> Run:
        import ray

        p = self.proto
        total = p.run.total
        data = p.task.generate_run(p.run.washout, p.run.train, p.run.test, p.protocol.seed)
        phase = np.repeat(np.array([PHASES["washout"], PHASES["train"], PHASES["test"]], dtype=np.int8),
                          [p.run.washout, p.run.train, p.run.test])
        self.timings["ray_startup_s"] = ensure_ray(self.address)

        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .actors import DeviceActor, TrainerActor

        t0 = time.perf_counter()
        actor = ray.remote(num_cpus=1, max_restarts=0)(DeviceActor).remote(p.device.driver, p.device_params())
        store: RunStore | None = None
        trainers: list = []
        try:
            info = ray.get(actor.info.remote())
            self.timings["device_startup_s"] = time.perf_counter() - t0
            spec = info["spec"]
            path = new_run_path(self.store_root, p.protocol.name)
            store = RunStore(path, p.text, {
                "protocol_name": p.protocol.name, "protocol_source": p.source, "overrides": p.overrides,
                "protocol": p.resolved(), "seed": p.protocol.seed, "ray_address": self.address or "local",
                "device_node_id": info["node_id"]})
            device = p.device.group
            first = ray.get(actor.run.remote(data.inputs[:0]))[0]  # dtype probe, zero rows
            store.add_device(device, spec=spec, describe=info["describe"], n_outputs=p.task.n_outputs,
                             dtype=str(first.dtype), chunk_rows=p.run.block, expected_rows=total,
                             layout={"washout": p.run.washout, "train": p.run.train, "test": p.run.test},
                             sequence=data.sequence is not None)
            # trainers read the store through the file system: keep them on this node
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            for ro in p.readouts:
                tr = ray.remote(num_cpus=0, max_restarts=0)(TrainerActor).options(scheduling_strategy=here).remote(
                    str(path), ro.describe(), device, p.task)
                trainers.append((ro.label, tr, tr.train.remote()))
            self._stream(actor, store, device, data, phase)
            store.end_stream(device)
            results = self._collect(trainers)
            metrics = self._evaluate(actor, store, device, data, results)
            self.timings.update(ray.get(actor.stats.remote()))
            device_warnings = ray.get(actor.health.remote())
            store.set_attrs(warnings=device_warnings)
            self.timings["writer_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            store.set_attrs(timings=self.timings)
            store.finish("complete")
            return Run(store=path, status="complete", metrics=metrics, timings=self.timings,
                       warnings=device_warnings)
        except KeyboardInterrupt:
            if store is not None:
                store.finish("aborted", "interrupted by the user (SIGINT)")
            raise
        except BaseException as exc:
            if store is not None:
                store.finish("failed", "".join(traceback.format_exception_only(type(exc), exc)).strip())
            raise
        finally:
            for _, tr, _ in trainers:
                ray.kill(tr)
            _close_actor(actor)

    def _collect(self, trainers: list) -> list[TrainResult]:
        """Wait for every trainer to finish the stream; a failed trainer fails the run."""
        import ray

        t0 = time.perf_counter()
        results = []
        for name, _, ref in trainers:
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None) or exc
                raise RuntimeError(f"readout {name!r} failed: {type(cause).__name__}: {cause}") from None
        self.timings["trainers_lag_s"] = time.perf_counter() - t0
        self.timings["trainers"] = {r.name: r.timings for r in results}
        return results

    def _stream(self, actor, store: RunStore, device: str, data, phase: np.ndarray) -> None:
        total = len(phase)
        block = self.proto.run.block
        bounds = [(a, min(a + block, total)) for a in range(0, total, block)]
        pending: deque = deque()
        nxt = 0
        in_dtype = np.dtype(store.input_dtype(device))

        def submit() -> None:
            nonlocal nxt
            a, b = bounds[nxt]
            pending.append(actor.run.remote(data.inputs[a:b]))
            nxt += 1

        bar = _ProgressBar(total, f"{self.proto.protocol.name} on {self.proto.device.driver}",
                           enabled=self.progress, console=self.console)
        import ray

        from threadpoolctl import threadpool_limits

        t_start = time.perf_counter()
        import zarr

        # one BLAS thread and one I/O thread for Zarr: the other cores belong to the device and
        # trainer actors (measured: Zarr's default thread pool slows a 1000-unit ESN by ~10%)
        with bar, threadpool_limits(limits=1, user_api="blas"), \
                zarr.config.set({"threading.max_workers": 1, "async.concurrency": 1}):
            while nxt < min(_PIPELINE_DEPTH, len(bounds)):
                submit()
            waiting = 0.0
            for a, b in bounds:
                t_wait = time.perf_counter()
                features, raw = ray.get(pending.popleft())
                waiting += time.perf_counter() - t_wait
                if nxt < len(bounds):
                    submit()
                if features.shape[0] != b - a:
                    raise RuntimeError(f"device returned {features.shape[0]} rows for a block of {b - a}")
                store.append(device, inputs=data.inputs[a:b].astype(in_dtype, copy=False), features=features,
                             targets=data.targets[a:b], phase=phase[a:b],
                             sequence=None if data.sequence is None else data.sequence[a:b], raw=raw)
                bar.advance(b - a)
        elapsed = time.perf_counter() - t_start
        self.timings["stream_s"] = elapsed
        # if the writer waited little, it (not the device) set the pace
        self.timings["writer_waiting_s"] = waiting
        self.timings["samples_per_s"] = total / elapsed if elapsed > 0 else float("inf")

    def _evaluate(self, actor, store: RunStore, device: str, data, results: list[TrainResult]) -> dict[str, Any]:
        """Closed-loop evaluation (tasks that have one) with each trained readout, in the device actor."""
        import ray

        from .store import _jsonable

        p = self.proto
        test_start = p.run.washout + p.run.train
        plan = p.task.free_run_plan(data, test_start, test_start + p.run.test) if p.run.test else None
        metrics: dict[str, Any] = {}
        t0 = time.perf_counter()
        specs = {ro.label: ro for ro in p.readouts}
        for res in results:
            m = dict(res.metrics)
            steps = specs[res.name].feedback_steps if res.name in specs else 0
            if steps:
                # FORCE with the loop closed, on the last train rows (never on test data)
                sync = plan.sync if plan is not None else min(100, test_start - steps - 1)
                lo = test_start - steps - sync
                if lo < 0:
                    raise RuntimeError(f"readout {res.name!r}: feedback_steps={steps} plus {sync} sync steps do not "
                                       f"fit before the test phase (row {test_start})")
                teacher = data.inputs[lo:test_start]
                res.pipeline, trace = ray.get(actor.learn_with_feedback.remote(res.pipeline, teacher, sync))
                tail = max(1, steps // 5)
                m["nrmse_feedback_learning"] = nrmse(teacher[-tail:], trace[-tail:])
            if plan is not None:
                sync = np.stack([data.inputs[s - plan.sync:s] for s in plan.starts])
                pred = ray.get(actor.free_run.remote(res.pipeline, sync, plan.horizon))
                m.update(p.task.score_free_run(data, plan, pred))
                group = ReadoutWriter.reopen(store.path, device, res.name)
                group.create_array("free_run", data=np.asarray(pred, dtype="float64"),
                                   dimension_names=("start", "horizon", "output"), compressors=None)
                group.create_array("free_run_starts", data=np.asarray(plan.starts, dtype="int64"),
                                   dimension_names=("start",), compressors=None)
                group.attrs.update(_jsonable({"metrics": m}))
            store.set_summary_metrics(device, res.name, m)
            metrics[res.name] = m
        self.timings["evaluation_s"] = time.perf_counter() - t0
        return metrics


def _close_actor(actor) -> None:
    import ray

    try:
        ray.get(actor.close.remote(), timeout=30)
    except Exception:
        pass
    finally:
        ray.kill(actor)


class _ProgressBar:
    """A rich progress bar over samples (count, rate, ETA), or nothing."""

    def __init__(self, total: int, label: str, *, enabled: bool, console: Any = None) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("samples  {task.fields[rate]}"), TimeRemainingColumn(), console=console, transient=False)
        self._task = self._progress.add_task(label, total=total, rate="")
        self._t0 = time.perf_counter()
        self._done = 0

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        if not self.enabled:
            return
        self._done += n
        rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
        self._progress.update(self._task, advance=n, rate=f"{rate:,.0f}/s")
