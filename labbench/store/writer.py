"""The writers of a run store: :class:`RunStore` (one per run) and :class:`ReadoutWriter`
(one per readout group). See :mod:`labbench.store` for the layout and the durability rule.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync as _sync

from ..version import __version__
from .layout import STATUSES, StoreError, jsonable, now_iso, versions

#: bytes of one chunk of a raw column whose rows are cells (frames): 2 MiB
RAW_CHUNK_BYTES = 2 << 20


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
        attrs = {
            "labbench_version": __version__,
            "kind": "labbench.run",
            "protocol_text": protocol_text,
            "protocol_sha256": hashlib.sha256(protocol_text.encode()).hexdigest(),
            "host": platform.node(),
            "writer_pid": os.getpid(),
            "python": platform.python_version(),
            "versions": versions(),
            "started": now_iso(),
            "ended": None,
            "status": "running",
            "error": None,
            "metrics": {},
            **provenance,
        }
        # made with its attributes: one metadata write, not two
        self._root = zarr.open_group(str(self.path), mode="w-", attributes=jsonable(attrs))
        self._devices: dict[str, _DeviceWriter] = {}

    def restart_run(self) -> None:
        """Mark a reopened store ``running`` again: record where each device resumes (root
        ``resumed``), clear the summary metrics, and empty every ``readouts`` group (the
        readouts are trained again from the first row)."""
        resumed = list(self._root.attrs.get("resumed") or [])
        resumed.append({"at": now_iso(), "from_rows": {name: d.committed for name, d in self._devices.items()}})
        self._root.update_attributes(jsonable({"status": "running", "error": None, "ended": None, "resumed": resumed,
                                           "metrics": {}}))
        for dev in self._devices.values():
            if "readouts" in dev.group:
                del dev.group["readouts"]
            dev.group.create_group("readouts")

    @classmethod
    def reopen(cls, path: str | os.PathLike[str]) -> RunStore:
        """Become the writer of an existing (aborted or failed) store again, to append to it.

        Each device resumes at its ``committed`` row; raw-stream rows written past the last
        committed block (a writer killed between the two) are cut off, so the store is
        exactly as a reader saw it.
        """
        self = cls.__new__(cls)
        self.path = Path(path)
        self._root = zarr.open_group(str(self.path), mode="r+")
        if self._root.attrs.get("kind") != "labbench.run":
            raise StoreError(f"{self.path}: not a labbench run store")
        self._devices = {name: _DeviceWriter.reopen(g) for name, g in self._root.groups()}
        self._root.update_attributes(jsonable({"writer_pid": os.getpid(), "host": platform.node()}))
        return self

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
        layout: dict[str, int] | None = None,
        sequence: bool = False,
    ) -> None:
        """Create the group of one device with its time arrays.

        ``layout`` gives the rows of each phase (``{"washout": ..., "train": ..., "test": ...}``)
        so trainers can plan their evaluations; ``sequence=True`` adds the ``sequence`` column.
        """
        attrs = jsonable({"driver": describe.get("driver", name), "describe": describe, "spec": spec,
                          "committed": 0, "chunk_rows": chunk_rows, "expected_rows": expected_rows,
                          "layout": layout or {}, "stream_done": False})
        g = zarr.Group(_sync(self._root._async_group.create_group(name, attributes=attrs)))
        # inputs keep the device's float precision; a device with integer features (spike
        # counts) still receives real-valued inputs
        in_dtype = dtype if np.issubdtype(np.dtype(dtype), np.floating) else "float32"
        specs = {key: {"shape": (expected_rows, width), "chunks": (chunk_rows, width), "dtype": dt,
                       "dimension_names": ("time", dim),
                       "fill_value": np.nan if np.issubdtype(np.dtype(dt), np.floating) else 0}  # integer: counts
                 for key, (width, dt, dim) in {"inputs": (spec["n_inputs"], in_dtype, "input"),
                                               "features": (spec["n_features"], dtype,
                                                            spec.get("feature_name", "unit")),
                                               "targets": (n_outputs, "float64", "output")}.items()}
        specs["phase"] = {"shape": (expected_rows,), "chunks": (chunk_rows,), "dtype": "int8",
                          "dimension_names": ("time",), "fill_value": -1}
        if sequence:
            specs["sequence"] = {"shape": (expected_rows,), "chunks": (chunk_rows,), "dtype": "int32",
                                 "dimension_names": ("time",), "fill_value": -1}
        # every array, and the readouts group (made here so concurrent trainers never race to
        # create it), in one round trip to zarr's I/O loop
        arrays = {k: v for k, v in _sync(_create_all(g, specs, groups=("readouts",))).items() if k in specs}
        self._devices[name] = _DeviceWriter(g, arrays, chunk_rows)

    def committed(self, device: str) -> int:
        return self._devices[device].committed

    def inputs(self, device: str) -> zarr.Array:
        """The ``inputs`` array of ``device`` (rows below ``committed`` are written)."""
        return self._devices[device].arrays["inputs"]

    def features(self, device: str) -> zarr.Array:
        """The ``features`` array of ``device`` (rows below ``committed`` are written)."""
        return self._devices[device].arrays["features"]

    def input_dtype(self, device: str) -> str:
        return str(self._devices[device].arrays["inputs"].dtype)

    def append(self, device: str, *, inputs: np.ndarray, features: np.ndarray, targets: np.ndarray,
               phase: np.ndarray, sequence: np.ndarray | None = None,
               raw: dict[str, dict[str, np.ndarray]] | None = None) -> int:
        """Write one block of every time array, then advance ``committed``; returns it."""
        return self._devices[device].append(inputs=inputs, features=features, targets=targets, phase=phase,
                                            sequence=sequence, raw=raw)

    def end_stream(self, device: str) -> None:
        """Tell trainers that no more rows will come for ``device``."""
        self._devices[device].group.update_attributes({"stream_done": True})

    def set_summary_metrics(self, device: str, readout: str, metrics: dict[str, Any]) -> None:
        """Record a readout's final metrics in the root summary (``labbench show``)."""
        summary = dict(self._root.attrs.get("metrics") or {})
        summary.setdefault(device, {})[readout] = metrics
        self._root.update_attributes(jsonable({"metrics": summary}))

    def set_attrs(self, **attrs: Any) -> None:
        self._root.update_attributes(jsonable(attrs))

    def set_device_attrs(self, device: str, **attrs: Any) -> None:
        self._devices[device].group.update_attributes(jsonable(attrs))

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
        self._root.update_attributes(jsonable({"status": status, "error": error, "ended": now_iso()}))


