"""Exact incremental ridge regression.

:class:`IncrementalRidge` learns a linear readout block by block. Each call to
:meth:`IncrementalRidge.partial_fit` reduces its block to sufficient statistics
(sample count, means, centred co-moment matrices) in float64 and merges them into
the running ones with the pairwise update of Chan, Golub & LeVeque (1979). The
weights are solved only when they are needed, and they equal those of a batch
:class:`sklearn.linear_model.Ridge` fit on all the data seen, whatever the block
split.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_array

__all__ = ["IncrementalRidge"]


class IncrementalRidge(RegressorMixin, BaseEstimator):
    """Ridge regression learned exactly from a stream of blocks.

    Minimises ``||y - X w - b||^2 + alpha ||w||^2`` over all samples seen so far,
    with the intercept ``b`` not penalised: the solution is that of
    ``sklearn.linear_model.Ridge(alpha=alpha, fit_intercept=fit_intercept)`` fit on
    the concatenation of every block, to rounding.

    Statistics are accumulated in float64 whatever the input dtype. Per block the
    cost is one ``X_c^T X_c`` and one ``X_c^T y_c`` product (BLAS) on the centred
    block; nothing is done per sample. Memory is ``O(n_features^2)``, independent
    of the number of samples.

    Parameters
    ----------
    alpha : float, default=1e-6
        Non-negative L2 penalty on the weights (not on the intercept). It is read
        when the weights are solved, so it may be changed with ``set_params``
        after fitting to re-solve from the same statistics without new data.
    fit_intercept : bool, default=True
        Whether to fit an unpenalised intercept. Also read at solve time.

    Attributes
    ----------
    n_samples_seen_ : int
        Number of samples accumulated.
    n_features_in_ : int
        Number of features, fixed by the first block.
    n_outputs_ : int
        Number of targets, fixed by the first block.
    X_mean_ : ndarray of shape (n_features_in_,)
        Running mean of ``X`` (float64).
    y_mean_ : ndarray of shape (n_outputs_,)
        Running mean of ``y`` (float64).
    comoment_XX_ : ndarray of shape (n_features_in_, n_features_in_)
        Centred co-moment ``sum_i (x_i - mean_X)(x_i - mean_X)^T`` (float64).
    comoment_Xy_ : ndarray of shape (n_features_in_, n_outputs_)
        Centred co-moment ``sum_i (x_i - mean_X)(y_i - mean_y)^T`` (float64).
    coef_ : ndarray of shape (n_outputs_, n_features_in_) or (n_features_in_,)
        Weights, solved lazily and cached until the next ``partial_fit`` (or a
        change of ``alpha`` / ``fit_intercept``). 1-D when the targets given to the
        first block were 1-D, as in scikit-learn.
    intercept_ : ndarray of shape (n_outputs_,) or float
        Intercept (``0.0`` when ``fit_intercept=False``).

    Notes
    -----
    Merging block statistics ``a`` and ``b`` (Chan, Golub & LeVeque 1979)::

        n     = n_a + n_b
        d     = mean_b - mean_a
        mean  = mean_a + d * n_b / n
        C     = C_a + C_b + outer(d_X, d_y) * n_a * n_b / n

    Because only centred quantities are ever summed, there is no catastrophic
    cancellation when the features have a large mean compared to their spread.

    The weights solve ``(C_XX + alpha I) w = C_Xy`` with
    ``scipy.linalg.solve(..., assume_a="pos")``, falling back to
    ``scipy.linalg.lstsq`` when the system is singular (e.g. ``alpha=0`` with
    collinear features); the intercept is ``mean_y - mean_X @ w``. Without an
    intercept the uncentred moments ``C + n * outer(mean, mean)`` are used.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, w = rng.normal(size=(100, 3)), np.array([1.0, -2.0, 0.5])
    >>> model = IncrementalRidge(alpha=1e-8)
    >>> for block in np.array_split(np.arange(100), 7):
    ...     model = model.partial_fit(X[block], X[block] @ w + 3.0)
    >>> np.round(model.coef_, 6).tolist(), round(float(model.intercept_), 6)
    ([1.0, -2.0, 0.5], 3.0)
    """

    def __init__(self, alpha: float = 1e-6, fit_intercept: bool = True) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any) -> IncrementalRidge:
        """Forget everything seen so far and fit on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self : IncrementalRidge
            The fitted estimator.
        """
        self._reset()
        return self.partial_fit(X, y)

    def partial_fit(self, X: Any, y: Any) -> IncrementalRidge:
        """Accumulate one block of samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of the block (any real dtype; converted to float64). A block
            may hold a single row.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets of the block.

        Returns
        -------
        self : IncrementalRidge
            The estimator, with the block merged in.

        Raises
        ------
        ValueError
            If the block's number of features or of outputs differs from the
            first block's, if ``X`` and ``y`` have different lengths, or if they
            hold non-finite values.
        """
        Xb, Yb, y_was_1d = self._validate_block(X, y)
        n_b = Xb.shape[0]
        mean_Xb = Xb.mean(axis=0)
        mean_yb = Yb.mean(axis=0)
        Xc = Xb - mean_Xb
        Yc = Yb - mean_yb
        C_XXb = Xc.T @ Xc
        C_Xyb = Xc.T @ Yc

        if not self._is_started():
            self.n_features_in_ = Xb.shape[1]
            self.n_outputs_ = Yb.shape[1]
            self._y_was_1d = y_was_1d
            self.n_samples_seen_ = n_b
            self.X_mean_ = mean_Xb
            self.y_mean_ = mean_yb
            self.comoment_XX_ = C_XXb
            self.comoment_Xy_ = C_Xyb
        else:
            n_a = self.n_samples_seen_
            n = n_a + n_b
            d_X = mean_Xb - self.X_mean_
            d_y = mean_yb - self.y_mean_
            w = n_a * n_b / n
            self.comoment_XX_ += C_XXb
            self.comoment_XX_ += w * np.outer(d_X, d_X)
            self.comoment_Xy_ += C_Xyb
            self.comoment_Xy_ += w * np.outer(d_X, d_y)
            self.X_mean_ += d_X * (n_b / n)
            self.y_mean_ += d_y * (n_b / n)
            self.n_samples_seen_ = n
        self._solution = None
        return self

    # --------------------------------------------------------------- prediction

    def predict(self, X: Any) -> np.ndarray:
        """Predict targets for ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions in float64, 1-D when the training targets were 1-D.
        """
        coef, intercept = self._solve()
        X = check_array(X, dtype=np.float64)
        self._check_n_features(X.shape[1])
        return X @ coef.T + intercept

    @property
    def coef_(self) -> np.ndarray:
        """Weights, shape (n_outputs_, n_features_in_), or (n_features_in_,)."""
        return self._solve()[0]

    @property
    def intercept_(self) -> np.ndarray | float:
        """Intercept, shape (n_outputs_,), or a float for 1-D targets."""
        return self._solve()[1]

    def __sklearn_is_fitted__(self) -> bool:
        """Return whether at least one block has been accumulated."""
        return self._is_started()

    # ------------------------------------------------------------------ helpers

    def _is_started(self) -> bool:
        return getattr(self, "n_samples_seen_", 0) > 0

    def _reset(self) -> None:
        for name in (
            "n_samples_seen_",
            "n_features_in_",
            "n_outputs_",
            "X_mean_",
            "y_mean_",
            "comoment_XX_",
            "comoment_Xy_",
            "_y_was_1d",
            "_solution",
        ):
            self.__dict__.pop(name, None)

    def _check_n_features(self, n_given: int) -> None:
        if n_given != self.n_features_in_:
            raise ValueError(
                f"X has {n_given} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def _validate_block(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        X = check_array(X, dtype=np.float64)
        y_arr = np.asarray(y)
        if y_arr.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y_arr.shape}.")
        y_was_1d = y_arr.ndim == 1
        Y = check_array(y_arr.reshape(-1, 1) if y_was_1d else y_arr, dtype=np.float64)
        if X.shape[0] != Y.shape[0]:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {X.shape[0]} != {Y.shape[0]}."
            )
        if self._is_started():
            self._check_n_features(X.shape[1])
            if Y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"y has {Y.shape[1]} outputs, but {type(self).__name__} is "
                    f"expecting {self.n_outputs_} outputs."
                )
        return X, Y, y_was_1d

    def _check_hyperparameters(self) -> tuple[float, bool]:
        alpha = self.alpha
        if (
            isinstance(alpha, bool)
            or not isinstance(alpha, numbers.Real)
            or not np.isfinite(alpha)
            or alpha < 0
        ):
            raise ValueError(f"alpha must be a finite real number >= 0, got {alpha!r}.")
        return float(alpha), bool(self.fit_intercept)

    def _solve(self) -> tuple[np.ndarray, np.ndarray | float]:
        """Solve (or return the cached) weights and intercept.

        Returns
        -------
        coef : ndarray
            Weights shaped as ``coef_``.
        intercept : ndarray or float
            Intercept shaped as ``intercept_``.
        """
        if not self._is_started():
            raise NotFittedError(
                f"This {type(self).__name__} instance has seen no data yet; call "
                "'fit' or 'partial_fit' before using it."
            )
        alpha, fit_intercept = self._check_hyperparameters()
        key = (alpha, fit_intercept)
        cached = getattr(self, "_solution", None)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]

        if fit_intercept:
            A = self.comoment_XX_.copy()
            B = self.comoment_Xy_
        else:
            n = self.n_samples_seen_
            A = self.comoment_XX_ + n * np.outer(self.X_mean_, self.X_mean_)
            B = self.comoment_Xy_ + n * np.outer(self.X_mean_, self.y_mean_)
        A.flat[:: A.shape[0] + 1] += alpha
        W = _solve_spd(A, B)  # (n_features, n_outputs)
        coef = np.ascontiguousarray(W.T)
        if fit_intercept:
            intercept = self.y_mean_ - self.X_mean_ @ W
        else:
            intercept = np.zeros(self.n_outputs_)
        if self._y_was_1d:
            coef_out: np.ndarray = coef[0]
            intercept_out: np.ndarray | float = float(intercept[0])
        else:
            coef_out, intercept_out = coef, intercept
        self._solution = (key, coef_out, intercept_out)
        return coef_out, intercept_out


def _solve_spd(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``A X = B`` for a symmetric positive semi-definite ``A``.

    Parameters
    ----------
    A : ndarray of shape (n, n)
        Symmetric positive (semi-)definite matrix; not modified.
    B : ndarray of shape (n, k)
        Right-hand sides.

    Returns
    -------
    X : ndarray of shape (n, k)
        Cholesky solution, or the minimum-norm least-squares solution when ``A``
        is singular.
    """
    try:
        return scipy.linalg.solve(A, B, assume_a="pos", check_finite=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.lstsq(A, B, check_finite=False)[0]
