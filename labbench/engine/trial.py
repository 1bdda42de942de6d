"""One protocol run entirely in the current process: no Ray actor, no run store.

A sweep trial is this function inside a Ray task (:mod:`labbench.engine.sweeper`): the device,
its readouts' :class:`~labbench.engine.live.Trainer` objects and the closed-loop evaluation all
live in one worker, so a trial costs no per-block traffic and writes nothing but its
summary. The trainers consume the device's blocks exactly as they would consume them from
a store, so a trial's metrics equal those of ``labbench run`` with the same overrides.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .closed_loop import free_run, learn_with_feedback
from .evaluation import evaluate
from .live import TrainResult, Trainer
from ..spec.protocol import Protocol
from ..store import PHASES

__all__ = ["TrialResult", "run_trial"]


@dataclass
class TrialResult:
    """Everything a trial reports back (JSON-able but for numpy scalars).

    Attributes
    ----------
    metrics : dict
        ``{readout: {metric: value}}``.
    history : dict
        ``{readout: {column: [values per evaluation]}}`` (the learning curve).
    timings : dict
        ``device_s`` (time in the driver), ``learn_s``, ``total_s``, ``peak_rss_mib``.
    warnings : list of str
        The device's health warnings and the readouts' numerical warnings.
    """

    metrics: dict[str, dict[str, Any]]
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    node_id: str | None = None


def run_trial(proto: Protocol) -> TrialResult:
    """Run ``proto`` (its single device) here and now; returns its metrics and learning curves."""
    if len(proto.all_devices) != 1:
        raise ValueError(f"a trial runs one device; protocol {proto.protocol.name!r} has "
                         f"{len(proto.all_devices)}")
    t_start = time.perf_counter()
    p = proto
    dev = p.all_devices[0]
    data = p.task.generate_run(p.run.washout, p.run.train, p.run.test, p.protocol.seed)
    phase = np.repeat(np.array([PHASES["washout"], PHASES["train"], PHASES["test"]], dtype=np.int8),
                      [p.run.washout, p.run.train, p.run.test])
    layout = {"washout": p.run.washout, "train": p.run.train, "test": p.run.test}
    trainers = [Trainer(ro, p.task, layout=layout, block=p.run.block) for ro in p.readouts]
    history: dict[str, dict[str, list[float]]] = {t.name: {c: [] for c in t.history_columns()} for t in trainers}

    def note(trainer: Trainer, emitted) -> None:
        for e in emitted:
            if e.history is not None:
                for c in history[trainer.name]:
                    history[trainer.name][c].append(float(e.history.get(c, np.nan)))

    device_s = learn_s = 0.0
    with p.driver_class(dev)(**p.device_params(dev)) as reservoir:
        total = p.run.total
        for a in range(0, total, p.run.block):
            b = min(a + p.run.block, total)
            t0 = time.perf_counter()
            block = reservoir.run(data.inputs[a:b])
            t1 = time.perf_counter()
            arrays = {"features": block.features, "targets": data.targets[a:b], "phase": phase[a:b]}
            if data.sequence is not None:
                arrays["sequence"] = data.sequence[a:b]
            for t in trainers:
                note(t, t.consume(a, arrays))
            device_s += t1 - t0
            learn_s += time.perf_counter() - t1
        for t in trainers:
            note(t, t.finish())
        warnings = list(reservoir.health())
        metrics = {}
        for t in trainers:
            result = TrainResult(t.name, t.metrics(), t.warnings, t.predictor(), "complete")
            ev = evaluate(p, data, result,
                          free_run=lambda pipe, sync, horizon: free_run(reservoir, pipe, sync, horizon),
                          learn_with_feedback=lambda pipe, teacher, sync: (
                              pipe, learn_with_feedback(reservoir, pipe.readout, teacher, sync)))
            metrics[t.name] = ev.metrics
            warnings += [f"readout {t.name}: {w}" for w in t.warnings]
    timings = {"device_s": device_s, "learn_s": learn_s, "total_s": time.perf_counter() - t_start,
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return TrialResult(metrics=metrics, history=history, timings=timings, warnings=warnings, node_id=_node_id())


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # pragma: no cover - outside Ray
        return None
