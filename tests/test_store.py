"""The run store: layout, the committed rule, plain-zarr/xarray readability, tailing."""

import json
import multiprocessing as mp
import time

import numpy as np
import pytest
import zarr

from labbench.store import ReadoutWriter, RunReader, RunStore, StoreError, new_run_path

SPEC = {"n_inputs": 2, "n_features": 5, "feature_name": "unit"}


def make_store(path, expected_rows=0, chunk=4):
    store = RunStore(path, "[protocol]\nname='t'\n", {"protocol_name": "t", "seed": 1})
    store.add_device("esn", spec=SPEC, describe={"driver": "esn", "params": {"units": 5}}, n_outputs=1,
                     dtype="float32", chunk_rows=chunk, expected_rows=expected_rows)
    return store


def block(start, n):
    t = np.arange(start, start + n, dtype=np.float64)
    return dict(inputs=np.stack([t, -t], 1).astype(np.float32), features=np.repeat(t[:, None], 5, 1).astype(np.float32),
                targets=t[:, None] * 2, phase=(t % 3).astype(np.int8))


@pytest.mark.parametrize("expected_rows", [0, 10, 100])
def test_append_read_and_trim(tmp_path, expected_rows):
    path = tmp_path / "r.zarr"
    store = make_store(path, expected_rows)
    for a, n in [(0, 4), (4, 4), (8, 3)]:
        assert store.append("esn", **block(a, n)) == a + n
    reader = RunReader(path)
    assert reader.status == "running" and reader.committed("esn") == 11
    got = reader.read("esn")
    assert got["features"].shape == (11, 5)
    np.testing.assert_array_equal(got["features"][:, 0], np.arange(11))
    np.testing.assert_array_equal(reader.read("esn", 3, 6)["targets"][:, 0], [6, 8, 10])
    store.finish("complete")
    # plain zarr, no labbench: trimmed to committed, provenance attributes present
    root = zarr.open_group(str(path), mode="r")
    assert root["esn/features"].shape == (11, 5)
    assert root["esn/phase"].shape == (11,)
    assert root.attrs["status"] == "complete" and root.attrs["ended"]
    assert len(root.attrs["protocol_sha256"]) == 64 and root.attrs["protocol_text"].startswith("[protocol]")
    assert root["esn"].attrs["committed"] == 11


def test_reader_never_reads_past_committed(tmp_path):
    path = tmp_path / "r.zarr"
    store = make_store(path, expected_rows=100)
    store.append("esn", **block(0, 4))
    reader = RunReader(path)
    # the preallocated arrays are longer, but reads stop at committed
    assert zarr.open_group(str(path), mode="r")["esn/features"].shape[0] == 100
    assert len(reader.read("esn", 0, 100)["features"]) == 4
    assert not np.isnan(reader.read("esn")["features"]).any()


def test_xarray_opens_a_device_group(tmp_path):
    xr = pytest.importorskip("xarray", reason="xarray is in the dev extra")
    path = tmp_path / "r.zarr"
    store = make_store(path)
    store.append("esn", **block(0, 6))
    ro = ReadoutWriter(path, "esn", "ridge", n_outputs=1, describe={}, history_columns=["row", "test_nrmse"],
                       rows=6, chunk_rows=6)
    ro.write(0, np.ones((6, 1)), 6)
    ro.add_evaluation({"row": 6, "test_nrmse": 0.5}, {"nrmse": 0.5})
    ro.finish("complete")
    store.finish("complete")
    ds = xr.open_zarr(path, group="esn", consolidated=False)
    assert ds.sizes["time"] == 6 and ds.sizes["unit"] == 5 and ds.sizes["input"] == 2
    assert ds["features"].dims == ("time", "unit")
    hist = xr.open_zarr(path, group="esn/readouts/ridge/history", consolidated=False)
    assert hist["test_nrmse"].values.tolist() == [0.5]
    pred = xr.open_zarr(path, group="esn/readouts/ridge", consolidated=False)
    assert pred["predictions"].dims == ("time", "output") and pred.sizes["time"] == 6


