"""Features of event streams, one row per time window: count maps, time surfaces, voxel grids.

A block of events (:data:`~.events.EVENT_DTYPE`, sorted by ``t``) is split into rows by
:func:`bin_rows` (the offsets of each row's first event); every feature function then takes
the events and, optionally, those offsets and returns one flat feature vector per row,
computed for all rows at once with ``np.bincount`` / ``np.maximum.at`` (no per-event Python).
Layouts follow ``tonic`` (channel = polarity: 0 OFF, 1 ON; then y, then x), so a row
reshaped to ``(2, H', W')`` is what ``tonic.transforms.ToFrame`` gives for the same events.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bin_rows", "count_maps", "pooled_shape", "time_surface", "voxel_grid"]


def bin_rows(events: np.ndarray, t_edges_us: np.ndarray) -> np.ndarray:
    """Offsets splitting sorted events into rows ``[t_edges[r], t_edges[r + 1])``.

    Parameters
    ----------
    events
        Events sorted by ``t``.
    t_edges_us
        (R + 1,) increasing row edges (µs).

    Returns
    -------
    numpy.ndarray
        (R + 1,) int64 offsets: row r is ``events[off[r]:off[r + 1]]``. Events before the
        first edge or at or after the last belong to no row.
    """
    edges = np.asarray(t_edges_us, dtype=np.int64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) < 0):
        raise ValueError("t_edges_us: expected at least two non-decreasing row edges (µs)")
    return np.searchsorted(events["t"], edges, side="left").astype(np.int64)


def pooled_shape(shape: tuple[int, int], pool: tuple[int, int]) -> tuple[int, int]:
    """(H', W') of a sensor (H, W) pooled by (py, px): ceil(H / py), ceil(W / px)."""
    py, px = pool
    if py < 1 or px < 1:
        raise ValueError(f"pool {pool!r}: expected (py, px) >= 1")
    return -(-shape[0] // py), -(-shape[1] // px)


def _rows(events: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(the events inside rows, their row index, number of rows)."""
    if offsets is None:
        return events, np.zeros(len(events), np.int64), 1
    off = np.asarray(offsets, dtype=np.int64)
    if off.ndim != 1 or len(off) < 2 or np.any(np.diff(off) < 0) or off[0] < 0 or off[-1] > len(events):
        raise ValueError("offsets: expected non-decreasing row offsets into the events (from bin_rows)")
    ev = events[off[0]:off[-1]]
    return ev, np.repeat(np.arange(len(off) - 1), np.diff(off)), len(off) - 1


