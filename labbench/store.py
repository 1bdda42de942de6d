"""The run store: one Zarr v3 group per run, written by one writer, tailed by many readers.

Layout (see ``DESIGN.md``)::

    <run>.zarr                attrs: labbench version, protocol text + sha256, seed, host,
                                     started/ended, status, error, metrics
      <device>/               attrs: driver, describe, spec, committed
        inputs    (time, input)
        features  (time, unit)
        targets   (time, output)
        phase     (time,)     int8: 0 washout, 1 train, 2 test
        raw/<stream>/<column> (row,) append-only, plus raw/<stream>/offsets (block,)
        readouts/<name>/predictions (time, output); attrs: metrics

Every array carries ``dimension_names`` so ``xarray.open_zarr(path, group=device,
consolidated=False)`` opens a device group as a Dataset.

Durability rule: the writer writes a block into every time array first and only then
advances the group attribute ``committed``; readers re-open the group on every poll and
read rows below ``committed`` only. Zarr's local store writes each chunk and each
``zarr.json`` by temp file and rename, so a reader never sees a torn block and a run
killed at any point leaves every committed row intact. When the expected length is
known the arrays are allocated at full length up front (rows past ``committed`` hold
the fill value) and trimmed to ``committed`` when the run ends, so an append costs
chunk writes plus one small attribute write.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from . import __version__

PHASES = {"washout": 0, "train": 1, "test": 2}
STATUSES = ("running", "complete", "aborted", "failed")
_TIME_ARRAYS = ("inputs", "features", "targets", "phase")


class StoreError(Exception):
    """A path that is not a readable labbench run store."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def new_run_path(root: str | os.PathLike[str], protocol_name: str) -> Path:
    """``root/<UTC timestamp>_<protocol>.zarr``, never an existing path."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", protocol_name).strip("-") or "run"
    root = Path(root)
    path = root / f"{stamp}_{safe}.zarr"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{stamp}_{safe}-{n}.zarr"
    return path


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so attributes never hold numpy scalars or tuples."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


class RunStore:
    """The single writer of a run store.

    Parameters
    ----------
    path : path-like
        Where to create the ``.zarr`` directory (must not exist).
    protocol_text : str
        Full text of the protocol file, stored verbatim with its sha256.
    provenance : dict
        Further root attributes (protocol name, seed, overrides, resolved protocol...).
    """

    def __init__(self, path: str | os.PathLike[str], protocol_text: str, provenance: dict[str, Any]) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"run store {self.path} already exists")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._root = zarr.open_group(str(self.path), mode="w-")
        attrs = {
            "labbench_version": __version__,
            "kind": "labbench.run",
            "protocol_text": protocol_text,
            "protocol_sha256": hashlib.sha256(protocol_text.encode()).hexdigest(),
            "host": platform.node(),
            "writer_pid": os.getpid(),
            "python": platform.python_version(),
            "versions": _versions(),
            "started": now_iso(),
            "ended": None,
            "status": "running",
            "error": None,
            "metrics": {},
            **provenance,
        }
        self._root.attrs.update(_jsonable(attrs))
        self._devices: dict[str, _DeviceWriter] = {}

    # -- devices --------------------------------------------------------------------------
    def add_device(
        self,
        name: str,
        *,
        spec: dict[str, Any],
        describe: dict[str, Any],
        n_outputs: int,
        dtype: str,
        chunk_rows: int,
        expected_rows: int = 0,
    ) -> None:
        """Create the group of one device with its time arrays."""
        g = self._root.create_group(name)
        g.attrs.update(_jsonable({"driver": describe.get("driver", name), "describe": describe, "spec": spec,
                                  "committed": 0, "chunk_rows": chunk_rows}))
        widths = {"inputs": (spec["n_inputs"], dtype, "input"),
                  "features": (spec["n_features"], dtype, spec.get("feature_name", "unit")),
                  "targets": (n_outputs, "float64", "output")}
        arrays = {}
        for key, (width, dt, dim) in widths.items():
            arrays[key] = g.create_array(key, shape=(expected_rows, width), chunks=(chunk_rows, width), dtype=dt,
                                         dimension_names=("time", dim), compressors=None, fill_value=np.nan)
        arrays["phase"] = g.create_array("phase", shape=(expected_rows,), chunks=(chunk_rows,), dtype="int8",
                                         dimension_names=("time",), compressors=None, fill_value=-1)
        self._devices[name] = _DeviceWriter(g, arrays, chunk_rows)

    def committed(self, device: str) -> int:
        return self._devices[device].committed

    def append(self, device: str, *, inputs: np.ndarray, features: np.ndarray, targets: np.ndarray,
               phase: np.ndarray, raw: dict[str, dict[str, np.ndarray]] | None = None) -> int:
        """Write one block of every time array, then advance ``committed``; returns it."""
        return self._devices[device].append(inputs=inputs, features=features, targets=targets, phase=phase, raw=raw)

    def add_readout(self, device: str, name: str, *, n_outputs: int, describe: dict[str, Any]) -> None:
        self._devices[device].add_readout(name, n_outputs, describe)

    def write_predictions(self, device: str, readout: str, start: int, predictions: np.ndarray) -> None:
        self._devices[device].write_predictions(readout, start, predictions)

    def write_free_run(self, device: str, readout: str, starts: np.ndarray, predictions: np.ndarray) -> None:
        """Closed-loop predictions (start, horizon, output) of a generative evaluation."""
        grp = self._devices[device].group[f"readouts/{readout}"]
        grp.create_array("free_run", data=np.asarray(predictions, dtype="float64"),
                         dimension_names=("start", "horizon", "output"), compressors=None)
        grp.create_array("free_run_starts", data=np.asarray(starts, dtype="int64"), dimension_names=("start",),
                         compressors=None)

    def set_metrics(self, device: str, readout: str, metrics: dict[str, float],
                    warnings: list[str] | None = None) -> None:
        """Record a readout's metrics (and any warnings it raised) on its group and in the root summary."""
        grp = self._devices[device].group[f"readouts/{readout}"]
        grp.attrs.update(_jsonable({"metrics": metrics, "warnings": list(warnings or [])}))
        summary = dict(self._root.attrs.get("metrics") or {})
        summary.setdefault(device, {})[readout] = metrics
        self._root.attrs.update(_jsonable({"metrics": summary}))

    def set_attrs(self, **attrs: Any) -> None:
        self._root.attrs.update(_jsonable(attrs))

    # -- end of a run -------------------------------------------------------------------------
    def finish(self, status: str, error: str | None = None) -> None:
        """Mark the run ``complete``, ``aborted`` or ``failed``; trims arrays to ``committed``."""
        if status not in STATUSES[1:]:
            raise ValueError(f"final status must be one of {STATUSES[1:]}, got {status!r}")
        for dev in self._devices.values():
            try:
                dev.trim()
            except Exception:  # keep the committed rows whatever went wrong
                pass
        self._root.attrs.update(_jsonable({"status": status, "error": error, "ended": now_iso()}))


