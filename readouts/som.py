"""Kohonen self-organizing map (SOM), online and batch.

:class:`SOM` is a scikit-learn transformer: a rectangular ``rows x cols`` grid of
units, each with a weight vector in input space, trained without labels so that
nearby units answer to nearby inputs. :meth:`SOM.transform` gives the one-hot
winner indicator of each sample, shape ``(n_samples, rows * cols)``, which
:class:`~labbench.readouts.labelling.VoteClassifier` turns into a classifier by
unit labelling.

Two training algorithms (Kohonen, *Self-Organizing Maps*, 3rd ed., Springer 2001):

- ``mode="online"``: the original sequential rule (Kohonen 1982; 2001 eq. 3.2-3.4),
  one sample at a time, in a compiled numba loop.
- ``mode="batch"``: the Batch Map (Kohonen 2001, section 3.14): every epoch each
  unit moves to the neighbourhood-weighted mean of the data, vectorised with BLAS.

With the same integer seed and the default ``init="random"``, :meth:`SOM.fit` in
online mode performs the same computation as MiniSom's ``train_random`` (MiniSom
2.3.6, Gaussian neighbourhood, ``asymptotic_decay``): same initial weights, same
sample order, same update, up to rounding in the winner search.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numba
import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array

__all__ = ["SOM", "DECAYS"]

#: Decay schedules for the learning rate and the neighbourhood radius, by name.
DECAYS = ("asymptotic", "exponential", "linear")
_DECAY_CODE = {name: code for code, name in enumerate(DECAYS)}
_INITS = ("random", "sample", "pca")
_MODES = ("online", "batch")
#: Upper bound on the bytes of one block of the (samples x units) distance matrix.
_CHUNK_BYTES = 16 * 2**20
#: Neighbourhood weights below this are treated as 0 in the online kernel (the unit is
#: skipped): it moves no weight by more than 1e-20 * |x - w|, and it keeps products of
#: tiny Gaussians out of subnormal arithmetic, which costs ~100 cycles per operation.
_H_MIN = 1e-20


# ---------------------------------------------------------------------- kernels


@numba.njit(cache=True)
def _decay(x0: float, x_end: float, t: float, T: float, kind: int) -> float:
    """Value of a decaying hyperparameter at step ``t`` of a schedule planned over ``T``.

    ``kind`` 0, asymptotic (MiniSom's ``asymptotic_decay``): ``x0 / (1 + t / (T / 2))``,
    which reaches ``x0 / 3`` at ``t = T`` and keeps decaying after it.
    ``kind`` 1, exponential: ``x0 * (x_end / x0) ** min(t / T, 1)``.
    ``kind`` 2, linear: ``x0 + (x_end - x0) * min(t / T, 1)``.
    """
    if kind == 0:
        return x0 / (1.0 + t / (T / 2.0))
    frac = t / T
    if frac > 1.0:
        frac = 1.0
    if kind == 1:
        return x0 * (x_end / x0) ** frac
    return x0 + (x_end - x0) * frac


@numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def _sq_dist(x: np.ndarray, w: np.ndarray) -> float:
    """Squared Euclidean distance (reassociated so that LLVM vectorises the sum)."""
    s = 0.0
    for f in range(x.shape[0]):
        d = x[f] - w[f]
        s += d * d
    return s


@numba.njit(cache=True)
def _online_updates(X, order, W, rows, cols, t0, T, lr0, lr_end, sigma0, sigma_end, kind):  # pragma: no cover
    """Sequential Kohonen updates, in place on ``W`` (n_units, n_features).

    For each sample ``x = X[order[s]]``, with ``t = t0 + s``: find the best-matching
    unit ``c = argmin_i ||x - w_i||``; then for every unit ``i`` at grid position
    ``(r_i, q_i)``::

        h_ci(t) = eta(t) * exp(-(r_i - r_c)^2 / (2 sigma(t)^2)) * exp(-(q_i - q_c)^2 / (2 sigma(t)^2))
        w_i    += h_ci(t) * (x - w_i)

    (Kohonen 2001, eq. 3.2-3.4, Gaussian neighbourhood; the separable product and the
    order of operations are MiniSom's). Factors and weights ``h`` below ``_H_MIN`` are
    taken as 0 and their units skipped. Returns the number of updates made.
    """
    n_units = W.shape[0]
    ax = np.empty(rows)
    ay = np.empty(cols)
    for s in range(order.shape[0]):
        x = X[order[s]]
        best = 0
        best_d = np.inf
        for u in range(n_units):
            d = _sq_dist(x, W[u])
            if d < best_d:
                best_d = d
                best = u
        t = t0 + s
        eta = _decay(lr0, lr_end, t, T, kind)
        sig = _decay(sigma0, sigma_end, t, T, kind)
        denom = 2.0 * sig * sig
        br = best // cols
        bc = best - br * cols
        for r in range(rows):
            dr = r - br
            ax[r] = np.exp(-(dr * dr) / denom)
            if ax[r] < _H_MIN:
                ax[r] = 0.0
        for c in range(cols):
            dc = c - bc
            ay[c] = np.exp(-(dc * dc) / denom)
            if ay[c] < _H_MIN:
                ay[c] = 0.0
        for r in range(rows):
            if ax[r] * eta < _H_MIN:
                continue
            for c in range(cols):
                h = ax[r] * ay[c] * eta
                if h >= _H_MIN:
                    w = W[r * cols + c]
                    for f in range(w.shape[0]):
                        w[f] += h * (x[f] - w[f])
    return order.shape[0]


# ------------------------------------------------------------------- estimator


class SOM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Kohonen self-organizing map on a rectangular grid, Gaussian neighbourhood.

    Parameters
    ----------
    rows, cols : int, default=10
        Grid size; the map has ``rows * cols`` units. Unit ``(r, c)`` has flat index
        ``r * cols + c`` (row-major), in :meth:`winners`, :meth:`transform` and
        ``weights_.reshape(-1, n_features)``.
    sigma : float, default=1.0
        Initial neighbourhood radius ``sigma(0)``, in grid steps (MiniSom's default).
        For a globally ordered map start wider, e.g. ``max(rows, cols) / 4``.
    learning_rate : float, default=0.5
        Initial learning rate ``eta(0)``, in (0, 1] (MiniSom's default). Online mode
        only: the Batch Map has no learning rate.
    decay : {"asymptotic", "exponential", "linear"}, default="asymptotic"
        Schedule of both ``eta(t)`` and ``sigma(t)`` over the step count ``t``
        (samples in online mode, epochs in batch mode), planned over ``T`` steps
        (see ``decay_steps``). With ``x`` either hyperparameter:

        - ``"asymptotic"``: ``x(t) = x(0) / (1 + t / (T / 2))``, MiniSom's default
          ``asymptotic_decay``; ``x(T) = x(0) / 3``, and it keeps decaying for ``t > T``.
        - ``"exponential"``: ``x(t) = x(0) * (x_end / x(0)) ** (t / T)``, then ``x_end``.
        - ``"linear"``: ``x(t) = x(0) + (x_end - x(0)) * t / T``, then ``x_end``.
          ``learning_rate_end=0`` and ``sigma_end=1`` give MiniSom's
          ``linear_decay_to_zero`` / ``linear_decay_to_one``.
    sigma_end : float, default=1.0
        Final radius of the exponential and linear schedules; ``0 < sigma_end <= sigma``.
    learning_rate_end : float, default=0.01
        Final learning rate of the exponential (``> 0``) and linear (``>= 0``)
        schedules; at most ``learning_rate``.
    n_iterations : int, default=None
        Length of :meth:`fit`: the number of samples drawn from ``X`` in online mode
        (each sample ``n_iterations // n_samples`` or one more times, in random
        order, as MiniSom's ``train_random``), the number of epochs in batch mode.
        ``None``: ``500 * rows * cols`` samples online (Kohonen 2001, section 3.8:
        "at least 500 times the number of network units"), 20 epochs in batch mode.
    decay_steps : int, default=None
        ``T``, the length over which the schedules are planned. ``None``: the
        (resolved) ``n_iterations``. Set it to the expected stream length when
        training with :meth:`partial_fit` only.
    init : {"random", "sample", "pca"} or array-like, default="random"
        Initial weights, made at the first :meth:`fit` / :meth:`partial_fit`:

        - ``"random"``: ``rs.rand(rows, cols, n_features) * 2 - 1`` with
          ``rs = check_random_state(random_state)``, each unit normalised to unit
          length: MiniSom's initialisation, bit for bit with the same integer seed.
        - ``"sample"``: ``rows * cols`` samples of the (first) block, drawn without
          replacement (with replacement if the block is smaller than the map).
        - ``"pca"``: the grid spans the plane of the first two principal components
          of the (first) block, centred at its mean, ``r`` along the first and ``c``
          along the second, from ``-1`` to ``+1`` standard deviation of each
          (Kohonen 2001, section 3.7, linear initialisation).
        - an array of shape ``(rows, cols, n_features)`` or ``(rows * cols,
          n_features)``: these weights (copied).
    mode : {"online", "batch"}, default="online"
        Training algorithm, see the module docstring.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and :meth:`fit`'s sample order.

    Attributes
    ----------
    weights_ : ndarray of shape (rows, cols, n_features_in_)
        Unit weight vectors (float64), laid out as MiniSom's ``get_weights()``.
    n_features_in_ : int
        Number of input features, fixed by the first fit.
    n_iter_ : int
        Schedule position ``t``: updates made in online mode (samples), epochs in
        batch mode, since the last :meth:`fit` (or the first :meth:`partial_fit`).
    n_samples_seen_ : int
        Samples used in training (an online :meth:`fit` counts the draws).

    Notes
    -----
    *Online* (Kohonen 2001, eq. 3.2-3.4): for each sample ``x(t)``, the best-matching
    unit is ``c = argmin_i ||x(t) - w_i||`` and every unit moves by
    ``w_i += eta(t) h_ci(t) (x(t) - w_i)`` with the Gaussian neighbourhood
    ``h_ci(t) = exp(-||r_c - r_i||^2 / (2 sigma(t)^2))`` of the grid positions ``r``.
    The loop over samples runs in one compiled numba function (serial: each update
    depends on the previous one). :meth:`partial_fit` applies it to a block in the
    order given, continuing the schedule where the previous block left it, so a
    stream fed in blocks gives exactly the weights of one :meth:`partial_fit` on
    the concatenation (when the initialisation does not depend on the data:
    ``init="random"`` or an array).

    *Batch Map* (Kohonen 2001, section 3.14, eq. 3.29): each epoch assigns every
    sample to its best-matching unit under the current weights, then sets
    ``w_i = sum_j h_{c(j) i} x_j / sum_j h_{c(j) i}`` with ``sigma(t)`` at the epoch
    index ``t``. The distances use ``||x||^2 - 2 x.w + ||w||^2`` (one GEMM per block
    of samples) and the neighbourhood sums are two small matrix products with the
    separable row and column kernels. A unit whose weight sum underflows to zero
    keeps its weights.

    ``quantization_error`` is the mean distance of the samples to their
    best-matching unit; ``topographic_error`` the fraction of samples whose best and
    second-best units are not adjacent on the grid, adjacency meaning the 8-
    neighbourhood (Chebyshev distance 1, diagonals included), which is what
    MiniSom 2.3.6 computes for a rectangular grid (grid distance ``> 1.42`` counts
    as an error). Both as MiniSom defines them (Kiviluoto 1996 for the latter).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).uniform(size=(2000, 2))
    >>> som = SOM(8, 8, sigma=3.0, learning_rate=0.5, n_iterations=10_000,
    ...           random_state=0).fit(X)
    >>> som.weights_.shape, som.transform(X[:3]).shape
    ((8, 8, 2), (3, 64))
    >>> bool(som.topographic_error(X) < 0.1)
    True
    """

    def __init__(
        self,
        rows: int = 10,
        cols: int = 10,
        *,
        sigma: float = 1.0,
        learning_rate: float = 0.5,
        decay: str = "asymptotic",
        sigma_end: float = 1.0,
        learning_rate_end: float = 0.01,
        n_iterations: int | None = None,
        decay_steps: int | None = None,
        init: Any = "random",
        mode: str = "online",
        random_state: Any = None,
    ) -> None:
        self.rows = rows
        self.cols = cols
        self.sigma = sigma
        self.learning_rate = learning_rate
        self.decay = decay
        self.sigma_end = sigma_end
        self.learning_rate_end = learning_rate_end
        self.n_iterations = n_iterations
        self.decay_steps = decay_steps
        self.init = init
        self.mode = mode
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None) -> SOM:
        """Forget any previous training and train on ``X``.

        Online mode: ``n_iterations`` samples drawn from ``X`` as MiniSom's
        ``train_random`` draws them (``np.arange(n_iterations) % n_samples``,
        shuffled by the random state). Batch mode: ``n_iterations`` epochs on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (converted to float64; must be finite).
        y : ignored

        Returns
        -------
        self : SOM
        """
        hp = self._check_hyperparameters()
        X = self._validate_X(X, reset=True)
        self._reset()
        rng = check_random_state(self.random_state)
        self._initialise(X, rng)
        n_iter = self._resolved_n_iterations(hp["mode"])
        if hp["mode"] == "online":
            order = np.arange(n_iter, dtype=np.int64) % X.shape[0]
            rng.shuffle(order)
            self._online(X, order, hp)
        else:
            for _ in range(n_iter):
                self._batch_epoch(X, hp)
        return self

    def partial_fit(self, X: Any, y: Any = None) -> SOM:
        """Train on one block, continuing the schedule.

        Online mode: one sequential pass over the block in the order given. Batch
        mode: one Batch Map epoch on the block. The first call initialises the
        weights (from this block for ``init="sample"`` / ``"pca"``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The block.
        y : ignored

        Returns
        -------
        self : SOM

        Raises
        ------
        ValueError
            If the block's width differs from the fitted one, or a hyperparameter
            is invalid, or the mode changed since training started.
        """
        hp = self._check_hyperparameters()
        started = self._is_started()
        X = self._validate_X(X, reset=not started)
        if not started:
            self._initialise(X, check_random_state(self.random_state))
        elif self._fitted_mode != hp["mode"]:
            raise ValueError(
                f"SOM was trained in mode {self._fitted_mode!r}; cannot continue in mode "
                f"{hp['mode']!r} (call fit to start over)."
            )
        if hp["mode"] == "online":
            self._online(X, np.arange(X.shape[0], dtype=np.int64), hp)
        else:
            self._batch_epoch(X, hp)
        return self

    def schedule(self, t: float) -> tuple[float, float]:
        """Learning rate and neighbourhood radius at step ``t`` of the current schedule.

        Parameters
        ----------
        t : float
            Step: samples seen (online) or epochs done (batch).

        Returns
        -------
        learning_rate, sigma : float
        """
        hp = self._check_hyperparameters()
        T = float(self._resolved_decay_steps(hp["mode"]))
        kind = _DECAY_CODE[hp["decay"]]
        return (
            float(_decay(hp["learning_rate"], hp["learning_rate_end"], float(t), T, kind)),
            float(_decay(hp["sigma"], hp["sigma_end"], float(t), T, kind)),
        )

    # -------------------------------------------------------------- inspection

    def winners(self, X: Any) -> np.ndarray:
        """Flat index ``r * cols + c`` of each sample's best-matching unit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        winners : ndarray of int64, shape (n_samples,)
        """
        X = self._check_predict_X(X)
        return self._bmus(X, self._flat_weights())

    def transform(self, X: Any) -> np.ndarray:
        """One-hot winner indicator: row ``j`` has a 1 at the unit that wins sample ``j``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        indicator : ndarray of float32, shape (n_samples, rows * cols)
        """
        bmu = self.winners(X)
        out = np.zeros((bmu.shape[0], self._n_units()), dtype=np.float32)
        out[np.arange(bmu.shape[0]), bmu] = 1.0
        return out

    def quantization_error(self, X: Any) -> float:
        """Mean Euclidean distance from each sample to its best-matching unit's weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        qe : float
        """
        X = self._check_predict_X(X)
        W = self._flat_weights()
        bmu = self._bmus(X, W)
        total = 0.0
        for lo, hi in self._chunks(X.shape[0], X.shape[1]):
            diff = X[lo:hi] - W[bmu[lo:hi]]
            total += float(np.sqrt(np.einsum("ij,ij->i", diff, diff)).sum())
        return total / X.shape[0]

    def topographic_error(self, X: Any) -> float:
        """Fraction of samples whose two best-matching units are not grid neighbours.

        Neighbours are the 8-neighbourhood (Chebyshev grid distance 1), as MiniSom
        2.3.6 on a rectangular grid. ``nan`` (with a warning) for a one-unit map.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        te : float
        """
        X = self._check_predict_X(X)
        n_units = self._n_units()
        if n_units < 2:
            warnings.warn("The topographic error is not defined for a 1-unit map.", stacklevel=2)
            return float("nan")
        W = self._flat_weights()
        w_sq = np.einsum("ij,ij->i", W, W)
        errors = 0
        cols = self.weights_.shape[1]
        for lo, hi in self._chunks(X.shape[0], n_units):
            D = self._partial_sq_dist(X[lo:hi], W, w_sq)
            two = np.argpartition(D, 1, axis=1)[:, :2]
            r, c = np.divmod(two, cols)
            cheb = np.maximum(np.abs(r[:, 0] - r[:, 1]), np.abs(c[:, 0] - c[:, 1]))
            errors += int(np.count_nonzero(cheb > 1))
        return errors / X.shape[0]

    @property
    def _n_features_out(self) -> int:
        """Number of output columns of :meth:`transform` (for ``get_feature_names_out``)."""
        return self._n_units()

    def __sklearn_is_fitted__(self) -> bool:
        """Return whether the weights exist."""
        return self._is_started()

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # transform is float32 whatever the input
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"preserves_dtype": []}

    # ------------------------------------------------------------------ helpers

    def _is_started(self) -> bool:
        return hasattr(self, "weights_")

    def _reset(self) -> None:
        for name in ("weights_", "n_features_in_", "n_iter_", "n_samples_seen_", "_fitted_mode"):
            self.__dict__.pop(name, None)

    def _n_units(self) -> int:
        if self._is_started():
            return self.weights_.shape[0] * self.weights_.shape[1]
        return int(self.rows) * int(self.cols)

    def _flat_weights(self) -> np.ndarray:
        return self.weights_.reshape(-1, self.weights_.shape[2])

    def _resolved_n_iterations(self, mode: str) -> int:
        if self.n_iterations is not None:
            return int(self.n_iterations)
        return 500 * int(self.rows) * int(self.cols) if mode == "online" else 20

    def _resolved_decay_steps(self, mode: str) -> int:
        if self.decay_steps is not None:
            return int(self.decay_steps)
        return self._resolved_n_iterations(mode)

    def _check_hyperparameters(self) -> dict[str, Any]:
        """Validate the hyperparameters; return them as plain Python values."""
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}.")

        def real(name: str, lo: float, lo_open: bool, hi: float | None = None) -> float:
            v = getattr(self, name)
            ok = not isinstance(v, bool) and isinstance(v, numbers.Real) and np.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (hi is None or v <= hi)
            if not ok:
                bound = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
                raise ValueError(f"{name} must be a finite real number {bound}, got {v!r}.")
            return float(v)

        sigma = real("sigma", 0.0, True)
        lr = real("learning_rate", 0.0, True, 1.0)
        if self.decay not in DECAYS:
            raise ValueError(f"decay must be one of {', '.join(map(repr, DECAYS))}; got {self.decay!r}.")
        sigma_end = real("sigma_end", 0.0, True)
        lr_end = real("learning_rate_end", 0.0, self.decay == "exponential", 1.0)
        if self.decay != "asymptotic":
            if sigma_end > sigma:
                raise ValueError(
                    f"sigma_end ({sigma_end!r}) must not exceed sigma ({sigma!r}) with decay={self.decay!r}."
                )
            if lr_end > lr:
                raise ValueError(
                    f"learning_rate_end ({lr_end!r}) must not exceed learning_rate ({lr!r}) "
                    f"with decay={self.decay!r}."
                )
        for name in ("n_iterations", "decay_steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {v!r}.")
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}; got {self.mode!r}.")
        if isinstance(self.init, str) and self.init not in _INITS:
            raise ValueError(
                f"init must be one of {', '.join(map(repr, _INITS))} or an array of weights; got {self.init!r}."
            )
        return dict(sigma=sigma, learning_rate=lr, decay=self.decay, sigma_end=sigma_end,
                    learning_rate_end=lr_end, mode=self.mode)

    def _validate_X(self, X: Any, reset: bool) -> np.ndarray:
        X = check_array(X, dtype=np.float64, order="C")
        if not reset and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"SOM was fitted on {self.n_features_in_} features, got {X.shape[1]} (X has "
                f"{X.shape[1]} features, but SOM is expecting {self.n_features_in_} features as input)."
            )
        return X

    def _check_predict_X(self, X: Any) -> np.ndarray:
        if not self._is_started():
            raise NotFittedError(
                "This SOM instance is not fitted yet; call 'fit' or 'partial_fit' before using it."
            )
        return self._validate_X(X, reset=False)

    def _initialise(self, X: np.ndarray, rng: np.random.RandomState) -> None:
        """Create ``weights_`` from ``init`` (``X`` is the first block) and the counters."""
        rows, cols = int(self.rows), int(self.cols)
        n, nf = X.shape
        init = self.init
        if isinstance(init, str):
            if init == "random":
                W = rng.rand(rows, cols, nf) * 2 - 1
                W /= np.linalg.norm(W, axis=-1, keepdims=True)
            elif init == "sample":
                idx = rng.choice(n, size=rows * cols, replace=n < rows * cols)
                W = X[idx].reshape(rows, cols, nf).copy()
            else:
                W = _pca_grid(X, rows, cols)
        else:
            W = np.array(init, dtype=np.float64, copy=True)
            if W.shape == (rows * cols, nf):
                W = W.reshape(rows, cols, nf)
            if W.ndim != 3 or W.shape[:2] != (rows, cols):
                raise ValueError(
                    f"init weights must have shape ({rows}, {cols}, n_features) or "
                    f"({rows * cols}, n_features); got {W.shape}."
                )
            if W.shape[2] != nf:
                raise ValueError(f"init weights have {W.shape[2]} features, X has {nf}.")
            if not np.all(np.isfinite(W)):
                raise ValueError("init weights must be finite.")
        self.weights_ = np.ascontiguousarray(W)
        self.n_features_in_ = nf
        self.n_iter_ = 0
        self.n_samples_seen_ = 0
        self._fitted_mode = self.mode

    def _online(self, X: np.ndarray, order: np.ndarray, hp: dict[str, Any]) -> None:
        W = self._flat_weights()  # a view: the kernel updates weights_ in place
        T = float(self._resolved_decay_steps("online"))
        _online_updates(
            X, order, W, int(self.rows), int(self.cols), float(self.n_iter_), T,
            hp["learning_rate"], hp["learning_rate_end"], hp["sigma"], hp["sigma_end"],
            _DECAY_CODE[hp["decay"]],
        )
        self.n_iter_ += int(order.shape[0])
        self.n_samples_seen_ += int(order.shape[0])

    def _batch_epoch(self, X: np.ndarray, hp: dict[str, Any]) -> None:
        """One Batch Map epoch (Kohonen 2001, eq. 3.29) on ``X``."""
        rows, cols, nf = self.weights_.shape
        n_units = rows * cols
        T = float(self._resolved_decay_steps("batch"))
        sig = float(_decay(hp["sigma"], hp["sigma_end"], float(self.n_iter_), T, _DECAY_CODE[hp["decay"]]))
        bmu = self._bmus(X, self._flat_weights())
        n = X.shape[0]
        # per-unit sums and counts of the samples each unit wins
        assign = scipy.sparse.csr_matrix(
            (np.ones(n), (bmu, np.arange(n))), shape=(n_units, n)
        )
        sums = np.asarray(assign @ X).reshape(rows, cols, nf)
        counts = np.bincount(bmu, minlength=n_units).astype(np.float64).reshape(rows, cols)
        # separable Gaussian neighbourhood: H[(r,c),(r',c')] = Hr[r,r'] * Hc[c,c']
        denom = 2.0 * sig * sig
        dr = np.arange(rows, dtype=np.float64)
        dc = np.arange(cols, dtype=np.float64)
        Hr = np.exp(-((dr[:, None] - dr[None, :]) ** 2) / denom)
        Hc = np.exp(-((dc[:, None] - dc[None, :]) ** 2) / denom)
        num = (Hr @ sums.reshape(rows, cols * nf)).reshape(rows, cols, nf)
        num = np.matmul(Hc, num)  # (cols, cols) @ (rows, cols, nf), broadcast over rows
        den = Hr @ counts @ Hc.T
        ok = den > 0
        self.weights_[ok] = num[ok] / den[ok][:, None]
        self.n_iter_ += 1
        self.n_samples_seen_ += n

    @staticmethod
    def _chunks(n: int, width: int) -> list[tuple[int, int]]:
        step = max(1, _CHUNK_BYTES // (8 * max(width, 1)))
        return [(lo, min(lo + step, n)) for lo in range(0, n, step)]

    @staticmethod
    def _partial_sq_dist(X: np.ndarray, W: np.ndarray, w_sq: np.ndarray) -> np.ndarray:
        """``||w||^2 - 2 x.w``: the squared distance less the per-sample ``||x||^2``."""
        D = X @ W.T
        D *= -2.0
        D += w_sq[None, :]
        return D

    def _bmus(self, X: np.ndarray, W: np.ndarray) -> np.ndarray:
        w_sq = np.einsum("ij,ij->i", W, W)
        out = np.empty(X.shape[0], dtype=np.int64)
        for lo, hi in self._chunks(X.shape[0], W.shape[0]):
            out[lo:hi] = np.argmin(self._partial_sq_dist(X[lo:hi], W, w_sq), axis=1)
        return out


def _pca_grid(X: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Weights on the plane of the first two principal components (Kohonen 2001, 3.7)."""
    n, nf = X.shape
    mean = X.mean(axis=0)
    if n < 2:
        return np.broadcast_to(mean, (rows, cols, nf)).copy()
    cov = np.atleast_2d(np.cov(X, rowvar=False))
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    axes = []
    for k in range(2):
        if k < nf:
            v = evecs[:, order[k]]
            v = v * np.sign(v[np.argmax(np.abs(v))])  # deterministic sign
            axes.append(v * np.sqrt(max(evals[order[k]], 0.0)))
        else:
            axes.append(np.zeros(nf))
    a = np.linspace(-1.0, 1.0, rows) if rows > 1 else np.zeros(1)
    b = np.linspace(-1.0, 1.0, cols) if cols > 1 else np.zeros(1)
    return mean + a[:, None, None] * axes[0] + b[None, :, None] * axes[1]
