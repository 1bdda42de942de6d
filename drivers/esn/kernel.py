"""Compiled time loops of the leaky echo-state network.

The update (Jaeger 2001; Lukoševičius 2012, eq. 2-3) is

    x[t] = (1 - a) x[t-1] + a tanh(W x[t-1] + W_in u[t] + b)

and the whole loop over the samples of a block runs inside one numba function.

Single sequences use W in SELL-16 format (Kreutzer et al. 2014, "A unified sparse
matrix data format for efficient general sparse matrix-vector multiplication on
modern processors with wide SIMD units", SIAM J. Sci. Comput. 36:C401): units are
renumbered by decreasing in-degree and grouped 16 at a time, and each slice stores
its non-zeros column by column, so that the inner loop updates 16 accumulators with
SIMD instructions and needs no horizontal reduction. Batches of independent
sequences keep a state matrix (units × batch) and vectorise over the batch.

The internal state lives in the permuted order; the driver translates to and from
the original unit order. All loops are deterministic: the same inputs give the same
bits, whatever the number of threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from numba import prange
from numba.core import types
from numba.extending import overload

SLICE = 16


def _tanh(x):  # pragma: no cover - replaced by the overload inside numba
    return math.tanh(x)


@overload(_tanh, inline="always", fastmath=True)
def _tanh_overload(x):
    """tanh for numba: a vectorisable rational approximation in float32, libm in float64.

    The float32 approximation is the [13/6] rational fit used by Eigen's ``ptanh``
    (absolute error ≤ 3e-7 on the whole line, saturating beyond ±7.9); it lets LLVM
    vectorise the activation, which libm's scalar ``tanhf`` prevents.
    """
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            c = np.float32(7.90531110763549805)
            x = min(max(x, -c), c)
            x2 = x * x
            p = np.float32(-2.76076847742355e-16)
            p = p * x2 + np.float32(2.00018790482477e-13)
            p = p * x2 + np.float32(-8.60467152213735e-11)
            p = p * x2 + np.float32(5.12229709037114e-08)
            p = p * x2 + np.float32(1.48572235717979e-05)
            p = p * x2 + np.float32(6.37261928875436e-04)
            p = p * x2 + np.float32(4.89352455891786e-03)
            q = np.float32(1.19825839466702e-06)
            q = q * x2 + np.float32(1.18534705686654e-04)
            q = q * x2 + np.float32(2.26843463243900e-03)
            q = q * x2 + np.float32(4.89352518554385e-03)
            return x * p / q
        return impl
    return lambda x: math.tanh(x)


@dataclass
class SellMatrix:
    """W in SELL-16 format, rows and columns renumbered by ``perm``.

    Attributes
    ----------
    slice_ptr : ndarray of int64, shape (n_slices + 1,)
        Slice ``s`` owns rows ``slice_ptr[s]:slice_ptr[s+1]`` of ``idx``/``val``.
    idx, val : ndarray, shape (n_entries, 16)
        Column (in permuted numbering) and value of each stored entry; padding has
        value 0 and column 0.
    indptr, indices, data : ndarray
        The same permuted matrix in CSR (used by the batched kernel).
    perm : ndarray of int64, shape (n_units,)
        ``perm[p]`` is the original unit stored at position ``p``.
    """

    slice_ptr: np.ndarray
    idx: np.ndarray
    val: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    perm: np.ndarray

    @property
    def n_padded(self) -> int:
        return (self.slice_ptr.size - 1) * SLICE

    @classmethod
    def from_csr(cls, w: sp.csr_array, dtype: np.dtype) -> SellMatrix:
        n = w.shape[0]
        w = sp.csr_array(w)
        degree = np.diff(w.indptr)
        perm = np.argsort(-degree, kind="stable").astype(np.int64)
        wp = sp.csr_array(w[perm][:, perm])
        wp.sort_indices()
        index_dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
        n_slices = (n + SLICE - 1) // SLICE
        deg = np.zeros(n_slices * SLICE, dtype=np.int64)
        deg[:n] = np.diff(wp.indptr)
        width = deg.reshape(n_slices, SLICE).max(axis=1)
        slice_ptr = np.concatenate([[0], np.cumsum(width)]).astype(np.int64)
        idx = np.zeros((slice_ptr[-1], SLICE), dtype=index_dtype)
        val = np.zeros((slice_ptr[-1], SLICE), dtype=dtype)
        # entry k of row r goes to (slice_ptr[r // 16] + k, r % 16)
        rows = np.repeat(np.arange(n), deg[:n])
        k_in_row = np.arange(wp.nnz) - wp.indptr[rows]
        out_rows = slice_ptr[rows // SLICE] + k_in_row
        idx[out_rows, rows % SLICE] = wp.indices
        val[out_rows, rows % SLICE] = wp.data
        return cls(slice_ptr, idx, val, wp.indptr.astype(np.int64), wp.indices.astype(index_dtype),
                   wp.data.astype(dtype), perm)


@numba.njit(fastmath=True, cache=True, inline="always")
def _step_slices(s_begin, s_end, s_stride, slice_ptr, idx, val, w_in_t, bias, u_t, x_old, x_new, leak, acc):
    n_in = w_in_t.shape[0]
    one = x_old.dtype.type(1.0)
    for s in range(s_begin, s_end, s_stride):
        base = s * 16
        for c in range(16):
            acc[c] = bias[base + c]
        for k in range(n_in):
            uk = u_t[k]
            for c in range(16):
                acc[c] += w_in_t[k, base + c] * uk
        for r in range(slice_ptr[s], slice_ptr[s + 1]):
            for c in range(16):
                acc[c] += val[r, c] * x_old[idx[r, c]]
        for c in range(16):
            x_new[base + c] = (one - leak) * x_old[base + c] + leak * _tanh(acc[c])


@numba.njit(fastmath=True, cache=True, inline="always")
def _scatter_out(x, position, out_t):
    for i in range(out_t.size):
        out_t[i] = x[position[i]]


@numba.njit(fastmath=True, cache=True)
def run_sequence(slice_ptr, idx, val, w_in_t, bias, u, x, leak, position, out):
    """Run one sequence; ``x`` (permuted, padded) is updated in place to the last state."""
    n_slices = slice_ptr.size - 1
    acc = np.empty(16, dtype=x.dtype)
    x_old = x.copy()
    x_new = np.empty_like(x)
    for t in range(u.shape[0]):
        _step_slices(0, n_slices, 1, slice_ptr, idx, val, w_in_t, bias, u[t], x_old, x_new, leak, acc)
        _scatter_out(x_new, position, out[t])
        x_old, x_new = x_new, x_old
    x[:] = x_old


@numba.njit(fastmath=True, cache=True, parallel=True)
def run_sequence_parallel(slice_ptr, idx, val, w_in_t, bias, u, x, leak, position, out, n_threads):
    """As :func:`run_sequence`, slices split over ``n_threads`` threads at every step."""
    n_slices = slice_ptr.size - 1
    acc = np.empty((n_threads, 16), dtype=x.dtype)
    x_old = x.copy()
    x_new = np.empty_like(x)
    for t in range(u.shape[0]):
        for th in prange(n_threads):
            _step_slices(th, n_slices, n_threads, slice_ptr, idx, val, w_in_t, bias, u[t], x_old, x_new,
                         leak, acc[th])
        _scatter_out(x_new, position, out[t])
        x_old, x_new = x_new, x_old
    x[:] = x_old


@numba.njit(fastmath=True, cache=True, inline="always")
def _step_rows_batch(i_begin, i_end, indptr, indices, data, w_in_t, bias, u, t, x_old, x_new, leak, acc):
    n_in = w_in_t.shape[0]
    n_batch = x_old.shape[1]
    one = x_old.dtype.type(1.0)
    for i in range(i_begin, i_end):
        for b in range(n_batch):
            acc[b] = bias[i]
        for k in range(n_in):
            w = w_in_t[k, i]
            for b in range(n_batch):
                acc[b] += w * u[b, t, k]
        for r in range(indptr[i], indptr[i + 1]):
            w = data[r]
            j = indices[r]
            for b in range(n_batch):
                acc[b] += w * x_old[j, b]
        for b in range(n_batch):
            x_new[i, b] = (one - leak) * x_old[i, b] + leak * _tanh(acc[b])


@numba.njit(fastmath=True, cache=True, parallel=True)
def run_batch(indptr, indices, data, w_in_t, bias, u, x, leak, position, out, n_threads):
    """Run ``B`` independent sequences ``u`` (B, T, n_in) through the same network.

    ``x`` has shape (n_padded, B), permuted order, and is updated in place.
    """
    n_rows = indptr.size - 1
    n_batch = x.shape[1]
    acc = np.empty((n_threads, n_batch), dtype=x.dtype)
    x_old = x.copy()
    x_new = np.zeros_like(x)
    chunk = (n_rows + n_threads - 1) // n_threads
    for t in range(u.shape[1]):
        for th in prange(n_threads):
            i0 = th * chunk
            i1 = min(n_rows, i0 + chunk)
            _step_rows_batch(i0, i1, indptr, indices, data, w_in_t, bias, u, t, x_old, x_new, leak, acc[th])
        for b in range(n_batch):
            for i in range(position.size):
                out[b, t, i] = x_new[position[i], b]
        x_old, x_new = x_new, x_old
    x[:] = x_old
