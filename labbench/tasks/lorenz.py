"""Lorenz-63 forecasting and valid prediction time.

The Lorenz 1963 system (J. Atmos. Sci. 20:130),

    dx/dt = sigma (y - x),   dy/dt = x (rho - z) - y,   dz/dt = x y - beta z,

with sigma=10, rho=28, beta=8/3, integrated by fixed-step RK4. Autonomous forecasts
are scored by the valid prediction time of Pathak et al. 2018 (Chaos 28, 041101).
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
from numba import njit
from pydantic import Field

from labbench.metrics import valid_prediction_time
from labbench.tasks.base import FreeRunPlan, Task, TaskData

__all__ = ["Lorenz"]

_REFERENCE_X0 = (-5.0, -5.0, 20.0)  # initial condition of the normalisation reference trajectory
_REFERENCE_SAMPLES = 50_000
_REFERENCE_TRANSIENT = 1_000
_X0 = (1.0, 1.0, 1.0)
_X0_JITTER = 0.1  # std of the seeded Gaussian perturbation of _X0


@njit(cache=True)
def _lorenz_integrate(
    x0: np.ndarray, n_samples: int, dt: float, substeps: int, sigma: float, rho: float, beta: float
) -> np.ndarray:
    """``n_samples`` states ``dt`` apart (row 0 is ``x0``), RK4 with ``substeps`` steps per sample."""
    out = np.empty((n_samples, 3))
    h = dt / substeps
    x, y, z = x0[0], x0[1], x0[2]
    out[0, 0], out[0, 1], out[0, 2] = x, y, z
    for i in range(1, n_samples):
        for _ in range(substeps):
            k1x = sigma * (y - x)
            k1y = x * (rho - z) - y
            k1z = x * y - beta * z
            xa, ya, za = x + 0.5 * h * k1x, y + 0.5 * h * k1y, z + 0.5 * h * k1z
            k2x = sigma * (ya - xa)
            k2y = xa * (rho - za) - ya
            k2z = xa * ya - beta * za
            xb, yb, zb = x + 0.5 * h * k2x, y + 0.5 * h * k2y, z + 0.5 * h * k2z
            k3x = sigma * (yb - xb)
            k3y = xb * (rho - zb) - yb
            k3z = xb * yb - beta * zb
            xc, yc, zc = x + h * k3x, y + h * k3y, z + h * k3z
            k4x = sigma * (yc - xc)
            k4y = xc * (rho - zc) - yc
            k4z = xc * yc - beta * zc
            x += h / 6.0 * (k1x + 2.0 * k2x + 2.0 * k3x + k4x)
            y += h / 6.0 * (k1y + 2.0 * k2y + 2.0 * k3y + k4y)
            z += h / 6.0 * (k1z + 2.0 * k2z + 2.0 * k3z + k4z)
        out[i, 0], out[i, 1], out[i, 2] = x, y, z
    return out


def _trajectory(x0: np.ndarray, n_samples: int, transient: int, dt: float, substeps: int,
                sigma: float, rho: float, beta: float) -> np.ndarray:
    """``n_samples`` states after discarding ``transient`` samples from ``x0``."""
    x = np.asarray(x0, dtype=np.float64)
    if transient:
        x = _lorenz_integrate(x, transient + 1, dt, substeps, sigma, rho, beta)[-1]
    return _lorenz_integrate(x, n_samples, dt, substeps, sigma, rho, beta)


@lru_cache(maxsize=16)
def _reference_stats(
    dt: float, substeps: int, sigma: float, rho: float, beta: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-component mean and std, and ``sqrt(<||x||^2>)``, of the reference trajectory.

    The reference starts from a fixed initial condition unrelated to any task seed, so
    the normalisation never sees a generated series (no test statistics leak in).
    """
    ref = _trajectory(np.array(_REFERENCE_X0), _REFERENCE_SAMPLES, _REFERENCE_TRANSIENT,
                      dt, substeps, sigma, rho, beta)
    mean, std = ref.mean(axis=0), ref.std(axis=0)
    norm = float(np.sqrt(np.mean(np.sum(ref * ref, axis=1))))
    mean.setflags(write=False)
    std.setflags(write=False)
    return mean, std, norm


