"""``labbench``: the command line, a thin face over the Python API.

Exit codes: 0 success, 1 the run (or training) failed, 2 invalid protocol, store or usage,
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _mean_std(mean: float, std: float) -> str:
    """``mean ± std`` with the std to two significant digits and the mean to the same decimal."""
    import math

    if not std or not math.isfinite(std):
        return f"{mean:.4g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(abs(std))))
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _metrics_table(metrics: dict[str, dict[str, Any]], title: str):
    from rich.table import Table

    keys = {k for m in metrics.values() for k in m}
    names = sorted(k for k in keys if not k.startswith("n_")) + sorted(k for k in keys if k.startswith("n_"))
    table = Table(title=title, title_justify="left")
    table.add_column("readout", style="bold")
    for n in names:
        table.add_column(n, justify="right")
    for readout, m in metrics.items():
        table.add_row(readout, *(_fmt(m.get(n, "")) for n in names))
    return table


#: entries of a device's metrics that are summaries, not readouts (see labbench.spec.protocol._RESERVED)
_SUMMARIES = ("loop", "device")


def _by_device_table(by_device: dict[str, dict[str, dict[str, Any]]], title: str):
    """One row per (device, readout): several devices side by side; then the closed loop's and
    the devices' own summaries, one table each."""
    from rich.console import Group

    readouts = {dev: {ro: m for ro, m in ms.items() if ro not in _SUMMARIES} for dev, ms in by_device.items()}
    parts = []
    if any(readouts.values()):
        parts.append(_metrics_table(next(iter(readouts.values())), title) if len(readouts) == 1 else
                     _metrics_table({f"{dev} / {ro}": m for dev, ms in readouts.items() for ro, m in ms.items()},
                                    title))
    for dev, ms in by_device.items():
        for name in _SUMMARIES:
            if name in ms:
                parts.append(_summary_table(ms[name], f"{dev}: {'closed loop' if name == 'loop' else 'device'}"))
    return Group(*parts)


def _summary_table(summary: dict[str, Any], title: str):
    """A two-column table of a (nested) summary: ``bursts.bursts_per_min | 6.2``."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")

    def rows(d: dict[str, Any], prefix: str = "") -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                rows(value, f"{prefix}{key}.")
            elif isinstance(value, list):
                table.add_row(prefix + key, f"{len(value)} entries")
            else:
                table.add_row(prefix + key, _fmt(value))

    rows(summary)
    return table


def _register_driver_paths(args: argparse.Namespace) -> None:
    """``--driver-path NAME=module:Class``: the person running the bench names a driver under
    development (a protocol never does); protocols then use ``driver = "NAME"``."""
    from .reservoir import load_driver_path, register_driver
    from .spec.protocol import ProtocolError

    for spec in getattr(args, "driver_path", None) or []:
        try:
            register_driver(*load_driver_path(spec))
        except (ValueError, TypeError) as exc:
            raise ProtocolError("--driver-path", [str(exc)]) from None


def cmd_run(args: argparse.Namespace) -> int:
    from .engine import bench
    from .spec.protocol import ProtocolError, check_machine, load

    _register_driver_paths(args)
    # --mock: every device's mock, the same protocol with only the devices swapped; set before
    # validation, so that a protocol for hardware this machine lacks validates on its mock.
    # ProtocolError -> exit 2 before anything starts
    proto = load(args.protocol, overrides=args.set, mock=args.mock)
    if args.store_root is not None and (problems := check_machine(proto, args.store_root)):
        raise ProtocolError(proto.source, problems)
    signed = _unsafe_limits(args, sweep=proto.sweep is not None and not args.no_sweep)   # UnsafeLimitsError: exit 2
    out = _console()
    if proto.sweep is not None and not args.no_sweep:
        return _run_sweep(args, proto, out)
    monitor = _MonitorProcess() if args.monitor else None
    try:
        result = bench.run(proto, address=args.address, store_root=args.store_root, progress=not args.quiet,
                           console=_console(stderr=True), sweep=False, on_store=monitor, unsafe_limits=signed)
    except Exception as exc:
        if getattr(args, "verbose", False):
            raise
        line = _device_failure(proto, exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_FAILED
    if monitor is not None:
        monitor.warn_if_failed()
    return _report_run(args, proto, result, out)


def _device_failure(proto, exc: BaseException) -> str | None:
    """One line for a device that failed to open or start: the device, its driver and back end, and
    the cause (the last line of the driver's exception, without Ray's traceback); ``None`` for
    other errors."""
    from .engine.errors import DeviceDown

    if not isinstance(exc, DeviceDown):
        return None
    text = str(exc).strip()
    for dev in proto.all_devices:
        head = f"device {dev.group!r} "
        if not text.startswith(head):
            continue
        cls = proto.driver_class(dev)
        backend = cls.backend_of(proto.device_params(dev))
        what = f"driver {dev.driver}" + ("" if backend == "default" else f", back end {backend}")
        first, _, rest = text.partition(": ")
        lines = [ln.strip() for ln in rest.splitlines() if ln.strip()]
        cause = lines[-1] if lines else ""
        return f"{first.replace(head, f'device {dev.group!r} ({what}) ', 1)}: {cause}".rstrip(": ")
    return None


class _MonitorProcess:
    """``labbench run --monitor``: the monitor in its own process, started on the new store.

    A separate process keeps Qt out of the run's process and the window's drawing off the
    writer's CPU time; closing the window does not stop the run, and the window stays
    open (showing the final state) after the run ends."""

    process: Any = None   # the monitor's subprocess.Popen, once started

    def __call__(self, store: Path) -> None:
        import subprocess

        from .monitor.display import window_problem

        # no window can open here: one line, and the run goes on without it
        if (problem := window_problem()) is not None:
            print(f"warning: --monitor: the monitor window cannot open: {problem}; the run goes on "
                  f"(labbench monitor {store} --snapshot run.png draws it without a display)", file=sys.stderr)
            return
        self.process = subprocess.Popen([sys.executable, "-m", "labbench.cli", "monitor", str(store)])

    def warn_if_failed(self) -> None:
        """After the run: one line when the window's process has ended with an error."""
        code = None if self.process is None else self.process.poll()
        if code not in (None, 0):
            print(f"warning: --monitor: the monitor window closed with exit code {code} (its message is "
                  f"above); the run was not affected", file=sys.stderr)