class _DeviceWriter:
    def __init__(self, group: zarr.Group, arrays: dict[str, zarr.Array], chunk_rows: int) -> None:
        self.group = group
        self.arrays = arrays
        self.chunk_rows = chunk_rows
        self.committed = 0
        self.n_blocks = 0
        self.readouts: dict[str, zarr.Array] = {}  # name -> predictions
        self._raw: dict[str, dict[str, zarr.Array]] = {}

    def _ensure_rows(self, arr: zarr.Array, rows: int) -> None:
        if arr.shape[0] < rows:
            grow = max(rows, arr.shape[0] + 16 * self.chunk_rows)
            arr.resize((grow, *arr.shape[1:]))

    def append(self, *, inputs, features, targets, phase, raw) -> int:
        n = len(features)
        parts = {"inputs": inputs, "features": features, "targets": targets, "phase": phase}
        for key, data in parts.items():
            if len(data) != n:
                raise ValueError(f"block arrays disagree in length: features has {n} rows, {key} has {len(data)}")
        a, b = self.committed, self.committed + n
        for key, data in parts.items():
            arr = self.arrays[key]
            self._ensure_rows(arr, b)
            arr[a:b] = data
        for predictions in self.readouts.values():
            self._ensure_rows(predictions, b)
        if raw:
            self._append_raw(raw)
        self.committed = b
        self.n_blocks += 1
        self.group.attrs.update({"committed": b, "blocks": self.n_blocks})
        return b

    def _append_raw(self, raw: dict[str, dict[str, np.ndarray]]) -> None:
        for stream, cols in raw.items():
            if stream not in self._raw:
                g = self.group.require_group(f"raw/{stream}")
                self._raw[stream] = {c: g.create_array(c, shape=(0,), chunks=(65536,), dtype=np.asarray(v).dtype,
                                                       dimension_names=(f"{stream}_row",), compressors=None)
                                     for c, v in cols.items()}
                self._raw[stream]["offsets"] = g.create_array("offsets", shape=(0,), chunks=(4096,), dtype="int64",
                                                              dimension_names=(f"{stream}_block",),
                                                              compressors=None)
            arrays = self._raw[stream]
            first = next(iter(cols.values()))
            start = arrays[next(iter(cols))].shape[0]
            for c, v in cols.items():
                arr = arrays[c]
                arr.resize((start + len(first),))
                arr[start:] = np.asarray(v)
            off = arrays["offsets"]
            off.resize((off.shape[0] + 1,))
            off[-1] = start + len(first)

    def add_readout(self, name: str, n_outputs: int, describe: dict[str, Any]) -> None:
        g = self.group.require_group(f"readouts/{name}")
        g.attrs.update(_jsonable({"describe": describe, "metrics": {}}))
        rows = self.arrays["features"].shape[0]
        pred = g.create_array("predictions", shape=(rows, n_outputs), chunks=(self.chunk_rows, n_outputs),
                              dtype="float64", dimension_names=("time", "output"), compressors=None,
                              fill_value=np.nan)
        self.readouts[name] = pred

    def write_predictions(self, name: str, start: int, predictions: np.ndarray) -> None:
        arr = self.readouts[name]
        self._ensure_rows(arr, start + len(predictions))
        arr[start:start + len(predictions)] = predictions

    def trim(self) -> None:
        for arr in [*self.arrays.values(), *self.readouts.values()]:
            if arr.shape[0] != self.committed:
                arr.resize((self.committed, *arr.shape[1:]))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("numpy", "zarr", "ray", "numba", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
class RunReader:
    """Read any run store, finished or still being written, never past ``committed``.

    Every property re-opens the store, so a reader sees the writer's progress.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such run store")
        self._open()  # validates

    def _open(self) -> zarr.Group:
        try:
            root = zarr.open_group(str(self.path), mode="r")
        except Exception as exc:
            raise StoreError(f"{self.path}: not a Zarr v3 group ({type(exc).__name__}: {exc})") from None
        if root.attrs.get("kind") != "labbench.run":
            raise StoreError(f"{self.path}: a Zarr group, but not a labbench run (no kind='labbench.run' attribute)")
        return root

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._open().attrs)

    @property
    def status(self) -> str:
        return str(self.attrs.get("status"))

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.attrs.get("metrics") or {})

    @property
    def devices(self) -> list[str]:
        return sorted(name for name, _ in self._open().groups())

    def device_attrs(self, device: str) -> dict[str, Any]:
        return dict(self._open()[device].attrs)

    def committed(self, device: str) -> int:
        return int(self._open()[device].attrs.get("committed", 0))

    def read(self, device: str, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Time arrays of ``device`` for rows ``start:stop``, clipped to ``committed``."""
        g = self._open()[device]
        committed = int(g.attrs.get("committed", 0))
        stop = committed if stop is None else min(stop, committed)
        start = min(start, stop)
        out = {key: g[key][start:stop] for key in _TIME_ARRAYS}
        if "readouts" in g:
            for name, rg in g["readouts"].groups():
                out[f"readouts/{name}/predictions"] = rg["predictions"][start:stop]
        return out

    def tail(self, device: str, *, start: int = 0, poll: float = 0.1, timeout: float | None = None
             ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(start_row, arrays)`` for each newly committed stretch until the run ends.

        Raises ``TimeoutError`` if nothing new arrives within ``timeout`` seconds while
        the run is still ``running``.
        """
        pos = start
        last_progress = time.monotonic()
        while True:
            root = self._open()
            status = root.attrs.get("status")
            committed = int(root[device].attrs.get("committed", 0))
            if committed > pos:
                yield pos, self.read(device, pos, committed)
                pos = committed
                last_progress = time.monotonic()
                continue
            if status != "running":
                return
            if timeout is not None and time.monotonic() - last_progress > timeout:
                raise TimeoutError(f"{self.path}:{device}: no new rows for {timeout} s (committed={pos})")
            time.sleep(poll)
