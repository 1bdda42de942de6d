"""The SELL-16 recurrent term (``kernel._sell_rows``) against a plain numpy evaluation."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from labbench.drivers.esn import kernel


@numba.njit
def _slice_terms(slice_ptr, idx, val, x, out):
    acc = np.zeros(16, dtype=x.dtype)
    for s in range(slice_ptr.size - 1):
        acc[:] = 0
        kernel._sell_rows(x, idx, val, slice_ptr[s], slice_ptr[s + 1], acc)
        out[s * 16:(s + 1) * 16] = acc


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("index_dtype", [np.uint16, np.int32, np.uint32])
def test_sell_rows_is_the_sparse_product(dtype, index_dtype):
    rng = np.random.default_rng(3)
    n = 203  # not a multiple of 16: the last slice is padded
    w = sp.random_array((n, n), density=0.07, rng=rng, format="csr", dtype=np.float64)
    w[0, :] = 0  # an empty row
    w.eliminate_zeros()
    mat = kernel.SellMatrix.from_csr(w, np.dtype(dtype))
    x = np.zeros(mat.n_padded, dtype=dtype)
    x[:n] = rng.uniform(-1, 1, n)
    out = np.full(mat.n_padded, np.nan, dtype=dtype)
    _slice_terms(mat.slice_ptr, mat.idx.astype(index_dtype), mat.val, x, out)
    wp = w[mat.perm][:, mat.perm]
    want = wp @ x[:n].astype(np.float64)
    np.testing.assert_allclose(out[:n], want, rtol=0, atol=1e-5 if dtype == "float32" else 1e-13)
    assert np.all(out[n:] == 0)  # padding rows stay at their initial value
