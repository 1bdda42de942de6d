"""Compiled time loops of the leaky echo-state network.

The update (Jaeger 2001; Lukoševičius 2012, eq. 2-3) is

    x[t] = (1 - a) x[t-1] + a tanh(W x[t-1] + W_in u[t] + b)

and the whole loop over the samples of a block runs inside one numba function.

Single sequences use W in SELL-16 format (Kreutzer et al. 2014, "A unified sparse
matrix data format for efficient general sparse matrix-vector multiplication on
modern processors with wide SIMD units", SIAM J. Sci. Comput. 36:C401): units are
renumbered by decreasing in-degree and grouped 16 at a time, and each slice stores
its non-zeros column by column, so that the inner loop updates 16 accumulators with
SIMD instructions and needs no horizontal reduction; the state lives in that permuted
order and the driver translates to and from the original unit order.
The product of a slice is emitted as LLVM IR (:func:`_sell_rows`): accumulators in
registers, indices and state read by scalar loads, one vector fma per 8 (float32) or 4
(float64) lanes and row.

Batches of independent sequences are cut into panels of W sequences (state
(2, n_panels, N, W), original unit order) and vectorise over the W lanes of a panel with
W in column-blocked CSR; see the comment above :func:`batch_width`. All loops are deterministic: the same network, inputs and
number of threads give the same bits (the serial and the threaded loop are compiled
separately and may differ in the last bit).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

SLICE = 16


def _tanh(x):  # pragma: no cover - replaced by the overload inside numba
    return math.tanh(x)


@overload(_tanh, inline="always", fastmath=True)
def _tanh_overload(x):
    """tanh for numba in arithmetic LLVM can vectorise (libm's scalar tanh prevents it).

    float32: the [13/6] rational fit used by Eigen's ``ptanh`` (absolute error ≤ 3e-7 on
    the whole line, saturating beyond ±7.9). float64: :func:`_tanh_float64`, within 2 ulp.
    Callers compile with ``error_model="numpy"`` so that the division is not guarded.
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
    if isinstance(x, types.Float) and x.bitwidth == 64:
        return _tanh_float64
    return lambda x: math.tanh(x)


def _tanh_float64(x):
    """tanh in float64 from expm1, in arithmetic that vectorises (≤ 2 ulp from libm's).

    tanh|x| = e / (e + 2) with e = expm1(2|x|); expm1 by Cody-Waite reduction
    2|x| = n ln2 + r, |r| ≤ ln2/2, a degree-13 Taylor polynomial of expm1(r), and
    2**n built from the binary digits of n (0 ≤ n ≤ 58) without integer operations.
    """
    a = min(abs(x), 20.0)  # tanh(20) == 1 in float64
    y = 2.0 * a
    n = np.floor(y * 1.4426950408889634 + 0.5)
    r = (y - n * 0.6931471803691238) - n * 1.9082149292705877e-10
    q = 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    q = q * r + 1.0
    q = q * r  # expm1(r)
    h1 = np.floor(n * 0.5)
    h2 = np.floor(h1 * 0.5)
    h3 = np.floor(h2 * 0.5)
    h4 = np.floor(h3 * 0.5)
    h5 = np.floor(h4 * 0.5)
    h6 = np.floor(h5 * 0.5)
    s = ((1.0 + (n - 2.0 * h1)) * (1.0 + (h1 - 2.0 * h2) * 3.0) * (1.0 + (h2 - 2.0 * h3) * 15.0)
         * (1.0 + (h3 - 2.0 * h4) * 255.0) * (1.0 + (h4 - 2.0 * h5) * 65535.0)
         * (1.0 + (h5 - 2.0 * h6) * 4294967295.0))  # 2**n
    e = s * q + (s - 1.0)  # expm1(2|x|)
    t = e / (e + 2.0)
    return t if x >= 0.0 else -t


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


