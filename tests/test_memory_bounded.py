"""Memory bounded by the block, not the run: readers tail in block-sized slices, trainers
learn from one block at a time, and the results are those of the whole stretch at once."""

from __future__ import annotations

import numpy as np
import pytest

from labbench.engine import bench as bench_module
from labbench.engine import live
from labbench.engine.live import Trainer, train_store
from labbench.engine.task_feed import PhaseColumn, TaskFeed
from labbench.spec.protocol import ReadoutSection, from_dict
from labbench.store import RunReader, RunStore
from labbench.tasks import TASKS, Narma, get_task

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


# -- the run's task data, made block by block in the run's process (issue 18, part M) ----------------

OPEN_LOOP = sorted(name for name, cls in TASKS.items() if not cls.closed_loop)
CHUNKED = sorted(name for name in OPEN_LOOP if TASKS[name].chunked_generation)
#: a second set of parameters per chunked task, off the defaults (other delays, horizons, orders)
VARIANTS = {"mackey_glass": {"horizon": 5, "normalise": False, "tau": 17.3, "transient": 3},
            "narma": {"order": 20, "a2": 0.01}, "memory_capacity": {"max_delay": 7},
            "spontaneous": {"channels": 3}}


def _joined(task, n, seed, rows):
    pieces = list(task.generate_chunks(n, seed, rows))
    assert all(0 < p.inputs.shape[0] <= rows for p in pieces)
    assert [p.inputs.shape[0] for p in pieces[:-1]] == [rows] * (len(pieces) - 1)
    seq = None if pieces[0].sequence is None else np.concatenate([p.sequence for p in pieces])
    return (np.concatenate([p.inputs for p in pieces]), np.concatenate([p.targets for p in pieces]), seq,
            pieces[0].meta)


def _assert_same_bits(task, n, seed, rows):
    whole = task.generate(n, seed)
    inputs, targets, seq, meta = _joined(task, n, seed, rows)
    for got, want in ((inputs, whole.inputs), (targets, whole.targets)):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == np.ascontiguousarray(want).tobytes()
    assert (seq is None) == (whole.sequence is None)
    if seq is not None:
        np.testing.assert_array_equal(seq, whole.sequence)
    assert meta == whole.meta


@pytest.mark.parametrize("name", OPEN_LOOP)
def test_every_task_in_pieces_equals_the_whole_series_bit_for_bit(name):
    """Every open-loop task's pieces, joined, are its ``generate`` bit for bit (chunked tasks make
    them piece by piece, carrying their recursion; the others slice the whole series)."""
    task = get_task(name)
    for n, rows in [(1, 4), (13, 3), (777, 100), (2500, 1024)]:
        _assert_same_bits(task, n, seed=5, rows=rows)


@pytest.mark.parametrize("name", CHUNKED)
def test_chunked_tasks_with_other_parameters_equal_the_whole_series(name):
    task = get_task(name, **VARIANTS[name])
    for seed, n, rows in [(0, 2, 1), (1, 3001, 256), (2, 20_000, 2000)]:
        _assert_same_bits(task, n, seed=seed, rows=rows)


def test_the_chunked_tasks_are_those_the_bench_streams():
    assert {"mackey_glass", "narma", "memory_capacity", "spontaneous"} <= set(CHUNKED)


@pytest.mark.parametrize("name", CHUNKED)
def test_a_chunked_generator_holds_memory_of_a_piece_not_of_the_series(name):
    """Python-level allocations (numpy's included) while walking the pieces: the peak for a
    series 10x longer stays that of a piece, where the whole series would be 10x larger."""
    import tracemalloc

    task = get_task(name)

    def peak(n):
        tracemalloc.start()
        try:
            for _ in task.generate_chunks(n, 0, 1000):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(20_000), peak(200_000)
    whole = task.generate(200_000, 0)
    series = whole.inputs.nbytes + whole.targets.nbytes
    assert large < 1.5 * small + 256 * 1024, (small, large)
    assert large < series / 4, (large, series)


def _read_like_the_bench(feed, n, block, depth=2):
    """Inputs read ``depth`` blocks ahead of the targets, as the bench submits and writes."""
    inputs, targets = [], []
    starts = list(range(0, n, block))
    for i, a in enumerate(starts):
        if i == 0:
            for a2 in starts[:depth]:
                inputs.append(feed.inputs[a2:min(a2 + block, n)])
        elif i + depth - 1 < len(starts):
            a2 = starts[i + depth - 1]
            inputs.append(feed.inputs[a2:min(a2 + block, n)])
        targets.append(feed.targets[a:min(a + block, n)])
    return np.concatenate(inputs), np.concatenate(targets)


@pytest.mark.parametrize("name", ["narma", "mackey_glass", "memory_capacity"])
def test_the_feed_gives_the_runs_rows_and_holds_a_few_pieces(name):
    task = get_task(name)
    n, block, rows = 30_000, 700, 1000
    whole = task.generate(n, 2)
    feed = TaskFeed(task, n, 2, rows)
    assert feed.sequence is None and feed.meta == whole.meta
    assert feed.inputs[:0].shape == (0, task.n_inputs)
    inputs, targets = _read_like_the_bench(feed, n, block)
    assert inputs.tobytes() == whole.inputs.tobytes() and targets.tobytes() == whole.targets.tobytes()
    # the rows between the targets being written and the inputs in flight, rounded out to pieces
    assert feed.peak_rows <= 2 * block + 2 * rows, feed.peak_rows
    assert feed.restarts == 0


