"""Scores for reservoir-computing tasks.

Every function takes plain arrays (targets first, predictions second) and works in
float64 whatever the input dtype, so that the numbers written to a run store do not
depend on whether a reservoir produced float32 or float64 features.

References
----------
.. [J01] H. Jaeger, "Short term memory in echo state networks", GMD Report 152,
   German National Research Center for Information Technology, 2001.
.. [JH04] H. Jaeger and H. Haas, "Harnessing nonlinearity: predicting chaotic
   systems and saving energy in wireless communication", Science 304:78-80, 2004.
.. [P18] J. Pathak, Z. Lu, B. R. Hunt, M. Girvan and E. Ott, "Using machine learning
   to replicate chaotic attractors and calculate Lyapunov exponents from data",
   Chaos 28, 041101, 2018.
.. [vR01] M. C. W. van Rossum, "A novel spike distance", Neural Computation
   13(4):751-763, 2001.
.. [SC07] B. Schrauwen and J. Van Campenhout, "Linking non-binned spike train kernels
   to several existing spike train metrics", Neurocomputing 70:1247-1253, 2007.
.. [LM07] R. Legenstein and W. Maass, "Edge of chaos and prediction of computational
   performance for neural circuit models", Neural Networks 20:323-334, 2007.
.. [BSL10] L. Büsing, B. Schrauwen and R. Legenstein, "Connectivity, dynamics, and
   memory in reservoir computing with binary and analog neurons", Neural Computation
   22(5):1272-1311, 2010.
.. [GVL13] G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed., Johns
   Hopkins University Press, 2013, section 5.4.1 (numerical rank).
.. [D19] M. Dale, J. F. Miller, S. Stepney and M. A. Trefzer, "A substrate-independent
   framework to characterize reservoir computers", Proc. R. Soc. A 475:20180723, 2019.
.. [J01b] H. Jaeger, "The 'echo state' approach to analysing and training recurrent
   neural networks", GMD Report 148, German National Research Center for Information
   Technology, 2001.
.. [YJK12] I. B. Yildiz, H. Jaeger and S. J. Kiebel, "Re-visiting the echo state
   property", Neural Networks 35:1-9, 2012.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "computational_capability",
    "fading_memory_distance",
    "fading_time",
    "generalisation_rank",
    "kernel_quality",
    "memory_capacity",
    "nrmse",
    "rate_correlation",
    "valid_prediction_time",
    "van_rossum_distance",
]


def _same_shape(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64, or ValueError naming the two shapes."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: y_true has shape {t.shape}, y_pred has shape {p.shape}")
    return t, p


def nrmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Normalised root-mean-square error.

    ``NRMSE = sqrt(mean((y_pred - y_true)^2)) / std(y_true)``, both taken over all
    elements, with the population standard deviation (``ddof=0``) of the targets, as
    in Jaeger & Haas 2004 [JH04]_. Predicting the target mean scores 1, a perfect
    prediction scores 0.

    Parameters
    ----------
    y_true, y_pred : array_like
        Targets and predictions of the same shape (any number of dimensions).

    Returns
    -------
    float
        The NRMSE; ``nan`` when the targets are constant (the ratio is undefined).

    Raises
    ------
    ValueError
        If the two shapes differ (the message names both).
    """
    t, p = _same_shape(y_true, y_pred)
    if t.size == 0:
        raise ValueError("nrmse of empty arrays is undefined")
    sd = float(np.std(t))
    rmse = float(np.sqrt(np.mean(np.square(p - t))))
    if sd == 0.0:
        return float("nan")
    return rmse / sd


