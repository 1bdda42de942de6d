"""Protocols: shipped files validate; broken ones fail early, clearly, with exit code 2 and no store."""

import subprocess
import sys

import pytest

from conftest import PROTOCOLS, small_protocol
from labbench.cli import main
from labbench.spec.protocol import ProtocolError, from_dict, load, parse_override

SHIPPED = sorted(p for p in PROTOCOLS.glob("*.toml") if not p.name.startswith("suite_"))   # suite_*: labbench compare


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_protocols_validate(path):
    proto = load(path)
    assert proto.run.total > 0 and proto.text == path.read_text()


def test_overrides_are_typed_and_applied():
    proto = load(PROTOCOLS / "narma10.toml", ["device.params.units=123", "run.block=77", "protocol.name=x y"])
    assert proto.device.params["units"] == 123 and proto.run.block == 77 and proto.protocol.name == "x y"
    assert proto.overrides == {"device.params.units": 123, "run.block": 77, "protocol.name": "x y"}
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=true") == ("a", True)


def test_n_inputs_comes_from_the_task():
    proto = from_dict(small_protocol(task={"name": "lorenz"}))
    assert proto.device_params()["n_inputs"] == 3


BASE = """
[protocol]
name = "b"
[device]
driver = "esn"
params = {units = 10}
[task]
name = "narma"
[run]
train = 100
"""

# case -> (edit of BASE as (old, new) or text to append, expected fragment of the message)
BROKEN = {
    "unknown key": (('name = "b"', 'name = "b"\ncolour = "red"'), "protocol.colour: unknown key"),
    "unknown device param": (("units = 10", "unitz = 10"), "device.params.unitz: unknown key"),
    "wrong type": (("train = 100", "train = 'many'"), "run.train: Input should be a valid integer"),
    "negative length": (("train = 100", "train = 100\ntest = -5"),
                        "run.test: Input should be greater than or equal to 0"),
    "unknown driver": (('driver = "esn"', 'driver = "warp-drive"'), "device.driver: unknown driver 'warp-drive'"),
    "unknown task": (('name = "narma"', 'name = "chess"'), "task.name: unknown task 'chess'"),
    "bad task value": (('name = "narma"', 'name = "narma"\norder = -1'), "task.order"),
    "unknown readout": ("[[readouts]]\nkind = 'oracle'\n", "readouts[0].kind: unknown readout 'oracle'"),
    "short washout": (('name = "narma"', 'name = "memory_capacity"\nmax_delay = 100'),
                      "run.washout: must be at least 100"),
    "syntax error": (("[run]", "[run"), "TOML syntax error"),
}


def _broken_file(tmp_path, case):
    edit, _ = BROKEN[case]
    body = BASE.replace(*edit) if isinstance(edit, tuple) else BASE + edit
    path = tmp_path / f"{case.replace(' ', '_')}.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_protocol_error_names_the_problem(tmp_path, case):
    path = _broken_file(tmp_path, case)
    with pytest.raises(ProtocolError) as info:
        load(path)
    msg = str(info.value)
    assert str(path) in msg and BROKEN[case][1] in msg, msg


@pytest.mark.parametrize("case", ["unknown key", "wrong type", "negative length", "unknown driver", "syntax error"])
def test_cli_run_of_broken_protocol_exits_2_and_leaves_no_store(tmp_path, capsys, case):
    path = _broken_file(tmp_path, case)
    root = tmp_path / "runs"
    assert main(["run", str(path), "--store-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and BROKEN[case][1] in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3
    assert not root.exists()


def test_cli_validate(capsys, tmp_path):
    assert main(["validate", str(PROTOCOLS / "narma10.toml")]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["validate", str(PROTOCOLS / "narma10.toml"), "--set", "run.block=-1"]) == 2
    assert "run.block" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "nope.toml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_help_and_devices_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-m", "labbench.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout and "validate" in out.stdout
    out = subprocess.run([sys.executable, "-m", "labbench.cli", "devices"], capture_output=True, text=True)
    assert out.returncode == 0 and "esn" in out.stdout and "yes" in out.stdout
