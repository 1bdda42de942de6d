"""Set up labbench in ``.venv`` on a fresh machine that has nothing but ``python3`` (>= 3.10).

The README's two set-up commands start with ``python3 bootstrap.py``. It uses only the
standard library and is idempotent (a second run reuses ``.venv``):

1. creates ``.venv``; where the interpreter has no ``ensurepip`` (Debian and Ubuntu split it
   into the ``python3-venv`` package), the venv is made without pip and pip is installed from
   its wheel on PyPI, checked against the sha256 that PyPI publishes;
2. ``pip install -e '.[dev]'`` (or the extras given with ``--extras``);
3. checks the system libraries that Qt needs to draw the monitor off-screen (a bare Debian 12
   lacks a few); missing ones are installed with ``apt-get`` when this user may (root, or
   password-less sudo), otherwise the exact ``apt-get`` line is printed and the exit code is 1.

Usage: ``python3 bootstrap.py [--venv .venv] [--extras dev] [--no-system]``
"""

from __future__ import annotations

import argparse
import configparser
import ctypes.util
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: shared library -> the Debian 12 package that ships it; what Qt's off-screen platform plugin
#: (the monitor's snapshots, reports and tests) loads beyond the PyPI wheels
QT_LIBRARIES = {
    "EGL": "libegl1",
    "GL": "libgl1",
    "X11": "libx11-6",
    "dbus-1": "libdbus-1-3",
    "fontconfig": "libfontconfig1",
    "freetype": "libfreetype6",
    "glib-2.0": "libglib2.0-0",
    "xkbcommon": "libxkbcommon0",
}

def _say(msg: str) -> None:
    print(f"bootstrap: {msg}", flush=True)


def _venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _has_pip(python: Path) -> bool:
    return subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode == 0


def _pip_cert() -> str | None:
    """The CA bundle pip itself is told to use (``PIP_CERT`` or ``cert`` in a pip.conf), if any:
    a machine behind a TLS-inspecting proxy then works for this download as it does for pip."""
    if os.environ.get("PIP_CERT"):
        return os.environ["PIP_CERT"]
    config = configparser.ConfigParser()
    config.read([os.environ.get("PIP_CONFIG_FILE", ""), "/etc/pip.conf", "/etc/xdg/pip/pip.conf",
                 os.path.expanduser("~/.pip/pip.conf"), os.path.expanduser("~/.config/pip/pip.conf")])
    return config.get("global", "cert", fallback=None)


def _get(url: str, timeout: float):
    cert = _pip_cert()
    context = ssl.create_default_context(cafile=cert) if cert and Path(cert).exists() else None
    return urllib.request.urlopen(url, timeout=timeout, context=context)


def _pip_from_pypi(python: Path) -> None:
    """Install pip into a venv made without it, from pip's wheel on PyPI (sha256 checked)."""
    with _get("https://pypi.org/pypi/pip/json", 60) as r:
        meta = json.load(r)
        base = r.geturl()
    wheel = next(f for f in meta["urls"] if f["packagetype"] == "bdist_wheel")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / wheel["filename"]
        _say(f"no ensurepip here: fetching {wheel['filename']} from PyPI")
        with _get(urllib.parse.urljoin(base, wheel["url"]), 120) as r:
            data = r.read()
        if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
            sys.exit(f"bootstrap: {wheel['filename']}: sha256 differs from PyPI's; not installing it")
        target.write_bytes(data)
        # a wheel is a zip that Python can run: pip installs itself from its own wheel
        subprocess.run([str(python), f"{target}/pip", "install", "--no-index", str(target)], check=True)


def make_venv(path: Path) -> Path:
    """Create (or reuse) the venv at ``path`` with pip in it; returns its interpreter."""
    python = _venv_python(path)
    if not python.exists():
        with_pip = True
        try:
            import ensurepip  # noqa: F401
        except ImportError:
            with_pip = False
        _say(f"creating {path}")
        venv.EnvBuilder(with_pip=with_pip, upgrade_deps=False).create(path)
    if not _has_pip(python):
        _pip_from_pypi(python)
    return python


def missing_qt_libraries() -> list[str]:
    """Debian packages of the Qt off-screen libraries this machine lacks."""
    return sorted({pkg for lib, pkg in QT_LIBRARIES.items() if ctypes.util.find_library(lib) is None})


def install_system_packages(packages: list[str]) -> bool:
    """``apt-get install`` them if this user may; False (and the line to run) otherwise."""
    line = "apt-get install -y --no-install-recommends " + " ".join(packages)
    if shutil.which("apt-get") is None:
        _say(f"missing system libraries for Qt: {', '.join(packages)} (Debian names); install them "
             "with your system's package manager")
        return False
    sudo: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            sudo = ["sudo", "-n"]
        else:
            _say(f"Qt needs system libraries this machine lacks; run: sudo {line}")
            return False
    _say(f"+ {' '.join(sudo)} {line}".replace("+  ", "+ "))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    ok = subprocess.run([*sudo, "apt-get", "update", "-q"], env=env).returncode == 0
    ok = ok and subprocess.run([*sudo, *line.split(), "-q"], env=env).returncode == 0
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, default=HERE / ".venv", help="where the venv goes (default .venv)")
    ap.add_argument("--extras", default="dev", help="extras of labbench to install (default: dev)")
    ap.add_argument("--no-system", action="store_true", help="do not check or install system libraries")
    args = ap.parse_args(argv)
    if sys.version_info < (3, 10):
        sys.exit(f"bootstrap: labbench needs Python >= 3.10; this is {sys.version.split()[0]}")
    python = make_venv(args.venv)
    spec = f"{HERE}[{args.extras}]" if args.extras else str(HERE)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", spec], check=True)
    if not args.no_system:
        missing = missing_qt_libraries()
        if missing and not install_system_packages(missing):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