def test_the_feed_starts_again_for_a_replay_and_goes_on_from_there():
    task = get_task("narma")
    whole = task.generate(5000, 1)
    feed = TaskFeed(task, 5000, 1, 300)
    feed.inputs[0:1000]
    feed.targets[0:1000]
    feed.inputs[3000:3500]
    feed.targets[3000:3500]                         # rows below 3000 are dropped
    replayed = np.concatenate([feed.inputs[a:min(a + 256, 3000)] for a in range(0, 3000, 256)])
    assert feed.restarts == 1
    np.testing.assert_array_equal(replayed, whole.inputs[:3000])
    np.testing.assert_array_equal(feed.inputs[3000:4000], whole.inputs[3000:4000])
    np.testing.assert_array_equal(feed.targets[3000:4000], whole.targets[3000:4000])
    with pytest.raises(IndexError):
        feed.inputs[5]


def test_the_phase_column_equals_the_layout():
    col = PhaseColumn(7, 11, 5)
    want = np.repeat(np.array([0, 1, 2], dtype=np.int8), [7, 11, 5])
    assert len(col) == 23
    for a, b in [(0, 23), (0, 0), (3, 9), (7, 18), (17, 19), (18, 40), (22, 23)]:
        got = col[a:b]
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, want[a:b])
    np.testing.assert_array_equal(col[:], want)


def _proto(**changes):
    from conftest import small_protocol

    return from_dict(small_protocol(**changes))


def test_which_runs_make_their_data_block_by_block():
    assert bench_module._feeds_lazily(_proto())
    assert bench_module._feeds_lazily(_proto(task={"name": "mackey_glass"}))
    # the free run and learning with feedback read the data after the stream: up front
    assert not bench_module._feeds_lazily(_proto(task={"name": "mackey_glass", "free_run": True,
                                                       "free_run_starts": 2, "free_run_sync": 20,
                                                       "free_run_horizon": 10}))
    assert not bench_module._feeds_lazily(_proto(readouts=[{"kind": "force", "feedback_steps": 50}]))
    # tasks that slice a whole series (xor), or lay out held-out samples (digits): up front
    assert not bench_module._feeds_lazily(_proto(task={"name": "xor"}))
    assert not TASKS["digits"].chunked_generation


def test_a_run_streams_its_task_data_from_a_bounded_feed(ray_session, store_root, monkeypatch):
    """A run's stored inputs, targets and phase are those of the whole series generated at
    once, while the run's process held at most a few pieces of it."""
    import labbench as lb

    feeds = []

    class Spy(TaskFeed):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            feeds.append(self)

    monkeypatch.setattr(bench_module, "TaskFeed", Spy)
    monkeypatch.setattr(bench_module, "_FEED_ROWS", 100)
    proto = _proto(run={"washout": 50, "train": 1500, "test": 700, "block": 64})
    run = lb.run(proto, store_root=store_root, progress=False)
    assert len(feeds) == 1 and feeds[0].rows == 100
    assert feeds[0].peak_rows <= 2 * 64 + 2 * 100, feeds[0].peak_rows
    whole = proto.task.generate(proto.run.total, proto.protocol.seed)
    arrays = RunReader(run.store).read("esn")
    np.testing.assert_array_equal(arrays["inputs"], whole.inputs)
    np.testing.assert_array_equal(arrays["targets"], whole.targets)
    np.testing.assert_array_equal(arrays["phase"], np.repeat(np.array([0, 1, 2], np.int8), [50, 1500, 700]))
    assert np.isfinite(run.metrics["ridge"]["nrmse"])


def _rss_shmem_kib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssShmem:"):
                return int(line.split()[1])
    return None


def test_object_store_pages_are_released_and_their_data_kept(ray_session):
    """After reading an 8 MB object, its pages of Ray's store are resident in this process; once
    released they are not, and the object (still referenced) reads back the same."""
    import platform

    from labbench.engine.memory import release_object_store_pages

    if platform.system() != "Linux" or _rss_shmem_kib() is None:
        pytest.skip("RssShmem is read from Linux's /proc/self/status")
    ray = ray_session
    want = np.random.default_rng(0).standard_normal((1000, 1000)).astype(np.float32)
    ref = ray.put(want)
    got = ray.get(ref)
    assert float(got.sum(dtype=np.float64)) == float(want.sum(dtype=np.float64))   # every page touched
    before = _rss_shmem_kib()
    assert before >= 3500, before                                   # ~3.8 MiB of the store is resident
    assert release_object_store_pages() > 0
    after = _rss_shmem_kib()
    assert after <= before - 3500, (before, after)
    np.testing.assert_array_equal(got, want)                        # read back from the store
    np.testing.assert_array_equal(ray.get(ref), want)