def cmd_monitor(args: argparse.Namespace) -> int:
    from .monitor.source import StoreFollower

    StoreFollower(args.store)   # StoreError (one line, exit 2) before any Qt starts
    window = None if args.window in (None, "whole") else float(args.window)
    if args.snapshot is not None:
        from .monitor.render import snapshot

        path = snapshot(args.store, args.snapshot, device=args.device, window=window,
                        size=tuple(args.size))
        print(path)
        return 0
    from .monitor.render import watch

    if args.nice:
        import os

        os.nice(args.nice)   # the run on this machine comes first; the window takes what CPU is left
    return watch(args.store, device=args.device, window="auto" if args.window is None else window,
                 interval_ms=args.interval_ms, exit_when_done=args.exit_when_done, stats=args.stats)


def cmd_emulate(args: argparse.Namespace) -> int:
    """``labbench emulate mea``: the in-silico culture behind the serial protocol on a pty;
    ``labbench emulate bucket``: the simulated tank behind StandardFirmata and an MJPEG camera."""
    from .spec.protocol import tomllib

    if args.device == "bucket":
        return _emulate_bucket(args)
    if args.device == "edvs":
        return _emulate_edvs(args)

    from .drivers.mea.culture import InSilicoCulture
    from .drivers.mea.firmware import emulate
    from .drivers.mea.layout import ElectrodeLayout

    params: dict[str, Any] = {"seed": args.seed}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {item!r}: expected KEY=VALUE (a CultureParams field)")
        params[key.strip()] = tomllib.loads(f"v = {value}")["v"]
    layout = ElectrodeLayout()
    print(f"labbench emulate {args.device}: in-silico culture (seed {args.seed}) behind docs/serial-protocol.md; "
          f"run a protocol with --set device.params.backend=serial --set device.params.url=<the path below>; "
          f"Ctrl-C stops it", file=sys.stderr)
    return emulate(lambda: InSilicoCulture(params, layout=layout))


def _emulate_edvs(args: argparse.Namespace) -> int:
    """An eDVS4337's firmware on a pty, streaming a simulated DVS watching a moving bar."""
    from .drivers.dvs.edvs_emulator import serve_edvs
    from .drivers.dvs.sim_source import scene_source

    scene = "bar"
    for item in args.set:
        key, sep, value = item.partition("=")
        if key.strip() != "scene" or value.strip() not in ("bar", "disk"):
            raise SystemExit(f"error: --set {item!r}: the eDVS emulator takes scene=bar or scene=disk")
        scene = value.strip()
    print(f"labbench emulate edvs: an eDVS4337 (128 x 128) on a pty, its simulated pixels watching a {scene} "
          f"(seed {args.seed}); run a protocol with --set device.params.backend=edvs "
          f"--set device.params.edvs.port=<the tty below> --set device.params.sensor=dvs128; Ctrl-C stops it",
          file=sys.stderr)
    return serve_edvs(scene_source(scene, seed=args.seed))


def _emulate_bucket(args: argparse.Namespace) -> int:
    """The simulated tank in real time behind a StandardFirmata pty and an MJPEG camera."""
    from .drivers.bucket.emulator import emulate
    from .drivers.bucket.params import BucketSimParams
    from .drivers.bucket.tank import SimTank

    from .spec.protocol import parse_override

    params: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise SystemExit(f"error: --set {item!r}: expected KEY=VALUE (a BucketSimParams field, e.g. "
                             f"camera.model=sobel)")
        key, value = parse_override(item)
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    sim = BucketSimParams(**params)
    pins = [int(p) for p in args.pins.split(",")]
    if len(pins) != sim.motors.n_motors:
        raise SystemExit(f"error: --pins {args.pins}: {len(pins)} pins for {sim.motors.n_motors} motors")
    print(f"labbench emulate bucket: simulated tank (seed {args.seed}) in real time behind StandardFirmata "
          f"(motor pins {pins}) and an MJPEG camera on 127.0.0.1; run a protocol with "
          f"--set device.params.backend=rig --set device.params.rig.port=<the tty below> "
          f"--set device.params.rig.camera=<the URL below>; Ctrl-C stops it", file=sys.stderr)
    return emulate(SimTank(sim, seed=args.seed), motor_pins=pins, port=args.port)


def cmd_report(args: argparse.Namespace) -> int:
    from .monitor.render import report
    from .monitor.source import StoreFollower

    if _store_kind(args.store) == COMPARISON_KIND:   # the substrate x task comparison of `labbench compare`
        return _write_comparison_report(args.store, _console(), args.out)
    StoreFollower(args.store)
    md = report(args.store, args.out, size=tuple(args.size))
    print(md)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``labbench export STORE --aedat4 FILE``: a run's events as an AEDAT4 file."""
    from .drivers.dvs.aedat4 import write_aedat4
    from .drivers.dvs.events import from_columns
    from .store import RunReader

    reader = RunReader(args.store)
    with_events = [d for d in reader.devices if "events" in ((reader.device_attrs(d).get("spec") or {}).get("raw") or {})]
    if args.device is not None and args.device not in with_events:
        raise SystemExit(f"error: {args.store}: device {args.device!r} has no event stream (devices with one: "
                         f"{', '.join(with_events) or 'none'})")
    if args.device is None and len(with_events) != 1:
        raise SystemExit(f"error: {args.store}: {len(with_events)} devices have an event stream "
                         f"({', '.join(with_events) or 'none'}): name one with --device")
    device = args.device or with_events[0]
    hw = (reader.device_attrs(device).get("describe") or {}).get("sensor_hw")
    if not hw:
        raise SystemExit(f"error: {args.store}: device {device!r} does not say its sensor size (describe.sensor_hw)")
    events = from_columns(reader.raw(device, "events"))
    path = write_aedat4(args.aedat4, events, (int(hw[1]), int(hw[0])))
    print(f"{path}: {len(events):,} events of device {device!r} ({hw[1]} x {hw[0]} pixels)")
    return 0


