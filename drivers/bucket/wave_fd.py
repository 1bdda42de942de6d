"""Finite-difference solver of the damped shallow-water wave equation (the default).

The surface height h(x, y, t) above still water obeys

    h_tt + gamma(x) h_t = div( c^2 (1 + kappa h / H) grad h ) + F(x, t),    c^2 = g H,

with reflecting walls (dh/dn = 0, no flux through a wall) and an optional absorbing sponge
(gamma grows quadratically over ``sponge_m`` towards the walls). kappa is a weak
shallow-water nonlinearity (the local depth H + h sets the local speed); 0 by default.

Discretisation: cell-centred grid, conservative flux form (the face coefficient is the mean
of its two cells), so the total volume sum(h) dx^2 changes only through F (and through a
sponge, whose non-uniform damping is not volume-neutral); leapfrog in
time with the damping term centred, as in Hughes, Williamson, Minkov & Fan, "Wave physics
as an analog recurrent neural network", Sci. Adv. 5, eaay6946 (2019) (the ``wavetorch``
update):

    h+ = [ 2 h - (1 - gamma dt / 2) h- + dt^2 (div(...) + F) ] / (1 + gamma dt / 2).

Stable when the Courant number c dt / dx <= 1 / sqrt(2) (2-D, square cells); a time step
beyond it is refused. The whole sub-step loop runs in one numba function.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .params import TankParams

#: the Courant limit of the 2-D leapfrog on square cells
CFL_LIMIT = 1.0 / math.sqrt(2.0)
#: automatic sub-steps keep c dt / dx below this fraction of the limit (margin for kappa > 0)
SAFETY = 0.5
#: peak extra damping of the sponge, in units of c / sponge_m
_SPONGE_STRENGTH = 4.0


def grid_shape(tank: TankParams) -> tuple[int, int, float]:
    """Cells (ny, nx) and the cell size dx (m) for a tank: ``grid`` cells along the longer side."""
    dx = max(tank.width_m, tank.length_m) / tank.grid
    return max(2, round(tank.length_m / dx)), max(2, round(tank.width_m / dx)), dx


def check_cfl(c: float, dt: float, dx: float) -> None:
    """Refuse a time step beyond the leapfrog's stability limit.

    Raises
    ------
    ValueError
        When ``c * dt / dx > 1 / sqrt(2)``; the message names c, dt, dx and the limit.
    """
    courant = c * dt / dx
    if courant > CFL_LIMIT:
        raise ValueError(f"CFL violated: c*dt/dx = {c:.4g} m/s * {dt:.4g} s / {dx:.4g} m = {courant:.4f} > "
                         f"1/sqrt(2) = {CFL_LIMIT:.4f}; use a smaller dt (at most {CFL_LIMIT * dx / c:.4g} s) "
                         "or a coarser grid")


@numba.njit(cache=True, nogil=True)
def _leapfrog(h, h_prev, out, amps, footprints, c2, g_minus, g_plus_inv, dt2_over_dx2, dt2, kappa_over_h):
    """Advance ``amps.shape[0]`` sub-steps; ``out[s]`` receives h after sub-step s.

    ``amps`` (S, M): forcing amplitude of each motor per sub-step; ``footprints`` (M, ny, nx);
    ``g_minus`` = 1 - gamma dt / 2 and ``g_plus_inv`` = 1 / (1 + gamma dt / 2) per cell.
    """
    n_sub, n_m = amps.shape
    ny, nx = h.shape
    nxt = np.empty_like(h)
    for s in range(n_sub):
        for i in range(ny):
            for j in range(nx):
                hc = h[i, j]
                acc = 0.0
                if j + 1 < nx:
                    acc += (1.0 + kappa_over_h * 0.5 * (hc + h[i, j + 1])) * (h[i, j + 1] - hc)
                if j > 0:
                    acc -= (1.0 + kappa_over_h * 0.5 * (hc + h[i, j - 1])) * (hc - h[i, j - 1])
                if i + 1 < ny:
                    acc += (1.0 + kappa_over_h * 0.5 * (hc + h[i + 1, j])) * (h[i + 1, j] - hc)
                if i > 0:
                    acc -= (1.0 + kappa_over_h * 0.5 * (hc + h[i - 1, j])) * (hc - h[i - 1, j])
                f = 0.0
                for m in range(n_m):
                    f += amps[s, m] * footprints[m, i, j]
                nxt[i, j] = (2.0 * hc - g_minus[i, j] * h_prev[i, j] + c2 * dt2_over_dx2 * acc
                             + dt2 * f) * g_plus_inv[i, j]
        for i in range(ny):
            for j in range(nx):
                h_prev[i, j] = h[i, j]
                h[i, j] = nxt[i, j]
                out[s, i, j] = nxt[i, j]


class FDSolver:
    """Leapfrog finite differences on the tank's cell-centred grid.

    Parameters
    ----------
    tank
        The tank (``grid``, depth, gravity, damping, nonlinearity, sponge).
    dt
        The sub-step (s). Refused (``ValueError``) beyond the CFL limit.
    """

    name = "fd"

    def __init__(self, tank: TankParams, dt: float) -> None:
        self.tank = tank
        self.ny, self.nx, self.dx = grid_shape(tank)
        self.c = math.sqrt(tank.gravity * tank.depth_m)
        check_cfl(self.c, dt, self.dx)
        self.dt = float(dt)
        self.x = (np.arange(self.nx) + 0.5) * self.dx
        self.y = (np.arange(self.ny) + 0.5) * self.dx
        self.gamma = self._gamma_field()
        half = 0.5 * self.gamma * self.dt
        self._g_minus = 1.0 - half
        self._g_plus_inv = 1.0 / (1.0 + half)
        self.h = np.zeros((self.ny, self.nx))
        self.h_prev = np.zeros((self.ny, self.nx))

    @staticmethod
    def auto_dt(tank: TankParams, frame_dt: float) -> tuple[float, int]:
        """The sub-step and the sub-steps per frame that keep c dt / dx <= SAFETY / sqrt(2)."""
        _, _, dx = grid_shape(tank)
        c = math.sqrt(tank.gravity * tank.depth_m)
        n = max(1, math.ceil(frame_dt / (SAFETY * CFL_LIMIT * dx / c)))
        return frame_dt / n, n

    def _gamma_field(self) -> np.ndarray:
        gamma = np.full((self.ny, self.nx), self.tank.damping)
        s = self.tank.sponge_m
        if s > 0:
            d = np.minimum.outer(np.minimum(self.y, self.tank.length_m - self.y),
                                 np.minimum(self.x, self.tank.width_m - self.x))
            depth_in = np.clip((s - d) / s, 0.0, 1.0)
            gamma = gamma + _SPONGE_STRENGTH * self.c / s * depth_in**2
        return gamma

    def reset(self) -> None:
        """Still water."""
        self.h[:] = 0.0
        self.h_prev[:] = 0.0

    def set_state(self, h: np.ndarray, h_prev: np.ndarray | None = None) -> None:
        """Set the height (m) now and one sub-step ago (default: the same, i.e. at rest)."""
        self.h[:] = h
        self.h_prev[:] = h if h_prev is None else h_prev

    def advance(self, amps: np.ndarray, footprints: np.ndarray) -> np.ndarray:
        """Advance ``len(amps)`` sub-steps.

        Parameters
        ----------
        amps
            (S, M) forcing amplitude of each motor at each sub-step (m/s^2).
        footprints
            (M, ny, nx) spatial shape of each motor's forcing.

        Returns
        -------
        numpy.ndarray
            (S, ny, nx) the height after each sub-step (m).
        """
        amps = np.ascontiguousarray(amps, dtype=np.float64)
        out = np.empty((amps.shape[0], self.ny, self.nx))
        _leapfrog(self.h, self.h_prev, out, amps, np.ascontiguousarray(footprints, dtype=np.float64),
                  self.c**2, self._g_minus, self._g_plus_inv, self.dt**2 / self.dx**2, self.dt**2,
                  self.tank.nonlinearity / self.tank.depth_m)
        return out

    def energy(self) -> float:
        """Discrete wave energy per unit density, 1/2 sum(h_t^2 + c^2 |grad h|^2) dx^2 (m^4/s^2)."""
        ht = (self.h - self.h_prev) / self.dt
        hm = 0.5 * (self.h + self.h_prev)
        gx = np.diff(hm, axis=1) / self.dx
        gy = np.diff(hm, axis=0) / self.dx
        return 0.5 * self.dx**2 * (np.sum(ht**2) + self.c**2 * (np.sum(gx**2) + np.sum(gy**2)))

    def describe(self) -> dict:
        """Solver, grid, sub-step and Courant number."""
        return {"solver": self.name, "grid": [self.ny, self.nx], "dx_m": self.dx, "dt_s": self.dt,
                "c_m_per_s": self.c, "courant": self.c * self.dt / self.dx, "cfl_limit": CFL_LIMIT}
