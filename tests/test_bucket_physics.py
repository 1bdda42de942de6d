"""The simulated bucket's physics (issue 15 acceptance): wave speed, the dispersion relation,
damping, volume, the CFL refusal, and bit-for-bit reproducible frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from labbench.drivers.bucket.params import BucketSimParams, TankParams
from labbench.drivers.bucket.tank import SimTank
from labbench.drivers.bucket.wave_fd import CFL_LIMIT, FDSolver
from labbench.drivers.bucket.wave_spectral import SpectralSolver
from pydantic import ValidationError

NO_FORCING = np.zeros((0, 1, 1))


def _free(solver, steps: int) -> np.ndarray:
    """Heights (steps, ny, nx) of the unforced tank."""
    return solver.advance(np.zeros((steps, 0)), np.zeros((0, solver.ny, solver.nx)))


def _bump(solver, x0: float, y0: float, sigma: float, amp: float = 1e-4) -> np.ndarray:
    r2 = (solver.x[None, :] - x0) ** 2 + (solver.y[:, None] - y0) ** 2
    return amp * np.exp(-r2 / (2 * sigma**2))


# -- finite differences ------------------------------------------------------------------------
@pytest.mark.parametrize("distance", [0.10, 0.20])
def test_fd_pulse_arrives_at_distance_over_c(distance):
    tank = TankParams(grid=128, damping=0.0)
    dt, _ = FDSolver.auto_dt(tank, 0.04)
    fd = FDSolver(tank, dt)
    x0, y0 = 0.05, 0.15
    fd.set_state(_bump(fd, x0, y0, 0.005))
    steps = int((distance / fd.c + 0.1) / dt)
    heights = _free(fd, steps)
    i, j = np.argmin(abs(fd.y - y0)), np.argmin(abs(fd.x - (x0 + distance)))
    r = math.hypot(fd.x[j] - x0, fd.y[i] - y0)
    t_peak = (np.argmax(heights[:, i, j]) + 1) * dt
    assert heights[:, i, j].max() > 1e-7, "the pulse never reached the probe"
    assert t_peak == pytest.approx(r / fd.c, rel=0.05), (t_peak, r / fd.c)


def test_fd_refuses_a_cfl_violation_naming_the_numbers():
    tank = TankParams()
    limit_dt = CFL_LIMIT * (0.30 / 64) / math.sqrt(9.81 * 0.01)
    FDSolver(tank, 0.99 * limit_dt)                      # just inside: accepted
    with pytest.raises(ValueError) as err:
        FDSolver(tank, 1.01 * limit_dt)
    msg = str(err.value)
    assert "c*dt/dx" in msg and "1/sqrt(2)" in msg
    for number in ("0.3132", f"{1.01 * limit_dt:.4g}", f"{0.30 / 64:.4g}", "0.7071"):
        assert number in msg, (number, msg)


@pytest.mark.parametrize("grid,fps", [(64, 25.0), (128, 25.0), (64, 5.0)])
def test_simtank_picks_substeps_inside_the_limit(grid, fps):
    tank = SimTank(BucketSimParams(tank={"grid": grid}, camera={"fps": fps}), seed=0)
    d = tank.describe()
    assert d["courant"] <= 0.5 * CFL_LIMIT + 1e-12
    assert d["dt_s"] * d["substeps_per_frame"] == pytest.approx(1.0 / fps)


@pytest.mark.parametrize("params", [{}, {"nonlinearity": 0.5}])
def test_fd_volume_is_conserved_without_forcing(params):
    tank = TankParams(**params)
    fd = FDSolver(tank, FDSolver.auto_dt(tank, 0.04)[0])
    fd.set_state(_bump(fd, 0.1, 0.12, 0.01, amp=2e-3))
    v0 = fd.h.sum()
    heights = _free(fd, 600)
    assert np.abs(heights).max() > 1e-5                 # the water moved
    assert np.abs(heights.sum(axis=(1, 2)) - v0).max() <= 1e-9 * abs(v0)


def test_sponge_absorbs_what_walls_reflect():
    energies = []
    for sponge in (0.0, 0.04):
        tank = TankParams(damping=0.0, sponge_m=sponge)
        fd = FDSolver(tank, FDSolver.auto_dt(tank, 0.04)[0])
        fd.set_state(_bump(fd, 0.15, 0.15, 0.01))
        e0 = fd.energy()
        _free(fd, 400)                                     # 2 s: the ring reaches every wall
        energies.append(fd.energy() / e0)
    assert energies[0] > 0.95                              # reflecting walls, no damping: kept
    assert energies[1] < 0.1                               # the sponge took it


def test_motor_forcing_moves_water_but_adds_none():
    tank = SimTank(BucketSimParams(), seed=3)
    tank.step(np.ones((50, 4)))
    h = tank.height()
    assert np.abs(h).max() > 1e-4
    assert abs(h.sum()) <= 1e-9 * np.abs(h).sum()


@pytest.mark.parametrize("solver", ["fd", "spectral"])
def test_energy_decays_at_the_set_gamma(solver):
    gamma = 2.0
    tank = TankParams(solver=solver, damping=gamma, viscosity=0.0, surface_tension=0.0)
    sim = FDSolver(tank, FDSolver.auto_dt(tank, 0.04)[0]) if solver == "fd" else SpectralSolver(tank, 0.005)
    sim.set_state(_bump(sim, 0.12, 0.17, 0.02))
    dt, energies = sim.dt, []
    for _ in range(60):                                  # 60 x 20 steps
        _free(sim, 20)
        energies.append(sim.energy())
    t = (np.arange(60) + 1) * 20 * dt
    rate = -np.polyfit(t, np.log(energies), 1)[0]
    assert rate == pytest.approx(gamma, rel=0.02), rate


def test_spectral_viscous_decay_is_lambs():
    """A mode's amplitude decays at gamma_0 / 2 + 2 nu k^2 (Lamb 1932, §348)."""
    tank = TankParams(solver="spectral", damping=0.0, viscosity=1e-4)
    sp = SpectralSolver(tank, 0.004)
    p, q = 9, 4
    mode = np.cos(q * np.pi * sp.y[:, None] / (sp.ny * sp.dx)) * np.cos(p * np.pi * sp.x[None, :] / (sp.nx * sp.dx))
    sp.set_state(1e-4 * mode)
    e0 = sp.energy()
    _free(sp, 250)
    k2 = (np.pi * p / (sp.nx * sp.dx)) ** 2 + (np.pi * q / (sp.ny * sp.dx)) ** 2
    energy_rate = -math.log(sp.energy() / e0) / (250 * sp.dt)
    assert energy_rate == pytest.approx(2 * (2 * 1e-4 * k2), rel=0.05)


