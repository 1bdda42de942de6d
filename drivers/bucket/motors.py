"""The wave makers: vibration motors on the tank's walls.

The forcing of the wave equation (the vertical acceleration imposed on the surface) is

    F(x, t) = sum_m a_m u_m(t) G(x - x_m),    u_m(t) = duty_m(row) sin(2 pi f t + phi_m),

with G a Gaussian footprint of standard deviation ``footprint_m`` centred on a point of a
wall (Fernando & Sojakka 2003 put LEGO motors on the sides of the tank). G has its spatial
mean removed: a motor displaces water, it does not add any, so the volume stays exactly
constant. Each time a motor switches on (its duty goes from 0 to > 0: a trial), its
amplitude a_m = gain (1 + amplitude_jitter z), z ~ N(0, 1) (clipped at 0), and its phase
phi_m ~ U(-phase_jitter, phase_jitter) are drawn anew from the tank's seeded generators,
so repeated trials of the same input differ as they do on a real rig.
"""

from __future__ import annotations

import numpy as np

from .params import MotorParams


def default_positions(n_motors: int, width_m: float, length_m: float) -> np.ndarray:
    """Motor positions (n, 2) [x, y]: the mid-points of the left, right, bottom and top walls,
    or for more than four motors, evenly spaced along the perimeter."""
    mids = np.array([[0.0, length_m / 2], [width_m, length_m / 2], [width_m / 2, 0.0], [width_m / 2, length_m]])
    if n_motors <= 4:
        return mids[:n_motors]
    s = (np.arange(n_motors) + 0.5) / n_motors * 2 * (width_m + length_m)
    pos = np.empty((n_motors, 2))
    for i, d in enumerate(s):
        if d < width_m:
            pos[i] = [d, 0.0]
        elif d < width_m + length_m:
            pos[i] = [width_m, d - width_m]
        elif d < 2 * width_m + length_m:
            pos[i] = [2 * width_m + length_m - d, length_m]
        else:
            pos[i] = [0.0, 2 * (width_m + length_m) - d]
    return pos


class Motors:
    """Footprints and per-sub-step forcing amplitudes of the motors.

    Parameters
    ----------
    params
        The motors.
    x, y
        Cell-centre coordinates (m) of the solver's grid along x (columns) and y (rows).
    width_m, length_m
        The tank's extent (m), for the default positions.
    """

    def __init__(self, params: MotorParams, x: np.ndarray, y: np.ndarray, width_m: float, length_m: float) -> None:
        self.params = params
        self.n = params.n_motors
        self.positions = (np.asarray(params.positions_m, dtype=np.float64) if params.positions_m is not None
                          else default_positions(self.n, width_m, length_m))
        sig2 = 2.0 * params.footprint_m**2
        fp = np.exp(-((x[None, None, :] - self.positions[:, 0, None, None]) ** 2
                      + (y[None, :, None] - self.positions[:, 1, None, None]) ** 2) / sig2)
        self.footprints = fp - fp.mean(axis=(1, 2), keepdims=True)
        self._amp_rng = np.random.default_rng(0)
        self._phase_rng = np.random.default_rng(1)
        self.reset(self._amp_rng, self._phase_rng)

    def reset(self, amp_rng: np.random.Generator, phase_rng: np.random.Generator) -> None:
        """All motors off; jitter drawn from these generators from now on."""
        self._amp_rng, self._phase_rng = amp_rng, phase_rng
        self._on = np.zeros(self.n, dtype=bool)
        self._amp = np.full(self.n, self.params.gain)
        self._phase = np.zeros(self.n)

    def amplitudes(self, drive: np.ndarray, t0: float, n_sub: int, dt_sub: float) -> np.ndarray:
        """Forcing amplitude of each motor at each sub-step of a block of frames.

        Parameters
        ----------
        drive
            (T, M) duty per motor per frame, in [0, 1].
        t0
            Simulated time at the start of the block (s).
        n_sub, dt_sub
            Sub-steps per frame and their length (s); sub-step k is forced at its mid-point.

        Returns
        -------
        numpy.ndarray
            (T * n_sub, M) amplitudes (m/s^2).
        """
        p = self.params
        n_rows = drive.shape[0]
        on = drive > 0
        switch_on = on & ~np.vstack([self._on[None, :], on[:-1]])
        rows_ev, mot_ev = np.nonzero(switch_on)  # row-major: events in time order, then motor order
        n_ev = rows_ev.size
        z = self._amp_rng.standard_normal(n_ev)
        ph = self._phase_rng.uniform(-p.phase_jitter, p.phase_jitter, n_ev) if p.phase_jitter > 0 else np.zeros(n_ev)
        amp_ev = p.gain * np.maximum(1.0 + p.amplitude_jitter * z, 0.0)
        amp = np.empty((n_rows, self.n))
        phase = np.empty((n_rows, self.n))
        rows = np.arange(n_rows)
        for m in range(self.n):
            sel = mot_ev == m
            ev_rows = rows_ev[sel]
            idx = np.searchsorted(ev_rows, rows, side="right") - 1
            amp[:, m] = np.where(idx >= 0, amp_ev[sel][np.maximum(idx, 0)], self._amp[m]) if ev_rows.size else self._amp[m]
            phase[:, m] = np.where(idx >= 0, ph[sel][np.maximum(idx, 0)], self._phase[m]) if ev_rows.size else self._phase[m]
        if n_rows:
            self._on = on[-1].copy()
            self._amp = amp[-1].copy()
            self._phase = phase[-1].copy()
        t = t0 + (np.arange(n_rows * n_sub) + 0.5) * dt_sub
        osc = np.sin(2 * np.pi * p.frequency_hz * t[:, None] + np.repeat(phase, n_sub, axis=0))
        return np.repeat(amp * drive, n_sub, axis=0) * osc