def test_readout_writer_refuses_a_taken_name_and_reader_sees_history(tmp_path):
    path = tmp_path / "r.zarr"
    store = make_store(path, expected_rows=20)
    store.append("esn", **block(0, 8))
    ro = ReadoutWriter(path, "esn", "ridge", n_outputs=1, describe={"kind": "ridge"},
                       history_columns=["row", "test_nrmse"], rows=20, chunk_rows=4)
    ro.write(4, np.full((4, 1), 2.0), 8)
    ro.add_evaluation({"row": 8}, {})  # a missing column is NaN
    r = RunReader(path)
    assert r.readouts("esn")["ridge"]["status"] == "running" and r.readouts("esn")["ridge"]["consumed"] == 8
    h = r.history("esn", "ridge")
    assert h["row"].tolist() == [8.0] and np.isnan(h["test_nrmse"]).all()
    pred = r.read("esn")["readouts/ridge/predictions"]
    assert np.isnan(pred[:4]).all() and (pred[4:8] == 2.0).all()
    with pytest.raises(StoreError, match="already exists"):
        ReadoutWriter(path, "esn", "ridge", n_outputs=1, describe={}, history_columns=[], rows=1, chunk_rows=1)
    ro.finish("complete")
    assert zarr.open_group(str(path), mode="r")["esn/readouts/ridge/predictions"].shape == (8, 1)


def test_failed_run_keeps_blocks_and_error(tmp_path):
    path = tmp_path / "r.zarr"
    store = make_store(path, expected_rows=50)
    store.append("esn", **block(0, 8))
    store.finish("failed", "ValueError: boom")
    r = RunReader(path)
    assert r.status == "failed" and r.attrs["error"] == "ValueError: boom"
    assert r.read("esn")["features"].shape == (8, 5)


def test_block_arrays_must_agree(tmp_path):
    store = make_store(tmp_path / "r.zarr")
    b = block(0, 4)
    b["targets"] = b["targets"][:3]
    with pytest.raises(ValueError, match="targets has 3"):
        store.append("esn", **b)


def test_not_a_run_store(tmp_path):
    with pytest.raises(StoreError, match="no such run store"):
        RunReader(tmp_path / "missing.zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(StoreError, match="not a labbench run"):
        RunReader(tmp_path / "other.zarr")
    (tmp_path / "file.zarr").write_text("hello")
    with pytest.raises(StoreError):
        RunReader(tmp_path / "file.zarr")


def test_new_run_path_never_collides(tmp_path):
    a = new_run_path(tmp_path, "my protocol/1")
    a.mkdir()
    b = new_run_path(tmp_path, "my protocol/1")
    assert a != b and a.name.endswith("_my-protocol-1.zarr")


def test_raw_streams_append_with_offsets(tmp_path):
    path = tmp_path / "r.zarr"
    store = make_store(path)
    store.append("esn", **block(0, 4), raw={"spikes": {"time": np.array([0.1, 0.2]), "channel": np.array([1, 2])}})
    store.append("esn", **block(4, 4), raw={"spikes": {"time": np.array([0.5]), "channel": np.array([7])}})
    # while the run goes, the columns hold spare capacity; readers stop at the committed offset
    np.testing.assert_array_equal(RunReader(path).raw("esn", "spikes")["channel"], [1, 2, 7])
    # a block without the stream still gets its offset: offsets[k] is the row count after block k
    store.append("esn", **block(8, 4))
    store.append("esn", **block(12, 4), raw={"spikes": {"time": np.array([1.5]), "channel": np.array([9])}})
    np.testing.assert_array_equal(RunReader(path).raw("esn", "spikes")["channel"], [1, 2, 7, 9])
    store.finish("complete")   # cut to size
    g = zarr.open_group(str(path), mode="r")["esn/raw/spikes"]
    np.testing.assert_array_equal(g["channel"][:], [1, 2, 7, 9])
    np.testing.assert_array_equal(g["offsets"][:], [2, 3, 3, 4])


def test_a_raw_stream_first_seen_late_has_zero_offsets_before_it(tmp_path):
    path = tmp_path / "r.zarr"
    store = make_store(path)
    store.append("esn", **block(0, 4))
    store.append("esn", **block(4, 4), raw={"spikes": {"time": np.array([0.5]), "channel": np.array([7])}})
    np.testing.assert_array_equal(RunReader(path).raw("esn", "spikes")["channel"], [7])
    store.finish("complete")
    np.testing.assert_array_equal(zarr.open_group(str(path), mode="r")["esn/raw/spikes/offsets"][:], [0, 1])


def test_image_like_raw_stream_stores_frames_as_cells(tmp_path):
    """A raw column of (H, W) uint8 cells: stored (rows, H, W) chunked along rows with named
    dimensions, read back whole up to the last committed block, cut back on reopen, and a
    block of the wrong cell shape is refused."""
    from labbench.reservoir import RawStreamSpec, Spec

    H, W = 48, 40
    frames_spec = RawStreamSpec({"frame": "uint8"}, "camera frames", shapes={"frame": (H, W)},
                                dims={"frame": ("y", "x")})
    spec = Spec(n_inputs=2, n_features=5, raw={"frames": frames_spec}).to_dict()
    path = tmp_path / "r.zarr"
    store = RunStore(path, "", {"protocol_name": "t"})
    store.add_device("cam", spec=spec, describe={"driver": "cam"}, n_outputs=1, dtype="float32", chunk_rows=4)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (11, H, W), dtype=np.uint8)
    for a, n in [(0, 4), (4, 4), (8, 3)]:
        store.append("cam", **block(a, n), raw={"frames": {"frame": frames[a:a + n]}})
    arr = zarr.open_group(str(path), mode="r")["cam/raw/frames/frame"]
    assert arr.shape[0] >= 11 and arr.shape[1:] == (H, W) and arr.dtype == np.uint8   # spare capacity while running
    assert arr.metadata.dimension_names == ("frames_row", "y", "x")
    assert arr.chunks[1:] == (H, W) and 1 << 20 <= arr.chunks[0] * H * W <= 4 << 20  # whole frames, 1-4 MiB
    got = RunReader(path).raw("cam", "frames")["frame"]
    assert got.shape == (11, H, W) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, frames)
    with pytest.raises(ValueError, match="column 'frame'"):
        store.append("cam", **block(11, 2), raw={"frames": {"frame": frames[:2, :, :-1]}})
    # a writer killed between the raw rows and ``committed``: reopening cuts the frames back
    g = zarr.open_group(str(path), mode="r+")["cam"]
    g.attrs.update({"committed": 8, "blocks": 2})
    RunStore.reopen(path)
    np.testing.assert_array_equal(RunReader(path).raw("cam", "frames")["frame"], frames[:8])
    assert zarr.open_group(str(path), mode="r")["cam/raw/frames/frame"].shape == (8, H, W)


