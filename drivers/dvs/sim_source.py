"""A simulated DVS as a live event source: the sim pixels watching a moving bar or a rotating
disk, rendered on demand for any time window (what ``labbench emulate edvs`` streams)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

from . import scenes
from .events import empty_events
from .pixel import PixelArray, PixelParams

__all__ = ["scene_source"]


def scene_source(scene: Literal["bar", "disk"] = "bar", *, size: tuple[int, int] = (128, 128), seed: int = 0,
                 fps: float = 1000.0, params: PixelParams | None = None) -> Callable[[int, int], np.ndarray]:
    """``source(t0_us, t1_us) -> events`` of a DVS (``size`` = (width, height)) watching ``scene``.

    The scene is rendered at ``fps`` frames per second on the source's own clock (µs since
    its first call); calls must ask for consecutive windows, as an emulator's pacing loop does.
    """
    w, h = size
    pixels = PixelArray(params, (h, w), seed)
    dt = max(int(round(1e6 / fps)), 1)
    state = {"next": 0}

    def render(t_us: np.ndarray) -> np.ndarray:
        if scene == "bar":
            return scenes.moving_bar(t_us, (h, w), speed_px_s=0.5 * w, width_px=max(w / 16, 2.0))
        return scenes.rotating_disk(t_us, (h, w), omega_rad_s=2 * math.pi)

    warm = np.array([dt, 2 * dt], dtype=np.int64)     # compile (or load) the pixel kernel now, not
    pixels.emit(render(warm), warm)                   # in the emulator's first tick
    pixels.reset()

    def source(t0_us: int, t1_us: int) -> np.ndarray:
        start = max(state["next"], (int(t0_us) // dt) * dt + dt)
        t = np.arange(start, int(t1_us) + 1, dt, dtype=np.int64)
        if len(t) == 0:
            return empty_events()
        state["next"] = int(t[-1]) + dt
        return pixels.emit(render(t), t)

    return source
