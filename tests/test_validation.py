"""Validation catches what the run would hit later: NaN/inf, names that become store groups,
arrays that cannot fit, back ends this machine lacks; and a device that fails to open is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labbench.engine.ray_runtime import RAY_ENV
from labbench.spec.protocol import ProtocolError, check_machine, estimate_sizes, from_dict, load

from conftest import PROTOCOLS, small_protocol


def _problems(data: dict, **kw) -> list[str]:
    with pytest.raises(ProtocolError) as err:
        from_dict(data, **kw)
    return err.value.problems


@pytest.mark.parametrize("key,value", [("device.params.leak", float("nan")),
                                       ("readouts.0.alpha", float("inf")),
                                       ("device.params.input_scaling", [0.1, float("-inf")]),
                                       ("task.order", float("nan"))])
def test_nan_and_inf_anywhere_are_refused_naming_the_key(key, value):
    problems = _problems(small_protocol(), overrides={key: value})
    shown = key.replace(".0.", "[0].")
    assert any(p.startswith(shown) and "expected a finite number" in p for p in problems), problems
    # once per key, not again as the field's own bound
    assert sum(p.split(":")[0].startswith(shown) for p in problems) == 1, problems


def test_nan_from_a_toml_file_is_refused(tmp_path: Path):
    (tmp_path / "p.toml").write_text('[protocol]\nname = "p"\n[device]\ndriver = "esn"\n'
                                     'params = { units = 20, leak = nan }\n[task]\nname = "narma"\n'
                                     '[run]\nwashout = 50\ntrain = 200\n')
    with pytest.raises(ProtocolError, match=r"device\.params\.leak: expected a finite number \(got nan\)"):
        load(tmp_path / "p.toml")


@pytest.mark.parametrize("where,name", [("device", "../escape"), ("device", "a/b"), ("device", "has space"),
                                        ("readout", "x/y"), ("readout", "")])
def test_names_that_become_store_groups_must_be_simple(where, name):
    data = small_protocol()
    if where == "device":
        data["device"]["name"] = name
        key = "device.name"
    else:
        data["readouts"][0]["name"] = name
        key = "readouts[0].name"
    problems = _problems(data)
    assert any(p.startswith(f"{key}: {name!r}") and "simple name" in p for p in problems), problems


def test_simple_names_pass():
    data = small_protocol()
    data["device"]["name"] = "rig-1_a"
    data["readouts"][0]["name"] = "Ridge_2"
    assert from_dict(data).device.group == "rig-1_a"


def test_a_run_that_cannot_fit_in_memory_or_on_disk_is_refused_naming_the_estimate():
    problems = _problems(small_protocol(), overrides={"run.train": 10**13})
    mem = [p for p in problems if "of memory" in p]
    disk = [p for p in problems if "for the run store" in p]
    assert mem and mem[0].startswith("run.train:") and "GiB" in mem[0] and "is available" in mem[0], problems
    assert disk and "is free on" in disk[0], problems
    # the device's own size, where the driver can say it (an ESN's weights)
    problems = _problems(small_protocol(), overrides={"device.params.units": 10**8})
    assert any(p.startswith("device.params:") and "device 'esn'" in p for p in problems), problems


def test_normal_protocols_fit_and_the_estimate_counts_rows_and_widths():
    proto = from_dict(small_protocol())
    sizes = estimate_sizes(proto)
    rows = 50 + 400 + 150
    assert sizes["task_data"] == rows * 2 * 8                    # narma: 1 input, 1 output, float64
    assert sizes["store"] == rows * (1 + 50 + 1) * 4 + rows + rows * 1 * 8
    assert sizes["device:esn"] > 50 * 50 * 0.1 * 8               # the ESN's sparse weights
    assert check_machine(proto) == []
    for path in sorted(p for p in PROTOCOLS.glob("*.toml") if not p.name.startswith("suite_")):   # suites: test_compare_suite
        assert check_machine(load(path)) == [], path


def test_a_back_end_that_is_not_here_is_refused_unless_mocked():
    from labbench.drivers.mea import MEA

    ok, why = MEA.backends()["cl"]
    if ok:   # pragma: no cover - a Python >= 3.12 with cl-sdk
        pytest.skip("the cl back end is available on this interpreter; nothing to refuse")
    problems = _problems(small_protocol(device={"driver": "mea", "params": {"backend": "cl"}},
                                        task={"name": "xor"}))
    assert any(p.startswith("device.params.backend: back end 'cl' of driver 'mea' is not available here")
               and "--mock" in p for p in problems), problems
    proto = from_dict(small_protocol(device={"driver": "mea", "params": {"backend": "cl"}}, task={"name": "xor"}),
                      mock=True)
    assert proto.device.mock and proto.device_params()["backend"] == "culture"
    assert proto.overrides == {"device.mock": True}


def test_backends_of_every_installed_driver():
    from labbench.reservoir import list_devices

    rows = {r["name"]: r for r in list_devices()}
    assert set(rows["mea"]["backends"]) == {"culture", "serial", "cl"}
    assert rows["mea"]["backends"]["culture"] == {"available": True, "detail": "ok"}
    assert rows["esn"]["backends"] == {"default": {"available": True, "detail": "ok"}}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env.update(RAY_ENV)
    return env


def test_cli_validate_refuses_a_missing_back_end_with_exit_2_and_devices_lists_back_ends():
    proc = subprocess.run([sys.executable, "-m", "labbench.cli", "validate", str(PROTOCOLS / "mea_xor.toml"),
                           "--set", "device.params.backend=cl"], env=_env(), capture_output=True, text=True,
                          timeout=120)
    from labbench.drivers.mea import MEA

    if MEA.backends()["cl"][0]:   # pragma: no cover
        pytest.skip("the cl back end is available here")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "device.params.backend: back end 'cl'" in proc.stderr
    mocked = subprocess.run([sys.executable, "-m", "labbench.cli", "validate", str(PROTOCOLS / "mea_xor.toml"),
                             "--set", "device.params.backend=cl", "--mock"], env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert mocked.returncode == 0, mocked.stderr
    devices = subprocess.run([sys.executable, "-m", "labbench.cli", "devices"], env={**_env(), "COLUMNS": "200"},
                             capture_output=True, text=True, timeout=120)
    assert devices.returncode == 0
    lines = devices.stdout.splitlines()
    assert any("culture" in ln and "yes" in ln for ln in lines) and any(" cl " in ln and " no " in ln for ln in lines)


@pytest.mark.slow
def test_a_device_that_fails_to_open_is_one_line_naming_device_back_end_and_cause(tmp_path: Path):
    cmd = [sys.executable, "-m", "labbench.cli", "run", str(PROTOCOLS / "mea_xor.toml"), "--quiet",
           "--store-root", str(tmp_path), "--set", "device.params.backend=serial",
           "--set", f'device.params.url="{tmp_path / "no-such-tty"}"', "--set", "device.max_restarts=0"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "device 'mea' (driver mea, back end serial) failed to open" in errors[0], proc.stderr
    assert "no-such-tty" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
