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

from labbench.tasks.sequences import SequenceClassification

__all__ = ["Digits"]

N_DIGITS = 1797


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float64), d.target.astype(np.int64)


class Digits(SequenceClassification):
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

    sample_noun: ClassVar[str] = "digit"

    @property
    def n_inputs(self) -> int:
        return 64

    @property
    def classes(self) -> list[int]:
        return list(range(10))

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the training pool and of the held-out digits."""
        perm = np.random.default_rng(self.split_seed).permutation(N_DIGITS)
        return perm[: N_DIGITS - self.n_test], perm[N_DIGITS - self.n_test:]

    def _held_out_setting(self) -> str:
        return f"task.n_test = {self.n_test}"

    def labels(self) -> np.ndarray:
        return _digits()[1]

    def sample_rows(self, order: np.ndarray) -> np.ndarray:
        """Each digit's 64 intensities, repeated on its ``present`` rows."""
        return np.repeat(_digits()[0][order], self.present, axis=0)
