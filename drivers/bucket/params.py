"""Parameters of the simulated bucket: the tank, the motors and the camera (SI units).

The defaults describe a 0.30 m x 0.30 m tank filled 1 cm deep (shallow water: c = sqrt(g H)
= 0.313 m/s), four vibration motors at the mid-points of the walls (as in Fernando &
Sojakka 2003, "Pattern recognition in a bucket", ECAL 2003, LNCS 2801, pp. 588-597) and an
overhead-projector shadowgraph filmed at 64 x 64 pixels and 25 frames per second.
``docs/bucket.md`` gives the equations each parameter enters.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TankParams(BaseModel):
    """The water: tank geometry, fluid constants, damping and the solver."""

    model_config = ConfigDict(extra="forbid")

    width_m: float = Field(0.30, gt=0, description="tank extent along x (m)")
    length_m: float = Field(0.30, gt=0, description="tank extent along y (m)")
    depth_m: float = Field(0.01, gt=0, description="still-water depth H (m)")
    grid: int = Field(64, ge=8, le=1024, description="cells along the longer side (square cells)")
    solver: Literal["fd", "spectral"] = Field("fd", description="finite-difference leapfrog (default) or "
                                              "exact cosine-mode propagation")
    gravity: float = Field(9.81, gt=0, description="g (m/s^2)")
    density: float = Field(1000.0, gt=0, description="rho (kg/m^3)")
    surface_tension: float = Field(0.072, ge=0, description="sigma (N/m); spectral solver only")
    viscosity: float = Field(1.0e-6, ge=0, description="kinematic viscosity nu (m^2/s): a mode's amplitude "
                             "decays faster by 2 nu k^2 (Lamb 1932 §348); spectral solver only")
    damping: float = Field(5.0, ge=0, description="gamma_0 (1/s): the amplitude of a mode decays as "
                           "exp(-gamma_0 t / 2), its energy as exp(-gamma_0 t) (bottom friction, walls, "
                           "contact line of a shallow tank; 5: waves fade within ~0.5 s)")
    nonlinearity: float = Field(0.0, ge=0, le=1, description="kappa: wave speed^2 = g H (1 + kappa h / H); "
                                "fd solver only")
    sponge_m: float = Field(0.0, ge=0, description="width of an absorbing layer along the walls (m); "
                            "0 = reflecting walls; fd solver only")

    @model_validator(mode="after")
    def _solver_supports(self) -> TankParams:
        if self.solver == "spectral" and self.nonlinearity != 0:
            raise ValueError("the spectral solver is linear: nonlinearity (kappa) must be 0 (use solver='fd')")
        if self.solver == "spectral" and self.sponge_m != 0:
            raise ValueError("the spectral solver models reflecting walls only: sponge_m must be 0 "
                             "(use solver='fd')")
        if 2 * self.sponge_m >= min(self.width_m, self.length_m):
            raise ValueError("sponge_m must be less than half the tank's shorter side")
        return self


class MotorParams(BaseModel):
    """The wave makers: vibration motors on the walls, each a Gaussian forcing footprint."""

    model_config = ConfigDict(extra="forbid")

    n_motors: int = Field(4, ge=1, le=64, description="number of motors (columns of the drive)")
    positions_m: list[list[float]] | None = Field(None, description="[x, y] of each motor (m); default: the "
                                                  "mid-points of the walls (left, right, bottom, top, ...)")
    footprint_m: float = Field(0.01, gt=0, description="standard deviation of the Gaussian footprint (m)")
    gain: float = Field(8.0, ge=0, description="peak forcing (vertical acceleration of the surface, m/s^2) "
                        "at duty 1")
    frequency_hz: float = Field(8.0, gt=0, description="vibration frequency of a motor (Hz)")
    amplitude_jitter: float = Field(0.1, ge=0, description="relative std of a motor's amplitude, drawn each "
                                    "time it switches on")
    phase_jitter: float = Field(3.141592653589793, ge=0, description="half-width (rad) of the uniform phase "
                                "drawn each time a motor switches on (pi: any phase)")

    @model_validator(mode="after")
    def _positions(self) -> MotorParams:
        if self.positions_m is not None:
            if len(self.positions_m) != self.n_motors:
                raise ValueError(f"positions_m has {len(self.positions_m)} entries for {self.n_motors} motors")
            if any(len(p) != 2 for p in self.positions_m):
                raise ValueError("each motor position is [x, y] in metres")
        return self


class CameraParams(BaseModel):
    """The camera: observation model (the nonlinearity), sensor, noise and feature pooling."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["shadowgraph", "sobel", "linear"] = Field("shadowgraph", description="shadowgraph "
                                                             "(projector image), sobel (its gradient magnitude, "
                                                             "F&S), or linear (the height itself: the control)")
    resolution: list[int] = Field([64, 64], min_length=2, max_length=2, description="[H, W] pixels over the tank")
    fps: float = Field(25.0, gt=0, le=1000, description="frames per second (one row of a run per frame)")
    exposure_s: float | None = Field(None, gt=0, description="exposure per frame (s); default the whole frame "
                                     "period 1 / fps")
    optical_gain: float = Field(0.33, ge=0, description="(n - 1) D (m): water's refractive index minus one (0.33) times "
                                "the distance from the surface to the screen (default 1 m)")
    brightness: float = Field(128.0, gt=0, description="I0: the screen's brightness over still water (DN)")
    saturation: float = Field(255.0, gt=0, description="sensor saturation (DN): DN = sat tanh(E / sat), then "
                              "clipped to 0..255")
    linear_range_m: float = Field(0.005, gt=0, description="linear model: the height mapped to +-127 DN (m)")
    sobel_gain: float = Field(4.0, gt=0, description="sobel model: DN per DN/pixel of gradient")
    shot_noise: float = Field(0.25, ge=0, description="shot-noise variance per DN (DN): std = sqrt(shot_noise DN)")
    read_noise: float = Field(1.0, ge=0, description="read noise std (DN)")
    pool: list[int] = Field([16, 16], min_length=2, max_length=2, description="[ph, pw]: features are the frames "
                            "area-averaged to this size")

    @model_validator(mode="after")
    def _sizes(self) -> CameraParams:
        if min(self.resolution) < 1 or min(self.pool) < 1:
            raise ValueError("resolution and pool must be positive")
        if self.pool[0] > self.resolution[0] or self.pool[1] > self.resolution[1]:
            raise ValueError(f"pool {self.pool} is larger than the resolution {self.resolution}")
        if self.exposure_s is not None and self.exposure_s > 1.0 / self.fps + 1e-12:
            raise ValueError(f"exposure_s {self.exposure_s} exceeds the frame period 1/fps = {1.0 / self.fps:g} s")
        return self

    @property
    def exposure(self) -> float:
        """The exposure time (s): ``exposure_s`` or the whole frame period."""
        return self.exposure_s if self.exposure_s is not None else 1.0 / self.fps


class BucketSimParams(BaseModel):
    """Everything the simulated bucket needs."""

    model_config = ConfigDict(extra="forbid")

    tank: TankParams = Field(default_factory=TankParams)
    motors: MotorParams = Field(default_factory=MotorParams)
    camera: CameraParams = Field(default_factory=CameraParams)
