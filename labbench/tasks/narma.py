"""NARMA system identification (Atiya & Parlos 2000).

The textbook NARMA-10 recursion (Atiya & Parlos 2000, IEEE Trans. Neural Networks
11(3):697; as used by Jaeger 2003), with i.i.d. inputs ``u[t] ~ U[0, 0.5]``::

    y[t+1] = 0.3 y[t] + 0.05 y[t] sum_{i=0..9} y[t-i] + 1.5 u[t-9] u[t] + 0.1

and ``y[t] = 0`` for ``t <= 9``. For a general order ``N`` the same form is used with
``9`` replaced by ``N - 1``: the sum runs over ``y[t-N+1..t]`` and the product is
``u[t-N+1] u[t]``. (ReservoirPy's ``datasets.narma`` is one step shifted: it uses
``y[t-N..t-1]`` and ``u[t-N]``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Literal

import numpy as np
from numba import njit
from pydantic import Field, model_validator

from labbench.tasks.base import Task, TaskData

__all__ = ["Narma"]


@njit(cache=True)
def _pairwise_sum(a: np.ndarray, lo: int, n: int) -> float:
    """Sum of ``a[lo:lo+n]`` in numpy's pairwise order, so results equal ``np.sum`` bit for bit."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
        r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
        stop = n - n % 8
        for i in range(8, stop, 8):
            j = lo + i
            r0 += a[j]
            r1 += a[j + 1]
            r2 += a[j + 2]
            r3 += a[j + 3]
            r4 += a[j + 4]
            r5 += a[j + 5]
            r6 += a[j + 6]
            r7 += a[j + 7]
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for i in range(lo + stop, lo + n):
            res += a[i]
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise_sum(a, lo, n2) + _pairwise_sum(a, lo + n2, n - n2)


@njit(cache=True)
def _narma(u: np.ndarray, order: int, a1: float, a2: float, b: float, c: float) -> np.ndarray:
    T = u.shape[0]
    y = np.zeros(T)
    m = order - 1
    for t in range(m, T - 1):
        y[t + 1] = a1 * y[t] + a2 * y[t] * _pairwise_sum(y, t - m, order) + b * u[t - m] * u[t] + c
    return y


@njit(cache=True)
def _narma_continue(u: np.ndarray, y: np.ndarray, g0: int, lo: int, hi: int, order: int, a1: float, a2: float,
                    b: float, c: float) -> None:
    """:func:`_narma`'s recursion for ``t`` in ``[lo, hi)`` on windows ``u``, ``y`` whose first entry
    is row ``g0`` (they hold rows ``t - order + 1 .. t + 1``); the same values bit for bit."""
    m = order - 1
    for t in range(lo, hi):
        y[t + 1 - g0] = (a1 * y[t - g0] + a2 * y[t - g0] * _pairwise_sum(y, t - m - g0, order)
                         + b * u[t - m - g0] * u[t - g0] + c)


class Narma(Task):
    """NARMA-``order`` system identification: predict ``y[t]`` from the state after ``u[t]``.

    Inputs ``u`` ``(T, 1)`` and targets ``y`` ``(T, 1)``; ``u`` is drawn as
    ``np.random.default_rng(seed).uniform(u_low, u_high, T)``. With the defaults and
    ``seed=0`` the series equals the peer benchmark's ``narma10(T, seed=0)`` exactly.
    Scored by NRMSE. The first ``order`` targets are zero; use a washout of at least
    ``order`` steps (usually far more).
    """

    name: Literal["narma"] = "narma"
    order: int = Field(10, ge=2, description="NARMA order N (memory of the recursion)")
    a1: float = Field(0.3, description="coefficient of y[t]")
    a2: float = Field(0.05, description="coefficient of y[t] * sum_{i<N} y[t-i]")
    b: float = Field(1.5, description="coefficient of u[t-N+1] * u[t]")
    c: float = Field(0.1, description="constant term")
    u_low: float = Field(0.0, description="lower bound of the uniform input")
    u_high: float = Field(0.5, description="upper bound of the uniform input")

    primary_metric: ClassVar[str] = "nrmse"
    chunked_generation: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check_bounds(self) -> Narma:
        if not self.u_high > self.u_low:
            raise ValueError(f"u_high ({self.u_high}) must exceed u_low ({self.u_low})")
        return self

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def min_washout(self) -> int:
        """Steps before the targets leave their all-zero start."""
        return self.order

    def generate(self, n_steps: int, seed: int) -> TaskData:
        n_steps = self._check_n_steps(n_steps)
        u = np.random.default_rng(seed).uniform(self.u_low, self.u_high, n_steps)
        y = _narma(u, self.order, self.a1, self.a2, self.b, self.c)
        if not np.all(np.isfinite(y)):
            raise FloatingPointError(
                f"NARMA-{self.order} diverged for seed {seed}; this happens for some seeds at "
                "high orders -- try another seed or smaller coefficients"
            )
        return TaskData(inputs=u[:, None], targets=y[:, None], meta={"order": self.order})

    def generate_chunks(self, n_steps: int, seed: int, rows: int) -> Iterator[TaskData]:
        """:meth:`generate` in pieces of at most ``rows`` rows, equal to it bit for bit: the
        inputs are drawn piece by piece from the same generator and the recursion carries its
        last ``order`` rows over. A diverging series raises at the piece where it diverges."""
        n_steps = self._check_n_steps(n_steps)
        rows = self._check_n_steps(rows)
        rng = np.random.default_rng(seed)
        m = self.order - 1
        u_tail, y_tail = np.empty(0), np.empty(0)
        for a in range(0, n_steps, rows):
            b = min(a + rows, n_steps)
            u = np.concatenate([u_tail, rng.uniform(self.u_low, self.u_high, b - a)])
            y = np.concatenate([y_tail, np.zeros(b - a)])
            g0 = a - u_tail.shape[0]
            # rows a..b-1 of y: from t = a - 1 (its window is the tail) up to t = b - 2
            _narma_continue(u, y, g0, max(m, a - 1), b - 1, self.order, self.a1, self.a2, self.b, self.c)
            rows_y = y[a - g0:]
            if not np.all(np.isfinite(rows_y)):
                raise FloatingPointError(
                    f"NARMA-{self.order} diverged for seed {seed}; this happens for some seeds at "
                    "high orders -- try another seed or smaller coefficients"
                )
            yield TaskData(inputs=u[a - g0:, None].copy(), targets=rows_y[:, None].copy(), meta={"order": self.order})
            u_tail, y_tail = u[-self.order:].copy(), y[-self.order:].copy()
