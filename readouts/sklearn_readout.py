"""A readout wrapping any scikit-learn regressor or classifier.

:class:`SklearnReadout` gives every scikit-learn estimator the block-wise
``partial_fit`` interface that live trainers use. Estimators that learn
incrementally (``SGDRegressor``, ``SGDClassifier``, ``MLPRegressor``,
``PassiveAggressiveClassifier``, ...) receive each block through their own
``partial_fit``; the others keep every block seen and are refit from scratch (on a
fresh :func:`sklearn.base.clone`) when a prediction needs the new data, or every
``refit_every`` samples.

The module is named ``sklearn_readout`` so that it does not shadow the
``sklearn`` package inside ``labbench.readouts``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.utils.metaestimators import available_if

__all__ = ["SklearnReadout"]


def _estimator_has(attr: str):
    """Return a check that the wrapped (or fitted) estimator provides ``attr``."""

    def check(self: SklearnReadout) -> bool:
        target = getattr(self, "estimator_", None)
        if target is None:
            target = self._template()
        return hasattr(target, attr)

    return check


class SklearnReadout(BaseEstimator):
    """Block-wise readout around any scikit-learn regressor or classifier.

    Parameters
    ----------
    estimator : estimator instance, default=None
        Unfitted scikit-learn estimator to wrap; ``None`` means
        ``sklearn.linear_model.Ridge()``. It is never modified: a
        :func:`~sklearn.base.clone` of it is fitted and exposed as ``estimator_``.
    refit_every : int, default=None
        Only for estimators without ``partial_fit``. ``None``: refit lazily, when
        :meth:`predict` (or :meth:`score`, ...) is called after new data arrived.
        An integer ``k``: refit eagerly inside :meth:`partial_fit` as soon as at
        least ``k`` samples arrived since the last refit, and let :meth:`predict`
        use the last fitted model (it refits only if nothing has been fitted yet).
    classes : array-like, default=None
        All class labels, passed as ``classes=`` to the first ``partial_fit`` of an
        incremental classifier (required by scikit-learn there, since the first
        block rarely holds every class). Ignored otherwise.

    Attributes
    ----------
    estimator_ : estimator instance
        The fitted clone of ``estimator``.
    n_samples_seen_ : int
        Number of samples received since the last :meth:`fit`.
    n_features_in_ : int
        Number of features, fixed by the first block.
    n_refits_ : int
        Number of times ``estimator_`` was refit from the buffer (0 for
        incremental estimators).

    Notes
    -----
    Targets of shape ``(n_samples, 1)`` are raveled before they reach the
    estimator (so scikit-learn emits no ``DataConversionWarning``), and
    :meth:`predict` then returns shape ``(n_samples, 1)`` again: the shape of the
    training targets is the shape of the predictions.

    Buffered blocks are copied, so callers may reuse their arrays; they are
    concatenated lazily, once per refit.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.svm import SVR
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 2))
    >>> readout = SklearnReadout(SVR(C=10.0))
    >>> for block in np.array_split(np.arange(60), 3):
    ...     readout = readout.partial_fit(X[block], X[block, 0])
    >>> readout.predict(X[:2]).shape
    (2,)
    """

    def __init__(
        self,
        estimator: Any = None,
        refit_every: int | None = None,
        classes: Any = None,
    ) -> None:
        self.estimator = estimator
        self.refit_every = refit_every
        self.classes = classes

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any, **fit_params: Any) -> SklearnReadout:
        """Forget everything seen so far and fit a clone of the estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        **fit_params : dict
            Passed to the estimator's ``fit``.

        Returns
        -------
        self : SklearnReadout
            The fitted readout.
        """
        self._reset()
        X, y = self._validate_block(X, y)
        estimator = clone(self._template()).fit(X, self._to_estimator_y(y), **fit_params)
        self.estimator_ = estimator
        self.n_features_in_ = X.shape[1]
        self.n_samples_seen_ = X.shape[0]
        self._y_single_column = _is_single_column(y)
        self._X_blocks, self._y_blocks = ([], []) if self._incremental() else ([X], [y])
        self._n_pending = 0
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> SklearnReadout:
        """Learn from one more block.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of the block.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets of the block.
        classes : array-like, default=None
            Class labels for the first call of an incremental classifier; overrides
            the ``classes`` hyperparameter.

        Returns
        -------
        self : SklearnReadout
            The readout, with the block learnt (or buffered).
        """
        refit_every = self._check_refit_every()
        X, y = self._validate_block(X, y)
        first = not hasattr(self, "n_samples_seen_")

        if self._incremental():
            # Only commit state once the estimator accepted the block, so a failed
            # first call (e.g. a classifier given no classes) can be retried.
            est = getattr(self, "estimator_", None)
            kwargs: dict[str, Any] = {}
            if est is None:
                est = clone(self._template())
                classes = self.classes if classes is None else classes
                if classes is not None and _is_classifier(est):
                    kwargs["classes"] = np.asarray(classes)
            est.partial_fit(X, self._to_estimator_y(y), **kwargs)
            self.estimator_ = est
        elif not first and self._y_blocks and y.shape[1:] != self._y_blocks[0].shape[1:]:
            raise ValueError(
                f"y has shape {y.shape[1:]} per sample, but earlier blocks had "
                f"{self._y_blocks[0].shape[1:]}."
            )

        if first:
            self.n_features_in_ = X.shape[1]
            self._y_single_column = _is_single_column(y)
            self.n_samples_seen_ = 0
            self.n_refits_ = 0
            self._n_pending = 0
            self._X_blocks, self._y_blocks = [], []
        self.n_samples_seen_ += X.shape[0]
        if self._incremental():
            return self

        self._X_blocks.append(X)
        self._y_blocks.append(y)
        self._n_pending += X.shape[0]
        if refit_every is not None and self._n_pending >= refit_every:
            self.refit()
        return self

    def refit(self) -> SklearnReadout:
        """Refit a fresh clone of the estimator on every sample seen so far.

        A no-op for incremental estimators, which are always up to date.

        Returns
        -------
        self : SklearnReadout
            The readout.
        """
        self._check_started()
        if self._incremental():
            return self
        if len(self._X_blocks) > 1:
            self._X_blocks = [np.concatenate(self._X_blocks, axis=0)]
            self._y_blocks = [np.concatenate(self._y_blocks, axis=0)]
        X, y = self._X_blocks[0], self._y_blocks[0]
        self.estimator_ = clone(self._template()).fit(X, self._to_estimator_y(y))
        self.n_refits_ = getattr(self, "n_refits_", 0) + 1
        self._n_pending = 0
        return self

    # --------------------------------------------------------------- prediction

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the up-to-date estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions, shaped like the training targets.
        """
        est = self._fitted()
        y_pred = np.asarray(est.predict(self._validate_X(X)))
        if self._y_single_column and y_pred.ndim == 1:
            y_pred = y_pred.reshape(-1, 1)
        return y_pred

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from the up-to-date estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            As returned by the estimator's ``predict_proba``.
        """
        return self._fitted().predict_proba(self._validate_X(X))

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Decision function of the up-to-date estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.

        Returns
        -------
        scores : ndarray
            As returned by the estimator's ``decision_function``.
        """
        return self._fitted().decision_function(self._validate_X(X))

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Score of the up-to-date estimator (R^2 or accuracy, as it defines).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            The estimator's ``score``.
        """
        est = self._fitted()
        X, y = self._validate_block(X, y)
        return float(est.score(X, self._to_estimator_y(y), sample_weight=sample_weight))

    @property
    def classes_(self) -> np.ndarray:
        """Class labels of the fitted classifier."""
        return self._fitted().classes_

    def __sklearn_is_fitted__(self) -> bool:
        """Return whether any data has been received."""
        return hasattr(self, "n_samples_seen_")

    def __sklearn_tags__(self):  # noqa: D105 - sklearn >= 1.6 tag protocol
        from sklearn.utils import get_tags

        tags = super().__sklearn_tags__()
        inner = get_tags(self._template())
        tags.estimator_type = inner.estimator_type
        tags.target_tags = copy.deepcopy(inner.target_tags)
        tags.classifier_tags = copy.deepcopy(inner.classifier_tags)
        tags.regressor_tags = copy.deepcopy(inner.regressor_tags)
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        return tags

    @property
    def _estimator_type(self) -> str | None:
        # scikit-learn < 1.6 reads this instead of tags.
        return getattr(self._template(), "_estimator_type", None)

    # ------------------------------------------------------------------ helpers

    def _check_refit_every(self) -> int | None:
        k = self.refit_every
        if k is None:
            return None
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"refit_every must be a positive integer or None, got {k!r}.")
        return int(k)

    def _template(self) -> Any:
        return Ridge() if self.estimator is None else self.estimator

    def _incremental(self) -> bool:
        return hasattr(self._template(), "partial_fit")

    def _reset(self) -> None:
        for name in (
            "estimator_",
            "n_samples_seen_",
            "n_features_in_",
            "n_refits_",
            "_X_blocks",
            "_y_blocks",
            "_n_pending",
            "_y_single_column",
        ):
            self.__dict__.pop(name, None)
        self.n_refits_ = 0

    def _check_started(self) -> None:
        if not hasattr(self, "n_samples_seen_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance has seen no data yet; call "
                "'fit' or 'partial_fit' before using it."
            )

    def _fitted(self) -> Any:
        """Return ``estimator_``, refitting first if the buffer requires it."""
        self._check_started()
        if not self._incremental() and self._n_pending and (
            self.refit_every is None or not hasattr(self, "estimator_")
        ):
            self.refit()
        return self.estimator_

    def _validate_X(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(
                f"Expected a 2-D array (n_samples, n_features), got shape {X.shape}; "
                "reshape a single feature with X.reshape(-1, 1)."
            )
        n_expected = getattr(self, "n_features_in_", None)
        if n_expected is not None and X.shape[1] != n_expected:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_expected} features as input."
            )
        return X

    def _validate_block(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = self._validate_X(np.array(X))  # a copy: buffered blocks must not alias the caller's
        y = np.array(y)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got an array of shape {y.shape}.")
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y have inconsistent numbers of samples: {X.shape[0]} != {y.shape[0]}."
            )
        return X, y

    @staticmethod
    def _to_estimator_y(y: np.ndarray) -> np.ndarray:
        """Ravel single-column targets, which scikit-learn wants 1-D."""
        return y.ravel() if _is_single_column(y) else y


def _is_single_column(y: np.ndarray) -> bool:
    return y.ndim == 2 and y.shape[1] == 1


def _is_classifier(estimator: Any) -> bool:
    from sklearn.base import is_classifier

    return bool(is_classifier(estimator))