def _cell(ev: np.ndarray, shape: tuple[int, int], pool: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Flat (polarity, y', x') index of each event and the number of cells 2 H' W'."""
    hp, wp = pooled_shape(shape, pool)
    y = ev["y"].astype(np.int64)
    x = ev["x"].astype(np.int64)
    if len(ev) and (y.max() >= shape[0] or x.max() >= shape[1]):
        raise ValueError(f"events reach (x, y) = ({x.max()}, {y.max()}), outside the sensor (H, W) = {shape}")
    return (ev["p"].astype(np.int64) * hp + y // pool[0]) * wp + x // pool[1], 2 * hp * wp


def count_maps(events: np.ndarray, shape: tuple[int, int], pool: tuple[int, int] = (1, 1),
               offsets: np.ndarray | None = None) -> np.ndarray:
    """OFF and ON event counts per pooled pixel.

    Parameters
    ----------
    events
        Events (any order).
    shape
        Sensor (H, W).
    pool
        (py, px) pixels summed into one cell (edge cells of a non-dividing pool are smaller).
    offsets
        Row offsets from :func:`bin_rows`; None: all events are one row.

    Returns
    -------
    numpy.ndarray
        float32, (2 H' W',) for one row or (R, 2 H' W') with offsets; layout (p, y', x'),
        p = 0 OFF, 1 ON (tonic's ToFrame channel order).
    """
    ev, row, n_rows = _rows(events, offsets)
    cell, n_cells = _cell(ev, shape, pool)
    out = np.bincount(row * n_cells + cell, minlength=n_rows * n_cells).astype(np.float32)
    out = out.reshape(n_rows, n_cells)
    return out if offsets is not None else out[0]


def time_surface(events: np.ndarray, shape: tuple[int, int], t_ref_us: float | np.ndarray, tau_us: float,
                 pool: tuple[int, int] = (1, 1), offsets: np.ndarray | None = None) -> np.ndarray:
    """Exponential time surfaces: ``exp(-(t_ref - t_last) / tau)`` per pooled cell and polarity.

    The time surface of Lagorce, Orchard, Galluppi, Shi & Benosman, "HOTS: a hierarchy of
    event-based time-surfaces for pattern recognition", IEEE TPAMI 39(7), 2017, taken over the
    whole sensor as ``tonic.transforms.ToTimesurface`` does: ``t_last`` is the time of the cell's
    latest event at or before ``t_ref`` (a pooled cell takes its most recent pixel, i.e. the
    maximum of the pixels' surfaces); a cell without one is 0.

    Parameters
    ----------
    events
        Events sorted by ``t``.
    shape
        Sensor (H, W).
    t_ref_us
        Time of the surface (µs): a scalar, or (R,) one per row with offsets (events after a
        row's ``t_ref`` are ignored).
    tau_us
        Decay time constant (µs).
    pool
        (py, px) pooling.
    offsets
        Row offsets from :func:`bin_rows`; only a row's own events enter its surface.

    Returns
    -------
    numpy.ndarray
        float32, (2 H' W',) or (R, 2 H' W'), layout (p, y', x') as :func:`count_maps`.
    """
    if tau_us <= 0:
        raise ValueError(f"tau_us must be > 0, got {tau_us}")
    ev, row, n_rows = _rows(events, offsets)
    t_ref = np.broadcast_to(np.asarray(t_ref_us, dtype=np.float64), (n_rows,))
    cell, n_cells = _cell(ev, shape, pool)
    t = ev["t"].astype(np.float64)
    keep = t <= t_ref[row]
    last = np.full(n_rows * n_cells, -np.inf)
    np.maximum.at(last, (row * n_cells + cell)[keep], t[keep])
    out = np.exp((last.reshape(n_rows, n_cells) - t_ref[:, None]) / tau_us).astype(np.float32)
    return out if offsets is not None else out[0]


def voxel_grid(events: np.ndarray, shape: tuple[int, int], n_bins: int, t0_us: float | np.ndarray,
               t1_us: float | np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Voxel grid with bilinear interpolation in time (Zhu, Yuan, Chaney & Daniilidis,
    "Unsupervised event-based learning of optical flow, depth, and egomotion", CVPR 2019, eq. 2).

    ``V(x, y, b) = sum_i p_i max(0, 1 - |b - t*_i|)`` with ``p_i = +1`` (ON) or ``-1`` (OFF)
    and ``t*_i = (B - 1) (t_i - t0) / (t1 - t0)``: an event at t0 falls in bin 0, one at t1 in
    bin B - 1. (``tonic.transforms.ToVoxelGrid`` scales by B instead of B - 1 over the sample's
    first-to-last event and so drops its last event; see ``docs/dvs_sim.md``.)

    Parameters
    ----------
    events
        Events sorted by ``t``.
    shape
        Sensor (H, W).
    n_bins
        B >= 2.
    t0_us, t1_us
        The window (µs): scalars, or (R,) per row with offsets; events outside it add nothing.
    offsets
        Row offsets from :func:`bin_rows`.

    Returns
    -------
    numpy.ndarray
        float32, (B H W,) or (R, B H W), layout (bin, y, x).
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    ev, row, n_rows = _rows(events, offsets)
    h, w = shape
    t0 = np.broadcast_to(np.asarray(t0_us, dtype=np.float64), (n_rows,))
    t1 = np.broadcast_to(np.asarray(t1_us, dtype=np.float64), (n_rows,))
    if np.any(t1 <= t0):
        raise ValueError("voxel_grid: the window must have t1_us > t0_us")
    cell, _ = _cell(ev, shape, (1, 1))
    pix = cell % (h * w)
    ts = (n_bins - 1) * (ev["t"] - t0[row]) / (t1[row] - t0[row])
    pol = np.where(ev["p"], 1.0, -1.0)
    b0 = np.floor(ts)
    frac = ts - b0
    n_vox = n_bins * h * w
    out = np.zeros(n_rows * n_vox)
    for b, wt in ((b0, 1.0 - frac), (b0 + 1, frac)):
        ok = (b >= 0) & (b < n_bins) & (wt > 0)
        idx = row[ok] * n_vox + b[ok].astype(np.int64) * (h * w) + pix[ok]
        out += np.bincount(idx, weights=pol[ok] * wt[ok], minlength=n_rows * n_vox)
    out = out.reshape(n_rows, n_vox).astype(np.float32)
    return out if offsets is not None else out[0]

