"""Classification of samples presented one after another (digits, spoken words).

A sequence task shows each sample for ``present`` rows, then ``rest`` rows of zero input
(so a spiking reservoir relaxes between samples, as in Diehl & Cook 2015). Targets hold
the sample's class on its shown rows and NaN elsewhere; ``TaskData.sequence`` numbers the
samples (``-1`` on rest rows) so a readout can pool each sample's rows (``[[readouts]]
pool``) and classify it once.

A fixed, seeded split holds samples out: train and washout rows only ever show samples
of the training pool (reshuffled for every pass, so a long train phase is several
epochs), and test rows only show held-out samples, each once. The score is accuracy.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import numpy as np

from labbench.tasks.base import Task, TaskData

__all__ = ["SequenceClassification"]


class SequenceClassification(Task):
    """Base of tasks whose samples are shown for ``present`` rows then ``rest`` rows of zeros.

    Subclasses declare ``present`` and ``rest`` fields and implement :meth:`split`,
    :meth:`labels` and :meth:`sample_rows`.
    """

    present: int
    rest: int

    primary_metric: ClassVar[str] = "accuracy"
    #: what one sample is called in messages
    sample_noun: ClassVar[str] = "sample"

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def sequence_length(self) -> int:
        return self.present + self.rest

    @abstractmethod
    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the training pool and of the held-out samples."""

    @abstractmethod
    def labels(self) -> np.ndarray:
        """Class label of every sample, shape (n_samples,)."""

    @abstractmethod
    def sample_rows(self, order: np.ndarray) -> np.ndarray:
        """Input rows of the samples ``order``, shape ``(len(order) * present, n_inputs)``."""

    def check_layout(self, washout: int, train: int, test: int) -> list[str]:
        L, noun = self.sequence_length, self.sample_noun
        out = []
        for key, rows in (("washout", washout), ("train", train), ("test", test)):
            if rows % L:
                lo, hi = rows // L * L, (rows // L + 1) * L
                out.append(f"run.{key}: {rows} rows is not a whole number of {noun}s (each takes {L} rows: "
                           f"{self.present} shown + {self.rest} rest); use {lo or hi} or {hi}")
        n_held = len(self.split()[1])
        if test // L > n_held:
            out.append(f"run.test: {test // L} test {noun}s, but only {n_held} are held out "
                       f"({self._held_out_setting()}; at most {n_held * L} rows)")
        return out

    def generate(self, n_steps: int, seed: int) -> TaskData:
        """``n_steps`` rows of training-pool samples (use :meth:`generate_run` for a run)."""
        n = self._check_n_steps(n_steps)
        L = self.sequence_length
        return self._make(self._train_order(-(-n // L), seed), n)

    def generate_run(self, washout: int, train: int, test: int, seed: int) -> TaskData:
        problems = self.check_layout(washout, train, test)
        if problems:
            raise ValueError("; ".join(problems))
        L = self.sequence_length
        order = self._train_order((washout + train) // L, seed)
        held_out = self.split()[1][: test // L]
        return self._make(np.concatenate([order, held_out]), washout + train + test)

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Fraction of samples whose predicted class equals the true class."""
        t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
        if t.shape != p.shape:
            raise ValueError(f"y_true has {t.size} labels, y_pred {p.size}")
        return {"accuracy": float(np.mean(t == p)) if t.size else float("nan")}

    def _held_out_setting(self) -> str:
        """The task setting that decides how many samples are held out, for messages."""
        return "see the task's parameters"

    def _train_order(self, n: int, seed: int) -> np.ndarray:
        """``n`` samples of the training pool: whole shuffled passes, reshuffled each pass."""
        pool = self.split()[0]
        rng = np.random.default_rng(seed)
        passes = [rng.permutation(pool) for _ in range(-(-n // len(pool)))]
        return np.concatenate(passes)[:n] if passes else np.empty(0, dtype=np.int64)

    def _make(self, order: np.ndarray, n_rows: int) -> TaskData:
        L, P = self.sequence_length, self.present
        shown = self.sample_rows(order).reshape(len(order), P, -1)
        inputs = np.zeros((len(order), L, shown.shape[2]), dtype=np.float64)
        inputs[:, :P] = shown
        inputs = inputs.reshape(len(order) * L, -1)[:n_rows]
        mask = np.tile(np.arange(L) < P, len(order))[:n_rows]
        which = np.repeat(order, L)[:n_rows]
        targets = np.where(mask, self.labels()[which].astype(np.float64), np.nan)[:, None]
        sequence = np.where(mask, np.repeat(np.arange(len(order)), L)[:n_rows], -1).astype(np.int32)
        return TaskData(inputs=inputs, targets=targets, sequence=sequence,
                        meta={"present": self.present, "rest": self.rest, "n_samples": int(len(order))})
