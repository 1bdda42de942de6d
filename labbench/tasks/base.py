"""The task interface: input/target generators with their own scores.

A task is a frozen pydantic model, so a protocol's ``[task]`` table validates straight
into it: unknown keys and out-of-range values raise :class:`pydantic.ValidationError`
naming the key.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from labbench.metrics import nrmse

__all__ = ["ClosedLoopTask", "FreeRunPlan", "Task", "TaskData"]


@dataclass
class TaskData:
    """One generated series.

    Attributes
    ----------
    inputs : ndarray, shape (T, n_inputs), float64
        What is fed to the reservoir, row ``t`` at step ``t``.
    targets : ndarray, shape (T, n_outputs), float64
        What the readout should output from the state after ``inputs[t]``.
    meta : dict
        JSON-able facts about the series (normalisation constants, ``dt``, Lyapunov
        exponent, ...).
    """

    inputs: np.ndarray
    targets: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    #: sequence tasks only: the sample each row belongs to (``-1`` between samples), shape (T,)
    sequence: np.ndarray | None = None


@dataclass(frozen=True)
class FreeRunPlan:
    """Where and how long to run a trained reservoir autonomously (closed loop).

    For each start ``s`` in ``starts``: reset the reservoir, feed the teacher inputs
    ``inputs[s - sync : s]`` to synchronise it, then let the readout's output be the
    next input. The first prediction ``y_1`` (from the state after ``inputs[s - 1]``)
    estimates ``inputs[s]``; ``y_h`` estimates ``inputs[s - 1 + h]``, for
    ``h = 1..horizon``. Predictions handed to :meth:`Task.score_free_run` have shape
    ``(len(starts), horizon, n_outputs)``.

    Attributes
    ----------
    starts : ndarray of int
        Start indices ``s``, inside ``[test_start, test_end - horizon]`` and with
        ``s - sync >= 0``.
    sync : int
        Teacher-forced steps fed before each start.
    horizon : int
        Closed-loop steps per start.
    test_start, test_end : int
        The test region the plan was made for (used for normalising free-run errors).
    """

    starts: np.ndarray
    sync: int
    horizon: int
    test_start: int = 0
    test_end: int | None = None


class Task(BaseModel, ABC):
    """Base class of every task.

    Subclasses set ``name`` to a ``Literal`` of their registry name, declare their
    parameters as constrained pydantic fields and implement :meth:`generate`,
    :attr:`n_inputs` and :attr:`n_outputs`. The default :meth:`score` is the NRMSE
    over all outputs; tasks with a closed-loop evaluation override
    :meth:`free_run_plan` and :meth:`score_free_run`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    primary_metric: ClassVar[str] = "nrmse"
    #: whether the inputs come from a policy during the run (:class:`ClosedLoopTask`)
    closed_loop: ClassVar[bool] = False
    #: whether :meth:`generate_chunks` holds a bounded number of rows (else it slices :meth:`generate`)
    chunked_generation: ClassVar[bool] = False

    @property
    @abstractmethod
    def n_inputs(self) -> int:
        """Number of input channels."""

    @property
    @abstractmethod
    def n_outputs(self) -> int:
        """Number of target channels."""

    @abstractmethod
    def generate(self, n_steps: int, seed: int) -> TaskData:
        """Generate exactly ``n_steps`` rows of inputs and targets.

        Parameters
        ----------
        n_steps : int
            Number of rows (>= 1).
        seed : int
            Seed of every random draw; the same seed gives identical arrays.
        """

    def generate_chunks(self, n_steps: int, seed: int, rows: int) -> Iterator[TaskData]:
        """:meth:`generate` as consecutive pieces of at most ``rows`` rows.

        The pieces, concatenated, equal ``generate(n_steps, seed)`` bit for bit (each piece
        carries the whole series' ``meta``). Tasks with ``chunked_generation`` make them one
        after the other, holding a bounded number of rows whatever ``n_steps`` is (a recursion
        such as NARMA's or an integration such as Mackey-Glass's carries its state from one
        piece to the next); the default generates the whole series and slices it.

        Parameters
        ----------
        n_steps, seed : int
            As for :meth:`generate`.
        rows : int
            Rows per piece (>= 1); the last piece may be shorter.
        """
        n_steps = self._check_n_steps(n_steps)
        rows = self._check_n_steps(rows)
        data = self.generate(n_steps, seed)
        for a in range(0, n_steps, rows):
            yield TaskData(inputs=data.inputs[a:a + rows], targets=data.targets[a:a + rows], meta=data.meta,
                           sequence=None if data.sequence is None else data.sequence[a:a + rows])

    @property
    def sequence_length(self) -> int | None:
        """Rows per sample (rest included) for sequence tasks, whose samples are classified
        one by one; ``None`` for tasks scored row by row."""
        return None

    @property
    def classes(self) -> list[int] | None:
        """Every class label of a classification task; ``None`` for regression tasks."""
        return None

    def generate_run(self, washout: int, train: int, test: int, seed: int) -> TaskData:
        """Data for a run with these phase lengths (rows).

        Tasks with a held-out set (digits) override this so test rows only ever show
        held-out samples; by default it is ``generate(washout + train + test, seed)``.
        """
        return self.generate(washout + train + test, seed)

    def check_layout(self, washout: int, train: int, test: int) -> list[str]:
        """Problems with these phase lengths, as ``run.<key>: ...`` lines (none by default)."""
        return []

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Teacher-forced test metrics; by default ``{"nrmse": nrmse(y_true, y_pred)}``."""
        return {"nrmse": nrmse(y_true, y_pred)}

    def free_run_plan(self, data: TaskData, test_start: int, test_end: int) -> FreeRunPlan | None:
        """Closed-loop evaluation plan for the test region, or None if the task has none."""
        return None

    def score_free_run(self, data: TaskData, plan: FreeRunPlan, pred: np.ndarray) -> dict[str, float]:
        """Score closed-loop predictions of shape ``(len(plan.starts), plan.horizon, n_outputs)``."""
        raise NotImplementedError(f"task {self.name!r} has no free-run evaluation")

    def describe(self) -> dict[str, Any]:
        """The task's parameters as a JSON-able dict (``name`` included)."""
        return self.model_dump(mode="json")

    # -- helpers for subclasses ---------------------------------------------------

    @staticmethod
    def _check_n_steps(n_steps: int) -> int:
        n = int(n_steps)
        if n != n_steps or n < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        return n

    def _evenly_spaced_plan(
        self,
        data: TaskData,
        test_start: int,
        test_end: int,
        *,
        n_starts: int,
        spacing: int,
        horizon: int,
        sync: int,
    ) -> FreeRunPlan:
        """Starts ``first + spacing * j`` that fit in the test region.

        ``first = max(test_start, sync)`` so that every sync window lies inside the
        series. Starts past ``test_end - horizon`` are dropped with a warning; no start
        at all is a ValueError.
        """
        n_rows = data.inputs.shape[0]
        if not 0 <= test_start < test_end <= n_rows:
            raise ValueError(
                f"test region [{test_start}, {test_end}) does not lie inside the {n_rows}-row series"
            )
        first = max(test_start, sync)
        last = test_end - horizon
        starts = first + spacing * np.arange(n_starts, dtype=np.int64)
        starts = starts[starts <= last]
        if starts.size == 0:
            raise ValueError(
                f"task {self.name!r}: no free-run start fits: test region [{test_start}, {test_end}) "
                f"needs at least {max(sync - test_start, 0) + horizon} rows for sync={sync}, "
                f"horizon={horizon}"
            )
        if starts.size < n_starts:
            warnings.warn(
                f"task {self.name!r}: only {starts.size} of {n_starts} free-run starts fit in the "
                f"test region [{test_start}, {test_end}) with spacing={spacing}, horizon={horizon}",
                stacklevel=3,
            )
        return FreeRunPlan(starts=starts, sync=sync, horizon=horizon, test_start=test_start, test_end=test_end)

    @staticmethod
    def _free_run_truth(data: TaskData, plan: FreeRunPlan, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pred, truth)`` as float64 ``(B, H, n_inputs)``; ``truth[j, h-1] = inputs[s_j - 1 + h]``."""
        starts = np.asarray(plan.starts, dtype=np.int64)
        p = np.asarray(pred, dtype=np.float64)
        expected = (starts.size, plan.horizon, data.inputs.shape[1])
        if p.shape != expected:
            raise ValueError(f"free-run predictions have shape {p.shape}, expected {expected}")
        idx = starts[:, None] + np.arange(plan.horizon)[None, :]
        return p, np.asarray(data.inputs, dtype=np.float64)[idx]


class ClosedLoopTask(Task):
    """A task whose inputs are decided during the run, block by block, from the device's activity.

    Instead of generating its inputs up front, a closed-loop task gives the bench a policy
    (:meth:`policy`, see :mod:`labbench.spec.policy`) that receives each block the device
    returns and answers with the next block's inputs and targets. The bench stores each
    decision's record and the loop's timing as the raw stream ``loop``, and
    :meth:`score_loop` turns that stream into the run's ``loop`` metrics.

    By default the policy runs in the device's actor (``[run] closed_loop = "actor"``): the
    bench ships it there once (pickled: the task's own class, nothing from the protocol is
    evaluated) and the actor loops by itself. A policy must then be picklable and keep all
    its state on itself, so the bench can hand it to a restarted device.
    """

    closed_loop: ClassVar[bool] = True
    #: whether the policy can run in the device's actor (``[run] closed_loop = "actor"``): it needs
    #: nothing but the blocks it is given. A policy that reads something only the bench has (a
    #: readout trained live, another device's stream) sets this False and runs in the bench.
    policy_in_actor: ClassVar[bool] = True

    @abstractmethod
    def policy(self, seed: int) -> Any:
        """A fresh policy, ``policy(previous: LoopBlock | None, rows: int) -> NextBlock``."""

    @abstractmethod
    def score_loop(self, loop: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics of the loop from its stored columns (one entry per block)."""

    def check_block(self, block: int) -> list[str]:
        """Problems with this block size, as ``run.block: ...`` lines (none by default)."""
        return []

    def generate(self, n_steps: int, seed: int) -> TaskData:
        raise TypeError(f"task {self.name!r} is closed-loop: its inputs are decided during the run from the "
                        f"device's activity, so they cannot be generated ahead (run it with labbench run)")
