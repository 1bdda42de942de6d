"""The event array every part of the DVS driver speaks: one structured numpy array.

An event camera reports, per pixel, each change of log intensity as an event
``(t, x, y, p)``: the time in microseconds, the pixel column and row, and the polarity
(``True``: ON, brighter; ``False``: OFF). Everything in ``drivers/dvs`` passes events as
one structured array of :data:`EVENT_DTYPE`, sorted by ``t`` — the same field names and
layout ``tonic`` uses, so its transforms apply without a copy. The run store keeps them as
the columns of the raw stream ``events`` (:func:`to_columns`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EVENT_DTYPE", "empty_events", "make_events", "to_columns", "from_columns"]

#: t: int64 microseconds; x, y: uint16 pixel column and row; p: bool polarity (True = ON)
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "?")])


def empty_events(n: int = 0) -> np.ndarray:
    """An uninitialised event array of ``n`` events."""
    return np.empty(n, dtype=EVENT_DTYPE)


def make_events(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """An event array from four equally long columns (cast to the event dtype)."""
    t = np.asarray(t)
    out = empty_events(len(t))
    out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def to_columns(events: np.ndarray) -> dict[str, np.ndarray]:
    """The raw-stream columns ``{"t", "x", "y", "p"}`` of an event array (contiguous copies)."""
    return {name: np.ascontiguousarray(events[name]) for name in ("t", "x", "y", "p")}


def from_columns(cols: dict[str, np.ndarray]) -> np.ndarray:
    """The event array of raw-stream columns (the inverse of :func:`to_columns`)."""
    return make_events(cols["t"], cols["x"], cols["y"], cols["p"])
