"""Spontaneous activity: no input at all, only recording.

For devices with activity of their own (a neuron culture's network bursts), the run is
the measurement: every input row is zero, and the device's own summary (e.g. the MEA's
burst statistics, :meth:`labbench.reservoir.Reservoir.summary`) is the result. Use it
with ``readouts = []``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from labbench.tasks.base import Task, TaskData

__all__ = ["Spontaneous"]


class Spontaneous(Task):
    """All-zero inputs of ``channels`` columns (the device's ``n_inputs``), zero targets."""

    name: Literal["spontaneous"] = "spontaneous"
    channels: int = Field(1, ge=1, description="input columns (all zero)")

    chunked_generation: ClassVar[bool] = True

    @property
    def n_inputs(self) -> int:
        return self.channels

    @property
    def n_outputs(self) -> int:
        return 1

    def generate(self, n_steps: int, seed: int) -> TaskData:
        n = self._check_n_steps(n_steps)
        return TaskData(inputs=np.zeros((n, self.channels)), targets=np.zeros((n, 1)), meta={})

    def generate_chunks(self, n_steps: int, seed: int, rows: int) -> Iterator[TaskData]:
        """:meth:`generate` in pieces of at most ``rows`` rows (zeros, made piece by piece)."""
        n, rows = self._check_n_steps(n_steps), self._check_n_steps(rows)
        for a in range(0, n, rows):
            r = min(rows, n - a)
            yield TaskData(inputs=np.zeros((r, self.channels)), targets=np.zeros((r, 1)), meta={})
