"""AEDAT4: labbench-written files read identically by dv-processing, aedat and tonic; files written
by dv-processing's own MonoCameraWriter play back with exact counts and timestamps."""

import time

import numpy as np
import pytest
from labbench.drivers.dvs.aedat4 import AEDAT4Player, read_aedat4, write_aedat4
from labbench.drivers.dvs.events import EVENT_DTYPE, make_events

dv = pytest.importorskip("dv_processing", reason="dv-processing (the aedat4 back end's SDK) is not installed")


def random_events(n, w, h, seed=0, t0=0):
    """Sorted events with repeated timestamps, every pixel corner and both polarities."""
    rng = np.random.default_rng(seed)
    t = t0 + np.cumsum(rng.integers(0, 5, n))  # steps of 0 µs: equal timestamps occur
    x, y = rng.integers(0, w, n), rng.integers(0, h, n)
    x[:2], y[:2] = [0, w - 1], [0, h - 1]
    return make_events(t, x, y, rng.random(n) < 0.4)


def test_labbench_file_reads_identically_in_dv_processing_aedat_and_tonic(tmp_path):
    import aedat
    import tonic.io

    w, h = 346, 260
    ev = random_events(150_000, w, h, seed=3, t0=1_700_000_000_000_000)  # a camera's epoch clock
    path = write_aedat4(tmp_path / "r.aedat4", ev, (w, h), camera_name="labbench_sim", packet_events=4000)

    # dv-processing
    got, res = read_aedat4(path)
    assert res == (w, h) and got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, ev)
    rec = dv.io.MonoCameraRecording(str(path))
    assert rec.getCameraName() == "labbench_sim"
    assert rec.getTimeRange() == (int(ev["t"][0]), int(ev["t"][-1]))

    # aedat
    dec = aedat.Decoder(path)
    assert dec.id_to_stream() == {0: {"type": "events", "width": w, "height": h}}
    a = np.concatenate([pk["events"] for pk in dec if "events" in pk])
    for ours, theirs in [("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")]:
        np.testing.assert_array_equal(a[theirs], ev[ours], err_msg=f"aedat column {theirs}")

    # tonic (its AEDAT4 reader, tonic.io.read_aedat4, decodes with aedat); its transforms take our array
    import tonic.transforms as tt

    tn = tonic.io.read_aedat4(str(path))
    assert len(tn) == len(ev)
    for ours, theirs in [("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")]:
        np.testing.assert_array_equal(tn[theirs], ev[ours], err_msg=f"tonic column {theirs}")
    frames = tt.ToFrame(sensor_size=(w, h, 2), n_event_bins=1)(ev)  # (n_time_bins=1 drops the last event)
    expected = np.zeros((2, h, w), np.int64)
    np.add.at(expected, (ev["p"].astype(int), ev["y"], ev["x"]), 1)
    assert frames.shape == (1, 2, h, w)
    np.testing.assert_array_equal(frames[0], expected)


