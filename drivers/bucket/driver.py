"""A bucket of water as a reservoir: inputs drive motors, a camera films the waves.

After Fernando & Sojakka, "Pattern recognition in a bucket" (ECAL 2003, LNCS 2801,
pp. 588-597). One row of a run is one camera frame (``1 / camera.fps`` seconds). For a block
of ``T`` rows the driver:

1. maps the inputs (``T, n_inputs``) in [0, 1] onto the motors (``motor_inputs``: the motor
   each input column drives; by default input ``i`` drives motor ``i``) as PWM duty, clipped
   to ``[0, max_duty]`` (the safety ceiling: a protocol may only lower it below
   :data:`DUTY_CEILING`);
2. has the back end run the motors for those rows and film them: ``sim`` (the mock and the
   default: :class:`~.tank.SimTank`, a simulated tank and camera) or ``rig`` (an Arduino
   running StandardFirmata and a camera read by OpenCV: :mod:`.rig`, imported only when
   used);
3. returns as features the frames pooled to ``camera.pool`` and flattened
   (:func:`~.camera.pool_frames`, in [0, 1]), and the full-resolution 8-bit frames as the
   raw stream ``frames`` (column ``frame``, cells ``(H, W)`` uint8) so a run can be played
   back as video.

A linear medium filmed by a linear camera cannot give XOR to a linear readout (superposition,
``docs/bucket.md``): the camera model is where the nonlinearity comes from.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...reservoir import Block, RawStreamSpec, Reservoir, Spec
from .params import BucketSimParams, CameraParams, MotorParams, TankParams

__all__ = ["DUTY_CEILING", "Bucket", "BucketParams"]

#: the highest PWM duty any motor is ever given (a protocol's max_duty may only be lower)
DUTY_CEILING = 1.0


class BucketParams(BaseModel):
    """Parameters of :class:`Bucket`: the simulated tank's (``tank``, ``motors``, ``camera``,
    SI units, see :mod:`.params`) plus the back end, the input mapping and the duty ceiling."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sim", "rig"] = Field("sim", description="sim: the simulated tank and camera (the mock); "
                                           "rig: Arduino (StandardFirmata) motors and an OpenCV camera")
    n_inputs: int = Field(4, ge=1, description="input channels (set from the task by the bench)")
    motor_inputs: list[int] | None = Field(None, description="the motor each input column drives "
                                           "(default: input i drives motor i)")
    max_duty: float = Field(DUTY_CEILING, gt=0, le=DUTY_CEILING, description="PWM duty ceiling: inputs are "
                            "clipped to [0, max_duty]; a protocol may only lower it")
    seed: int = Field(0, description="seed of the simulated tank's jitter and camera noise")
    tank: TankParams = Field(default_factory=TankParams)
    motors: MotorParams = Field(default_factory=MotorParams)
    camera: CameraParams = Field(default_factory=CameraParams)
    rig: dict[str, Any] = Field({}, description="options of the rig back end (drivers/bucket/rig.py: serial "
                                "URL, PWM pins, camera source, ...)")

    @model_validator(mode="after")
    def _mapping(self) -> BucketParams:
        n_motors = self.motors.n_motors
        mapping = self.motor_inputs
        if self.backend == "rig" and self.rig:
            from .rig import RigParams

            RigParams(**self.rig)   # a wrong option is named now, not when the rig opens
        if mapping is None:
            if self.n_inputs > n_motors:
                raise ValueError(f"{self.n_inputs} inputs but motors.n_motors = {n_motors}: give motor_inputs "
                                 f"(the motor each input drives) or more motors")
            return self
        if len(mapping) != self.n_inputs:
            raise ValueError(f"motor_inputs has {len(mapping)} entries for n_inputs = {self.n_inputs}")
        if any(not 0 <= m < n_motors for m in mapping):
            raise ValueError(f"motor_inputs {mapping}: motors are numbered 0..{n_motors - 1}")
        if len(set(mapping)) != len(mapping):
            raise ValueError(f"motor_inputs {mapping}: two inputs drive the same motor")
        return self

    def sim_params(self) -> BucketSimParams:
        """The :class:`~.params.BucketSimParams` of the simulated tank."""
        return BucketSimParams(tank=self.tank, motors=self.motors, camera=self.camera)


