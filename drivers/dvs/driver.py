"""An event camera (DVS) as a reservoir front end: scenes or recordings in, event features out.

Each row of a run is a time window of ``row_ms``. The device turns the window into events
``(t, x, y, p)`` (:mod:`.events`) and the events into one feature row
(:mod:`.features`: ON/OFF count maps, exponential time surfaces or voxel grids, pooled).
Every event goes to the raw stream ``events`` (columns t µs, x, y, p), so a run keeps the
whole recording.

Back ends (``backend``):

``sim`` (the mock, the default)
    The v2e / ESIM pixel model (:mod:`.pixel`) watching a scene (:mod:`.scenes`) that the
    inputs choose (``scene``):

    - ``"input"``: each input row is a frame, ``H * W`` intensities (row-major; times
      ``input_scale``, clipped to [0, 1]) — another device's frames, e.g. a bucket's camera
      in a chain;
    - ``"saccades"``: each input row is an image on a monitor (``input_shape``, e.g. the
      8 × 8 digits of the ``saccade_digits`` task), filmed by the camera on a pan-tilt unit
      that makes N-MNIST's three saccades (Orchard et al. 2015) whenever a new image
      appears; an all-zero row is a dark monitor;
    - ``"gestures"``: each input row is a one-hot class of six stimuli — a bar moving right,
      left, down or up, a disk turning clockwise or anticlockwise — with a speed and phase
      drawn per presentation (a small DVS Gesture stand-in); an all-zero row is an empty
      scene.
``aedat4``
    Plays a recording (dv-processing's ``MonoCameraRecording``, :mod:`.aedat4`), paced to
    the wall clock or as fast as possible; inputs are ignored.
``camera``
    A live iniVation camera through dv-processing (:mod:`.dv_camera`), or a DV network
    stream (``camera.host``/``camera.port``, e.g. a ``NetworkWriter``); inputs are ignored.
``edvs``
    An eDVS4337 board over a serial line (:mod:`.edvs_board`); inputs are ignored.

``--mock`` (``mock = true``) swaps any back end for ``sim``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...reservoir import Block, RawStreamSpec, Reservoir, Spec
from .events import EVENT_DTYPE, empty_events, to_columns
from .features import bin_rows, count_maps, pooled_shape, time_surface, voxel_grid
from .pixel import PixelArray, PixelParams, sensor_shape

__all__ = ["DVS", "DVSParams", "GESTURES"]

#: the six stimuli of ``scene = "gestures"``, in the order of the one-hot input
GESTURES = ("bar right", "bar left", "bar down", "bar up", "disk clockwise", "disk anticlockwise")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AEDAT4Options(_Section):
    path: str | None = Field(None, description="the AEDAT4 recording to play")
    realtime: bool = Field(False, description="pace playback to the wall clock (else as fast as possible)")
    speed: float = Field(1.0, gt=0, description="playback speed factor when realtime")


class CameraOptions(_Section):
    name: str | None = Field(None, description="camera name for dv.io.camera.open (default: the first found)")
    host: str | None = Field(None, description="read a DV network stream at host:port instead of a camera")
    port: int = Field(7777, ge=1, le=65535, description="port of the DV network stream")
    biases: dict[str, Any] = Field(default_factory=dict, description="camera biases by name (see docs/dvs.md)")
    noise_filter_us: int | None = Field(None, gt=0, description="background-activity filter window (µs)")
    silence_s: float = Field(2.0, gt=0, description="no events for this long: the camera is down")


class EDVSOptions(_Section):
    port: str | None = Field(None, description="serial port of the eDVS (a pty from `labbench emulate edvs`)")
    baudrate: int = Field(12_000_000, gt=0, description="link speed (the board: 12M, 8M, 4M or 2M)")
    fmt: int = Field(2, ge=0, le=4, description="event format !E<fmt> (eDVS4337 numbering)")
    biases: dict[str, int] = Field(default_factory=dict, description="bias register (index or name) -> value")
    timeout_s: float = Field(1.0, gt=0, description="silence before the board counts as down")


class DVSParams(_Section):
    backend: Literal["sim", "aedat4", "camera", "edvs"] = Field("sim", description="where the events come from")
    seed: int = Field(0, description="seed of the pixels' thresholds and noise, and of the scenes' draws")
    n_inputs: int = Field(64, ge=1, description="input channels (set from the task by the bench)")
    sensor: str | list[int] = Field("nmnist", description="sensor name (nmnist 34x34, dvs128, davis240, "
                                                          "davis346, dvxplorer) or [width, height]")
    row_ms: float = Field(5.0, gt=0, le=10_000, description="time window of one row (ms)")
    scene: Literal["input", "saccades", "gestures"] = Field("saccades", description="what the sim camera sees")
    input_shape: list[int] | None = Field(None, description="[h, w] of an input image (saccades: default "
                                                            "square of n_inputs; input: the sensor)")
    input_scale: float = Field(1.0, gt=0, description="scene 'input': intensity = clip(u * input_scale, 0, 1)")
    subframes: int = Field(5, ge=1, le=1000, description="frames the sim renders per row (timestamps are "
                                                        "interpolated in between)")
    saccade_ms: float = Field(100.0, gt=0, description="duration of each of the three saccades (ms)")
    new_recording: bool = Field(True, description="saccades/gestures: each presentation is a recording of its "
                                                  "own, as in N-MNIST and DVS Gesture (the pixels start from its "
                                                  "first frame, so an image appearing makes no burst of events)")
    pixel: PixelParams = Field(default_factory=PixelParams, description="the pixel model (v2e defaults)")
    features: Literal["counts", "time_surface", "voxel"] = Field("counts", description="feature per row")
    pool: list[int] = Field([1, 1], min_length=2, max_length=2, description="[py, px] pixels per feature cell")
    tau_ms: float = Field(20.0, gt=0, description="time-surface decay (ms)")
    n_bins: int = Field(3, ge=1, le=64, description="voxel-grid time bins per row")
    aedat4: AEDAT4Options = Field(default_factory=AEDAT4Options)
    camera: CameraOptions = Field(default_factory=CameraOptions)
    edvs: EDVSOptions = Field(default_factory=EDVSOptions)

    @model_validator(mode="after")
    def _check(self) -> DVSParams:
        H, W = self.shape
        if self.backend == "sim" and self.scene == "input" and self.n_inputs != H * W:
            raise ValueError(f"scene 'input' takes frames of the sensor's {H} x {W} = {H * W} pixels per row, "
                             f"but n_inputs = {self.n_inputs}")
        if self.backend == "sim" and self.scene == "saccades":
            h, w = self.image_shape
            if h * w != self.n_inputs:
                raise ValueError(f"scene 'saccades': input_shape {h} x {w} is not the task's {self.n_inputs} inputs")
        if self.backend == "sim" and self.scene == "gestures" and self.n_inputs != len(GESTURES):
            raise ValueError(f"scene 'gestures' takes a one-hot row of {len(GESTURES)} stimuli "
                             f"({', '.join(GESTURES)}), but n_inputs = {self.n_inputs}")
        if self.backend == "aedat4" and not self.aedat4.path:
            raise ValueError("backend 'aedat4' needs aedat4.path (the recording to play)")
        if self.backend == "edvs" and not self.edvs.port:
            raise ValueError("backend 'edvs' needs edvs.port (a serial port, or the tty `labbench emulate edvs` "
                             "prints)")
        return self

    @property
    def shape(self) -> tuple[int, int]:
        """The sensor's (H, W)."""
        return sensor_shape(self.sensor if isinstance(self.sensor, str) else tuple(self.sensor))

    @property
    def image_shape(self) -> tuple[int, int]:
        if self.input_shape is not None:
            return int(self.input_shape[0]), int(self.input_shape[1])
        side = math.isqrt(self.n_inputs)
        return (side, side) if side * side == self.n_inputs else (1, self.n_inputs)

    @property
    def row_us(self) -> int:
        return int(round(self.row_ms * 1000))

    @property
    def n_features(self) -> int:
        hp, wp = pooled_shape(self.shape, (int(self.pool[0]), int(self.pool[1])))
        return (self.n_bins if self.features == "voxel" else 2) * hp * wp


