"""How input values become stimulation: a documented rate code on electrode groups.

Input channel ``k`` owns a group of ``group_size`` usable electrodes. The groups are
disjoint and spread over the array: electrodes are taken in a seeded random order. In
each row of the run (``row_s`` seconds of device time), the channel's value ``v`` is
clipped to ``[low, high]``, scaled to ``[0, 1]``, and sets how many pulses the group
receives in that row: ``round(v * max_pulses)``. The pulses are spaced evenly through the
row (the first at the row's start), and each pulse goes to every electrode of the group at
once. Every pulse has the same shape (``pulse``), so only the pulse rate carries the
value. Rate coding of a stimulus into pulse frequency is the usual way cultures have been
driven as reservoirs (e.g. Dockendorf et al. 2009, Biosystems 95:90; Kagan et al. 2022,
Neuron 110:3952 used rate for the ball position).

:meth:`RateEncoder.encode` returns the pulses of a whole block with times relative to the
block's start; :mod:`.safety` checks them before any back end sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import ElectrodeLayout
from .stimulation import BiphasicPulse, ScheduledPulse


@dataclass(frozen=True)
class RateEncoder:
    """Value -> pulses per row on one electrode group per input channel.

    Parameters
    ----------
    layout : ElectrodeLayout
    n_inputs : int
        Input channels.
    row_s : float
        Device time of one row (s).
    pulse : BiphasicPulse
        The pulse shape.
    group_size : int
        Electrodes per input channel.
    max_pulses : int
        Pulses per row at ``v = high``.
    low, high : float
        Input range mapped to 0 .. max_pulses pulses.
    seed : int
        Seed of the electrode assignment.
    """

    layout: ElectrodeLayout
    n_inputs: int
    row_s: float
    pulse: BiphasicPulse
    group_size: int = 4
    max_pulses: int = 2
    low: float = 0.0
    high: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        usable = self.layout.usable_indices
        if self.n_inputs * self.group_size > len(usable):
            raise ValueError(f"encoder: {self.n_inputs} inputs x group_size {self.group_size} = "
                             f"{self.n_inputs * self.group_size} electrodes, but the layout has only "
                             f"{len(usable)} usable ones")
        if self.high <= self.low:
            raise ValueError(f"encoder: high ({self.high}) must be greater than low ({self.low})")
        if self.max_pulses < 0:
            raise ValueError(f"encoder: max_pulses must be >= 0, got {self.max_pulses}")

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """The electrodes of each input channel."""
        order = np.random.default_rng(self.seed).permutation(self.layout.usable_indices)
        return [tuple(int(e) for e in sorted(order[k * self.group_size:(k + 1) * self.group_size]))
                for k in range(self.n_inputs)]

    @property
    def stimulated(self) -> np.ndarray:
        """Every electrode some input stimulates."""
        return np.array(sorted(e for g in self.groups for e in g), dtype=np.int64)

    def counts(self, u: np.ndarray) -> np.ndarray:
        """(T, n_inputs) pulses per row for the input block ``u``."""
        v = (np.clip(np.asarray(u, dtype=np.float64), self.low, self.high) - self.low) / (self.high - self.low)
        return np.rint(v * self.max_pulses).astype(np.int64)

    def encode(self, u: np.ndarray) -> list[ScheduledPulse]:
        """The pulses of the block ``u`` (T rows), times relative to its start."""
        counts = self.counts(u)
        groups = self.groups
        out: list[ScheduledPulse] = []
        rows, chans = np.nonzero(counts)
        for r, k in zip(rows.tolist(), chans.tolist()):
            n = int(counts[r, k])
            for j in range(n):
                out.append(ScheduledPulse(r * self.row_s + j * self.row_s / n, groups[k], self.pulse))
        out.sort(key=lambda p: p.t_s)
        return out

    def to_dict(self) -> dict:
        return {"kind": "rate", "groups": [list(g) for g in self.groups], "row_s": self.row_s,
                "pulse": self.pulse.to_dict(), "max_pulses": self.max_pulses, "low": self.low, "high": self.high,
                "seed": self.seed}