class Lorenz(Task):
    """Lorenz-63 one-step-ahead prediction with an autonomous (free-run) evaluation.

    The trajectory starts from ``[1, 1, 1]`` plus a seeded Gaussian perturbation (std
    0.1), is integrated by RK4 with ``substeps`` steps per sample ``dt`` and loses its
    first ``transient`` samples. Inputs are ``x[t]`` and targets ``x[t+1]``, both
    z-scored per component with the mean and std of a SEPARATE reference trajectory
    (50,000 samples from the fixed initial condition ``[-5, -5, 20]`` after the same
    kind of transient), so no statistic of the generated series -- and hence none of
    its test part -- enters the normalisation. The constants are in ``meta``.

    Free run: ``free_run_starts`` starts ``free_run_spacing`` apart from the start of
    the test region, each synchronised on ``free_run_sync`` teacher inputs and run
    ``free_run_horizon`` steps closed loop; scored by the valid prediction time of
    Pathak et al. 2018 (errors in the original coordinates, normaliser the uncentred
    ``sqrt(<||x||^2>)`` of the reference trajectory, threshold ``vpt_threshold``).
    """

    name: Literal["lorenz"] = "lorenz"
    sigma: float = Field(10.0, gt=0, description="Prandtl number sigma")
    rho: float = Field(28.0, gt=0, description="Rayleigh number rho")
    beta: float = Field(8.0 / 3.0, gt=0, description="geometric factor beta")
    dt: float = Field(0.02, gt=0, description="time between samples")
    substeps: int = Field(10, ge=1, description="RK4 steps per sample (step dt / substeps)")
    transient: int = Field(1000, ge=0, description="samples discarded at the start")
    lyapunov_exponent: float = Field(0.906, gt=0, description="largest Lyapunov exponent (1/time unit)")
    free_run: bool = Field(True, description="evaluate autonomous (closed-loop) forecasting")
    free_run_starts: int = Field(20, ge=1, description="number of free-run starts")
    free_run_spacing: int = Field(420, ge=1, description="samples between consecutive free-run starts")
    free_run_horizon: int = Field(1500, ge=1, description="closed-loop steps per start")
    free_run_sync: int = Field(500, ge=0, description="teacher-forced steps before each free run")
    vpt_threshold: float = Field(0.4, gt=0, description="error threshold f of the valid prediction time")

    primary_metric: ClassVar[str] = "nrmse"

    @property
    def n_inputs(self) -> int:
        return 3

    @property
    def n_outputs(self) -> int:
        return 3

    def _reference(self) -> tuple[np.ndarray, np.ndarray, float]:
        return _reference_stats(float(self.dt), int(self.substeps), float(self.sigma), float(self.rho),
                                float(self.beta))

    def generate(self, n_steps: int, seed: int) -> TaskData:
        """Z-scored inputs ``x[t]`` and targets ``x[t+1]``, each ``(n_steps, 3)``."""
        n_steps = self._check_n_steps(n_steps)
        rng = np.random.default_rng(seed)
        x0 = np.array(_X0) + _X0_JITTER * rng.standard_normal(3)
        traj = _trajectory(x0, n_steps + 1, self.transient, self.dt, self.substeps,
                           self.sigma, self.rho, self.beta)
        mean, std, norm = self._reference()
        z = (traj - mean) / std
        return TaskData(
            inputs=z[:-1].copy(),
            targets=z[1:].copy(),
            meta={
                "dt": self.dt,
                "lyapunov_exponent": self.lyapunov_exponent,
                "mean": mean.tolist(),
                "std": std.tolist(),
                "norm": norm,
            },
        )

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
        """Valid prediction time in Lyapunov times: median, min and max over the starts.

        Predictions and truth are mapped back to the original coordinates
        (``z * std + mean``) before the errors are taken (Pathak et al. 2018). A start
        that never crosses the threshold is censored at ``horizon * dt * lambda``.
        """
        p, truth = self._free_run_truth(data, plan, pred)
        mean, std, norm = self._reference()
        vpt = valid_prediction_time(
            truth * std + mean,
            p * std + mean,
            dt=self.dt,
            lyapunov_exponent=self.lyapunov_exponent,
            threshold=self.vpt_threshold,
            norm=norm,
        )
        return {
            "valid_prediction_time": float(np.median(vpt)),
            "vpt_min": float(np.min(vpt)),
            "vpt_max": float(np.max(vpt)),
        }