def test_a_frames_block_must_match_the_declared_cell_shape(tmp_path):
    from labbench.reservoir import RawStreamSpec, Spec

    spec = Spec(n_inputs=2, n_features=5, raw={"frames": RawStreamSpec({"frame": "uint8"},
                                                                        shapes={"frame": (8, 8)})}).to_dict()
    store = RunStore(tmp_path / "r.zarr", "", {"protocol_name": "t"})
    store.add_device("cam", spec=spec, describe={"driver": "cam"}, n_outputs=1, dtype="float32", chunk_rows=4)
    with pytest.raises(ValueError, match=r"declares \(8, 8\)"):
        store.append("cam", **block(0, 2), raw={"frames": {"frame": np.zeros((2, 8, 9), np.uint8)}})
    with pytest.raises(ValueError, match="not one of its columns"):
        RawStreamSpec({"frame": "uint8"}, shapes={"image": (8, 8)})


def _writer(path, n_blocks):
    store = RunStore(path, "", {"protocol_name": "t"})
    store.add_device("esn", spec=SPEC, describe={"driver": "esn"}, n_outputs=1, dtype="float32", chunk_rows=8,
                     expected_rows=0)  # resize on every append: the hardest case for readers
    for i in range(n_blocks):
        store.append("esn", **block(8 * i, 8))
    store.finish("complete")


