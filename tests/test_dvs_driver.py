"""The DVS driver (drivers/dvs/driver.py): the simulated camera is seeded and block-invariant,
its features are its events binned per row, and the real back ends (an AEDAT4 recording, a
DV network stream as a live camera, an eDVS4337 on a pty) deliver the same events through
the same driver code."""

from __future__ import annotations

import numpy as np
import pytest

from labbench.drivers.dvs import DVS
from labbench.drivers.dvs.events import from_columns
from labbench.drivers.dvs.features import bin_rows, count_maps
from labbench.tasks import get_task

ROWS = 70 * 4                                    # four saccade digits of 60 + 10 rows of 5 ms


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return get_task("saccade_digits").generate(ROWS, seed=1).inputs


@pytest.fixture(scope="module")
def sim_block(digits):
    with DVS(seed=3) as dvs:
        return dvs.run(digits)


def test_the_sim_is_seeded_and_blocks_equal_one_call(digits, sim_block):
    ev = from_columns(sim_block.raw["events"])
    assert 4 * 1500 < len(ev) < 4 * 8000                  # N-MNIST has ~4,000-5,000 events per digit
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"][-1] < ROWS * 5000
    with DVS(seed=3) as dvs:
        parts = [dvs.run(digits[a:b]) for a, b in ((0, 33), (33, 170), (170, ROWS))]
    np.testing.assert_array_equal(np.concatenate([p.features for p in parts]), sim_block.features)
    for col in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(np.concatenate([p.raw["events"][col] for p in parts]),
                                      sim_block.raw["events"][col])
    with DVS(seed=4) as other:
        assert not np.array_equal(other.run(digits).raw["events"]["t"], sim_block.raw["events"]["t"])


def test_features_are_the_events_binned_per_row(sim_block):
    ev = from_columns(sim_block.raw["events"])
    edges = 5000 * np.arange(ROWS + 1)
    expected = count_maps(ev, (34, 34), (1, 1), offsets=bin_rows(ev, edges))
    np.testing.assert_array_equal(sim_block.features, expected)
    assert sim_block.features.shape == (ROWS, 2 * 34 * 34)
    # a blank monitor between digits, each digit a recording of its own: no burst when it appears
    per_row = sim_block.features.sum(axis=1)
    assert per_row[60:70].sum() == 0 and per_row[70] < 10 * np.median(per_row[:60])


def test_every_back_end_swaps_for_the_sim_with_mock():
    for backend, extra in (("aedat4", {"aedat4": {"path": "x.aedat4"}}), ("camera", {}),
                           ("edvs", {"edvs": {"port": "/dev/ttyUSB0"}})):
        params = DVS.mock_params({"backend": backend, **extra})
        assert DVS(**params).params.backend == "sim"
    with pytest.raises(ValueError, match="needs edvs.port"):
        DVS(backend="edvs")


def test_the_aedat4_back_end_plays_a_recording_event_for_event(tmp_path, sim_block):
    pytest.importorskip("dv_processing", reason="the aedat4 back end needs dv-processing (labbench[dvs])")
    from labbench.drivers.dvs.aedat4 import write_aedat4

    ev = from_columns(sim_block.raw["events"])
    path = write_aedat4(tmp_path / "digits.aedat4", ev, (34, 34))
    with DVS(backend="aedat4", aedat4={"path": str(path)}) as player:
        played = [player.run(np.zeros((100, 64))) for _ in range(3)]
    got = from_columns({c: np.concatenate([b.raw["events"][c] for b in played]) for c in ("t", "x", "y", "p")})
    assert len(got) == len(ev)                               # the recording's time 0 is its first event
    np.testing.assert_array_equal(got["t"], ev["t"] - ev["t"][0])
    for col in ("x", "y", "p"):
        np.testing.assert_array_equal(got[col], ev[col])


def test_the_camera_back_end_reads_a_dv_network_stream_on_loopback(sim_block):
    pytest.importorskip("dv_processing", reason="the camera back end needs dv-processing (labbench[dvs])")
    from labbench.drivers.dvs.dv_camera import serve_events

    ev = from_columns(sim_block.raw["events"])
    with serve_events(ev, (34, 34)) as server:
        with DVS(backend="camera", camera={"host": "127.0.0.1", "port": server.port, "silence_s": 20.0}) as cam:
            got = [cam.run(np.zeros((70, 64))) for _ in range(4)]
    t = np.concatenate([b.raw["events"]["t"] for b in got])
    assert len(t) == len(ev)                                  # every event delivered, once
    np.testing.assert_array_equal(t, ev["t"] - ev["t"][0])
    assert sum(b.features.sum() for b in got) == len(ev)


def test_the_edvs_back_end_reads_the_emulated_board_for_every_format():
    from labbench.drivers.dvs.edvs_emulator import start_edvs
    from labbench.drivers.dvs.events import make_events

    rng = np.random.default_rng(0)
    n = 3000
    sent = make_events(np.sort(rng.integers(1000, 200_000, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                       rng.integers(0, 2, n).astype(bool))
    for fmt in (2, 4):
        emu = start_edvs(sent, keep_sent=True)
        try:
            with DVS(backend="edvs", sensor="dvs128", n_inputs=1, row_ms=10.0, pool=[8, 8],
                     edvs={"port": emu.path, "fmt": fmt}) as board:
                blocks = [board.run(np.zeros((10, 1))) for _ in range(3)]
        finally:
            emu.close()
        got = from_columns({c: np.concatenate([b.raw["events"][c] for b in blocks]) for c in ("t", "x", "y", "p")})
        assert len(got) == n, (fmt, len(got))
        for col in ("x", "y", "p"):
            np.testing.assert_array_equal(got[col], sent[col])
        assert np.all(np.diff(got["t"]) >= 0)
        assert sum(b.features.sum() for b in blocks) == n
