"""Closed-loop input policies: the next input block computed from what the device just did.

A closed-loop task (:class:`labbench.tasks.base.ClosedLoopTask`) gives the bench a
*policy*, a plain callable ``policy(previous, rows) -> NextBlock``. ``previous`` is the
:class:`LoopBlock` the device returned last (``None`` before the first block); the policy
returns the next ``rows`` rows of inputs, their targets, and a few numbers about its
decision (the ``record``: the firing rate it measured, the command it chose, whether the
last trial was a hit...). The device runs one block at a time (no block in flight ahead,
unlike an open-loop run) and the policy is called between blocks: by default in the
device's actor, next to the driver (``[run] closed_loop = "actor"``,
:class:`labbench.engine.closed_loop.PolicyLoop`), or in the writer's process
(``"bench"``). Either way a policy keeps its state across a device restart.

Every block's record is stored as one row of the device's raw stream ``loop``, beside the
loop's own timing (:data:`TIMING_COLUMNS`):

``latency_s``
    the device's idle time between the end of the previous block and the start of this one,
    measured on the device actor's clock: the whole loop (in the bench mode also the results
    back to the bench and the next block back to the device). ``nan`` for the first block.
``policy_s``
    the part of it the policy took.
``device_s``
    the time the device spent on the block.

:func:`loop_timing` summarises them: median and 99th percentile of the latency, and its
jitter (standard deviation, and the median absolute deviation from the median).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TIMING_COLUMNS", "LoopBlock", "NextBlock", "Policy", "check_next", "loop_timing"]

#: the loop's own columns in the raw stream ``loop`` (one row per block)
TIMING_COLUMNS = ("row", "latency_s", "policy_s", "device_s")


@dataclass(frozen=True)
class LoopBlock:
    """A block the device has just returned, as a policy sees it.

    Attributes
    ----------
    index : int
        Block number, from 0.
    start : int
        First row of the block in the run.
    inputs : ndarray, shape (rows, n_inputs)
        What the device received (what the policy asked for).
    features : ndarray, shape (rows, n_features)
        What the device returned (spike counts, rates, states...).
    targets : ndarray, shape (rows, n_outputs)
        The targets the policy gave with those inputs.
    raw : dict
        The device's raw streams for the block (``{"spikes": {"time_s": ..., "electrode": ...}}``).
    """

    index: int
    start: int
    inputs: np.ndarray
    features: np.ndarray
    targets: np.ndarray
    raw: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


@dataclass
class NextBlock:
    """What a policy returns: the next block's inputs and targets, and its record.

    Attributes
    ----------
    inputs : ndarray, shape (rows, n_inputs)
    targets : ndarray, shape (rows, n_outputs)
    record : dict of str to float
        Numbers about this decision, stored as columns of the ``loop`` stream. A policy
        returns the same keys every time.
    """

    inputs: np.ndarray
    targets: np.ndarray
    record: dict[str, float] = field(default_factory=dict)


#: ``policy(previous, rows) -> NextBlock``
Policy = Callable[[LoopBlock | None, int], NextBlock]


def loop_timing(latency_s: np.ndarray, policy_s: np.ndarray) -> dict[str, float]:
    """Latency and jitter of a closed loop from its per-block timings (seconds in, ms out).

    Returns
    -------
    dict
        ``latency_ms_median``, ``latency_ms_p99``, ``latency_ms_max``, ``jitter_ms_std``
        (standard deviation of the latency), ``jitter_ms_mad`` (median absolute deviation
        from the median, robust to the odd slow block) and ``policy_ms_median``. NaN when
        there are fewer than two blocks.
    """
    lat = np.asarray(latency_s, dtype=np.float64)
    lat = lat[np.isfinite(lat)] * 1e3
    pol = np.asarray(policy_s, dtype=np.float64) * 1e3
    if lat.size == 0:
        nan = float("nan")
        return {"latency_ms_median": nan, "latency_ms_p99": nan, "latency_ms_max": nan, "jitter_ms_std": nan,
                "jitter_ms_mad": nan, "policy_ms_median": float(np.median(pol)) if pol.size else nan}
    med = float(np.median(lat))
    return {"latency_ms_median": med, "latency_ms_p99": float(np.percentile(lat, 99)),
            "latency_ms_max": float(lat.max()), "jitter_ms_std": float(lat.std()),
            "jitter_ms_mad": float(np.median(np.abs(lat - med))), "policy_ms_median": float(np.median(pol))}


def check_next(nb: Any, rows: int, n_inputs: int, n_outputs: int, name: str) -> NextBlock:
    """The policy's answer as float64 arrays of the right shapes, or a ValueError naming what was wrong."""
    if not isinstance(nb, NextBlock):
        raise ValueError(f"policy of task {name!r} returned {type(nb).__name__}, expected a NextBlock")
    u = np.asarray(nb.inputs, dtype=np.float64)
    y = np.asarray(nb.targets, dtype=np.float64)
    if u.shape != (rows, n_inputs):
        raise ValueError(f"policy of task {name!r} returned inputs of shape {u.shape}, expected {(rows, n_inputs)}")
    if y.shape != (rows, n_outputs):
        raise ValueError(f"policy of task {name!r} returned targets of shape {y.shape}, "
                         f"expected {(rows, n_outputs)}")
    if not np.all(np.isfinite(u)):
        raise ValueError(f"policy of task {name!r} returned non-finite inputs")
    return NextBlock(u, y, {k: float(v) for k, v in nb.record.items()})
