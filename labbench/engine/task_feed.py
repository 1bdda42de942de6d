"""A run's task data, generated piece by piece as the stream needs it.

The bench used to generate a run's inputs, targets and phase column for the whole run
before the first block, so the run's process (the store's writer) held them all: 17 bytes
per row and input/output column, growing with the run's length. :class:`TaskFeed` stands in
for that :class:`~labbench.tasks.TaskData`: ``feed.inputs[a:b]``, ``feed.targets[a:b]`` and
``feed.sequence`` are read like the arrays, but rows are made by the task's
:meth:`~labbench.tasks.Task.generate_chunks` as they are asked for, and dropped once every
column has been read past them. The rows are the same, bit for bit. Reading rows that were
dropped (a restarted device being replayed from row 0) starts the generator again.

:class:`PhaseColumn` is the phase column (washout, train, test) made on demand from the
layout.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ..store import PHASES
from ..tasks import Task, TaskData

__all__ = ["PhaseColumn", "TaskFeed"]


class PhaseColumn:
    """The ``phase`` column of a run (int8: 0 washout, 1 train, 2 test), sliced on demand.

    Parameters
    ----------
    washout, train, test : int
        The run's phase lengths (rows).
    """

    def __init__(self, washout: int, train: int, test: int) -> None:
        self._ends = np.cumsum([washout, train, test])
        self._codes = np.array([PHASES["washout"], PHASES["train"], PHASES["test"]], dtype=np.int8)

    def __len__(self) -> int:
        return int(self._ends[-1])

    def __getitem__(self, key: slice) -> np.ndarray:
        a, b, step = key.indices(len(self))
        if step != 1:
            raise IndexError("PhaseColumn takes contiguous slices only")
        rows = np.arange(a, max(a, b))
        return self._codes[np.searchsorted(self._ends, rows, side="right")]


class _Column:
    """One column of a :class:`TaskFeed`, read by contiguous slices."""

    def __init__(self, feed: TaskFeed, name: str, width: int) -> None:
        self._feed, self._name = feed, name
        self.shape = (feed.n_steps, width) if name != "sequence" else (feed.n_steps,)

    def __len__(self) -> int:
        return self._feed.n_steps

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise IndexError(f"task data column {self._name!r} is read by contiguous slices, got {key!r}")
        a, b, step = key.indices(self._feed.n_steps)
        if step != 1:
            raise IndexError(f"task data column {self._name!r} is read by contiguous slices, got {key!r}")
        return self._feed._rows(self._name, a, max(a, b))


class TaskFeed:
    """A run's task data made piece by piece: at most a few pieces of ``rows`` rows held.

    Parameters
    ----------
    task : Task
        A task with ``chunked_generation`` (others hold every row anyway: generate them up front).
    n_steps, seed : int
        As for :meth:`Task.generate`.
    rows : int
        Rows per generated piece.

    Attributes
    ----------
    inputs, targets : column
        ``inputs[a:b]`` / ``targets[a:b]`` give the rows as ``generate`` would; read them in
        increasing order (reading rows already dropped restarts the generator).
    sequence : column or None
        The sequence column, for tasks that have one.
    meta : dict
        The series' ``meta``.
    peak_rows : int
        The most rows held at once so far (what the feed's memory is bounded by).
    restarts : int
        How many times the generator was started again (a replay from an earlier row).
    """

    def __init__(self, task: Task, n_steps: int, seed: int, rows: int) -> None:
        self.task, self.n_steps, self.seed, self.rows = task, int(n_steps), int(seed), int(rows)
        self.peak_rows = 0
        self.restarts = -1
        self._start()
        first = self._pieces[0][1] if self._pieces else None
        self.meta: dict[str, Any] = dict(first.meta) if first is not None else {}
        self.inputs = _Column(self, "inputs", task.n_inputs)
        self.targets = _Column(self, "targets", task.n_outputs)
        self.sequence = (_Column(self, "sequence", 1) if first is not None and first.sequence is not None
                         else None)
        #: the first row each column still needs (its last read's start): older pieces are dropped
        self._read_from = {"inputs": 0, "targets": 0, **({"sequence": 0} if self.sequence is not None else {})}

    def _start(self) -> None:
        self._gen = self.task.generate_chunks(self.n_steps, self.seed, self.rows)
        self._pieces: deque[tuple[int, TaskData]] = deque()   # (first row, piece)
        self._hi = 0                                          # rows generated so far
        self.restarts += 1
        self._more()

    def _more(self) -> None:
        piece = next(self._gen)
        self._pieces.append((self._hi, piece))
        self._hi += piece.inputs.shape[0]
        held = self._hi - self._pieces[0][0]
        self.peak_rows = max(self.peak_rows, held)

    def _rows(self, name: str, a: int, b: int) -> np.ndarray:
        if self._pieces and a < self._pieces[0][0]:
            self._start()                                      # rows already dropped: from row 0 again
        while self._hi < b:
            self._more()
        parts = [getattr(p, name)[max(a - s, 0):b - s] for s, p in self._pieces
                 if s < b and s + p.inputs.shape[0] > a]
        if not parts:
            out = getattr(self._pieces[0][1], name)[:0].copy()
        else:
            out = parts[0].copy() if len(parts) == 1 else np.concatenate(parts)
        self._read_from[name] = a
        low = min(self._read_from.values())
        while len(self._pieces) > 1 and self._pieces[0][0] + self._pieces[0][1].inputs.shape[0] <= low:
            self._pieces.popleft()
        return out