async def _create_all(group: zarr.Group, arrays: dict[str, dict[str, Any]],
                      groups: tuple[str, ...] = ()) -> dict[str, Any]:
    """Create the uncompressed ``arrays`` (name: keyword arguments) and empty ``groups`` of
    ``group`` concurrently, on zarr's I/O loop; returns them by name (``zarr.Array`` /
    ``zarr.Group``)."""
    made = await asyncio.gather(*(group._async_group.create_array(name, compressors=None, **kw)
                                  for name, kw in arrays.items()),
                                *(group._async_group.create_group(name) for name in groups))
    return {**{name: zarr.Array(a) for name, a in zip(arrays, made)},
            **{name: zarr.Group(g) for name, g in zip(groups, made[len(arrays):])}}


async def _write_all(writes: list[tuple[zarr.Array, Any, np.ndarray]]) -> None:
    """``arr[sel] = data`` for every write, concurrently on zarr's I/O loop."""
    await asyncio.gather(*(arr.async_array.setitem(sel, data) for arr, sel, data in writes))


class _RawStream:
    """The arrays of one raw stream and how far they are written.

    Columns and ``offsets`` grow by doubling (whole chunks), not on every block, so an append
    is one write per column; ``rows`` and ``blocks`` say how much of them holds data (readers
    go by ``offsets`` and the device's ``blocks``). :meth:`_DeviceWriter.trim` cuts them to
    size when the run ends."""

    def __init__(self, columns: dict[str, zarr.Array], offsets: zarr.Array, rows: int, blocks: int) -> None:
        self.columns = columns
        self.offsets = offsets
        self.rows = rows
        self.blocks = blocks

    def reserve(self, rows: int, blocks: int) -> None:
        """Grow the columns to hold ``rows`` rows and ``offsets`` to hold ``blocks`` entries."""
        for arr in self.columns.values():
            if arr.shape[0] < rows:
                arr.resize((max(rows, 2 * arr.shape[0], arr.chunks[0]), *arr.shape[1:]))
        if self.offsets.shape[0] < blocks:
            self.offsets.resize((max(blocks, 2 * self.offsets.shape[0], self.offsets.chunks[0]),))

    def trim(self) -> None:
        for arr in self.columns.values():
            if arr.shape[0] != self.rows:
                arr.resize((self.rows, *arr.shape[1:]))
        if self.offsets.shape[0] != self.blocks:
            self.offsets.resize((self.blocks,))


