"""One protocol run entirely in the current process: no Ray actor, no run store.

A sweep trial is this function inside a Ray task (:mod:`labbench.engine.sweeper`): the device,
its readouts' :class:`~labbench.engine.live.Trainer` objects and the closed-loop evaluation all
live in one worker, so a trial costs no per-block traffic and writes nothing but its
summary. The trainers consume the device's blocks exactly as they would consume them from
a store, so a trial's metrics equal those of ``labbench run`` with the same overrides.

A protocol with several devices runs them all here too, block by block: a chained device
(``input = "<device>"``, e.g. a DVS retina feeding an LSM) is fed its upstream's features of
the same block, as the bench feeds it, and the readouts train on every device that no other
device reads (the ends of the chains), so those devices' metrics equal the bench's.
"""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .closed_loop import free_run, learn_with_feedback
from .evaluation import evaluate
from .live import TrainResult, Trainer
from ..reservoir import Reservoir
from .ray_runtime import current_node_id
from ..spec.protocol import DeviceSection, Protocol, chain_order, chained_params
from ..store import PHASES

__all__ = ["TrialResult", "run_trial"]


@dataclass
class TrialResult:
    """Everything a trial reports back (JSON-able but for numpy scalars and ``test``).

    Attributes
    ----------
    metrics : dict
        ``{readout: {metric: value}}``; with several trained devices the keys are
        ``"<device>/<readout>"``, as in :attr:`labbench.engine.bench.Run.metrics`.
    history : dict
        ``{readout: {column: [values per evaluation]}}`` (the learning curve), keyed as ``metrics``.
    timings : dict
        ``device_s`` (time in the drivers), ``learn_s``, ``total_s``, ``peak_rss_mib``.
    warnings : list of str
        The devices' health warnings and the readouts' numerical warnings.
    summaries : dict
        ``{device: Reservoir.summary()}`` of every device (what the bench stores as its
        ``device`` metrics), after the stream.
    raw_rows : dict
        ``{device: {raw stream: rows}}``: how many rows each raw stream of each device
        emitted (spikes, events, stimulation pulses), over the whole run.
    test : dict
        With ``keep_test``: ``{readout: (y_true, y_pred)}``, the scored test rows of row-wise
        (not sequence) tasks as float64 arrays ``(rows, n_outputs)``; else empty.
    """

    metrics: dict[str, dict[str, Any]]
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    node_id: str | None = None
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    test: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def run_trial(proto: Protocol, *, keep_test: bool = False) -> TrialResult:
    """Run ``proto`` (its devices, chained or side by side) here and now.

    Parameters
    ----------
    proto : Protocol
        A validated open-loop protocol.
    keep_test : bool
        Also return the scored test rows (:attr:`TrialResult.test`), e.g. for a per-delay
        memory curve.

    Returns
    -------
    TrialResult
        The metrics and learning curves of the readouts of every device nobody reads.
    """
    if proto.task.closed_loop:
        raise ValueError(f"task {proto.task.name!r} is closed-loop; a trial runs open-loop tasks only")
    t_start = time.perf_counter()
    p = proto
    order = chain_order(p)
    read = {d.input for d in order if d.input is not None}
    # the devices whose features the readouts learn from, in protocol order
    sinks = [d for d in p.all_devices if d.group not in read]
    several = len(sinks) > 1
    data = p.task.generate_run(p.run.washout, p.run.train, p.run.test, p.protocol.seed)
    phase = np.repeat(np.array([PHASES["washout"], PHASES["train"], PHASES["test"]], dtype=np.int8),
                      [p.run.washout, p.run.train, p.run.test])
    test_rows = phase == PHASES["test"]
    layout = {"washout": p.run.washout, "train": p.run.train, "test": p.run.test}
    trainers = [(dev, Trainer(ro, p.task, layout=layout, block=p.run.block)) for dev in sinks for ro in p.readouts]

    def key(dev: DeviceSection, name: str) -> str:
        return f"{dev.group}/{name}" if several else name

    history: dict[str, dict[str, list[float]]] = {key(d, t.name): {c: [] for c in t.history_columns()}
                                                  for d, t in trainers}
    kept: dict[str, list[np.ndarray]] = {key(d, t.name): [] for d, t in trainers}
    row_wise = keep_test and p.task.sequence_length is None

    def note(dev: DeviceSection, trainer: Trainer, emitted) -> None:
        k = key(dev, trainer.name)
        for e in emitted:
            if e.history is not None:
                for c in history[k]:
                    history[k][c].append(float(e.history.get(c, np.nan)))
            if row_wise and e.predictions is not None:
                rows = test_rows[e.start:e.start + len(e.predictions)]
                kept[k].append(np.asarray(e.predictions, dtype=np.float64)[rows])

    device_s = learn_s = 0.0
    raw_rows: dict[str, dict[str, int]] = {d.group: {} for d in order}
    with contextlib.ExitStack() as stack:
        devices: dict[str, Reservoir] = {}
        for dev in order:
            params = p.device_params(dev)
            if dev.input is not None:
                params = chained_params(p, dev, params, int(devices[dev.input].spec.n_features))
            devices[dev.group] = stack.enter_context(p.driver_class(dev)(**params))
        total = p.run.total
        for a in range(0, total, p.run.block):
            b = min(a + p.run.block, total)
            t0 = time.perf_counter()
            features: dict[str, np.ndarray] = {}
            for dev in order:
                u = data.inputs[a:b] if dev.input is None else features[dev.input]
                block = devices[dev.group].run(u)
                features[dev.group] = block.features
                counts = raw_rows[dev.group]
                for stream, cols in block.raw.items():
                    n = len(next(iter(cols.values()))) if cols else 0
                    counts[stream] = counts.get(stream, 0) + int(n)
            t1 = time.perf_counter()
            for dev, t in trainers:
                arrays = {"features": features[dev.group], "targets": data.targets[a:b], "phase": phase[a:b]}
                if data.sequence is not None:
                    arrays["sequence"] = data.sequence[a:b]
                note(dev, t, t.consume(a, arrays))
            device_s += t1 - t0
            learn_s += time.perf_counter() - t1
        for dev, t in trainers:
            note(dev, t, t.finish())
        warnings: list[str] = []
        for dev in order:
            found = list(devices[dev.group].health())
            warnings += [f"{dev.group}: {w}" for w in found] if len(order) > 1 else found
        metrics = {}
        for dev, t in trainers:
            reservoir = devices[dev.group]
            result = TrainResult(t.name, t.metrics(), t.warnings, t.predictor(), "complete")
            ev = evaluate(p, data, result,
                          free_run=lambda pipe, sync, horizon, r=reservoir: free_run(r, pipe, sync, horizon),
                          learn_with_feedback=lambda pipe, teacher, sync, r=reservoir: (
                              pipe, learn_with_feedback(r, pipe.readout, teacher, sync)))
            metrics[key(dev, t.name)] = ev.metrics
            warnings += [f"readout {key(dev, t.name)}: {w}" for w in t.warnings]
        summaries = {dev.group: devices[dev.group].summary() for dev in order}
    test: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if row_wise:
        y_true = np.asarray(data.targets, dtype=np.float64)[test_rows].reshape(int(test_rows.sum()), -1)
        for k, parts in kept.items():
            y_pred = np.concatenate(parts) if parts else np.zeros((0, y_true.shape[1]))
            test[k] = (y_true, y_pred.reshape(len(y_pred), -1))
    timings = {"device_s": device_s, "learn_s": learn_s, "total_s": time.perf_counter() - t_start,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return TrialResult(metrics=metrics, history=history, timings=timings, warnings=warnings, node_id=current_node_id(),
                       summaries=summaries, raw_rows=raw_rows, test=test)
