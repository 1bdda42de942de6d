"""The simulated DVS pixel array: intensity frames in, (t, x, y, p) events out.

Each pixel follows the published models of v2e (Hu, Liu & Delbruck, "v2e: From video frames
to realistic DVS events", CVPR Workshops 2021; defaults of ``v2ecore/v2e_args.py``) and ESIM
(Rebecq, Gehrig & Scaramuzza, "ESIM: an open event camera simulator", CoRL 2018):

1. log intensity ``L = log(I + eps)`` of the frame intensity ``I`` in [0, 1] (ESIM's
   ``log_eps``; v2e's lin-log curve is linear below 20 DN of 255, about the same as eps = 0.08);
2. a first-order photoreceptor low-pass ``dLp/dt = 2 pi f_c(I) (L - Lp)`` whose cutoff rises
   with intensity, ``f_c(I) = cutoff_hz * (255 I + 20) / 275`` (v2e's ``inten01``
   scaling), advanced exactly over each frame interval for the new frame held constant:
   ``Lp += (1 - exp(-2 pi f_c dt)) (L - Lp)`` (v2e uses the forward-Euler factor
   ``2 pi f_c dt`` clipped at 1: the same for small steps);
3. between two frames ``Lp`` is linear in time (ESIM); the pixel holds a reference ``L_ref``
   and emits an ON event each time ``Lp - L_ref`` reaches ``C+`` (then ``L_ref += C+``) and an
   OFF event each time it reaches ``-C-`` (then ``L_ref -= C-``): n = floor(|Lp - L_ref| / C)
   events per crossing, at the linearly interpolated crossing times (ESIM, Alg. 1);
4. per-pixel thresholds ``C+``, ``C-`` ~ N(0.2, 0.03^2) clipped below at 0.01, drawn once
   from the seed (v2e ``pos_thres``, ``neg_thres``, ``sigma_thres``);
5. a refractory period of 0.5 ms (v2e ``refractory_period``): a crossing that falls inside it
   fires at its end if the pixel is still past its threshold there (the reference is kept, so
   no change is lost, only delayed);
6. leak events at ``leak_rate_hz`` = 0.01 Hz per pixel: ``L_ref`` drifts down by
   ``leak_rate_hz * C+ * dt`` so that a still pixel emits ON events at that rate (v2e
   ``leak_rate_hz``, its ``subtract_leak_current``), each pixel with a random initial leak
   phase (``L_ref`` starts U(0, 1) C+ below ``Lp``) so that they do not fire together;
7. shot noise, a Poisson process of total rate ``shot_noise_rate_hz`` = 0.001 Hz per pixel
   (ON + OFF) in the dark, falling to ``shot_noise_bright_factor`` = 0.25 of it at full
   intensity (v2e ``generate_shot_noise``: rate ``R/2 ((f - 1) inten01 + 1)`` per polarity,
   times ``C_nominal / C`` of the pixel; the v2e#74 discussion of its total). A shot event
   does not move ``L_ref`` (as in v2e) but obeys the refractory period.

The inhomogeneous Poisson process is drawn by time rescaling (each pixel spends a unit
exponential budget of integrated rate), so random numbers are drawn per event, not per
pixel and frame; they come from a counter-based generator keyed by (seed, pixel, draw), so
the stream is bit-reproducible and independent of how the frames are split into calls.
The whole frame loop is one numba function; there is no per-event Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numba
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .events import EVENT_DTYPE

__all__ = ["SENSOR_SIZES", "PixelArray", "PixelParams", "PixelState", "initial_state", "sensor_shape", "step"]

#: named sensor sizes as (width, height): N-MNIST's ATIS crop, DVS128, DAVIS240, DAVIS346, DVXplorer
SENSOR_SIZES: dict[str, tuple[int, int]] = {
    "nmnist": (34, 34),
    "dvs128": (128, 128),
    "davis240": (240, 180),
    "davis346": (346, 260),
    "dvxplorer": (640, 480),
}


def sensor_shape(size: str | tuple[int, int]) -> tuple[int, int]:
    """The array shape (H, W) of a named sensor (:data:`SENSOR_SIZES`) or of a (width, height) pair.

    Raises
    ------
    ValueError
        For an unknown name or a size that is not two positive integers.
    """
    if isinstance(size, str):
        if size not in SENSOR_SIZES:
            raise ValueError(f"sensor size {size!r} is unknown; expected one of {sorted(SENSOR_SIZES)} "
                             "or a (width, height) pair")
        w, h = SENSOR_SIZES[size]
        return h, w
    if len(size) != 2 or any(int(v) != v or v < 1 for v in size):
        raise ValueError(f"sensor size {size!r}: expected (width, height), two positive integers")
    return int(size[1]), int(size[0])


class PixelParams(BaseModel):
    """The DVS pixel model's parameters (SI units; defaults of v2e's ``v2e_args.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pos_threshold: float = Field(0.2, gt=0, description="nominal ON threshold C+ (log_e units)")
    neg_threshold: float = Field(0.2, gt=0, description="nominal OFF threshold C- (log_e units)")
    sigma_threshold: float = Field(0.03, ge=0, description="per-pixel threshold spread (std, log_e units)")
    min_threshold: float = Field(0.01, gt=0, description="thresholds are clipped below at this value")
    log_eps: float = Field(0.05, gt=0, description="eps of L = log(I + eps), I in [0, 1]")
    cutoff_hz: float = Field(300.0, ge=0, description="photoreceptor low-pass cutoff at full intensity "
                             "(Hz); 0 turns the low-pass off")
    refractory_s: float = Field(0.0005, ge=0, description="refractory period (s)")
    leak_rate_hz: float = Field(0.01, ge=0, description="leak (ON) events per pixel per second")
    shot_noise_rate_hz: float = Field(0.001, ge=0, description="shot-noise events (ON + OFF) per pixel "
                                      "per second in the dark")
    shot_noise_bright_factor: float = Field(0.25, ge=0, description="shot-noise rate at full intensity "
                                            "relative to the dark rate (v2e SHOT_NOISE_INTEN_FACTOR)")


