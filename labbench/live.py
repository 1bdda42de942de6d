"""Live training: feed each block of a run to its readouts as it arrives.

The phase column decides what each row is for: washout rows are ignored, train rows
update the readout (``partial_fit``), test rows are predicted and scored. Nothing a
readout is scored on has been trained on.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from .store import PHASES
from .tasks import Task

TRAIN = PHASES["train"]
TEST = PHASES["test"]


class Trainer:
    """Trains one readout on the train rows of a stream and scores it on the test rows.

    Parameters
    ----------
    name : str
        Name of the readout in the store.
    readout : estimator
        A readout with ``partial_fit`` and ``predict`` (see ``labbench.readouts``).
    task : Task
        Scores the test predictions (``task.score``).
    """

    def __init__(self, name: str, readout: BaseEstimator, task: Task) -> None:
        self.name = name
        self.readout = readout
        self.task = task
        self.n_trained = 0
        self._y_true: list[np.ndarray] = []
        self._y_pred: list[np.ndarray] = []
        #: warnings raised while training or predicting (e.g. an ill-conditioned ridge system)
        self.warnings: list[str] = []

    def update(self, features: np.ndarray, targets: np.ndarray, phase: np.ndarray) -> np.ndarray | None:
        """Consume one block; returns predictions for its rows (NaN where not test), or None."""
        train = phase == TRAIN
        if train.any():
            self.readout.partial_fit(features[train], targets[train])
            self.n_trained += int(train.sum())
        test = phase == TEST
        if not test.any():
            return None
        if self.n_trained == 0:
            raise RuntimeError(f"readout {self.name!r}: test rows arrived before any train rows")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = np.asarray(self.readout.predict(features[test]), dtype=np.float64).reshape(int(test.sum()), -1)
        for w in caught:
            msg = f"{w.category.__name__}: {w.message}"
            if msg not in self.warnings:
                self.warnings.append(msg)
        self._y_true.append(np.asarray(targets[test], dtype=np.float64).reshape(pred.shape))
        self._y_pred.append(pred)
        out = np.full((len(phase), pred.shape[1]), np.nan)
        out[test] = pred
        return out

    def metrics(self) -> dict[str, Any]:
        """The task's metrics on every test row seen so far."""
        if not self._y_true:
            return {"n_train": self.n_trained, "n_test": 0}
        y_true = np.concatenate(self._y_true)
        y_pred = np.concatenate(self._y_pred)
        return {**self.task.score(y_true, y_pred), "n_train": self.n_trained, "n_test": len(y_true)}
