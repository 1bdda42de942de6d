"""Short-term memory capacity (Jaeger 2001, GMD Report 152).

The reservoir is driven by i.i.d. uniform input ``u(t)``; one linear readout per
delay ``k = 1..max_delay`` is trained to output ``u(t - k)``, and the capacity is
``MC = sum_k corr(y_k(t), u(t - k))^2`` on test data (:func:`labbench.metrics.memory_capacity`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from labbench.metrics import memory_capacity
from labbench.tasks.base import Task, TaskData

__all__ = ["MemoryCapacity"]


class MemoryCapacity(Task):
    """Delayed-recall targets for the memory-capacity measurement.

    Inputs ``u`` ``(T, 1)`` drawn as ``np.random.default_rng(seed).uniform(low, high, T)``;
    targets ``(T, max_delay)`` with column ``k - 1`` equal to ``u[t - k]``. Rows
    ``t < k`` have no delayed input and hold zeros, so the washout must be at least
    ``max_delay`` steps (:attr:`min_washout`) for every fitted and scored target to be
    a real delayed input.
    """

    name: Literal["memory_capacity"] = "memory_capacity"
    max_delay: int = Field(200, ge=1, description="largest delay k (number of readout outputs)")
    low: float = Field(-0.8, description="lower bound of the uniform input")
    high: float = Field(0.8, description="upper bound of the uniform input")

    primary_metric: ClassVar[str] = "memory_capacity"
    chunked_generation: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check_bounds(self) -> MemoryCapacity:
        if not self.high > self.low:
            raise ValueError(f"high ({self.high}) must exceed low ({self.low})")
        return self

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_outputs(self) -> int:
        return self.max_delay

    @property
    def min_washout(self) -> int:
        """Smallest washout for which every target row is a real delayed input."""
        return self.max_delay

    def generate(self, n_steps: int, seed: int) -> TaskData:
        n_steps = self._check_n_steps(n_steps)
        u = np.random.default_rng(seed).uniform(self.low, self.high, n_steps)
        targets = np.zeros((n_steps, self.max_delay))
        for k in range(1, min(self.max_delay, n_steps - 1) + 1):
            targets[k:, k - 1] = u[:-k]
        return TaskData(inputs=u[:, None], targets=targets, meta={"max_delay": self.max_delay})

    def generate_chunks(self, n_steps: int, seed: int, rows: int) -> Iterator[TaskData]:
        """:meth:`generate` in pieces of at most ``rows`` rows, equal to it bit for bit (the
        inputs drawn piece by piece from the same generator, the last ``max_delay`` carried over)."""
        n_steps = self._check_n_steps(n_steps)
        rows = self._check_n_steps(rows)
        rng = np.random.default_rng(seed)
        tail = np.empty(0)
        for a in range(0, n_steps, rows):
            u = rng.uniform(self.low, self.high, min(rows, n_steps - a))
            ext = np.concatenate([tail, u])          # rows a - len(tail) .. b - 1
            targets = np.zeros((u.shape[0], self.max_delay))
            for k in range(1, min(self.max_delay, n_steps - 1) + 1):
                first = max(k - a, 0)                # row a + first is the first with a delayed input
                if first < u.shape[0]:
                    off = tail.shape[0] - k          # ext index of u[a + first - k] is first + off
                    targets[first:, k - 1] = ext[first + off:first + off + u.shape[0] - first]
            yield TaskData(inputs=u[:, None], targets=targets, meta={"max_delay": self.max_delay})
            tail = ext[-self.max_delay:].copy()

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """``{"memory_capacity": sum_k MC_k}``; see :meth:`memory_curve` for the per-delay values."""
        total, _ = memory_capacity(y_true, y_pred)
        return {"memory_capacity": total}

    def memory_curve(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """``MC_k`` for ``k = 1..max_delay`` (squared correlations, Jaeger 2001)."""
        return memory_capacity(y_true, y_pred)[1]
