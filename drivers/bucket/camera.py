"""The camera: what the simulated bucket's observer records, frame by frame.

The camera is the reservoir's nonlinearity and must be modelled: a linear medium filmed
by a linear sensor obeys superposition, f(1,1) = f(1,0) + f(0,1), and then no hyperplane
separates XOR's classes (``docs/bucket.md``). Three models:

- ``shadowgraph`` (default): Fernando & Sojakka (2003) filmed the light an overhead
  projector throws through the tank onto a screen. To first order in the surface slope the
  screen's irradiance is I = I0 [1 - (n - 1) D lap(h)] (the shadowgraph relation; Settles,
  *Schlieren and Shadowgraph Techniques*, Springer 2001, ch. 3), with (n - 1) D the
  ``optical_gain``. It cannot be negative (where the surface focuses light beyond a caustic
  the screen is dark, clipped at 0), the sensor integrates it over the exposure (sampled at
  the solver's sub-steps), the pixels average it over their area, the sensor saturates
  (DN = sat tanh(E / sat)), then shot noise (variance ``shot_noise`` * DN) and read noise
  are added and the result is quantised to 8 bits.
- ``sobel``: the shadowgraph frame followed by the Sobel gradient magnitude,
  Fernando & Sojakka's image processing: |(S_x * f, S_y * f)| / 8 * ``sobel_gain``.
- ``linear``: the height itself, 128 + 127 h / ``linear_range_m`` DN, exposure-averaged,
  noisy, quantised: the control that must fail XOR.

:func:`pool_frames` turns frames into features: area averages on a coarser grid, in [0, 1].
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .params import CameraParams

#: the exposure integral is sampled at most this often per frame (every sub-step when fewer)
MAX_EXPOSURE_SAMPLES = 8


def _area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights averaging n_in equal cells onto n_out equal cells over the same extent."""
    if n_out == n_in:
        return np.eye(n_in)
    edges_in = np.linspace(0.0, 1.0, n_in + 1)
    edges_out = np.linspace(0.0, 1.0, n_out + 1)
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    w = np.clip(hi - lo, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def _resample(fields: np.ndarray, ry: np.ndarray, rx: np.ndarray) -> np.ndarray:
    """Area-average (..., ny, nx) fields to (..., H, W) with the row/column weight matrices."""
    if ry.shape[0] == ry.shape[1] and rx.shape[0] == rx.shape[1]:
        return fields
    return np.matmul(np.matmul(ry, fields), rx.T)


def pool_frames(frames: np.ndarray, pool: tuple[int, int]) -> np.ndarray:
    """Features from frames: area averages on a (ph, pw) grid, flattened, scaled to [0, 1].

    Parameters
    ----------
    frames
        (T, H, W) uint8 frames.
    pool
        (ph, pw) the feature grid; each feature averages the pixels of its cell (fractional
        overlaps weighted by area when ph or pw does not divide H or W).

    Returns
    -------
    numpy.ndarray
        (T, ph * pw) float32 in [0, 1].
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames.shape}")
    ph, pw = int(pool[0]), int(pool[1])
    t, h, w = frames.shape
    if not (0 < ph <= h and 0 < pw <= w):
        raise ValueError(f"pool {(ph, pw)} must be within the frame size {(h, w)}")
    if h % ph == 0 and w % pw == 0:
        pooled = frames.reshape(t, ph, h // ph, pw, w // pw).mean(axis=(2, 4), dtype=np.float64)
    else:
        pooled = _resample(frames.astype(np.float64), _area_matrix(ph, h), _area_matrix(pw, w))
    return (pooled.reshape(t, ph * pw) / 255.0).astype(np.float32)


def laplacian(h: np.ndarray, dx: float) -> np.ndarray:
    """Five-point Laplacian (1/m) of (..., ny, nx) fields with reflecting (dh/dn = 0) walls."""
    hp = np.pad(h, [(0, 0)] * (h.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    return (hp[..., 1:-1, 2:] + hp[..., 1:-1, :-2] + hp[..., 2:, 1:-1] + hp[..., :-2, 1:-1] - 4.0 * h) / dx**2


def sobel_magnitude(frames: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude (DN per pixel) of (T, H, W) frames, edges replicated."""
    f = np.pad(frames.astype(np.float64), [(0, 0), (1, 1), (1, 1)], mode="edge")
    dx = f[:, :, 2:] - f[:, :, :-2]
    gx = dx[:, :-2] + 2.0 * dx[:, 1:-1] + dx[:, 2:]
    dy = f[:, 2:, :] - f[:, :-2, :]
    gy = dy[:, :, :-2] + 2.0 * dy[:, :, 1:-1] + dy[:, :, 2:]
    return np.hypot(gx, gy) / 8.0


@numba.njit(cache=True, nogil=True)
def _screen_exposure(heights, inv_dx2, gain, brightness):
    """Exposure mean of I0 max(1 - gain lap(h), 0) over axis 1 of (T, n_exp, ny, nx), walls reflecting."""
    n_t, n_e, ny, nx = heights.shape
    out = np.zeros((n_t, ny, nx))
    scale = brightness / n_e
    for t in range(n_t):
        for e in range(n_e):
            h = heights[t, e]
            for i in range(ny):
                up = i - 1 if i > 0 else 0
                dn = i + 1 if i + 1 < ny else ny - 1
                for j in range(nx):
                    lf = j - 1 if j > 0 else 0
                    rt = j + 1 if j + 1 < nx else nx - 1
                    lap = (h[up, j] + h[dn, j] + h[i, lf] + h[i, rt] - 4.0 * h[i, j]) * inv_dx2
                    v = 1.0 - gain * lap
                    if v > 0.0:
                        out[t, i, j] += scale * v
    return out


@numba.njit(cache=True, nogil=True)
def _sensor(signal, noise, linear, scale, offset, saturation, shot, read2):
    """8-bit frames from the exposure signal: the sensor response (linear: offset + scale x;
    else saturation tanh(x / saturation)), noise of variance shot DN + read^2 (``noise`` holds
    standard normal draws, or is empty for none), rounding and clipping to 0..255."""
    out = np.empty(signal.shape, dtype=np.uint8)
    flat_in = signal.ravel()
    flat_out = out.ravel()
    noisy = noise.size > 0
    flat_noise = noise.ravel()
    for k in range(flat_in.size):
        x = flat_in[k]
        dn = offset + scale * x if linear else saturation * math.tanh(x / saturation)
        if noisy:
            dn += math.sqrt(shot * min(max(dn, 0.0), 255.0) + read2) * flat_noise[k]
        dn = min(max(round(dn), 0.0), 255.0)
        flat_out[k] = np.uint8(dn)
    return out


class Camera:
    """Renders frames from the height fields sampled during each exposure.

    Parameters
    ----------
    params
        The camera.
    grid
        (ny, nx) cells of the solver's grid.
    dx
        The cell size (m).
    """

    def __init__(self, params: CameraParams, grid: tuple[int, int], dx: float) -> None:
        self.params = params
        self.dx = float(dx)
        self.frame_shape = (int(params.resolution[0]), int(params.resolution[1]))
        self._ry = _area_matrix(self.frame_shape[0], grid[0])
        self._rx = _area_matrix(self.frame_shape[1], grid[1])

    def exposure_samples(self, n_sub: int) -> np.ndarray:
        """Which of a frame's ``n_sub`` sub-steps the exposure samples: those in its last
        ``exposure`` seconds (at least one), at most :data:`MAX_EXPOSURE_SAMPLES` of them,
        evenly strided back from the frame's end."""
        n_exp = min(n_sub, max(1, round(self.params.exposure * self.params.fps * n_sub)))
        stride = -(-n_exp // MAX_EXPOSURE_SAMPLES)
        return np.arange(n_sub - 1, n_sub - 1 - n_exp, -stride)[::-1]

    def irradiance(self, heights: np.ndarray) -> np.ndarray:
        """The exposure-averaged signal per frame on the solver's grid.

        ``heights`` (T, n_exp, ny, nx) in m. Shadowgraph and Sobel: screen irradiance (DN);
        linear: the mean height (m).
        """
        p = self.params
        if p.model == "linear":
            return heights.mean(axis=1)
        return _screen_exposure(np.ascontiguousarray(heights, dtype=np.float64), 1.0 / self.dx**2,
                                p.optical_gain, p.brightness)

    def render(self, heights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Frames (T, H, W) uint8 from the heights sampled in each exposure, (T, n_exp, ny, nx)."""
        p = self.params
        e = np.ascontiguousarray(_resample(self.irradiance(heights), self._ry, self._rx))
        noise = (rng.standard_normal(e.shape) if p.shot_noise > 0 or p.read_noise > 0 else np.zeros(0))
        frames = _sensor(e, noise, p.model == "linear", 127.0 / p.linear_range_m, 128.0, p.saturation,
                         p.shot_noise, p.read_noise**2)
        if p.model == "sobel":
            frames = np.clip(np.rint(p.sobel_gain * sobel_magnitude(frames)), 0, 255).astype(np.uint8)
        return frames
