"""Closed-loop protocols (issue 7): a policy decides each next block from the last one.

The policies are tested alone (the controller's arithmetic, the trial structure), then in
runs: the stored record must be exactly what the policy saw and decided, the loop's
latency is stored per block, a device restart mid-loop gives the same run as none, and
the MEA protocols (rate clamp, spontaneous bursts) give their summaries.

Issue 18: the policy runs in the device's actor by default (``run.closed_loop = "actor"``);
the bench-side loop stays as an option. Both make the same run bit for bit on a
deterministic device, records reach the store while the loop runs, and a policy error in
the actor fails the run in one line with the blocks before it kept.
"""

import contextlib
import threading
import time

import numpy as np
import pytest
import zarr

import labbench as lb
from conftest import PROTOCOLS, small_protocol
from labbench.spec.policy import LoopBlock, NextBlock, check_next, loop_timing
from labbench.spec.protocol import ProtocolError, from_dict, load
from labbench.store import RunReader, StoreError
from labbench.tasks import FeedbackTraining, RateClamp

ESN = {"units": 40, "spectral_radius": 0.9, "input_scaling": 0.5, "seed": 4, "dtype": "float64"}


def _block(index, features, inputs=None):
    features = np.asarray(features, dtype=np.float64)
    inputs = np.zeros((len(features), 1)) if inputs is None else inputs
    return LoopBlock(index=index, start=index * len(features), inputs=inputs, features=features,
                     targets=np.zeros((len(features), 1)))


# -- the policies alone --------------------------------------------------------------------
def test_rate_clamp_rests_for_the_baseline_then_pushes_towards_the_target_without_wind_up():
    pol = RateClamp(target=1.0, kp=0.5, ki=0.25, baseline_blocks=2).policy(0)
    first = pol(None, 5)
    assert first.inputs.shape == (5, 1) and not first.inputs.any() and np.isnan(first.record["measured"])
    assert pol(_block(0, np.zeros((5, 3))), 5).record["command"] == 0.0          # block 1: still baseline
    nb = pol(_block(1, np.full((5, 3), 0.2)), 5)                                 # error 0.8
    assert nb.record["measured"] == pytest.approx(0.2) and nb.record["error"] == pytest.approx(0.8)
    assert nb.record["command"] == pytest.approx(0.5 * 0.8 + 0.25 * 0.8)
    assert np.all(nb.inputs == nb.record["command"]) and np.all(nb.targets == 1.0)
    for k in range(2, 40):                                                        # silent device: saturates
        nb = pol(_block(k, np.zeros((5, 3))), 5)
    assert nb.record["command"] == 1.0 and pol.integral_ == 1.0                   # clamped, no wind-up
    nb = pol(_block(40, np.full((5, 3), 3.0)), 5)                                 # far above: at once down
    assert nb.record["command"] == 0.0


def test_feedback_trials_predictable_after_a_hit_unpredictable_after_a_miss():
    task = FeedbackTraining(feedback_rows=6, stim_rows=2, response_rows=3)
    pol = task.policy(seed=1)
    nb = pol(None, task.trial_rows)
    c = int(nb.record["trial_class"])
    assert not nb.inputs[:6].any() and np.all(nb.inputs[6:8, c] == 1) and not nb.inputs[6:8, 1 - c].any()
    assert not nb.inputs[8:].any() and np.all(nb.targets[6:] == c) and np.all(nb.targets[:6] == 0.5)
    # the response rows are the last three; region 1 is the second half of the units
    response = np.zeros((task.trial_rows, 4))
    response[-3:, 2 + 2 * (c == 0):] = 0.0
    response[-3:, 2:] = 1.0 if c == 1 else 0.0
    response[-3:, :2] = 1.0 if c == 0 else 0.0
    hit = pol(_block(0, response, nb.inputs), task.trial_rows)
    assert hit.record["hit"] == 1.0 and hit.record["action"] == c
    assert np.all(hit.inputs[:6, 2] == 1) and not hit.inputs[:6, 3].any()      # predictable feedback
    c2 = int(hit.record["trial_class"])
    wrong = np.zeros((task.trial_rows, 4))
    wrong[-3:, (2 if c2 == 0 else 0):(4 if c2 == 0 else 2)] = 1.0              # the other region wins
    miss = pol(_block(1, wrong, hit.inputs), task.trial_rows)
    assert miss.record["hit"] == 0.0 and not miss.inputs[:6, 2].any()
    assert set(np.unique(miss.inputs[:6, 3])) <= {0.0, 1.0}                      # random rows of region 3


