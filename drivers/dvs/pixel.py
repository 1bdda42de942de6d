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

Computation (numba, one thread, no per-event Python): the frames are scanned once for each
pixel's input changes; ``log(I + eps)`` and ``exp(-2 pi f_c(I) dt)`` of the new inputs are
taken vectorised in float32 (the frames are float32: the log is as exact as its input,
~1e-7); the kernel then runs pixel by pixel through its runs of equal input with its state
in registers. The reference is stored undrifted (extrapolated to t = 0) and the shot noise
as a budget spent at a rate since a time, so a *still* pixel (low-pass at rest, snapped to
its input within 1e-9, no threshold near) carries nothing from frame to frame and jumps to
its next input change, leak crossing or shot. Every choice depends only on the state and
the frame, never on the block, so block after block is byte for byte one call.
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
        Reference level extrapolated back to t = 0 along the leak: the reference at time t (µs)
        is ``lref - leak_rate_hz * cp * 1e-6 * t``; it changes only at events, so a still pixel
        carries nothing from frame to frame.
    t_last
        Time of each pixel's last event (µs, float; -inf if none).
    budget, t_budget, rate
        The shot noise: a unit-exponential budget, of which ``budget`` was left at ``t_budget``
        (µs) and is spent since at ``rate`` (ON + OFF per µs; 0 before the first interval);
        the next shot falls when it runs out.
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
    t_budget: np.ndarray
    rate: np.ndarray
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
    return PixelState(shape=(h, w), seed=int(seed) & 0x7FFF_FFFF_FFFF_FFFF, cp=cp, cn=cn, lp=nan, lref=nan.copy(),
                      t_last=np.full(n, -np.inf), budget=nan.copy(), t_budget=np.zeros(n), rate=np.zeros(n),
                      draws=np.zeros(n, np.uint64), t_prev=None)


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
                  budget=state.budget.copy(), t_budget=state.t_budget.copy(), rate=state.rate.copy(),
                  draws=state.draws.copy())
    if len(t_us) == 0:
        return new, np.empty(0, EVENT_DTYPE)
    flat = frames.reshape(len(t_us), h * w)
    if state.t_prev is None:
        log0 = np.log((np.clip(flat[0].astype(np.float64), 0.0, 1.0) + params.log_eps).astype(np.float32))
        _init_pixels(log0.astype(np.float64), float(t_us[0]), params.leak_rate_hz, new.cp, new.seed,
                     new.lp, new.lref, new.budget, new.draws)
        new.t_budget[:] = t_us[0]
        flat, t_us, t_prev = flat[1:], t_us[1:], int(t_us[0])
        if len(t_us) == 0:
            return replace(new, t_prev=t_prev), np.empty(0, EVENT_DTYPE)
    else:
        t_prev = state.t_prev
    ta = np.empty(len(t_us))
    ta[0], ta[1:] = t_prev, t_us[:-1]
    tb = t_us.astype(np.float64)
    # where the input changes (frames 1.. of the block, frame-major; a new interval changes all),
    # gathered pixel by pixel; then log(I + eps) and exp(-2 pi f_c(I) dt) of each new input,
    # vectorised in float32
    changed = flat[1:] != flat[:-1]
    dt = tb - ta
    changed[np.flatnonzero(dt[1:] != dt[:-1])] = True
    start, k_new, raw_new, log_in, decay = _changes(flat, np.flatnonzero(changed), ta, tb, params.log_eps,
                                                    2.0 * math.pi * params.cutoff_hz * 1e-6)
    np.log(log_in, out=log_in)
    np.exp(decay, out=decay)
    cap = max(1024, flat.size // 25)
    t, pix, pol, kk = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.bool_), np.empty(cap, np.int64)
    n, i = 0, 0
    while i < h * w:                                   # the kernel stops before a pixel that does not fit
        n, i = _run(start, k_new, raw_new, log_in, decay, ta, tb, new.seed, new.cp, new.cn, new.lp, new.lref,
                    new.t_last, new.budget, new.t_budget, new.rate, new.draws, params.cutoff_hz,
                    params.refractory_s * 1e6, params.leak_rate_hz, params.shot_noise_rate_hz,
                    params.shot_noise_bright_factor, params.pos_threshold, params.neg_threshold, t, pix, pol, kk, n, i)
        if i < h * w:
            t, pix, pol, kk = (np.concatenate([a[:n], np.empty(2 * len(a) - n, a.dtype)]) for a in (t, pix, pol, kk))
    t, pix, pol = _by_interval(t, pix, pol, kk, n, len(t_us))
    order = np.argsort(t, kind="stable")
    events = np.empty(n, EVENT_DTYPE)
    events["t"] = t[order]
    p = pix[order]
    events["y"], events["x"] = p // w, p % w
    events["p"] = pol[order]
    return replace(new, t_prev=int(t_us[-1])), events


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

