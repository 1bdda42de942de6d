"""The bench: runs a validated protocol on a device in a Ray actor and records it in a run store.

Execution is separated from description: :mod:`labbench.spec.protocol` says what to do;
this module does the I/O. The device actor computes block ``k+1`` while this process
(the store's one writer) writes block ``k``, so the device never waits for the disk.
Each readout is trained by its own trainer actor that tails the store as it is written
(:mod:`labbench.engine.live`), so the writer never waits for learning either; when the stream
ends the bench collects the trained readouts and runs the closed-loop evaluation in the
device actor.
"""

from __future__ import annotations

import os
import resource
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .coalescing_writer import CoalescingWriter
from .errors import DeviceDown, remote_cause
from .placement import device_cpus
from .progress import ProgressBar
from .interrupts import SigintGuard
from .memory import release_object_store_pages
from .ray_runtime import connect
from .task_feed import PhaseColumn, TaskFeed
from ..spec.policy import LoopBlock, NextBlock, check_next, loop_timing
from ..spec.protocol import DeviceSection, Protocol, chain_order, chained_params, from_dict, from_text, load
from ..spec.unsafe_limits import SignedLimits, UnsafeLimitsError, read_unsafe_limits
from ..store import ReadoutWriter, RunReader, RunStore, StoreError, new_run_path, now_iso, writer_is_dead
from ..tasks import Task, TaskData

if TYPE_CHECKING:
    from .trained import TrainResult

#: device calls in flight ahead of the writer
_PIPELINE_DEPTH = 2
#: rows per piece of task data generated during the stream (at least one block)
_FEED_ROWS = 4096


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
        Where the run's time went: ``startup_s`` (``ray_startup_s`` to start or connect to
        Ray, ``device_startup_s``, the store and the trainers), ``stream_s``, ``drain_s``
        (the trainers finishing after the last block), ``evaluation_s`` and ``wall_s`` (the
        whole run; the four parts sum to at most it), plus throughput and memory figures.
    warnings : list of str
        The devices' own warnings about the run (``Reservoir.health``), also in the store.
    by_device : dict
        ``{device group: {readout name: {metric: value}}}``; with one device ``metrics``
        is its entry, with several ``metrics`` is keyed ``"<device>/<readout>"``.
    """

    store: Path
    status: str
    metrics: dict[str, dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)
    #: warnings about the device's behaviour (e.g. a silent or saturated spiking network)
    warnings: list[str] = field(default_factory=list)
    by_device: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: which Ray the run used: "fresh local Ray", "running local Ray at 127.0.0.1:port", "cluster at ..."
    ray: str = ""

    def reader(self) -> RunReader:
        return RunReader(self.store)


def run(
    protocol: Protocol | str | os.PathLike[str],
    *,
    set: dict[str, Any] | list[str] | None = None,  # noqa: A002 - mirrors the CLI's --set
    address: str | None = None,
    store_root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    console: Any = None,
    sweep: bool = True,
    on_store: Callable[[Path], None] | None = None,
    unsafe_limits: str | os.PathLike[str] | SignedLimits | None = None,
) -> Run | Any:
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
    sweep : bool
        Run the protocol's ``[sweep]`` when it has one (returns a
        :class:`~labbench.engine.sweeper.Sweep`); ``False`` runs the base protocol once.
    on_store : callable, optional
        Called with the run store's path as soon as the store exists (before the first
        block), e.g. to open a monitor on it (``labbench run --monitor``).
    unsafe_limits : path, optional
        A signed-off file lifting safety ceilings (``--unsafe-limits``; format in
        :mod:`labbench.spec.unsafe_limits`). Its ``[limits]`` go to every device whose driver
        has ``check_unsafe_limits``, as an argument of its own (never through the protocol);
        the file (path, text, sha256, sign-off) is recorded in the store's root attribute
        ``unsafe_limits``.

    Returns
    -------
    Run (or Sweep)

    Raises
    ------
    ProtocolError
        Before anything starts, if the protocol is invalid (no store is created).
    UnsafeLimitsError
        Before anything starts, if ``unsafe_limits`` cannot be used.
    DeviceDown
        A device raised, stayed down after its restarts, or stopped answering: the store
        is marked ``aborted`` with the reason, every committed block kept.
    KeyboardInterrupt
        After marking the store ``aborted`` and closing the devices.
    """
    proto = protocol if isinstance(protocol, Protocol) else load(protocol, overrides=set)
    signed = (unsafe_limits if isinstance(unsafe_limits, SignedLimits) or unsafe_limits is None
              else read_unsafe_limits(unsafe_limits))
    if signed is not None and proto.sweep is not None and sweep:
        raise UnsafeLimitsError(f"{signed.path}: --unsafe-limits applies to one run; this protocol has a [sweep] "
                                f"(run its trials one at a time with --no-sweep and --set)")
    lifted = _lifted_limits(proto, signed)
    if proto.sweep is not None and sweep:
        from .sweeper import run_sweep

        return run_sweep(proto, address=address, store_root=store_root, progress=progress, console=console)
    return _Execution(proto, address=address, store_root=store_root, progress=progress, console=console,
                      on_store=on_store, signed=signed, lifted=lifted).run()


