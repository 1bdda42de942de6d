"""Memory bounded by the block, not the run: readers tail in block-sized slices, trainers
learn from one block at a time, and the results are those of the whole stretch at once."""

from __future__ import annotations

import numpy as np
import pytest

from labbench.engine import live
from labbench.engine.live import Trainer, train_store
from labbench.spec.protocol import ReadoutSection
from labbench.store import RunReader, RunStore
from labbench.tasks import Narma

BLOCK = 64


def _narma(n=600, width=20, seed=0):
    """A NARMA-10 stream through a tanh delay line: 50 washout rows, 350 train, the rest test."""
    task = Narma()
    data = task.generate(n, seed)
    u = data.inputs[:, 0]
    lags = np.stack([np.r_[np.zeros(k), u[:n - k]] for k in range(width)], axis=1)
    rng = np.random.default_rng(seed)
    features = np.tanh(lags @ rng.normal(scale=0.5, size=(width, width)) + lags)
    phase = np.repeat(np.array([0, 1, 2], dtype=np.int8), [50, 350, n - 400])
    return task, {"inputs": data.inputs, "features": features, "targets": data.targets, "phase": phase}


def _store(path, n=600, width=20, chunk=BLOCK):
    """A finished store of :func:`_narma`, appended in uneven pieces, none a whole block."""
    task, arrays = _narma(n, width)
    store = RunStore(path, "", {"protocol": {"task": task.describe()}})
    store.add_device("esn", spec={"n_inputs": 1, "n_features": width}, describe={}, n_outputs=1,
                     dtype="float64", chunk_rows=chunk)
    for a, b in zip([0, 10, 200, 201, 530], [10, 200, 201, 530, n]):
        store.append("esn", **{k: v[a:b] for k, v in arrays.items()})
    store.finish("complete")
    del arrays["inputs"]
    return task, arrays


