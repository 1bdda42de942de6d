"""What happens to trained readouts after the stream: FORCE with the loop closed, then the
task's closed-loop (free-run) evaluation.

Both need the reservoir itself, so they are written against two callables: in a run they
call the device actor (:mod:`labbench.engine.bench`), in a sweep trial the reservoir in the same
process (:mod:`labbench.engine.trial`). The arithmetic is the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .trained import Pipeline, TrainResult
from ..metrics import nrmse
from ..spec.protocol import Protocol
from ..tasks import TaskData

FreeRun = Callable[[Pipeline, np.ndarray, int], np.ndarray]
LearnWithFeedback = Callable[[Pipeline, np.ndarray, int], tuple[Pipeline, np.ndarray]]


@dataclass
class Evaluated:
    """Final metrics of one readout, and its free-run predictions when the task has a plan."""

    metrics: dict[str, Any]
    free_run: np.ndarray | None = None
    free_run_starts: np.ndarray | None = None


def evaluate(proto: Protocol, data: TaskData, result: TrainResult, *, free_run: FreeRun,
             learn_with_feedback: LearnWithFeedback) -> Evaluated:
    """Closed-loop evaluation of one trained readout.

    ``feedback_steps = N`` on a ``force`` readout first goes on learning with the readout's
    output fed back, on the last ``N`` train rows (never on test rows; Sussillo & Abbott
    2009); then, for tasks with a free-run plan, the reservoir runs on its own predictions
    from each start of the plan and the task scores them.
    """
    p = proto
    test_start = p.run.washout + p.run.train
    plan = p.task.free_run_plan(data, test_start, test_start + p.run.test) if p.run.test else None
    m = dict(result.metrics)
    specs = {ro.label: ro for ro in p.readouts}
    steps = specs[result.name].feedback_steps if result.name in specs else 0
    if steps:
        sync = plan.sync if plan is not None else min(100, test_start - steps - 1)
        lo = test_start - steps - sync
        if lo < 0:
            raise RuntimeError(f"readout {result.name!r}: feedback_steps={steps} plus {sync} sync steps do not "
                               f"fit before the test phase (row {test_start})")
        teacher = data.inputs[lo:test_start]
        result.pipeline, trace = learn_with_feedback(result.pipeline, teacher, sync)
        tail = max(1, steps // 5)
        m["nrmse_feedback_learning"] = nrmse(teacher[-tail:], trace[-tail:])
    if plan is None:
        return Evaluated(m)
    sync_inputs = np.stack([data.inputs[s - plan.sync:s] for s in plan.starts])
    pred = np.asarray(free_run(result.pipeline, sync_inputs, plan.horizon), dtype=np.float64)
    m.update(p.task.score_free_run(data, plan, pred))
    return Evaluated(m, free_run=pred, free_run_starts=np.asarray(plan.starts, dtype=np.int64))
