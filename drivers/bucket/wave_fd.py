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
def _leapfrog(h, h_prev, out, keep_index, amps, patches, boxes, offsets, c2, g_minus, g_plus_inv, dt2_over_dx2, dt2,
              kappa_over_h):
    """Advance ``amps.shape[0]`` sub-steps; ``out[keep_index[s]]`` receives h after sub-step s
    when ``keep_index[s] >= 0``.

    The forcing of motor m is ``amps[s, m]`` times its footprint: ``patches[m]`` inside the
    box ``boxes[m] = (i0, i1, j0, j1)`` minus the constant ``offsets[m]`` everywhere (the
    footprint's mean). ``g_minus`` = 1 - gamma dt / 2 and ``g_plus_inv`` = 1 / (1 + gamma dt / 2)
    per cell. Reflecting walls: a neighbour beyond a wall is the cell itself (zero flux).
    """
    n_sub, n_m = amps.shape
    ny, nx = h.shape
    force = np.empty_like(h)
    nxt = np.empty_like(h)
    for s in range(n_sub):
        const = 0.0
        for m in range(n_m):
            const -= amps[s, m] * offsets[m]
        force[:, :] = const
        for m in range(n_m):
            a = amps[s, m]
            if a != 0.0:
                i0, i1, j0, j1 = boxes[m, 0], boxes[m, 1], boxes[m, 2], boxes[m, 3]
                for i in range(i0, i1):
                    for j in range(j0, j1):
                        force[i, j] += a * patches[m, i - i0, j - j0]
        for i in range(ny):
            up = i - 1 if i > 0 else 0
            dn = i + 1 if i + 1 < ny else ny - 1
            if kappa_over_h == 0.0:
                for j in range(1, nx - 1):          # interior columns: no branches, vectorisable
                    acc = h[i, j + 1] + h[i, j - 1] + h[up, j] + h[dn, j] - 4.0 * h[i, j]
                    nxt[i, j] = (2.0 * h[i, j] - g_minus[i, j] * h_prev[i, j] + c2 * dt2_over_dx2 * acc
                                 + dt2 * force[i, j]) * g_plus_inv[i, j]
                for j in (0, nx - 1):
                    lf = j - 1 if j > 0 else 0
                    rt = j + 1 if j + 1 < nx else nx - 1
                    acc = h[i, rt] + h[i, lf] + h[up, j] + h[dn, j] - 4.0 * h[i, j]
                    nxt[i, j] = (2.0 * h[i, j] - g_minus[i, j] * h_prev[i, j] + c2 * dt2_over_dx2 * acc
                                 + dt2 * force[i, j]) * g_plus_inv[i, j]
            else:
                k2 = 0.5 * kappa_over_h
                for j in range(nx):
                    lf = j - 1 if j > 0 else 0
                    rt = j + 1 if j + 1 < nx else nx - 1
                    hc = h[i, j]
                    acc = ((1.0 + k2 * (hc + h[i, rt])) * (h[i, rt] - hc)
                           - (1.0 + k2 * (hc + h[i, lf])) * (hc - h[i, lf])
                           + (1.0 + k2 * (hc + h[dn, j])) * (h[dn, j] - hc)
                           - (1.0 + k2 * (hc + h[up, j])) * (hc - h[up, j]))
                    nxt[i, j] = (2.0 * hc - g_minus[i, j] * h_prev[i, j] + c2 * dt2_over_dx2 * acc
                                 + dt2 * force[i, j]) * g_plus_inv[i, j]
        h_prev[:, :] = h
        h[:, :] = nxt
        k = keep_index[s]
        if k >= 0:
            out[k] = nxt


def footprint_patches(footprints: np.ndarray, rel_tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split zero-mean footprints (M, ny, nx) into local patches, their boxes and the constant offsets.

    Each footprint is ``patch`` inside ``box = (i0, i1, j0, j1)`` minus ``offset`` everywhere;
    outside the box the footprint before the offset is below ``rel_tol`` times its peak.
    """
    n_m = footprints.shape[0]
    offsets = -footprints.min(axis=(1, 2)) if n_m else np.zeros(0)
    raw = footprints + offsets[:, None, None]
    boxes = np.zeros((n_m, 4), dtype=np.int64)
    for m in range(n_m):
        rows, cols = np.nonzero(raw[m] > rel_tol * max(raw[m].max(), 1e-300))
        if rows.size == 0:
            continue
        boxes[m] = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    bh = int(max((boxes[:, 1] - boxes[:, 0]).max(initial=0), 1))
    bw = int(max((boxes[:, 3] - boxes[:, 2]).max(initial=0), 1))
    patches = np.zeros((n_m, bh, bw))
    for m in range(n_m):
        i0, i1, j0, j1 = boxes[m]
        patches[m, : i1 - i0, : j1 - j0] = raw[m, i0:i1, j0:j1]
    return patches, boxes, offsets


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

    def prepare(self, footprints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The motors' footprints (M, ny, nx) in the form :meth:`advance` uses (local patches)."""
        return footprint_patches(np.asarray(footprints, dtype=np.float64))

    def advance(self, amps: np.ndarray, footprints: np.ndarray | tuple, keep: np.ndarray | None = None) -> np.ndarray:
        """Advance ``len(amps)`` sub-steps.

        Parameters
        ----------
        amps
            (S, M) forcing amplitude of each motor at each sub-step (m/s^2).
        footprints
            (M, ny, nx) spatial shape of each motor's forcing, or :meth:`prepare`'s result.
        keep
            (S,) bool: the sub-steps whose heights are returned (default all).

        Returns
        -------
        numpy.ndarray
            (K, ny, nx) the height after each kept sub-step (m).
        """
        amps = np.ascontiguousarray(amps, dtype=np.float64)
        patches, boxes, offsets = footprints if isinstance(footprints, tuple) else self.prepare(footprints)
        keep = np.ones(amps.shape[0], dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
        keep_index = np.where(keep, np.cumsum(keep) - 1, -1).astype(np.int64)
        out = np.empty((int(keep.sum()), self.ny, self.nx))
        _leapfrog(self.h, self.h_prev, out, keep_index, amps, patches, boxes, offsets,
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