@pytest.mark.parametrize("max_rows", [None, 1, 7, BLOCK, 1000])
def test_tail_never_yields_more_than_the_slice_asked_for(tmp_path, max_rows):
    _store(tmp_path / "r.zarr")
    reader = RunReader(tmp_path / "r.zarr")
    limit = BLOCK if max_rows is None else max_rows     # default: the device's chunk_rows
    rows = []
    for start, arrays in reader.tail("esn", max_rows=max_rows, readouts=False):
        n = len(arrays["phase"])
        assert 0 < n <= limit, (start, n)
        assert (start + n - 1) // limit == start // limit, f"slice {start}:{start + n} crosses a multiple of {limit}"
        assert all(len(v) == n for v in arrays.values())
        rows.append((start, n))
    assert [s for s, _ in rows] == list(np.cumsum([0] + [n for _, n in rows])[:-1])
    assert sum(n for _, n in rows) == 600
    assert len(rows) == -(-600 // limit)


def test_tail_refuses_a_slice_of_no_rows(tmp_path):
    _store(tmp_path / "r.zarr")
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        next(RunReader(tmp_path / "r.zarr").tail("esn", max_rows=0))


def test_read_of_one_column_reads_only_that_column(tmp_path):
    _store(tmp_path / "r.zarr")
    reader = RunReader(tmp_path / "r.zarr")
    got = reader.read("esn", 10, 20, columns=["phase"])
    assert list(got) == ["phase"] and len(got["phase"]) == 10
    with pytest.raises(Exception, match="no time array 'readouts'"):
        reader.read("esn", columns=["readouts"])


class _Recorder:
    """Wraps a readout and records the most rows it was given at once."""

    def __init__(self, inner):
        self.inner = inner
        self.most = 0

    def partial_fit(self, X, y):
        self.most = max(self.most, len(X))
        self.inner.partial_fit(X, y)
        return self

    def predict(self, X):
        self.most = max(self.most, len(X))
        return self.inner.predict(X)


@pytest.mark.parametrize("params", [{"kind": "ridge", "alpha": 1e-4}, {"kind": "rls", "name": "ridge"},
                                    {"kind": "sklearn", "name": "ridge", "estimator": "SGDRegressor",
                                     "estimator_params": {"random_state": 1}}])
def test_a_trainer_reads_and_learns_one_block_at_a_time_with_unchanged_results(tmp_path, monkeypatch, params):
    path = tmp_path / "r.zarr"
    task, arrays = _store(path)
    spec = ReadoutSection(**params)

    # the reference: the whole stream handed to a trainer in one stretch, as the reader
    # handed a finished store before it tailed in slices
    ref = Trainer(spec, task, layout={"washout": 50, "train": 350, "test": 200}, block=BLOCK)
    emitted = ref.consume(0, arrays) + ref.finish()
    ref_pred = np.full((600, 1), np.nan)
    for e in emitted:
        if e.predictions is not None:
            ref_pred[e.start:e.start + len(e.predictions)] = e.predictions

    largest_read = []
    real_read = RunReader.read

    def read(self, device, start=0, stop=None, **kw):
        out = real_read(self, device, start, stop, **kw)
        if "phase" in out and kw.get("columns") is None:
            largest_read.append(len(out["phase"]))
        return out

    recorders = []
    real_make = live.make_readout

    def make(kind, **params):
        recorders.append(_Recorder(real_make(kind, **params)))
        return recorders[-1]

    monkeypatch.setattr(RunReader, "read", read)
    monkeypatch.setattr(live, "make_readout", make)
    result = train_store(path, spec, task=task)
    monkeypatch.undo()

    assert max(largest_read) <= BLOCK, largest_read
    assert recorders and 0 < recorders[0].most <= BLOCK
    # bit for bit: metrics, predictions, and the metrics of the stored predictions scored at once
    assert result.metrics == ref.metrics()
    stored = RunReader(path).read("esn")
    np.testing.assert_array_equal(stored["readouts/ridge/predictions"], ref_pred)
    test = arrays["phase"] == 2
    whole = task.score(arrays["targets"][test].astype(np.float64), stored["readouts/ridge/predictions"][test])
    assert result.metrics["nrmse"] == whole["nrmse"]
    assert np.isfinite(result.metrics["nrmse"]) and result.metrics["nrmse"] < 1.0


def test_held_out_rows_kept_past_the_layout_hint_score_the_same():
    """The test rows a trainer keeps for its scores grow past the capacity the layout
    suggested (here none) and score exactly as one concatenated array."""
    task, arrays = _narma(700)
    spec = ReadoutSection(kind="ridge", alpha=1e-4)
    hinted = Trainer(spec, task, layout={"washout": 50, "train": 350, "test": 300}, block=BLOCK)
    unhinted = Trainer(spec, task, layout={"washout": 50, "train": 350}, block=BLOCK)
    for tr in (hinted, unhinted):
        tr.consume(0, arrays)
        tr.finish()
    assert hinted.metrics() == unhinted.metrics() and unhinted.metrics()["n_test"] == 300


def test_the_monitor_keeps_a_bounded_closed_loop_record(tmp_path):
    """The follower's per-block loop record stays within its capacity however many blocks
    the run has: the newest half whole, older blocks thinned, the first block kept."""
    from labbench.monitor.source import StoreFollower

    path = tmp_path / "r.zarr"
    store = RunStore(path, "", {})
    store.add_device("esn", spec={"n_inputs": 1, "n_features": 2}, describe={}, n_outputs=1, dtype="float64",
                     chunk_rows=4)
    store.set_device_attrs("esn", closed_loop=True)
    follower = StoreFollower(path, capacity=16, window_rows=8, max_rows_per_poll=12)
    most = 0
    for k in range(100):
        store.append("esn", inputs=np.zeros((4, 1)), features=np.zeros((4, 2)), targets=np.zeros((4, 1)),
                     phase=np.ones(4, np.int8), raw={"loop": {"row": np.array([4 * k]), "command": np.array([k])}})
        if k % 3 == 0:
            follower.poll()
            most = max(most, len(follower.devices["esn"].loop.get("row", ())))
    store.finish("complete")
    while not follower.caught_up():
        follower.poll()
    loop = follower.devices["esn"].loop
    assert most <= 16 and len(loop["row"]) <= 16 and follower.devices["esn"].loop_position == 100
    np.testing.assert_array_equal(loop["command"][-8:], np.arange(92, 100))       # the newest blocks whole
    assert loop["command"][0] == 0 and np.all(np.diff(loop["command"]) > 0)
    np.testing.assert_array_equal(loop["row"], 4 * loop["command"])


def test_large_arrays_stay_mapped_where_the_c_library_is_glibc():
    import platform

    from labbench.engine.memory import keep_large_arrays_mapped

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert keep_large_arrays_mapped() is False
        pytest.skip(f"not glibc ({platform.system()} {platform.libc_ver()}): the allocator is left as it is")
    assert keep_large_arrays_mapped() is True


def test_the_monitor_reads_a_backlog_in_slices_of_a_few_blocks(tmp_path, monkeypatch):
    """A follower opening a long run reads it a few blocks at a time (here one block of 4
    rows), and what it shows is every row, in order."""
    from labbench.monitor import source

    path = tmp_path / "r.zarr"
    store = RunStore(path, "", {})
    store.add_device("esn", spec={"n_inputs": 1, "n_features": 2}, describe={}, n_outputs=1, dtype="float64",
                     chunk_rows=4)
    rows = np.arange(100, dtype=np.float64)
    store.append("esn", inputs=rows[:, None], features=np.stack([rows, -rows], 1), targets=2 * rows[:, None],
                 phase=np.ones(100, np.int8))
    store.finish("complete")
    sizes = []
    real = source._read_arrays

    def spy(group, selections):
        if "features" in selections:
            sl = selections["features"][0]
            sizes.append(sl.stop - sl.start)
        return real(group, selections)

    monkeypatch.setattr(source, "_read_arrays", spy)
    monkeypatch.setattr(source, "_SLICE_BYTES", 4 * 2 * 8)   # one block of two float64 features
    follower = source.StoreFollower(path, window_rows=200, max_rows_per_poll=60)
    follower.poll()
    while not follower.caught_up():
        follower.poll()
    dev = follower.devices["esn"]
    assert sizes and max(sizes) == 4 and sum(sizes) == 100
    feats = dev.features.recent.data
    np.testing.assert_array_equal(feats[:, 0], rows)
    np.testing.assert_array_equal(dev.inputs.recent.data[:, 0], rows)
