"""XOR of two held bits, one pair per trial: Fernando & Sojakka's bucket task.

In "Pattern recognition in a bucket" (Fernando & Sojakka 2003, ECAL, LNCS 2801, pp. 588-597)
two motors are switched on or off for a while, one bit each, and a linear readout of the
filmed water must say whether exactly one of them ran. Here every trial holds two random
bits ``(a, b)`` on the two input channels for ``hold`` rows; the target is ``a XOR b`` on
every row of the trial. The four conditions come in shuffled groups of four, so every
stretch of whole groups is balanced.

A linear readout of the bits themselves cannot do it (XOR is not linearly separable), nor
can one of a linear medium seen by a linear sensor: by superposition the response to (1, 1)
is the sum of the responses to (1, 0) and (0, 1) (``docs/bucket.md``).

The run's washout, train and test rows must be whole trials (so the split is by trial).
Scored per trial: the readout's mean output over the trial's rows after the first ``settle``
(the waves of the previous trial die down and the new ones cross the tank), thresholded at
0.5, against the trial's target (``accuracy``, the primary metric); beside it the accuracy
of the thresholded rows after ``settle`` (``row_accuracy``) and the NRMSE over all rows.
The score assumes the rows it gets start at a trial boundary and are whole trials (the test
phase is; so is a train block when the block size is a multiple of ``hold``); trailing rows
of an unfinished trial are left out.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from labbench.metrics import nrmse
from labbench.tasks.base import Task, TaskData

__all__ = ["XOR_CONDITIONS", "PatternXor"]

#: the four conditions (a, b), in the order of a trial's condition index
XOR_CONDITIONS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.int64)


class PatternXor(Task):
    """Two bits held for a trial of ``hold`` rows; target ``a XOR b`` (see the module doc)."""

    name: Literal["pattern_xor"] = "pattern_xor"
    hold: int = Field(25, ge=1, le=100_000, description="rows of one trial (both bits held throughout)")
    settle: int = Field(10, ge=0, description="rows at the start of each trial left out of its score")
    level: float = Field(1.0, gt=0, le=1.0, description="input value of a 1 bit (a 0 bit is 0)")

    primary_metric: ClassVar[str] = "accuracy"

    @model_validator(mode="after")
    def _check_settle(self) -> PatternXor:
        if self.settle >= self.hold:
            raise ValueError(f"settle = {self.settle} leaves no row of a {self.hold}-row trial to score "
                             f"(settle must be less than hold)")
        return self

    @property
    def n_inputs(self) -> int:
        return 2

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def classes(self) -> list[int]:
        return [0, 1]

    def conditions(self, n_trials: int, seed: int) -> np.ndarray:
        """Condition index (into :data:`XOR_CONDITIONS`) of each of ``n_trials`` trials: shuffled
        groups of the four conditions."""
        rng = np.random.default_rng(seed)
        groups = -(-n_trials // 4)
        return np.concatenate([rng.permutation(4) for _ in range(groups)])[:n_trials] if groups else \
            np.empty(0, dtype=np.int64)

    def generate(self, n_steps: int, seed: int) -> TaskData:
        n = self._check_n_steps(n_steps)
        cond = self.conditions(-(-n // self.hold), seed)
        bits = XOR_CONDITIONS[cond]
        target = np.logical_xor(bits[:, 0], bits[:, 1]).astype(np.float64)
        u = np.repeat(bits.astype(np.float64) * self.level, self.hold, axis=0)[:n]
        y = np.repeat(target, self.hold)[:n, None]
        return TaskData(inputs=u, targets=y, meta={"hold": self.hold, "settle": self.settle,
                                                   "n_trials": len(cond),
                                                   "conditions": cond.tolist()})

    def check_layout(self, washout: int, train: int, test: int) -> list[str]:
        out = []
        for key, rows in (("washout", washout), ("train", train), ("test", test)):
            if rows % self.hold:
                lo, hi = rows // self.hold * self.hold, (rows // self.hold + 1) * self.hold
                out.append(f"run.{key}: {rows} rows is not a whole number of trials (each takes "
                           f"task.hold = {self.hold} rows); use {lo or hi} or {hi}")
        return out

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Trial accuracy (mean output after ``settle`` rows, thresholded), row accuracy, NRMSE."""
        t = np.asarray(y_true, dtype=np.float64).ravel()
        p = np.asarray(y_pred, dtype=np.float64).ravel()
        if t.shape != p.shape:
            raise ValueError(f"y_true has {t.size} rows, y_pred {p.size}")
        n_trials = t.size // self.hold
        if n_trials == 0:
            return {"accuracy": float("nan"), "row_accuracy": float("nan"), "nrmse": float("nan"), "trials": 0.0}
        T = t[: n_trials * self.hold].reshape(n_trials, self.hold)[:, self.settle:]
        P = p[: n_trials * self.hold].reshape(n_trials, self.hold)[:, self.settle:]
        trial_true = T[:, 0] > 0.5
        trial_pred = P.mean(axis=1) > 0.5
        return {"accuracy": float(np.mean(trial_true == trial_pred)),
                "row_accuracy": float(np.mean((T > 0.5) == (P > 0.5))),
                "nrmse": nrmse(t, p) if t.size > 1 else float("nan"),
                "trials": float(n_trials)}