@intrinsic
def _sell_rows(typingctx, x, idx, val, r0, r1, acc):
    """``acc[c] += sum(val[r, c] * x[idx[r, c]] for r in range(r0, r1))`` for the 16 lanes ``c``.

    The recurrent term of one SELL-16 slice. ``acc`` is loaded once into 32-byte vectors
    (2 for float32, 4 for float64), kept in registers across the rows and stored once;
    each row costs one vector load of ``val`` per accumulator, 16 scalar index loads and
    16 scalar loads of ``x`` assembled into vectors, and one ``llvm.fma`` per
    accumulator. Every lane is one chain of fma in the order of ``r``, as before.
    numba's own loop (with ``acc`` an array) kept the accumulators in memory and loaded
    the indices through wrap-around checks: ~1.6x slower on the AMD Zen 2 of the
    project's machines. AVX2 gathers (``vgatherdps``) are slower still there.
    """
    arrays = (x, idx, val, acc)
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
        return None
    if not (isinstance(x.dtype, types.Float) and val.dtype == x.dtype and acc.dtype == x.dtype
            and isinstance(idx.dtype, types.Integer) and idx.ndim == 2 and val.ndim == 2):
        return None
    sig = types.void(x, idx, val, r0, r1, acc)

    def codegen(context, builder, sig, args):
        x_v, idx_v, val_v, r0_v, r1_v, acc_v = args
        elty, isz, vl, vty = _vector_type(context, x.dtype, SLICE)
        nv = SLICE // vl
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)
        x_p = context.make_array(x)(context, builder, x_v).data
        i_p = context.make_array(idx)(context, builder, idx_v).data
        v_p = context.make_array(val)(context, builder, val_v).data
        a_p = context.make_array(acc)(context, builder, acc_v).data
        lo = context.cast(builder, r0_v, sig.args[3], types.intp)
        hi = context.cast(builder, r1_v, sig.args[4], types.intp)
        widen = builder.sext if idx.dtype.signed else builder.zext
        i_size = context.get_abi_sizeof(context.get_value_type(idx.dtype))

        def const(v):
            return ir.Constant(intp, v)

        def vptr(p, off):
            return builder.bitcast(builder.gep(p, [off], inbounds=True), vty.as_pointer())

        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            "llvm.fma.v%d%s" % (vl, "f32" if x.dtype.bitwidth == 32 else "f64"))
        undef = ir.Constant(vty, ir.Undefined)
        state = [builder.load(vptr(a_p, const(k * vl)), align=isz) for k in range(nv)]
        pre = builder.basic_block
        loop = builder.append_basic_block("sell.loop")
        after = builder.append_basic_block("sell.after")
        builder.cbranch(builder.icmp_signed("<", lo, hi), loop, after)
        builder.position_at_end(loop)
        r = builder.phi(intp)
        cur = [builder.phi(vty) for _ in state]
        base = builder.mul(r, const(SLICE))
        new = []
        for k in range(nv):
            xs = undef
            for lane in range(vl):
                at = builder.gep(i_p, [builder.add(base, const(k * vl + lane))], inbounds=True)
                j = widen(builder.load(at, align=i_size), intp)
                xs = builder.insert_element(xs, builder.load(builder.gep(x_p, [j], inbounds=True), align=isz),
                                            ir.Constant(i32, lane))
            w = builder.load(vptr(v_p, builder.add(base, const(k * vl))), align=isz)
            new.append(builder.call(fma, [w, xs, cur[k]]))
        r_next = builder.add(r, const(1))
        end = builder.basic_block
        r.add_incoming(lo, pre)
        r.add_incoming(r_next, end)
        for phi, v0, v1 in zip(cur, state, new):
            phi.add_incoming(v0, pre)
            phi.add_incoming(v1, end)
        builder.cbranch(builder.icmp_signed("<", r_next, hi), loop, after)
        builder.position_at_end(after)
        final = []
        for v0, v1 in zip(state, new):
            phi = builder.phi(vty)
            phi.add_incoming(v0, pre)
            phi.add_incoming(v1, end)
            final.append(phi)
        for k, v in enumerate(final):
            builder.store(v, vptr(a_p, const(k * vl)), align=isz)
        return context.get_dummy_value()

    return sig, codegen


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
        _sell_rows(x_old, idx, val, slice_ptr[s], slice_ptr[s + 1], acc)
        for c in range(16):
            x_new[base + c] = (one - leak) * x_old[base + c] + leak * _tanh(acc[c])