@dataclass(frozen=True)
class PixelState:
    """Everything a pixel array carries from one call to the next (arrays flat, length H*W).

    Attributes
    ----------
    shape
        (H, W).
    seed
        Key of the counter-based generator of the noise draws.
    cp, cn
        Per-pixel ON and OFF thresholds.
    lp
        Low-passed log intensity at the last frame (``t_prev``).
    lref
        Reference level at ``t_prev``.
    t_last
        Time of each pixel's last event (µs, float; -inf if none).
    budget
        Remaining unit-exponential shot-noise budget of each pixel.
    draws
        Random draws consumed by each pixel (the generator's counter).
    t_prev
        Time of the last frame (µs); None before the first frame.
    """

    shape: tuple[int, int]
    seed: int
    cp: np.ndarray
    cn: np.ndarray
    lp: np.ndarray
    lref: np.ndarray
    t_last: np.ndarray
    budget: np.ndarray
    draws: np.ndarray
    t_prev: int | None = None


def initial_state(params: PixelParams, shape: tuple[int, int], seed: int) -> PixelState:
    """A pixel array before its first frame: thresholds drawn from ``seed``, nothing else set.

    Parameters
    ----------
    params
        Pixel model.
    shape
        (H, W).
    seed
        Seed of the thresholds and of every later noise draw.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"shape {shape!r}: expected (H, W) with H, W >= 1")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    n = h * w
    cp = np.maximum(rng.normal(params.pos_threshold, params.sigma_threshold, n), params.min_threshold)
    cn = np.maximum(rng.normal(params.neg_threshold, params.sigma_threshold, n), params.min_threshold)
    nan = np.full(n, np.nan)
    return PixelState((h, w), int(seed) & 0x7FFF_FFFF_FFFF_FFFF, cp, cn, nan, nan.copy(),
                      np.full(n, -np.inf), nan.copy(), np.zeros(n, np.uint64), None)


def step(params: PixelParams, state: PixelState, frames: np.ndarray,
         t_us: np.ndarray) -> tuple[PixelState, np.ndarray]:
    """Advance a pixel array through a block of frames: a pure function of (state, input).

    Parameters
    ----------
    params
        Pixel model.
    state
        State after the previous block (:func:`initial_state` before the first); not modified.
    frames
        (T, H, W) intensity in [0, 1] (any real dtype; values outside are clipped).
    t_us
        (T,) frame times in µs, strictly increasing and after the previous block's last frame.

    Returns
    -------
    state, events
        The new state, and the events of the block (:data:`~.events.EVENT_DTYPE`, sorted by
        ``t``). The very first frame of a pixel array sets its levels and emits nothing; every
        later frame emits the events of the interval since the frame before it (times in
        (t_prev, t], at most ``t``).
    """
    h, w = state.shape
    frames = np.asarray(frames)
    t_us = np.asarray(t_us)
    if frames.ndim != 3 or frames.shape[1:] != (h, w):
        raise ValueError(f"frames have shape {frames.shape}; expected (T, {h}, {w})")
    if t_us.shape != (frames.shape[0],) or not np.issubdtype(t_us.dtype, np.integer):
        raise ValueError(f"t_us: expected {frames.shape[0]} integer frame times (µs), got shape {t_us.shape} "
                         f"dtype {t_us.dtype}")
    t_us = t_us.astype(np.int64)
    if len(t_us) and np.any(np.diff(t_us) <= 0):
        raise ValueError("t_us must be strictly increasing")
    if len(t_us) and state.t_prev is not None and t_us[0] <= state.t_prev:
        raise ValueError(f"t_us[0] = {t_us[0]} µs is not after the previous frame at {state.t_prev} µs")
    new = replace(state, lp=state.lp.copy(), lref=state.lref.copy(), t_last=state.t_last.copy(),
                  budget=state.budget.copy(), draws=state.draws.copy())
    if len(t_us) == 0:
        return new, np.empty(0, EVENT_DTYPE)
    flat = frames.reshape(len(t_us), h * w)
    if state.t_prev is None:
        _init_pixels(np.clip(flat[0], 0.0, 1.0).astype(np.float64), params.log_eps, params.leak_rate_hz > 0, new.cp,
                     new.seed, new.lp, new.lref, new.budget, new.draws)
        flat, t_us, t_prev = flat[1:], t_us[1:], int(t_us[0])
    else:
        t_prev = state.t_prev
    t, pix, pol, n = _run(flat, t_us, t_prev, new.seed, new.cp, new.cn, new.lp, new.lref, new.t_last,
                          new.budget, new.draws, params.log_eps, params.cutoff_hz, params.refractory_s * 1e6,
                          params.leak_rate_hz, params.shot_noise_rate_hz, params.shot_noise_bright_factor,
                          params.pos_threshold, params.neg_threshold, max(1024, flat.size // 25))
    order = np.argsort(t[:n], kind="stable")
    events = np.empty(n, EVENT_DTYPE)
    events["t"] = t[:n][order]
    p = pix[:n][order]
    events["y"], events["x"] = p // w, p % w
    events["p"] = pol[:n][order]
    return replace(new, t_prev=int(t_us[-1]) if len(t_us) else t_prev), events


class PixelArray:
    """A simulated DVS sensor: a stateful wrapper around :func:`step`.

    Parameters
    ----------
    params
        Pixel model (defaults: v2e's).
    shape
        (H, W) pixels; see :func:`sensor_shape` for the named sizes.
    seed
        Seed of the thresholds and the noise.
    """

    def __init__(self, params: PixelParams | None = None, shape: tuple[int, int] = (34, 34), seed: int = 0) -> None:
        self.params = params if params is not None else PixelParams()
        self.shape = (int(shape[0]), int(shape[1]))
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget all frames; new thresholds and noise if ``seed`` is given (else the same again)."""
        if seed is not None:
            self.seed = int(seed)
        self._state = initial_state(self.params, self.shape, self.seed)

    @property
    def state(self) -> PixelState:
        """The current state (immutable; :func:`step` never modifies a state)."""
        return self._state

    @property
    def thresholds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel (C+, C-) as (H, W) arrays."""
        return self._state.cp.reshape(self.shape), self._state.cn.reshape(self.shape)

    def emit(self, frames: np.ndarray, t_us: np.ndarray) -> np.ndarray:
        """The events of a block of frames, continuing from the previous call.

        Parameters
        ----------
        frames
            (T, H, W) intensity in [0, 1].
        t_us
            (T,) int64 frame times (µs), strictly increasing across calls.

        Returns
        -------
        numpy.ndarray
            Events (:data:`~.events.EVENT_DTYPE`) sorted by ``t``; block after block gives the
            same stream as one call over all the frames.
        """
        self._state, events = step(self.params, self._state, frames, t_us)
        return events


# ---------------------------------------------------------------------------------------------
# numba kernel

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, inline="always")
def _uniform(seed: np.uint64, pixel: int, counter: np.uint64) -> float:
    """U(0, 1) from splitmix64 of (seed, pixel, counter): never exactly 0 or 1."""
    z = seed ^ (np.uint64(pixel) * _M2) ^ ((counter + np.uint64(1)) * _GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (float(z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True)
def _init_pixels(frame, log_eps, leak_on, cp, seed, lp, lref, budget, draws):
    s = np.uint64(seed)
    for i in range(frame.shape[0]):
        lp[i] = math.log(frame[i] + log_eps)
        lref[i] = lp[i]
        if leak_on:
            lref[i] -= _uniform(s, i, draws[i]) * cp[i]
            draws[i] += np.uint64(1)
        budget[i] = -math.log(_uniform(s, i, draws[i]))
        draws[i] += np.uint64(1)


@numba.njit(cache=True)
def _grow(t, pix, pol, n):
    t2 = np.empty(2 * t.shape[0], np.int64)
    p2 = np.empty(2 * t.shape[0], np.int64)
    q2 = np.empty(2 * t.shape[0], np.bool_)
    t2[:n] = t[:n]
    p2[:n] = pix[:n]
    q2[:n] = pol[:n]
    return t2, p2, q2


@numba.njit(cache=True)
def _run(frames, t_us, t_prev, seed, cp, cn, lp, lref, t_last, budget, draws, log_eps, cutoff_hz,
         refr_us, leak_hz, shot_hz, bright_factor, cp_nom, cn_nom, n_cap):
    n_pix = frames.shape[1]
    s = np.uint64(seed)
    t = np.empty(n_cap, np.int64)
    pix = np.empty(n_cap, np.int64)
    pol = np.empty(n_cap, np.bool_)
    n = 0
    t0 = float(t_prev)
    # per-pixel caches of the functions of the frame intensity (a still pixel repeats its intensity)
    c_inten = np.full(n_pix, -1.0)
    c_log = np.empty(n_pix)
    c_alpha = np.empty(n_pix)
    c_rate = np.empty(n_pix)
    dt_prev = -1.0
    for k in range(frames.shape[0]):
        t1 = float(t_us[k])
        dt_us = t1 - t0
        if dt_us != dt_prev:
            c_inten[:] = -1.0
            dt_prev = dt_us
        for i in range(n_pix):
            inten = min(max(float(frames[k, i]), 0.0), 1.0)
            if inten != c_inten[i]:
                inten01 = (255.0 * inten + 20.0) / 275.0
                c_inten[i] = inten
                c_log[i] = math.log(inten + log_eps)
                c_alpha[i] = -math.expm1(-2.0 * math.pi * cutoff_hz * inten01 * dt_us * 1e-6)
                c_rate[i] = 0.5 * shot_hz * ((bright_factor - 1.0) * inten01 + 1.0) * 1e-6
            la = lp[i]
            lb = la + c_alpha[i] * (c_log[i] - la) if cutoff_hz > 0.0 else c_log[i]
            c_on = cp[i]
            c_off = cn[i]
            # D(t) = d0 + slope (t - t0) - shift: the distance of Lp from the (leaking) reference
            d0 = la - lref[i]
            slope = (lb - la) / dt_us + leak_hz * c_on * 1e-6
            shift = 0.0
            # shot noise: rate per µs, the next shot time from the remaining budget
            r_on = c_rate[i] * (cp_nom / c_on)
            r_off = c_rate[i] * (cn_nom / c_off)
            r_tot = r_on + r_off
            t_shot = t0 + budget[i] / r_tot if r_tot > 0.0 else math.inf
            d1 = d0 + slope * dt_us
            if t_shot > t1 and max(d0, d1) < c_on and min(d0, d1) > -c_off:
                # the common case: no crossing and no shot in this interval
                if r_tot > 0.0:
                    budget[i] -= r_tot * dt_us
                lref[i] = lb - d1
                lp[i] = lb
                continue
            pos = t0
            tl = t_last[i]
            while True:
                tmin = max(pos, tl + refr_us)
                t_sig = math.inf
                on = True
                if tmin <= t1:
                    dm = d0 + slope * (tmin - t0) - shift
                    if dm >= c_on:
                        t_sig = tmin
                    elif dm <= -c_off:
                        t_sig = tmin
                        on = False
                    elif slope > 0.0:
                        tc = t0 + (c_on + shift - d0) / slope
                        if tc <= t1:
                            t_sig = max(tc, tmin)
                    elif slope < 0.0:
                        tc = t0 + (-c_off + shift - d0) / slope
                        if tc <= t1:
                            t_sig = max(tc, tmin)
                            on = False
                if t_shot <= t1 and t_shot < t_sig:
                    if t_shot >= tl + refr_us:
                        if n == t.shape[0]:
                            t, pix, pol = _grow(t, pix, pol, n)
                        t[n] = math.ceil(t_shot)
                        pix[n] = i
                        pol[n] = _uniform(s, i, draws[i]) * r_tot < r_on
                        draws[i] += np.uint64(1)
                        n += 1
                        tl = t_shot
                    pos = max(pos, t_shot)
                    t_shot += -math.log(_uniform(s, i, draws[i])) / r_tot
                    draws[i] += np.uint64(1)
                    continue
                if t_sig == math.inf:
                    break
                if n == t.shape[0]:
                    t, pix, pol = _grow(t, pix, pol, n)
                t[n] = math.ceil(t_sig)
                pix[n] = i
                pol[n] = on
                n += 1
                shift += c_on if on else -c_off
                tl = t_sig
                pos = t_sig
            t_last[i] = tl
            if r_tot > 0.0:
                budget[i] = (t_shot - t1) * r_tot
            lref[i] = lb - (d0 + slope * dt_us - shift)
            lp[i] = lb
        t0 = t1
    return t, pix, pol, n