def memory_capacity(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[float, np.ndarray]:
    """Short-term memory capacity (Jaeger 2001 [J01]_).

    ``MC_k = corr(y_k(t), u(t - k))^2`` (squared Pearson correlation over time) and
    ``MC = sum_k MC_k``.

    Parameters
    ----------
    y_true : array_like, shape (T, K)
        Column ``k - 1`` is the delay-``k`` target ``u(t - k)``.
    y_pred : array_like, shape (T, K)
        Readout outputs, one column per delay.

    Returns
    -------
    total : float
        ``sum_k MC_k``.
    per_delay : ndarray, shape (K,)
        ``MC_k`` for ``k = 1..K``. A delay whose target or prediction is constant over
        the evaluation window carries no linear information and scores 0; a delay with
        non-finite values scores ``nan`` (and so does the total).

    Raises
    ------
    ValueError
        If the shapes differ or the arrays are not 2-D with at least two rows.
    """
    t, p = _same_shape(y_true, y_pred)
    if t.ndim != 2 or t.shape[0] < 2:
        raise ValueError(f"memory_capacity expects (T, K) arrays with T >= 2, got shape {t.shape}")
    tc = t - t.mean(axis=0)
    pc = p - p.mean(axis=0)
    cov = np.einsum("tk,tk->k", tc, pc)
    var_t = np.einsum("tk,tk->k", tc, tc)
    var_p = np.einsum("tk,tk->k", pc, pc)
    denom = var_t * var_p
    # an exactly constant column has no variance; mean-subtraction round-off must not fake one
    informative = (np.ptp(t, axis=0) > 0) & (np.ptp(p, axis=0) > 0) & (denom > 0.0)
    mc_k = np.zeros(t.shape[1])
    mc_k[informative] = cov[informative] ** 2 / denom[informative]
    mc_k[~np.isfinite(cov * denom)] = np.nan  # non-finite data must not pass for "no memory"
    return float(mc_k.sum()), mc_k


def valid_prediction_time(
    truth: ArrayLike,
    pred: ArrayLike,
    *,
    dt: float,
    lyapunov_exponent: float,
    threshold: float = 0.4,
    norm: float | None = None,
) -> float | np.ndarray:
    """Valid prediction time of an autonomous forecast, in Lyapunov times.

    Following Pathak et al. 2018 [P18]_::

        e(h) = ||pred_h - truth_h||_2 / norm,        h = 1..H
        h*   = first h with e(h) > threshold
        VPT  = (h* - 1) * dt * lyapunov_exponent

    A forecast that never crosses the threshold is censored at ``H * dt * lambda``.
    Non-finite errors (a diverged forecast) count as crossings.

    Parameters
    ----------
    truth, pred : array_like, shape (H, d) or (B, H, d)
        True and forecast trajectories in ORIGINAL (un-normalised) coordinates; row
        ``h - 1`` is horizon ``h``. A leading batch axis scores ``B`` forecasts at once.
    dt : float
        Time between samples.
    lyapunov_exponent : float
        Largest Lyapunov exponent of the system (1 / time unit).
    threshold : float, default 0.4
        Error threshold ``f`` of [P18]_.
    norm : float, optional
        Normaliser ``sqrt(<||x||^2>)``. Pass the (uncentred) value over the TRAINING
        data, as [P18]_ do. When omitted it is computed from ``truth``, separately for
        each trajectory of a batch, so a batched call equals stacked single calls.

    Returns
    -------
    float or ndarray of shape (B,)
        VPT in Lyapunov times (one value per trajectory when batched).
    """
    t, p = _same_shape(truth, pred)
    if t.ndim not in (2, 3):
        raise ValueError(f"valid_prediction_time expects (H, d) or (B, H, d) arrays, got shape {t.shape}")
    if dt <= 0 or lyapunov_exponent <= 0 or threshold <= 0:
        raise ValueError("dt, lyapunov_exponent and threshold must be positive")
    batched = t.ndim == 3
    if not batched:
        t, p = t[None], p[None]
    if norm is None:
        den = np.sqrt(np.mean(np.sum(t * t, axis=2), axis=1))[:, None]  # (B, 1)
    else:
        if not norm > 0:
            raise ValueError(f"norm must be positive, got {norm}")
        den = float(norm)
    err = np.linalg.norm(p - t, axis=2) / den  # (B, H)
    crossed = ~(err <= threshold)  # nan / inf count as crossed
    horizon = t.shape[1]
    any_cross = crossed.any(axis=1)
    h_star = np.where(any_cross, np.argmax(crossed, axis=1) + 1, horizon + 1)
    vpt = (h_star - 1) * dt * lyapunov_exponent
    return vpt.astype(np.float64) if batched else float(vpt[0])


def _rasters(spikes_a: ArrayLike, spikes_b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two (T, N) spike rasters (bool or counts) as float64, or ValueError naming the shapes."""
    a = np.asarray(spikes_a)
    b = np.asarray(spikes_b)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"spike rasters must both be (T, N) of one shape, got {a.shape} and {b.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if (a < 0).any() or (b < 0).any() or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("spike rasters must hold non-negative finite spike counts (0/1 or counts per step)")
    return a, b


def van_rossum_distance(spikes_a: ArrayLike, spikes_b: ArrayLike, tau_steps: float) -> tuple[float, np.ndarray]:
    """Van Rossum distance between two spike rasters, per neuron and averaged over neurons.

    Each train is filtered with a causal exponential kernel ``f(t) = sum_i exp(-(t - t_i)/tau)``
    and [vR01]_::

        D^2 = (1/tau) * integral_0^inf (f_a(t) - f_b(t))^2 dt

    computed exactly in continuous time for spikes at the integer step times (the integral runs
    past the end of the raster, so no tail is cut off), through the pair sums of [SC07]_::

        D^2 = 1/2 [ sum_ij e^(-|a_i-a_j|/tau) + sum_ij e^(-|b_i-b_j|/tau) - 2 sum_ij e^(-|a_i-b_j|/tau) ]

    The sums are bilinear, so ``D^2`` is the pair sum of the signed difference ``x = a - b``, read
    off its discretely filtered train ``F_t = F_(t-1) e^(-1/tau) + x_t`` as
    ``1/2 sum_t x_t (2 F_t - x_t)`` (one vectorised linear filter over all neurons). One spike against none gives ``D = sqrt(1/2)``;
    one spike shifted by ``d`` steps gives ``D^2 = 1 - exp(-d/tau)``.

    Parameters
    ----------
    spikes_a, spikes_b : array_like, shape (T, N)
        Spike rasters (bool, or spike counts per step), time along axis 0.
    tau_steps : float
        Kernel time constant in steps (> 0).

    Returns
    -------
    mean : float
        Mean over neurons of the per-neuron distance.
    per_neuron : ndarray, shape (N,)
        Distance of each neuron's pair of trains.
    """
    from scipy.signal import lfilter

    if not tau_steps > 0 or not np.isfinite(tau_steps):
        raise ValueError(f"tau_steps must be a positive finite number of steps, got {tau_steps}")
    a, b = _rasters(spikes_a, spikes_b)
    if a.shape[1] == 0:
        return float("nan"), np.zeros(0)
    # the pair sums are bilinear, so D^2 = 1/2 sum_ij d_i d_j e^(-|t_i - t_j|/tau) for the signed
    # difference d = a - b, and sum_ij x_i x_j e^(..) = sum_t x_t (2 F_t - x_t) with F the filtered x
    d = a - b
    fd = lfilter([1.0], [1.0, -np.exp(-1.0 / tau_steps)], d, axis=0)  # F_t, spikes at t included
    d2 = np.maximum(0.5 * np.einsum("tn,tn->n", d, 2.0 * fd - d), 0.0)
    per_neuron = np.sqrt(d2)
    return float(per_neuron.mean()), per_neuron


def rate_correlation(spikes_a: ArrayLike, spikes_b: ArrayLike) -> float:
    """Pearson correlation between the per-neuron firing rates of two spike rasters.

    The rate of neuron ``n`` is its spike count divided by the number of steps; the result is
    the Pearson correlation coefficient of the two length-``N`` rate vectors, ``nan`` when
    either vector is constant (the coefficient is undefined).

    Parameters
    ----------
    spikes_a, spikes_b : array_like, shape (T, N)
        Spike rasters (bool, or spike counts per step) of the same network driven by the same
        input, e.g. the float LSM and its Loihi-quantised version.

    Returns
    -------
    float
        Correlation in [-1, 1], or ``nan``.
    """
    a, b = _rasters(spikes_a, spikes_b)
    ra = a.mean(axis=0) if a.shape[0] else np.zeros(a.shape[1])
    rb = b.mean(axis=0) if b.shape[0] else np.zeros(b.shape[1])
    if ra.size < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    ca, cb = ra - ra.mean(), rb - rb.mean()
    return float(np.clip(ca @ cb / np.sqrt((ca @ ca) * (cb @ cb)), -1.0, 1.0))


# -- reservoir property measures (the comparison battery) ------------------------------------------


def _state_matrix(states: ArrayLike, name: str) -> np.ndarray:
    """``(m, N)`` or ``(m, T, N)`` states as an ``(m, T*N)`` float64 matrix, or ValueError naming the shape."""
    x = np.asarray(states, dtype=np.float64)
    if x.ndim not in (2, 3) or x.shape[0] == 0 or x.size == 0:
        raise ValueError(f"{name} expects states of shape (m, N) or (m, T, N) with m, N > 0, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: states of shape {x.shape} contain non-finite values")
    return x.reshape(x.shape[0], -1)


def _effective_rank(states: ArrayLike, rtol: float, name: str) -> int:
    """Number of singular values of the state matrix above ``rtol`` times the largest one."""
    if not (0.0 < rtol < 1.0):
        raise ValueError(f"{name}: rtol must lie in (0, 1), got {rtol}")
    m = _state_matrix(states, name)
    s = np.linalg.svd(m, compute_uv=False)  # descending
    if s[0] == 0.0:
        return 0
    return int(np.count_nonzero(s > rtol * s[0]))


def kernel_quality(states: ArrayLike, *, rtol: float = 0.01) -> int:
    """Kernel quality: effective rank of the states evoked by ``m`` different input streams.

    After Legenstein & Maass 2007 [LM07]_ and Büsing, Schrauwen & Legenstein 2010 [BSL10]_:
    drive the reservoir, from the same initial state, with ``m`` *different* input streams
    ``u_1..u_m`` and stack its state vectors ``x_{u_i}(t0)`` as the rows of ``M`` (``m x N``).
    The kernel quality is ``rank(M)``: how many of the ``m`` inputs the reservoir maps to
    linearly independent states, which bounds the VC dimension of a linear readout on it
    (``r <= VC-dim <= r + 1``, [LM07]_). Higher is better; at most
    ``min(m, N)``.

    The exact rank is useless on measured or simulated states (any noise makes ``M`` full
    rank), so this is the *numerical* rank with a relative tolerance [GVL13]_::

        sigma_1 >= sigma_2 >= ... = singular values of M
        rank_eff(M) = #{ i : sigma_i > rtol * sigma_1 }

    It is invariant to the scale of the states (so a bucket's volts and an ESN's ``tanh``
    units compare) and ignores every direction whose amplitude is below ``rtol`` of the
    dominant one. Choose ``rtol`` above the substrate's noise floor: i.i.d. noise of standard
    deviation ``s`` adds singular values up to about ``s * (sqrt(m) + sqrt(N))``. A
    cumulative-share criterion (the fewest singular values holding 99 % of their sum, as in
    Dale et al. 2019 [D19]_) was not chosen because it drops genuinely independent
    directions: it rates a random full-rank matrix below ``min(m, N)``.

    Parameters
    ----------
    states : array_like, shape (m, N) or (m, T, N)
        Row ``i``: the state vector at ``t0`` for input stream ``i`` (end of stream), or a
        window of ``T`` states, concatenated into one row of length ``T * N``.
    rtol : float, default 0.01
        Relative singular-value threshold, in (0, 1).

    Returns
    -------
    int
        The effective rank, in ``0..min(m, N*T)`` (0 for all-zero states).

    Raises
    ------
    ValueError
        If ``states`` is not 2-D or 3-D, is empty or non-finite (the message names its shape),
        or ``rtol`` is outside (0, 1).
    """
    return _effective_rank(states, rtol, "kernel_quality")


def generalisation_rank(states: ArrayLike, *, rtol: float = 0.01) -> int:
    """Generalisation rank: effective rank of the states evoked by noisy versions of one stream.

    After Legenstein & Maass 2007 [LM07]_ and Büsing et al. 2010 [BSL10]_: the matrix ``M`` is
    built as for :func:`kernel_quality`, but the ``m`` input streams are noisy variants of
    *one* stream (or, in [BSL10]_, streams that agree in their recent past and differ only
    in the remote past). A reservoir that generalises maps them to nearly the same state,
    so a *lower* rank is better: it estimates the VC dimension over the class of inputs the
    readout should not tell apart. The rank is the same numerical rank::

        rank_eff(M) = #{ i : sigma_i(M) > rtol * sigma_1(M) }

    Use the same ``rtol`` as for the kernel quality it is compared with.

    Parameters
    ----------
    states : array_like, shape (m, N) or (m, T, N)
        Row ``i``: the state (or window of states) for noisy stream ``i``.
    rtol : float, default 0.01
        Relative singular-value threshold, in (0, 1).

    Returns
    -------
    int
        The effective rank (1 when every row is the same non-zero vector).

    Raises
    ------
    ValueError
        As for :func:`kernel_quality`.
    """
    return _effective_rank(states, rtol, "generalisation_rank")


def computational_capability(kq: float, gr: float) -> float:
    """Kernel quality minus generalisation rank.

    Legenstein & Maass 2007 [LM07]_ propose the difference of the two ranks as the predictor
    of a circuit's computational performance (it peaks near the edge of chaos), and Büsing
    et al. 2010 [BSL10]_ use the same difference as their "computational capability"::

        CC = KQ - GR

    Both ranks must come from the same reservoir, the same ``m`` and the same ``rtol``.

    Parameters
    ----------
    kq, gr : float
        A kernel quality and a generalisation rank (or their means over seeds).

    Returns
    -------
    float
        ``kq - gr``.

    Raises
    ------
    ValueError
        If either value is negative or not finite.
    """
    k, g = float(kq), float(gr)
    if not (np.isfinite(k) and np.isfinite(g)) or k < 0 or g < 0:
        raise ValueError(f"computational_capability needs finite non-negative ranks, got kq={kq}, gr={gr}")
    return k - g


def fading_memory_distance(
    states_a: ArrayLike,
    states_b: ArrayLike,
    *,
    reference: Literal["initial", "states"] = "initial",
) -> np.ndarray:
    """Normalised distance between two state trajectories under the same input.

    The echo-state / fading-memory check (Jaeger 2001 [J01b]_; Yildiz, Jaeger & Kiebel 2012
    [YJK12]_): run the same reservoir twice on the same input, started from two different
    states. With the echo state property the trajectories forget where they started,
    ``||x_a(t) - x_b(t)|| -> 0``; without it (e.g. a linear reservoir with spectral radius
    above 1, or a chaotic one) they do not. Per time step::

        d(t) = ||x_a(t) - x_b(t)||_2 / D

        D = ||x_a(0) - x_b(0)||_2                            reference="initial"
        D = sqrt( mean_{t, a|b} ||x(t)||_2^2 )               reference="states"

    ``"initial"`` (default) gives the contraction relative to the start, ``d(0) = 1``; for a
    linear reservoir ``x(t+1) = A x(t) + B u(t)`` it is ``||A^t delta|| / ||delta||``, which
    decays like ``rho(A)^t``. ``"states"`` divides by the RMS state norm of both trajectories
    (the normaliser of [P18]_), so that a trajectory pair that starts close compares too.
    Either way ``d`` is dimensionless: multiplying the states by any constant leaves it
    unchanged, so substrates with different units compare.

    Parameters
    ----------
    states_a, states_b : array_like, shape (T, N) or (B, T, N)
        The two trajectories, time along the second-to-last axis; row 0 is the first
        recorded step (the two different initial states, or the first states after them).
        A leading batch axis scores ``B`` pairs at once.
    reference : {"initial", "states"}, default "initial"
        The scale ``D`` above, per pair.

    Returns
    -------
    ndarray, shape (T,) or (B, T)
        ``d(t)``; ``nan`` where ``D`` is 0 (identical initial states with ``"initial"``, or
        all-zero states) and where the states are not finite (a diverged run).

    Raises
    ------
    ValueError
        If the shapes differ or are not (T, N) / (B, T, N) with T >= 1 (the message names
        both), or ``reference`` is unknown.
    """
    a = np.asarray(states_a, dtype=np.float64)
    b = np.asarray(states_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (2, 3) or a.shape[-2] == 0:
        raise ValueError(
            f"fading_memory_distance expects two (T, N) or (B, T, N) arrays of one shape with T >= 1, "
            f"got {a.shape} and {b.shape}"
        )
    if reference not in ("initial", "states"):
        raise ValueError(f"reference must be 'initial' or 'states', got {reference!r}")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        dist = np.linalg.norm(a - b, axis=-1)  # (..., T)
        if reference == "initial":
            scale = dist[..., :1]
        else:
            sq = np.einsum("...tn,...tn->...t", a, a) + np.einsum("...tn,...tn->...t", b, b)
            scale = np.sqrt(sq.mean(axis=-1) / 2.0)[..., None]
        out = np.where(scale > 0, dist / np.where(scale > 0, scale, 1.0), np.nan)
    out[~np.isfinite(out)] = np.nan
    return out


def fading_time(distance: ArrayLike, fraction: float = 0.01) -> int | None | np.ndarray:
    """First step from which a normalised distance stays below ``fraction``.

    ``t* = min { t : d(s) < fraction for every recorded s >= t }``, read off the output of
    :func:`fading_memory_distance` (Jaeger 2001 [J01b]_: the state forgets its initial
    condition). The record is finite, so "stays" means "until its last sample"; a curve
    that dips below ``fraction`` and comes back counts from its last crossing. ``nan``
    (a diverged or undefined step) never counts as below.

    Parameters
    ----------
    distance : array_like, shape (T,) or (B, T)
        Normalised distances over time (one curve, or one per row).
    fraction : float, default 0.01
        Threshold, > 0 (0.01: the distance has shrunk a hundred-fold with ``"initial"``).

    Returns
    -------
    int or None, or ndarray of shape (B,)
        For one curve, the step index, or ``None`` when the last sample is not below
        ``fraction`` (it never fades within the record). For a batch, a float array with
        ``inf`` for those curves.

    Raises
    ------
    ValueError
        If ``distance`` is not 1-D or 2-D with at least one step (the message names its
        shape), or ``fraction`` is not positive.
    """
    d = np.asarray(distance, dtype=np.float64)
    if d.ndim not in (1, 2) or d.shape[-1] == 0:
        raise ValueError(f"fading_time expects a distance of shape (T,) or (B, T) with T >= 1, got shape {d.shape}")
    if not fraction > 0:
        raise ValueError(f"fraction must be positive, got {fraction}")
    below = d < fraction  # nan compares False
    steps = d.shape[-1]
    # index after the last sample that is not below (0 when all are); valid only if the last is below
    not_below = ~below
    last_above = np.where(not_below.any(axis=-1), steps - 1 - np.argmax(not_below[..., ::-1], axis=-1), -1)
    t_star = np.where(below[..., -1], last_above + 1, -1)
    if d.ndim == 1:
        return int(t_star) if t_star >= 0 else None
    return np.where(t_star >= 0, t_star, np.inf).astype(np.float64)
