"""Online readouts: recursive least squares (RLS) and FORCE learning.

:class:`RLS` is exponentially weighted recursive least squares (Haykin, *Adaptive
Filter Theory*, ch. 10 and 13). :class:`FORCE` is the same recursion used as
Sussillo & Abbott 2009 use it to train a readout whose output is fed back into the
reservoir while it learns ("Generating coherent patterns of activity from chaotic
neural networks", Neuron 63:544).

Both share one compiled kernel, :func:`_rls_block`, which runs the sequential
recursion over every row of a block: per updated sample one product ``P x`` and one
symmetric rank-1 downdate of ``P``, O(N^2). Past a few hundred features that cost is
memory traffic, not arithmetic (``P`` is 8 N^2 bytes), so the kernel applies up to
four consecutive downdates in one sweep over ``P``, fused with the products ``P x``
that the next four samples need; the intermediate products are corrected exactly in
O(N) each. ``P`` is read and written once per four samples.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numba import njit
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_array

__all__ = ["FORCE", "RLS"]

# Reassociation lets LLVM vectorise the dot products and contraction fuses multiply-adds;
# no 'nnan'/'ninf', so a non-finite denominator is still detected.
_FASTMATH = {"reassoc", "contract", "nsz"}


# ------------------------------------------------------------------------ kernel

#: When the scale of ``P`` (see :func:`_rls_block`) passes this, it is folded into the
#: matrix, which is re-symmetrised then (reached only with forgetting < 1: every
#: ln(1e3) / -ln(forgetting) updates, e.g. 66 at 0.9, 688 at 0.99). This bounds the
#: factor by which the antisymmetric rounding error can grow between folds.
_MAX_SCALE = 1e3
#: ``P`` is re-symmetrised (and its scale folded in) at least every this many updates
#: (a fold costs about as much as 4 sweeps at N=1000: ~1% of the time at this period).
_SYMMETRISE_EVERY = 1024
#: Rank-1 updates applied per sweep over ``P`` (the loops below are written for 4).
_GROUP = 4


@njit(cache=True, fastmath=_FASTMATH)
def _load_row(X: np.ndarray, t: int, fit_intercept: bool, xa: np.ndarray) -> None:
    """Copy row ``t`` of ``X`` into ``xa``, appending the constant 1 of the intercept."""
    n = X.shape[1]
    for j in range(n):
        xa[j] = X[t, j]
    if fit_intercept:
        xa[n] = 1.0


@njit(cache=True, fastmath=_FASTMATH)
def _outputs(W: np.ndarray, xa: np.ndarray, Z: np.ndarray, t: int) -> None:
    """``Z[t] = W xa``."""
    m = xa.shape[0]
    for o in range(W.shape[0]):
        acc = 0.0
        for j in range(m):
            acc += W[o, j] * xa[j]
        Z[t, o] = acc


@njit(cache=True, fastmath=_FASTMATH)
def _matvec(P: np.ndarray, Xg: np.ndarray, g: int, Q: np.ndarray) -> None:
    """``Q[q] = P Xg[q]`` for ``q < g`` (rows ``g..3`` of ``Xg`` must be zero when ``g > 1``)."""
    m = P.shape[0]
    if g == 1:
        x0 = Xg[0]
        for i in range(m):
            s0 = 0.0
            for j in range(m):
                s0 += P[i, j] * x0[j]
            Q[0, i] = s0
    elif g > 1:
        x0, x1, x2, x3 = Xg[0], Xg[1], Xg[2], Xg[3]
        for i in range(m):
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for j in range(m):
                pij = P[i, j]
                s0 += pij * x0[j]
                s1 += pij * x1[j]
                s2 += pij * x2[j]
                s3 += pij * x3[j]
            Q[0, i] = s0
            Q[1, i] = s1
            Q[2, i] = s2
            Q[3, i] = s3


@njit(cache=True, fastmath=_FASTMATH)
def _sweep(P: np.ndarray, V: np.ndarray, g: int, Xn: np.ndarray, gn: int, Q: np.ndarray) -> None:
    """One pass over ``P``: ``P -= sum_{q<g} V[q] V[q]'``, fused with ``Q[q] = P Xn[q]``, ``q < gn``.

    Unused rows of ``V`` (``q >= g``) and of ``Xn`` (``q >= gn``) must be zero when
    more than one is used. Entry ``(i, j)`` and entry ``(j, i)`` undergo the same
    operations, so a symmetric ``P`` stays symmetric up to last-bit differences
    between code paths (see :func:`_rls_block`).
    """
    m = P.shape[0]
    if g == 1 and gn == 0:
        v0 = V[0]
        for i in range(m):
            a0 = v0[i]
            for j in range(m):
                P[i, j] -= a0 * v0[j]
    elif g == 1 and gn == 1:
        v0 = V[0]
        x0 = Xn[0]
        for i in range(m):
            a0 = v0[i]
            s0 = 0.0
            for j in range(m):
                pij = P[i, j] - a0 * v0[j]
                P[i, j] = pij
                s0 += pij * x0[j]
            Q[0, i] = s0
    else:
        # two rows of P per pass over the vectors: each load of v_q[j], x_q[j] serves both
        v0, v1, v2, v3 = V[0], V[1], V[2], V[3]
        x0, x1, x2, x3 = Xn[0], Xn[1], Xn[2], Xn[3]
        for i in range(0, m - 1, 2):
            k = i + 1
            a0 = v0[i]
            a1 = v1[i]
            a2 = v2[i]
            a3 = v3[i]
            b0 = v0[k]
            b1 = v1[k]
            b2 = v2[k]
            b3 = v3[k]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            t0 = 0.0
            t1 = 0.0
            t2 = 0.0
            t3 = 0.0
            for j in range(m):
                w0 = v0[j]
                w1 = v1[j]
                w2 = v2[j]
                w3 = v3[j]
                y0 = x0[j]
                y1 = x1[j]
                y2 = x2[j]
                y3 = x3[j]
                pij = P[i, j] - a0 * w0 - a1 * w1 - a2 * w2 - a3 * w3
                pkj = P[k, j] - b0 * w0 - b1 * w1 - b2 * w2 - b3 * w3
                P[i, j] = pij
                P[k, j] = pkj
                s0 += pij * y0
                s1 += pij * y1
                s2 += pij * y2
                s3 += pij * y3
                t0 += pkj * y0
                t1 += pkj * y1
                t2 += pkj * y2
                t3 += pkj * y3
            Q[0, i] = s0
            Q[1, i] = s1
            Q[2, i] = s2
            Q[3, i] = s3
            Q[0, k] = t0
            Q[1, k] = t1
            Q[2, k] = t2
            Q[3, k] = t3
        if m % 2 == 1:
            i = m - 1
            a0 = v0[i]
            a1 = v1[i]
            a2 = v2[i]
            a3 = v3[i]
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            s3 = 0.0
            for j in range(m):
                pij = P[i, j] - a0 * v0[j] - a1 * v1[j] - a2 * v2[j] - a3 * v3[j]
                P[i, j] = pij
                s0 += pij * x0[j]
                s1 += pij * x1[j]
                s2 += pij * x2[j]
                s3 += pij * x3[j]
            Q[0, i] = s0
            Q[1, i] = s1
            Q[2, i] = s2
            Q[3, i] = s3


@njit(cache=True, fastmath=_FASTMATH)
def _fold(P: np.ndarray, scale: float) -> None:
    """``P <- scale * (P + P') / 2``, in 32 x 32 tiles (the transposed reads stay in cache)."""
    m = P.shape[0]
    half = 0.5 * scale
    for ib in range(0, m, 32):
        for jb in range(ib, m, 32):
            for i in range(ib, min(ib + 32, m)):
                for j in range(max(jb, i + 1), min(jb + 32, m)):
                    sym = half * (P[i, j] + P[j, i])
                    P[i, j] = sym
                    P[j, i] = sym
    for i in range(m):
        P[i, i] *= scale


@njit(cache=True, fastmath=_FASTMATH)
def _group_size(t: int, n: int, update_every: int) -> int:
    """Number of update rows ``t, t + update_every, ...`` below ``n``, at most ``_GROUP``."""
    if t >= n:
        return 0
    return min(_GROUP, (n - 1 - t) // update_every + 1)


@njit(cache=True, fastmath=_FASTMATH)
def _load_group(X: np.ndarray, t: int, g: int, update_every: int, fit_intercept: bool,
                Xg: np.ndarray) -> None:
    """Rows ``t + q * update_every`` (``q < g``) of ``X`` into ``Xg[q]``, zeroing the other rows."""
    for q in range(_GROUP):
        if q < g:
            _load_row(X, t + q * update_every, fit_intercept, Xg[q])
        else:
            Xg[q, :] = 0.0


@njit(cache=True, fastmath=_FASTMATH)
def _rls_block(
    X: np.ndarray,
    Y: np.ndarray,
    W: np.ndarray,
    P: np.ndarray,
    scale: float,
    lam: float,
    fit_intercept: bool,
    update_every: int,
    first_index: int,
    since: int,
    Z: np.ndarray,
) -> tuple[int, float, int]:
    """Run the RLS recursion over the rows of one block, in place.

    The inverse correlation matrix is held as ``scale * P``. For each row ``t``
    (``x`` = row of ``X``, with a 1 appended when ``fit_intercept``) the output
    before the update is ``Z[t] = W x``; then, if ``(first_index + t) % update_every
    == 0``, with ``e = Y[t] - Z[t]``::

        p = P x;   d = lam + scale x'p;   c = scale / d
        W <- W + c e p'                       (gain k = c p)
        P <- P - v v',   v = sqrt(c) p        (then scale <- scale / lam)

    which is the textbook ``P <- (P - k x'P) / lam`` on ``scale * P``. Keeping
    ``1 / lam`` in ``scale`` keeps the inner loop to multiply-adds. Writing the rank-1
    term as ``v_i * v_j`` gives entries ``(i, j)`` and ``(j, i)`` the same operations
    (a product, or a fused multiply-add, does not depend on the order of its
    factors), so ``P`` stays symmetric up to where the compiler evaluates the two
    differently (vector body against scalar remainder, reassociation under
    fastmath): a last-bit asymmetry, which the recursion would let grow (like
    ``lam^-n`` for ``lam < 1``). After every ``_SYMMETRISE_EVERY`` updates, or
    when ``scale`` passes ``_MAX_SCALE``, ``P`` is replaced by
    ``scale (P + P') / 2`` and ``scale`` reset to 1 (at the end of a group).

    Memory traffic, not arithmetic, bounds a sweep over ``P`` once it leaves the
    L2 cache (N of a few hundred), so the updates are applied in groups of up to
    ``_GROUP`` consecutive updated rows with one sweep per group. Inside a group the
    ``P x`` of each row is obtained exactly, from the ``P x`` computed in the previous
    sweep minus the group's earlier rank-1 terms: ``p_q = Q_q - sum_{i<q} v_i (v_i'x_q)``
    (O(N) each). The sweep applies the group's rank-1 terms and, fused with them,
    computes ``Q = P X_next'`` for the next group's rows. The result is the
    sequential recursion, to rounding.

    Parameters
    ----------
    X : ndarray (n, n_features), float64
    Y : ndarray (n, n_outputs), float64
    W : ndarray (n_outputs, m), float64, updated in place (m = n_features + fit_intercept)
    P : ndarray (m, m), float64, symmetric, updated in place
    scale : float
        Current scale of ``P`` (> 0).
    lam : float
        Forgetting factor in (0, 1].
    fit_intercept : bool
    update_every : int
        Update on rows whose global index is a multiple of this.
    first_index : int
        Global index of row 0 of the block (samples seen before it).
    since : int
        Updates since ``P`` was last re-symmetrised.
    Z : ndarray (n, n_outputs), float64, written: outputs before the update.

    Returns
    -------
    failed : int
        -1 when every row was processed; otherwise the index of the row at which
        ``lam + x'(scale P)x`` was not a positive finite number (``P`` lost positive
        definiteness or overflowed). Rows before it are applied; it and later rows
        are not (their ``Z`` is undefined).
    scale : float
        The new scale of ``P``.
    since : int
        Updates since ``P`` was last re-symmetrised.
    """
    n = X.shape[0]
    m = P.shape[0]
    k_out = Y.shape[1]
    inv_lam = 1.0 / lam
    xa = np.empty(m)
    p = np.empty(m)
    e = np.empty(k_out)
    Xg = np.zeros((_GROUP, m))  # rows of the current group
    Xn = np.zeros((_GROUP, m))  # rows of the next group
    V = np.zeros((_GROUP, m))  # the group's rank-1 factors
    Q = np.zeros((_GROUP, m))  # P Xg[q] before the group's updates
    t = (-first_index) % update_every  # first row of the block that is updated
    for s in range(min(t, n)):
        _load_row(X, s, fit_intercept, xa)
        _outputs(W, xa, Z, s)
    g = _group_size(t, n, update_every)
    _load_group(X, t, g, update_every, fit_intercept, Xg)
    _matvec(P, Xg, g, Q)
    while g > 0:
        for q in range(g):
            r = t + q * update_every
            x = Xg[q]
            for j in range(m):
                p[j] = Q[q, j]
            for i in range(q):
                dot = 0.0
                for j in range(m):
                    dot += V[i, j] * x[j]
                for j in range(m):
                    p[j] -= dot * V[i, j]
            _outputs(W, x, Z, r)
            for o in range(k_out):
                e[o] = Y[r, o] - Z[r, o]
            quad = 0.0
            for j in range(m):
                quad += x[j] * p[j]
            denom = lam + scale * quad
            if not (denom > 0.0 and denom < np.inf):
                # keep the updates of the rows before it
                for i in range(q, _GROUP):
                    V[i, :] = 0.0
                if q > 0:
                    Xn[:, :] = 0.0
                    _sweep(P, V, q, Xn, 0, Q)
                return r, scale, since + q
            c = scale / denom
            for o in range(k_out):
                eo = e[o] * c
                for j in range(m):
                    W[o, j] += eo * p[j]
            sc = np.sqrt(c)
            for j in range(m):
                V[q, j] = p[j] * sc
            scale *= inv_lam
            for s in range(r + 1, min(r + update_every, n)):
                _load_row(X, s, fit_intercept, xa)
                _outputs(W, xa, Z, s)
        t_next = t + g * update_every
        gn = _group_size(t_next, n, update_every)
        since += g
        fold = scale > _MAX_SCALE or since >= _SYMMETRISE_EVERY
        _load_group(X, t_next, 0 if fold else gn, update_every, fit_intercept, Xn)
        _sweep(P, V, g, Xn, 0 if fold else gn, Q)
        V[:, :] = 0.0
        if fold:
            _fold(P, scale)
            scale = 1.0
            since = 0
            _load_group(X, t_next, gn, update_every, fit_intercept, Xn)
            _matvec(P, Xn, gn, Q)
        Xg, Xn = Xn, Xg
        t = t_next
        g = gn
    return -1, scale, since


# ------------------------------------------------------------------- estimators


def _check_positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite real number > 0, got {value!r}.")
    return float(value)


class _RecursiveLeastSquares(RegressorMixin, BaseEstimator):
    """Shared state, validation and kernel calls of :class:`RLS` and :class:`FORCE`.

    Subclasses define ``_hyperparameters()`` returning ``(delta, forgetting,
    update_every, fit_intercept)``.
    """

    _record_error = False
    _param_names: tuple[str, ...] = ()

    def _hyperparameters(self) -> tuple[float, float, int, bool]:  # pragma: no cover
        raise NotImplementedError

    def _checked_hyperparameters(self) -> tuple[float, float, int, bool]:
        """``_hyperparameters()``, re-validated only when a hyperparameter changed (cheap per step)."""
        key = tuple((type(v), v) for v in (getattr(self, name) for name in self._param_names))
        cached = self.__dict__.get("_hp_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        hp = self._hyperparameters()
        self._hp_cache = (key, hp)
        return hp

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any) -> Any:
        """Forget everything seen so far and learn from ``(X, y)``, row after row.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (converted to float64).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self
            The fitted estimator.
        """
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X: Any, y: Any) -> Any:
        """Run the recursion over one block of rows, in order.

        The result does not depend on how a stream is split into blocks (to
        rounding; see the module tests).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of the block (any real dtype; converted to float64). A block
            may hold a single row.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets of the block.

        Returns
        -------
        self
            The estimator, with the block learnt.

        Raises
        ------
        ValueError
            For an invalid hyperparameter, a block whose number of features or of
            outputs differs from the first block's, ``X`` and ``y`` of different
            lengths, or non-finite values.
        FloatingPointError
            If ``lambda + x'Px`` stops being a positive finite number (``P`` lost
            positive definiteness or overflowed, e.g. after a very long run with
            ``forgetting < 1`` on inputs that do not excite every direction). The
            rows before the offending one are kept.
        """
        hp = self._checked_hyperparameters()
        Xb, Yb, y_was_1d = self._validate_block(X, y)
        self._learn(Xb, Yb, y_was_1d, hp)
        return self

    def _learn(self, Xb: np.ndarray, Yb: np.ndarray, y_was_1d: bool,
               hp: tuple[float, float, int, bool]) -> np.ndarray:
        """Run the kernel on validated float64 arrays; return the pre-update outputs."""
        delta, lam, update_every, _ = hp
        n = Xb.shape[0]
        Z = np.empty_like(Yb)
        start = 0
        if not self._is_started():
            fit_intercept = hp[3]
            self._init_state(Xb.shape[1], Yb.shape[1], y_was_1d, delta, fit_intercept)
            if fit_intercept and n > 0:
                # Flat prior on the intercept (it is not penalised, as in Ridge): the
                # first sample fixes b = y_0, w = 0 and P exactly (see the class notes).
                x0 = Xb[0]
                c = 1.0 / (lam * delta)
                m = self._P.shape[0]
                self._P[: m - 1, m - 1] = -c * x0
                self._P[m - 1, : m - 1] = -c * x0
                self._P[m - 1, m - 1] = 1.0 + c * float(x0 @ x0)
                self._P[: m - 1, : m - 1] *= 1.0 / lam
                self._W[:, m - 1] = Yb[0]
                Z[0] = 0.0
                start = 1
        failed = -1
        if n > start:
            failed, self._P_scale, self._since_fold = _rls_block(
                Xb[start:], Yb[start:], self._W, self._P, self._P_scale, lam, self._fit_intercept,
                update_every, self.n_samples_seen_ + start, self._since_fold, Z[start:])
        done = n if failed < 0 else start + failed
        if self._record_error:
            self._append_errors(Yb[:done] - Z[:done])
        self.n_samples_seen_ += done
        if failed >= 0:
            raise FloatingPointError(
                f"{type(self).__name__}: lambda + x'Px is not a positive finite number at "
                f"sample {self.n_samples_seen_} (P lost positive definiteness or overflowed); "
                f"the {self.n_samples_seen_} samples before it are kept. Use a larger "
                "delta/alpha, a forgetting factor closer to 1, or fewer/better-conditioned features."
            )
        return Z

    def _init_state(self, n_features: int, n_outputs: int, y_was_1d: bool, delta: float,
                    fit_intercept: bool) -> None:
        m = n_features + int(fit_intercept)
        self.n_features_in_ = n_features
        self.n_outputs_ = n_outputs
        self.n_samples_seen_ = 0
        self._y_was_1d = y_was_1d
        self._fit_intercept = fit_intercept
        self._W = np.zeros((n_outputs, m))
        self._P = np.eye(m) / delta
        self._P_scale = 1.0
        self._since_fold = 0

    # --------------------------------------------------------------- prediction

    def predict(self, X: Any) -> np.ndarray:
        """Outputs of the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions in float64, 1-D when the training targets were 1-D.
        """
        self._require_started()
        X = check_array(X, dtype=np.float64)
        self._check_n_features(X.shape[1])
        out = X @ self._W[:, : self.n_features_in_].T
        if self._fit_intercept:
            out += self._W[:, -1]
        return out[:, 0] if self._y_was_1d else out

    @property
    def coef_(self) -> np.ndarray:
        """Weights, shape (n_outputs_, n_features_in_), or (n_features_in_,) for 1-D targets."""
        self._require_started()
        coef = self._W[:, : self.n_features_in_].copy()
        return coef[0] if self._y_was_1d else coef

    @property
    def intercept_(self) -> np.ndarray | float:
        """Intercept, shape (n_outputs_,), or a float for 1-D targets (0 without intercept)."""
        self._require_started()
        b = self._W[:, -1].copy() if self._fit_intercept else np.zeros(self.n_outputs_)
        return float(b[0]) if self._y_was_1d else b

    @property
    def P_(self) -> np.ndarray:
        """Inverse (weighted, regularised) correlation matrix of the inputs, a full symmetric copy.

        Shape (m, m) with ``m = n_features_in_ + 1`` when the intercept is fitted
        (the last row and column belong to the constant input 1), else
        ``n_features_in_``.
        """
        self._require_started()
        return self._P * self._P_scale

    def __sklearn_is_fitted__(self) -> bool:
        """Return whether at least one sample has been learnt."""
        return self._is_started()

    # ------------------------------------------------------------------ helpers

    def _is_started(self) -> bool:
        return "_W" in self.__dict__

    def _require_started(self) -> None:
        if not self._is_started():
            raise NotFittedError(
                f"This {type(self).__name__} instance has seen no data yet; call "
                "'fit' or 'partial_fit' before using it."
            )

    def _reset(self) -> None:
        for name in ("n_samples_seen_", "n_features_in_", "n_outputs_", "_y_was_1d",
                     "_fit_intercept", "_W", "_P", "_P_scale", "_since_fold", "_errors"):
            self.__dict__.pop(name, None)

    def _check_n_features(self, n_given: int) -> None:
        if n_given != self.n_features_in_:
            raise ValueError(
                f"X has {n_given} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _check_n_outputs(self, n_given: int) -> None:
        if n_given != self.n_outputs_:
            raise ValueError(
                f"y has {n_given} outputs, but {type(self).__name__} is expecting "
                f"{self.n_outputs_} outputs."
            )

    def _validate_block(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        X = check_array(X, dtype=np.float64, order="C")
        y_arr = np.asarray(y)
        if y_arr.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y_arr.shape}.")
        y_was_1d = y_arr.ndim == 1
        Y = check_array(y_arr.reshape(-1, 1) if y_was_1d else y_arr, dtype=np.float64, order="C")
        if X.shape[0] != Y.shape[0]:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {X.shape[0]} != {Y.shape[0]}."
            )
        if self._is_started():
            self._check_n_features(X.shape[1])
            self._check_n_outputs(Y.shape[1])
        return X, Y, y_was_1d


class RLS(_RecursiveLeastSquares):
    """Recursive least squares with exponential forgetting.

    At step ``n`` the weights minimise the exponentially weighted ridge cost::

        sum_{i<=n} forgetting^(n-i) ||y_i - W x_i - b||^2  +  forgetting^n delta ||W||^2

    updated one sample at a time (Haykin, *Adaptive Filter Theory*, ch. 10; 13 for
    the exponentially weighted form). For each row, with the a-priori error
    ``e = y - W x - b``::

        k = P x / (lambda + x' P x)
        W <- W + e k'
        P <- (P - k x' P) / lambda,        P_0 = I / delta

    With ``forgetting=1`` this is exactly ridge regression with ``alpha=delta`` on
    all the data seen, whatever the block split: the same weights as
    :class:`~labbench.readouts.IncrementalRidge` and ``sklearn.linear_model.Ridge``,
    to rounding. With ``forgetting < 1`` older samples, and the penalty, fade with
    a memory of about ``1 / (1 - forgetting)`` samples, so the weights track a
    target that changes.

    Per sample the cost is ``O(m^2)`` (``m = n_features + fit_intercept``) in a
    compiled kernel that sweeps ``P`` once per four samples (see the module notes);
    nothing is done per sample in Python. Memory is ``O(m^2)``.

    Parameters
    ----------
    forgetting : float, default=1.0
        Forgetting factor lambda in (0, 1]. 1 means no forgetting (exact ridge).
        Read at every ``partial_fit``.
    delta : float, default=1.0
        Regularisation delta > 0: ``P_0 = I / delta``, i.e. the ridge penalty
        ``alpha``. Small values trust the data sooner but make ``P_0`` large. Only
        read when the first sample initialises ``P`` (later changes have no effect
        until ``fit``).
    fit_intercept : bool, default=True
        Whether to learn an intercept. As in ``Ridge`` it is not penalised; see Notes.
        Only read at the first sample.

    Attributes
    ----------
    coef_ : ndarray of shape (n_outputs_, n_features_in_) or (n_features_in_,)
        Current weights (1-D when the first block's targets were 1-D).
    intercept_ : ndarray of shape (n_outputs_,) or float
        Current intercept (0 without intercept).
    P_ : ndarray of shape (m, m)
        Inverse of the exponentially weighted, regularised correlation matrix of the
        (intercept-augmented) inputs, a full symmetric copy.
    n_features_in_ : int
        Number of features, fixed by the first block.
    n_outputs_ : int
        Number of targets, fixed by the first block.
    n_samples_seen_ : int
        Number of samples learnt.

    Notes
    -----
    *Intercept.* The intercept is the weight of a constant input 1 whose prior
    variance is infinite (it is not penalised). That limit is taken exactly at the
    first sample ``(x_0, y_0)``: ``b = y_0``, ``W = 0`` and::

        P_1 = [[ I/(lambda delta),   -x_0/(lambda delta)          ],
               [-x_0'/(lambda delta), 1 + ||x_0||^2/(lambda delta) ]]

    which is the inverse of ``lambda diag(delta I, 0) + [x_0; 1][x_0; 1]'``; the
    ordinary recursion continues from there. So ``RLS(forgetting=1, delta=a)`` equals
    ``Ridge(alpha=a)`` with its unpenalised intercept.

    *Numerical stability.* The known failure of the conventional RLS recursion in
    floating point is that ``P`` drifts away from symmetry and then from positive
    definiteness (Haykin ch. 13); the usual cure is to re-symmetrise ``P`` now and
    then. Here the rank-1 downdate is computed as ``P - v v'`` with
    ``v = P x / sqrt(lambda + x'Px)``, so entries ``(i, j)`` and ``(j, i)`` get the
    same operations and differ at most in the last bit (where the compiled code
    takes different paths for the two); and ``P`` is replaced by ``(P + P') / 2``
    after every 1024 updates, or sooner with ``forgetting < 1`` (when the factor
    ``forgetting^-n``, kept apart from ``P`` so that the inner loop is a pure
    multiply-add, reaches 1e3 and is folded into it). That bounds the asymmetry,
    which the recursion would otherwise let grow like ``forgetting^-n``
    (Verhaegen 1989), at about 1e-13 relative (tested). Positive
    definiteness is checked on every update through ``lambda + x'Px > 0``; a
    violation raises ``FloatingPointError``. With ``forgetting < 1`` and inputs
    that leave some directions unexcited for a long time, ``P`` grows like
    ``lambda^-n`` in those directions ("estimator wind-up"); keep ``forgetting``
    close to 1 for long runs on reservoir states.

    *Accuracy.* With ``forgetting=1`` the weights agree with the ridge solution to
    1e-13--1e-10 relative on well-conditioned data (``bench/ridge_vs_sklearn.py``). On
    echo-state-network states, whose Gram matrix has condition numbers of 1e8--1e13,
    and ``delta=1e-6``, they agree to 1e-9--1e-5: the size of the difference between
    two exact batch solvers (``IncrementalRidge`` and scikit-learn's ``Ridge``) on the
    same data, i.e. limited by conditioning. Test predictions agree to many more
    digits than the weights (Mackey-Glass NRMSE: identical to 6 digits).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, w = rng.normal(size=(200, 3)), np.array([1.0, -2.0, 0.5])
    >>> model = RLS(delta=1e-8).partial_fit(X[:50], X[:50] @ w + 3.0)
    >>> model = model.partial_fit(X[50:], X[50:] @ w + 3.0)
    >>> np.round(model.coef_, 6).tolist(), round(model.intercept_, 6)
    ([1.0, -2.0, 0.5], 3.0)
    """

    _param_names = ("forgetting", "delta", "fit_intercept")

    def __init__(self, forgetting: float = 1.0, delta: float = 1.0, fit_intercept: bool = True) -> None:
        self.forgetting = forgetting
        self.delta = delta
        self.fit_intercept = fit_intercept

    def _hyperparameters(self) -> tuple[float, float, int, bool]:
        lam = self.forgetting
        if (
            isinstance(lam, bool)
            or not isinstance(lam, numbers.Real)
            or not np.isfinite(lam)
            or not 0 < lam <= 1
        ):
            raise ValueError(f"forgetting must be a real number in (0, 1], got {lam!r}.")
        delta = _check_positive("delta", self.delta)
        return delta, float(lam), 1, bool(self.fit_intercept)


class FORCE(_RecursiveLeastSquares):
    """FORCE learning of a linear readout (Sussillo & Abbott 2009).

    The readout ``z = W x (+ b)`` is trained by recursive least squares with
    ``P_0 = I / alpha`` and no forgetting. On every ``update_every``-th sample, with
    the error of the output *before* the update, ``e_- = z - f`` (``f`` the target)::

        P <- P - P x x' P / (1 + x' P x)
        W <- W - e_- (P x)'

    with the updated ``P`` (Sussillo & Abbott 2009, the RLS rule of their FORCE
    learning; the same recursion as :class:`RLS` with ``forgetting=1``). With a
    small ``alpha`` the first updates already pull the output close to the target,
    and it stays close while the weights settle.
    That is what lets the output be fed back into the reservoir during training
    (use :meth:`step`), where a readout trained offline would first have to be
    teacher-forced.

    Parameters
    ----------
    alpha : float, default=1.0
        ``P_0 = I / alpha``, S&A's learning-rate parameter (smaller learns faster).
        It acts as a ridge penalty ``alpha ||W||^2`` on the data learnt. Only read
        when ``P`` is initialised.
    update_every : int, default=1
        Update the weights on every ``update_every``-th sample only (S&A's
        ``Delta t``); the output is computed for every sample. Counted over all
        samples learnt, across calls.
    fit_intercept : bool, default=False
        Whether to learn an unpenalised intercept (S&A have none). Only read at the
        first sample.

    Attributes
    ----------
    coef_, intercept_, P_, n_features_in_, n_outputs_, n_samples_seen_
        As in :class:`RLS`.
    train_error_ : ndarray of shape (n_samples_seen_,)
        For every sample learnt (by ``partial_fit`` or ``step``), the root mean
        square over outputs of the error of the output before the update,
        ``|z - f|``. Kept in an amortised growing buffer (8 bytes a sample).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 20))
    >>> y = X @ rng.normal(size=20)
    >>> force = FORCE(alpha=1.0).partial_fit(X, y)
    >>> bool(force.train_error_[-100:].mean() < 0.01 * force.train_error_[:5].mean())
    True
    """

    _record_error = True
    _param_names = ("alpha", "update_every", "fit_intercept")

    def __init__(self, alpha: float = 1.0, update_every: int = 1, fit_intercept: bool = False) -> None:
        self.alpha = alpha
        self.update_every = update_every
        self.fit_intercept = fit_intercept

    def _hyperparameters(self) -> tuple[float, float, int, bool]:
        alpha = _check_positive("alpha", self.alpha)
        every = self.update_every
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"update_every must be an integer >= 1, got {every!r}.")
        return alpha, 1.0, int(every), bool(self.fit_intercept)

    def step(self, x: Any, y_target: Any = None) -> np.ndarray | float:
        """Output for one state, then learn from it (one FORCE step).

        Parameters
        ----------
        x : array-like of shape (n_features,)
            One reservoir state.
        y_target : float, array-like of shape (n_outputs,), or None
            The target for this state. ``None`` only computes the output, without
            learning and without counting the sample.

        Returns
        -------
        z : float or ndarray of shape (n_outputs,)
            The output *before* the update (what is fed back into the reservoir);
            a float when the model's targets are 1-D.
        """
        xr = np.asarray(x, dtype=np.float64)
        if xr.ndim != 1:
            raise ValueError(f"x must be one state of shape (n_features,), got shape {xr.shape}.")
        if not np.isfinite(xr).all():
            raise ValueError("x contains NaN or infinity.")
        if y_target is None:
            self._require_started()
            self._check_n_features(xr.shape[0])
            z = self._W[:, : self.n_features_in_] @ xr
            if self._fit_intercept:
                z += self._W[:, -1]
            return float(z[0]) if self._y_was_1d else z
        hp = self._checked_hyperparameters()
        yr = np.asarray(y_target, dtype=np.float64)
        y_was_1d = yr.ndim == 0
        if yr.ndim > 1:
            raise ValueError(f"y_target must be a number or of shape (n_outputs,), got shape {yr.shape}.")
        if not np.isfinite(yr).all():
            raise ValueError("y_target contains NaN or infinity.")
        Xb = xr.reshape(1, -1)
        Yb = yr.reshape(1, -1)
        if self._is_started():
            self._check_n_features(Xb.shape[1])
            self._check_n_outputs(Yb.shape[1])
        Z = self._learn(Xb, Yb, y_was_1d, hp)
        return float(Z[0, 0]) if self._y_was_1d else Z[0]

    @property
    def train_error_(self) -> np.ndarray:
        """Pre-update output error of every sample learnt (RMS over outputs)."""
        self._require_started()
        return self._errors[: self.n_samples_seen_].copy()

    def _init_state(self, n_features: int, n_outputs: int, y_was_1d: bool, delta: float,
                    fit_intercept: bool) -> None:
        super()._init_state(n_features, n_outputs, y_was_1d, delta, fit_intercept)
        self._errors = np.empty(1024)

    def _append_errors(self, E: np.ndarray) -> None:
        start = self.n_samples_seen_
        end = start + E.shape[0]
        if end > self._errors.shape[0]:
            grown = np.empty(max(end, 2 * self._errors.shape[0]))
            grown[:start] = self._errors[:start]
            self._errors = grown
        if E.shape[1] == 1:
            np.abs(E[:, 0], out=self._errors[start:end])
        else:
            np.sqrt(np.mean(np.square(E), axis=1), out=self._errors[start:end])
