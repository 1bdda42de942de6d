"""Event-camera protocols through the whole bench (issue 16): saccade digits on the simulated
DVS beside static pixels, the DVS -> LSM chain, and the moving-bar / rotating-disk gestures."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from conftest import PROTOCOLS

import labbench as lb
from labbench.drivers.dvs.events import from_columns
from labbench.drivers.dvs.features import bin_rows, count_maps
from labbench.spec.protocol import load


@pytest.mark.slow
def test_saccade_digits_event_counts_beat_95_percent(ray_session, store_root):
    """dvs_digits.toml on 1,000 training and 300 held-out digits (stratified), to keep the suite
    short; the whole protocol (1,078 / 719) is measured in docs/dvs.md (0.983 vs 0.974)."""
    proto = load(PROTOCOLS / "dvs_digits.toml", overrides=["task.n_test=300", "run.train=70000", "run.test=21000"])
    run = lb.run(proto, store_root=store_root, progress=False)
    assert run.status == "complete", run.error
    dvs, pixels = run.metrics["dvs/logistic"], run.metrics["pixels/logistic"]
    print(f"saccade digits, 1,000 train / 300 held out: DVS event counts {dvs['accuracy']:.4f}, static pixels "
          f"{pixels['accuracy']:.4f}")
    assert dvs["n_test"] == pixels["n_test"] == 300
    assert dvs["accuracy"] >= 0.95
    assert pixels["accuracy"] >= 0.90
    # every event is in the store, and the features of a digit are its events binned per row
    reader = lb.open_run(run.store)
    ev = from_columns(reader.raw("dvs", "events"))
    assert len(ev) == run.metrics["dvs/device"]["events"]
    rows = slice(70 * 100, 70 * 101)
    window = ev[(ev["t"] >= rows.start * 5000) & (ev["t"] < rows.stop * 5000)]
    feats = reader.read("dvs", rows.start, rows.stop, readouts=False)["features"]
    expected = count_maps(window, (34, 34), (2, 2), offsets=bin_rows(window, 5000 * np.arange(rows.start, rows.stop + 1)))
    np.testing.assert_array_equal(feats, expected)


@pytest.mark.slow
def test_the_dvs_lsm_chain_runs_as_one_protocol(ray_session, store_root):
    """dvs_lsm_digits.toml on 200 training and 60 held-out digits: both streams are stored, the
    liquid's inputs are the retina's binned events, and both readouts learn."""
    proto = load(PROTOCOLS / "dvs_lsm_digits.toml",
                 overrides=["task.n_test=60", "run.train=14000", "run.test=4200"])
    run = lb.run(proto, store_root=store_root, progress=False)
    assert run.status == "complete", run.error
    g = zarr.open_group(str(run.store), mode="r")
    retina, liquid = g["retina"], g["liquid"]
    assert retina.attrs["committed"] == liquid.attrs["committed"] == 18200
    assert liquid["inputs"].shape == (18200, 578) and liquid["features"].shape == (18200, 1000)
    np.testing.assert_array_equal(liquid["inputs"][:], retina["features"][:])
    # ... and those are the retina's events binned to the liquid's rows (5 ms)
    ev = from_columns(lb.open_run(run.store).raw("retina", "events"))
    binned = count_maps(ev, (34, 34), (2, 2), offsets=bin_rows(ev, 5000 * np.arange(18201)))
    np.testing.assert_array_equal(liquid["inputs"][:], binned)
    assert lb.open_run(run.store).raw("liquid", "spikes")["step"].size > 0
    acc = {d: run.metrics[f"{d}/linear"]["accuracy"] for d in ("retina", "liquid")}
    print("200 train / 60 test digits:", acc)
    assert acc["retina"] >= 0.85 and acc["liquid"] >= 0.80


def test_moving_bar_and_rotating_disk_directions_and_export_to_aedat4(ray_session, store_root, tmp_path):
    run = lb.run(load(PROTOCOLS / "dvs_gestures.toml"), store_root=store_root, progress=False)
    assert run.status == "complete", run.error
    m = run.metrics["linear"]
    print(f"gestures (6 classes, 120 held out): {m['accuracy']:.3f}")
    assert m["n_test"] == 120
    assert m["accuracy"] >= 0.80                      # chance is 1/6

    # labbench export STORE --aedat4 FILE: read back identically by dv-processing, aedat and tonic
    pytest.importorskip("dv_processing", reason="AEDAT4 export needs dv-processing (labbench[dvs])")
    import aedat
    import tonic.io

    from labbench.cli import main
    from labbench.drivers.dvs.aedat4 import read_aedat4

    stored = lb.open_run(run.store).raw("dvs", "events")
    path = tmp_path / "gestures.aedat4"
    assert main(["export", str(run.store), "--aedat4", str(path)]) == 0
    got, resolution = read_aedat4(path)
    assert resolution == (32, 32) and len(got) == len(stored["t"]) > 100_000
    by_aedat = np.concatenate([pk["events"] for pk in aedat.Decoder(path) if "events" in pk])
    by_tonic = tonic.io.read_aedat4(str(path))
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        np.testing.assert_array_equal(got[ours], stored[ours])
        np.testing.assert_array_equal(by_aedat[theirs], stored[ours])
        np.testing.assert_array_equal(by_tonic[theirs], stored[ours])