#: a low-passed log intensity this close to its input is set to it (log units; float32 inputs
#: are rounded 100 times coarser), so that a pixel with a constant input comes to rest
_SNAP = 1e-9

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
def _init_pixels(log0, t_us, leak_hz, cp, seed, lp, lref, budget, draws):
    s = np.uint64(seed)
    for i in range(log0.shape[0]):
        lp[i] = log0[i]
        lref[i] = lp[i]
        if leak_hz > 0.0:
            lref[i] += leak_hz * cp[i] * 1e-6 * t_us - _uniform(s, i, draws[i]) * cp[i]
            draws[i] += np.uint64(1)
        budget[i] = -math.log(_uniform(s, i, draws[i]))
        draws[i] += np.uint64(1)


@numba.njit(cache=True, inline="always")
def _put(frames, k, i, fill, k_new, raw_new, v, x, log_eps, w1, w0, dt_us):
    """Append frame k's input to pixel i's changes (see :func:`_changes`)."""
    p = fill[i]
    fill[i] = p + 1
    raw = float(frames[k, i])
    inten = min(max(raw, 0.0), 1.0)
    k_new[p] = k
    raw_new[p] = raw
    v[p] = inten + log_eps
    x[p] = (w1 * inten + w0) * dt_us


@numba.njit(cache=True)
def _changes(frames, pos, ta, tb, log_eps, w_us):
    """Each pixel's input changes: every pixel at the block's first frame, then the flat
    indices ``pos`` (ascending) into ``frames[1:]``.

    Returns, pixel by pixel (pixel i's changes at ``start[i]:start[i + 1]``, in frame order),
    the frame index, the raw value, ``I + eps`` and ``-2 pi f_c(I) dt`` (float32, for a
    vectorised log and exp; I = the value clipped to [0, 1]).
    """
    n_pix = frames.shape[1]
    start = np.zeros(n_pix + 1, np.int64)
    for i in range(n_pix):
        start[i + 1] = 1
    row = 0                                             # flat index of the frame's first pixel
    for q in pos:
        while q >= row + n_pix:
            row += n_pix
        start[q - row + 1] += 1
    for i in range(n_pix):
        start[i + 1] += start[i]
    m = start[n_pix]
    k_new = np.empty(m, np.int32)
    raw_new = np.empty(m)
    v = np.empty(m, np.float32)
    x = np.empty(m, np.float32)
    fill = start[:n_pix].copy()
    w1 = -w_us * 255.0 / 275.0
    w0 = -w_us * 20.0 / 275.0
    for i in range(n_pix):                              # the first frame
        _put(frames, 0, i, fill, k_new, raw_new, v, x, log_eps, w1, w0, tb[0] - ta[0])
    k = 1
    row = 0
    for q in pos:
        while q >= row + n_pix:
            row += n_pix
            k += 1
        _put(frames, k, q - row, fill, k_new, raw_new, v, x, log_eps, w1, w0, tb[k] - ta[k])
    return start, k_new, raw_new, v, x


