"""Where the electrodes of a multi-electrode array are.

A planar MEA is a grid of electrodes (60-channel Multi Channel Systems arrays: 8 x 8 with
the four corners missing, 200 um pitch, 30 um electrodes; Wagenaar et al. 2006 recorded
on such arrays). Some electrodes cannot be used: the corners that do not exist, the
reference/ground electrode, electrodes a lab finds broken. Electrodes are numbered row by
row from 0 (``index = row * cols + col``) and named like the MCS convention, column
letter and row number ("A1" top left). Unusable electrodes keep their index, so a
channel number means the same electrode on every back end; they are never stimulated and
record nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ElectrodeLayout:
    """A rectangular electrode grid.

    Parameters
    ----------
    rows, cols : int
        Grid shape (default 8 x 8 = 64 electrodes).
    pitch_um : float
        Centre-to-centre distance between neighbouring electrodes (micrometres).
    unusable : tuple of int
        Electrodes that cannot record or stimulate. Default: the four corners, which a
        60-electrode MCS array does not have, and index 15, used as the reference electrode.
    """

    rows: int = 8
    cols: int = 8
    pitch_um: float = 200.0
    unusable: tuple[int, ...] = field(default=(0, 7, 15, 56, 63))

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"layout: rows and cols must be >= 1, got {self.rows} x {self.cols}")
        if self.pitch_um <= 0:
            raise ValueError(f"layout: pitch_um must be > 0, got {self.pitch_um}")
        bad = [e for e in self.unusable if not 0 <= e < self.rows * self.cols]
        if bad:
            raise ValueError(f"layout: unusable electrodes {bad} are not on a {self.rows} x {self.cols} grid "
                             f"(valid: 0..{self.rows * self.cols - 1})")

    @property
    def n_electrodes(self) -> int:
        """Electrodes on the grid, usable or not (the width of the feature rows)."""
        return self.rows * self.cols

    @property
    def usable(self) -> np.ndarray:
        """Boolean mask over electrode indices."""
        mask = np.ones(self.n_electrodes, dtype=bool)
        mask[list(self.unusable)] = False
        return mask

    @property
    def usable_indices(self) -> np.ndarray:
        return np.flatnonzero(self.usable)

    def positions_um(self) -> np.ndarray:
        """(n_electrodes, 2) x, y of every electrode centre, the grid centred on (0, 0)."""
        r, c = np.divmod(np.arange(self.n_electrodes), self.cols)
        x = (c - (self.cols - 1) / 2) * self.pitch_um
        y = (r - (self.rows - 1) / 2) * self.pitch_um
        return np.column_stack([x, y]).astype(np.float64)

    def name(self, index: int) -> str:
        """MCS-style name: column letter, row number ("A1" is index 0)."""
        r, c = divmod(int(index), self.cols)
        return f"{chr(ord('A') + c)}{r + 1}"

    def index(self, name: str) -> int:
        """Inverse of :meth:`name`."""
        col = ord(name[0].upper()) - ord("A")
        row = int(name[1:]) - 1
        if not (0 <= col < self.cols and 0 <= row < self.rows):
            raise ValueError(f"layout: no electrode named {name!r} on a {self.rows} x {self.cols} grid")
        return row * self.cols + col

    def to_dict(self) -> dict:
        return {"rows": self.rows, "cols": self.cols, "pitch_um": self.pitch_um, "unusable": list(self.unusable)}
