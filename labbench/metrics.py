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
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["memory_capacity", "nrmse", "rate_correlation", "valid_prediction_time", "van_rossum_distance"]


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
