"""Tests for labbench.tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from labbench.tasks import (
    TASKS,
    FreeRunPlan,
    Lorenz,
    MackeyGlass,
    MemoryCapacity,
    Narma,
    Task,
    TaskData,
    TaskSpec,
    get_task,
)

SMALL = {
    "mackey_glass": {"transient": 200},
    "narma": {},
    "lorenz": {"transient": 100},
    "memory_capacity": {"max_delay": 20},
    "digits": {"present": 3, "rest": 0},  # rest rows have NaN targets by design (tests/test_live.py)
    "spoken_digits": {"n_speakers": 3, "n_test_speakers": 1, "repeats": 1, "rest": 0},
    "xor": {"delay": 1, "hold": 2},
    "pattern_xor": {"hold": 4, "settle": 1},
    "spontaneous": {"channels": 2},
    "rate_clamp": {"target": 0.5},          # closed-loop: inputs come from a policy (tests/test_policy_loop.py)
    "feedback": {},
    "saccade_digits": {"present": 3, "rest": 1, "n_test": 100},
    "gestures": {"present": 3, "rest": 1, "n_per_class": 10, "n_test_per_class": 2},
}
OPEN_LOOP = sorted(name for name, cls in TASKS.items() if not cls.closed_loop)


def _reference_narma10(T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The textbook NARMA-10 loop of the peer benchmark (b03), re-implemented here."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0, 0.5, T)
    y = np.zeros(T)
    for t in range(9, T - 1):
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * np.sum(y[t - 9 : t + 1]) + 1.5 * u[t - 9] * u[t] + 0.1
    return u[:, None], y[:, None]


def _lorenz_raw(data: TaskData) -> np.ndarray:
    return data.inputs * np.asarray(data.meta["std"]) + np.asarray(data.meta["mean"])


# -- registry and generic contract ---------------------------------------------


def test_registry_names_match_classes():
    assert set(TASKS) == {"mackey_glass", "narma", "lorenz", "memory_capacity", "digits", "spoken_digits", "xor",
                          "pattern_xor", "spontaneous", "rate_clamp", "feedback", "saccade_digits", "gestures"}
    for name, cls in TASKS.items():
        assert issubclass(cls, Task)
        assert get_task(name, **SMALL[name]).name == name
    assert {n for n, c in TASKS.items() if c.closed_loop} == {"rate_clamp", "feedback"}


def test_get_task_unknown_name_lists_known():
    with pytest.raises(KeyError) as info:
        get_task("narmax")
    msg = str(info.value)
    assert "narmax" in msg
    for name in TASKS:
        assert name in msg


def test_get_task_builds_with_params():
    task = get_task("narma", order=5)
    assert isinstance(task, Narma) and task.order == 5


def test_task_base_is_abstract():
    with pytest.raises(TypeError):
        Task(name="x")


@pytest.mark.parametrize("name", OPEN_LOOP)
def test_shapes_dtype_and_determinism(name):
    task = get_task(name, **SMALL[name])
    a = task.generate(300, seed=1)
    assert a.inputs.shape == (300, task.n_inputs)
    assert a.targets.shape == (300, task.n_outputs)
    assert a.inputs.dtype == np.float64 and a.targets.dtype == np.float64
    shown = slice(None) if a.sequence is None else a.sequence >= 0   # a sequence's rest rows have no target
    assert np.all(np.isfinite(a.inputs)) and np.all(np.isfinite(a.targets[shown]))
    b = task.generate(300, seed=1)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.targets, b.targets)
    c = task.generate(300, seed=2)
    if name == "spontaneous":               # no input at all, whatever the seed
        assert not a.inputs.any() and not c.inputs.any()
    else:
        assert not np.array_equal(a.inputs, c.inputs)
    json.dumps(a.meta)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_describe_is_json_and_round_trips(name):
    task = get_task(name, **SMALL[name])
    desc = task.describe()
    assert desc["name"] == name
    assert type(task).model_validate(json.loads(json.dumps(desc))) == task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_unknown_key_rejected_naming_key(name):
    with pytest.raises(ValidationError, match="not_a_param"):
        get_task(name, not_a_param=1)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("mackey_glass", "tau"),
        ("mackey_glass", "free_run_horizon"),
        ("narma", "order"),
        ("lorenz", "dt"),
        ("lorenz", "substeps"),
        ("memory_capacity", "max_delay"),
    ],
)
def test_negative_value_rejected_naming_key(name, key):
    with pytest.raises(ValidationError) as info:
        get_task(name, **{key: -1})
    assert info.value.errors()[0]["loc"] == (key,)
    assert key in str(info.value)


def test_wrong_type_rejected_naming_key():
    with pytest.raises(ValidationError, match="order"):
        get_task("narma", order="ten")


def test_tasks_are_frozen():
    task = get_task("narma")
    with pytest.raises(ValidationError):
        task.order = 20


def test_task_spec_validates_by_name():
    adapter = TypeAdapter(TaskSpec)
    assert isinstance(adapter.validate_python({"name": "lorenz", "dt": 0.01}), Lorenz)
    assert isinstance(adapter.validate_python({"name": "memory_capacity"}), MemoryCapacity)
    with pytest.raises(ValidationError):
        adapter.validate_python({"name": "nope"})


def test_generate_rejects_bad_n_steps():
    with pytest.raises(ValueError, match="n_steps"):
        get_task("narma").generate(0, seed=0)


# -- NARMA ---------------------------------------------------------------------


def test_narma10_equals_reference_loop_exactly():
    u, y = _reference_narma10(3200, seed=0)
    data = get_task("narma").generate(3200, seed=0)
    np.testing.assert_array_equal(data.inputs, u)
    np.testing.assert_array_equal(data.targets, y)


@pytest.mark.parametrize("order", [3, 150])
def test_narma_general_order_form(order):
    a2 = 0.05 if order < 20 else 0.001
    T = 600
    rng = np.random.default_rng(4)
    u = rng.uniform(0, 0.5, T)
    y = np.zeros(T)
    m = order - 1
    for t in range(m, T - 1):
        y[t + 1] = 0.3 * y[t] + a2 * y[t] * np.sum(y[t - m : t + 1]) + 1.5 * u[t - m] * u[t] + 0.1
    data = get_task("narma", order=order, a2=a2).generate(T, seed=4)
    np.testing.assert_array_equal(data.targets[:, 0], y)


def test_narma_score_is_nrmse():
    task = get_task("narma")
    d = task.generate(500, seed=0)
    assert task.primary_metric == "nrmse"
    assert task.score(d.targets, d.targets) == {"nrmse": 0.0}
    assert task.free_run_plan(d, 300, 500) is None


# -- Mackey-Glass --------------------------------------------------------------


@pytest.fixture(scope="module")
def mg_data() -> TaskData:
    return get_task("mackey_glass").generate(3000, seed=0)


def test_mackey_glass_range_and_variability(mg_data):
    x = mg_data.inputs[:, 0]
    assert x.min() == pytest.approx(-1.0) and x.max() <= 1.0
    assert x.std() > 0.3
    # raw attractor of tau = 17 lives roughly in [0.2, 1.4]
    assert 0.2 < mg_data.meta["raw_min"] < mg_data.meta["raw_max"] < 1.5
    np.testing.assert_array_equal(mg_data.targets[:-1], mg_data.inputs[1:])


def test_mackey_glass_autocorrelation_is_quasi_periodic(mg_data):
    x = mg_data.inputs[:, 0] - mg_data.inputs[:, 0].mean()

    def acf(lag: int) -> float:
        return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))

    # smooth at one step, anti-correlated at half the ~50-unit quasi-period, back up at one period
    assert acf(1) > 0.95
    assert acf(25) < -0.4
    assert acf(50) > 0.4
    # but not periodic: no lag up to 300 reproduces the series
    assert max(acf(k) for k in range(30, 300)) < 0.95


def test_mackey_glass_is_sensitive_to_initial_history():
    kw = dict(transient=0, history_noise=0.0, normalise=False)
    base = get_task("mackey_glass", **kw).generate(3000, seed=0).inputs[:, 0]
    bumped = get_task("mackey_glass", x0=1.2 + 1e-8, **kw).generate(3000, seed=0).inputs[:, 0]
    diff = np.abs(base - bumped)
    assert 0 < diff[:250].max() < 1e-6
    assert diff[-250:].max() > 1e3 * diff[:250].max()  # tiny perturbations grow: chaos


def test_mackey_glass_horizon_targets():
    a = get_task("mackey_glass", transient=50, horizon=5).generate(200, seed=3)
    np.testing.assert_array_equal(a.targets[:-5], a.inputs[5:])


def test_mackey_glass_unnormalised_is_raw():
    a = get_task("mackey_glass", transient=50, normalise=False).generate(200, seed=3)
    assert a.inputs.min() == a.meta["raw_min"] and a.inputs.max() == a.meta["raw_max"]


def test_mackey_glass_validators():
    with pytest.raises(ValidationError, match="multiple of h"):
        get_task("mackey_glass", sample_every=0.25)
    with pytest.raises(ValidationError, match="horizon"):
        get_task("mackey_glass", free_run=True, horizon=3)


def test_mackey_glass_free_run_plan_and_score(mg_data):
    task = get_task("mackey_glass", free_run=True, free_run_starts=20, free_run_spacing=30)
    assert get_task("mackey_glass").free_run_plan(mg_data, 2000, 3000) is None
    test_start, test_end = 2000, 3000
    plan = task.free_run_plan(mg_data, test_start, test_end)
    assert isinstance(plan, FreeRunPlan)
    assert plan.horizon == 84 and plan.sync == 500 and len(plan.starts) == 20
    assert np.all(plan.starts >= test_start) and np.all(plan.starts <= test_end - plan.horizon)
    assert np.all(plan.starts - plan.sync >= 0)
    # perfect closed-loop predictions: y_h = inputs[s - 1 + h]
    idx = plan.starts[:, None] + np.arange(plan.horizon)
    perfect = mg_data.inputs[idx]
    s = task.score_free_run(mg_data, plan, perfect)
    assert s == {"nrmse_free_run": 0.0, "valid_steps": 84.0}
    # an error that appears at horizon 10 everywhere
    sd = np.std(mg_data.targets[test_start:test_end])
    bad = perfect.copy()
    bad[:, 9:] += 0.2 * sd
    s = task.score_free_run(mg_data, plan, bad)
    assert s["valid_steps"] == 10.0
    assert s["nrmse_free_run"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="shape"):
        task.score_free_run(mg_data, plan, perfect[:, :10])


def test_free_run_plan_sync_before_series_start_and_short_test(mg_data):
    task = get_task("mackey_glass", free_run=True, free_run_sync=500, free_run_starts=5, free_run_spacing=100)
    plan = task.free_run_plan(mg_data, 100, 1200)
    assert plan.starts[0] == 500 and np.all(plan.starts - plan.sync >= 0)
    with pytest.warns(UserWarning, match="only"):
        plan = task.free_run_plan(mg_data, 2800, 3000)
    assert np.all(plan.starts <= 3000 - 84)
    with pytest.raises(ValueError, match="no free-run start"):
        task.free_run_plan(mg_data, 2950, 3000)


# -- Lorenz --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lorenz_data() -> TaskData:
    return get_task("lorenz").generate(4000, seed=0)


def test_lorenz_stays_on_attractor(lorenz_data):
    raw = _lorenz_raw(lorenz_data)
    assert np.all(np.abs(raw[:, :2]) < 30)
    assert np.all((raw[:, 2] > 0) & (raw[:, 2] < 55))
    # both wings visited
    assert (raw[:, 0] > 5).any() and (raw[:, 0] < -5).any()
    np.testing.assert_array_equal(lorenz_data.targets[:-1], lorenz_data.inputs[1:])


def test_lorenz_normalisation_from_reference_not_data(lorenz_data):
    meta = lorenz_data.meta
    assert meta["dt"] == 0.02 and meta["lyapunov_exponent"] == 0.906
    # reference statistics of the Lorenz attractor
    assert abs(meta["mean"][0]) < 0.5 and 22 < meta["mean"][2] < 25
    assert 7 < meta["std"][0] < 9 and 25 < meta["norm"] < 30
    # same constants whatever the seed or length
    other = get_task("lorenz").generate(50, seed=7).meta
    assert other["mean"] == meta["mean"] and other["std"] == meta["std"]
    # and they are not the series' own statistics
    assert not np.allclose(lorenz_data.inputs.mean(axis=0), 0.0, atol=1e-12)


def test_lorenz_rk4_substeps_converge():
    runs = {s: _lorenz_raw(get_task("lorenz", transient=0, substeps=s).generate(200, seed=0)) for s in (10, 20, 40)}
    e_10_20 = np.abs(runs[10] - runs[20]).max()
    e_20_40 = np.abs(runs[20] - runs[40]).max()
    scale = get_task("lorenz").generate(1, seed=0).meta["norm"]
    assert e_10_20 / scale < 1e-6
    assert 10 < e_10_20 / e_20_40 < 22  # fourth order: halving the step divides the error by 16


def test_lorenz_free_run_plan_and_vpt(lorenz_data):
    task = get_task("lorenz", free_run_starts=3, free_run_spacing=300, free_run_horizon=500)
    with pytest.warns(UserWarning, match="only 2 of 3"):
        plan = task.free_run_plan(lorenz_data, 3000, 4000)
    assert plan.sync == 500 and list(plan.starts) == [3000, 3300]  # 3600 + 500 > 4000
    plan = task.free_run_plan(lorenz_data, 2500, 4000)
    assert list(plan.starts) == [2500, 2800, 3100]
    assert np.all(plan.starts - plan.sync >= 0) and np.all(plan.starts <= 4000 - plan.horizon)
    idx = plan.starts[:, None] + np.arange(plan.horizon)
    perfect = lorenz_data.inputs[idx]
    s = task.score_free_run(lorenz_data, plan, perfect)
    censored = 500 * 0.02 * 0.906
    assert s == pytest.approx({"valid_prediction_time": censored, "vpt_min": censored, "vpt_max": censored})
    # break the forecasts at horizons 101, 201, 301: error in original units is 0.5 * norm
    meta = lorenz_data.meta
    bad = perfect.copy()
    for j, h in enumerate((100, 200, 300)):
        bad[j, h:, 0] += 0.5 * meta["norm"] / meta["std"][0]
    s = task.score_free_run(lorenz_data, plan, bad)
    assert s["valid_prediction_time"] == pytest.approx(200 * 0.02 * 0.906)
    assert s["vpt_min"] == pytest.approx(100 * 0.02 * 0.906)
    assert s["vpt_max"] == pytest.approx(300 * 0.02 * 0.906)
    assert get_task("lorenz", free_run=False).free_run_plan(lorenz_data, 2500, 4000) is None


# -- memory capacity -----------------------------------------------------------


def test_memory_capacity_targets_are_delayed_inputs():
    task = get_task("memory_capacity", max_delay=15)
    d = task.generate(100, seed=3)
    u = d.inputs[:, 0]
    assert task.min_washout == 15 and task.n_outputs == 15
    assert u.min() >= -0.8 and u.max() <= 0.8
    for k in range(1, 16):
        np.testing.assert_array_equal(d.targets[k:, k - 1], u[:-k])
        np.testing.assert_array_equal(d.targets[:k, k - 1], 0.0)


def test_memory_capacity_score_and_curve():
    task = get_task("memory_capacity", max_delay=10)
    d = task.generate(500, seed=0)
    y, p = d.targets[task.min_washout :], d.targets[task.min_washout :].copy()
    assert task.primary_metric == "memory_capacity"
    assert task.score(y, p) == {"memory_capacity": pytest.approx(10.0)}
    p[:, 5:] = np.random.default_rng(1).standard_normal((y.shape[0], 5))
    curve = task.memory_curve(y, p)
    assert curve.shape == (10,)
    np.testing.assert_allclose(curve[:5], 1.0)
    assert np.all(curve[5:] < 0.05)


def test_memory_capacity_bounds_validated():
    with pytest.raises(ValidationError, match="high"):
        get_task("memory_capacity", low=0.5, high=0.1)
    assert isinstance(get_task("memory_capacity"), MemoryCapacity)
    assert isinstance(get_task("mackey_glass"), MackeyGlass)


def test_temporal_xor_targets_and_score():
    from labbench.tasks import get_task

    task = get_task("xor", delay=2, hold=3)
    data = task.generate(300, seed=4)
    u, y = data.inputs[:, 0], data.targets[:, 0]
    bits = u[::3]
    assert set(np.unique(u)) <= {0.0, 1.0} and np.all(u.reshape(-1, 3) == bits[:, None])   # each bit held 3 rows
    want = np.zeros_like(bits)
    want[3:] = np.logical_xor(bits[1:-2], bits[:-3])     # y[i] = b[i-2] XOR b[i-3]
    np.testing.assert_array_equal(y[::3], want)
    assert task.score(y, y)["accuracy"] == 1.0
    assert task.score(y, 1.0 - y)["accuracy"] == 0.0
    assert 0.4 < task.score(y, np.full_like(y, 0.4))["accuracy"] < 0.6   # "always 0" is at chance
