"""Scenes for the simulated DVS: intensity frames (T, H, W) float32 in [0, 1] at given times.

Every generator is a pure function of the frame times ``t_us`` (int64 µs), so a driver can
render any block of a long stimulus on its own and a scene never holds more than one block
in memory. The pixel model (``pixel.py``) interpolates the log intensity linearly between
frames, so frames need only be dense enough for that to hold: about 1 kHz for the scenes
here (a 50 px/s saccade moves 0.05 px per frame).

- :func:`moving_bar`: a bar (or, wide, an edge) crossing the sensor at a constant speed;
- :func:`rotating_disk`: a disk with one sector of another intensity, spinning;
- :func:`saccade_digit`: one of scikit-learn's 8 x 8 digits, enlarged bilinearly to 28 x 28 in
  a 34 x 34 canvas and moved by three straight saccades of 100 ms along a triangle, as the
  ATIS sensor was moved in front of MNIST digits to record N-MNIST (Orchard, Jayawant, Cohen &
  Thakor, "Converting static image datasets to spiking neuromorphic datasets using
  saccades", Front. Neurosci. 9:437, 2015);
- :func:`from_frames`: any frame sequence, e.g. another device's uint8 camera frames.

The bar, the disk and the digit are drawn by small numba loops straight into float32 frames (one pass,
no float64 temporaries of the whole block).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "SACCADE_VERTICES_PX",
    "frame_times",
    "from_frames",
    "load_digit_images",
    "moving_bar",
    "rotating_disk",
    "saccade_digit",
    "saccade_path",
    "saccade_times",
]

#: the saccade triangle: offsets (dx, dy) in px of the digit from the canvas centre at the start
#: of each saccade; the path runs 0 -> 1 -> 2 -> 0 (up-right, down-right, left; ~5 px moves)
SACCADE_VERTICES_PX = np.array([[-2.5, 2.0], [0.0, -2.5], [2.5, 2.0]])


def frame_times(duration_s: float, fps: float, t0_us: int = 0) -> np.ndarray:
    """Frame times (int64 µs) of ``duration_s`` seconds at ``fps``: t0, t0 + 1/fps, ... up to the end.

    The last frame falls at ``t0 + duration``, so the frames span exactly the duration
    (``round(duration * fps) + 1`` frames, times rounded to µs).
    """
    if fps <= 0 or duration_s < 0:
        raise ValueError(f"frame_times: fps must be > 0 and duration_s >= 0, got fps={fps}, duration_s={duration_s}")
    n = round(duration_s * fps)
    return int(t0_us) + np.round(np.arange(n + 1) * (1e6 / fps)).astype(np.int64)


def _levels(name: str, *values: float) -> None:
    for v in values:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}: intensities must lie in [0, 1], got {v}")


def moving_bar(t_us: np.ndarray, shape: tuple[int, int], *, speed_px_s: float = 100.0,
               direction_deg: float = 0.0, width_px: float = 4.0, background: float = 0.2,
               contrast: float = 0.6, offset_px: float | None = None, wrap: bool = True) -> np.ndarray:
    """A bar crossing the sensor at constant speed.

    Parameters
    ----------
    t_us
        (T,) frame times (µs).
    shape
        (H, W).
    speed_px_s
        Speed along ``direction_deg`` (px/s).
    direction_deg
        Direction of motion: 0 = towards +x (right), 90 = towards +y (down, image rows).
    width_px
        Bar width across its motion; a width beyond the sensor makes a single moving edge.
    background, contrast
        Intensity of the background and the bar's difference from it (bar = background +
        contrast, in [0, 1]; a negative contrast is a dark bar).
    offset_px
        Position of the bar's leading edge at t = 0, along the motion, from the sensor centre;
        default: just outside the sensor, so the bar enters at t = 0.
    wrap
        Re-enter after leaving (period = (sensor extent + width) / speed); else the bar leaves.

    Returns
    -------
    numpy.ndarray
        (T, H, W) float32. Each pixel sees the fraction of its width covered by the bar along
        the motion (a box filter), so an edge sweeps each pixel's intensity linearly.
    """
    _levels("moving_bar background/bar", background, background + contrast)
    h, w = shape
    th = math.radians(direction_deg)
    ys, xs = np.mgrid[0:h, 0:w]
    s = (xs + 0.5 - w / 2) * math.cos(th) + (ys + 0.5 - h / 2) * math.sin(th)     # (H, W) along the motion
    half = 0.5 * (abs(w * math.cos(th)) + abs(h * math.sin(th)))                   # sensor half-extent
    start = -half if offset_px is None else float(offset_px)
    lead = start + speed_px_s * np.asarray(t_us, dtype=np.float64) * 1e-6          # (T,)
    if wrap:
        period = 2 * half + width_px + 1.0
        lead = -half + np.mod(lead + half, period)
    out = np.empty((len(lead), h, w), np.float32)
    _bar_frames(s.ravel(), lead, float(width_px), float(background), float(contrast), out.reshape(len(lead), -1))
    return out


@numba.njit(cache=True)
def _bar_frames(s, lead, width, background, contrast, out):
    """out[k, i] = background + contrast * clip(min(s_i + 0.5, lead_k) - max(s_i - 0.5, lead_k - width), 0, 1)."""
    for k in range(lead.shape[0]):
        a = lead[k]
        b = a - width
        for i in range(s.shape[0]):
            hi = s[i] + 0.5
            lo = s[i] - 0.5
            cover = min(a, hi) - max(b, lo)
            cover = 0.0 if cover < 0.0 else min(cover, 1.0)
            out[k, i] = background + contrast * cover


def rotating_disk(t_us: np.ndarray, shape: tuple[int, int], *, omega_rad_s: float = 2 * math.pi,
                  radius_px: float | None = None, sector_rad: float = math.pi / 2, background: float = 0.1,
                  disk: float = 0.3, sector: float = 0.9, phase_rad: float = 0.0) -> np.ndarray:
    """A disk at the sensor centre with one sector of another intensity, rotating.

    Parameters
    ----------
    t_us
        (T,) frame times (µs).
    shape
        (H, W).
    omega_rad_s
        Angular speed (rad/s); its sign is the direction: positive turns from +x towards +y
        (clockwise as the image is shown, rows downwards).
    radius_px
        Disk radius (default 0.4 of the shorter side).
    sector_rad
        Angular width of the sector.
    background, disk, sector
        Intensities outside the disk, on the disk and on the sector.
    phase_rad
        Angle of the sector's trailing side at t = 0.

    Returns
    -------
    numpy.ndarray
        (T, H, W) float32, edges anti-aliased over one pixel (the distance of a pixel centre
        to the rim and to the sector's sides).
    """
    _levels("rotating_disk", background, disk, sector)
    h, w = shape
    radius = 0.4 * min(h, w) if radius_px is None else float(radius_px)
    ys, xs = np.mgrid[0:h, 0:w]
    dx, dy = xs + 0.5 - w / 2, ys + 0.5 - h / 2
    r = np.hypot(dx, dy)
    phi = np.arctan2(dy, dx)
    in_disk = np.clip(radius - r + 0.5, 0.0, 1.0)
    ang = phase_rad + omega_rad_s * np.asarray(t_us, dtype=np.float64) * 1e-6
    out = np.empty((len(ang), h, w), np.float32)
    _disk_frames(r.ravel(), phi.ravel(), in_disk.ravel(), ang, float(sector_rad), float(background), float(disk),
                 float(sector), out.reshape(len(ang), -1))
    return out


@numba.njit(cache=True)
def _disk_frames(r, phi, in_disk, ang, sector_rad, background, disk, sector, out):
    """The rotating disk's frames: per pixel the angle from the sector's trailing side, its
    distance in px to the nearest side, anti-aliased over one pixel, and the rim's coverage."""
    two_pi = 2.0 * math.pi
    for k in range(ang.shape[0]):
        for i in range(r.shape[0]):
            a = (phi[i] - ang[k]) % two_pi                                       # from the trailing side
            if a < sector_rad:
                dist = min(a, sector_rad - a)
            else:
                dist = -min(a - sector_rad, two_pi - a)
            dist *= max(r[i], 0.5)                                               # px to the nearest side
            in_sector = min(max(0.5 + dist, 0.0), 1.0)
            face = disk + (sector - disk) * in_sector
            out[k, i] = background + (face - background) * in_disk[i]


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: (1797, 8, 8) float intensities in [0, 1] and (1797,) labels 0-9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images / 16.0, d.target.astype(np.int64)


def saccade_times(fps: float = 1000.0, saccade_s: float = 0.1, t0_us: int = 0) -> np.ndarray:
    """Frame times of one saccade-digit sample: three saccades, ``3 * saccade_s`` seconds at ``fps``."""
    return frame_times(3 * saccade_s, fps, t0_us)


def saccade_path(t_s: np.ndarray, saccade_s: float = 0.1, vertices_px: np.ndarray = SACCADE_VERTICES_PX) -> np.ndarray:
    """The digit's offset (dx, dy) in px at times ``t_s`` (s) from the sample start.

    Three straight moves at constant speed, 0 -> 1 -> 2 -> 0 along the triangle's vertices,
    ``saccade_s`` each; before 0 and after ``3 saccade_s`` the digit rests at vertex 0.
    """
    v = np.asarray(vertices_px, dtype=np.float64)
    loop = np.vstack([v, v[:1]])
    u = np.clip(np.asarray(t_s, dtype=np.float64) / saccade_s, 0.0, 3.0)
    k = np.minimum(u.astype(np.int64), 2)
    f = (u - k)[:, None]
    return loop[k] * (1 - f) + loop[k + 1] * f


@numba.njit(cache=True)
def _bilinear_frames(padded, ux, uy, out):
    """out[k, y, x] = ``padded`` (an image with one pixel of padding) sampled bilinearly at the
    fractional indices (uy[k, y], ux[k, x]) of the unpadded image, clamped to the padding."""
    ny = padded.shape[0] - 2
    nx = padded.shape[1] - 2
    rows = np.empty((out.shape[1], padded.shape[1]))
    for k in range(out.shape[0]):
        for y in range(out.shape[1]):                   # interpolate the rows once per frame
            c = min(max(uy[k, y] + 1.0, 0.0), ny + 1.0)
            i0 = min(math.floor(c), ny)
            f = c - i0
            for j in range(padded.shape[1]):
                rows[y, j] = (1.0 - f) * padded[i0, j] + f * padded[i0 + 1, j]
        for x in range(out.shape[2]):
            c = min(max(ux[k, x] + 1.0, 0.0), nx + 1.0)
            j0 = min(math.floor(c), nx)
            f = c - j0
            for y in range(out.shape[1]):
                out[k, y, x] = (1.0 - f) * rows[y, j0] + f * rows[y, j0 + 1]


def saccade_digit(image: np.ndarray, t_us: np.ndarray, *, t0_us: int = 0, saccade_s: float = 0.1,
                  canvas_px: int = 34, digit_px: int = 28, background: float = 0.3, ink: float = 1.0,
                  vertices_px: np.ndarray = SACCADE_VERTICES_PX) -> np.ndarray:
    """One digit shown with three saccades, as the frames of an N-MNIST-like recording.

    The image (any h x w, e.g. 8 x 8 in [0, 1]) is enlarged bilinearly to ``digit_px`` square
    (pixel centres aligned, zero outside) and drawn centred in a ``canvas_px`` square canvas,
    offset by :func:`saccade_path`; sampling the enlarged image at the shifted pixel centres is
    one bilinear interpolation of the original, separable in x and y.

    Parameters
    ----------
    image
        (h, w) intensities in [0, 1] (ink where 1).
    t_us
        (T,) frame times (µs); the saccades start at ``t0_us``.
    saccade_s
        Duration of each of the three saccades.
    canvas_px, digit_px
        Sensor side (N-MNIST: 34) and enlarged digit side (MNIST: 28).
    background, ink
        Intensity where the image is 0 and where it is 1.
    vertices_px
        The saccade triangle (:data:`SACCADE_VERTICES_PX`).

    Returns
    -------
    numpy.ndarray
        (T, canvas_px, canvas_px) float32.
    """
    _levels("saccade_digit background/ink", background, ink)
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or img.min() < 0 or img.max() > 1:
        raise ValueError(f"saccade_digit image: expected a 2-D array in [0, 1], got shape {img.shape} "
                         f"range [{img.min():.3g}, {img.max():.3g}]")
    ih, iw = img.shape
    t_s = (np.asarray(t_us, dtype=np.float64) - t0_us) * 1e-6
    off = saccade_path(t_s, saccade_s, vertices_px)                                  # (T, 2)
    centre = np.arange(canvas_px) + 0.5 - canvas_px / 2                              # pixel centres from the middle
    # enlarged-image coordinate (0 .. digit_px) -> original pixel index (centres aligned)
    ux = (centre[None, :] - off[:, :1] + digit_px / 2) * (iw / digit_px) - 0.5
    uy = (centre[None, :] - off[:, 1:] + digit_px / 2) * (ih / digit_px) - 0.5
    # the intensity image, padded with the background (the two taps' weights sum to 1)
    padded = background + (ink - background) * np.pad(img, 1)
    out = np.empty((len(t_s), canvas_px, canvas_px), np.float32)
    _bilinear_frames(padded, ux, uy, out)
    return out


def from_frames(frames: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Another source's frames as DVS intensities: (T, H, W) float32 in [0, 1].

    Parameters
    ----------
    frames
        (T, H, W) frames: uint8 (divided by 255, e.g. the bucket's camera), another integer
        type with ``scale``, or floats already in [0, 1].
    scale
        Full-scale value the frames are divided by (default 255 for uint8, 1 for floats).

    Raises
    ------
    ValueError
        For a shape other than (T, H, W), or values outside [0, 1] after scaling.
    """
    f = np.asarray(frames)
    if f.ndim != 3:
        raise ValueError(f"from_frames: expected (T, H, W) frames, got shape {f.shape}")
    if scale is None:
        if f.dtype == np.uint8:
            scale = 255.0
        elif np.issubdtype(f.dtype, np.floating):
            scale = 1.0
        else:
            raise ValueError(f"from_frames: frames of dtype {f.dtype} need a scale (their full-scale value)")
    out = (f / scale).astype(np.float32)
    if out.size and (out.min() < 0 or out.max() > 1):
        raise ValueError(f"from_frames: values span [{out.min():.4g}, {out.max():.4g}] after dividing by "
                         f"scale={scale}; expected [0, 1]")
    return out
