"""scikit-learn's digits shown to an event camera with three saccades, as in N-MNIST.

N-MNIST (Orchard, Jayawant, Cohen & Thakor 2015, Front. Neurosci. 9:437) was recorded by
showing each MNIST digit on a monitor to an ATIS camera on a pan-tilt unit that made three
straight saccades of about 100 ms along a triangle; each recording is one digit. This task
is that protocol with scikit-learn's 1,797 8×8 digits (the ``digits`` task's images): each
digit is put on the "monitor" (the 64 intensities ``pixel / 16`` in [0, 1], one input row
per row of the device) for ``present`` rows, then the monitor is dark for ``rest`` rows.
The DVS driver's ``saccades`` scene is the camera and its pan-tilt unit: it starts the
three saccades when an image appears, so one presentation is one N-MNIST-like recording
(with 5 ms rows, ``present = 60`` is the 300 ms of three saccades).

The split is stratified by class and by sample: ``n_test`` digits (40 % by default) are
held out with the class proportions of the whole set (scikit-learn's
``train_test_split(..., stratify=labels)``), and only they are shown in the test phase.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from pydantic import Field

from labbench.tasks.digits import N_DIGITS, Digits

__all__ = ["SaccadeDigits"]


@cache
def _stratified_split(n_test: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    train, test = train_test_split(np.arange(N_DIGITS), test_size=n_test, stratify=labels,
                                   random_state=split_seed)
    return np.asarray(train), np.asarray(test)


class SaccadeDigits(Digits):
    """The 1,797 digits as N-MNIST-like event recordings (see the module doc); accuracy.

    Parameters
    ----------
    present : int
        Rows each digit is on the monitor (one recording: three saccades).
    rest : int
        Rows of a dark monitor after each digit.
    n_test : int
        Digits held out, stratified by class (default 719, i.e. 40 %).
    split_seed : int
        Seed of the stratified split.
    """

    name: Literal["saccade_digits"] = "saccade_digits"  # type: ignore[assignment]
    present: int = Field(60, ge=3, le=10_000, description="rows per digit (three saccades)")
    rest: int = Field(10, ge=1, le=10_000, description="rows of a dark monitor after each digit (>= 1: the "
                                                        "camera starts its saccades when an image appears)")
    n_test: int = Field(719, ge=10, le=N_DIGITS - 100, description="held-out digits (stratified)")

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the training pool and of the held-out digits, stratified by class."""
        return _stratified_split(self.n_test, self.split_seed)
