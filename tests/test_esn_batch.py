"""Batched runs of the echo-state network: B independent sequences through one network."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from labbench.drivers.esn import EchoStateNetwork, kernel

TOL = {"float32": 1e-5, "float64": 1e-12}
NET = dict(units=90, n_inputs=2, connectivity=0.15, spectral_radius=1.1, leak=0.4, bias=0.2, seed=7)


def _inputs(n_batch, n_steps, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n_batch, n_steps, 2))


@pytest.fixture
def always_threaded(monkeypatch):
    """Let the threaded loops run even on these small problems."""
    monkeypatch.setattr(kernel, "_PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(kernel, "_SPLIT_ROWS_MIN_WORK", 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_batch", [3, 70])  # one panel; two panels, the second one partly used
def test_batch_equals_each_sequence_alone(dtype, n_batch):
    u = _inputs(n_batch, 40)
    with EchoStateNetwork(**NET, dtype=dtype) as esn:
        batch = esn.run(u).features
        assert batch.shape == (n_batch, 40, NET["units"]) and batch.dtype == np.dtype(dtype)
        for b in range(n_batch):
            esn.reset()
            np.testing.assert_allclose(batch[b], esn.run(u[b]).features, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_carries_across_calls(dtype):
    u = _inputs(5, 50, seed=1)
    with EchoStateNetwork(**NET, dtype=dtype) as esn:
        whole = esn.run(u).features
        esn.reset()
        first = esn.run(u[:, :17]).features  # odd number of steps: the state ends in the scratch buffer
        np.testing.assert_array_equal(esn.get_state(), first[:, -1])
        second = esn.run(u[:, 17:]).features
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), whole)


# 3 sequences: one panel, its rows split between the threads at every step; 64: two panels
# of 32 (with 2 or 3 threads) against one of 64 (1 thread); 70: a partly used panel on a
# worker thread, and with 3 threads three panels of 32
@pytest.mark.parametrize("dtype, n_batch", [("float32", 3), ("float32", 64), ("float32", 70), ("float64", 64)])
def test_threads_give_the_same_bits(dtype, n_batch, always_threaded):
    u = _inputs(n_batch, 30, seed=2)
    runs = {}
    for threads in (1, 2, 3):
        with EchoStateNetwork(**NET, dtype=dtype, threads=threads) as esn:
            runs[threads] = (esn.run(u[:, :11]).features, esn.run(u[:, 11:]).features, esn.get_state())
            width = esn._xb.shape[3]
        if threads > 1 and numba.config.NUMBA_NUM_THREADS > 1:  # the threaded loop did run
            assert kernel._batch_loops(width, kernel._rows_together(width, dtype))[1].signatures
    for threads in (2, 3):
        for got, want in zip(runs[threads], runs[1]):
            assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_panel_width_does_not_change_the_bits(dtype):
    """Every width (and the blocks sized for it) computes each lane with the same operations."""
    with EchoStateNetwork(**NET, dtype=dtype) as esn:
        n = NET["units"]
        n_batch, n_steps = 6, 12
        u = _inputs(n_batch, n_steps, seed=3).astype(dtype)
        outs = []
        for width in kernel._BATCH_WIDTHS[np.dtype(dtype).itemsize]:
            mat, w_in_t, bias = esn._batch_operands(width)
            n_panels = -(-n_batch // width)
            lanes = np.zeros((n_panels * width, n_steps, 2), dtype=dtype)
            lanes[:n_batch] = u
            u_panels = np.ascontiguousarray(lanes.reshape(n_panels, width, n_steps, 2).transpose(0, 2, 3, 1))
            x = kernel.aligned_zeros((2, n_panels, n, width), dtype)
            out = np.empty((n_batch, n_steps, n), dtype=dtype)
            kernel.run_batch(mat, w_in_t, bias, u_panels, x, np.dtype(dtype).type(NET["leak"]), out, 1)
            outs.append(out)
        for out in outs[1:]:
            assert out.tobytes() == outs[0].tobytes()


def test_get_and_set_state_round_trip():
    x0 = np.random.default_rng(4).uniform(-1, 1, (70, NET["units"]))
    u = _inputs(70, 20, seed=5)
    with EchoStateNetwork(**NET, dtype="float64") as esn:
        esn.set_state(x0)
        assert esn.get_state().shape == (70, NET["units"])
        assert esn.get_state().tobytes() == x0.tobytes()
        feats = esn.run(u).features
        np.testing.assert_array_equal(esn.get_state(), feats[:, -1])
        # from a set state, each sequence alone gives the same trajectory
        for b in (0, 41, 69):
            esn.set_state(x0[b])
            np.testing.assert_allclose(esn.run(u[b]).features, feats[b], rtol=0, atol=1e-12)
        # a batch state set back reproduces the batch run bit for bit
        esn.set_state(x0)
        assert esn.run(u).features.tobytes() == feats.tobytes()
        # a batch of another size starts from zero
        esn.set_state(x0)
        other = esn.run(u[:4]).features
        esn.reset()
        assert other.tobytes() == esn.run(u[:4]).features.tobytes()


@pytest.mark.parametrize("units, n_batch", [(600, 9), (1100, 64)])
def test_column_blocks_and_row_tiles(units, n_batch):
    """Several column blocks; with 1100 units and 64 lanes, two tiles of rows (1024 + 76)."""
    with EchoStateNetwork(units=units, connectivity=0.05 if units > 1000 else 0.2, spectral_radius=0.9,
                          seed=1) as esn:
        u = np.random.default_rng(6).uniform(-1, 1, (n_batch, 6, 1))
        batch = esn.run(u).features
        width = esn._xb.shape[3]
        assert esn._batch_operands(width)[0].n_blocks > 1
        assert units * width * 4 > kernel._ROW_TILE_BYTES or units < 1000
        for b in (0, n_batch - 1):
            esn.reset()
            np.testing.assert_allclose(batch[b], esn.run(u[b]).features, rtol=0, atol=1e-5)
