"""Temporal XOR: a nonlinear task that needs memory of two past inputs.

Binary inputs ``u[t]`` in {0, 1}, i.i.d. with probability 1/2, and the target
``y[t] = u[t - delay] XOR u[t - delay - 1]``. It cannot be solved by a linear readout of
the inputs alone, because it needs the reservoir to hold both past bits and to combine
them nonlinearly. Bertschinger & Natschläger 2004 (Neural Comput 16:1413) used the
delayed 3-bit parity, of which this is the 2-bit case, to map the computational power of
networks at the edge of chaos. Cultured networks were scored on XOR-type tasks with
delayed inputs in the same spirit (e.g. Dockendorf et al. 2009, Biosystems 95:90).

Scored by accuracy of the thresholded output (``y_hat > 0.5``), with the NRMSE beside it.
Chance is about 0.5.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from labbench.metrics import nrmse
from labbench.tasks.base import Task, TaskData

__all__ = ["TemporalXor"]


class TemporalXor(Task):
    """``y[t] = u[t-delay] XOR u[t-delay-1]`` on random bits (see the module doc)."""

    name: Literal["xor"] = "xor"
    delay: int = Field(0, ge=0, description="rows between the later bit and the target")
    hold: int = Field(1, ge=1, description="rows each bit is held (a slow device sees each bit for this long)")

    primary_metric: ClassVar[str] = "accuracy"

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_outputs(self) -> int:
        return 1

    def generate(self, n_steps: int, seed: int) -> TaskData:
        n_steps = self._check_n_steps(n_steps)
        n_bits = -(-n_steps // self.hold)
        bits = np.random.default_rng(seed).integers(0, 2, n_bits)
        target_bits = np.zeros(n_bits)
        lag = self.delay
        target_bits[lag + 1:] = np.logical_xor(bits[1:n_bits - lag], bits[:n_bits - lag - 1])
        u = np.repeat(bits.astype(np.float64), self.hold)[:n_steps]
        y = np.repeat(target_bits, self.hold)[:n_steps]
        return TaskData(inputs=u[:, None], targets=y[:, None], meta={"delay": self.delay, "hold": self.hold})

    @property
    def min_washout(self) -> int:
        return (self.delay + 2) * self.hold

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        t = np.asarray(y_true).ravel() > 0.5
        p = np.asarray(y_pred).ravel() > 0.5
        return {"accuracy": float(np.mean(t == p)) if t.size else float("nan"),
                "nrmse": nrmse(y_true, y_pred)}
