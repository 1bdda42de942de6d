"""Spectral solver: the cosine modes of the rectangular tank, each propagated exactly.

With reflecting walls (dh/dn = 0) the linear surface waves of a rectangular tank are the
cosine modes cos(p pi x / Lx) cos(q pi y / Ly), k = pi sqrt((p/Lx)^2 + (q/Ly)^2). Each
modal amplitude a_k is a damped oscillator

    a_k'' + gamma(k) a_k' + omega(k)^2 a_k = f_k(t),

with the capillary-gravity dispersion relation of water of depth H (Lamb, *Hydrodynamics*,
6th ed. 1932, §§228, 267)

    omega^2 = (g k + sigma k^3 / rho) tanh(k H)

and viscous damping. A free-surface wave's amplitude decays as exp(-2 nu k^2 t) (Lamb 1932,
§348; Landau & Lifshitz, *Fluid Mechanics*, §25, problem 1), i.e. at the rate 2 nu k^2 quoted
by issue 15; in the oscillator above (amplitude rate gamma / 2, energy rate gamma, as for the
FD solver's gamma_0) that is gamma(k) = gamma_0 + 4 nu k^2. gamma_0 is the tank's extra
(wall and bottom) damping, the same parameter as in the FD solver.

Over a sub-step dt the forcing is held constant (its projection onto the modes, f_k), and
each mode is advanced with the exact propagator of the damped oscillator, so there is no
CFL limit and no numerical dispersion: this is the faithful solver for 5-20 Hz ripples,
which dispersion makes shorter than sqrt(g H) / f. Grid fields come from the modes with
``scipy.fft.idctn`` (type 2 / 3, orthonormal), whose basis on the cell centres is exactly
these cosines. The solver is linear: kappa must be 0 and the walls reflect (no sponge).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import scipy.fft

from .params import TankParams
from .wave_fd import grid_shape


def dispersion(k: np.ndarray, tank: TankParams) -> np.ndarray:
    """omega(k) (rad/s) of capillary-gravity waves on depth H (Lamb 1932, §267)."""
    k = np.asarray(k, dtype=np.float64)
    w2 = (tank.gravity * k + tank.surface_tension / tank.density * k**3) * np.tanh(k * tank.depth_m)
    return np.sqrt(w2)


def decay_rate(k: np.ndarray, tank: TankParams) -> np.ndarray:
    """gamma(k) = gamma_0 + 4 nu k^2 (1/s): the energy decay rate of mode k.

    Its amplitude decays at gamma(k) / 2 = gamma_0 / 2 + 2 nu k^2 (Lamb 1932, §348).
    """
    return tank.damping + 4.0 * tank.viscosity * np.asarray(k, dtype=np.float64) ** 2


@numba.njit(cache=True, nogil=True)
def _propagate(a, v, out, keep_index, amps, modal_fp, aa, av, va, vv, inv_w2):
    """Advance every mode ``amps.shape[0]`` sub-steps with the exact damped-oscillator propagator,
    the forcing ``sum_m amps[s, m] modal_fp[m]`` held over each; ``out[keep_index[s]]`` receives
    the modal amplitudes after sub-step s when ``keep_index[s] >= 0``."""
    n_sub, n_m = amps.shape
    ny, nx = a.shape
    for s in range(n_sub):
        k = keep_index[s]
        for i in range(ny):
            for j in range(nx):
                f = 0.0
                for m in range(n_m):
                    f += amps[s, m] * modal_fp[m, i, j]
                ap = f * inv_w2[i, j]
                d = a[i, j] - ap
                vij = v[i, j]
                a[i, j] = aa[i, j] * d + av[i, j] * vij + ap
                v[i, j] = va[i, j] * d + vv[i, j] * vij
                if k >= 0:
                    out[k, i, j] = a[i, j]


class SpectralSolver:
    """Exact modal propagation on the tank's cell-centred grid.

    Parameters
    ----------
    tank
        The tank (``grid``, depth, g, rho, sigma, nu, gamma_0).
    dt
        The sub-step (s): the forcing is held over it. Any value is stable.
    """

    name = "spectral"

    def __init__(self, tank: TankParams, dt: float) -> None:
        if dt <= 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.tank = tank
        self.ny, self.nx, self.dx = grid_shape(tank)
        self.dt = float(dt)
        self.c = math.sqrt(tank.gravity * tank.depth_m)
        self.x = (np.arange(self.nx) + 0.5) * self.dx
        self.y = (np.arange(self.ny) + 0.5) * self.dx
        ky = np.pi * np.arange(self.ny) / (self.ny * self.dx)
        kx = np.pi * np.arange(self.nx) / (self.nx * self.dx)
        self.k = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
        self.omega = dispersion(self.k, tank)
        self.gamma = decay_rate(self.k, tank)
        self._propagator()
        self.a = np.zeros((self.ny, self.nx))
        self.v = np.zeros((self.ny, self.nx))

    def _propagator(self) -> None:
        w2, g, dt = self.omega**2, self.gamma, self.dt
        big2 = w2 - 0.25 * g**2
        mu = np.sqrt(np.abs(big2))
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(big2 > 0, np.cos(mu * dt), np.cosh(mu * dt))
            s = np.where(big2 > 0, np.sin(mu * dt) / mu, np.sinh(mu * dt) / mu)
        s = np.where(mu * dt < 1e-9, dt, s)
        c = np.where(mu * dt < 1e-9, 1.0, c)
        e = np.exp(-0.5 * g * dt)
        self._aa = e * (c + 0.5 * g * s)
        self._av = e * s
        self._va = -e * w2 * s
        self._vv = e * (c - 0.5 * g * s)
        self._inv_w2 = np.where(w2 > 0, 1.0 / np.where(w2 > 0, w2, 1.0), 0.0)

    def reset(self) -> None:
        """Still water."""
        self.a[:] = 0.0
        self.v[:] = 0.0

    def set_state(self, h: np.ndarray, h_t: np.ndarray | None = None) -> None:
        """Set the height (m) and its rate of change (m/s; default 0)."""
        self.a[:] = scipy.fft.dctn(h, type=2, norm="ortho")
        self.v[:] = 0.0 if h_t is None else scipy.fft.dctn(h_t, type=2, norm="ortho")

    def project(self, fields: np.ndarray) -> np.ndarray:
        """Modal coefficients of grid fields (..., ny, nx) (orthonormal DCT-II)."""
        return scipy.fft.dctn(fields, type=2, norm="ortho", axes=(-2, -1))

    def prepare(self, footprints: np.ndarray) -> tuple[np.ndarray]:
        """The motors' footprints (M, ny, nx) in the form :meth:`advance` uses (projected on the modes)."""
        return (np.ascontiguousarray(self.project(np.asarray(footprints, dtype=np.float64))),)

    def advance(self, amps: np.ndarray, footprints: np.ndarray | tuple, keep: np.ndarray | None = None) -> np.ndarray:
        """Advance ``len(amps)`` sub-steps, the forcing ``amps @ footprints`` held over each.

        Parameters
        ----------
        amps
            (S, M) forcing amplitude of each motor per sub-step (m/s^2).
        footprints
            (M, ny, nx) the motors' footprints, or :meth:`prepare`'s result.
        keep
            (S,) bool: the sub-steps whose heights are returned (default all).

        Returns
        -------
        numpy.ndarray
            (K, ny, nx) the height after each kept sub-step (m).
        """
        amps = np.ascontiguousarray(amps, dtype=np.float64)
        (modal_fp,) = footprints if isinstance(footprints, tuple) else self.prepare(footprints)
        keep = np.ones(amps.shape[0], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        keep_index = np.where(keep, np.cumsum(keep) - 1, -1).astype(np.int64)
        modal = np.empty((int(keep.sum()), self.ny, self.nx))
        _propagate(self.a, self.v, modal, keep_index, amps, modal_fp, self._aa, self._av, self._va, self._vv,
                   self._inv_w2)
        return scipy.fft.idctn(modal, type=2, norm="ortho", axes=(1, 2))

    @property
    def h(self) -> np.ndarray:
        """The current height field (m)."""
        return scipy.fft.idctn(self.a, type=2, norm="ortho")

    def energy(self) -> float:
        """Wave energy per unit density, 1/2 sum(v^2 + omega^2 a^2) dx^2 (m^4/s^2)."""
        return 0.5 * self.dx**2 * float(np.sum(self.v**2 + self.omega**2 * self.a**2))

    def describe(self) -> dict:
        """Solver, grid, sub-step and the highest mode's frequency."""
        return {"solver": self.name, "grid": [self.ny, self.nx], "dx_m": self.dx, "dt_s": self.dt,
                "c_m_per_s": self.c, "courant": self.c * self.dt / self.dx,
                "max_mode_hz": float(self.omega.max() / (2 * np.pi))}
