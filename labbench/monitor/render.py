"""Entry points of the monitor: follow a store in a window, or render it to PNG / markdown.

- :func:`watch` opens the window and follows the store until the window is closed;
- :func:`snapshot` renders the same window off-screen to one PNG (data up to the
  ``committed`` rows at that moment);
- :func:`report` writes one PNG per device and a short markdown summary; for a
  ``pattern_xor`` run of a device with camera frames also Fernando & Sojakka's figure
  (:mod:`.xor_figure`); for a ``saccade_digits`` run of a device with an event stream, the
  mean ON and OFF events per pixel of each digit class (:mod:`.event_figure`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .source import StoreFollower


def _offscreen() -> None:
    """Render without a display (set before the QApplication exists)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def snapshot(store: str | os.PathLike[str], out: str | os.PathLike[str], *, device: str | None = None,
             window: float | None = None, size: tuple[int, int] = (1400, 1000)) -> Path:
    """Render the monitor of ``store`` off-screen to the PNG ``out``.

    Parameters
    ----------
    store : path
        A run store, finished or still being written.
    out : path
        PNG to write.
    device : str, optional
        The device shown (default: the first).
    window : float, optional
        Show only the last ``window`` seconds (steps for software reservoirs); default the
        whole run.
    size : (int, int)
        Width and height in pixels.

    Returns
    -------
    Path of the PNG.
    """
    _offscreen()
    from .window import MonitorWindow, application

    follower = StoreFollower(store)
    application()
    win = MonitorWindow(follower, window=window, device=device)
    try:
        win.catch_up()
        win.grab_png(str(out), size)
    finally:
        win.close()
    return Path(out)


