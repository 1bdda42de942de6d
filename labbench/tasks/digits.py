"""Handwritten digits presented one at a time, for classification by sequence.

scikit-learn's bundled copy of the UCI optical digits (1797 images of 8×8 pixels,
values 0..16; Alpaydin & Kaynak 1998). Each digit is shown for ``present`` rows as a
64-channel input of intensities ``pixel / 16`` in [0, 1], followed by ``rest`` rows of
zeros (so a spiking layer relaxes between digits, as in Diehl & Cook 2015). A spiking
front end (the ``poisson`` driver) turns the intensities into spike trains; an
echo-state network or the ``identity`` baseline can take them as they are.

A fixed, seeded split holds out ``n_test`` digits: train and washout rows only ever
show digits of the training pool (reshuffled for every pass, so a long train phase is
several epochs), and test rows only show held-out digits, each once. The readout
classifies each presentation (its rows pooled, see ``[[readouts]] pool``) and is scored
by accuracy.
"""

from __future__ import annotations

from functools import cache
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from labbench.tasks.base import Task, TaskData

__all__ = ["Digits"]

N_DIGITS = 1797


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float64), d.target.astype(np.int64)


class Digits(Task):
    """8×8 digits shown for ``present`` rows each, then ``rest`` rows of silence; accuracy.

    Parameters
    ----------
    present : int
        Rows each digit is shown for.
    rest : int
        Rows of zero input after each digit.
    n_test : int
        Digits held out for the test phase (the last ``n_test`` of a seeded permutation
        of the 1797).
    split_seed : int
        Seed of that permutation (the protocol's seed only reorders training passes).
    """

    name: Literal["digits"] = "digits"
    present: int = Field(100, ge=1, le=10_000, description="rows per digit presentation")
    rest: int = Field(20, ge=0, le=10_000, description="rows of zero input after each digit")
    n_test: int = Field(497, ge=1, le=N_DIGITS - 100, description="held-out digits")
    split_seed: int = Field(0, ge=0, description="seed of the train/test split")

    primary_metric: ClassVar[str] = "accuracy"

    @property
    def n_inputs(self) -> int:
        return 64

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def sequence_length(self) -> int:
        return self.present + self.rest

    @property
    def classes(self) -> list[int]:
        return list(range(10))

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the training pool and of the held-out digits."""
        perm = np.random.default_rng(self.split_seed).permutation(N_DIGITS)
        return perm[: N_DIGITS - self.n_test], perm[N_DIGITS - self.n_test:]

    def check_layout(self, washout: int, train: int, test: int) -> list[str]:
        L = self.sequence_length
        out = []
        for key, rows in (("washout", washout), ("train", train), ("test", test)):
            if rows % L:
                lo, hi = rows // L * L, (rows // L + 1) * L
                out.append(f"run.{key}: {rows} rows is not a whole number of digits (each takes {L} rows: "
                           f"{self.present} shown + {self.rest} rest); use {lo or hi} or {hi}")
        if test // L > self.n_test:
            out.append(f"run.test: {test // L} test digits, but only task.n_test = {self.n_test} are held out "
                       f"(at most {self.n_test * L} rows)")
        return out

    def generate(self, n_steps: int, seed: int) -> TaskData:
        """``n_steps`` rows of training-pool digits (use :meth:`generate_run` for a run)."""
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

    def _train_order(self, n: int, seed: int) -> np.ndarray:
        """``n`` digits of the training pool: whole shuffled passes, reshuffled each pass."""
        pool = self.split()[0]
        rng = np.random.default_rng(seed)
        passes = [rng.permutation(pool) for _ in range(-(-n // len(pool)))]
        return np.concatenate(passes)[:n] if passes else np.empty(0, dtype=np.int64)

    def _make(self, order: np.ndarray, n_rows: int) -> TaskData:
        images, labels = _digits()
        L = self.sequence_length
        shown = np.zeros(L, dtype=bool)
        shown[: self.present] = True
        mask = np.tile(shown, len(order))[:n_rows]
        which = np.repeat(order, L)[:n_rows]
        inputs = np.where(mask[:, None], images[which], 0.0)
        targets = np.where(mask, labels[which].astype(np.float64), np.nan)[:, None]
        sequence = np.where(mask, np.repeat(np.arange(len(order)), L)[:n_rows], -1).astype(np.int32)
        return TaskData(inputs=inputs, targets=targets, sequence=sequence,
                        meta={"present": self.present, "rest": self.rest, "n_digits": int(len(order))})

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Fraction of samples whose predicted class equals the true class."""
        t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
        if t.shape != p.shape:
            raise ValueError(f"y_true has {t.size} labels, y_pred {p.size}")
        return {"accuracy": float(np.mean(t == p)) if t.size else float("nan")}