class Bucket(Reservoir):
    """A water tank driven by motors and filmed by a camera (see the module doc)."""

    name = "bucket"
    Params = BucketParams
    deterministic: ClassVar[bool] = False   # set per instance: the simulation replays exactly

    def __init__(self, **params: Any) -> None:
        self.params = BucketParams(**params)
        p = self.params
        self.motor_of_input = np.asarray(p.motor_inputs if p.motor_inputs is not None else range(p.n_inputs),
                                         dtype=np.int64)
        H, W = p.camera.resolution
        ph, pw = p.camera.pool
        self.frame_shape = (int(H), int(W))
        self.deterministic = p.backend == "sim"
        self.spec = Spec(n_inputs=p.n_inputs, n_features=int(ph * pw), dt=1.0 / p.camera.fps,
                         realtime=p.backend == "rig", feature_name="pixel",
                         raw={"frames": RawStreamSpec({"frame": "uint8"},
                                                      f"one camera frame per row ({H} x {W}, 8 bit, "
                                                      f"{p.camera.model})",
                                                      shapes={"frame": self.frame_shape},
                                                      dims={"frame": ("y", "x")})})
        self.backend: Any = None
        self.info: dict[str, Any] = {}
        self._rows = 0
        self._clipped = 0
        self._gaps: list[tuple[float, float]] = []
        #: the rig's timing of the last block (latency, dropped and undecodable frames, ...)
        self.last_block: dict[str, Any] = {}

    # -- back ends ---------------------------------------------------------------------------
    @classmethod
    def backends(cls) -> dict[str, tuple[bool, str]]:
        """``sim`` (always) and ``rig`` (needs drivers/bucket/rig.py, pyfirmata2 and OpenCV)."""
        here = __name__.rpartition(".")[0]
        missing = [m for m in ("pyfirmata2", "cv2") if importlib.util.find_spec(m) is None]
        if importlib.util.find_spec(f"{here}.rig") is None:
            rig = (False, "the rig back end (drivers/bucket/rig.py) is not installed")
        elif missing:
            rig = (False, f"{', '.join(missing)} not installed (pip install 'labbench[bucket]')")
        else:
            rig = (True, "ok")
        return {"sim": (True, "ok"), "rig": rig}

    @classmethod
    def backend_of(cls, params: dict[str, Any]) -> str:
        return str(params.get("backend", "sim"))

    @classmethod
    def mock_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The simulated tank instead of the rig (the rig's options are dropped)."""
        return {**{k: v for k, v in params.items() if k != "rig"}, "backend": "sim"}

    @classmethod
    def footprint(cls, params: dict[str, Any]) -> tuple[int | None, int | None]:
        """Features (pooled pixels) and bytes of the simulation (a few fields of the grid) per device."""
        p = BucketParams(**params)
        ph, pw = p.camera.pool
        H, W = p.camera.resolution
        ratio = min(p.tank.width_m, p.tank.length_m) / max(p.tank.width_m, p.tank.length_m)
        cells = p.tank.grid * max(1, round(p.tank.grid * ratio))
        return int(ph * pw), int(16 * 8 * cells + 8 * H * W)

    def _make_backend(self) -> Any:
        p = self.params
        if p.backend == "sim":
            from .tank import SimTank

            return SimTank(p.sim_params(), seed=p.seed)
        ok, why = self.backends()["rig"]
        if not ok:
            raise RuntimeError(f"bucket: backend 'rig' is not available here: {why}")
        from .rig import Rig, RigParams

        return Rig(RigParams(**p.rig), fps=p.camera.fps, resolution=tuple(p.camera.resolution),
                   max_duty=p.max_duty, n_motors=p.motors.n_motors)

    # -- life cycle ------------------------------------------------------------------------
    def open(self) -> None:
        if self.backend is not None:
            return
        backend = self._make_backend()
        if hasattr(backend, "open"):
            try:
                info = backend.open()
            except BaseException:
                _close(backend)
                raise
            self.info = dict(info or {})
        self.backend = backend

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.params = self.params.model_copy(update={"seed": int(seed)})
        if self.backend is not None and self.params.backend == "sim":
            self.backend.reset(self.params.seed)
        elif self.backend is not None:
            self.close()
        self._rows, self._clipped, self._gaps = 0, 0, []

    def close(self) -> None:
        """Stop the motors and disconnect; safe to call at any time, also after a failure."""
        backend, self.backend = self.backend, None
        if backend is not None:
            _close(backend)

    # -- running ---------------------------------------------------------------------------
    def duty(self, u: np.ndarray) -> np.ndarray:
        """The PWM duty ``(T, n_motors)`` the inputs ``u`` (T, n_inputs) ask for, clipped to
        ``[0, max_duty]``; motors no input drives stay off."""
        u = np.asarray(u, dtype=np.float64)
        d = np.zeros((len(u), self.params.motors.n_motors))
        d[:, self.motor_of_input] = np.nan_to_num(u, nan=0.0)
        return np.clip(d, 0.0, min(self.params.max_duty, DUTY_CEILING))

    def run(self, u: np.ndarray) -> Block:
        if self.backend is None:
            raise RuntimeError("bucket: run() before open()")
        u = self._check_input(u)
        duty = self.duty(u)
        self._clipped += int(np.count_nonzero(np.nan_to_num(np.asarray(u, dtype=np.float64)) >
                                              self.params.max_duty + 1e-12))
        if len(u) == 0:
            frames = np.zeros((0, *self.frame_shape), np.uint8)
        elif self.params.backend == "sim":
            frames = self.backend.step(duty)
        else:
            out = self.backend.run(duty)
            t0 = self._rows * self.spec.dt
            frames = out.frames
            self._gaps.extend((t0 + a, t0 + b) for a, b in out.gaps)
            self.last_block = dict(out.info)
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.shape != (len(u), *self.frame_shape):
            raise RuntimeError(f"bucket: back end returned frames of shape {frames.shape}, expected "
                               f"{(len(u), *self.frame_shape)}")
        from .camera import pool_frames

        features = pool_frames(frames, tuple(self.params.camera.pool)).astype(np.float32, copy=False)
        self._rows += len(u)
        return Block(features=features, raw={"frames": {"frame": frames}})

    def health(self) -> list[str]:
        out = []
        if self._clipped:
            out.append(f"{self._clipped} input values above max_duty = {self.params.max_duty:g} were clipped")
        return out

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self._rows, "clipped_inputs": self._clipped}
        if self.params.backend == "rig":
            out.update({"gaps": [list(g) for g in self._gaps], "gap_s": float(sum(b - a for a, b in self._gaps))})
        return out

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"driver": "bucket", "backend": self.params.backend,
                               "params": self.params.model_dump(mode="json"),
                               "motor_of_input": self.motor_of_input.tolist(), "duty_ceiling": DUTY_CEILING}
        if self.backend is not None and hasattr(self.backend, "describe"):
            out["device"] = self.backend.describe()
        elif self.params.backend == "sim":
            from .tank import SimTank

            out["device"] = SimTank(self.params.sim_params(), seed=self.params.seed).describe()
        out.update({"info": self.info} if self.info else {})
        return out


def _close(backend: Any) -> None:
    """Stop a back end's motors (if it has any) and close it, whatever happens in between."""
    try:
        if hasattr(backend, "stop_motors"):
            backend.stop_motors()
    finally:
        if hasattr(backend, "close"):
            backend.close()