class DVS(Reservoir):
    """An event camera: simulated (v2e/ESIM pixels on a scene), a recording, a live camera or an eDVS."""

    Params = DVSParams
    name = "dvs"
    deterministic = True

    def __init__(self, **params: Any) -> None:
        self.params = DVSParams(**params)
        p = self.params
        if p.row_us < 1:
            raise ValueError(f"row_ms = {p.row_ms}: a row must last at least 1 µs")
        self.shape = p.shape
        self.spec = Spec(
            n_inputs=p.n_inputs, n_features=p.n_features, dt=p.row_us * 1e-6, realtime=p.backend in ("camera", "edvs"),
            feature_name="cell",
            raw={"events": RawStreamSpec({"t": "int64", "x": "uint16", "y": "uint16", "p": "bool"},
                                         description="one event: time (µs since open), pixel column x and row y, "
                                                     "polarity (True: ON)",
                                         time_column="t", time_scale=1e-6, channel_column="x",
                                         n_channels=self.shape[1])})
        self.backend: Any = None
        self._rows = 0
        self._n_events = 0
        self._gaps: list[tuple[float, float]] = []
        self._last_image: np.ndarray | None = None
        self._cycle_t0 = 0
        self._stimulus: tuple[int, float, float] | None = None

    # -- what the bench asks before building it ------------------------------------------------
    @classmethod
    def backends(cls) -> dict[str, tuple[bool, str]]:
        import importlib.util

        dv = importlib.util.find_spec("dv_processing") is not None
        serial = importlib.util.find_spec("serial") is not None
        need_dv = "needs dv-processing (pip install 'labbench[dvs]')"
        return {"sim": (True, "ok"), "aedat4": (dv, "ok" if dv else need_dv), "camera": (dv, "ok" if dv else need_dv),
                "edvs": (serial, "ok" if serial else "needs pyserial")}

    @classmethod
    def backend_of(cls, params: dict[str, Any]) -> str:
        return str(params.get("backend", "sim"))

    @classmethod
    def mock_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "backend": "sim"}

    @classmethod
    def footprint(cls, params: dict[str, Any]) -> tuple[int | None, int | None]:
        """Feature width, and the pixel state (a few float64 per pixel)."""
        p = DVSParams(**params)
        H, W = p.shape
        return p.n_features, int(64 * H * W)

    # -- life cycle ----------------------------------------------------------------------------
    def open(self) -> None:
        if self.backend is not None:
            return
        p = self.params
        if p.backend == "sim":
            self.backend = PixelArray(p.pixel, self.shape, p.seed)
        elif p.backend == "aedat4":
            from .aedat4 import AEDAT4Player

            player = AEDAT4Player(p.aedat4.path, realtime=p.aedat4.realtime, speed=p.aedat4.speed)
            W, H = player.resolution
            if (H, W) != self.shape:
                player.close()
                raise ValueError(f"aedat4.path {p.aedat4.path!r}: a {W} x {H} recording, but sensor is "
                                 f"{self.shape[1]} x {self.shape[0]}: set sensor = [{W}, {H}]")
            self.backend = player
        elif p.backend == "camera":
            from .dv_camera import NetworkSource, open_camera

            c = p.camera
            if c.host is not None:
                src = NetworkSource(c.host, c.port, silence_s=c.silence_s, noise_filter_us=c.noise_filter_us)
            else:
                src = open_camera(c.name, biases=c.biases or None, noise_filter_us=c.noise_filter_us,
                                  silence_s=c.silence_s)
            W, H = src.resolution
            if (H, W) != self.shape:
                src.close()
                raise ValueError(f"camera: a {W} x {H} sensor, but sensor is {self.shape[1]} x {self.shape[0]}: "
                                 f"set sensor = [{W}, {H}]")
            self.backend = src
        else:
            from .edvs_board import EDVSBoard

            e = p.edvs
            board = EDVSBoard(e.port, baudrate=e.baudrate, fmt=e.fmt, biases=e.biases or None, timeout_s=e.timeout_s)
            board.open()
            self.backend = board

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.params = self.params.model_copy(update={"seed": int(seed)})
        if self.params.backend == "sim" and self.backend is not None:
            self.backend.reset(self.params.seed)
        elif self.backend is not None:
            self.close()
        self._rows, self._n_events, self._gaps = 0, 0, []
        self._last_image, self._cycle_t0, self._stimulus = None, 0, None

    def close(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None and hasattr(backend, "close"):
            backend.close()

    # -- running -------------------------------------------------------------------------------
    def run(self, u: np.ndarray) -> Block:
        if self.backend is None:
            raise RuntimeError("dvs: run() before open()")
        u = self._check_input(u)
        T, row_us = len(u), self.params.row_us
        t_start = self._rows * row_us
        edges = t_start + row_us * np.arange(T + 1, dtype=np.int64)
        if T == 0:
            return Block(features=np.zeros((0, self.params.n_features), np.float32),
                         raw={"events": to_columns(empty_events())})
        if self.params.backend == "sim":
            events = self._simulate(np.asarray(u, dtype=np.float64), t_start)
        else:
            events = self._record(int(edges[-1]))
        offsets = bin_rows(events, edges)
        features = self._features(events, offsets, edges)
        self._rows += T
        self._n_events += len(events)
        return Block(features=features, raw={"events": to_columns(events)})

    def _features(self, events: np.ndarray, offsets: np.ndarray, edges: np.ndarray) -> np.ndarray:
        p = self.params
        pool = (int(p.pool[0]), int(p.pool[1]))
        if len(edges) == 1:
            return np.zeros((0, p.n_features), np.float32)
        if p.features == "counts":
            out = count_maps(events, self.shape, pool, offsets=offsets)
        elif p.features == "time_surface":
            out = time_surface(events, self.shape, edges[1:], p.tau_ms * 1000.0, pool, offsets=offsets)
        else:
            if pool != (1, 1):
                raise ValueError(f"pool {list(pool)}: voxel grids are per pixel (pool = [1, 1])")
            out = voxel_grid(events, self.shape, p.n_bins, edges[:-1], edges[1:], offsets=offsets)
        return np.asarray(out, dtype=np.float32).reshape(len(edges) - 1, p.n_features)

    def _record(self, until_us: int) -> np.ndarray:
        """Events of a real back end up to ``until_us`` (µs since open)."""
        p = self.params
        if p.backend == "edvs":
            read = self.backend.read(until_us=until_us)
            self._gaps += [(a * 1e-6, b * 1e-6) for a, b in read.gaps]
            events = read.events
        else:
            events = self.backend.read_until(until_us)
        keep = (events["x"] < self.shape[1]) & (events["y"] < self.shape[0])
        return events[keep] if not keep.all() else events

    # -- the simulated camera ------------------------------------------------------------------
    def _simulate(self, u: np.ndarray, t_start: int) -> np.ndarray:
        p = self.params
        T, S, row_us = len(u), p.subframes, p.row_us
        # S frames per row, the last at the row's end (the pixel interpolates in between)
        t_frames = t_start + (np.arange(T * S, dtype=np.int64) + 1) * row_us // S
        frames = np.empty((T * S, *self.shape), np.float32)
        if p.scene == "input":
            img = np.clip(u * p.input_scale, 0.0, 1.0).astype(np.float32).reshape(T, *self.shape)
            frames[:] = np.repeat(img, S, axis=0)
            return self.backend.emit(frames, t_frames)
        starts = self._render(u, t_start, t_frames, frames)
        if not p.new_recording:
            return self.backend.emit(frames, t_frames)
        parts, bounds = [], [*starts, len(frames)]
        if bounds[0] != 0:
            bounds.insert(0, 0)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if a in starts:                                   # a new recording: the pixels start afresh
                self.backend.reset()
            parts.append(self.backend.emit(frames[a:b], t_frames[a:b]))
        return np.concatenate(parts) if parts else empty_events()

    def _render(self, u: np.ndarray, t_start: int, t_frames: np.ndarray, frames: np.ndarray) -> list[int]:
        """Frames of the saccade or gesture scene, one call per presentation (a run of equal
        rows); returns the frame indices where a presentation starts."""
        from . import scenes

        p = self.params
        S = p.subframes
        change = np.ones(len(u), bool)
        change[1:] = np.any(u[1:] != u[:-1], axis=1)
        if self._last_image is not None:
            change[0] = bool(np.any(u[0] != self._last_image))
        starts = np.flatnonzero(change)
        bounds = np.r_[starts, len(u)]
        if starts.size == 0 or starts[0] != 0:
            bounds = np.r_[0, bounds]
        for a, b in zip(bounds[:-1], bounds[1:]):
            row = u[a]
            if change[a]:                                        # a new presentation starts at this row
                self._cycle_t0 = int(t_start + a * p.row_us)
                self._stimulus = self._draw_stimulus(row)
            t = t_frames[a * S:b * S]
            out = frames[a * S:b * S]
            if not np.any(row):
                out[:] = 0.3 if p.scene == "saccades" else 0.2      # the scenes' backgrounds
            elif p.scene == "saccades":
                image = np.clip(row, 0.0, 1.0).reshape(self.params.image_shape)
                out[:] = scenes.saccade_digit(image, t, t0_us=self._cycle_t0, saccade_s=p.saccade_ms / 1000.0,
                                              canvas_px=self.shape[0], digit_px=max(self.shape[0] - 6, 4))
            else:
                out[:] = self._gesture(t)
        self._last_image = u[-1].copy()
        return [int(a) * S for a in bounds[:-1] if change[a]]

    def _draw_stimulus(self, row: np.ndarray) -> tuple[int, float, float] | None:
        """Class, speed factor and phase of a new gesture presentation (seeded by the row count)."""
        if self.params.scene != "gestures" or not np.any(row):
            return None
        rng = np.random.default_rng([self.params.seed, self._rows, int(self._cycle_t0)])
        return int(np.argmax(row)), float(rng.uniform(0.7, 1.3)), float(rng.uniform(0.0, 1.0))

    def _gesture(self, t: np.ndarray) -> np.ndarray:
        from . import scenes

        k, speed, phase = self._stimulus
        H, W = self.shape
        tt = t - self._cycle_t0
        if k < 4:
            direction = (0.0, 180.0, 90.0, 270.0)[k]
            span = W if k < 2 else H
            return scenes.moving_bar(tt, self.shape, speed_px_s=speed * 4.0 * span, direction_deg=direction,
                                     width_px=max(span / 8, 2.0), offset_px=phase * span)
        sign = -1.0 if k == 4 else 1.0
        return scenes.rotating_disk(tt, self.shape, omega_rad_s=sign * speed * 4 * math.pi,
                                    phase_rad=2 * math.pi * phase)

    # -- reports -------------------------------------------------------------------------------
    def health(self) -> list[str]:
        seconds = self._rows * self.params.row_us * 1e-6
        if self._rows and self._n_events == 0:
            return [f"dvs: no event in {seconds:.3g} s of {self._rows} rows: the scene is static or the camera dark"]
        return []

    def summary(self) -> dict[str, Any]:
        seconds = self._rows * self.params.row_us * 1e-6
        out: dict[str, Any] = {"events": self._n_events, "seconds": seconds,
                               "event_rate_hz": self._n_events / seconds if seconds else 0.0}
        if self.params.backend != "sim":
            out["gaps"] = [list(g) for g in self._gaps]
        return out

    def describe(self) -> dict[str, Any]:
        return {"driver": self.name, "params": self.params.model_dump(mode="json"),
                "sensor_hw": list(self.shape), "event_dtype": str(EVENT_DTYPE)}