def test_file_written_by_dv_processing_plays_back_exactly(tmp_path):
    """dv's MonoCameraWriter: one store, then one packet; the player's slices are exact."""
    w, h, n = 64, 48, 12_000
    t = 5_000_000 + 3 * np.arange(n) // 2  # pairs of equal timestamps
    x, y, p = np.arange(n) % w, (np.arange(n) // w) % h, np.arange(n) % 3 == 0
    path = tmp_path / "dv.aedat4"
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_T", (w, h)))
    for a, b, whole_store in [(0, 7000, True), (7000, n, False)]:
        store = dv.EventStore()
        for i in range(a, b):
            store.push_back(int(t[i]), int(x[i]), int(y[i]), bool(p[i]))
        if whole_store:
            writer.writeEvents(store)
        else:
            writer.writeEventPacket(store.toPacket())
    del writer  # closes the file

    player = AEDAT4Player(path)
    assert player.resolution == (w, h) and player.start_us == 5_000_000
    assert player.duration_us == int(t[-1] - t[0]) + 1
    block = 1000
    edges = np.arange(block, player.duration_us + block, block)
    slices = [player.read_until(e) for e in edges]
    assert player.exhausted
    # exact counts per block, analytically: events with t - t0 in [e - block, e)
    expected = np.histogram(t - t[0], bins=np.r_[0, edges])[0]
    np.testing.assert_array_equal([len(s) for s in slices], expected)
    for e, s in zip(edges, slices):
        assert len(s) == 0 or (s["t"].min() >= e - block and s["t"].max() < e)
    got = np.concatenate(slices)
    np.testing.assert_array_equal(got["t"], t - t[0])
    np.testing.assert_array_equal(got["x"], x)
    np.testing.assert_array_equal(got["y"], y)
    np.testing.assert_array_equal(got["p"], p)
    assert len(player.read_until(10 * player.duration_us)) == 0


def test_player_partitions_a_file_for_any_block_pattern_and_rewinds(tmp_path):
    ev = random_events(40_000, 34, 34, seed=5, t0=123)
    path = write_aedat4(tmp_path / "r.aedat4", ev, (34, 34), packet_events=1000)
    rel = ev.copy()
    rel["t"] -= ev["t"][0]
    player = AEDAT4Player(path)
    rng = np.random.default_rng(0)
    edges = np.cumsum(rng.integers(0, 700, 200))  # includes zero-length and in-packet cuts
    parts = [player.read_until(e) for e in edges] + [player.read_until(player.duration_us)]
    np.testing.assert_array_equal(np.concatenate(parts), rel)
    with pytest.raises(ValueError, match="time runs forward"):
        player.read_until(5)
    player.rewind()
    np.testing.assert_array_equal(player.read_until(player.duration_us), rel)


def test_realtime_playback_is_paced_to_the_wall_clock(tmp_path):
    ev = make_events(np.arange(0, 400_000, 100), np.zeros(4000), np.zeros(4000), np.ones(4000, bool))
    path = write_aedat4(tmp_path / "r.aedat4", ev, (1, 1))
    player = AEDAT4Player(path, realtime=True, speed=4.0)  # 0.4 s of recording in 0.1 s
    t0 = time.perf_counter()
    n = sum(len(player.read_until(e)) for e in range(20_000, 420_000, 20_000))
    elapsed = time.perf_counter() - t0
    assert n == 4000
    assert elapsed >= 0.4 / 4.0 - 0.02 * 0.4 / 4.0  # a lower bound: a busy machine only adds time
    assert len(AEDAT4Player(path).read_until(10**9)) == 4000  # unpaced: everything at once


def test_an_empty_recording_plays_as_empty(tmp_path):
    path = write_aedat4(tmp_path / "e.aedat4", make_events([], [], [], []), (10, 10))
    assert len(read_aedat4(path)[0]) == 0
    player = AEDAT4Player(path)
    assert (player.start_us, player.duration_us) == (0, 0)
    assert len(player.read_until(1000)) == 0 and player.exhausted


def test_bad_inputs_fail_with_one_clear_line(tmp_path):
    ev = random_events(100, 10, 10)
    with pytest.raises(ValueError, match=r"outside resolution \(W, H\) = \(5, 10\)"):
        write_aedat4(tmp_path / "a.aedat4", ev, (5, 10))
    with pytest.raises(ValueError, match="not sorted by t"):
        write_aedat4(tmp_path / "a.aedat4", ev[::-1].copy(), (10, 10))
    with pytest.raises(ValueError, match="expected EVENT_DTYPE"):
        write_aedat4(tmp_path / "a.aedat4", np.zeros(3), (10, 10))
    neg = ev.copy()
    neg["t"] -= 10
    with pytest.raises(ValueError, match="negative"):
        write_aedat4(tmp_path / "a.aedat4", neg, (10, 10))
    with pytest.raises(FileNotFoundError, match="missing.aedat4 does not exist"):
        AEDAT4Player(tmp_path / "missing.aedat4")
    junk = tmp_path / "junk.aedat4"
    junk.write_bytes(b"not an aedat file at all" * 10)
    with pytest.raises(ValueError, match="junk.aedat4: not a readable AEDAT4 file") as err:
        AEDAT4Player(junk)
    assert "\n" not in str(err.value)
