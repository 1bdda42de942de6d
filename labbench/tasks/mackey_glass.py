"""Mackey-Glass chaotic time-series prediction.

The delay differential equation of Mackey & Glass 1977 (Science 197:287),

    dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t),

with the classic chaotic parameters a=0.2, b=0.1, n=10, tau=17, is integrated with
fourth-order Runge-Kutta at step ``h``; the delayed values at the half steps come from
linear interpolation of the stored history. The forecast benchmark and its free-run
score follow Jaeger & Haas 2004 ("Harnessing nonlinearity", Science 304:78).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from statistics import median
from typing import ClassVar, Literal

import numpy as np
from numba import njit
from pydantic import Field, model_validator

from labbench.tasks.base import FreeRunPlan, Task, TaskData

__all__ = ["MackeyGlass"]


@njit(cache=True)
def _mg_rhs(x: float, xd: float, a: float, b: float, n: float) -> float:
    return a * xd / (1.0 + xd**n) - b * x


@njit(cache=True)
def _mg_delayed(buf: np.ndarray, pos: float) -> float:
    """Linear interpolation of ``buf`` at fractional index ``pos`` (0 <= pos <= last written)."""
    j = int(math.floor(pos))
    frac = pos - j
    if frac == 0.0:
        return buf[j]
    return (1.0 - frac) * buf[j] + frac * buf[j + 1]


@njit(cache=True)
def _mg_integrate(
    history: np.ndarray, n_samples: int, every: int, h: float, delay: float, a: float, b: float, n: float
) -> np.ndarray:
    """RK4 integration of the Mackey-Glass DDE.

    ``history[i]`` is ``x`` at time ``(i - len(history) + 1) * h`` (the last entry is
    ``x(0)``), with ``len(history) - 1 >= delay = tau / h``. Returns ``n_samples``
    values ``x(k * every * h)``, ``k = 0..n_samples-1``.
    """
    m = history.shape[0]
    n_int = (n_samples - 1) * every
    buf = np.empty(m + n_int)
    buf[:m] = history
    out = np.empty(n_samples)
    out[0] = buf[m - 1]
    for i in range(n_int):
        cur = m - 1 + i  # index of x(t_i)
        x = buf[cur]
        d0 = _mg_delayed(buf, cur - delay)
        d1 = _mg_delayed(buf, cur + 0.5 - delay)
        d2 = _mg_delayed(buf, cur + 1.0 - delay)
        k1 = _mg_rhs(x, d0, a, b, n)
        k2 = _mg_rhs(x + 0.5 * h * k1, d1, a, b, n)
        k3 = _mg_rhs(x + 0.5 * h * k2, d1, a, b, n)
        k4 = _mg_rhs(x + h * k3, d2, a, b, n)
        buf[cur + 1] = x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        if (i + 1) % every == 0:
            out[(i + 1) // every] = buf[cur + 1]
    return out


@njit(cache=True)
def _mg_advance(
    work: np.ndarray, keep: int, n_samples: int, every: int, cur0: int, h: float, delay: float, a: float,
    b: float, n: float
) -> np.ndarray:
    """:func:`_mg_integrate`'s steps on a window of the history, for piecewise generation.

    ``work[:keep]`` holds ``x`` at the absolute indices ``cur0 - keep + 1 .. cur0`` of
    :func:`_mg_integrate`'s buffer (``keep - 1 >= delay``); the next ``n_samples * every``
    steps go to ``work[keep:]`` and the ``n_samples`` sampled values are returned. Positions
    are computed from the absolute indices, exactly as there, so the values are the same bit
    for bit.
    """
    base = cur0 - keep + 1
    out = np.empty(n_samples)
    for i in range(n_samples * every):
        cur = cur0 + i  # absolute index of x(t_i)
        x = work[cur - base]
        d0 = _mg_delayed_from(work, cur - delay, base)
        d1 = _mg_delayed_from(work, cur + 0.5 - delay, base)
        d2 = _mg_delayed_from(work, cur + 1.0 - delay, base)
        k1 = _mg_rhs(x, d0, a, b, n)
        k2 = _mg_rhs(x + 0.5 * h * k1, d1, a, b, n)
        k3 = _mg_rhs(x + 0.5 * h * k2, d1, a, b, n)
        k4 = _mg_rhs(x + h * k3, d2, a, b, n)
        work[cur - base + 1] = x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        if (i + 1) % every == 0:
            out[(i + 1) // every - 1] = work[cur - base + 1]
    return out


@njit(cache=True)
def _mg_delayed_from(buf: np.ndarray, pos: float, base: int) -> float:
    """:func:`_mg_delayed` at absolute position ``pos`` of a buffer whose first entry is index ``base``."""
    j = int(math.floor(pos))
    frac = pos - j
    if frac == 0.0:
        return buf[j - base]
    return (1.0 - frac) * buf[j - base] + frac * buf[j + 1 - base]


def _mg_samples(history: np.ndarray, n_total: int, every: int, h: float, delay: float, a: float, b: float,
                n: float, per_call: int):
    """The samples of ``_mg_integrate(history, n_total, ...)`` in pieces of at most ``per_call``,
    holding only ``len(history)`` past values between pieces."""
    keep = history.shape[0]
    yield history[-1:].copy()
    window = history.astype(np.float64, copy=True)
    done = 1
    cur0 = keep - 1
    while done < n_total:
        k = min(per_call, n_total - done)
        work = np.empty(keep + k * every)
        work[:keep] = window
        out = _mg_advance(work, keep, k, every, cur0, h, delay, a, b, n)
        window = work[-keep:].copy()
        cur0 += k * every
        done += k
        yield out


class MackeyGlass(Task):
    """Mackey-Glass one-step (or ``horizon``-step) ahead prediction.

    The series is sampled every ``sample_every`` time units from an RK4 integration
    at step ``h``; the first ``transient`` samples are discarded. With
    ``normalise=True`` the kept series is mapped to [-1, 1] with its own min and max,
    ``2 (x - min) / (max - min) - 1``, which mirrors ReservoirPy's "Introduction to
    Reservoir Computing" tutorial (note that min/max then see the test part too).
    Inputs are ``x[t]``, targets ``x[t + horizon]``.

    Free run (``free_run=True``, ``horizon == 1`` only): ``free_run_starts`` starts
    ``free_run_spacing`` apart from the start of the test region, each synchronised on
    ``free_run_sync`` teacher inputs and run ``free_run_horizon`` steps closed loop,
    scored as in Jaeger & Haas 2004 (NRMSE at horizon 84 over 100 starts).
    """

    name: Literal["mackey_glass"] = "mackey_glass"
    a: float = Field(0.2, gt=0, description="production coefficient a")
    b: float = Field(0.1, gt=0, description="decay coefficient b")
    n: float = Field(10.0, gt=0, description="Hill exponent n")
    tau: float = Field(17.0, gt=0, description="delay tau (time units); 17 gives mild chaos")
    h: float = Field(
        0.1,
        gt=0,
        description="RK4 integration step (time units); delayed values between stored points are "
        "linearly interpolated (with tau/h integral, 170 by default, only the half steps are); "
        "sample_every must be a whole multiple of h",
    )
    sample_every: float = Field(1.0, gt=0, description="time units between samples")
    x0: float = Field(1.2, gt=0, description="constant initial history value")
    history_noise: float = Field(
        0.01, ge=0, description="std of the seeded Gaussian noise added to the initial history"
    )
    transient: int = Field(1000, ge=0, description="samples discarded at the start")
    normalise: bool = Field(True, description="map the series to [-1, 1] by its min/max (ReservoirPy tutorial)")
    horizon: int = Field(1, ge=1, description="prediction horizon in samples: target is x[t + horizon]")
    free_run: bool = Field(False, description="evaluate autonomous (closed-loop) generation")
    free_run_horizon: int = Field(84, ge=1, description="closed-loop steps per start (Jaeger & Haas: 84)")
    free_run_starts: int = Field(100, ge=1, description="number of free-run starts")
    free_run_spacing: int = Field(30, ge=1, description="samples between consecutive free-run starts")
    free_run_sync: int = Field(500, ge=0, description="teacher-forced steps before each free run")
    valid_threshold: float = Field(
        0.1, gt=0, description="|error| / std(test targets) above which a free run stops being valid"
    )

    primary_metric: ClassVar[str] = "nrmse"
    chunked_generation: ClassVar[bool] = True

    @model_validator(mode="after")
    def _check_steps(self) -> MackeyGlass:
        ratio = self.sample_every / self.h
        if abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio) or round(ratio) < 1:
            raise ValueError(f"sample_every ({self.sample_every}) must be a whole multiple of h ({self.h})")
        if self.tau < self.h:
            raise ValueError(f"tau ({self.tau}) must be at least the integration step h ({self.h})")
        if self.free_run and self.horizon != 1:
            raise ValueError("free_run needs horizon = 1 (predictions are fed back as the next input)")
        return self

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_outputs(self) -> int:
        return 1

    def generate(self, n_steps: int, seed: int) -> TaskData:
        """Inputs ``x[t]`` and targets ``x[t + horizon]``, each ``(n_steps, 1)``."""
        n_steps = self._check_n_steps(n_steps)
        every = int(round(self.sample_every / self.h))
        delay = self.tau / self.h
        n_hist = int(math.ceil(delay - 1e-9)) + 1
        rng = np.random.default_rng(seed)
        history = self.x0 + self.history_noise * rng.standard_normal(n_hist)
        n_total = self.transient + n_steps + self.horizon
        x = _mg_integrate(history, n_total, every, self.h, delay, self.a, self.b, self.n)[self.transient :]
        lo, hi = float(x.min()), float(x.max())
        if self.normalise:
            x = 2.0 * (x - lo) / (hi - lo) - 1.0
        return TaskData(
            inputs=x[:n_steps, None].copy(),
            targets=x[self.horizon : self.horizon + n_steps, None].copy(),
            meta={
                "dt": self.sample_every,
                "raw_min": lo,
                "raw_max": hi,
                "normalised": self.normalise,
                "horizon": self.horizon,
            },
        )

    def generate_chunks(self, n_steps: int, seed: int, rows: int) -> Iterator[TaskData]:
        """:meth:`generate` in pieces of at most ``rows`` rows, equal to it bit for bit.

        The series is integrated twice: once for its min and max (the normalisation, when
        ``normalise``), once for the rows; each pass holds ``tau / h`` past values and one
        piece. Twice the integration time of :meth:`generate` (~0.1 s per 10^5 samples).
        """
        n_steps = self._check_n_steps(n_steps)
        rows = self._check_n_steps(rows)
        every = int(round(self.sample_every / self.h))
        delay = self.tau / self.h
        n_hist = int(math.ceil(delay - 1e-9)) + 1
        history = self.x0 + self.history_noise * np.random.default_rng(seed).standard_normal(n_hist)
        n_total = self.transient + n_steps + self.horizon
        args = (history, n_total, every, self.h, delay, self.a, self.b, self.n, max(rows, 1024))

        def kept():   # the samples after the transient, piece by piece
            skip = self.transient
            for x in _mg_samples(*args):
                if skip >= x.shape[0]:
                    skip -= x.shape[0]
                    continue
                yield x[skip:]
                skip = 0

        lo, hi = math.inf, -math.inf
        for x in kept():
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        meta = {"dt": self.sample_every, "raw_min": lo, "raw_max": hi, "normalised": self.normalise,
                "horizon": self.horizon}
        pending = np.empty(0)
        start = 0
        for x in kept():
            if self.normalise:
                x = 2.0 * (x - lo) / (hi - lo) - 1.0
            pending = np.concatenate([pending, x])
            # rows [start, start + r) need samples up to start + r - 1 + horizon
            while start < n_steps and (pending.shape[0] >= rows + self.horizon
                                       or pending.shape[0] == n_steps - start + self.horizon):
                r = min(rows, n_steps - start)
                yield TaskData(inputs=pending[:r, None].copy(),
                               targets=pending[self.horizon:self.horizon + r, None].copy(), meta=dict(meta))
                pending = pending[r:]
                start += r

    def free_run_plan(self, data: TaskData, test_start: int, test_end: int) -> FreeRunPlan | None:
        if not self.free_run:
            return None
        return self._evenly_spaced_plan(
            data,
            test_start,
            test_end,
            n_starts=self.free_run_starts,
            spacing=self.free_run_spacing,
            horizon=self.free_run_horizon,
            sync=self.free_run_sync,
        )

    def score_free_run(self, data: TaskData, plan: FreeRunPlan, pred: np.ndarray) -> dict[str, float]:
        """Closed-loop scores, errors normalised by the std of the test targets.

        Returns
        -------
        dict
            ``nrmse_free_run``: ``sqrt(mean_j (y_H - x)^2) / std`` at the last horizon
            ``H = plan.horizon`` over the starts (Jaeger & Haas 2004's NRMSE84);
            ``valid_steps``: median over starts of the first horizon with
            ``|error| / std > valid_threshold`` (``H`` when never crossed, i.e.
            censored at the plan's horizon; non-finite errors count as crossings).
        """
        p, truth = self._free_run_truth(data, plan, pred)
        end = data.targets.shape[0] if plan.test_end is None else plan.test_end
        sd = float(np.std(np.asarray(data.targets[plan.test_start : end], dtype=np.float64)))
        err = np.abs(p[..., 0] - truth[..., 0]) / sd  # (B, H)
        nrmse_h = float(np.sqrt(np.mean(np.square(err[:, -1]))))
        crossed = ~(err <= self.valid_threshold)
        steps = np.where(crossed.any(axis=1), np.argmax(crossed, axis=1) + 1, plan.horizon)
        return {"nrmse_free_run": nrmse_h, "valid_steps": float(median(steps.tolist()))}
