"""Pool a row stream into one feature vector per sequence, for classification readouts.

A classification task (spoken digits, images shown for a while) presents each sample as
a *sequence* of rows; the readout classifies the sequence, not each row. The run store
holds a ``sequence`` column (the sample index of each row, ``-1`` for rest rows between
samples); :func:`pool_sequences` turns the rows of complete sequences into one row each.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["POOLINGS", "pool_sequences"]

Pooling = Literal["last", "mean", "sum", "slices"]
#: Accepted values of ``how``.
POOLINGS: tuple[str, ...] = ("last", "mean", "sum", "slices")


def pool_sequences(
    X: np.ndarray, sequence: np.ndarray, how: Pooling = "mean", n_slices: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """One feature vector per sequence.

    Parameters
    ----------
    X : ndarray, shape (n_rows, n_features)
        Row features.
    sequence : ndarray of int, shape (n_rows,)
        Sequence index of each row; rows with a negative index (rest between samples)
        are ignored. Rows of one sequence must be contiguous.
    how : {"last", "mean", "sum", "slices"}
        ``"last"``: the last row of the sequence (the reservoir state after the whole
        sample); ``"mean"``: the time average; ``"sum"``: the total (spike counts);
        ``"slices"``: the means over ``n_slices`` equal time slices, concatenated
        (keeps coarse temporal order, as in spoken-digit benchmarks).
    n_slices : int
        Number of slices for ``how="slices"``.

    Returns
    -------
    pooled : ndarray, shape (n_sequences, n_features) or (n_sequences, n_slices * n_features)
    ids : ndarray of int, shape (n_sequences,)
        The sequence index of each pooled row, in order of appearance.
    """
    X = np.asarray(X)
    seq = np.asarray(sequence).ravel()
    if X.ndim != 2 or len(seq) != len(X):
        raise ValueError(f"pool_sequences: X must be 2-D with one sequence id per row, got X {X.shape}, "
                         f"sequence {seq.shape}")
    if how not in POOLINGS:
        raise ValueError(f"pooling {how!r} is not one of {POOLINGS}")
    keep = seq >= 0
    X, seq = X[keep], seq[keep]
    if len(seq) == 0:
        width = X.shape[1] * (n_slices if how == "slices" else 1)
        return np.empty((0, width)), np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    ids = seq[starts].astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise ValueError("pool_sequences: the rows of a sequence are not contiguous")
    ends = np.r_[starts[1:], len(seq)]
    Xf = X.astype(np.float64, copy=False)
    if how == "last":
        return Xf[ends - 1].copy(), ids
    if how in ("mean", "sum"):
        sums = np.add.reduceat(Xf, starts, axis=0)
        return (sums / (ends - starts)[:, None] if how == "mean" else sums), ids
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    out = np.empty((len(starts), n_slices * X.shape[1]))
    for i, (a, b) in enumerate(zip(starts, ends)):  # one iteration per sequence, not per row
        edges = a + np.floor(np.linspace(0, b - a, n_slices + 1)).astype(np.int64)
        edges[1:] = np.maximum(edges[1:], edges[:-1] + 1).clip(max=b)
        for k in range(n_slices):
            lo, hi = edges[k], max(edges[k + 1], edges[k] + 1)
            out[i, k * X.shape[1]:(k + 1) * X.shape[1]] = Xf[min(lo, b - 1):min(hi, b)].mean(axis=0)
    return out, ids
