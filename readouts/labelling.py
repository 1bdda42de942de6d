"""Classification by unit labelling and voting (Diehl & Cook 2015).

An unsupervised layer (STDP neurons, SOM units) is turned into a classifier without
training any weights on labels: each unit is *assigned* the class for which its average
response over the training samples is highest, and a new sample is classified by the
class whose assigned units respond most on average.

Reference: P. U. Diehl and M. Cook, "Unsupervised learning of digit recognition using
spike-timing-dependent plasticity", Front. Comput. Neurosci. 9:99 (2015), section 2.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

__all__ = ["VoteClassifier"]


class VoteClassifier(ClassifierMixin, BaseEstimator):
    """Label each unit with the class it answers most; predict by the labelled units' vote.

    Parameters
    ----------
    classes : array-like, default=None
        Every class label. If omitted, the classes are the ones seen by the first call
        to :meth:`fit`/:meth:`partial_fit` and later blocks may not add new ones.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
    class_response_ : ndarray, shape (n_classes, n_units)
        Summed response of each unit to the training samples of each class.
    class_count_ : ndarray, shape (n_classes,)
        Number of training samples of each class.
    assignments_ : ndarray of int, shape (n_units,)
        Index into ``classes_`` of each unit's label; ``-1`` for a unit that never
        responded (it takes no part in the vote).
    n_features_in_ : int
        Number of units.

    Notes
    -----
    ``partial_fit`` only accumulates sums, so learning from blocks equals learning from
    everything at once. Responses are any non-negative activity: spike counts, rates,
    or one-hot winner indicators of a SOM.
    """

    def __init__(self, classes: Any = None) -> None:
        self.classes = classes

    def fit(self, X: Any, y: Any) -> VoteClassifier:
        """Forget previous data and label the units from ``X`` (n_samples, n_units), ``y``."""
        for attr in ("classes_", "class_response_", "class_count_", "n_features_in_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X, y)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> VoteClassifier:
        """Add the responses of one block of labelled samples."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).ravel()
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"VoteClassifier: X must be (n_samples, n_units) with one label each, "
                             f"got X {X.shape} and y {y.shape}")
        if not hasattr(self, "classes_"):
            given = classes if classes is not None else self.classes
            self.classes_ = np.unique(np.asarray(given).ravel() if given is not None else y)
            self.n_features_in_ = X.shape[1]
            self.class_response_ = np.zeros((len(self.classes_), X.shape[1]))
            self.class_count_ = np.zeros(len(self.classes_), dtype=np.int64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"VoteClassifier: X has {X.shape[1]} units, the classifier was started with "
                             f"{self.n_features_in_}")
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if unknown.any():
            raise ValueError(f"VoteClassifier: label {y[unknown][0]!r} is not one of the classes "
                             f"{self.classes_.tolist()}")
        np.add.at(self.class_response_, idx, X)
        self.class_count_ += np.bincount(idx, minlength=len(self.classes_))
        return self

    @property
    def assignments_(self) -> np.ndarray:
        mean = self.class_response_ / np.maximum(self.class_count_, 1)[:, None]
        out = np.argmax(mean, axis=0)
        out[mean.max(axis=0) <= 0] = -1
        return out

    def decision_function(self, X: Any) -> np.ndarray:
        """Mean response of the units assigned to each class, shape (n_samples, n_classes)."""
        if not hasattr(self, "classes_"):
            raise ValueError("VoteClassifier: call fit or partial_fit before predicting")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"VoteClassifier: X must have {self.n_features_in_} units, got shape {X.shape}")
        assign = self.assignments_
        onehot = np.zeros((X.shape[1], len(self.classes_)))
        used = assign >= 0
        onehot[np.flatnonzero(used), assign[used]] = 1.0
        n_per_class = onehot.sum(axis=0)
        return (X @ onehot) / np.maximum(n_per_class, 1)

    def predict(self, X: Any) -> np.ndarray:
        """The class whose labelled units respond most (ties: the first such class)."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "classes_")