def report(store: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None, *,
           size: tuple[int, int] = (1400, 1000)) -> Path:
    """Write ``<device>.png`` for every device and ``report.md`` into ``out_dir``; for a
    ``pattern_xor`` run, ``<device>_xor.png`` (the mean frame per condition and the readout's
    output against the target) for every device with an image-like raw stream; for a
    ``saccade_digits`` run, ``<device>_events.png`` (the mean ON and OFF events per pixel of
    each digit class) for every device with an event stream.

    ``out_dir`` defaults to ``<store>-report`` next to the store. Returns the markdown's path.
    """
    _offscreen()
    from .window import MonitorWindow, application

    store = Path(store)
    follower = StoreFollower(store)
    out = Path(out_dir) if out_dir is not None else store.with_name(store.name.removesuffix(".zarr") + "-report")
    out.mkdir(parents=True, exist_ok=True)
    application()
    win = MonitorWindow(follower, window=None)
    images: dict[str, str] = {}
    try:
        win.catch_up()
        for name in follower.devices:
            win.device_box.setCurrentText(name)
            path = out / f"{_safe(name)}.png"
            win.grab_png(str(path), size)
            images[name] = path.name
    finally:
        win.close()
    figures: dict[str, str] = {}
    from .source import run_task
    from .xor_figure import xor_figure

    if run_task(store, "pattern_xor") is not None:
        for name, dev in follower.devices.items():
            if dev.images and dev.committed:
                path = out / f"{_safe(name)}_xor.png"
                xor_figure(store, name, path)
                figures[name] = path.name
    event_figures: dict[str, str] = {}
    from .event_figure import digit_event_figure
    from .event_panel import event_streams

    if run_task(store, "saccade_digits") is not None:
        for name, dev in follower.devices.items():
            if (dev.committed and event_streams(dev.attrs.get("spec") or {})
                    and (store / name / "sequence" / "zarr.json").exists()):
                path = out / f"{_safe(name)}_events.png"
                digit_event_figure(store, name, path)
                event_figures[name] = path.name
    md = out / "report.md"
    md.write_text(_markdown(follower, images, figures, event_figures), encoding="utf-8")
    return md


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _markdown(follower: StoreFollower, images: dict[str, str], figures: dict[str, str] | None = None,
              event_figures: dict[str, str] | None = None) -> str:
    a = follower.attrs
    lines = [f"# {a.get('protocol_name')}: {follower.path.name}", ""]
    lines += [f"- **status**: {follower.status}" + (f" — {a.get('error')}" if a.get("error") else ""),
              f"- **protocol**: `{a.get('protocol_source')}` (sha256 {str(a.get('protocol_sha256'))[:12]}…)",
              f"- **seed**: {a.get('seed')}; **host**: {a.get('host')}",
              f"- **started**: {a.get('started')}; **ended**: {a.get('ended')}"]
    if a.get("overrides"):
        lines.append(f"- **overrides**: `{json.dumps(a['overrides'])}`")
    lines += ["", "| device | driver | rows committed | expected | restarts | warnings |", "|---|---|---|---|---|---|"]
    for name, d in follower.devices.items():
        lines.append(f"| {name} | {d.driver} | {d.committed:,} | {d.expected_rows or '—'} | "
                     f"{len(d.attrs.get('restarts') or [])} | {len(d.attrs.get('warnings') or [])} |")
    metrics = a.get("metrics") or {}
    rows = [(dev, ro, m) for dev, ms in metrics.items() for ro, m in (ms or {}).items() if ro != "device"]
    if rows:
        keys = sorted({k for _, _, m in rows for k in m if not k.startswith("n_")})
        lines += ["", "| device | readout | " + " | ".join(keys) + " | n_train | n_test |",
                  "|---|---|" + "---|" * (len(keys) + 2)]
        for dev, ro, m in rows:
            lines.append(f"| {dev} | {ro} | " + " | ".join(_fmt(m.get(k)) for k in keys)
                         + f" | {m.get('n_train', '')} | {m.get('n_test', '')} |")
    for dev, ms in metrics.items():   # what a device reports of the whole run (counts, energy, ...)
        summary = (ms or {}).get("device")
        if summary:
            lines += ["", f"**{dev}: device summary**", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v} |" for k, v in _flatten(summary)]
    timings = a.get("timings") or {}
    if timings:
        lines += ["", "Timings: " + ", ".join(f"{k} {_fmt(v)}" for k, v in timings.items()
                                            if isinstance(v, (int, float)))]
    for w in a.get("warnings") or []:
        lines.append(f"- warning: {w}")
    for name, png in images.items():
        lines += ["", f"## {name}", "", f"![{name}]({png})"]
        if name in (figures or {}):
            caption = ("XOR (Fernando & Sojakka 2003, Fig. 4): the mean camera frame per condition and the "
                       "readout's output against the target")
            lines += ["", caption, "", f"![{name} XOR]({figures[name]})"]
        if name in (event_figures or {}):
            caption = ("Saccade digits (as N-MNIST, Orchard et al. 2015): the mean ON and OFF events per pixel "
                       "of each class's digits")
            lines += ["", caption, "", f"![{name} events]({event_figures[name]})"]
    return "\n".join(lines) + "\n"


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted.key, formatted value)`` of a nested summary; lists of scalars joined."""
    out: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out += _flatten(v, key + ".")
        elif isinstance(v, (list, tuple)):
            out.append((key, "; ".join(_fmt(x) for x in v)))
        else:
            out.append((key, _fmt(v)))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def watch(store: str | os.PathLike[str], *, device: str | None = None, window: float | None | str = "auto",
          interval_ms: int = 50, exit_when_done: bool = False, stats: str | os.PathLike[str] | None = None) -> int:
    """Open the monitor window on ``store`` and follow it until the window is closed.

    Parameters
    ----------
    exit_when_done : bool
        Close the window once the run has ended and everything is drawn.
    stats : path, optional
        Write frame and poll statistics as JSON when the window closes.

    Raises
    ------
    WindowError
        No window can open here (no display, or Qt's platform plugin lacks system libraries):
        one line naming what is missing, raised before Qt starts.
    """
    from .window import MonitorWindow, application

    follower = StoreFollower(store)
    app = application()
    win = MonitorWindow(follower, window=window, device=device, interval_ms=interval_ms)
    win.show()
    t0 = time.perf_counter()
    startup_cpu = time.process_time()
    if exit_when_done:
        def check() -> None:
            if follower.status != "running" and follower.caught_up() and not win.paused:
                win.timer.stop()
                app.quit()
        win.timer.timeout.connect(check)
    win.start()
    app.exec()
    wall = time.perf_counter() - t0
    win.timer.stop()
    if stats is not None:
        painted = sum(v.painted.count for v in win.views.values())
        refresh = sorted(win.refresh_seconds)
        Path(stats).write_text(json.dumps({
            "wall_s": wall, "startup_cpu_s": startup_cpu, "cpu_s": time.process_time(),
            "frames_painted": painted, "painted_fps": painted / wall if wall else 0.0,
            "redraws": win.frames, "polls": follower.polls, "poll_s_total": follower.poll_seconds,
            "refresh_s_median": refresh[len(refresh) // 2] if refresh else None,
            "refresh_s_p95": refresh[int(len(refresh) * 0.95)] if refresh else None,
            "status": follower.status, "rows": {n: d.position for n, d in follower.devices.items()},
            **win.frame_stats(),
        }, indent=1))
    # tear the window down while Qt is still whole: left to the interpreter's exit, the
    # order in which PySide6 and pyqtgraph free their objects can crash the process
    win.close()
    win.deleteLater()
    app.processEvents()
    return 0
