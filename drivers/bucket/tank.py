"""SimTank: the simulated bucket, from motor duties to camera frames.

One row of a run is one camera frame (1 / fps s). For each frame the tank advances its
solver (``wave_fd`` or ``wave_spectral``) by a few sub-steps, forced by the motors
(``motors``), and the camera (``camera``) renders the heights sampled during the exposure
into an 8-bit frame. Every random draw (motor amplitude and phase jitter, sensor noise)
comes from generators seeded from the tank's seed, one per purpose, so a fixed seed and the
same drive give the same frames bit for bit, whatever the block sizes.
"""

from __future__ import annotations

import math

import numpy as np

from .camera import Camera
from .motors import Motors
from .params import BucketSimParams
from .wave_fd import FDSolver
from .wave_spectral import SpectralSolver

#: height samples kept in memory at once (bounds a block's memory whatever its length)
_CHUNK_VALUES = 4_000_000
#: the spectral solver holds the forcing over a sub-step: at least this many per motor period
_SUBSTEPS_PER_PERIOD = 16


class SimTank:
    """The simulated bucket of water.

    Parameters
    ----------
    params
        Tank, motors and camera.
    seed
        Seed of the jitter and noise generators; None draws one (see :attr:`seed`).
    """

    def __init__(self, params: BucketSimParams, seed: int | None = None) -> None:
        self.params = params
        tank, cam = params.tank, params.camera
        self.dt = 1.0 / cam.fps
        if tank.solver == "fd":
            dt_sub, self.substeps = FDSolver.auto_dt(tank, self.dt)
            self.solver: FDSolver | SpectralSolver = FDSolver(tank, dt_sub)
        else:
            self.substeps = max(4, math.ceil(self.dt * _SUBSTEPS_PER_PERIOD * params.motors.frequency_hz))
            self.solver = SpectralSolver(tank, self.dt / self.substeps)
        self.motors = Motors(params.motors, self.solver.x, self.solver.y, tank.width_m, tank.length_m)
        self._footprints = self.solver.prepare(self.motors.footprints)
        self.camera = Camera(cam, (self.solver.ny, self.solver.nx), self.solver.dx)
        self.frame_shape: tuple[int, int] = self.camera.frame_shape
        self._samples = self.camera.exposure_samples(self.substeps)
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.reset(self.seed)

    def reset(self, seed: int | None = None) -> None:
        """Still water, time 0, motors off, and fresh jitter and noise generators.

        Parameters
        ----------
        seed
            New seed; None reuses the tank's seed (so the same drive gives the same frames again).
        """
        if seed is not None:
            self.seed = int(seed)
        amp_ss, phase_ss, noise_ss = np.random.SeedSequence(self.seed).spawn(3)
        self.motors.reset(np.random.default_rng(amp_ss), np.random.default_rng(phase_ss))
        self._noise_rng = np.random.default_rng(noise_ss)
        self.solver.reset()
        self._frames_done = 0

    def step(self, drive: np.ndarray) -> np.ndarray:
        """Advance one frame per row of ``drive``.

        Parameters
        ----------
        drive
            (T, n_motors) PWM duty per motor per camera frame, in [0, 1] (values outside are clipped).

        Returns
        -------
        numpy.ndarray
            (T, H, W) uint8: what the camera records in each frame period.
        """
        drive = np.asarray(drive, dtype=np.float64)
        n_m = self.motors.n
        if drive.ndim != 2 or drive.shape[1] != n_m:
            raise ValueError(f"drive must be (T, {n_m}), got shape {drive.shape}")
        if not np.all(np.isfinite(drive)):
            raise ValueError("drive contains NaN or infinite values")
        drive = np.clip(drive, 0.0, 1.0)
        n_rows = drive.shape[0]
        out = np.empty((n_rows, *self.frame_shape), dtype=np.uint8)
        ny, nx = self.solver.ny, self.solver.nx
        chunk = max(1, _CHUNK_VALUES // (len(self._samples) * ny * nx))
        dt_sub = self.dt / self.substeps
        for r0 in range(0, n_rows, chunk):
            rows = drive[r0:r0 + chunk]
            amps = self.motors.amplitudes(rows, self._frames_done * self.dt, self.substeps, dt_sub)
            keep = np.zeros((len(rows), self.substeps), dtype=bool)
            keep[:, self._samples] = True
            heights = self.solver.advance(amps, self._footprints, keep.ravel())
            heights = heights.reshape(len(rows), len(self._samples), ny, nx)
            out[r0:r0 + len(rows)] = self.camera.render(heights, self._noise_rng)
            self._frames_done += len(rows)
        return out

    def height(self) -> np.ndarray:
        """The current surface height field (m), (ny, nx) on the solver's grid."""
        return np.array(self.solver.h, copy=True)

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset (s)."""
        return self._frames_done * self.dt

    def describe(self) -> dict:
        """Solver (grid, integrator step, Courant number), sub-steps per frame, camera and seed."""
        d = self.solver.describe()
        d.update({"substeps_per_frame": self.substeps, "exposure_samples": len(self._samples), "frame_dt_s": self.dt,
                  "frame_shape": list(self.frame_shape), "camera": self.params.camera.model, "seed": self.seed,
                  "motor_positions_m": self.motors.positions.tolist()})
        return d