@numba.njit(cache=True)
def _run(start, k_new, raw_new, log_in, decay, ta, tb, seed, cp, cn, lp, lref, t_last, budget, t_budget, rate,
         draws, cutoff_hz, refr_us, leak_hz, shot_hz, bright_factor, cp_nom, cn_nom, t, pix, pol, kk, n, i_begin):
    """Pixel by pixel (its state in registers) through the runs of frames of equal input.

    A pixel is *still* once its low-pass no longer moves (``Lp`` unchanged by a frame; it is
    snapped to its input once within ``_SNAP``) and no threshold is near: while its input and
    the frame interval repeat, nothing in its state changes (the reference drifts in closed
    form, the next shot time is fixed), so it jumps to the frame where the leak crossing or
    the next shot falls due, or to its next input change. Events are generated per pixel, with
    their frame interval, into the buffers ``t, pix, pol, kk`` after the first ``n``, from pixel
    ``i_begin`` on. A pixel's state is written back once it is done; if its events do not fit,
    the kernel returns before it: (events so far, the next pixel to do).
    """
    n_pix = cp.shape[0]
    s = np.uint64(seed)
    cap = t.shape[0]
    n_frames = ta.shape[0]
    for i in range(i_begin, n_pix):
        n_done = n
        dr = draws[i]
        c_on = cp[i]
        c_off = cn[i]
        k_on = cp_nom / c_on
        k_off = cn_nom / c_off
        g = leak_hz * c_on * 1e-6                       # drift of the reference per µs
        # shot rate (ON + OFF) per µs, r0 + r1 I: v2e's (R/2) ((f - 1) (255 I + 20) / 275 + 1) C_nom / C
        r0 = 0.5 * shot_hz * 1e-6 * ((bright_factor - 1.0) * 20.0 / 275.0 + 1.0) * (k_on + k_off)
        r1 = 0.5 * shot_hz * 1e-6 * (bright_factor - 1.0) * 255.0 / 275.0 * (k_on + k_off)
        on_share = k_on / (k_on + k_off)
        la = lp[i]
        ref0 = lref[i]
        bud = budget[i]
        tbud = t_budget[i]
        r_cur = rate[i]
        tl = t_last[i]
        c_dt = -1.0
        inv_dt = 0.0
        for j in range(start[i], start[i + 1]):
            # a run of frames [k, k_end) of one input
            k = k_new[j]
            k_end = k_new[j + 1] if j + 1 < start[i + 1] else n_frames
            dt_us = tb[k] - ta[k]
            if dt_us != c_dt:
                inv_dt = 1.0 / dt_us
                c_dt = dt_us
            c_log = float(log_in[j])
            c_alpha = 1.0 - float(decay[j])
            r_tot = r0 + r1 * min(max(raw_new[j], 0.0), 1.0)
            if r_tot != r_cur:                          # spend the budget so far at the old rate
                bud -= r_cur * (ta[k] - tbud)
                tbud = ta[k]
                r_cur = r_tot
            while k < k_end:
                t0 = ta[k]
                t1 = tb[k]
                if cutoff_hz > 0.0:
                    lb = la + c_alpha * (c_log - la)
                    if abs(c_log - lb) <= _SNAP:
                        lb = c_log
                else:
                    lb = c_log
                # D(t) = d0 + slope (t - t0) - shift: the distance of Lp from the (leaking) reference
                d0 = la - (ref0 - g * t0)
                dl = lb - la
                slope = dl * inv_dt + g
                d1 = d0 + slope * dt_us
                if max(d0, d1) < c_on and min(d0, d1) > -c_off and (r_cur <= 0.0 or bud > r_cur * (t1 - tbud)):
                    # the common case: no crossing and no shot in this interval
                    la = lb
                    k += 1
                    if dl == 0.0 and k < k_end:
                        # still: nothing changes until the leak crossing or the next shot
                        t_quiet = t0 + (c_on - d0) / g if g > 0.0 else math.inf
                        if r_cur > 0.0:
                            t_quiet = min(t_quiet, tbud + bud / r_cur)
                        if tb[k] < t_quiet:
                            k = min(k_end, np.searchsorted(tb, t_quiet))
                    continue
                ts = tbud + bud / r_cur if r_cur > 0.0 else math.inf
                shift = 0.0
                pos = t0
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
                    if ts <= t1 and ts < t_sig:
                        if ts >= tl + refr_us:
                            if n == cap:
                                return n_done, i
                            t[n] = math.ceil(ts)
                            pix[n] = i
                            pol[n] = _uniform(s, i, dr) < on_share
                            kk[n] = k
                            dr += np.uint64(1)
                            n += 1
                            tl = ts
                        pos = max(pos, ts)
                        ts += -math.log(_uniform(s, i, dr)) / r_cur
                        dr += np.uint64(1)
                        continue
                    if t_sig == math.inf:
                        break
                    if n == cap:
                        return n_done, i
                    t[n] = math.ceil(t_sig)
                    pix[n] = i
                    pol[n] = on
                    kk[n] = k
                    n += 1
                    shift += c_on if on else -c_off
                    tl = t_sig
                    pos = t_sig
                if r_cur > 0.0:
                    bud = (ts - t1) * r_cur
                    tbud = t1
                ref0 += shift
                la = lb
                k += 1
        lp[i] = la
        lref[i] = ref0
        budget[i] = bud
        t_budget[i] = tbud
        rate[i] = r_cur
        t_last[i] = tl
        draws[i] = dr
    return n, n_pix


@numba.njit(cache=True)
def _by_interval(t, pix, pol, kk, n, n_frames):
    """The first ``n`` events stably reordered by frame interval ``kk`` (a counting sort)."""
    start = np.zeros(n_frames + 1, np.int64)
    for j in range(n):
        start[kk[j] + 1] += 1
    for k in range(n_frames):
        start[k + 1] += start[k]
    t2 = np.empty(n, np.int64)
    p2 = np.empty(n, np.int64)
    q2 = np.empty(n, np.bool_)
    for j in range(n):
        m = start[kk[j]]
        start[kk[j]] = m + 1
        t2[m] = t[j]
        p2[m] = pix[j]
        q2[m] = pol[j]
    return t2, p2, q2