@numba.njit(fastmath=True, cache=True, inline="always")
def _scatter_out(x, position, out_t):
    for i in range(out_t.size):
        out_t[i] = x[position[i]]


@numba.njit(fastmath=True, cache=True, error_model="numpy")
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


@numba.njit(fastmath=True, cache=True, parallel=True, error_model="numpy")
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


# ---------------------------------------------------------------------------------------
# Batches of independent sequences
#
# A batch is cut into panels of W sequences (W = 8 to 64 float32, 4 to 32 float64). The
# state is an array (2, n_panels, n_units, W), units in the original order: a step reads
# one buffer and writes the other, and row i of a panel holds the W lanes of unit i
# contiguously. The product with the sparse matrix is then, for each non-zero w = W[i, j],
# ``acc[i, :] += w * x[j, :]``: one broadcast and W/8 (float32) or W/4 (float64) fused
# multiply-adds on 32-byte vectors with the accumulators in registers for the whole row.
# Numba/LLVM does not produce that loop from Python: with a run-time batch size the
# inner loop over the batch is vectorised but the accumulators live in memory (a load and
# a store per vector and term: the former kernel), and with a fixed width a stack buffer
# of accumulators gets partly split into scalars. The loop is therefore emitted as LLVM
# IR (:func:`_fma_rows`), as is the transposition of the new states into the (B, T, N)
# output (:func:`_store_transposed`: scalar stores to B rows of the output per unit
# thrashed the TLB and cost as much as the product). The functions use
# ``error_model="numpy"``: numba's default inserts a zero-division check in the tanh's
# rational function, which keeps the activation loop scalar.
#
# The columns are cut into blocks so that the slice of the state read by a block stays in
# cache; the non-zeros are sorted by (block, row, column). Narrow panels update 2, 4 or 8
# rows together so that 8 independent vector chains hide the fma latency. In every
# configuration each lane computes exactly the same IEEE operations: b_i, plus
# W_in[i, k] u_k in increasing k (multiply, then add), plus W[i, j] x_j as one chain of
# fma in increasing j, then the leaky tanh, with no fast-math reassociation. The bits do
# not depend on the panel width, the column blocks, the number of threads or the split of
# rows between them.

_VEC_BYTES = 32  # ymm registers; 2 fma per cycle on AVX2 and AVX-512 cores alike
_BATCH_WIDTHS = {4: (8, 16, 32, 64), 8: (4, 8, 16, 32)}  # panel widths by itemsize (≤ 256-byte rows)
_BLOCK_BYTES = 32 * 1024  # slice of the state read by one column block
_MIN_SEGMENT = 24  # but blocks keep at least this many non-zeros per row on average
_ROW_TILE_BYTES = 256 * 1024  # accumulators of the rows that go through all column blocks together
_PARALLEL_MIN_WORK = 1 << 21  # lane-updates (nnz × lanes × steps) below which threads do not pay
_SPLIT_ROWS_MIN_WORK = 1 << 22  # per step, to split rows between threads (a fork/join per step)


