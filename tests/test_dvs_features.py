"""Event features: hand-computed cases and tonic's transforms on the same events."""

from __future__ import annotations

import numpy as np
import pytest
from labbench.drivers.dvs.events import make_events
from labbench.drivers.dvs.features import bin_rows, count_maps, time_surface, voxel_grid

tonic = pytest.importorskip("tonic", reason="tonic (the reference peer) is not installed")

SHAPE = (6, 8)                                                    # H, W


def random_events(n: int = 4000, seed: int = 0, t_max: int = 100_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, SHAPE[1], n),
                       rng.integers(0, SHAPE[0], n), rng.random(n) < 0.5)


def test_bin_rows_splits_at_the_edges():
    ev = make_events([0, 5, 10, 10, 19, 20, 35], [0] * 7, [0] * 7, [True] * 7)
    off = bin_rows(ev, [5, 10, 20, 30])
    assert off.tolist() == [1, 2, 5, 6]                             # [5,10): 5; [10,20): 10,10,19; [20,30): 20
    with pytest.raises(ValueError, match="edges"):
        bin_rows(ev, [3])


def test_count_maps_by_hand():
    ev = make_events([1, 2, 3, 4], [0, 1, 7, 7], [0, 0, 5, 5], [True, True, False, True])
    m = count_maps(ev, SHAPE, pool=(2, 2)).reshape(2, 3, 4)        # (p, y', x')
    assert m[1, 0, 0] == 2 and m[0, 2, 3] == 1 and m[1, 2, 3] == 1 and m.sum() == 4
    rows = count_maps(ev, SHAPE, pool=(1, 1), offsets=np.array([0, 2, 4]))
    assert rows.shape == (2, 96) and rows[0].sum() == 2 and rows[1].sum() == 2
    with pytest.raises(ValueError, match="outside the sensor"):
        count_maps(ev, (5, 8))


def test_count_maps_equal_tonic_to_frame():
    ev = random_events()
    frames = tonic.transforms.ToFrame(sensor_size=(SHAPE[1], SHAPE[0], 2), time_window=10_000)(ev)
    start = ev["t"][0]
    edges = start + 10_000 * np.arange(len(frames) + 1)
    ours = count_maps(ev, SHAPE, offsets=bin_rows(ev, edges))
    assert np.array_equal(ours, frames.reshape(len(frames), -1))


def test_time_surface_by_hand():
    ev = make_events([100, 300, 400], [1, 1, 2], [0, 0, 3], [True, True, False])
    s = time_surface(ev, SHAPE, t_ref_us=500, tau_us=100).reshape(2, *SHAPE)
    assert np.isclose(s[1, 0, 1], np.exp(-2.0)) and np.isclose(s[0, 3, 2], np.exp(-1.0))
    assert np.count_nonzero(s) == 2
    pooled = time_surface(ev, SHAPE, t_ref_us=350, tau_us=100, pool=(6, 8))   # one cell: its latest event
    assert np.allclose(pooled, [0.0, np.exp(-0.5)])


def test_time_surface_equals_tonic():
    ev = random_events(1500, seed=1)
    dt, tau = 20_000, 5_000
    surfaces = tonic.transforms.ToTimesurface(sensor_size=(SHAPE[1], SHAPE[0], 2), dt=dt, tau=tau)(ev)
    for i, ts in enumerate(surfaces):
        t_ref = ev["t"][0] + (i + 1) * dt
        ours = time_surface(ev[ev["t"] < t_ref], SHAPE, t_ref_us=t_ref, tau_us=tau)
        assert np.allclose(ours, ts.ravel(), rtol=1e-6, atol=1e-7)


def test_voxel_grid_by_hand():
    ev = make_events([0, 50, 100], [0, 0, 1], [0, 0, 0], [True, False, True])
    v = voxel_grid(ev, SHAPE, n_bins=3, t0_us=0, t1_us=100).reshape(3, *SHAPE)
    # t* = 2 t / 100: 0 -> bin 0 (+1); 50 -> bin 1 (-1); 100 -> bin 2 (+1)
    assert v[0, 0, 0] == 1 and v[1, 0, 0] == -1 and v[2, 0, 1] == 1 and np.abs(v).sum() == 3
    v = voxel_grid(ev[:1], SHAPE, n_bins=3, t0_us=-25, t1_us=75).reshape(3, *SHAPE)
    assert np.allclose(v[:, 0, 0], [0.5, 0.5, 0.0])                 # t* = 0.5: split between bins 0 and 1


def test_voxel_grid_equals_tonic_up_to_its_conventions():
    ev = random_events(3000, seed=2)
    n_bins = 5
    # tonic maps polarity to +-1 only for a non-bool field (on bool it writes -1 -> True), and scales by
    # n_bins over first-to-last event, dropping bin n_bins: ours with n_bins + 1 bins over the same span
    ev_int = ev.astype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "<i1")])
    ref = tonic.transforms.ToVoxelGrid(sensor_size=(SHAPE[1], SHAPE[0], 2), n_time_bins=n_bins)(ev_int)
    ours = voxel_grid(ev, SHAPE, n_bins=n_bins + 1, t0_us=ev["t"][0], t1_us=ev["t"][-1])
    assert np.allclose(ours.reshape(n_bins + 1, -1)[:n_bins], ref.reshape(n_bins, -1), atol=1e-5)


def test_per_row_features_equal_per_row_calls():
    ev = random_events(5000, seed=3)
    edges = np.arange(0, 100_001, 25_000)
    off = bin_rows(ev, edges)
    ts = time_surface(ev, SHAPE, edges[1:], 3000, pool=(2, 2), offsets=off)
    vg = voxel_grid(ev, SHAPE, 4, edges[:-1], edges[1:], offsets=off)
    for r in range(len(edges) - 1):
        row = ev[off[r]:off[r + 1]]
        assert np.allclose(ts[r], time_surface(row, SHAPE, edges[r + 1], 3000, pool=(2, 2)))
        assert np.allclose(vg[r], voxel_grid(row, SHAPE, 4, edges[r], edges[r + 1]))