class _DeviceWriter:
    def __init__(self, group: zarr.Group, arrays: dict[str, zarr.Array], chunk_rows: int) -> None:
        self.group = group
        self.arrays = arrays
        self.chunk_rows = chunk_rows
        self.committed = 0
        self.n_blocks = 0
        self._raw: dict[str, _RawStream] = {}

    @classmethod
    def reopen(cls, group: zarr.Group) -> _DeviceWriter:
        """The writer of an existing device group, positioned at its ``committed`` row."""
        arrays = {key: group[key] for key in ("inputs", "features", "targets", "phase", "sequence") if key in group}
        self = cls(group, arrays, int(group.attrs["chunk_rows"]))
        self.committed = int(group.attrs.get("committed", 0))
        self.n_blocks = int(group.attrs.get("blocks", 0))
        if "raw" in group:
            for stream, g in group["raw"].groups():
                cols = {name: arr for name, arr in g.arrays() if name != "offsets"}
                offsets = g["offsets"]
                keep_blocks = min(self.n_blocks, offsets.shape[0])
                keep = int(offsets[keep_blocks - 1]) if keep_blocks else 0
                raw = _RawStream(cols, offsets, keep, keep_blocks)
                raw.trim()   # rows written past the last committed block are cut off
                self._raw[stream] = raw
        group.update_attributes({"stream_done": False})
        return self

    def _ensure_rows(self, arr: zarr.Array, rows: int) -> None:
        if arr.shape[0] < rows:
            grow = max(rows, arr.shape[0] + 16 * self.chunk_rows)
            arr.resize((grow, *arr.shape[1:]))

    def append(self, *, inputs, features, targets, phase, sequence, raw) -> int:
        n = len(features)
        parts = {"inputs": inputs, "features": features, "targets": targets, "phase": phase}
        if "sequence" in self.arrays:
            if sequence is None:
                raise ValueError("this device group has a sequence column: pass sequence= with every block")
            parts["sequence"] = sequence
        for key, data in parts.items():
            if len(data) != n:
                raise ValueError(f"block arrays disagree in length: features has {n} rows, {key} has {len(data)}")
        a, b = self.committed, self.committed + n
        writes = []
        for key, data in parts.items():
            arr = self.arrays[key]
            self._ensure_rows(arr, b)
            writes.append((arr, slice(a, b), np.asarray(data, dtype=arr.dtype)))
        writes += self._raw_writes(raw or {})
        # every chunk of the block in one round trip to zarr's I/O loop, then the commit
        _sync(_write_all(writes))
        for stream in self._raw.values():
            stream.blocks = self.n_blocks + 1
        self.committed = b
        self.n_blocks += 1
        self.group.update_attributes({"committed": b, "blocks": self.n_blocks})
        return b

    def _raw_writes(self, raw: dict[str, dict[str, np.ndarray]]) -> list[tuple[zarr.Array, Any, np.ndarray]]:
        """The writes of a block's raw rows: each column's new rows and, for every raw stream of
        the device (those without rows in this block too), its offset after this block, so that
        ``offsets[k]`` is the stream's row count after device block ``k``."""
        blocks = {}
        for stream, cols in raw.items():
            cols = {c: np.asarray(v) for c, v in cols.items()}
            if stream not in self._raw:
                self._raw[stream] = self._create_raw(stream, cols)
            arrays = self._raw[stream].columns
            if set(cols) != set(arrays):
                raise ValueError(f"raw stream {stream!r}: block has columns {sorted(cols)}, expected "
                                 f"{sorted(arrays)}")
            first = len(next(iter(cols.values())))
            for c, v in cols.items():
                arr = arrays[c]
                if v.shape[1:] != arr.shape[1:] or len(v) != first:
                    raise ValueError(f"raw stream {stream!r} column {c!r}: block has shape {v.shape}, expected "
                                     f"({first}, {', '.join(map(str, arr.shape[1:]))}) rows of cells "
                                     f"{tuple(arr.shape[1:])}")
            blocks[stream] = (cols, first)
        writes = []
        k = self.n_blocks
        for stream, rs in self._raw.items():
            cols, count = blocks.get(stream, ({}, 0))
            rs.reserve(rs.rows + count, k + 1)
            for c, v in cols.items():
                arr = rs.columns[c]
                writes.append((arr, slice(rs.rows, rs.rows + count), v.astype(arr.dtype, copy=False)))
            rs.rows += count
            writes.append((rs.offsets, slice(k, k + 1), np.array([rs.rows], dtype=np.int64)))
        return writes

    def _create_raw(self, stream: str, cols: dict[str, np.ndarray]) -> _RawStream:
        """The arrays of a raw stream, made on its first block. A column whose rows are cells of a
        shape (frames) is an array ``(rows, *cell)`` chunked along its rows, about
        :data:`RAW_CHUNK_BYTES` a chunk; its cell shape must be the one the device's spec declares.
        A stream first seen at device block ``k`` has offset 0 for the blocks before it."""
        declared = ((self.group.attrs.get("spec") or {}).get("raw") or {}).get(stream) or {}
        shapes, dims = declared.get("shapes") or {}, declared.get("dims") or {}
        g = self.group.require_group(f"raw/{stream}")
        out: dict[str, zarr.Array] = {}
        for c, v in cols.items():
            if c == "offsets":
                raise ValueError(f"raw stream {stream!r}: 'offsets' is reserved for the block offsets; rename "
                                 f"the column")
            cell = tuple(v.shape[1:])
            if c in shapes and tuple(shapes[c]) != cell:
                raise ValueError(f"raw stream {stream!r} column {c!r}: cells of shape {cell}, but the device's "
                                 f"spec declares {tuple(shapes[c])}")
            if cell:
                rows = int(np.clip(RAW_CHUNK_BYTES // (int(np.prod(cell)) * v.dtype.itemsize), 1, 65536))
                names = tuple(dims.get(c) or (f"{c}_{i}" for i in range(len(cell))))
            else:
                rows, names = 65536, ()
            out[c] = g.create_array(c, shape=(0, *cell), chunks=(rows, *cell), dtype=v.dtype,
                                    dimension_names=(f"{stream}_row", *names), compressors=None)
        offsets = g.create_array("offsets", shape=(0,), chunks=(4096,), dtype="int64",
                                 dimension_names=(f"{stream}_block",), compressors=None, fill_value=0)
        return _RawStream(out, offsets, 0, 0)

    def trim(self) -> None:
        for arr in self.arrays.values():
            if arr.shape[0] != self.committed:
                arr.resize((self.committed, *arr.shape[1:]))
        for stream in self._raw.values():
            stream.trim()


def _contiguous(parts: list[tuple[int, np.ndarray]]) -> list[tuple[int, np.ndarray]]:
    """Join ``(start, rows)`` parts that follow each other into one, so that no two writes of a
    batch share a chunk unless they are one write."""
    out: list[tuple[int, list[np.ndarray]]] = []
    for start, rows in parts:
        if out and out[-1][0] + sum(len(r) for r in out[-1][1]) == start:
            out[-1][1].append(rows)
        else:
            out.append((start, [rows]))
    return [(start, rows[0] if len(rows) == 1 else np.concatenate(rows)) for start, rows in out]


async def _write_readout(predictions: zarr.Array, parts: list[tuple[int, np.ndarray]], n: int,
                         columns: list[tuple[zarr.Array, np.ndarray]]) -> None:
    """A readout's batch: its prediction parts one after the other (two may share a chunk), and
    beside them every history column grown by its new rows and written."""
    async def _predictions() -> None:
        for start, rows in parts:
            await predictions.async_array.setitem(slice(start, start + len(rows)), rows)

    async def _column(arr: zarr.Array, values: np.ndarray) -> None:
        await arr.async_array.resize((n + len(values),))
        await arr.async_array.setitem(slice(n, n + len(values)), values)

    await asyncio.gather(_predictions(), *(_column(arr, values) for arr, values in columns))


class ReadoutWriter:
    """The single writer of one readout group, ``<device>/readouts/<name>``.

    Created by a trainer before it consumes anything. Predictions are written first and
    the ``consumed`` attribute (rows of the device stream the readout has seen) moves
    after them; a history row is appended to every ``history/<column>`` array before
    ``evaluations`` moves, so a reader polling the group never sees a half-written
    evaluation.

    Parameters
    ----------
    path : path-like
        The run store (must already be a labbench run; see :class:`RunReader`).
    device, name : str
        Device group and readout name; the name must be new.
    n_outputs : int
        Width of the predictions.
    describe : dict
        The readout's configuration (kind, parameters, module, pooling).
    history_columns : list of str
        Columns of the metric history.
    rows, chunk_rows : int
        Initial length (the device stream's expected rows) and chunk length of
        ``predictions``.

    Raises
    ------
    StoreError
        If the device group is missing or the readout name is taken.
    """

    def __init__(self, path: str | os.PathLike[str], device: str, name: str, *, n_outputs: int,
                 describe: dict[str, Any], history_columns: list[str], rows: int, chunk_rows: int) -> None:
        self.path = Path(path)
        root = zarr.open_group(str(self.path), mode="r+")
        if device not in root:
            raise StoreError(f"{self.path}: no device group {device!r}")
        parent = root[device].require_group("readouts")
        if name in parent:
            raise StoreError(f"{self.path}: {device}/readouts/{name} already exists; choose another name")
        attrs = jsonable({
            "describe": describe, "status": "running", "error": None, "consumed": 0, "evaluations": 0,
            "metrics": {}, "warnings": [], "history_columns": list(history_columns), "started": now_iso(),
            "ended": None, "trainer": {"host": platform.node(), "pid": os.getpid()}})
        self.group = zarr.Group(_sync(parent._async_group.create_group(name, attributes=attrs)))
        self.chunk_rows = chunk_rows
        made = _sync(_create_all(self.group, {"predictions": {
            "shape": (rows, n_outputs), "chunks": (chunk_rows, n_outputs), "dtype": "float64",
            "dimension_names": ("time", "output"), "fill_value": np.nan}}, groups=("history",)))
        self.predictions, hist = made["predictions"], made["history"]
        self.history = _sync(_create_all(hist, {c: {"shape": (0,), "chunks": (1024,), "dtype": "float64",
                                                    "dimension_names": ("evaluation",)}
                                                for c in history_columns}))
        self.consumed = 0
        self.evaluations = 0

    def write(self, start: int, predictions: np.ndarray | None, consumed: int) -> None:
        """Write predictions for rows ``start:start+len`` (if any), then advance ``consumed``."""
        self.write_batch([] if predictions is None else [(start, predictions)], consumed)

    def add_evaluation(self, values: dict[str, float], metrics: dict[str, Any]) -> None:
        """Append one history row (missing columns are NaN), then record ``metrics`` as the latest."""
        self.write_batch([], self.consumed, [values], metrics)

    def write_batch(self, predictions: list[tuple[int, np.ndarray]], consumed: int,
                    history: list[dict[str, float]] | None = None, metrics: dict[str, Any] | None = None) -> None:
        """Write several blocks' predictions and history rows, then advance the attributes once.

        Every chunk and every history column is written in one round trip to Zarr's I/O loop
        (predictions in order, the history columns concurrently beside them); only then do
        ``consumed``, ``evaluations`` and ``metrics`` (the latest, when ``history`` has rows)
        move, in one attribute update. The store ends as :meth:`write` and
        :meth:`add_evaluation` called one after the other would leave it.

        Parameters
        ----------
        predictions : list of (int, ndarray)
            ``(start, rows)`` pairs, in row order.
        consumed : int
            Rows of the device stream now final.
        history : list of dict, optional
            History rows to append (missing columns are NaN).
        metrics : dict, optional
            The latest metrics, recorded with the history rows.
        """
        parts = [(int(start), np.asarray(p)) for start, p in predictions if p is not None and len(p)]
        if parts:
            stop = max(start + len(p) for start, p in parts)
            if self.predictions.shape[0] < stop:
                self.predictions.resize((max(stop, self.predictions.shape[0] + 16 * self.chunk_rows),
                                         self.predictions.shape[1]))
        rows = list(history or [])
        n = self.evaluations
        columns = [(arr, np.array([float(r.get(col, np.nan)) for r in rows])) for col, arr in self.history.items()]
        if parts or rows:
            _sync(_write_readout(self.predictions, _contiguous(parts), n, columns if rows else []))
        attrs: dict[str, Any] = {"consumed": int(consumed)}
        if rows:
            attrs["evaluations"] = n + len(rows)
        if metrics is not None:
            attrs["metrics"] = metrics
        self.consumed = int(consumed)
        self.evaluations = n + len(rows)
        self.group.update_attributes(jsonable(attrs))

    def set_attrs(self, **attrs: Any) -> None:
        self.group.update_attributes(jsonable(attrs))

    def finish(self, status: str, error: str | None = None) -> None:
        """Trim predictions to ``consumed`` and mark the readout ``complete``/``aborted``/``failed``."""
        if status not in STATUSES[1:]:
            raise ValueError(f"final status must be one of {STATUSES[1:]}, got {status!r}")
        try:
            if self.predictions.shape[0] != self.consumed:
                self.predictions.resize((self.consumed, self.predictions.shape[1]))
        finally:
            self.group.update_attributes(jsonable({"status": status, "error": error, "ended": now_iso()}))

    @classmethod
    def reopen(cls, path: str | os.PathLike[str], device: str, name: str) -> zarr.Group:
        """The group of an existing readout, for writing after its trainer finished."""
        return zarr.open_group(str(path), mode="r+")[f"{device}/readouts/{name}"]