def _unsafe_limits(args: argparse.Namespace, sweep: bool = False):
    """The checked ``--unsafe-limits`` file (a SignedLimits), or None."""
    if getattr(args, "unsafe_limits", None) is None:
        return None
    from .spec.unsafe_limits import UnsafeLimitsError, read_unsafe_limits

    signed = read_unsafe_limits(args.unsafe_limits)
    if sweep:
        raise UnsafeLimitsError(f"{signed.path}: --unsafe-limits applies to one run; this protocol has a [sweep] "
                                f"(run its trials one at a time with --no-sweep and --set)")
    return signed


def cmd_resume(args: argparse.Namespace) -> int:
    from .engine import bench
    from .store import RunReader

    _register_driver_paths(args)
    proto = bench.stored_protocol(RunReader(args.store).attrs, args.store)
    result = bench.resume(args.store, address=args.address, progress=not args.quiet, console=_console(stderr=True),
                          unsafe_limits=_unsafe_limits(args))
    return _report_run(args, proto, result, _console())


def _report_run(args: argparse.Namespace, proto, result, out) -> int:
    if args.json:
        print(json.dumps({"store": str(result.store), "status": result.status, "metrics": result.metrics,
                          "by_device": result.by_device, "timings": result.timings, "warnings": result.warnings,
                          "ray": getattr(result, "ray", "")},
                         default=str))
        return 0
    out.print(_by_device_table(result.by_device, f"{proto.protocol.name} on {proto.describe_devices()}: test metrics"))
    t = result.timings
    out.print(f"throughput {t['samples_per_s']:,.0f} samples/s over {t['stream_s']:.2f} s")
    out.print(run_split(t, getattr(result, "ray", "")))
    for w in result.warnings:
        out.print(f"[yellow]warning[/yellow] {w}")
    out.print(f"store: {result.store}")
    return 0


def run_split(timings: dict[str, Any], ray: str = "") -> str:
    """The line of a run summary that says where the time went: start-up (Ray, devices), stream,
    drain (the trainers after the last block) and evaluation, and the whole run."""
    t = timings
    how = "connect" if ray.startswith(("running", "cluster")) else "start-up"
    ray_part = f"Ray {how} {t.get('ray_startup_s', 0):.2f} s" + (f" ({ray})" if ray else "")
    return (f"time {t.get('wall_s', 0):.2f} s: start-up {t.get('startup_s', 0):.2f} s ({ray_part}, devices "
            f"{t.get('device_startup_s', 0):.2f} s), stream {t.get('stream_s', 0):.2f} s, drain "
            f"{t.get('drain_s', 0):.2f} s, evaluation {t.get('evaluation_s', 0):.2f} s")


def cmd_ray(args: argparse.Namespace) -> int:
    """``labbench ray start|stop|status``: a local Ray on 127.0.0.1 that runs share."""
    from .engine import ray_runtime as rr

    out = _console()
    if args.action == "start":
        info = rr.start_shared_ray(num_cpus=args.num_cpus, warm=args.warm)
        warm = (f"; {info['warm']} warm device and trainer actor(s) kept ready" if info.get("warm") else
                "; no warm actors" + (" (the pool did not start)" if args.warm else ""))
        out.print(f"local Ray running at {info['address']} (loopback only){warm}; `labbench run` uses it until "
                  f"`labbench ray stop` (recorded in {rr.state_file()})", markup=False)
        return 0
    if args.action == "stop":
        info = rr.stop_shared_ray()
        out.print("no local Ray of labbench recorded" if info is None else
                  f"stopped the local Ray at {info['address']}")
        return 0
    info = rr.shared_ray()
    if args.json:
        print(json.dumps({"running": info is not None, **(info or {}), "state_file": str(rr.state_file())}))
    elif info is None:
        out.print("no local Ray of labbench running: `labbench run` starts its own "
                  "(`labbench ray start` keeps one for runs to share)")
    else:
        out.print(f"local Ray running at {info['address']} since {info['started']} "
                  f"({len(rr.owned_pids(info))} processes, {info.get('warm', 0)} warm actor(s) of each kind "
                  f"kept ready); `labbench run` uses it", markup=False)
    return 0 if info is not None or args.action != "status" else 1


def _run_sweep(args: argparse.Namespace, proto, out) -> int:
    from .engine.sweeper import run_sweep

    result = run_sweep(proto, address=args.address, store_root=args.store_root, progress=not args.quiet,
                       console=_console(stderr=True))
    if args.json:
        print(json.dumps({"store": str(result.store), "status": result.status, "summary": result.summary,
                          "best": result.best, "timings": result.timings}, default=str))
        return 0
    out.print(_sweep_table(result.summary, f"sweep {proto.protocol.name}: {len(result.summary)} trials, best first",
                           limit=args.top))
    _print_best(out, result.best, proto.source)
    out.print(f"{result.timings.get('sweep_s', 0):.1f} s for {len(result.summary)} trials; store: {result.store}")
    return 0


def _sweep_table(summary: list[dict[str, Any]], title: str, limit: int = 20):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    cols = [k for k in (summary[0] if summary else {}) if k not in ("trial", "status")]
    table.add_column("trial", justify="right")
    for c in cols:
        table.add_column(c.removeprefix("device.params."), justify="right")
    table.add_column("status")
    for row in summary[:limit]:
        table.add_row(str(row["trial"]), *(_fmt(row.get(c)) if row.get(c) is not None else "–" for c in cols),
                      row["status"])
    if len(summary) > limit:
        table.caption = f"… {len(summary) - limit} more (--top N, or labbench show --json)"
    return table


