"""Closed loop: the readout's output becomes the reservoir's next input.

:func:`free_run` is autonomous (generative) forecasting: for each start ``s`` the
reservoir is reset and synchronised by teacher forcing on the true inputs
``u[s - sync : s]`` (the echo-state property makes its state forget the reset), then runs
freely: ``y_1 = readout(x)`` predicts ``u[s]``, and each prediction is fed back as the
next input (Jaeger & Haas 2004, Science 304:78).

:func:`learn_with_feedback` is FORCE learning (Sussillo & Abbott 2009, Neuron 63:544):
the loop is closed *while* the readout learns, and every step's output, computed before
that step's weight update, is what the reservoir receives next.

Closed loops are step by step by nature (each output is the next input), so these loops
make one device call per step; everything inside a step is vectorised.
"""

from __future__ import annotations

import numpy as np

from ..reservoir import Reservoir


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


def learn_with_feedback(reservoir: Reservoir, readout, teacher: np.ndarray, sync: int) -> np.ndarray:
    """FORCE learning with the output fed back into the reservoir.

    The reservoir is reset and synchronised on ``teacher[:sync]``; then, for every later
    step ``t``, the readout gives ``z_t`` from the current state *before* learning
    (``readout.step(x, teacher[t])`` returns it and applies the RLS update towards
    ``teacher[t]``), and ``z_t``, not the teacher, is the reservoir's next input
    (Sussillo & Abbott 2009, Fig. 1A).

    Parameters
    ----------
    reservoir : Reservoir
        Open reservoir with ``n_inputs == n_outputs`` of the readout.
    readout : FORCE
        A readout with ``step(x, target) -> z`` (see ``labbench.readouts.FORCE``).
    teacher : ndarray, shape (T, n)
        The signal to generate; ``T > sync``.
    sync : int
        Teacher-forced steps before the loop is closed.

    Returns
    -------
    ndarray, shape (T - sync, n)
        The pre-update outputs ``z_t`` for ``t = sync .. T-1`` (the closed-loop training
        trace: its error against ``teacher[sync:]`` is the error while learning).
    """
    teacher = np.asarray(teacher, dtype=np.float64)
    if teacher.ndim == 1:
        teacher = teacher[:, None]
    if not 0 < sync < len(teacher):
        raise ValueError(f"learn_with_feedback: need 0 < sync < len(teacher), got sync={sync}, "
                         f"len(teacher)={len(teacher)}")
    reservoir.reset()
    x = np.asarray(reservoir.run(teacher[:sync]).features[-1], dtype=np.float64)
    out = np.empty((len(teacher) - sync, teacher.shape[1]))
    for i, t in enumerate(range(sync, len(teacher))):
        z = np.atleast_1d(np.asarray(readout.step(x, teacher[t] if teacher.shape[1] > 1 else teacher[t, 0])))
        out[i] = z
        x = np.asarray(reservoir.run(z[None, :]).features[-1], dtype=np.float64)
    reservoir.reset()
    return out
