"""Live trainers: tailing a run store, writing metric history, replay, bad input."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import labbench as lb
from labbench.cli import main as cli
from labbench.engine.live import Trainer, TrainerError, save_model
from labbench.spec.protocol import ReadoutSection, from_dict
from labbench.store import RunStore
from labbench.tasks import Digits, Narma

from conftest import small_protocol


def _snapshot(path: Path) -> dict[str, str]:
    """Every file of a store with a hash of its bytes (to prove nothing changed)."""
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(path.rglob("*")) if f.is_file()}


# ------------------------------------------------------------------------------- live == replay
def test_trainer_actor_writes_history_while_the_run_is_running_and_replay_agrees(ray_session, store_root):
    proto = small_protocol(**{"device": {"driver": "faulty",
                                         "params": {"fail_at_block": -1, "delay_s": 0.08}},
                              "run.block": 25})
    proto["readouts"] = [{"kind": "ridge", "alpha": 1e-6}]
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("run", lb.run(from_dict(proto), store_root=store_root,
                                                                         progress=False)))
    t.start()
    seen_running = []  # evaluations seen while the run's status was 'running'
    deadline = time.monotonic() + 120
    while t.is_alive() and time.monotonic() < deadline:
        stores = list(store_root.glob("*.zarr"))
        if stores:
            try:
                r = lb.open_run(stores[0])
                ro = r.readouts("faulty").get("ridge") if r.devices else None
                if ro is not None and r.status == "running":
                    seen_running.append(int(ro.get("evaluations", 0)))
            except Exception:  # the store is being created
                pass
        time.sleep(0.05)
    t.join()
    run = result["run"]
    assert run.status == "complete"
    # the history grew during the run, not only at its end
    assert max(seen_running) >= 3 and len(set(seen_running)) >= 3, seen_running
    r = lb.open_run(run.store)
    dev = r.devices[0]
    hist = r.history(dev, "ridge")
    assert np.isfinite(hist["prequential_nrmse"]).sum() >= 5 and np.isfinite(hist["test_nrmse"]).any()
    assert np.all(np.diff(hist["row"]) >= 0)
    (replayed,) = lb.train(run.store, "ridge", alpha=1e-6, name="again")
    assert replayed.metrics == run.metrics["ridge"]
    pred = r.read(dev)
    np.testing.assert_array_equal(pred["readouts/ridge/predictions"], pred["readouts/again/predictions"])
    assert r.readouts(dev)["again"]["status"] == "complete"


def test_replay_of_esn_run_equals_live_for_every_readout(ray_session, store_root):
    proto = small_protocol()
    proto["readouts"] = [
        {"kind": "ridge", "alpha": 1e-8},
        {"kind": "sklearn", "name": "sgd", "estimator": "sklearn.linear_model.SGDRegressor",
         "estimator_params": {"random_state": 0, "eta0": 0.01}},
    ]
    run = lb.run(from_dict(proto), store_root=store_root, progress=False)
    results = lb.train(run.store)  # no readout given: the protocol's own, as <name>-replay
    assert {r.name: r.metrics for r in results} == {f"{k}-replay": v for k, v in run.metrics.items()}
    assert run.metrics["ridge"]["nrmse"] < 0.5  # NARMA-10 on 50 units learns something


# ------------------------------------------------------------------------------- the trainer alone
def _narma_stream(n=600, width=20, seed=0):
    task = Narma()
    data = task.generate(n, seed)
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(1, width))
    features = np.tanh(data.inputs @ W + 0.1 * rng.normal(size=(n, width)))
    phase = np.repeat(np.array([0, 1, 2], dtype=np.int8), [50, 400, 150])
    return task, {"features": features, "targets": data.targets, "phase": phase}


@pytest.mark.parametrize("kind,params", [("ridge", {"alpha": 1e-4}),
                                          ("sklearn", {"estimator": "sklearn.linear_model.SGDRegressor",
                                                       "estimator_params": {"random_state": 1}})])
def test_trainer_result_does_not_depend_on_how_rows_arrive(kind, params):
    task, arrays = _narma_stream()
    spec = ReadoutSection(kind=kind, **params)
    outs = []
    for cuts in ([600], [1, 63, 64, 300, 600], list(range(7, 600, 7)) + [600]):
        tr = Trainer(spec, task, layout={"washout": 50, "train": 400, "test": 150}, block=64)
        a = 0
        emitted = []
        for b in cuts:
            emitted += tr.consume(a, {k: v[a:b] for k, v in arrays.items()})
            a = b
        emitted += tr.finish()
        outs.append((tr.metrics(), [e.history for e in emitted if e.history]))
    assert outs[0] == outs[1] == outs[2]


class _Spy:
    """A readout that records the order of its calls and what it saw."""

    def __init__(self):
        self.calls = []

    def partial_fit(self, X, y):
        self.calls.append(("fit", X[:, 0].round(9).tolist()))
        return self

    def predict(self, X):
        self.calls.append(("predict", X[:, 0].round(9).tolist()))
        return np.zeros(len(X))


def test_prequential_scores_each_train_block_before_learning_it_and_tests_are_never_learned():
    task, arrays = _narma_stream()
    arrays["features"][:, 0] = np.arange(600)  # row ids
    tr = Trainer(ReadoutSection(kind="ridge"), task, layout={"washout": 50, "train": 400, "test": 150}, block=64)
    spy = tr.readout = _Spy()
    tr.consume(0, arrays)
    tr.finish()
    learned = set()
    for what, rows in spy.calls:
        if what == "predict":
            # whatever is predicted (prequential or test) has not been learned from yet
            assert not learned & set(rows)
        else:
            learned |= set(rows)
    assert learned == set(range(50, 450))  # exactly the train rows
    predicted = {r for what, rows in spy.calls if what == "predict" for r in rows}
    assert set(range(450, 600)) <= predicted


def test_sequence_task_pooling_is_independent_of_block_and_presentation_length(ray_session, store_root):
    accs = []
    # the second block length (30 rows) is no multiple of the 4-row sample, so half the block boundaries
    # cut a sample in two, as 10 did, in a third of the blocks (3,600 rows)
    for present, rest, block in ((1, 0, 100), (3, 1, 30)):
        L = present + rest
        proto = {
            "protocol": {"name": "digits", "seed": 0},
            "device": {"driver": "identity"},
            "task": {"name": "digits", "present": present, "rest": rest, "n_test": 300},
            "run": {"washout": 0, "train": 600 * L, "test": 300 * L, "block": block},
            "readouts": [{"kind": "sklearn", "name": "logreg", "estimator": "sklearn.linear_model.LogisticRegression",
                          "estimator_params": {"max_iter": 2000}, "pool": "mean"}],
        }
        run = lb.run(from_dict(proto), store_root=store_root, progress=False)
        accs.append(run.metrics["logreg"]["accuracy"])
        r = lb.open_run(run.store)
        data = r.read("identity")
        pred, seq, phase = data["readouts/logreg/predictions"][:, 0], data["sequence"], data["phase"]
        test_rows = (phase == 2) & (seq >= 0)
        assert np.isfinite(pred[test_rows]).all() and np.isnan(pred[~test_rows]).all()
        for s in np.unique(seq[test_rows])[:20]:  # every row of a sample carries one prediction
            assert len(set(pred[seq == s])) == 1
        assert run.metrics["logreg"]["n_test"] == 300 and run.metrics["logreg"]["n_train"] == 600
    assert accs[0] == accs[1] and accs[0] > 0.9


# ------------------------------------------------------------------------------- bad input
def _store_without_train(path: Path) -> Path:
    store = RunStore(path, "", {"protocol": {"task": {"name": "narma"}}})
    store.add_device("esn", spec={"n_inputs": 1, "n_features": 4}, describe={}, n_outputs=1, dtype="float64",
                     chunk_rows=10)
    store.append("esn", inputs=np.zeros((20, 1)), features=np.zeros((20, 4)), targets=np.zeros((20, 1)),
                 phase=np.r_[np.zeros(10), np.full(10, 2)].astype(np.int8))
    store.finish("complete")
    return path


def test_no_train_rows_is_a_one_line_error_and_changes_nothing(tmp_path, capsys):
    path = _store_without_train(tmp_path / "r.zarr")
    before = _snapshot(path)
    with pytest.raises(TrainerError, match="no train rows"):
        lb.train(path, "ridge")
    assert cli(["train", str(path), "--readout", "ridge", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no train rows" in err
    assert _snapshot(path) == before


def test_not_a_labbench_run_is_refused(tmp_path, capsys):
    path = tmp_path / "plain.zarr"
    zarr.open_group(str(path), mode="w").create_array("x", shape=(3,), dtype="f8")
    before = _snapshot(path)
    assert cli(["train", str(path), "--readout", "ridge", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a labbench run" in err and err.count("\n") == 0
    assert _snapshot(path) == before
    assert cli(["train", str(tmp_path / "missing.zarr"), "--quiet"]) == 2
    assert "no such run store" in capsys.readouterr().err


def test_feature_width_mismatch_names_both_widths_and_changes_nothing(ray_session, store_root, tmp_path, capsys):
    run_a = lb.run(from_dict(small_protocol()), store_root=store_root, progress=False)
    proto_b = small_protocol()
    proto_b["device"]["params"]["units"] = 30
    run_b = lb.run(from_dict(proto_b), store_root=store_root, progress=False)
    (res,) = lb.train(run_a.store, "ridge", alpha=1e-8, name="for-b")
    model = tmp_path / "ridge.pkl"
    save_model(res.pipeline, model)
    before = _snapshot(Path(run_b.store))
    assert cli(["train", str(run_b.store), "--readout", "ridge", "--model", str(model), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "fitted on 50 features" in err and "has 30" in err
    assert _snapshot(Path(run_b.store)) == before
    # the same model on a store of the right width goes on learning and is scored
    (again,) = lb.train(run_a.store, "ridge", name="continued", model=model)
    assert again.metrics["n_train"] == 400 and np.isfinite(again.metrics["nrmse"])


def test_bad_readout_and_taken_name_are_usage_errors(ray_session, store_root, capsys):
    run = lb.run(from_dict(small_protocol()), store_root=store_root, progress=False)
    before = _snapshot(Path(run.store))
    assert cli(["train", str(run.store), "--readout", "nope", "--quiet"]) == 2
    assert "unknown readout 'nope'" in capsys.readouterr().err
    assert cli(["train", str(run.store), "--readout", "ridge", "--set", "alpah=1", "--quiet"]) == 2
    assert "alpah" in capsys.readouterr().err
    assert cli(["train", str(run.store), "--readout", "ridge", "--quiet"]) == 2  # 'ridge' exists
    assert "already exists" in capsys.readouterr().err
    assert _snapshot(Path(run.store)) == before
    assert cli(["train", str(run.store), "--readout", "ridge", "--set", "alpha=1e-8", "--name", "r2", "--json",
                "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["r2"]["nrmse"] == pytest.approx(run.metrics["ridge"]["nrmse"], rel=1e-6)
    assert cli(["show", str(run.store)]) == 0
    shown = capsys.readouterr().out
    assert "r2: complete" in shown and "prequential_nrmse" in shown


def test_digits_layout_is_checked_in_the_protocol():
    proto = {"protocol": {"name": "d"}, "device": {"driver": "identity"},
             "task": {"name": "digits", "present": 10, "rest": 2, "n_test": 100},
             "run": {"washout": 0, "train": 1000, "test": 2400, "block": 100},
             "readouts": [{"kind": "vote", "module": {"kind": "nope"}}]}
    with pytest.raises(Exception) as info:
        from_dict(proto)
    msg = str(info.value)
    assert "run.train: 1000 rows is not a whole number of digits (each takes 12 rows" in msg
    assert "only 100 are held out (task.n_test = 100;" in msg
    assert "readouts[0].module.kind: unknown module 'nope'" in msg
    narma = small_protocol()
    narma["readouts"] = [{"kind": "ridge", "pool": "mean"}]
    with pytest.raises(Exception, match="only sequence tasks pool"):
        from_dict(narma)


def test_digits_task_never_shows_test_digits_in_training():
    task = Digits(present=2, rest=1, n_test=200)
    data = task.generate_run(30, 1300 * 3 * 2, 200 * 3, seed=5)  # two passes over the pool
    images = np.unique(data.inputs[data.sequence >= 0], axis=0)
    train_rows = slice(0, 30 + 1300 * 6)
    test_rows = slice(30 + 1300 * 6, None)
    seen_train = {r.tobytes() for r in data.inputs[train_rows][data.sequence[train_rows] >= 0]}
    seen_test = {r.tobytes() for r in data.inputs[test_rows][data.sequence[test_rows] >= 0]}
    pool, held_out = task.split()
    assert len(set(pool) & set(held_out)) == 0 and len(held_out) == 200
    # the UCI digits contain a few exact duplicate images; no held-out image is shown in training otherwise
    from labbench.tasks.digits import _digits

    imgs, _ = _digits()
    dup = {imgs[i].tobytes() for i in held_out} & {imgs[i].tobytes() for i in pool}
    assert (seen_train & seen_test) <= dup
    assert len(images) > 1000
    assert np.isnan(data.targets[data.sequence < 0]).all()
    assert task.score([1, 2, 3, 4], [1, 2, 0, 4]) == {"accuracy": 0.75}


def test_force_readout_learns_with_feedback_before_the_free_run(ray_session, store_root):
    proto = {
        "protocol": {"name": "mg_force", "seed": 0},
        "device": {"driver": "esn", "params": {"units": 100, "spectral_radius": 1.25, "leak": 0.3,
                                               "input_connectivity": 0.2, "seed": 0, "dtype": "float64"}},
        "task": {"name": "mackey_glass", "free_run": True, "free_run_horizon": 20, "free_run_starts": 20},
        "run": {"washout": 100, "train": 1500, "test": 700, "block": 250},
        "readouts": [{"kind": "ridge", "alpha": 1e-6},
                     {"kind": "force", "alpha": 1e-6, "fit_intercept": True, "feedback_steps": 300}],
    }
    run = lb.run(from_dict(proto), store_root=store_root, progress=False)
    m = run.metrics
    # before feedback, FORCE with P0 = I/alpha is ridge with alpha: identical teacher-forced test error
    assert m["force"]["nrmse"] == pytest.approx(m["ridge"]["nrmse"], rel=1e-6)
    assert m["force"]["nrmse_feedback_learning"] < 0.2  # measured 0.075 (100 units); a diverged loop is >> 1
    assert np.isfinite(m["force"]["nrmse_free_run"]) and "nrmse_feedback_learning" not in m["ridge"]
    bad = dict(proto, readouts=[{"kind": "ridge", "feedback_steps": 10}])
    with pytest.raises(Exception, match="only a 'force' readout learns with its output fed back"):
        from_dict(bad)


def test_stdp_module_in_a_run_learns_and_replays_identically(ray_session, store_root):
    """Poisson spikes -> STDP layer -> vote, through the bench: the trained layer beats the
    untrained one, and replaying the store reproduces the live result exactly."""
    module = {"kind": "stdp", "n_neurons": 40, "rule": "pair", "a_plus": 0.02, "traces": "nearest", "tau_m": 50.0,
              "theta_plus": 0.05, "tau_theta": 20000.0, "norm_ord": 2, "norm_total": 3.5, "seed": 0}
    L = 60 + 15
    proto = {
        "protocol": {"name": "stdp_small", "seed": 0},
        "device": {"driver": "poisson", "params": {"max_rate": 150.0, "seed": 0}},
        "task": {"name": "digits", "present": 60, "rest": 15, "n_test": 200},
        "run": {"washout": 0, "train": 700 * L, "test": 200 * L, "block": 1000},
        "readouts": [{"kind": "vote", "name": "trained", "pool": "sum", "module": module},
                     {"kind": "vote", "name": "untrained", "pool": "sum",
                      "module": {**module, "a_plus": 0.0, "a_minus": 0.0, "theta_plus": 0.0}}],
    }
    run = lb.run(from_dict(proto), store_root=store_root, progress=False)
    trained, untrained = run.metrics["trained"]["accuracy"], run.metrics["untrained"]["accuracy"]
    assert trained > 0.6 and trained > untrained + 0.1, run.metrics
    (again,) = lb.train(run.store, {"kind": "vote", "pool": "sum", "module": module}, name="again")
    assert again.metrics == run.metrics["trained"]


def test_a_trainer_that_fails_fails_the_run_but_keeps_the_stream_and_the_others(ray_session, store_root):
    proto = small_protocol()
    # a classifier on a regression target raises inside partial_fit, in the trainer actor
    proto["readouts"] = [{"kind": "ridge", "alpha": 1e-8},
                         {"kind": "sklearn", "name": "bad", "estimator": "sklearn.linear_model.SGDClassifier"}]
    with pytest.raises(RuntimeError, match="readout 'bad' failed"):
        lb.run(from_dict(proto), store_root=store_root, progress=False)
    (path,) = store_root.glob("*.zarr")
    r = lb.open_run(path)
    assert r.status == "failed" and "readout 'bad' failed" in r.attrs["error"]
    assert r.committed("esn") == 600  # every block of the device stream is kept
    ro = r.readouts("esn")
    assert ro["bad"]["status"] == "failed" and "ValueError" in ro["bad"]["error"]
    assert ro["ridge"]["status"] == "complete" and np.isfinite(ro["ridge"]["metrics"]["nrmse"])