def test_loop_timing_and_a_policy_that_returns_the_wrong_shape():
    t = loop_timing(np.array([np.nan, 0.004, 0.005, 0.006, 0.100]), np.array([1e-4] * 5))
    assert t["latency_ms_median"] == pytest.approx(5.5) and t["latency_ms_max"] == pytest.approx(100)
    assert t["jitter_ms_mad"] == pytest.approx(1.0) and t["policy_ms_median"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match=r"task 'x' returned inputs of shape \(3, 1\), expected \(4, 1\)"):
        check_next(NextBlock(np.zeros((3, 1)), np.zeros((3, 1))), 4, 1, 1, "x")
    with pytest.raises(ValueError, match="non-finite inputs"):
        check_next(NextBlock(np.full((4, 1), np.nan), np.zeros((4, 1))), 4, 1, 1, "x")


def test_closed_loop_protocols_are_checked_before_anything_starts():
    base = small_protocol(device={"driver": "esn", "params": ESN}, task={"name": "feedback"},
                          run={"train": 200, "block": 7}, readouts=[])
    with pytest.raises(ProtocolError, match=r"run.block: task 'feedback' runs one trial per block, so the block "
                                            r"must be .* = 10 rows \(got 7\)"):
        from_dict(base)
    with pytest.raises(ProtocolError, match=r"readouts\[0\].name: 'loop' is reserved"):
        from_dict({**base, "run": {"train": 200, "block": 10}, "readouts": [{"kind": "ridge", "name": "loop"}]})
    with pytest.raises(TypeError, match="closed-loop"):
        FeedbackTraining().generate(10, 0)


# -- runs -----------------------------------------------------------------------------------
def _feedback_proto(driver="esn", mode="actor", **params):
    return from_dict(small_protocol(
        protocol={"name": "loop", "seed": 5}, device={"driver": driver, "name": "esn", "params": {**ESN, **params},
                                                      "max_restarts": 2, "timeout_s": 60},
        task={"name": "feedback", "feedback_rows": 5, "stim_rows": 2, "response_rows": 3},
        run={"washout": 100, "train": 600, "test": 300, "block": 10, "closed_loop": mode},
        readouts=[{"kind": "ridge", "alpha": 1e-3}]))


@pytest.fixture(scope="module")
def feedback_run(ray_session, tmp_path_factory):
    run = lb.run(_feedback_proto(), store_root=tmp_path_factory.mktemp("loop"), progress=False)
    return run, RunReader(run.store)


def test_the_stored_loop_is_what_the_policy_saw_and_decided(feedback_run):
    run, r = feedback_run
    d = r.read("esn")
    loop = r.raw("esn", "loop")
    assert run.status == "complete" and len(d["features"]) == 1000
    assert len(loop["row"]) == 100 and np.array_equal(loop["row"], np.arange(0, 1000, 10))
    # replay the policy on the stored features: every decision and every input row agrees
    pol = FeedbackTraining(feedback_rows=5, stim_rows=2, response_rows=3).policy(seed=5)
    prev = None
    for k in range(100):
        nb = pol(prev, 10)
        rows = slice(10 * k, 10 * k + 10)
        np.testing.assert_array_equal(d["inputs"][rows], nb.inputs)
        np.testing.assert_array_equal(d["targets"][rows], nb.targets)
        for key, value in nb.record.items():
            np.testing.assert_equal(loop[key][k], value)
        prev = LoopBlock(k, 10 * k, nb.inputs, d["features"][rows], nb.targets)
    # the loop's timing: one latency per block after the first, and the run's summary
    assert np.isnan(loop["latency_s"][0]) and np.all(loop["latency_s"][1:] > 0)
    assert np.all(loop["device_s"] > 0) and np.all(loop["policy_s"] > 0)
    m = run.metrics["loop"]
    assert m["trials"] == 99 and 0 <= m["hit_rate"] <= 1
    assert m["hit_rate"] == pytest.approx(np.nanmean(loop["hit"]))
    assert 0 < m["latency_ms_median"] <= m["latency_ms_p99"] <= m["latency_ms_max"] < 5000
    assert r.attrs["metrics"]["esn"]["loop"] == pytest.approx(m, nan_ok=True)
    # a readout trained on the loop's own stream decodes the presented class
    assert "ridge" in run.metrics and np.isfinite(run.metrics["ridge"]["nrmse"])