def batch_width(n_batch: int, dtype, n_threads: int = 1) -> int:
    """Panel width for ``n_batch`` sequences: wide enough to hold them (or their share of
    the threads, so that threads can take whole panels), at most 256 bytes a row."""
    widths = _BATCH_WIDTHS[np.dtype(dtype).itemsize]
    share = -(-n_batch // max(1, n_threads))
    for w in widths:
        if share <= w:
            return w
    return widths[-1]


def _rows_together(width: int, dtype) -> int:
    """Rows updated together so that 8 vector accumulators are in flight."""
    n_vectors = max(1, width * np.dtype(dtype).itemsize // _VEC_BYTES)
    return max(1, 8 // n_vectors)


@dataclass
class BatchMatrix:
    """W in column-blocked CSR for :func:`run_batch`, original unit order.

    Attributes
    ----------
    ptr : ndarray of int64, shape (n_blocks * n_units + 1,)
        Row ``i`` of column block ``b`` owns ``ptr[b * n + i]:ptr[b * n + i + 1]``.
    indices, data : ndarray
        Column and value of the non-zeros, sorted by (block, row, column).
    n_blocks : int
    width : int
        Panel width the blocks were sized for (any width gives the same results).
    """

    ptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_blocks: int
    width: int
    _splits: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_csr(cls, w: sp.csr_array, dtype, width: int) -> BatchMatrix:
        w = sp.csr_array(w)
        w.sort_indices()
        n = w.shape[0]
        dtype = np.dtype(dtype)
        density = w.nnz / max(1, n * n)
        cols = max(_BLOCK_BYTES // (width * dtype.itemsize), int(math.ceil(_MIN_SEGMENT / max(density, 1e-12))))
        cols = max(1, min(cols, n))
        n_blocks = -(-n // cols)
        rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(w.indptr))
        key = (w.indices.astype(np.int64) // cols) * n + rows
        order = np.argsort(key, kind="stable")  # columns stay sorted inside a row
        ptr = np.zeros(n_blocks * n + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=n_blocks * n), out=ptr[1:])
        index_dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
        return cls(ptr, w.indices[order].astype(index_dtype), w.data[order].astype(dtype), n_blocks, width)

    def row_split(self, n_parts: int) -> np.ndarray:
        """Row boundaries giving each of ``n_parts`` threads about the same work."""
        if n_parts not in self._splits:
            n = (self.ptr.size - 1) // self.n_blocks
            work = np.diff(self.ptr).reshape(self.n_blocks, n).sum(axis=0) + 4  # + per-row cost
            cum = np.concatenate([[0], np.cumsum(work)])
            split = np.searchsorted(cum, np.linspace(0, cum[-1], n_parts + 1)).astype(np.int64)
            split[0], split[-1] = 0, n
            self._splits[n_parts] = np.maximum.accumulate(split)
        return self._splits[n_parts]


def aligned_zeros(shape, dtype, align: int = 64) -> np.ndarray:
    """Zero array whose data starts on an ``align``-byte boundary (whole cache lines)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    buf = np.zeros(size + align, dtype=np.uint8)
    offset = (-buf.ctypes.data) % align
    return buf[offset:offset + size].view(dtype).reshape(shape)


def _vector_type(context, dtype, width):
    elty = context.get_value_type(dtype)
    isz = context.get_abi_sizeof(elty)
    vl = max(1, min(width, _VEC_BYTES // isz))
    return elty, isz, vl, ir.VectorType(elty, vl)


def _check_float_arrays(*arrays):
    return all(isinstance(a, types.Array) and a.layout == "C" for a in arrays) and \
        isinstance(arrays[0].dtype, types.Float) and all(a.dtype == arrays[0].dtype for a in arrays)


@intrinsic
def _fma_rows(typingctx, x, dst_off, src_off, data, indices, ptr, base, i, n_rows, width):
    """Recurrent term of rows ``i .. i + n_rows - 1`` for one column block.

    For each of these rows ``q``: ``x[dst_off + q*W:][:W] += sum(data[r] *
    x[src_off + indices[r]*W:][:W] for r in range(ptr[base + q], ptr[base + q + 1]))``,
    ``x`` and ``data`` C-contiguous arrays of one float dtype used as flat memory (the
    two regions of ``x`` must not overlap), ``n_rows`` and ``width`` (W) literal ints.
    The accumulators are loaded once, kept in vector registers and stored once; every
    lane is one chain of ``llvm.fma`` in the order of ``r`` (no reassociation, no
    contraction choice left to the compiler). The rows advance together while all have
    terms left, then each finishes alone.
    """
    if not isinstance(width, types.IntegerLiteral) or not isinstance(n_rows, types.IntegerLiteral):
        return None
    if not _check_float_arrays(x, data):
        return None
    if not all(isinstance(a, types.Array) and a.layout == "C" and isinstance(a.dtype, types.Integer)
               for a in (indices, ptr)):
        return None
    W = width.literal_value
    R = n_rows.literal_value
    sig = types.void(x, dst_off, src_off, data, indices, ptr, base, i, n_rows, width)

    def codegen(context, builder, sig, args):
        x_v, dst_v, src_v, data_v, ind_v, ptr_v, base_v, i_v, _, _ = args
        elty, isz, vl, vty = _vector_type(context, x.dtype, W)
        nv = W // vl
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)

        def as_intp(v, t):
            return context.cast(builder, v, t, types.intp)

        def const(v):
            return ir.Constant(intp, v)

        x_p = context.make_array(x)(context, builder, x_v).data
        d_p = context.make_array(data)(context, builder, data_v).data
        i_p = context.make_array(indices)(context, builder, ind_v).data
        p_p = context.make_array(ptr)(context, builder, ptr_v).data
        dst = as_intp(dst_v, sig.args[1])
        src = as_intp(src_v, sig.args[2])
        row0 = builder.add(as_intp(base_v, sig.args[6]), as_intp(i_v, sig.args[7]))
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty, vty, vty]),
            "llvm.fma.v%d%s" % (vl, "f32" if x.dtype.bitwidth == 32 else "f64"))
        splat = ir.Constant(ir.VectorType(i32, vl), [0] * vl)
        undef = ir.Constant(vty, ir.Undefined)

        def vptr(off):
            return builder.bitcast(builder.gep(x_p, [off], inbounds=True), vty.as_pointer())

        def term(r, acc):
            w = builder.load(builder.gep(d_p, [r], inbounds=True))
            j = as_intp(builder.load(builder.gep(i_p, [r], inbounds=True)), indices.dtype)
            row = builder.add(src, builder.mul(j, const(W)))
            wv = builder.shuffle_vector(builder.insert_element(undef, w, ir.Constant(i32, 0)), undef, splat)
            return [builder.call(fma, [wv, builder.load(vptr(builder.add(row, const(k * vl))), align=isz), acc[k]])
                    for k in range(nv)]

        def counted_loop(lo, hi, state, body):
            """``for s in range(lo, hi): state = body(s, state)`` as one basic block with phis."""
            pre = builder.basic_block
            loop = builder.append_basic_block("rows.loop")
            after = builder.append_basic_block("rows.after")
            builder.cbranch(builder.icmp_signed("<", lo, hi), loop, after)
            builder.position_at_end(loop)
            s = builder.phi(intp)
            cur = [builder.phi(vty) for _ in state]
            new = body(s, cur)
            s_next = builder.add(s, const(1))
            end = builder.basic_block
            s.add_incoming(lo, pre)
            s.add_incoming(s_next, end)
            for c, v0, v1 in zip(cur, state, new):
                c.add_incoming(v0, pre)
                c.add_incoming(v1, end)
            builder.cbranch(builder.icmp_signed("<", s_next, hi), loop, after)
            builder.position_at_end(after)
            out = []
            for v0, v1 in zip(state, new):
                f = builder.phi(vty)
                f.add_incoming(v0, pre)
                f.add_incoming(v1, end)
                out.append(f)
            return out

        bounds = [as_intp(builder.load(builder.gep(p_p, [builder.add(row0, const(q))], inbounds=True)), ptr.dtype)
                  for q in range(R + 1)]
        a_off = [builder.add(dst, builder.mul(as_intp(i_v, sig.args[7]), const(W)))]
        for q in range(1, R):
            a_off.append(builder.add(a_off[0], const(q * W)))
        state = [builder.load(vptr(builder.add(a_off[q], const(k * vl))), align=isz)
                 for q in range(R) for k in range(nv)]
        common = None
        if R > 1:  # all rows advance together for the length of the shortest segment
            for q in range(R):
                length = builder.sub(bounds[q + 1], bounds[q])
                common = length if common is None else builder.select(
                    builder.icmp_signed("<", length, common), length, common)

            def joint(s, cur):
                new = []
                for q in range(R):
                    new += term(builder.add(bounds[q], s), cur[q * nv:(q + 1) * nv])
                return new

            state = counted_loop(const(0), common, state, joint)
        for q in range(R):  # the rest of each row
            lo = bounds[q] if common is None else builder.add(bounds[q], common)
            state[q * nv:(q + 1) * nv] = counted_loop(lo, bounds[q + 1], state[q * nv:(q + 1) * nv], term)
        for q in range(R):
            for k in range(nv):
                builder.store(state[q * nv + k], vptr(builder.add(a_off[q], const(k * vl))), align=isz)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _store_transposed(typingctx, x, x_off, width, out, out_off, out_stride, n_lanes):
    """``out[out_off + c * out_stride + r] = x[x_off + r * W + c]`` for ``r < V``, ``c < min(V, n_lanes)``.

    One ``V`` × ``V`` block (``V`` lanes of a 32-byte vector): the states of ``V``
    consecutive units for ``V`` sequences, transposed in registers (log2 V rounds of
    interleaves) so that each sequence's row of the output receives one vector store
    instead of ``V`` scalar ones.
    """
    if not isinstance(width, types.IntegerLiteral) or not _check_float_arrays(x, out):
        return None
    W = width.literal_value
    sig = types.void(x, x_off, width, out, out_off, out_stride, n_lanes)

    def codegen(context, builder, sig, args):
        x_v, x_off_v, _, out_v, o_off_v, o_str_v, nl_v = args
        elty, isz, vl, vty = _vector_type(context, x.dtype, W)
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)

        def as_intp(v, t):
            return context.cast(builder, v, t, types.intp)

        x_p = context.make_array(x)(context, builder, x_v).data
        o_p = context.make_array(out)(context, builder, out_v).data
        x_off_i = as_intp(x_off_v, sig.args[1])
        o_off_i = as_intp(o_off_v, sig.args[4])
        o_str_i = as_intp(o_str_v, sig.args[5])
        nl_i = as_intp(nl_v, sig.args[6])
        half = vl // 2
        lo = ir.Constant(ir.VectorType(i32, vl), [m for k in range(half) for m in (k, vl + k)])
        hi = ir.Constant(ir.VectorType(i32, vl), [m for k in range(half, vl) for m in (k, vl + k)])

        def vptr(base, off):
            return builder.bitcast(builder.gep(base, [off], inbounds=True), vty.as_pointer())

        rows = [builder.load(vptr(x_p, builder.add(x_off_i, ir.Constant(intp, r * W))), align=isz)
                for r in range(vl)]
        for _ in range(vl.bit_length() - 1):  # perfect shuffle: after log2(vl) rounds rows[c][r] = x[r, c]
            nxt = []
            for m in range(half):
                nxt.append(builder.shuffle_vector(rows[m], rows[m + half], lo))
                nxt.append(builder.shuffle_vector(rows[m], rows[m + half], hi))
            rows = nxt
        for c in range(vl):
            cc = ir.Constant(intp, c)
            with builder.if_then(builder.icmp_signed("<", cc, nl_i), likely=True):
                builder.store(rows[c], vptr(o_p, builder.add(o_off_i, builder.mul(cc, o_str_i))), align=isz)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, error_model="numpy")
def _step_rows_batch(i_begin, i_end, p, t, ptr, n_blocks, indices, data, w_in_t, bias, u, x, src, leak, out,
                     n_valid, width, rows):
    """One step of panel ``p`` for the units ``i_begin:i_end``: ``x[src]`` → ``x[1 - src]``.

    ``x`` is (2, n_panels, n, width), ``u`` (n_panels, T, n_in, width); the new states of
    the first ``n_valid`` lanes also go to ``out[p * width + lane, t, i]``. ``width`` and
    ``rows`` (rows updated together) are literals. No fast-math, so that every lane is
    computed with the same IEEE operations whatever the width, the rows or the thread.
    """
    n = x.shape[2]
    n_panels = x.shape[1]
    n_in = w_in_t.shape[0]
    dst = 1 - src
    keep = x.dtype.type(1.0) - leak
    src_off = (src * n_panels + p) * n * width
    dst_off = (dst * n_panels + p) * n * width
    lane0 = p * width
    n_steps = out.shape[1]
    vl = max(1, min(width, _VEC_BYTES // x.itemsize))
    x_old = x[src, p].reshape(n * width)
    x_new = x[dst, p].reshape(n * width)
    # tiles of rows whose accumulators stay in L2 while the column blocks go by
    tile = max(rows, _ROW_TILE_BYTES // (width * x.itemsize))
    for r0 in range(i_begin, i_end, tile):
        r1 = min(r0 + tile, i_end)
        # bias and input: x[dst, p, i, :] = b[i] + sum_k W_in[i, k] u[p, t, k, :]
        for i in range(r0, r1):
            xd = x[dst, p, i]
            bi = bias[i]
            for c in range(width):
                xd[c] = bi
            for k in range(n_in):
                w = w_in_t[k, i]
                uk = u[p, t, k]
                for c in range(width):
                    xd[c] = xd[c] + w * uk[c]
        # recurrent term, column block by column block
        for b in range(n_blocks):
            i = r0
            while i + rows <= r1:
                _fma_rows(x, dst_off, src_off, data, indices, ptr, b * n, i, rows, width)
                i += rows
            while i < r1:
                _fma_rows(x, dst_off, src_off, data, indices, ptr, b * n, i, 1, width)
                i += 1
        # leaky tanh and output, by groups of 64 units still in L1
        for i0 in range(r0, r1, 64):
            i1 = min(i0 + 64, r1)
            xn = x_new[i0 * width:i1 * width]  # one flat loop from 0: vectorised whatever the width
            xo = x_old[i0 * width:i1 * width]
            for e in range(xn.size):
                xn[e] = keep * xo[e] + leak * _tanh(xn[e])
            # lane block by lane block, so that the stores of a group go to few pages at a time
            i_vec = i0 + (i1 - i0) // vl * vl
            for c0 in range(0, n_valid, vl):
                o_off = ((lane0 + c0) * n_steps + t) * n
                for i in range(i0, i_vec, vl):
                    _store_transposed(x, dst_off + i * width + c0, width, out, o_off + i, n_steps * n, n_valid - c0)
            for j in range(i_vec, i1):
                for c in range(n_valid):
                    out[lane0 + c, t, j] = x[dst, p, j, c]


@functools.lru_cache(maxsize=None)
def _batch_loops(width: int, rows: int):
    """The serial and the threaded time loops for panels of ``width`` lanes.

    ``width`` and ``rows`` are closure constants, i.e. compile-time literals for the
    intrinsics (numba caches closures per value of their cells); passing them through
    ``numba.literally`` instead re-runs type inference at every call (~15 ms). Both
    loops call :func:`_step_rows_batch` with the same argument types, so that it is
    compiled once per width.
    """

    @numba.njit(cache=True, error_model="numpy")
    def serial(ptr, n_blocks, indices, data, w_in_t, bias, u, x, leak, out, row_split):
        n_steps = u.shape[1]
        for p in range(x.shape[1]):
            n_valid = min(width, out.shape[0] - p * width)
            for t in range(n_steps):
                _step_rows_batch(row_split[0], row_split[-1], p, t, ptr, n_blocks, indices, data, w_in_t, bias, u,
                                 x, t & 1, leak, out, n_valid, width, rows)
            if n_steps & 1:
                x[0, p] = x[1, p]

    @numba.njit(cache=True, error_model="numpy", parallel=True)
    def threaded(ptr, n_blocks, indices, data, w_in_t, bias, u, x, leak, out, row_split, n_workers):
        n_steps = u.shape[1]
        n_panels = x.shape[1]
        if n_workers > 0:
            # worker k runs panels k, k + n_workers, ...: independent sequences, no synchronisation
            for k in prange(n_workers):
                for p in range(np.int64(k), n_panels, n_workers):  # int64: one signature of the step
                    n_valid = min(width, out.shape[0] - p * width)
                    for t in range(n_steps):
                        _step_rows_batch(row_split[0], row_split[-1], p, t, ptr, n_blocks, indices, data, w_in_t,
                                         bias, u, x, t & 1, leak, out, n_valid, width, rows)
        else:
            # rows row_split[k]:row_split[k+1] of every step on thread k: a fork/join per step
            for p in range(n_panels):
                n_valid = min(width, out.shape[0] - p * width)
                for t in range(n_steps):
                    for k in prange(row_split.size - 1):
                        _step_rows_batch(row_split[k], row_split[k + 1], p, t, ptr, n_blocks, indices, data,
                                         w_in_t, bias, u, x, t & 1, leak, out, n_valid, width, rows)
        if n_steps & 1:
            for p in range(n_panels):
                x[0, p] = x[1, p]

    return serial, threaded


def run_batch(mat: BatchMatrix, w_in_t, bias, u, x, leak, out, n_threads):
    """Run ``B`` independent sequences through the same network; ``x`` is updated in place.

    Parameters
    ----------
    mat : BatchMatrix
        W in column-blocked CSR, original unit order.
    w_in_t : ndarray, shape (n_in, n)
        Input weights, transposed, original unit order.
    bias : ndarray, shape (n,)
    u : ndarray, shape (n_panels, T, n_in, W)
        Inputs, sequence ``b`` in lane ``b % W`` of panel ``b // W`` (other lanes: anything).
    x : ndarray, shape (2, n_panels, n, W)
        ``x[0]`` holds the state and receives the final state; ``x[1]`` is scratch.
        Any W of :func:`batch_width` works; 64-byte alignment helps.
    leak : scalar of x.dtype
    out : ndarray, shape (B, T, n)
        Receives the states of every step, original unit order.
    n_threads : int
        With several panels, each thread runs whole panels (no synchronisation); with one
        panel and enough work per step, the rows of every step are split between the
        threads (a fork/join per step). Small problems run serially. The bits do not
        depend on it.
    """
    width = x.shape[3]
    n_panels = x.shape[1]
    serial, threaded = _batch_loops(width, _rows_together(width, x.dtype))
    args = (mat.ptr, mat.n_blocks, mat.indices, mat.data, w_in_t, bias, u, x, leak, out)
    per_step = (mat.data.size + x.shape[2]) * width
    n_threads = min(n_threads, numba.config.NUMBA_NUM_THREADS)
    if n_threads <= 1 or per_step * n_panels * u.shape[1] < _PARALLEL_MIN_WORK:
        serial(*args, mat.row_split(1))
    elif n_panels >= 2:
        threaded(*args, mat.row_split(1), min(n_threads, n_panels))
    elif per_step >= _SPLIT_ROWS_MIN_WORK:
        threaded(*args, mat.row_split(n_threads), 0)
    else:
        serial(*args, mat.row_split(1))