def test_tailing_reader_in_another_process_sees_only_whole_blocks(tmp_path):
    path = tmp_path / "r.zarr"
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_writer, args=(str(path), 60))
    proc.start()
    deadline = time.monotonic() + 60
    while not (path / "esn" / "zarr.json").exists() or not (path / "esn" / "phase" / "zarr.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)
    reader = RunReader(path)
    seen = 0
    polls = 0
    for start, arrays in reader.tail("esn", poll=0.005, timeout=30):
        assert start == seen
        feats = arrays["features"]
        assert not np.isnan(feats).any(), "a reader saw rows that were not written yet"
        np.testing.assert_array_equal(feats[:, 0], np.arange(start, start + len(feats)))
        seen += len(feats)
        polls += 1
    proc.join(30)
    assert seen == 480 and reader.status == "complete"
    assert polls > 1  # it really tailed a store being written


def test_attributes_are_plain_json(tmp_path):
    path = tmp_path / "r.zarr"
    store = make_store(path)
    store.set_attrs(timings={"x": np.float64(1.5)}, arr=np.arange(3))
    store.finish("complete")
    raw = json.loads((path / "zarr.json").read_text())
    assert raw["attributes"]["timings"] == {"x": 1.5} and raw["attributes"]["arr"] == [0, 1, 2]


def test_coalescing_writer_merges_queued_blocks_without_changing_a_row(tmp_path):
    """Blocks queued behind a slow write go to the store as one append: same rows, same raw rows."""
    import threading

    from labbench.engine.coalescing_writer import CoalescingWriter

    def raw(a, n):
        return {"spikes": {"t": np.arange(a, a + n, dtype=np.float64) + 0.5, "ch": np.arange(n, dtype=np.int32)}}

    plain, merged = make_store(tmp_path / "a.zarr"), make_store(tmp_path / "b.zarr")
    for a in range(0, 40, 4):
        plain.append("esn", **block(a, 4), raw=raw(a, 4))
    gate = threading.Event()
    slow = merged.append

    def first_waits(device, **kw):     # the first write is slow: the rest queue up behind it
        gate.wait(5)
        return slow(device, **kw)

    merged.append = first_waits
    with CoalescingWriter(merged) as w:
        for a in range(0, 40, 4):
            w.put("esn", **block(a, 4), raw=raw(a, 4))
        gate.set()
    assert 1 <= w.appends < 10                                   # merged: fewer appends than blocks
    ra, rb = RunReader(tmp_path / "a.zarr"), RunReader(tmp_path / "b.zarr")
    for key, value in ra.read("esn").items():
        np.testing.assert_array_equal(rb.read("esn")[key], value, err_msg=key)
    for col, value in ra.raw("esn", "spikes").items():
        np.testing.assert_array_equal(rb.raw("esn", "spikes")[col], value, err_msg=col)
    assert rb.committed("esn") == 40


def test_coalescing_writer_raises_a_failed_write_and_writes_nothing_after_it(tmp_path):
    from labbench.engine.coalescing_writer import CoalescingWriter

    store = make_store(tmp_path / "r.zarr")
    w = CoalescingWriter(store)
    w.put("esn", **block(0, 4))
    w.put("esn", **{**block(4, 4), "phase": np.zeros(3, np.int8)})      # lengths disagree
    with pytest.raises(ValueError, match="block arrays disagree in length"):
        w.flush()
    w.close()
    assert RunReader(tmp_path / "r.zarr").committed("esn") in (0, 4)   # alone, or merged with the bad one


def test_a_commit_is_one_write_of_the_device_attributes_so_a_kill_cannot_split_it(tmp_path, monkeypatch):
    """``committed`` and ``blocks`` land in one ``zarr.json`` write. zarr 3's ``attrs.update`` is
    ``MutableMapping.update``: one write per key, so a writer killed between the two left
    ``committed`` advanced and ``blocks`` one short, and a resume cut the last committed block's
    raw rows (seen as a Loihi run resumed one block of spikes short)."""
    from zarr.storage import LocalStore

    path = tmp_path / "r.zarr"
    store = make_store(path)
    spikes = {"spikes": {"time": np.array([0.1, 0.2]), "channel": np.array([1, 2])}}
    store.append("esn", **block(0, 4), raw=spikes)
    written: list[dict] = []
    real_set = LocalStore.set

    async def spy(self, key, value):
        if key == "esn/zarr.json":
            written.append(json.loads(value.to_bytes())["attributes"])
        return await real_set(self, key, value)

    monkeypatch.setattr(LocalStore, "set", spy)
    store.append("esn", **block(4, 4), raw=spikes)
    assert [(a["committed"], a["blocks"]) for a in written] == [(8, 2)]
    # and what a resume sees matches: the raw rows of every committed block are kept
    monkeypatch.undo()
    reopened = RunStore.reopen(path)
    assert reopened.committed("esn") == 8
    np.testing.assert_array_equal(RunReader(path).raw("esn", "spikes")["channel"], [1, 2, 1, 2])