def test_in_actor_and_bench_loops_make_the_same_run(feedback_run, store_root):
    """The policy in the device's actor (default) and in the bench: the same decisions, inputs,
    features and records, bit for bit, on a deterministic device; only the timing differs."""
    run_a, a = feedback_run
    assert a.attrs["protocol"]["run"]["closed_loop"] == "actor" and run_a.timings["loop_chunks"] >= 1
    run_b = lb.run(_feedback_proto(mode="bench"), store_root=store_root, progress=False)
    b = RunReader(run_b.store)
    assert b.attrs["protocol"]["run"]["closed_loop"] == "bench" and "loop_chunks" not in run_b.timings
    for key in ("inputs", "features", "targets", "phase"):
        np.testing.assert_array_equal(a.read("esn")[key], b.read("esn")[key], err_msg=key)
    la, lb_ = a.raw("esn", "loop"), b.raw("esn", "loop")
    assert set(la) == set(lb_) == {"row", "latency_s", "policy_s", "device_s", "trial_class", "action", "hit",
                                   "margin"}
    for key in ("row", "trial_class", "action", "hit", "margin"):
        np.testing.assert_array_equal(la[key], lb_[key], err_msg=key)
    for key in ("latency_s", "policy_s", "device_s"):          # timed in both, on the device's process
        assert np.isnan(la[key][0]) == np.isnan(lb_[key][0]) == (key == "latency_s")
        assert np.all(la[key][1:] > 0) and np.all(lb_[key][1:] > 0)
    for key in ("hit_rate", "hit_rate_first_quarter", "hit_rate_last_quarter", "trials"):
        assert run_a.metrics["loop"][key] == run_b.metrics["loop"][key], key
    assert run_a.metrics["ridge"] == pytest.approx(run_b.metrics["ridge"], nan_ok=True)


@pytest.mark.parametrize("mode", ["actor", "bench"])
def test_a_device_restarted_mid_loop_gives_the_same_run(feedback_run, store_root, tmp_path, mode):
    # the device dies at block 40 once the store holds blocks 0-39 (bench), or some blocks (actor: the
    # loop hands its blocks over at the block boundary after the bench asks; it stalls in block 40)
    proto = _feedback_proto("crashing_esn", mode=mode, crash_at_block=40, how="sigkill",
                            once_marker=str(tmp_path / "killed"), wait_rows=-1 if mode == "bench" else 1,
                            wait_committed=str(store_root / "*.zarr" / "esn" / "zarr.json"))
    run = lb.run(proto, store_root=store_root, progress=False)
    assert (tmp_path / "killed").exists()
    r = RunReader(run.store)
    (restart,) = r.device_attrs("esn")["restarts"]
    assert restart["replayed_rows"] == restart["committed"] > 0
    assert restart["committed"] == 400 if mode == "bench" else restart["committed"] % 10 == 0
    ref = feedback_run[1]
    for key in ("inputs", "features", "targets", "phase"):
        np.testing.assert_array_equal(r.read("esn")[key], ref.read("esn")[key], err_msg=key)
    for key in ("row", "trial_class", "hit", "action"):
        np.testing.assert_array_equal(r.raw("esn", "loop")[key], ref.raw("esn", "loop")[key], err_msg=key)
    zarr.open_group(str(run.store), mode="r+").attrs["status"] = "aborted"   # as if it had stopped early
    with pytest.raises(StoreError, match="closed-loop: its policy decided each block"):
        lb.resume(run.store, progress=False)


def _clamp_proto(mode="actor", blocks=40, **params):
    return from_dict(small_protocol(
        protocol={"name": "clamp", "seed": 1},
        device={"driver": "faulty", "name": "dev", "params": {"fail_at_block": -1, **params}, "timeout_s": 60},
        task={"name": "rate_clamp", "target": 0.5, "baseline_blocks": 1},
        run={"train": 10 * blocks, "block": 10, "closed_loop": mode}, readouts=[]))


def test_in_actor_loop_records_reach_the_store_while_the_run_goes(ray_session, store_root):
    """A device taking 50 ms a block (40 blocks): a reader polling the store sees the loop stream
    grow while the run is still running, not all of it at the end."""
    seen: list[tuple[str, int, int]] = []
    stop = threading.Event()

    def poll(path):
        def loop():
            while not stop.is_set():
                with contextlib.suppress(Exception):        # the group may not exist yet
                    r = RunReader(path)
                    status = r.attrs.get("status")
                    n_loop = len(r.raw("dev", "loop").get("row", ()))
                    seen.append((status, r.committed("dev"), n_loop))   # rows read after: never fewer
                time.sleep(0.02)
        threading.Thread(target=loop, daemon=True).start()

    try:
        run = lb.run(_clamp_proto(delay_s=0.05), store_root=store_root, progress=False, on_store=poll)
    finally:
        stop.set()
    loop = run.reader().raw("dev", "loop")
    assert len(loop["row"]) == 40 and run.metrics["loop"]["blocks"] == 39
    during = [(rows, n) for status, rows, n in seen if status == "running" and 0 < n < 40]
    assert during, f"no poll saw the run part-way: {seen[:5]} ... {seen[-5:]}"
    assert all(10 * n <= rows for rows, n in during)         # a block's record lands with its rows


