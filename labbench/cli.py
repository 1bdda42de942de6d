"""``labbench``: the command line, a thin face over the Python API.

Exit codes: 0 success, 1 the run failed, 2 invalid protocol or usage, 130 interrupted.
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


def cmd_run(args: argparse.Namespace) -> int:
    from . import bench
    from .protocol import load

    proto = load(args.protocol, overrides=args.set)  # ProtocolError -> exit 2 before anything starts
    out = _console()
    result = bench.run(proto, address=args.address, store_root=args.store_root, progress=not args.quiet,
                       console=_console(stderr=True))
    if args.json:
        print(json.dumps({"store": str(result.store), "status": result.status, "metrics": result.metrics,
                          "timings": result.timings}, default=str))
        return 0
    out.print(_metrics_table(result.metrics, f"{proto.protocol.name} on {proto.device.driver}: test metrics"))
    t = result.timings
    out.print(f"throughput {t['samples_per_s']:,.0f} samples/s over {t['stream_s']:.2f} s "
              f"(Ray start-up {t['ray_startup_s']:.1f} s, device start-up {t['device_startup_s']:.1f} s)")
    out.print(f"store: {result.store}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .protocol import load

    proto = load(args.protocol, overrides=args.set)
    r = proto.run
    print(f"{args.protocol}: ok — {proto.protocol.name}: device {proto.device.driver}, task {proto.task.name}, "
          f"{r.total:,} samples (washout {r.washout:,}, train {r.train:,}, test {r.test:,}) in blocks of "
          f"{r.block:,}, readouts: {', '.join(ro.label for ro in proto.readouts)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .store import RunReader

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
        out.print("  timings   " + ", ".join(f"{k} {_fmt(v)}" for k, v in timings.items()))
    for dev, per_readout in (attrs.get("metrics") or {}).items():
        out.print(_metrics_table(per_readout, f"{dev}: metrics"))
    return 0


def _writer_gone_note(attrs: dict[str, Any]) -> str:
    """For a 'running' store written on this host, say so if its writer process is gone."""
    import platform

    import psutil

    pid = attrs.get("writer_pid")
    if attrs.get("status") != "running" or attrs.get("host") != platform.node() or not pid:
        return ""
    return "" if psutil.pid_exists(int(pid)) else f" (but its writer, process {pid}, is gone: the run was killed)"


def cmd_devices(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .reservoir import list_devices

    rows = list_devices()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="installed drivers (entry points 'labbench.drivers')", title_justify="left")
    for col in ("name", "available", "detail", "target", "summary"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["available"], r["detail"], r["target"], r["summary"])
    _console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labbench",
        description="Run reservoir-computing protocols on software, physical and biological reservoirs.",
        epilog="Examples:\n  labbench run protocols/mackey_glass.toml\n"
               "  labbench run protocols/narma10.toml --set device.params.units=1000\n"
               "  labbench show runs/<run>.zarr\n  labbench validate protocols/lorenz.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"labbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_set(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a protocol key, e.g. --set device.params.units=2000 (repeatable; "
                            "the value is read as TOML)")

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
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a protocol without running it",
                       description="Validate a protocol file (and --set overrides); exit code 2 if invalid.")
    p.add_argument("protocol", type=Path)
    add_set(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="print provenance, status and metrics of a run store",
                       description="Show any run, finished or still being written.")
    p.add_argument("store", type=Path)
    p.add_argument("--json", action="store_true", help="print the root attributes as JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("devices", help="list installed drivers and whether each is available")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devices)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .protocol import ProtocolError
    from .store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ProtocolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: devices closed, store marked aborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a failed run: one clear line, the store keeps the full text
        print(f"error: run failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