# -- spectral ------------------------------------------------------------------------------------
@pytest.mark.parametrize("p,q", [(1, 0), (3, 2), (10, 7), (24, 30)])
def test_spectral_mode_frequency_follows_the_dispersion_relation(p, q):
    g, rho, sigma, depth = 9.81, 1000.0, 0.072, 0.01
    tank = TankParams(solver="spectral", damping=0.0, viscosity=0.0, gravity=g, density=rho,
                      surface_tension=sigma, depth_m=depth)
    k = math.pi * math.hypot(p / 0.30, q / 0.30)
    omega = math.sqrt((g * k + sigma * k**3 / rho) * math.tanh(k * depth))    # Lamb 1932, §267
    periods = 12
    dt = 2 * math.pi / omega / 40
    sp = SpectralSolver(tank, dt)
    mode = np.cos(q * np.pi * sp.y[:, None] / 0.30) * np.cos(p * np.pi * sp.x[None, :] / 0.30)
    sp.set_state(1e-4 * mode)
    probe = _free(sp, 40 * periods)[:, 0, 0]
    up = np.nonzero((probe[:-1] < 0) & (probe[1:] >= 0))[0]
    t_up = (up + 1 + probe[up] / (probe[up] - probe[up + 1])) * dt           # interpolated crossings
    measured = 2 * math.pi * (len(t_up) - 1) / (t_up[-1] - t_up[0])
    assert len(t_up) >= periods - 1
    assert measured == pytest.approx(omega, rel=0.01), (measured, omega)


def test_spectral_refuses_what_it_cannot_model():
    with pytest.raises(ValidationError, match="nonlinearity"):
        TankParams(solver="spectral", nonlinearity=0.1)
    with pytest.raises(ValidationError, match="sponge"):
        TankParams(solver="spectral", sponge_m=0.02)


def test_solvers_agree_on_long_waves():
    """A long gravity wave (kH << 1, no capillarity) travels alike in both solvers."""
    base = {"damping": 0.5, "viscosity": 0.0, "surface_tension": 0.0, "grid": 64, "depth_m": 0.005}
    fd_tank, sp_tank = TankParams(**base), TankParams(solver="spectral", **base)
    fd = FDSolver(fd_tank, FDSolver.auto_dt(fd_tank, 0.04)[0])
    sp = SpectralSolver(sp_tank, fd.dt)
    for s in (fd, sp):
        s.set_state(_bump(s, 0.15, 0.15, 0.04))
    steps = int(0.3 / fd.dt)
    a, b = _free(fd, steps)[-1], _free(sp, steps)[-1]
    a, b = a - a.mean(), b - b.mean()
    assert np.abs(a - b).max() < 0.08 * np.abs(b).max()


# -- reproducibility -------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["fd", "spectral"])
def test_a_fixed_seed_reproduces_the_frames_bit_for_bit(solver):
    params = BucketSimParams(tank={"solver": solver})
    rng = np.random.default_rng(7)
    drive = np.repeat(rng.integers(0, 2, (8, 4)), 10, axis=0) * 0.8
    a = SimTank(params, seed=11).step(drive)
    b_tank = SimTank(params, seed=11)
    b = np.concatenate([b_tank.step(drive[:33]), b_tank.step(drive[33:])])   # other block sizes
    assert a.dtype == np.uint8 and a.shape == (80, 64, 64)
    assert np.array_equal(a, b)
    b_tank.reset()
    assert np.array_equal(b_tank.step(drive), a)                             # reset() = same seed
    c = SimTank(params, seed=12).step(drive)
    assert not np.array_equal(a, c)


def test_jitter_is_drawn_per_trial():
    params = BucketSimParams(motors={"n_motors": 1, "phase_jitter": math.pi, "amplitude_jitter": 0.1},
                             camera={"shot_noise": 0.0, "read_noise": 0.0})
    tank = SimTank(params, seed=0)
    on = np.ones((10, 1))
    first = tank.step(on)
    tank.step(np.zeros((40, 1)))                          # the water calms (amplitude e^-5)
    second = tank.step(on)                                # a new trial: new phase and amplitude
    again = SimTank(params, seed=0).step(on)
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - second.astype(int)).max() > 20
