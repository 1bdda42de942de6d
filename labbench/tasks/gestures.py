"""Which way does it move? A small stand-in for DVS Gesture (Amir et al., CVPR 2017).

DVS Gesture records 11 hand gestures (arm rolls, hand claps, waves...) with a DVS128; most
classes differ in the direction of motion. This task asks the same of simpler stimuli: each
sample is one of ``n_classes`` stimuli shown to an event camera for ``present`` rows — the
DVS driver's ``gestures`` scene: a bar moving right, left, down or up, a disk turning
clockwise or anticlockwise, each with a speed and phase drawn per presentation — as a
one-hot input row, then ``rest`` rows of an empty scene. Classes 0-3 need the direction of
an edge's motion, 4-5 the sense of a rotation: no single frame of events tells them apart
reliably, the order of the events does.

The split is stratified and by sample: ``n_per_class`` presentations per class, of which
``n_test_per_class`` are held out and shown only in the test phase.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from labbench.tasks.sequences import SequenceClassification

__all__ = ["Gestures"]


class Gestures(SequenceClassification):
    """One-hot stimuli of ``n_classes`` (the DVS ``gestures`` scene); accuracy.

    Parameters
    ----------
    n_classes : int
        Stimuli (6: the DVS scene's bars right/left/down/up and disks clockwise/anticlockwise).
    n_per_class, n_test_per_class : int
        Presentations per class, and how many of them are held out.
    present, rest : int
        Rows a stimulus is shown, and rows of an empty scene after it.
    split_seed : int
        Seed of the split.
    """

    name: Literal["gestures"] = "gestures"
    n_classes: int = Field(6, ge=2, le=64, description="stimuli (the DVS gestures scene has 6)")
    n_per_class: int = Field(60, ge=2, le=100_000, description="presentations per class")
    n_test_per_class: int = Field(20, ge=1, description="presentations per class held out")
    present: int = Field(50, ge=1, le=10_000, description="rows per presentation")
    rest: int = Field(10, ge=1, le=10_000, description="rows of an empty scene after each presentation")
    split_seed: int = Field(0, ge=0, description="seed of the split")

    sample_noun: ClassVar[str] = "presentation"

    @property
    def n_inputs(self) -> int:
        return self.n_classes

    @property
    def classes(self) -> list[int]:
        return list(range(self.n_classes))

    def labels(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_classes), self.n_per_class)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Per class, ``n_test_per_class`` presentations held out (seeded)."""
        if self.n_test_per_class >= self.n_per_class:
            raise ValueError(f"task.n_test_per_class = {self.n_test_per_class} leaves no presentation of a class "
                             f"to train on (n_per_class = {self.n_per_class})")
        rng = np.random.default_rng(self.split_seed)
        test = np.concatenate([c * self.n_per_class + rng.choice(self.n_per_class, self.n_test_per_class,
                                                                 replace=False) for c in range(self.n_classes)])
        train = np.setdiff1d(np.arange(self.n_classes * self.n_per_class), test)
        return train, rng.permutation(test)

    def _held_out_setting(self) -> str:
        return f"task.n_test_per_class = {self.n_test_per_class} of {self.n_classes} classes"

    def sample_rows(self, order: np.ndarray) -> np.ndarray:
        """The one-hot class of each presentation on its ``present`` rows."""
        return np.repeat(np.eye(self.n_classes)[self.labels()[order]], self.present, axis=0)
