"""The monitor window names what stops it from opening in one line and exits 2, before Qt starts
(Qt's own message names the wrong library and then aborts); ``labbench run --monitor`` says so
in one warning and runs on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labbench.monitor.display import debian_package, missing_libraries, platform_plugin, window_problem
from labbench.store import RunStore

#: ldd's lines for the xcb plugin on a machine without two of Qt's xcb libraries (trimmed)
LDD_XCB = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f4a)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f4b)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f4c)
\tlibxcb-icccm.so.4 => not found
"""
ERROR_HEAD = "error: the monitor window cannot open: "
ERROR_TAIL = "; use --snapshot for a PNG without a display"


def test_missing_libraries_are_named_once_with_their_debian_packages():
    assert missing_libraries(LDD_XCB) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert window_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, ldd_output=LDD_XCB) == (
        "missing system libraries libxcb-icccm.so.4, libxcb-keysyms.so.1 "
        "(Debian: apt-get install libxcb-icccm4 libxcb-keysyms1)")
    # DISPLAY alone means xcb, as Qt picks it
    assert "libxcb-icccm4" in window_problem({"DISPLAY": ":0"}, ldd_output=LDD_XCB)
    assert window_problem({"DISPLAY": ":0"}, ldd_output=LDD_XCB.replace("not found", "/lib/x.so")) is None


@pytest.mark.parametrize("soname, package", [
    ("libxcb-icccm.so.4", "libxcb-icccm4"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libglib-2.0.so.0", "libglib2.0-0"), ("libX11-xcb.so.1", "libx11-xcb1"),
    ("libxcb-xinerama.so.0", "libxcb-xinerama0"), ("libfoo2.so.3", "libfoo2-3"),
])
def test_debian_package_of_a_library(soname, package):
    assert debian_package(soname) == package


@pytest.mark.parametrize("env, expected", [
    ({}, "no display (DISPLAY and WAYLAND_DISPLAY are not set)"),
    ({"QT_QPA_PLATFORM": "xcb"}, "no X display (QT_QPA_PLATFORM=xcb but DISPLAY is not set)"),
    ({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"},
     "no Wayland display (QT_QPA_PLATFORM=wayland but WAYLAND_DISPLAY is not set)"),
    ({"QT_QPA_PLATFORM": "offscreen"}, None),            # drawing off-screen needs no display
    ({"QT_QPA_PLATFORM": "minimal", "DISPLAY": ":0"}, None),
])
def test_display_settings(env, expected):
    assert window_problem(env, ldd_output=LDD_XCB) == expected


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="the xcb plugin's libraries are checked with ldd on Linux only")
def test_the_check_agrees_with_the_dynamic_loader_here():
    """What the check reports missing for the real xcb plugin is exactly what ldd cannot resolve."""
    plugin = platform_plugin("xcb")
    assert plugin is not None and plugin.name == "libqxcb.so"
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    unresolved = sorted({line.split()[0] for line in out.splitlines() if "not found" in line})
    problem = window_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}, ldd_output=out)
    if unresolved:
        assert problem == (f"missing system libraries {', '.join(unresolved)} (Debian: apt-get "
                           f"install {' '.join(dict.fromkeys(debian_package(s) for s in unresolved))})")
        assert sorted(missing_libraries(out)) == unresolved
    else:
        assert problem is None


def _hand_store(path: Path) -> Path:
    store = RunStore(path, "# hand-written", {"protocol_name": "hand", "seed": 7})
    store.add_device("esn", spec={"n_inputs": 1, "n_features": 4, "dt": 1.0, "realtime": False,
                                  "feature_name": "unit", "raw": {}},
                     describe={"driver": "hand"}, n_outputs=1, dtype="float32", chunk_rows=10, expected_rows=10,
                     layout={"washout": 0, "train": 5, "test": 5})
    return path


@pytest.mark.parametrize("display_env, says", [
    # a bogus X display: on a machine without Qt's xcb libraries they are named; with them, the
    # display is (it does not exist)
    ({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":97"}, ("missing system libraries", "cannot connect to the X display ':97'")),
    ({}, ("no display (DISPLAY and WAYLAND_DISPLAY are not set)",)),
])
def test_labbench_monitor_says_why_in_one_line_and_exits_2(tmp_path, display_env, says):
    store = _hand_store(tmp_path / "hand.zarr")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "labbench.cli", "monitor", str(store)], capture_output=True,
                          text=True, timeout=120, env={**env, **display_env})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(ERROR_HEAD) and lines[0].endswith(ERROR_TAIL), lines[0]
    assert any(s in lines[0] for s in says), lines[0]


def test_run_with_monitor_warns_once_and_runs_on_when_no_window_can_open(ray_session, store_root, monkeypatch,
                                                                           capsys):
    import labbench.cli as cli

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    rc = cli.main(["run", str(Path(__file__).parents[1] / "protocols" / "narma10.toml"), "--monitor", "--quiet",
                   "--store-root", str(store_root), "--set", "device.params.units=50",
                   "--set", "run.train=400", "--set", "run.test=100"])
    assert rc == 0 and started == []
    store = next(store_root.iterdir())
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: --monitor")]
    assert warnings == [f"warning: --monitor: the monitor window cannot open: no display (DISPLAY and "
                        f"WAYLAND_DISPLAY are not set); the run goes on (labbench monitor {store} --snapshot "
                        f"run.png draws it without a display)"]


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("ldd") is None,
                    reason="compares with ldd, which is on Linux only")
def test_without_ldd_the_check_loads_the_libraries_itself_and_agrees(monkeypatch):
    import labbench.monitor.display as display

    env = {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"}
    with_ldd = window_problem(env)
    monkeypatch.setattr(display.shutil, "which", lambda name: None)
    assert window_problem(env) == with_ldd