def _lifted_limits(proto: Protocol, signed: SignedLimits | None) -> dict[str, dict[str, float]]:
    """``{device group: [limits]}`` for the devices whose driver accepts the signed-off file
    (it has ``check_unsafe_limits``); refuses a file no device can use or one a driver refuses."""
    if signed is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for dev in proto.all_devices:
        check = getattr(proto.driver_class(dev), "check_unsafe_limits", None)
        if check is None:
            continue
        try:
            check(dict(signed.limits))
        except ValueError as exc:
            raise UnsafeLimitsError(f"{signed.path}: device {dev.group!r} ({dev.driver}): {exc}") from None
        out[dev.group] = dict(signed.limits)
    if not out:
        raise UnsafeLimitsError(f"{signed.path}: no device of this protocol ({proto.describe_devices()}) has "
                                f"safety limits to lift")
    return out


def resume(store: str | os.PathLike[str], *, address: str | None = None, progress: bool = True,
           console: Any = None, unsafe_limits: str | os.PathLike[str] | SignedLimits | None = None) -> Run:
    """Continue an aborted (or failed) run of deterministic devices from ``committed`` to the end.

    Each device is opened afresh and fed the stored run's inputs up to its ``committed``
    row (rebuilding its state exactly, as after a restart), then the run goes on appending
    to the same store. The readouts are trained again from the first row, so their
    results are those of an uninterrupted run.

    Raises
    ------
    StoreError
        Not a run store, a run that is complete or still running, or a device whose
        driver is not deterministic (its state cannot be rebuilt).
    UnsafeLimitsError
        The run was made with an --unsafe-limits file and ``unsafe_limits`` is not that
        same file (same sha256), or it was not and ``unsafe_limits`` is given.
    """
    reader = RunReader(store)
    attrs = reader.attrs
    status = attrs.get("status")
    if status == "complete":
        raise StoreError(f"{reader.path}: the run is complete; nothing to resume")
    if status == "running":
        if not writer_is_dead(attrs):
            raise StoreError(f"{reader.path}: the run is still running (writer pid {attrs.get('writer_pid')} on "
                             f"{attrs.get('host')}); resume only an aborted or failed run, or one whose writer "
                             f"died")
        # the writer was killed (SIGKILL, power cut): the store is as it left it, every committed row intact
    proto = stored_protocol(attrs, reader.path)
    signed = (unsafe_limits if isinstance(unsafe_limits, SignedLimits) or unsafe_limits is None
              else read_unsafe_limits(unsafe_limits))
    recorded = attrs.get("unsafe_limits") or None
    if recorded and (signed is None or signed.sha256 != recorded.get("sha256")):
        raise UnsafeLimitsError(f"{reader.path}: the run was made with lifted safety limits ({recorded.get('path')}, "
                                f"sha256 {str(recorded.get('sha256'))[:12]}); resume it with --unsafe-limits naming "
                                f"that same file" + (f", not {signed.path}" if signed is not None else ""))
    if signed is not None and not recorded:
        raise UnsafeLimitsError(f"{signed.path}: the run {reader.path} was made without lifted limits; resume it "
                                f"without --unsafe-limits")
    if proto.task.closed_loop:
        raise StoreError(f"{reader.path}: task {proto.task.name!r} is closed-loop: its policy decided each block "
                         f"from the device's live activity, which a fresh device cannot repeat, so the run "
                         f"cannot be resumed")
    for dev in proto.all_devices:
        cls = proto.driver_class(dev)
        if not cls.deterministic:
            raise StoreError(f"{reader.path}: device {dev.group!r} ({dev.driver}) is not deterministic: its state "
                             f"cannot be rebuilt from the stored inputs, so the run cannot be resumed")
    return _Execution(proto, address=address, store_root=reader.path.parent, progress=progress, console=console,
                      resume_path=reader.path, signed=signed, lifted=_lifted_limits(proto, signed)).run()


def stored_protocol(attrs: dict[str, Any], path: str | os.PathLike[str]) -> Protocol:
    """The protocol a run store was written by, rebuilt from its attributes."""
    source = attrs.get("protocol_source") or str(path)
    if attrs.get("protocol_table"):
        return from_dict(attrs["protocol_table"], source=source, text=attrs.get("protocol_text") or "",
                         overrides=attrs.get("overrides") or {})
    return from_text(attrs.get("protocol_text") or "", source=source, overrides=attrs.get("overrides") or {})


