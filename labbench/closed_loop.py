"""Autonomous (closed-loop, generative) forecasting: the readout's output becomes the next input.

For each start ``s`` the reservoir is reset and synchronised by teacher forcing on the
true inputs ``u[s - sync : s]`` (the echo-state property makes its state forget the
reset), then runs freely: ``y_1 = readout(x)`` predicts ``u[s]``, and each prediction
is fed back as the next input (Jaeger & Haas 2004, Science 304:78).
"""

from __future__ import annotations

import numpy as np

from .reservoir import Reservoir


def free_run(reservoir: Reservoir, readout, sync_inputs: np.ndarray, horizon: int) -> np.ndarray:
    """Closed-loop predictions from several starts.

    Parameters
    ----------
    reservoir : Reservoir
        An open reservoir whose outputs feed back as inputs (n_outputs == n_inputs).
    readout : estimator
        Fitted readout with ``predict``.
    sync_inputs : ndarray, shape (B, sync, n_inputs)
        Teacher-forcing windows ending just before each start.
    horizon : int
        Number of predicted steps.

    Returns
    -------
    ndarray, shape (B, horizon, n_outputs)
    """
    sync_inputs = np.asarray(sync_inputs, dtype=np.float64)
    n_starts = sync_inputs.shape[0]
    if reservoir.supports_batch:
        return _free_run_batch(reservoir, readout, sync_inputs, horizon)
    return np.stack([_free_run_one(reservoir, readout, sync_inputs[i], horizon) for i in range(n_starts)])


def _predict(readout, features: np.ndarray) -> np.ndarray:
    return np.asarray(readout.predict(features), dtype=np.float64).reshape(len(features), -1)


def _free_run_batch(reservoir: Reservoir, readout, sync_inputs: np.ndarray, horizon: int) -> np.ndarray:
    reservoir.reset()
    feats = reservoir.run(sync_inputs).features[:, -1, :]
    y = _predict(readout, feats)
    out = np.empty((sync_inputs.shape[0], horizon, y.shape[1]))
    for h in range(horizon):
        out[:, h] = y
        if h + 1 < horizon:
            feats = reservoir.run(y[:, None, :]).features[:, 0, :]
            y = _predict(readout, feats)
    reservoir.reset()
    return out


def _free_run_one(reservoir: Reservoir, readout, sync: np.ndarray, horizon: int) -> np.ndarray:
    reservoir.reset()
    feats = reservoir.run(sync).features[-1:]
    y = _predict(readout, feats)
    out = np.empty((horizon, y.shape[1]))
    for h in range(horizon):
        out[h] = y[0]
        if h + 1 < horizon:
            y = _predict(readout, reservoir.run(y).features)
    reservoir.reset()
    return out
