"""The `loihi` device: an LSM quantised onto Loihi's integer neurons, run through the bench.

The emulator itself is tested against Lava in test_loihi_emulator.py / test_loihi_lava.py, the
quantiser in test_loihi_quantise.py; here: the driver's input encodings, features and raw
spikes (equal to the emulator's own spikes), block-split invariance, its summary (operation
counts, energy, resources, the distance to the float LSM), the back-end selection (mock, and
`hw` refused before Ray starts), and a SIGKILLed run resumed bit for bit.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import zarr
from conftest import sigkill_run
from labbench.drivers.loihi import Loihi
from labbench.drivers.loihi.emulator import Emulator

import labbench as lb
from labbench.cli import main
from labbench.spec.protocol import from_dict

SMALL_DT = 0.5   # the LSM's default dt (ms)
SMALL = dict(units=120, n_inputs=2, steps_per_sample=5, input_mode="spikes", input_connectivity=0.3, seed=4)


def _u(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (rows, 2)).astype(np.float64)


def test_features_and_raw_spikes_are_the_emulators_own_spikes():
    u = _u(60)
    with lb.open_device("loihi", **SMALL, features="counts") as dev:
        block = dev.run(u)
        x = dev.encode(u)
    np.testing.assert_array_equal(x, np.repeat(u.astype(np.uint8), 5, axis=0))   # spikes mode: every step
    emu = Emulator(dev.network_)
    spikes = emu.run(x).spikes
    assert spikes.sum() > 0
    np.testing.assert_array_equal(block.features, spikes.reshape(60, 5, -1).sum(axis=1))
    steps, neurons = np.nonzero(spikes)
    np.testing.assert_array_equal(block.raw["spikes"]["step"], steps)
    np.testing.assert_array_equal(block.raw["spikes"]["neuron"], neurons)


def test_the_trace_is_the_lsms_filter_at_each_rows_end_and_blocks_can_be_split():
    u = _u(80, seed=1)
    with lb.open_device("loihi", **SMALL) as dev:
        whole = dev.run(u)
        dev.reset()
        parts = [dev.run(u[:33]), dev.run(u[:0]), dev.run(u[33:])]   # an empty block changes nothing
        x = dev.encode(u)   # after the runs: spikes mode has no state
    np.testing.assert_array_equal(np.vstack([p.features for p in parts]), whole.features)
    np.testing.assert_array_equal(np.concatenate([p.raw["spikes"]["step"] for p in parts]),
                                  whole.raw["spikes"]["step"])
    # trace <- trace * exp(-dt/tau_trace) + spike, every step (labbench.drivers.lsm.kernel)
    spikes = Emulator(dev.network_).run(x).spikes.astype(np.float64)
    decay = math.exp(-SMALL_DT / 20.0)
    trace = np.zeros(spikes.shape[1])
    want = []
    for t, s in enumerate(spikes):
        trace = trace * decay + s
        if t % 5 == 4:
            want.append(trace.copy())
    np.testing.assert_allclose(whole.features, np.array(want, dtype=np.float32), rtol=1e-6)


def test_current_mode_is_a_delta_sigma_rate_code_carried_across_blocks():
    with lb.open_device("loihi", units=20, n_inputs=3, steps_per_sample=10, input_mode="current", seed=0) as dev:
        u = np.array([[0.0, 0.25, 1.0], [0.5, 0.25, 1.7], [-0.3, 0.05, 0.0]])
        x = dev.encode(u).reshape(3, 10, 3)
        np.testing.assert_array_equal(x.sum(axis=1), [[0, 2, 10], [5, 3, 10], [0, 0, 0]])   # 2.5 + 2.5 spikes: 2, then 3
        # the running sum carries over: 0.05 x 10 = 0.5 spikes per row, so one spike every two rows
        x2 = dev.encode(np.full((4, 3), 0.05)).reshape(4, 10, 3)
        assert x2[:, :, 1].sum() == 2
        assert any("clipped" in w for w in dev.health())   # -0.3 and 1.7 were clipped to [0, 1]


def test_counts_mode_spreads_a_rows_count_over_its_first_steps_and_says_what_it_drops():
    with lb.open_device("loihi", units=20, n_inputs=2, steps_per_sample=4, input_mode="counts", seed=0) as dev:
        x = dev.encode(np.array([[2.0, 0.0], [6.0, 1.0]])).reshape(2, 4, 2)
        np.testing.assert_array_equal(x[:, :, 0], [[1, 1, 0, 0], [1, 1, 1, 1]])
        np.testing.assert_array_equal(x[:, :, 1], [[0, 0, 0, 0], [1, 0, 0, 0]])
        assert dev.health() == ["2 input spikes were dropped: a row's count is at most steps_per_sample = 4 "
                                "binary spikes"]


def test_summary_counts_energy_resources_and_the_distance_to_the_float_lsm():
    u = _u(200, seed=2)
    with lb.open_device("loihi", **SMALL, compare_float=True) as dev:
        block = dev.run(u)
        s = dev.summary()
    n_spikes = len(block.raw["spikes"]["step"])
    assert s["counts"]["spikes"] == n_spikes > 0
    assert s["counts"]["neuron_updates"] == 200 * 5 * 120 and s["counts"]["steps"] == 1000
    assert s["energy"]["energy_J"] > 0 and s["resources"]["loihi1"]["cores"] == 1
    vf = s["versus_float_lsm"]
    assert 0.5 < vf["rate_correlation"] <= 1.0       # the same wiring and input: rates agree
    # but not spike for spike (delays, no refractoriness): between identical (0) and independent (~1)
    assert 0.05 < vf["van_rossum_relative"] < 1.2
    assert vf["mean_rate_hz"]["loihi"] == pytest.approx(n_spikes / 120 / 0.5)
    assert s["quantisation"]["relative_weight_error"]["recurrent"] < 0.02


def test_mock_means_the_emulator_and_the_emulator_is_always_available():
    assert Loihi.mock_params({"backend": "hw", "units": 5}) == {"backend": "emulator", "units": 5}
    with pytest.raises(Exception, match="lava_python"):      # a protocol names no interpreter to run
        Loihi(units=5, lava_python="/usr/bin/python3")
    assert Loihi.backends()["emulator"] == (True, "ok")
    assert Loihi.backend_of({}) == "emulator"


def test_an_esn_parameter_is_refused_in_one_line():
    with pytest.raises(Exception, match="spectral_radius"):
        Loihi(units=10, spectral_radius=0.9)


HW_PROTOCOL = """
[protocol]
name = "loihi_hw"
[device]
driver = "loihi"
params = { backend = "hw", units = 50 }
[task]
name = "narma"
[run]
washout = 10
train = 100
test = 50
block = 50
"""


def test_hw_without_lava_loihi_is_refused_in_one_line_before_ray_starts(tmp_path, capsys):
    if Loihi.backends()["hw"][0]:
        pytest.skip("lava-loihi is installed here: the hw back end is available")
    path = tmp_path / "hw.toml"
    path.write_text(HW_PROTOCOL)
    t0 = time.monotonic()
    assert main(["run", str(path), "--quiet", "--store-root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "device.params.backend" in err[0] and "'hw'" in err[0], err
    assert not (tmp_path / "runs").exists()            # nothing started, nothing written
    assert time.monotonic() - t0 < 60


#: 20,000 rows: still streaming for seconds after the kill at 1,000 committed rows (~6k rows/s at load 10),
#: and the uninterrupted run and the resume each stream half of what the first version did (40,000)
KILL_PROTOCOL = """
[protocol]
name = "loihi_kill"
seed = 5
[device]
driver = "loihi"
params = { units = 200, input_mode = "poisson", input_sources = 100, input_offset = 0.5, input_gain = 0.625, max_rate = 50.0, w_exc = 1.5, input_weight = 3.0, input_connectivity = 0.2, steps_per_sample = 10, seed = 2 }
[task]
name = "narma"
[run]
washout = 100
train = 15000
test = 4900
block = 250
"""


def test_a_sigkilled_loihi_run_resumes_to_the_uninterrupted_run_bit_for_bit(ray_session, store_root, tmp_path):
    killed = sigkill_run(KILL_PROTOCOL, tmp_path, "loihi", 1000)
    n = zarr.open_group(str(killed), mode="r")["loihi"].attrs["committed"]
    assert 1000 <= n < 20000
    assert main(["resume", str(killed), "--quiet"]) == 0
    full = lb.run(from_dict(__import__("tomllib").loads(KILL_PROTOCOL)), store_root=store_root, progress=False)
    done, ref = lb.open_run(killed), lb.open_run(full.store)
    assert done.attrs["status"] == "complete" and done.attrs["resumed"][0]["from_rows"] == {"loihi": n}
    a, b = zarr.open_group(str(killed), mode="r")["loihi"], zarr.open_group(str(full.store), mode="r")["loihi"]
    for key in ("inputs", "features", "targets", "phase"):
        assert a[key][:].tobytes() == b[key][:].tobytes(), key
    ra, rb = done.raw("loihi", "spikes"), ref.raw("loihi", "spikes")
    assert len(ra["step"]) > 0
    for col in ("step", "neuron"):
        np.testing.assert_array_equal(ra[col], rb[col])


LAVA_PROTOCOL = """
[protocol]
name = "loihi_lava"
seed = 1
[[devices]]
name = "emulated"
driver = "loihi"
params = { units = 100, input_mode = "current", input_scaling = 100.0, steps_per_sample = 5, seed = 3 }
[[devices]]
name = "lava"
driver = "loihi"
params = { backend = "lava", units = 100, input_mode = "current", input_scaling = 100.0, steps_per_sample = 5, seed = 3 }
[task]
name = "narma"
[run]
washout = 20
train = 300
test = 100
block = 140
"""


def test_the_lava_back_end_runs_a_protocol_from_this_bench_and_equals_the_emulator(ray_session, store_root):
    """backend = "lava": Lava 0.10 itself, in the Python 3.10 worker, driven by this 3.11 bench
    through Ray; its features and spikes equal the emulator's bit for bit."""
    from labbench.drivers.loihi.lava_backend import find_lava_python

    if find_lava_python() is None:
        pytest.skip("no Python 3.10 interpreter with lava-nc (run `bash .ci/lava_venv.sh` or set "
                    "LABBENCH_LAVA_PYTHON)")
    result = lb.run(from_dict(__import__("tomllib").loads(LAVA_PROTOCOL)), store_root=store_root, progress=False)
    assert result.status == "complete"
    run = lb.open_run(result.store)
    g = zarr.open_group(str(result.store), mode="r")
    assert g["lava/features"][:].tobytes() == g["emulated/features"][:].tobytes()
    a, b = run.raw("lava", "spikes"), run.raw("emulated", "spikes")
    assert len(a["step"]) > 100
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_array_equal(a["neuron"], b["neuron"])
    versions = g["lava"].attrs["describe"]["backend_versions"]
    assert versions["lava"] == "0.10.0" and versions["python"].startswith("3.10.")