@dataclass
class _Pending:
    ref: Any
    a: int
    b: int
    submitted: float
    #: a chained device's inputs for these rows (its upstream's features), for the store
    inputs: Any = None


class _DeviceStream:
    """One device of a run: its actor, the blocks in flight, and its restarts.

    A chained device (``input = "<device>"``) has an ``upstream`` stream: it is fed each of
    the upstream's blocks once that block is in the store (``feed``), as the Ray object the
    upstream returned, so the rows go from one actor to the next without a copy through the
    store (and without one through this process when both run on one node, which the bench
    arranges).
    """

    def __init__(self, section: DeviceSection, driver: type, params: dict[str, Any], num_cpus: float,
                 unsafe_limits: dict[str, float] | None = None, upstream: _DeviceStream | None = None) -> None:
        from .warm_pool import start_device

        self.section = section
        self.group = section.group
        self.upstream = upstream
        self.downstream: list[_DeviceStream] = []
        if upstream is not None:
            upstream.downstream.append(self)
        options: dict[str, Any] = {"num_cpus": num_cpus, "max_restarts": section.max_restarts,
                                   "max_task_retries": 0}
        if section.resources:
            options["resources"] = dict(section.resources)
        elif upstream is not None:               # the stages of a chain share a node
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(upstream.info["node_id"], soft=False)
        self.params = params
        # a warm actor of `labbench ray start`'s pool when one fits, else a fresh one (engine/warm_pool.py)
        self.actor, self.info_ref = start_device(options, driver, params, unsafe_limits)
        self.info: dict[str, Any] = {}
        self.pending: deque[_Pending] = deque()
        #: a chained device's upstream blocks not yet sent: (a, b, upstream result ref, upstream features)
        self.feed: deque[tuple[int, int, Any, np.ndarray]] = deque()
        self.next_row = 0
        self.restarts: list[dict[str, Any]] = []

    def submit(self, data, total: int, block: int) -> None:
        """Keep ``_PIPELINE_DEPTH`` blocks in flight (a chained device: of the blocks fed so far)."""
        while len(self.pending) < _PIPELINE_DEPTH and self.next_row < total:
            if self.upstream is not None:
                if not self.feed:
                    return
                a, b, ref, features = self.feed.popleft()
                self.pending.append(_Pending(self.actor.run_chained.remote(ref), a, b, time.monotonic(),
                                             inputs=features))
                self.next_row = b
                continue
            a, b = self.next_row, min(self.next_row + block, total)
            self.pending.append(_Pending(self.actor.run.remote(data.inputs[a:b]), a, b, time.monotonic()))
            self.next_row = b

    def refeed(self, store: RunStore, block: int) -> None:
        """A chained device's feed rebuilt from the store: its upstream's committed rows from
        ``next_row`` on (after a restart or a resume, when the objects in flight are gone)."""
        import ray

        self.feed.clear()
        up = self.upstream.group
        done = store.committed(up)
        features = store.features(up)
        for a in range(self.next_row, done, block):
            b = min(a + block, done)
            f = np.asarray(features[a:b])
            self.feed.append((a, b, ray.put((f, {})), f))

    def wait_ready(self) -> dict[str, Any]:
        """The actor's info once it is (again) up; DeviceDown if it does not come up in time."""
        import ray

        deadline = time.monotonic() + self.section.timeout_s
        while True:
            try:
                return ray.get(self.actor.info.remote(), timeout=max(deadline - time.monotonic(), 0.1))
            except ray.exceptions.GetTimeoutError:
                raise DeviceDown(f"device {self.group!r} did not come back within {self.section.timeout_s:g} s "
                                 f"after its process died") from None
            except ray.exceptions.ActorDiedError as exc:
                raise DeviceDown(f"device {self.group!r} is down for good: {remote_cause(exc)}") from None
            except ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    raise DeviceDown(f"device {self.group!r} did not come back within "
                                     f"{self.section.timeout_s:g} s") from None
                time.sleep(0.2)

    def replay(self, data, rows: int, block: int) -> None:
        """Feed rows ``[0, rows)`` again, discarding the output, to rebuild a fresh device's state."""
        import ray

        for a in range(0, rows, block):
            b = min(a + block, rows)
            try:
                ray.get(self.actor.replay.remote(np.asarray(data.inputs[a:b])), timeout=self.section.timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise DeviceDown(f"device {self.group!r}: replaying rows {a}–{b} took more than "
                                 f"{self.section.timeout_s:g} s") from None


class _Execution:
    def __init__(self, proto: Protocol, *, address, store_root, progress, console,
                 resume_path: Path | None = None, on_store: Callable[[Path], None] | None = None,
                 signed: SignedLimits | None = None, lifted: dict[str, dict[str, float]] | None = None) -> None:
        self.proto = proto
        self.signed = signed                  # the --unsafe-limits file, if any
        self.lifted = dict(lifted or {})      # {device group: its [limits]}, passed to its actor
        self.on_store = on_store
        self.address = address
        self.store_root = Path(store_root if store_root is not None else proto.store.root)
        self.progress = progress
        self.console = console
        self.resume_path = resume_path
        self.timings: dict[str, float] = {}
        #: the run store, once it exists (set the moment it is created, for the abort paths)
        self.store: RunStore | None = None
        self.guard = SigintGuard()

    def run(self) -> Run:
        # Ctrl-C: the first raises KeyboardInterrupt; none tears the store's creation or status
        with self.guard:
            return self._run()

    def _prepare(self) -> tuple[TaskData | TaskFeed, PhaseColumn]:
        """The task's data and phase column.

        The data is a :class:`TaskFeed` (rows made block by block as the stream reads them, so
        this process's memory does not grow with the run) when :func:`_feeds_lazily` allows,
        else the whole run's arrays, generated here.
        """
        p = self.proto

        # a closed loop's inputs are decided during the run, by the task's policy
        if p.task.closed_loop:
            data = TaskData(inputs=np.zeros((0, p.task.n_inputs)), targets=np.zeros((0, p.task.n_outputs)))
        elif _feeds_lazily(p):
            data = TaskFeed(p.task, p.run.total, p.protocol.seed, max(p.run.block, _FEED_ROWS))
        else:
            data = p.task.generate_run(p.run.washout, p.run.train, p.run.test, p.protocol.seed)
        return data, PhaseColumn(p.run.washout, p.run.train, p.run.test)

    def _run(self) -> Run:
        from .memory import keep_large_arrays_mapped

        keep_large_arrays_mapped()   # the writer's memory flat in run length (engine/memory.py)
        p = self.proto
        loop = p.task.closed_loop
        t_run = time.perf_counter()
        # one after the other: measured on 2 cores, generating the data and importing the training
        # stack in a thread while Ray starts made Ray's start-up longer by more than they take
        # (docs/benchmarks.md, issue 18)
        data, phase = self._prepare()
        session = connect(self.address)
        self.timings["ray_startup_s"] = session.seconds
        import ray    # after connect, which sets the variables Ray reads on import (loopback)

        t0 = time.perf_counter()
        cpus = dict(zip((d.group for d in p.all_devices), device_cpus(p.all_devices)))
        # every device actor fed by the task starts at once, each waiting for its own resources (a
        # pinned rig's node); a chained device starts once the device it reads is up, on its node
        streams: list[_DeviceStream] = []
        store: RunStore | None = None
        trainers: list = []
        try:
            # the trainer actors start first: their worker's start-up and imports (the training
            # stack) overlap the devices' and the store's; they read the store through the file
            # system, so they stay on this node, and are given the store once it exists
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            from .warm_pool import start_trainer

            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            started = [(dev.group, ro.label, start_trainer({"num_cpus": 0, "max_restarts": 0, "scheduling_strategy": here},
                                                           "", ro.describe(), dev.group, p.task))
                       for dev in p.all_devices for ro in p.readouts]
            starting = [(g, label, tr) for g, label, (tr, _) in started]
            trainers += [(g, label, tr, None) for g, label, tr in starting]     # killed in `finally` if need be
            by_group: dict[str, _DeviceStream] = {}
            for dev in chain_order(p):
                up = by_group.get(dev.input) if dev.input is not None else None
                params = p.device_params(dev)
                if up is not None:
                    self._await_info(up)
                    params = chained_params(self.proto, dev, params, int(up.info["spec"]["n_features"]))
                s = _DeviceStream(dev, p.driver_class(dev), params, cpus[dev.group], self.lifted.get(dev.group), up)
                by_group[dev.group] = s
                streams.append(s)
            order = {d.group: i for i, d in enumerate(p.all_devices)}
            streams.sort(key=lambda st: order[st.group])    # the store lists devices in protocol order
            for s in streams:
                self._await_info(s)
            self.timings["device_startup_s"] = time.perf_counter() - t0
            self.timings["warm_actors"] = (sum(bool(s.info.get("warm")) for s in streams)
                                           + sum(warm for _, _, (_, warm) in started))
            t0 = time.perf_counter()
            store = self._open_store(streams, data)
            store.set_attrs(ray={"mode": session.mode, "address": session.address})
            self.timings["store_open_s"] = time.perf_counter() - t0
            if self.on_store is not None:
                self.on_store(store.path)
            trainers[:] = [(g, label, tr, tr.train.remote(0.05, str(store.path))) for g, label, tr in starting]
            self.timings["startup_s"] = time.perf_counter() - t_run
            if loop and p.run.closed_loop == "actor":     # the policy in the device's actor
                from types import SimpleNamespace

                from .actor_loop import stream_in_actor

                stream_in_actor(p, streams, store, phase, timings=self.timings, progress=self.progress,
                                console=self.console, recover=lambda s, exc: self._recover(
                                    s, store, SimpleNamespace(inputs=store.inputs(s.group)), exc))
            elif loop:
                self._stream_loop(streams, store, phase)
            else:
                self._stream(streams, store, data, phase)
            for s in streams:
                store.end_stream(s.group)
                if self._device_evaluates(data):   # its imports run while the trainers drain
                    s.actor.prepare_evaluation.remote()
            results = self._collect(trainers)
            by_device: dict[str, dict[str, Any]] = {}
            device_warnings: list[str] = []
            for s in streams:
                by_device[s.group] = self._evaluate(s, store, data, results.get(s.group, []))
                if loop:
                    by_device[s.group]["loop"] = self._loop_metrics(s, store)
                summary = ray.get(s.actor.summary.remote())
                if summary:
                    by_device[s.group]["device"] = summary
                    store.set_summary_metrics(s.group, "device", summary)
                self.timings.setdefault("devices", {})[s.group] = ray.get(s.actor.stats.remote())
                found = ray.get(s.actor.health.remote())
                store.set_device_attrs(s.group, warnings=found)
                device_warnings += [f"{s.group}: {w}" for w in found] if len(streams) > 1 else found
            if len(streams) == 1:
                self.timings.update(self.timings.pop("devices")[streams[0].group])
            store.set_attrs(warnings=device_warnings)
            self.timings["writer_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.timings["wall_s"] = time.perf_counter() - t_run
            store.set_attrs(timings=self.timings)
            self.guard.stop()                    # complete: a late Ctrl-C no longer aborts it
            store.finish("complete")
            metrics = (by_device[streams[0].group] if len(streams) == 1 else
                       {f"{g}/{ro}": m for g, ms in by_device.items() for ro, m in ms.items()})
            return Run(store=store.path, status="complete", metrics=metrics, timings=self.timings,
                       warnings=device_warnings, by_device=by_device, ray=session.describe())
        except KeyboardInterrupt:
            self._mark("aborted", "interrupted by the user (SIGINT)")
            raise
        except DeviceDown as exc:
            self._mark("aborted", str(exc))
            raise
        except BaseException as exc:
            self._mark("failed", "".join(traceback.format_exception_only(type(exc), exc)).strip())
            raise
        finally:
            for _, _, tr, _ in trainers:
                ray.kill(tr)
            for s in streams:
                _close_actor(s.actor)

    def _device_evaluates(self, data) -> bool:
        """Whether the evaluation after the stream drives the device (a free run, FORCE with feedback)."""
        p = self.proto
        if any(ro.feedback_steps for ro in p.readouts):
            return True
        if p.task.closed_loop or not p.run.test:
            return False
        test_start = p.run.washout + p.run.train
        return p.task.free_run_plan(data, test_start, test_start + p.run.test) is not None

    def _await_info(self, s: _DeviceStream) -> None:
        """Wait for ``s``'s actor to open its device (its ``info``); DeviceDown if it does not."""
        import ray

        if s.info:
            return
        try:
            s.info = ray.get(s.info_ref, timeout=s.section.timeout_s)
        except ray.exceptions.GetTimeoutError:
            need = f" (needs resources {s.section.resources})" if s.section.resources else ""
            raise DeviceDown(f"device {s.group!r} did not start within {s.section.timeout_s:g} s{need}: "
                             f"no node of the cluster can take it, or its driver hangs in open()") from None
        except ray.exceptions.RayError as exc:
            raise DeviceDown(f"device {s.group!r} failed to open: {remote_cause(exc)}") from None

    def _mark(self, status: str, error: str) -> None:
        """The run ends ``status``: write it to the store (if one was made); Ctrl-C is ignored from now on."""
        self.guard.stop()
        if self.store is not None:
            self.store.finish(status, error)

    def _open_store(self, streams: list[_DeviceStream], data) -> RunStore:
        """A new run store with a group per device, or the resumed one with its readouts cleared."""
        import ray

        p = self.proto
        total = p.run.total
        if self.resume_path is not None:
            with self.guard.held():              # a Ctrl-C lands after the store is known
                store = self.store = RunStore.reopen(self.resume_path)
                store.restart_run()
            for s in streams:
                s.next_row = store.committed(s.group)
            return store
        with self.guard.held():                  # a Ctrl-C lands after the store is known
            store = self.store = RunStore(new_run_path(self.store_root, p.protocol.name), p.text, {
                "protocol_name": p.protocol.name, "protocol_source": p.source, "overrides": p.overrides,
                "protocol": p.resolved(), "protocol_table": p.table(), "seed": p.protocol.seed,
                "ray_address": self.address or "local",
                "device_node_id": streams[0].info["node_id"],
                "devices": [s.group for s in streams],
                **({"unsafe_limits": {**self.signed.provenance(), "devices": sorted(self.lifted)}} if self.signed
                   else {})})
        for s in streams:
            probe = data.inputs[:0] if s.upstream is None else np.zeros((0, int(s.info["spec"]["n_inputs"])))
            first = ray.get(s.actor.run.remote(probe))[0]  # dtype probe, zero rows
            store.add_device(s.group, spec=s.info["spec"], describe=s.info["describe"], n_outputs=p.task.n_outputs,
                             dtype=str(first.dtype), chunk_rows=p.run.block, expected_rows=total,
                             layout={"washout": p.run.washout, "train": p.run.train, "test": p.run.test},
                             sequence=data.sequence is not None)
            store.set_device_attrs(s.group, node_id=s.info["node_id"], pid=s.info["pid"],
                                   resources=s.section.resources, restarts=[], closed_loop=p.task.closed_loop)
        return store

    def _collect(self, trainers: list) -> dict[str, list[TrainResult]]:
        """Wait for every trainer to finish the stream; a failed trainer fails the run."""
        import ray

        t0 = time.perf_counter()
        results: dict[str, list[TrainResult]] = {}
        several = len({group for group, *_ in trainers}) > 1
        for group, name, _, ref in trainers:
            try:
                results.setdefault(group, []).append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None) or exc
                where = f"readout {name!r} of device {group!r}" if several else f"readout {name!r}"
                raise RuntimeError(f"{where} failed: {type(cause).__name__}: {cause}") from None
        self.timings["trainers_lag_s"] = self.timings["drain_s"] = time.perf_counter() - t0
        self.timings["trainers"] = {(r.name if len(results) == 1 else f"{g}/{r.name}"): r.timings
                                    for g, rs in results.items() for r in rs}
        return results

    def _stream(self, streams: list[_DeviceStream], store: RunStore, data, phase: PhaseColumn) -> None:
        """Write every device's blocks as they arrive, in order per device; recover restarted devices."""
        import zarr
        from threadpoolctl import threadpool_limits

        import types

        p = self.proto
        total, block = p.run.total, p.run.block
        for s in streams:
            if s.next_row:                       # resuming: rebuild the device's state first
                s.replay(data if s.upstream is None else types.SimpleNamespace(inputs=store.inputs(s.group)),
                         s.next_row, block)
            if s.upstream is not None:
                s.refeed(store, block)
        remaining = sum(total - s.next_row for s in streams)
        for s in streams:
            s.submit(data, total, block)
        label = f"{p.protocol.name} on {p.describe_devices()}"
        bar = ProgressBar(remaining, label, enabled=self.progress, console=self.console)
        in_dtype = {s.group: np.dtype(store.input_dtype(s.group)) for s in streams}
        waiting = 0.0
        t_start = time.perf_counter()
        # one BLAS thread and one I/O thread for Zarr: the other cores belong to the device and
        # trainer actors (measured: Zarr's default thread pool slows a 1000-unit ESN by ~10%)
        with bar, threadpool_limits(limits=1, user_api="blas"), \
                zarr.config.set({"threading.max_workers": 1, "async.concurrency": 1}):
            while any(s.pending for s in streams):
                t_wait = time.perf_counter()
                s, head, result = _next_result(streams)
                waiting += time.perf_counter() - t_wait
                if isinstance(result, BaseException):           # its process died
                    if s.upstream is None:
                        self._recover(s, store, data, result)
                    else:                                       # rebuilt from its stored inputs
                        self._recover(s, store, types.SimpleNamespace(inputs=store.inputs(s.group)), result)
                        s.refeed(store, block)
                    s.submit(data, total, block)
                    continue
                features, raw = result
                a, b = head.a, head.b
                inputs = data.inputs[a:b] if head.inputs is None else head.inputs
                store.append(s.group, inputs=inputs.astype(in_dtype[s.group], copy=False),
                             features=features, targets=data.targets[a:b], phase=phase[a:b],
                             sequence=None if data.sequence is None else data.sequence[a:b], raw=raw)
                for d in s.downstream:                          # its rows are in the store: feed them on
                    d.feed.append((a, b, head.ref, features))
                    d.submit(data, total, block)
                s.submit(data, total, block)
                release_object_store_pages()   # this process's RSS flat in run length (engine/memory.py)
                bar.advance(b - a)
        elapsed = time.perf_counter() - t_start
        self.timings["stream_s"] = elapsed
        # if the writer waited little, it (not the device) set the pace
        self.timings["writer_waiting_s"] = waiting
        self.timings["samples_per_s"] = total / elapsed if elapsed > 0 else float("inf")

    def _stream_loop(self, streams: list[_DeviceStream], store: RunStore, phase: PhaseColumn) -> None:
        """Closed loop: one block in flight per device; the task's policy decides each next block
        from the one the device just returned (:mod:`labbench.spec.policy`).

        The next block is sent before the last one is written, so the device waits only for
        the round trip and the policy. Each block's decision record and timing go to the
        raw stream ``loop``. A restarted device is rebuilt from the stored inputs and given
        the block it lost; the policy lives here and keeps its state.
        """
        import types

        import zarr
        from threadpoolctl import threadpool_limits

        p = self.proto
        task = p.task
        total, block = p.run.total, p.run.block
        policies = {s.group: task.policy(p.protocol.seed) for s in streams}
        in_dtype = {s.group: np.dtype(store.input_dtype(s.group)) for s in streams}
        previous: dict[str, LoopBlock | None] = {s.group: None for s in streams}
        decided: dict[str, tuple[NextBlock, float]] = {}

        def decide(s: _DeviceStream) -> None:
            rows = min(block, total - s.next_row)
            t0 = time.perf_counter()
            nb = policies[s.group](previous[s.group], rows)
            decided[s.group] = (check_next(nb, rows, task.n_inputs, task.n_outputs, task.name),
                                time.perf_counter() - t0)

        def send(s: _DeviceStream) -> None:
            nb = decided[s.group][0]
            a, b = s.next_row, s.next_row + len(nb.inputs)
            u = nb.inputs.astype(in_dtype[s.group], copy=False)
            s.pending.append(_Pending(s.actor.run_timed.remote(u), a, b, time.monotonic()))
            s.next_row = b

        for s in streams:
            decide(s)
            send(s)
        label = f"{p.protocol.name} on {p.describe_devices()} (closed loop)"
        bar = ProgressBar(total * len(streams), label, enabled=self.progress, console=self.console)
        t_start = time.perf_counter()
        # the store is written by a thread of its own, so a slow write never holds up the next
        # decision; blocks that queue up behind a write go to the store together
        with bar, CoalescingWriter(store) as writer, threadpool_limits(limits=1, user_api="blas"), \
                zarr.config.set({"threading.max_workers": 1, "async.concurrency": 1}):
            while any(s.pending for s in streams):
                s, head, result = _next_result(streams)
                if isinstance(result, BaseException):           # its process died
                    writer.flush()               # every returned block is in the store before the replay
                    self._recover(s, store, types.SimpleNamespace(inputs=store.inputs(s.group)), result)
                    send(s)                      # the lost block again, as the policy decided it
                    continue
                features, raw, timing = result
                nb, policy_s = decided[s.group]
                last = previous[s.group]
                previous[s.group] = LoopBlock(index=0 if last is None else last.index + 1, start=head.a,
                                              inputs=nb.inputs, features=features, targets=nb.targets, raw=raw)
                if s.next_row < total:           # the next block first: the device is waiting
                    decide(s)
                    send(s)
                record = {"row": np.array([head.a], dtype=np.int64),
                          "latency_s": np.array([timing["latency_s"]]), "policy_s": np.array([policy_s]),
                          "device_s": np.array([timing["device_s"]]),
                          **{k: np.array([v], dtype=np.float64) for k, v in nb.record.items()}}
                a, b = head.a, head.b
                writer.put(s.group, inputs=nb.inputs.astype(in_dtype[s.group]), features=features,
                           targets=nb.targets, phase=phase[a:b], raw={**raw, "loop": record})
                bar.advance(b - a)
        self.timings["store_appends"] = writer.appends
        elapsed = time.perf_counter() - t_start
        self.timings["stream_s"] = elapsed
        self.timings["samples_per_s"] = total * len(streams) / elapsed if elapsed > 0 else float("inf")

    def _loop_metrics(self, s: _DeviceStream, store: RunStore) -> dict[str, Any]:
        """The task's loop metrics and the loop's latency and jitter, from the stored ``loop`` stream."""
        cols = RunReader(store.path).raw(s.group, "loop")
        metrics = {**self.proto.task.score_loop(cols), **loop_timing(cols["latency_s"], cols["policy_s"])}
        store.set_summary_metrics(s.group, "loop", metrics)
        return metrics

    def _recover(self, s: _DeviceStream, store: RunStore, data, exc: Exception) -> None:
        """The device's process died: wait for Ray to restart it, rebuild its state, go on from ``committed``."""
        committed = store.committed(s.group)
        s.pending.clear()                        # every call in flight died with the process
        if len(s.restarts) >= s.section.max_restarts:
            raise DeviceDown(f"device {s.group!r} died {len(s.restarts) + 1} times (device.max_restarts = "
                             f"{s.section.max_restarts}): {remote_cause(exc)}")
        t0 = time.perf_counter()
        info = s.wait_ready()
        replayed = 0
        if info.get("deterministic"):
            s.replay(data, committed, self.proto.run.block)
            replayed = committed
        s.next_row = committed
        s.restarts.append({"at": now_iso(), "committed": committed, "error": remote_cause(exc)[:500],
                           "old_pid": s.info.get("pid"), "new_pid": info.get("pid"), "replayed_rows": replayed,
                           "state": "rebuilt by replay" if replayed or not committed else
                           "not restored (device is not deterministic)",
                           "recovery_s": time.perf_counter() - t0})
        s.info = info
        store.set_device_attrs(s.group, restarts=s.restarts, pid=info.get("pid"))

    def _evaluate(self, s: _DeviceStream, store: RunStore, data, results: list[TrainResult]) -> dict[str, Any]:
        """Closed-loop evaluation (tasks that have one) with each trained readout, in the device actor."""
        import ray

        from .evaluation import evaluate
        from ..store import jsonable

        actor = s.actor
        metrics: dict[str, Any] = {}
        t0 = time.perf_counter()
        for res in results:
            ev = evaluate(self.proto, data, res,
                          free_run=lambda pipe, sync, horizon: ray.get(actor.free_run.remote(pipe, sync, horizon)),
                          learn_with_feedback=lambda pipe, teacher, sync: ray.get(
                              actor.learn_with_feedback.remote(pipe, teacher, sync)))
            if ev.free_run is not None:
                group = ReadoutWriter.reopen(store.path, s.group, res.name)
                group.create_array("free_run", data=ev.free_run, dimension_names=("start", "horizon", "output"),
                                   compressors=None)
                group.create_array("free_run_starts", data=ev.free_run_starts, dimension_names=("start",),
                                   compressors=None)
                group.update_attributes(jsonable({"metrics": ev.metrics}))
            store.set_summary_metrics(s.group, res.name, ev.metrics)
            metrics[res.name] = ev.metrics
        self.timings["evaluation_s"] = self.timings.get("evaluation_s", 0.0) + time.perf_counter() - t0
        return metrics


def _feeds_lazily(p: Protocol) -> bool:
    """Whether a run's task data can be made block by block (:class:`TaskFeed`): the task makes
    it in bounded pieces, one device reads it (several read it at their own paces), the run's
    layout is the task's plain ``generate`` and nothing after the stream reads the data (no
    free-run plan, no readout learning with feedback)."""
    task = p.task
    if (not task.chunked_generation or len(p.all_devices) != 1 or type(task).generate_run is not Task.generate_run
            or any(ro.feedback_steps for ro in p.readouts)):
        return False
    if not p.run.test:
        return True
    # the plan from the data's shape only: a stand-in of the run's length that holds no rows
    total = p.run.total
    stand_in = TaskData(inputs=np.broadcast_to(np.zeros((1, task.n_inputs)), (total, task.n_inputs)),
                        targets=np.broadcast_to(np.zeros((1, task.n_outputs)), (total, task.n_outputs)))
    test_start = p.run.washout + p.run.train
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return task.free_run_plan(stand_in, test_start, test_start + p.run.test) is None
    except (ValueError, TypeError, IndexError, AttributeError):   # the plan needs the rows (or the run raises later)
        return False


def _next_result(streams: list[_DeviceStream]) -> tuple[_DeviceStream, _Pending, Any]:
    """The first device whose oldest block in flight is back: ``(stream, block, result)``.

    ``result`` is what the actor returned (its first item has the block's rows), or the
    ``RayActorError`` when the device's process died (the caller recovers it). DeviceDown
    when no block comes back within its device's ``timeout_s``, when the driver raised, or
    when a block has the wrong number of rows.
    """
    import ray

    heads = {s.pending[0].ref: s for s in streams if s.pending}
    due = min(s.pending[0].submitted + s.section.timeout_s for s in heads.values())
    ready, _ = ray.wait(list(heads), num_returns=1, timeout=max(due - time.monotonic(), 0.0))
    if not ready:
        late = min(heads.values(), key=lambda s: s.pending[0].submitted + s.section.timeout_s)
        head = late.pending[0]
        raise DeviceDown(f"device {late.group!r} did not return rows {head.a}–{head.b} within "
                         f"{late.section.timeout_s:g} s (device.timeout_s)")
    s = heads[ready[0]]
    head = s.pending.popleft()
    try:
        result = ray.get(head.ref)
    except ray.exceptions.RayTaskError as exc:      # the driver raised
        raise DeviceDown(f"device {s.group!r} failed on rows {head.a}–{head.b}: {remote_cause(exc)}") from None
    except ray.exceptions.RayActorError as exc:     # its process died
        return s, head, exc
    if result[0].shape[0] != head.b - head.a:
        raise DeviceDown(f"device {s.group!r} returned {result[0].shape[0]} rows for rows {head.a}–{head.b}")
    return s, head, result



def _close_actor(actor) -> None:
    import ray

    try:
        ray.get(actor.close.remote(), timeout=30)
    except Exception:
        pass
    finally:
        ray.kill(actor)
