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

:class:`PolicyLoop` is a closed-loop *task's* loop (:mod:`labbench.spec.policy`) run next
to the device, in the device actor's process (``[run] closed_loop = "actor"``): block ->
policy -> next block on a thread of its own, with no round trip to the bench between
blocks. The bench takes the blocks run so far in coarse chunks (:meth:`PolicyLoop.take`),
each block with its loop record, so it still streams every block and every record to the
store while the run goes; handing a chunk over never holds the loop up.
"""

from __future__ import annotations

import copy
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..reservoir import Reservoir
from ..spec.policy import LoopBlock, check_next


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


@dataclass
class LoopChunk:
    """What :meth:`PolicyLoop.take` hands over: the blocks run since the last take, and where the loop stands.

    Attributes
    ----------
    blocks : list of dict
        One dict per block, in order: ``start`` (first row), ``inputs`` (what the device
        received, in its input dtype), ``features``, ``targets``, ``raw`` (the device's raw
        streams) and ``loop`` (the block's row of the raw stream ``loop``: ``row``,
        ``latency_s``, ``policy_s``, ``device_s`` and the policy's record, as length-1 arrays).
    policy : object
        A copy of the policy as it was right after the last of these blocks, so a restarted
        device can go on from there.
    previous : LoopBlock or None
        The last of these blocks as the policy saw it (what it receives next).
    next_row : int
        The first row after these blocks.
    done : bool
        The loop has ended (every row run, or an error); nothing follows these blocks.
    error : str or None
        One line when the loop stopped on an error (after the last of ``blocks``).
    error_kind : str or None
        ``"policy"`` (the policy raised or answered wrongly) or ``"device"`` (the driver raised).
    """

    blocks: list[dict[str, Any]] = field(default_factory=list)
    policy: Any = None
    previous: LoopBlock | None = None
    next_row: int = 0
    done: bool = False
    error: str | None = None
    error_kind: str | None = None


class PolicyLoop:
    """A closed-loop task's policy run next to the device, on a thread: block -> policy -> next block.

    The same steps, in the same order, as the bench's loop (``[run] closed_loop = "bench"``),
    so for a deterministic device the decisions, inputs and records are bit for bit the same;
    only the latency differs. ``latency_s`` is the device's idle time between the end of one
    block and the start of the next, on this process's clock (the policy's time included).

    Parameters
    ----------
    reservoir : Reservoir
        The open device (used by the loop's thread only, until the loop ends or is stopped).
    task : ClosedLoopTask
        The task (its name and widths, for checking the policy's answers).
    policy : callable
        ``policy(previous, rows) -> NextBlock``, fresh or as a previous chunk left it.
    start, total, block : int
        First row to run, rows in the run, rows per block.
    input_dtype : str
        The device's input dtype (what the bench would send).
    previous : LoopBlock, optional
        The block the policy saw last (``None`` at the start of a run).
    """

    def __init__(self, reservoir: Reservoir, task: Any, policy: Any, *, start: int, total: int, block: int,
                 input_dtype: str, previous: LoopBlock | None = None) -> None:
        self.reservoir = reservoir
        self.task = task
        self.policy = policy
        self.next_row = int(start)
        self.total = int(total)
        self.block = int(block)
        self.input_dtype = np.dtype(input_dtype)
        self.previous = previous
        self.device_s = 0.0             # time inside reservoir.run, summed
        self._last_end: float | None = None
        self._cond = threading.Condition()
        self._blocks: list[dict[str, Any]] = []     # run, not taken yet
        self._cut: LoopChunk | None = None          # a hand-over the loop made at a take's request
        self._want_cut = False
        self._stop = False
        self._ended = False
        self._error: tuple[str, str] | None = None
        self._thread = threading.Thread(target=self._serve, name="labbench-policy-loop", daemon=True)

    def start(self) -> None:
        """Start the loop's thread."""
        self._thread.start()

    def take(self, max_s: float) -> LoopChunk:
        """The blocks run since the last take, cut at the first block boundary after this call
        (where the loop copies its policy for a restart; the loop never waits for a take), handed
        over ``max_s`` seconds after the call, or as soon as the loop has ended."""
        deadline = time.perf_counter() + max_s
        with self._cond:
            if self._ended:                # the loop's state is final: everything, at once
                return self._hand_over()
            self._want_cut = True          # the loop cuts after its current block
            while self._cut is None and not self._ended:
                self._cond.wait()
            chunk, self._cut = self._cut, None
            self._want_cut = False
            if chunk is None:              # it ended before a cut
                return self._hand_over()
            while not self._ended and time.perf_counter() < deadline:     # coarse chunks for the store
                self._cond.wait(timeout=deadline - time.perf_counter())
            return chunk

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop after its current block and wait for its thread (the device is free again)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _hand_over(self) -> LoopChunk:
        """A chunk of the untaken blocks with the loop's state now (call with the lock held, between blocks)."""
        blocks, self._blocks = self._blocks, []
        kind, error = self._error if self._error is not None else (None, None)
        return LoopChunk(blocks=blocks, policy=copy.deepcopy(self.policy), previous=self.previous,
                         next_row=self.next_row, done=self._ended, error=error, error_kind=kind)

    def _serve(self) -> None:
        try:
            while self.next_row < self.total and not self._stop:
                blk, error = self._step()
                with self._cond:
                    if blk is not None:
                        self._blocks.append(blk)
                    if error is not None:
                        self._error = error
                        break
                    if self._want_cut and self._cut is None:
                        self._cut = self._hand_over()
                        self._cond.notify_all()
        except BaseException as exc:        # noqa: BLE001 - anything else ends the loop with one line
            self._error = ("device", f"failed in its closed loop: {_one_line(exc)}")
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _step(self) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
        """One block: the policy decides, the device runs. ``(block, None)`` or ``(None, (kind, line))``."""
        task = self.task
        a = self.next_row
        rows = min(self.block, self.total - a)
        b = a + rows
        t0 = time.perf_counter()
        try:
            nb = check_next(self.policy(self.previous, rows), rows, task.n_inputs, task.n_outputs, task.name)
        except Exception as exc:    # noqa: BLE001 - the policy's own error, reported as one line
            return None, ("policy", f"policy of task {task.name!r} failed deciding rows {a}–{b}: {_one_line(exc)}")
        t1 = time.perf_counter()
        latency = float("nan") if self._last_end is None else t1 - self._last_end
        u = nb.inputs.astype(self.input_dtype, copy=False)
        try:
            result = self.reservoir.run(u)
        except Exception as exc:    # noqa: BLE001 - the driver's error, reported as one line
            return None, ("device", f"failed on rows {a}–{b}: {_one_line(exc)}")
        t2 = time.perf_counter()
        self._last_end = t2
        self.device_s += t2 - t1
        features = result.features if result.features.base is None else result.features.copy()
        if features.shape[0] != rows:
            return None, ("device", f"returned {features.shape[0]} rows for rows {a}–{b}")
        index = 0 if self.previous is None else self.previous.index + 1
        self.previous = LoopBlock(index=index, start=a, inputs=nb.inputs, features=features,
                                  targets=nb.targets, raw=result.raw)
        record = {"row": np.array([a], dtype=np.int64), "latency_s": np.array([latency]),
                  "policy_s": np.array([t1 - t0]), "device_s": np.array([t2 - t1]),
                  **{k: np.array([v], dtype=np.float64) for k, v in nb.record.items()}}
        self.next_row = b
        return {"start": a, "inputs": u, "features": features, "targets": nb.targets, "raw": result.raw,
                "loop": record}, None


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