def _print_best(out, best: dict[str, Any] | None, source: str) -> None:
    if best is None:
        out.print("[yellow]no trial completed[/yellow]")
        return
    params = {k: v for k, v in best.items() if k not in ("trial", "status")}
    out.print(f"best: trial {best['trial']}: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in params.items()))
    sets = " ".join(f"--set {k}={json.dumps(v)}" for k, v in params.items() if "." in k)
    out.print(f"  run it alone: labbench run {source} --no-sweep {sets}")


def cmd_compare(args: argparse.Namespace) -> int:
    """``labbench compare SUITE.toml``: every device of a suite through the battery, ranked per entry."""
    from .engine.comparer import run_compare
    from .spec.suite import load_suite

    # SuiteError (a ProtocolError) -> exit 2 before anything starts
    suite = load_suite(args.suite, mock=args.mock, devices=args.devices, entries=args.tasks)
    out = _console()
    result = run_compare(suite, address=args.address, store_root=args.store_root, progress=not args.quiet,
                         console=_console(stderr=True))
    if args.json:
        print(json.dumps({"store": str(result.store), "status": result.status, "ranking": result.ranking,
                          "failed": result.failed, "not_applicable": result.not_applicable,
                          "timings": result.timings}, default=str))
    else:
        out.print(_ranking_tables(result.ranking, suite.entry_info(), suite.device_info(), result.not_applicable,
                                  result.failed))
        _print_failed_cells(out, result.failed)
        t = result.timings
        out.print(f"{len(suite.devices)} devices, {len(suite.entries)} entries, {result.cells} cells "
                  f"({len(result.failed)} failed) in {t.get('compare_s', 0):.1f} s (cells' own time "
                  f"{t.get('cells_s', 0):.1f} s); store: {result.store}")
    if not args.no_report:
        try:
            _write_comparison_report(result.store, out if not args.json else _console(stderr=True))
        except Exception as exc:   # the comparison is stored whole: say so, and how to redo the report
            if args.verbose:
                raise
            print(f"warning: the report failed ({type(exc).__name__}: {exc}); the store is complete, "
                  f"`labbench report {result.store}` writes it again", file=sys.stderr)
    return EXIT_FAILED if result.cells and len(result.failed) == result.cells else 0


def _ranking_tables(ranking: dict[str, list[dict[str, Any]]], entries: list[dict[str, Any]],
                    devices: list[dict[str, Any]], not_applicable: list[dict[str, Any]],
                    failed: list[dict[str, Any]] = ()):
    """One table per battery entry: rank, device, substrate, mean ± std over the seeds, n.
    A device without a value is unranked, as ``failed`` (its cells failed) or ``none`` (they
    ran, but gave no finite value, e.g. a fading time never reached); devices whose family
    cannot measure the entry close the table as n/a."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    substrate = {d["name"]: escape(str(d.get("substrate", ""))) for d in devices}
    broken = {(f["device"], f["entry"]) for f in failed}
    tables = []
    for entry in entries:
        name = entry["name"]
        unit = f" [{entry['unit']}]" if entry.get("unit") else ""
        better = "higher" if entry.get("maximise") else "lower"
        table = Table(title=escape(f"{name}: {entry.get('metric')}{unit}, {better} is better"), title_justify="left")
        for col, justify in (("rank", "right"), ("device", "left"), ("substrate", "left"),
                             ("mean ± std", "right"), ("n", "right")):
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        rank = 0
        for row in ranking.get(name, []):
            if row.get("mean") is None:
                what = "failed" if (row["device"], name) in broken else "none"
                table.add_row("–", row["device"], substrate.get(row["device"], ""), what, str(row.get("n", 0)))
                continue
            rank += 1
            value = _mean_std(row["mean"], row["std"]) if row.get("n", 0) > 1 else _fmt(row["mean"])
            table.add_row(str(rank), row["device"], substrate.get(row["device"], ""), value, str(row["n"]))
        for na in not_applicable:
            if na["entry"] == name:
                table.add_row("", na["device"], substrate.get(na["device"], ""), "n/a", "")
        if not table.row_count:
            continue
        whys = sorted({f"{na['device']}: {na['why']}" for na in not_applicable if na["entry"] == name})
        if whys:
            table.caption = escape("n/a: " + "; ".join(whys))
            table.caption_justify = "left"
        tables.append(table)
    return Group(*tables)


def _print_failed_cells(out, failed: list[dict[str, Any]], limit: int = 10) -> None:
    from rich.markup import escape

    for f in failed[:limit]:
        error = str(f.get("error") or "").strip().splitlines()
        out.print(f"[yellow]failed[/yellow] {f['device']} / {f['entry']} / seed {f['seed']}: "
                  f"{escape(error[-1]) if error else 'no error recorded'}", highlight=False)
    if len(failed) > limit:
        out.print(f"… {len(failed) - limit} more failed cells (labbench show STORE --json)")


def _write_comparison_report(store: Path, out, dest: Path | None = None) -> int:
    """The comparison's report (``labbench.compare.report.write_report``); a note when that
    module is not installed yet."""
    try:
        from .compare.report import write_report
    except ModuleNotFoundError as exc:
        if exc.name not in ("labbench.compare", "labbench.compare.report"):
            raise
        out.print(f"note: no report written (labbench.compare.report is not available); the store is complete: "
                  f"labbench show {store}", markup=False)
        return 0
    written = write_report(store) if dest is None else write_report(store, dest)
    for kind, path in written.items():
        if isinstance(path, (list, tuple)):
            out.print(f"report {kind}: {len(path)} files" + (f" in {Path(path[0]).parent}" if path else ""),
                      markup=False)
        else:
            out.print(f"report {kind}: {path}", markup=False)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.live import TrainerError, load_model, readout_specs, save_model, train_store
    from .spec.protocol import parse_override

    params: dict[str, Any] = {}
    for item in args.set:
        key, value = parse_override(item)
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    if args.readout is None and (params or args.name):
        raise TrainerError("--set and --name describe a readout: give its kind with --readout")
    specs = readout_specs(args.store, args.readout, name=args.name, params=params)
    model = load_model(args.model) if args.model else None
    if args.save_model and len(specs) != 1:
        raise TrainerError("--save-model saves one readout: give it with --readout")
    out = _console()
    metrics = {}
    for spec in specs:
        with _RowsBar(f"train {spec.label}", enabled=not args.quiet) as bar:
            res = train_store(args.store, spec, device=args.device, model=model, on_block=bar.update,
                              timeout=args.timeout)
        metrics[res.name] = res.metrics
        for w in res.warnings:
            out.print(f"[yellow]warning[/yellow] {res.name}: {w}")
        if args.save_model:
            save_model(res.pipeline, args.save_model)
            out.print(f"model saved: {args.save_model}")
    if args.json:
        print(json.dumps({"store": str(args.store), "metrics": metrics}, default=str))
        return 0
    out.print(_metrics_table(metrics, f"{args.store}: test metrics"))
    return 0


class _RowsBar:
    """Progress over the rows of a stream (a live one grows while it is followed)."""

    def __init__(self, label: str, *, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TextColumn("rows"), TimeElapsedColumn(), console=_console(stderr=True))
            self._task = self._p.add_task(label, total=None)

    def __enter__(self) -> _RowsBar:
        if self.enabled:
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._p.__exit__(*exc)

    def update(self, done: int, total: int) -> None:
        if self.enabled:
            self._p.update(self._task, completed=done, total=max(total, done))


def cmd_validate(args: argparse.Namespace) -> int:
    from .spec.protocol import load

    _register_driver_paths(args)
    if _is_suite(args.protocol):
        return _validate_suite(args)
    proto = load(args.protocol, overrides=args.set, mock=args.mock)
    r = proto.run
    print(f"{args.protocol}: ok — {proto.protocol.name}: device {proto.describe_devices()}, task {proto.task.name}, "
          f"{r.total:,} samples (washout {r.washout:,}, train {r.train:,}, test {r.test:,}) in blocks of "
          f"{r.block:,}, readouts: {', '.join(ro.label for ro in proto.readouts)}")
    if proto.sweep is not None:
        from .spec.protocol import trial_protocols

        trials = trial_protocols(proto)
        print(f"  sweep: {proto.sweep.method}, {len(trials)} trials over {', '.join(proto.sweep.params)}; all valid")
    return 0


def _is_suite(path: str) -> bool:
    """Whether ``path`` is a TOML file with a ``[suite]`` table and no ``[protocol]`` (a comparison suite)."""
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False   # the protocol loader says what is wrong with it
    return "suite" in data and "protocol" not in data


def _validate_suite(args: argparse.Namespace) -> int:
    from .spec.protocol import ProtocolError
    from .spec.suite import load_suite

    if args.set:
        raise ProtocolError(str(args.protocol), ["--set: a comparison suite takes no overrides (set a device's "
                                                 "params in the suite file)"])
    suite = load_suite(args.protocol, mock=args.mock)
    cells = suite.cells()
    na = ", ".join(f"{x['device']}/{x['entry']}" for x in suite.not_applicable) or "none"
    print(f"{args.protocol}: ok — suite {suite.suite.name}: {len(suite.devices)} devices, {len(suite.entries)} "
          f"entries, seeds {list(suite.seeds)}, scale {suite.suite.scale} → {len(cells)} cells; n/a: {na}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .store import RunReader
    from .engine.sweeper import read_sweep

    sweep = read_sweep(args.store)
    if sweep is not None:
        return _show_sweep(args, sweep)
    if _store_kind(args.store) == COMPARISON_KIND:
        return _show_comparison(args)
    reader = RunReader(args.store)
    attrs = reader.attrs
    if args.json:
        keep = {k: v for k, v in attrs.items() if k != "protocol_text"}
        keep["committed"] = {d: reader.committed(d) for d in reader.devices}
        print(json.dumps(keep, default=str, indent=2))
        return 0
    out = _console()
    proto = attrs.get("protocol") or {}
    out.print(f"[bold]{reader.path}[/bold]")
    out.print(f"  protocol  {attrs.get('protocol_name')}  ({attrs.get('protocol_source')}, "
              f"sha256 {str(attrs.get('protocol_sha256'))[:12]}…)")
    if attrs.get("overrides"):
        out.print(f"  overrides {attrs['overrides']}")
    out.print(f"  status    {attrs.get('status')}" + (f": {attrs['error']}" if attrs.get("error") else "")
              + _writer_gone_note(attrs))
    out.print(f"  started   {attrs.get('started')}   ended {attrs.get('ended')}")
    for w in attrs.get("warnings") or []:
        out.print(f"  [yellow]warning[/yellow]   {w}")
    out.print(f"  host      {attrs.get('host')}   labbench {attrs.get('labbench_version')}   seed {attrs.get('seed')}")
    total = (proto.get("run") or {})
    expected = sum(total.get(k, 0) for k in ("washout", "train", "test"))
    if not reader.devices:
        out.print("  device    none yet (the run stopped or is still starting before its first block)")
    for dev in reader.devices:
        da = reader.device_attrs(dev)
        params = (da.get("describe") or {}).get("params", {})
        out.print(f"  device    {dev}: driver {da.get('driver')}, {reader.committed(dev):,}/{expected:,} samples "
                  f"committed; params {params}")
    timings = attrs.get("timings") or {}
    if timings:
        out.print("  timings   " + ", ".join(f"{k} {_fmt(v)}" for k, v in timings.items() if k != "trainers"))
        for name, t in (timings.get("trainers") or {}).items():
            out.print(f"  trainer   {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in t.items()))
    summaries = attrs.get("metrics") or {}
    for dev in reader.devices:
        readouts = reader.readouts(dev)
        if readouts:
            out.print(_metrics_table({n: ro.get("metrics") or {} for n, ro in readouts.items()}, f"{dev}: metrics"))
            for name, ro in readouts.items():
                out.print(_history_line(reader, dev, name, ro, args.history))
        for name in _SUMMARIES:        # the closed loop's and the device's own summary
            if name in (summaries.get(dev) or {}):
                out.print(_summary_table(summaries[dev][name],
                                         f"{dev}: {'closed loop' if name == 'loop' else 'device'}"))
    return 0


def _history_line(reader, device: str, name: str, ro: dict[str, Any], n_rows: int) -> str:
    """One readout's status and metric history: a sparkline and the last evaluations."""
    import numpy as np

    hist = reader.history(device, name)
    status = ro.get("status", "?")
    head = f"  {name}: {status}" + (f" ({ro['error']})" if ro.get("error") else "") + \
        f", {ro.get('consumed', 0):,} rows consumed, {ro.get('evaluations', 0)} evaluations"
    lines = [head]
    for col in [c for c in hist if c.startswith(("prequential_", "test_"))]:
        v = hist[col]
        rows = hist["row"]
        ok = ~np.isnan(v)
        if not ok.any():
            continue
        last = ", ".join(f"{_fmt(r)}:{_fmt(x)}" for r, x in list(zip(rows[ok], v[ok]))[-n_rows:])
        lines.append(f"    {col:<28} {_sparkline(v[ok])}  (row:value) … {last}")
    return "\n".join(lines)


def _sparkline(values) -> str:
    import numpy as np

    bars = "▁▂▃▄▅▆▇█"
    v = np.asarray(values, dtype=float)
    if len(v) > 40:  # keep it one line: sample 40 evenly
        v = v[np.linspace(0, len(v) - 1, 40).astype(int)]
    lo, hi = np.nanmin(v), np.nanmax(v)
    if not np.isfinite(lo) or hi == lo:
        return bars[3] * len(v)
    return "".join(bars[int(round((x - lo) / (hi - lo) * 7))] for x in v)


def _writer_gone_note(attrs: dict[str, Any],
                      then: str = "the run was killed; `labbench resume` continues it") -> str:
    """For a 'running' store written on this host, say so if its writer process is gone."""
    from .store import writer_is_dead

    if attrs.get("status") != "running" or not writer_is_dead(attrs):
        return ""
    return f" (but its writer, process {attrs.get('writer_pid')}, is gone: {then})"


def cmd_devices(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .reservoir import list_devices

    _register_driver_paths(args)
    rows = list_devices()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="installed drivers (entry points 'labbench.drivers') and their back ends",
                  title_justify="left")
    for col in ("name", "back end", "available", "detail"):
        table.add_column(col)
    for r in rows:
        for i, (backend, b) in enumerate(r["backends"].items()):
            table.add_row(r["name"] if i == 0 else "", backend, "yes" if b["available"] else "no", b["detail"])
    table.caption = "labbench devices --json adds each driver's entry point and summary"
    _console().print(table)
    return 0


def _show_sweep(args: argparse.Namespace, attrs: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps({k: v for k, v in attrs.items() if k != "protocol_text"}, default=str, indent=2))
        return 0
    out = _console()
    summary = attrs.get("summary") or []
    n = attrs.get("n_trials")
    ranking = attrs.get("ranking") or {}
    out.print(f"[bold]{args.store}[/bold]  (sweep)")
    out.print(f"  protocol  {attrs.get('protocol_name')}  ({attrs.get('protocol_source')})")
    out.print(f"  status    {attrs.get('status')}" + (f": {attrs['error']}" if attrs.get("error") else "")
              + _writer_gone_note(attrs))
    out.print(f"  trials    {len(summary)}/{n} finished, {sum(r['status'] != 'complete' for r in summary)} failed; "
              f"ranked by {ranking.get('readout')}.{ranking.get('metric')} "
              f"({'higher' if ranking.get('maximise') else 'lower'} is better)")
    out.print(f"  started   {attrs.get('started')}   ended {attrs.get('ended')}")
    out.print(_sweep_table(summary, "trials, best first", limit=args.history if args.history > 5 else 20))
    _print_best(out, attrs.get("best"), attrs.get("protocol_source") or "<protocol>")
    return 0


def _store_kind(path: Path) -> str | None:
    """The ``kind`` root attribute of a Zarr store (``labbench.comparison``, ``labbench.sweep``,
    ...), or None when ``path`` is not a readable Zarr group."""
    import zarr

    try:
        return zarr.open_group(str(path), mode="r").attrs.get("kind")
    except Exception:
        return None


#: the root ``kind`` of a comparison store (labbench.store.comparison.KIND)
COMPARISON_KIND = "labbench.comparison"


def _show_comparison(args: argparse.Namespace) -> int:
    from .store.comparison import ComparisonReader

    reader = ComparisonReader(args.store)
    attrs = reader.attrs
    if args.json:
        print(json.dumps({k: v for k, v in attrs.items() if k != "suite_text"}, default=str, indent=2))
        return 0
    out = _console()
    cells = list(reader.cells())
    failed = [c for c in cells if c.get("status") != "complete"]
    out.print(f"[bold]{args.store}[/bold]  (comparison)")
    out.print(f"  suite     {attrs.get('suite_name')}  ({attrs.get('suite_source')}, scale {attrs.get('scale')})")
    if attrs.get("narrowed"):
        out.print(f"  narrowed  {attrs['narrowed']}")
    out.print(f"  status    {attrs.get('status')}" + (f": {attrs['error']}" if attrs.get("error") else "")
              + _writer_gone_note(attrs, "the comparison was killed; its finished cells are kept"))
    out.print(f"  cells     {len(cells)}/{attrs.get('n_cells', '?')} finished, {len(failed)} failed; seeds "
              f"{attrs.get('seeds')}")
    out.print(f"  started   {attrs.get('started')}   ended {attrs.get('ended')}")
    failed_cells = [{"device": c.get("device"), "entry": c.get("entry"), "seed": c.get("seed"),
                     "error": c.get("error")} for c in failed]
    out.print(_ranking_tables(attrs.get("ranking") or {}, attrs.get("entries") or [], attrs.get("devices") or [],
                              attrs.get("not_applicable") or [], failed_cells))
    _print_failed_cells(out, failed_cells)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labbench",
        description="Run reservoir-computing protocols on software, physical and biological reservoirs.",
        epilog="Examples:\n  labbench run protocols/mackey_glass.toml\n"
               "  labbench run protocols/narma10.toml --set device.params.units=1000\n"
               "  labbench run protocols/narma10_sweep.toml        # a parameter sweep\n"
               "  labbench run protocols/mea_closed_loop.toml      # a closed loop on the in-silico culture\n"
               "  labbench compare protocols/suite_quick.toml --mock   # every device family, ranked per task\n"
               "  labbench show runs/<run>.zarr\n  labbench resume runs/<aborted run>.zarr\n"
               "  labbench train runs/<run>.zarr --readout rls --name rls\n"
               "  labbench validate protocols/lorenz.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"labbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_set(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a protocol key, e.g. --set device.params.units=2000 (repeatable; "
                            "the value is read as TOML)")

    def add_driver_path(p: argparse.ArgumentParser) -> None:
        p.add_argument("--driver-path", action="append", default=[], metavar="NAME=MODULE:CLASS",
                       help="use a driver that is not installed as an entry point, e.g. --driver-path "
                            "rig=mylab.rig:MyRig (repeatable); protocols then say driver = \"rig\". Without "
                            "NAME= the class's own name is used. The module must be importable (installed or on "
                            "PYTHONPATH); a protocol can never name a module itself")

    p = sub.add_parser("run", help="run a protocol and record it in a run store",
                       description="Run a protocol: start (or join) Ray, run the device in an actor block by block, "
                                   "stream into a Zarr run store, train and score the readouts.")
    p.add_argument("protocol", type=Path, help="protocol TOML file")
    add_set(p)
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (e.g. auto, ray://host:10001); default RAY_ADDRESS or a local Ray")
    p.add_argument("--store-root", default=None, type=Path, help="directory for the run store (default: store.root)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-sweep", action="store_true", help="run the base protocol once, ignoring its [sweep]")
    p.add_argument("--top", type=int, default=20, metavar="N", help="sweep: trials to list (default 20)")
    p.add_argument("--mock", action="store_true",
                   help="run every device on its mock (e.g. the in-silico culture instead of a real MEA); "
                        "software reservoirs are their own mock")
    p.add_argument("--monitor", action="store_true",
                   help="open the live monitor on the run's store (in its own process) as soon as it exists")
    add_driver_path(p)
    p.add_argument("--verbose", action="store_true",
                   help="on failure, show the whole traceback (Ray's included) instead of one line")
    p.add_argument("--unsafe-limits", type=Path, default=None, metavar="FILE",
                   help="a signed-off TOML file ([sign_off] name, reason, date; [limits]) lifting safety ceilings "
                        "a protocol cannot; recorded in the store (docs/mea.md)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="run a suite: a battery of reservoir measures on every device family",
                       description="Run a comparison suite: every (device, battery entry, seed) cell as a Ray task "
                                   "into one comparison store, print a ranked table per entry and write the "
                                   "report.",
                       epilog="Examples:\n  labbench compare protocols/suite_quick.toml --mock\n"
                              "  labbench compare protocols/suite_quick.toml --devices esn,lsm --tasks narma10\n"
                              "  labbench show runs/<comparison>.zarr",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", type=Path, help="suite TOML file")
    p.add_argument("--mock", action="store_true", help="run every device on its mock")
    p.add_argument("--devices", default=None, metavar="A,B", help="only these devices of the suite")
    p.add_argument("--tasks", default=None, metavar="X,Y", help="only these battery entries of the suite")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--store-root", default=None, type=Path, help="directory for the comparison store (default: runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("--verbose", action="store_true",
                   help="on failure, show the whole traceback instead of one line")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("resume", help="continue an aborted run of deterministic devices to its end",
                       description="Resume an aborted (or failed) run: each device is opened afresh, fed the stored "
                                   "inputs up to its committed row to rebuild its state, and the run goes on "
                                   "appending to the same store; readouts are trained again from the start.")
    p.add_argument("store", type=Path, help="run store (.zarr)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--unsafe-limits", type=Path, default=None, metavar="FILE",
                   help="the signed-off file the run was made with, if it was (checked by sha256)")
    add_driver_path(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("validate", help="check a protocol without running it",
                       description="Validate a protocol file (and --set overrides); exit code 2 if invalid.")
    p.add_argument("protocol", type=Path)
    add_set(p)
    p.add_argument("--mock", action="store_true", help="validate with every device on its mock (as run --mock)")
    add_driver_path(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="print provenance, status and metrics of a run, sweep or comparison store",
                       description="Show any run, sweep or comparison, finished or still being written.")
    p.add_argument("store", type=Path)
    p.add_argument("--json", action="store_true", help="print the root attributes as JSON")
    p.add_argument("--history", type=int, default=5, metavar="N",
                   help="evaluations of each readout's metric history to list (default 5)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("train", help="train a readout on a run store (finished, or followed while it runs)",
                       description="Train a readout on the stream of a run store without touching the device:\n"
                                   "replay a finished run through another learner, or follow one still running.\n"
                                   "It learns on train rows, is scored on test rows, and writes predictions, the\n"
                                   "metric history and the final metrics under <device>/readouts/<name>/.\n"
                                   "Without --readout, the store's own readouts are replayed as <name>-replay.",
                       epilog="Examples:\n  labbench train runs/<run>.zarr\n"
                              "  labbench train runs/<run>.zarr --readout rls --set forgetting=0.9999 --name rls\n"
                              "  labbench train runs/<run>.zarr --readout vote --set module.kind=som "
                              "--set module.rows=12 --set module.cols=12",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", type=Path, help="run store (.zarr)")
    p.add_argument("--readout", default=None, metavar="KIND",
                   help="readout kind: ridge, rls, force, sklearn, vote (default: replay the store's readouts)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a readout hyperparameter, e.g. --set alpha=1e-6, --set module.kind=stdp, --set pool=sum "
                        "(repeatable; values read as TOML)")
    p.add_argument("--name", default=None, help="name of the new readout group (default: the kind)")
    p.add_argument("--device", default=None, help="device group (default: the only one)")
    p.add_argument("--model", default=None, type=Path, help="start from a model saved with --save-model")
    p.add_argument("--save-model", default=None, type=Path, help="pickle the trained model to this file")
    p.add_argument("--timeout", default=None, type=float,
                   help="give up following a live run after this many seconds without new rows")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("monitor", help="open a live window on a run store (or render it to PNG)",
                       description="Follow a run store in a pyqtgraph window, finished or still being written: "
                                   "features, spikes, input/target/predictions and metrics, per device. It reads "
                                   "only up to each device's committed row and never locks the store.",
                       epilog="Examples:\n  labbench monitor runs/<run>.zarr\n"
                              "  labbench monitor runs/<run>.zarr --window 500 --device lsm\n"
                              "  labbench monitor runs/<run>.zarr --snapshot run.png   (off-screen, no display needed)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", type=Path, help="run store (.zarr)")
    p.add_argument("--snapshot", type=Path, default=None, metavar="PNG",
                   help="render the panels off-screen to this PNG and exit")
    p.add_argument("--device", default=None, help="device shown first (default: the first)")
    p.add_argument("--window", default=None, metavar="SECONDS",
                   help="show the last SECONDS of the run (steps for software reservoirs), or 'whole'; default: "
                        "the last 2000 rows while running, the whole run when finished (snapshots: whole run)")
    p.add_argument("--interval-ms", type=int, default=50, help="poll period in ms (default 50)")
    p.add_argument("--size", type=int, nargs=2, default=(1400, 1000), metavar=("W", "H"),
                   help="snapshot size in pixels (default 1400 1000)")
    p.add_argument("--nice", type=int, default=10, metavar="N",
                   help="lower the window's CPU priority by N (default 10), so that a run on the same machine "
                        "keeps its speed and the window uses the CPU time left over; 0 to keep the priority")
    p.add_argument("--exit-when-done", action="store_true", help="close the window once the run has ended")
    p.add_argument("--stats", type=Path, default=None, metavar="JSON",
                   help="write frame and poll statistics to this file when the window closes")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("report", help="write a PNG per device and a markdown summary of a run store (or a "
                                      "comparison's report)",
                       description="Render every device's monitor panels off-screen to <out>/<device>.png and "
                                   "write <out>/report.md (status, provenance, metrics, timings). For a "
                                   "comparison store (labbench compare), the comparison's report.")
    p.add_argument("store", type=Path, help="run or comparison store (.zarr)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: <store>-report next to it)")
    p.add_argument("--size", type=int, nargs=2, default=(1400, 1000), metavar=("W", "H"),
                   help="image size in pixels (default 1400 1000)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="write a run's events as an AEDAT4 file",
                       description="Write the raw event stream of a run's event camera as AEDAT4 (read by "
                                   "dv-processing, aedat and tonic).")
    p.add_argument("store", type=Path, help="run store (.zarr)")
    p.add_argument("--aedat4", type=Path, required=True, metavar="FILE", help="the AEDAT4 file to write")
    p.add_argument("--device", default=None, help="the device (default: the one device with an event stream)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("emulate", help="serve a simulated device behind its real serial protocol on a pty",
                       description="Start a device's firmware emulator on a pseudo-terminal and print the tty "
                                   "path; the real serial driver then talks to it as to the board.",
                       epilog="Example:\n  labbench emulate mea          # prints e.g. /tmp/labbench-mea-1234\n"
                              "  labbench run protocols/mea_xor.toml --set device.params.backend=serial "
                              "--set device.params.url=/tmp/labbench-mea-1234\n"
                              "  labbench emulate bucket       # prints the tty, then http://127.0.0.1:PORT/stream.mjpg\n"
                              "  labbench emulate edvs         # prints the tty of an eDVS4337 (--set scene=disk)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("device", choices=["mea", "bucket", "edvs"],
                   help="which device (mea: the in-silico culture on an MEA board; bucket: the simulated tank "
                        "behind StandardFirmata on a pty and an MJPEG camera on 127.0.0.1; edvs: an eDVS4337 "
                        "on a pty streaming a simulated DVS)")
    p.add_argument("--seed", type=int, default=0, help="seed of the culture or tank (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a culture parameter (CultureParams), e.g. --set n_neurons=500, or a bucket one "
                        "(BucketSimParams), e.g. --set camera.model=sobel (repeatable; TOML values)")
    p.add_argument("--port", type=int, default=0, help="bucket: TCP port of the camera on 127.0.0.1 (default: any)")
    p.add_argument("--pins", default="3,5,6,9", help="bucket: the Arduino PWM pin of each motor (default 3,5,6,9)")
    p.set_defaults(func=cmd_emulate)

    p = sub.add_parser("devices", help="list installed drivers, their back ends and whether each is available")
    p.add_argument("--json", action="store_true")
    add_driver_path(p)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("ray", help="start, stop or check a local Ray (127.0.0.1 only) that runs share",
                       description="`labbench ray start` leaves a local Ray running on 127.0.0.1 and records "
                                   "its address; `labbench run` then connects to it (seconds saved per run) "
                                   "instead of starting its own, and never stops it. `labbench ray stop` ends "
                                   "that Ray's processes only (never other Rays of the machine). "
                                   "`status` exits 1 when none is running.")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--num-cpus", type=int, default=None, help="start: CPUs the Ray offers (default: all)")
    p.add_argument("--warm", type=int, default=1, metavar="N",
                   help="start: warm device and trainer actors kept ready for runs, N of each (default 1; 0: none)")
    p.add_argument("--json", action="store_true", help="status: as JSON")
    p.set_defaults(func=cmd_ray)
    return parser


#: errors that mean "bad input" (exit 2), by module: a command that never imported the
#: module cannot have raised its error, so main() does not import it (``labbench monitor``
#: starts without the training stack)
_USAGE_ERRORS = {"labbench.engine.live": "TrainerError", "labbench.spec.protocol": "ProtocolError",
                 "labbench.store": "StoreError", "labbench.monitor.display": "WindowError",
                 "labbench.spec.unsafe_limits": "UnsafeLimitsError"}


def _usage_error(exc: BaseException) -> bool:
    for module, name in _USAGE_ERRORS.items():
        mod = sys.modules.get(module)
        if mod is not None and isinstance(exc, getattr(mod, name)):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    """The ``labbench`` command. Run as the command itself (``argv`` None), ``run`` and ``resume``
    end the process as soon as the summary is printed rather than wait for Ray's shutdown
    (:func:`labbench.engine.ray_runtime.exit_now`)."""
    args = build_parser().parse_args(argv)
    code = _main(args)
    if argv is None and args.command in ("run", "resume", "compare"):
        from .engine.ray_runtime import exit_now

        exit_now(code)
    return code


def _main(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted: devices closed, store marked aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a failed run: one clear line, the store keeps the full text
        if _usage_error(exc):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if getattr(args, "verbose", False):   # labbench run --verbose: the whole story
            import traceback

            traceback.print_exc()
        print(f"error: run failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