def test_a_policy_error_in_the_actor_fails_the_run_in_one_line_with_the_blocks_kept(ray_session, store_root):
    """Block 6 comes back all NaN: the rate clamp's next command is NaN and its answer is refused.
    The run fails naming the policy and the rows; blocks 0-6 are committed and readable."""
    with pytest.raises(RuntimeError, match=r"^policy of task 'rate_clamp' failed deciding rows 70–80: ValueError: "
                                           r"policy of task 'rate_clamp' returned non-finite inputs$"):
        lb.run(_clamp_proto(nan_at_block=6), store_root=store_root, progress=False)
    (path,) = store_root.glob("*.zarr")
    r = RunReader(path)
    assert r.attrs["status"] == "failed" and "\n" not in r.attrs["error"]
    assert r.attrs["error"].startswith("RuntimeError: policy of task 'rate_clamp' failed deciding rows 70–80")
    assert r.committed("dev") == 70
    d, loop = r.read("dev", readouts=False), r.raw("dev", "loop")
    assert np.isnan(d["features"][60:70]).all() and np.isfinite(d["features"][:60]).all()
    np.testing.assert_array_equal(loop["row"], np.arange(0, 70, 10))


def test_closed_loop_mode_is_checked(monkeypatch):
    with pytest.raises(ProtocolError, match=r"run.closed_loop"):
        _clamp_proto(mode="device")
    monkeypatch.setattr(RateClamp, "policy_in_actor", False)
    with pytest.raises(ProtocolError, match=r"run.closed_loop: the policy of task 'rate_clamp' needs the bench's "
                                            r"process; set run.closed_loop = \"bench\""):
        _clamp_proto()
    assert _clamp_proto(mode="bench").run.closed_loop == "bench"


def test_mea_rate_clamp_holds_the_mean_rate_and_reports_bursts(ray_session, store_root):
    proto = load(PROTOCOLS / "mea_closed_loop.toml", overrides=["run.train=2400"])      # 60 blocks, 1 min
    run = lb.run(proto, store_root=store_root, progress=False)
    loop, dev = run.metrics["loop"], run.metrics["device"]
    r = RunReader(run.store)
    commands = r.raw("mea", "loop")["command"]
    assert not commands[:4].any() and commands[4:].max() > 0                 # baseline, then stimulation
    assert np.isfinite(loop["spontaneous"]) and loop["error_rel"] < 0.25     # the clamp holds the mean
    stim = r.raw("mea", "stim")
    assert len(stim["time_s"]) > 0 and stim["time_s"].min() >= 4 * 40 * 0.025 - 1e-9   # none in the baseline
    assert dev["spikes"] == len(r.raw("mea", "spikes")["time_s"]) and dev["recorded_s"] == pytest.approx(60.0)


def test_mea_spontaneous_gives_burst_statistics(ray_session, store_root):
    proto = load(PROTOCOLS / "mea_spontaneous.toml", overrides=["run.train=2400"])      # 2 min
    run = lb.run(proto, store_root=store_root, progress=False)
    b = run.metrics["device"]["bursts"]
    assert 2 <= b["bursts_per_min"] <= 30 and 0.05 <= b["median_duration_s"] <= 1.0
    assert set(run.metrics) == {"device"}                  # no readouts, no loop: the recording's summary only
    assert zarr.open_group(str(run.store), mode="r").attrs["metrics"]["mea"]["device"]["bursts"] == pytest.approx(b)


def test_the_monitor_draws_the_loop_record_and_latency(feedback_run):
    """`labbench monitor` on a closed-loop run: the policy's record and the latency per block,
    equal to the stored loop stream, on the run's time axis."""
    from test_monitor import _assert_drawn, _panel_pixels, _window

    run, r = feedback_run
    loop = r.raw("esn", "loop")
    win = _window(run.store)
    try:
        view = win.views["esn"]
        assert {"loop", "latency"} <= set(view.panels) and "metrics" in view.panels
        dev = win.follower.devices["esn"]
        assert dev.closed_loop and dev.loop_position == len(loop["row"]) == 100
        for col, values in loop.items():
            np.testing.assert_array_equal(dev.loop[col], np.asarray(values, dtype=np.float64), err_msg=col)
        curves = view.panels["loop"].curves
        assert set(curves) == {"trial_class", "action", "hit", "margin"}      # the policy's columns, not timing
        np.testing.assert_array_equal(curves["hit"].yData, loop["hit"][1:])            # none before trial 1
        np.testing.assert_allclose(view.panels["latency"].points.yData, loop["latency_s"][1:] * 1e3)
        for key in ("loop", "latency"):
            _assert_drawn(_panel_pixels(win, "esn", key), min_fraction=0.002)
    finally:
        win.close()
