"""Can the monitor open a window here? One line saying why not, checked before Qt starts.

Qt's own message when its platform plugin cannot load is misleading (for a missing
``libxcb-icccm4`` it names ``libxcb-cursor0``) and it then aborts the process. So before the
QApplication is created for a real display, :func:`window_problem` checks that there is a
display to connect to and that the platform plugin's shared libraries are all on the system
(``ldd`` on PySide6's ``libq<platform>.so``, which also covers ``libQt6XcbQpa``), and names
the missing ones with the Debian packages that ship them. Off-screen platforms
(``QT_QPA_PLATFORM=offscreen``, as for ``--snapshot``, reports and the tests) are not checked.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["HEADLESS_PLATFORMS", "QT_PACKAGES", "WindowError", "check_window", "debian_package",
           "missing_libraries", "platform_plugin", "window_problem"]

#: Qt platforms that draw without a display: nothing to check
HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs"})

#: shared library -> the Debian 12 package that ships it, for what PySide6's xcb (X11) platform
#: plugin loads beyond its wheels; other names follow Debian's rule (libfoo.so.N -> libfooN)
QT_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0", "libxcb-sync.so.1": "libxcb-sync1", "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6", "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1", "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0", "libdbus-1.so.3": "libdbus-1-3",
    "libwayland-client.so.0": "libwayland-client0", "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found", re.MULTILINE)


class WindowError(RuntimeError):
    """The monitor window cannot open on this machine (the message is one line)."""


def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` reports as ``not found``, each once, in the order listed."""
    return list(dict.fromkeys(_NOT_FOUND.findall(ldd_output)))


def debian_package(soname: str) -> str:
    """The Debian package that ships ``soname`` (``libxcb-icccm.so.4`` -> ``libxcb-icccm4``)."""
    if soname in QT_PACKAGES:
        return QT_PACKAGES[soname]
    m = re.fullmatch(r"(lib.+)\.so\.(\d+).*", soname)
    if m is None:
        return soname
    stem, major = m.group(1).lower(), m.group(2)
    return f"{stem}-{major}" if stem[-1].isdigit() else f"{stem}{major}"


def platform_plugin(platform: str) -> Path | None:
    """PySide6's platform plugin ``libq<platform>.so``, or ``None`` when it is not there."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "Qt" / "plugins" / "platforms" / f"libq{platform}.so"
    return path if path.exists() else None


def _ldd(path: Path) -> str:
    """``ldd``'s output for ``path``; without ``ldd``, the same ``not found`` lines for the libraries
    of :data:`QT_PACKAGES` that ``ctypes`` cannot load."""
    if shutil.which("ldd") is None:
        lines = []
        for soname in QT_PACKAGES:
            if soname.startswith("libwayland") and "wayland" not in path.name:
                continue
            try:
                ctypes.CDLL(soname)
            except OSError:
                lines.append(f"\t{soname} => not found")
        return "\n".join(lines)
    proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    return proc.stdout + proc.stderr


def _x_display_refuses(display: str) -> bool:
    """True when libxcb is there but cannot connect to ``display``."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return False    # the library check names libxcb1
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)
    try:
        return bool(xcb.xcb_connection_has_error(conn))
    finally:
        xcb.xcb_disconnect(conn)


def window_problem(environ: Mapping[str, str] | None = None, *, ldd_output: str | None = None) -> str | None:
    """Why a Qt window cannot open here, in one line; ``None`` when nothing is known to stop it.

    Parameters
    ----------
    environ : mapping, optional
        The environment to judge (default ``os.environ``): ``QT_QPA_PLATFORM``, ``DISPLAY``,
        ``WAYLAND_DISPLAY``.
    ldd_output : str, optional
        ``ldd``'s output for the platform plugin, instead of running ``ldd`` (for tests).

    Returns
    -------
    str or None
        E.g. ``"missing system libraries libxcb-icccm.so.4, libxcb-keysyms.so.1 (Debian:
        apt-get install libxcb-icccm4 libxcb-keysyms1)"``.
    """
    env = os.environ if environ is None else environ
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if platform in HEADLESS_PLATFORMS:
        return None
    display, wayland = env.get("DISPLAY", ""), env.get("WAYLAND_DISPLAY", "")
    if not platform:
        if not (display or wayland):
            return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
        platform = "xcb" if display else "wayland"
    if platform == "xcb" and not display:
        return "no X display (QT_QPA_PLATFORM=xcb but DISPLAY is not set)"
    if platform == "wayland" and not wayland:
        return "no Wayland display (QT_QPA_PLATFORM=wayland but WAYLAND_DISPLAY is not set)"
    if ldd_output is None:
        if not sys.platform.startswith("linux"):
            return None
        plugin = platform_plugin(platform)
        if plugin is None:
            return f"Qt has no platform plugin {platform!r} here (QT_QPA_PLATFORM)"
        ldd_output = _ldd(plugin)
    missing = sorted(missing_libraries(ldd_output))    # the same line whether ldd or ctypes found them
    if missing:
        packages = " ".join(dict.fromkeys(debian_package(lib) for lib in missing))
        return f"missing system libraries {', '.join(missing)} (Debian: apt-get install {packages})"
    if environ is None and platform == "xcb" and _x_display_refuses(display):
        return f"cannot connect to the X display {display!r} (DISPLAY)"
    return None


def check_window() -> None:
    """Raise :class:`WindowError` (one line) when a monitor window cannot open here."""
    problem = window_problem()
    if problem is not None:
        raise WindowError(f"the monitor window cannot open: {problem}; "
                          f"use --snapshot for a PNG without a display")
