"""Follow a run store for display: read only what is new, never past ``committed``.

The monitor's data side, with no Qt in it, so that it can be tested and benchmarked on
its own. A :class:`StoreFollower` re-opens the store on every :meth:`~StoreFollower.poll`
(an open Zarr array does not see another process's resize, see ``docs/store.md``), reads
each device's rows from where the last poll stopped up to the device's ``committed``
attribute, and appends them to bounded, display-ready buffers:

- input, target, every readout's prediction and the features of at most ``max_units``
  evenly spaced units, each as a :class:`Series`: the last ``window_rows`` rows at full
  resolution and a bin-averaged picture of the whole run (:class:`Trace`);
- spike (or any event) streams that name their time and channel columns
  (:class:`~labbench.reservoir.RawStreamSpec`): recent events for the raster, a channel
  subset of every event for the whole-run raster, and the population rate per row;
- each readout's metric history, re-read when its ``evaluations`` attribute moves;
- image-like raw streams (a column whose cells are 2-D, e.g. a camera's frames): nothing is
  buffered; :meth:`StoreFollower.frame_at` reads the one frame shown, up to the committed
  blocks (:class:`ImageStream`);
- motor drives (a driver whose ``describe`` maps inputs to motors, e.g. the bucket): the duty
  each motor was given per row, from the stored inputs (:class:`MotorMap`);
- a closed loop's per-block record: at most ``capacity`` blocks (older ones thinned).

The reader opens the store read-only and never takes a lock, so it cannot slow or block
the writer beyond the disk reads it makes. A poll reads at most ``max_rows_per_poll``
rows per device, so opening a long finished run fills the window over several polls
rather than freezing it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
import zarr.api.asynchronous
from zarr.core.sync import sync as zarr_sync

from ..engine.memory import keep_large_arrays_mapped
from ..store import StoreError

#: most bytes of features one read of a poll takes (a poll reads several such slices)
_SLICE_BYTES = 16 << 20
#: column names used for rasters of raw streams written before streams named their columns
_TIME_NAMES = ("time", "t", "step")
_CHANNEL_NAMES = ("channel", "neuron", "electrode", "unit", "pixel")


class Trace:
    """A growing 1-D or 2-D series along time that halves its resolution when full.

    Rows are appended; once more than ``capacity`` are held, every pair of rows is
    averaged into one and later rows are averaged in groups of ``stride`` (which doubles
    each time), so memory stays bounded however long the run gets and the picture keeps
    every part of the run.

    Parameters
    ----------
    capacity : int
        Most rows held.
    width : int or None
        Columns per row (None for a 1-D series).
    """

    def __init__(self, capacity: int, width: int | None = None, dtype: Any = np.float64) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        self.capacity = int(capacity)
        self.width = width
        shape = (self.capacity,) if width is None else (self.capacity, width)
        self._data = np.full(shape, np.nan, dtype=dtype)
        self._x = np.zeros(self.capacity)
        self._n = 0
        self.stride = 1
        self._pending: list[np.ndarray] = []   # rows not yet forming a whole bin of `stride`
        self._pending_x: list[np.ndarray] = []

    def __len__(self) -> int:
        return self._n

    @property
    def x(self) -> np.ndarray:
        """Time of each held row (the mean time of its bin)."""
        return self._x[: self._n]

    @property
    def data(self) -> np.ndarray:
        return self._data[: self._n]

    def append(self, x: np.ndarray, rows: np.ndarray) -> None:
        """Append ``rows`` (shape (k,) or (k, width)) taken at times ``x`` (shape (k,))."""
        if len(rows) == 0:
            return
        x = np.asarray(x, dtype=np.float64)
        rows = np.asarray(rows)
        if self._pending:   # raw rows that did not fill a bin last time
            x = np.concatenate(self._pending_x + [x])
            rows = np.concatenate(self._pending + [rows])
        while True:
            whole = (len(rows) // self.stride) * self.stride
            bx, brows = _bin_mean(x[:whole], self.stride), _bin_mean(rows[:whole], self.stride)
            room = self.capacity - self._n
            take = min(room, len(brows))
            self._data[self._n:self._n + take] = brows[:take]
            self._x[self._n:self._n + take] = bx[:take]
            self._n += take
            used = take * self.stride
            x, rows = x[used:], rows[used:]
            if take == len(brows):
                break
            back_x, back = self._halve()   # full: halve, and bin what is left at the new stride
            x, rows = np.concatenate([back_x, x]), np.concatenate([back, rows])
        self._pending, self._pending_x = ([rows], [x]) if len(rows) else ([], [])

    def _halve(self) -> tuple[np.ndarray, np.ndarray]:
        """Average pairs of held rows and double the stride. An odd last row cannot pair: it
        is handed back as ``stride`` raw rows of its value (its mean is kept) to be binned again."""
        back_x, back = self._x[:0], self._data[:0]
        if self._n % 2:
            self._n -= 1
            back_x = np.repeat(self._x[self._n:self._n + 1], self.stride)
            back = np.repeat(self._data[self._n:self._n + 1], self.stride, axis=0)
        half = self._n // 2
        self._data[:half] = _bin_mean(self._data[:self._n], 2)
        self._x[:half] = _bin_mean(self._x[:self._n], 2)
        self._data[half:] = np.nan
        self._n = half
        self.stride *= 2
        return back_x, back


def _bin_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Means of consecutive groups of ``k`` rows (len(a) must be a multiple of k)."""
    if k == 1:
        return np.asarray(a, dtype=np.float64) if a.dtype.kind != "f" else a
    with np.errstate(invalid="ignore"):
        shaped = a.reshape(len(a) // k, k, *a.shape[1:])
        if np.issubdtype(a.dtype, np.floating) and np.isnan(shaped).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN bins stay NaN
                return np.nanmean(shaped, axis=1)
        return shaped.mean(axis=1)


class Recent:
    """The last ``capacity`` rows of a series at full resolution (a ring)."""

    def __init__(self, capacity: int, width: int | None = None, dtype: Any = np.float32) -> None:
        self.capacity = int(capacity)
        shape = (self.capacity,) if width is None else (self.capacity, width)
        self._data = np.full(shape, np.nan, dtype=dtype)
        self._x = np.full(self.capacity, np.nan)
        self._end = 0     # rows ever appended

    def append(self, x: np.ndarray, rows: np.ndarray) -> None:
        if len(rows) > self.capacity:
            x, rows = x[-self.capacity:], rows[-self.capacity:]
        k = len(rows)
        idx = (self._end + np.arange(k)) % self.capacity
        self._data[idx] = rows
        self._x[idx] = x
        self._end += k
        self._cache = None

    @property
    def x(self) -> np.ndarray:
        return self._ordered()[0]

    @property
    def data(self) -> np.ndarray:
        return self._ordered()[1]

    _cache: tuple[np.ndarray, np.ndarray] | None = None

    def _ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """Oldest first (computed once per append, however many panels ask)."""
        if self._cache is None:
            n = min(self._end, self.capacity)
            start = (self._end - n) % self.capacity
            self._cache = (np.roll(self._x, -start)[:n], np.roll(self._data, -start, axis=0)[:n])
        return self._cache


class Series:
    """A time series kept two ways: the last ``recent`` rows at full resolution, and the
    whole run bin-averaged into at most ``capacity`` rows. :meth:`between` hands a panel
    only what it will draw, so a frame's cost does not grow with the run.

    Parameters
    ----------
    recent : int
        Rows kept at full resolution (the longest "last N" view).
    capacity : int
        Rows kept for the whole run (a few times the width of a screen).
    width : int or None
        Columns (None for a 1-D series).
    """

    def __init__(self, recent: int, capacity: int, width: int | None = None, dtype: Any = np.float32) -> None:
        self.recent = Recent(recent, width, dtype)
        self.all = Trace(capacity, width, dtype)
        self.rows = 0

    def __len__(self) -> int:
        return self.rows

    def append(self, x: np.ndarray, rows: np.ndarray) -> None:
        self.recent.append(x, rows)
        self.all.append(x, rows)
        self.rows += len(rows)

    def between(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        """Times and rows in ``[lo, hi]``: full resolution when the recent rows cover ``lo``,
        the whole-run picture otherwise."""
        x = self.recent.x
        if len(x) and (x[0] <= lo or len(x) == self.rows):
            data = self.recent.data
        else:
            x, data = self.all.x, self.all.data
        a, b = np.searchsorted(x, lo, side="left"), np.searchsorted(x, hi, side="right")
        return x[max(a - 1, 0):b + 1], data[max(a - 1, 0):b + 1]   # one row beyond each end: lines reach the edges

    @property
    def last(self) -> np.ndarray:
        """The newest rows at full resolution (the ring, oldest first)."""
        return self.recent.data


@dataclass
class SpikeBuffer:
    """One event stream (spikes of neurons, electrodes): recent events, a whole-run
    subset and the population rate per row."""

    name: str
    n_channels: int
    time_scale: float              # seconds per unit of the time column
    time_label: str                # "s", or the column's own unit for old stores
    recent_seconds: float
    max_events: int
    channel_step: int = 1          # the whole-run raster keeps channels c % channel_step == 0
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    all_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    all_ch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    columns: tuple[str, str] = ("time", "channel")   # the stream's time and channel columns
    rate: Series | None = None     # mean rate per channel (Hz) per row
    position: int = 0              # events read so far

    def add(self, t: np.ndarray, ch: np.ndarray, end_time: float) -> None:
        """Append events at times ``t`` (s) on channels ``ch``; the run has reached ``end_time``."""
        cut = end_time - self.recent_seconds
        old, fresh = self.t >= cut, t >= cut
        self.t = np.concatenate([self.t[old], t[fresh]])[-self.max_events:]
        self.ch = np.concatenate([self.ch[old], ch[fresh]])[-self.max_events:]
        sub = ch % self.channel_step == 0
        self.all_t = np.concatenate([self.all_t, t[sub]])
        self.all_ch = np.concatenate([self.all_ch, ch[sub]])
        while len(self.all_t) > self.max_events:   # too many: keep every other channel
            self.channel_step *= 2
            sub = self.all_ch % self.channel_step == 0
            self.all_t, self.all_ch = self.all_t[sub], self.all_ch[sub]


@dataclass(frozen=True)
class ImageStream:
    """A raw stream column whose cells are 2-D images (a camera's frames), from its
    :class:`~labbench.reservoir.RawStreamSpec` (``shapes``, ``dims``)."""

    stream: str
    column: str
    shape: tuple[int, int]           # (rows, columns) of one image, pixels
    dims: tuple[str, str] = ("y", "x")
    dtype: str = "uint8"

    @property
    def key(self) -> str:
        return f"{self.stream}/{self.column}"


@dataclass(frozen=True)
class Frame:
    """One image of an :class:`ImageStream`: its index in the stream, the time of its row and
    the pixels (a copy, as stored)."""

    index: int
    time: float
    image: np.ndarray


@dataclass(frozen=True)
class MotorMap:
    """How a device's inputs drive its motors (from its ``describe``: ``motor_of_input``,
    ``duty_ceiling``, ``params.motors.n_motors``, ``params.max_duty``): the duty of motor
    ``motor_of_input[i]`` is input ``i`` clipped to ``[0, ceiling]``; other motors stay off."""

    n_motors: int
    motor_of_input: tuple[int, ...]
    ceiling: float

    def duty(self, inputs: np.ndarray) -> np.ndarray:
        """Duty ``(T, n_motors)`` in [0, ceiling] of the inputs ``(T, n_inputs)``."""
        u = np.nan_to_num(np.asarray(inputs, dtype=np.float64), nan=0.0)
        d = np.zeros((len(u), self.n_motors))
        k = min(len(self.motor_of_input), u.shape[1] if u.ndim == 2 else 0)
        d[:, list(self.motor_of_input[:k])] = u[:, :k]
        return np.clip(d, 0.0, self.ceiling)

    @classmethod
    def from_describe(cls, describe: dict[str, Any] | None, n_inputs: int) -> MotorMap | None:
        """The map a driver's ``describe`` gives, or None for a device without motors."""
        d = describe or {}
        if "motor_of_input" not in d:
            return None
        params = d.get("params") or {}
        mapping = tuple(int(m) for m in d["motor_of_input"])
        n = int((params.get("motors") or {}).get("n_motors") or (max(mapping, default=-1) + 1) or n_inputs)
        ceiling = min(float(d.get("duty_ceiling", 1.0)), float(params.get("max_duty", 1.0)))
        return cls(n, mapping, ceiling)


def image_streams(spec: dict[str, Any]) -> list[ImageStream]:
    """The columns of a device's raw streams whose cells are 2-D (from the stored spec)."""
    out = []
    for stream, s in (spec.get("raw") or {}).items():
        for col, shape in (s.get("shapes") or {}).items():
            if len(shape) == 2:
                dims = tuple((s.get("dims") or {}).get(col) or ("y", "x"))
                out.append(ImageStream(stream, col, (int(shape[0]), int(shape[1])), dims,
                                       str((s.get("columns") or {}).get(col, "uint8"))))
    return out


@dataclass
class ReadoutView:
    """A readout's predictions (from its trainer's ``consumed`` rows) and metric history."""

    name: str
    attrs: dict[str, Any]
    predictions: Series
    position: int = 0
    evaluations: int = -1
    history: dict[str, np.ndarray] = field(default_factory=dict)
    history_read: float = -math.inf


class DeviceFollower:
    """Display buffers of one device group, filled by :meth:`StoreFollower.poll`."""

    def __init__(self, name: str, attrs: dict[str, Any], *, max_units: int, window_rows: int,
                 capacity: int, max_events: int, recent_seconds: float) -> None:
        spec = attrs.get("spec") or {}
        self.name = name
        self.attrs = attrs
        self.driver = str(attrs.get("driver", "?"))
        self.n_inputs = int(spec.get("n_inputs", 1))
        self.n_features = int(spec.get("n_features", 0))
        self.dt = float(spec.get("dt", 1.0))
        self.realtime = bool(spec.get("realtime", False))
        self.feature_name = str(spec.get("feature_name", "unit"))
        #: "s" for devices with a time step, "step" for software reservoirs with none (dt = 1)
        self.time_unit = "s" if (self.realtime or self.dt != 1.0) else "step"
        step = max(1, math.ceil(self.n_features / max_units)) if self.n_features else 1
        #: the feature columns shown (every ``step``-th unit)
        self.units = np.arange(0, self.n_features, step)
        self.unit_step = step
        self.position = 0
        self.committed = 0
        self.expected_rows = attrs.get("expected_rows")
        self.capacity = capacity
        self.window_rows = window_rows
        self.inputs = self.series(self.n_inputs)
        self.targets: Series | None = None
        self.features = Series(window_rows, min(capacity, 4096), len(self.units))
        self.readouts: dict[str, ReadoutView] = {}
        self.spikes: dict[str, SpikeBuffer] = {}
        #: closed-loop runs: the loop's per-block record (raw stream ``loop``), one row per block
        self.closed_loop = bool(attrs.get("closed_loop", False))
        self.loop: dict[str, np.ndarray] = {}
        self.loop_position = 0
        for stream, s in (spec.get("raw") or {}).items():
            buf = _spike_buffer(stream, s, self, max_events, recent_seconds)
            if buf is not None:
                self.spikes[stream] = buf
        #: image-like raw stream columns, by ``stream/column`` (read a frame at a time: frame_at)
        self.images: dict[str, ImageStream] = {im.key: im for im in image_streams(spec)}
        #: the motors the inputs drive, and their duty per row (None: the device has no motors)
        self.motors = MotorMap.from_describe(attrs.get("describe"), self.n_inputs)
        self.duty = self.series(self.motors.n_motors) if self.motors is not None else None

    def series(self, width: int | None) -> Series:
        """A new line series of this device's sizes."""
        return Series(self.window_rows, self.capacity, width)

    @property
    def end_time(self) -> float:
        return self.position * self.dt

    def times(self, start: int, stop: int) -> np.ndarray:
        return np.arange(start, stop) * self.dt


def _spike_buffer(stream: str, s: dict[str, Any], dev: DeviceFollower, max_events: int,
                  recent_seconds: float) -> SpikeBuffer | None:
    """A buffer for a raw stream that has a time and a channel column, else None."""
    cols = list((s.get("columns") or {}).keys())
    tcol = s.get("time_column") or next((c for c in _TIME_NAMES if c in cols), None)
    ccol = s.get("channel_column") or next((c for c in _CHANNEL_NAMES if c in cols), None)
    if tcol is None or ccol is None:
        return None
    if s.get("time_column"):
        scale, label = float(s.get("time_scale", 1.0)), dev.time_unit
    elif tcol == "step":   # an older store: steps of unknown length, estimated from the run
        scale, label = float("nan"), dev.time_unit
    else:
        scale, label = 1.0, dev.time_unit
    buf = SpikeBuffer(stream, int(s.get("n_channels") or dev.n_features or 1), scale, label, recent_seconds,
                      max_events, columns=(tcol, ccol))
    buf.rate = dev.series(None)
    return buf


@dataclass
class Poll:
    """What one :meth:`StoreFollower.poll` found."""

    new_rows: dict[str, int]
    status: str
    seconds: float

    @property
    def changed(self) -> bool:
        return any(self.new_rows.values())


class StoreFollower:
    """Follow a run store, finished or still being written, for display.

    Parameters
    ----------
    path : path
        A run store (``runs/<run>.zarr``).
    max_units : int
        Feature columns kept per device (evenly spaced units).
    window_rows : int
        Rows kept at full resolution, for the "last N" views.
    capacity : int
        Rows kept of each line for the whole run (bin-averaged beyond; a few screens wide).
    max_events : int
        Events kept per spike stream for the whole-run raster (channels thinned beyond).
    recent_seconds : float or None
        Events kept at full density for the recent raster (default: ``window_rows`` rows).
    max_rows_per_poll : int
        Rows read per device per poll.

    Raises
    ------
    StoreError
        With a one-line message, when ``path`` is missing or is not a labbench run.
    """

    def __init__(self, path: str | Path, *, max_units: int = 128, window_rows: int = 10_000,
                 capacity: int = 8192, max_events: int = 500_000, recent_seconds: float | None = None,
                 max_rows_per_poll: int = 50_000) -> None:
        self.path = Path(path)
        self.max_units = max_units
        self.window_rows = window_rows
        self.capacity = capacity
        self.max_events = max_events
        self.recent_seconds = recent_seconds
        self.max_rows_per_poll = max_rows_per_poll
        #: a running readout's metric history is re-read at most this often
        self.history_every_s = 1.0
        self.devices: dict[str, DeviceFollower] = {}
        self.attrs: dict[str, Any] = {}
        self.polls = 0
        self.poll_seconds = 0.0
        self._frames: dict[tuple[str, str], Frame] = {}   # the image read last, per stream
        keep_large_arrays_mapped()   # slices of features do not fragment the heap (engine/memory.py)
        self._open()

    # -- store ----------------------------------------------------------------------------
    def _open(self) -> zarr.Group:
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such run store")
        try:
            root = zarr.open_group(str(self.path), mode="r")
        except Exception as exc:
            raise StoreError(f"{self.path}: not a Zarr v3 store ({type(exc).__name__})") from None
        kind = root.attrs.get("kind")
        if kind == "labbench.sweep":
            raise StoreError(f"{self.path}: a sweep store; the monitor follows run stores "
                             f"(see `labbench show {self.path}`)")
        if kind != "labbench.run":
            raise StoreError(f"{self.path}: a Zarr group, but not a labbench run (no kind='labbench.run')")
        return root

    @property
    def status(self) -> str:
        return str(self.attrs.get("status", "?"))

    @property
    def error(self) -> str | None:
        return self.attrs.get("error")

    def header(self) -> dict[str, Any]:
        """Provenance and progress for the monitor's header line."""
        a = self.attrs
        devs = {name: {"driver": d.driver, "committed": d.committed, "expected_rows": d.expected_rows,
                       "time_unit": d.time_unit, "dt": d.dt}
                for name, d in self.devices.items()}
        return {"protocol": a.get("protocol_name"), "status": self.status, "error": self.error,
                "seed": a.get("seed"), "host": a.get("host"), "started": a.get("started"),
                "ended": a.get("ended"), "store": self.path.name, "devices": devs,
                "writer_dead": self._writer_dead()}

    def _writer_dead(self) -> bool:
        if self.status != "running":
            return False
        from ..store import writer_is_dead

        return writer_is_dead(self.attrs)

    # -- polling --------------------------------------------------------------------------
    def poll(self) -> Poll:
        """Read what the writer committed since the last poll; cheap when nothing changed.

        The attributes that say how far things are (``committed``, ``consumed``,
        ``evaluations``, the status) are read straight from each group's ``zarr.json``, the
        Zarr v3 metadata document, a small file the writer replaces atomically. Zarr opens
        arrays only when there are rows to read, so an idle poll costs a few file reads.
        """
        t0 = time.perf_counter()
        attrs = _group_attrs(self.path)
        if attrs is None:
            self._open()   # raises the StoreError that says what is wrong
            attrs = dict(self._open().attrs)
        self.attrs = attrs
        new: dict[str, int] = {}
        for name in _subgroups(self.path):
            attrs = _group_attrs(self.path / name) or {}
            dev = self.devices.get(name)
            if dev is None:
                dev = self.devices[name] = DeviceFollower(
                    name, attrs, max_units=self.max_units, window_rows=self.window_rows, capacity=self.capacity,
                    max_events=self.max_events,
                    recent_seconds=self.recent_seconds or self.window_rows * float(
                        (attrs.get("spec") or {}).get("dt", 1.0)))
            dev.attrs = attrs
            dev.committed = int(attrs.get("committed", 0))
            dev.expected_rows = attrs.get("expected_rows")
            new[name] = self._read_device(name, dev)
            self._read_readouts(name, dev)
        self.polls += 1
        seconds = time.perf_counter() - t0
        self.poll_seconds += seconds
        return Poll(new, self.status, seconds)

    def caught_up(self) -> bool:
        """Whether every device has been read up to its ``committed`` row."""
        return all(d.position >= d.committed for d in self.devices.values())

    def _group(self, *parts: str) -> zarr.Group:
        return zarr.open_group(str(self.path.joinpath(*parts)), mode="r")

    def _read_device(self, name: str, dev: DeviceFollower) -> int:
        """Rows up to ``max_rows_per_poll`` past the last read, in slices of a few store blocks
        (at most ``_SLICE_BYTES`` of features), so that memory does not depend on how far
        behind the follower is (e.g. opening a long finished run)."""
        a = dev.position
        b = min(dev.committed, a + self.max_rows_per_poll)
        if b <= a:
            return 0
        chunk = max(int(dev.attrs.get("chunk_rows") or 1), 1)
        row_bytes = max(dev.n_features, 1) * 8
        step = max(chunk, _SLICE_BYTES // row_bytes // chunk * chunk)
        for lo in range(a, b, step):
            self._read_rows(name, dev, lo, min(lo + step, b))
        return b - a

    def _read_rows(self, name: str, dev: DeviceFollower, a: int, b: int) -> None:
        x = dev.times(a, b)
        inputs, targets, feats = _read_arrays(self.path / name, {
            "inputs": (slice(a, b),), "targets": (slice(a, b),),
            "features": (slice(a, b), slice(None, None, dev.unit_step))})
        dev.inputs.append(x, np.asarray(inputs, dtype=np.float64))
        if dev.motors is not None:
            dev.duty.append(x, dev.motors.duty(inputs))
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim == 2 and targets.shape[1]:
            if dev.targets is None:
                dev.targets = dev.series(targets.shape[1])
            dev.targets.append(x, targets)
        dev.features.append(x, np.asarray(feats, dtype=np.float32)[:, : len(dev.units)])
        if dev.spikes:
            g = self._group(name)
            for buf in dev.spikes.values():
                self._read_spikes(g, dev, buf, a, b)
        if dev.closed_loop:
            self._read_loop(name, dev)
        dev.position = b

    def frame_count(self, device: str, key: str) -> int:
        """Images of the stream ``key`` (``stream/column``) in the device's committed blocks."""
        dev = self.devices[device]
        offsets = self.path / device / "raw" / dev.images[key].stream / "offsets"
        if not (offsets / "zarr.json").exists():
            return 0
        arr = zarr.open_array(str(offsets), mode="r")
        n = min(int(dev.attrs.get("blocks", 0)), arr.shape[0])
        return int(arr[n - 1]) if n else 0

    def frame_at(self, device: str, key: str, t: float) -> Frame | None:
        """The image of stream ``key`` of ``device`` at time ``t`` (s, or steps): the row
        ``floor(t / dt)``, clipped to the committed frames (the latest one for ``t`` at or past
        the end). One image is read from the store, and none when it is the one read last.
        Streams with one image per row map rows to images one to one; others proportionally.
        None before the first block with images is committed."""
        dev = self.devices[device]
        n = self.frame_count(device, key)
        if n == 0:
            return None
        row = math.floor(t / dev.dt + 1e-9) if math.isfinite(t) else dev.committed - 1
        rows = max(dev.committed, 1)
        k = row if n == rows else int(row * n / rows)
        k = min(max(k, 0), n - 1)
        cached = self._frames.get((device, key))
        if cached is not None and cached.index == k:
            return cached
        im = dev.images[key]
        arr = zarr.open_array(str(self.path / device / "raw" / im.stream / im.column), mode="r")
        frame = Frame(k, (k if n == rows else k * rows / n) * dev.dt, np.asarray(arr[k]))
        self._frames[(device, key)] = frame
        return frame

    def _read_loop(self, name: str, dev: DeviceFollower) -> None:
        """New rows of the closed loop's record (one per device block), up to the committed blocks."""
        if not (self.path / name / "raw" / "loop" / "zarr.json").exists():
            return
        rg = self._group(name, "raw", "loop")
        offsets = rg["offsets"]
        n = min(int(dev.attrs.get("blocks", 0)), offsets.shape[0])
        end = int(offsets[n - 1]) if n else 0
        if end <= dev.loop_position:
            return
        with warnings.catch_warnings():   # the writer's temporary files (*.partial) are not arrays
            warnings.filterwarnings("ignore", message=r".*\.partial is not recognized")
            arrays = [(col, arr) for col, arr in rg.arrays() if col != "offsets"]
        new = {col: np.asarray(arr[dev.loop_position:end], dtype=np.float64) for col, arr in arrays}
        dev.loop = _thin_loop({col: np.concatenate([dev.loop[col], v]) if col in dev.loop else v
                               for col, v in new.items()}, self.capacity)
        dev.loop_position = end

    def _read_spikes(self, g: zarr.Group, dev: DeviceFollower, buf: SpikeBuffer, a: int, b: int) -> None:
        """Events of the blocks committed up to row ``b``; binned per row into the rate."""
        path = f"raw/{buf.name}"
        if path not in g:
            buf.rate.append(dev.times(a, b), np.zeros(b - a))
            return
        rg = g[path]
        blocks = int(g.attrs.get("blocks", 0))
        offsets = rg["offsets"]
        n_blocks = min(blocks, offsets.shape[0])
        end = int(offsets[n_blocks - 1]) if n_blocks else 0
        if b < dev.committed:   # a partial catch-up read: stop at the events of row b
            end = buf.position + _events_before(rg, buf, dev, b, end)
        tcol, ccol = buf.columns
        t = np.asarray(rg[tcol][buf.position:end], dtype=np.float64)
        ch = np.asarray(rg[ccol][buf.position:end], dtype=np.int32)
        buf.position = end
        if math.isnan(buf.time_scale):   # unknown step length: spread each row's steps evenly
            buf.time_scale = _guess_scale(t, dev, b)
        ts = t * buf.time_scale
        # the row an event falls in (1e-9: a step at a row's boundary is not pushed back by rounding)
        rows = np.clip(np.floor(ts / dev.dt + 1e-9).astype(np.int64) - a, 0, b - a - 1)
        counts = np.bincount(rows, minlength=b - a)[: b - a]
        buf.rate.append(dev.times(a, b), counts / (max(buf.n_channels, 1) * dev.dt))
        buf.add(ts, ch, b * dev.dt)

    def _read_readouts(self, device: str, dev: DeviceFollower) -> None:
        """New predictions (up to the trainer's ``consumed`` and the device's rows read) and,
        when ``evaluations`` moved, the metric history."""
        for name in _subgroups(self.path / device / "readouts"):
            attrs = _group_attrs(self.path / device / "readouts" / name) or {}
            view = dev.readouts.get(name)
            if view is None:
                if not (self.path / device / "readouts" / name / "predictions" / "zarr.json").exists():
                    continue   # its trainer is creating the group right now
                shape = self._group(device, "readouts", name)["predictions"].shape
                view = dev.readouts[name] = ReadoutView(name, attrs, dev.series(shape[1] if len(shape) > 1 else 1))
            view.attrs = attrs
            consumed = min(int(attrs.get("consumed", 0)), dev.position)
            evaluations = int(attrs.get("evaluations", 0))
            history_due = evaluations != view.evaluations and (
                time.monotonic() - view.history_read >= self.history_every_s or attrs.get("status") != "running")
            if consumed <= view.position and not history_due:
                continue
            rg = self._group(device, "readouts", name)
            if consumed > view.position:
                pred = rg["predictions"]
                a, b = view.position, min(consumed, pred.shape[0])
                view.predictions.append(dev.times(a, b), np.asarray(pred[a:b], dtype=np.float64))
                view.position = b
            if history_due:
                cols = list(attrs.get("history_columns", []))
                hist = self.path / device / "readouts" / name / "history"
                if not all((hist / c / "zarr.json").exists() for c in cols):
                    continue   # its trainer is creating the history arrays right now: next poll
                try:
                    values = _read_arrays(hist, {c: (slice(0, evaluations),) for c in cols}) if cols else []
                except FileNotFoundError:
                    continue   # the readout is being re-created (a resumed run): next poll
                view.history = {c: np.asarray(v) for c, v in zip(cols, values)}
                view.evaluations = evaluations
                view.history_read = time.monotonic()


def _thin_loop(loop: dict[str, np.ndarray], capacity: int) -> dict[str, np.ndarray]:
    """The loop record kept within ``capacity`` rows: past it, the newest ``capacity // 2``
    blocks stay whole and every other older block is dropped (older stretches thin out more
    each time; every part of the run keeps some blocks)."""
    n = len(next(iter(loop.values()), ()))
    if n <= capacity:
        return loop
    keep = np.r_[np.arange(0, n - capacity // 2, 2), np.arange(n - capacity // 2, n)]
    return {col: v[keep] for col, v in loop.items()}


def _read_arrays(group: Path, selections: dict[str, tuple]) -> list[np.ndarray]:
    """Read several arrays of one group at once: opened and read concurrently through
    Zarr's asynchronous API, in one round trip to Zarr's I/O loop instead of two per array."""
    async def read() -> list[np.ndarray]:
        arrays = await asyncio.gather(*(zarr.api.asynchronous.open_array(store=str(group / name), mode="r")
                                        for name in selections))
        return list(await asyncio.gather(*(arr.getitem(sel) for arr, sel in zip(arrays, selections.values()))))

    return zarr_sync(read())


def _group_attrs(path: Path) -> dict[str, Any] | None:
    """The attributes of the Zarr v3 group at ``path``, read from its ``zarr.json``
    (None when there is no group there)."""
    try:
        meta = json.loads((path / "zarr.json").read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    return dict(meta.get("attributes") or {})


def _subgroups(path: Path) -> list[str]:
    """Names of the Zarr groups directly under ``path``, sorted."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return []
    out = []
    for e in entries:
        if e.is_dir() and _group_attrs(Path(e.path)) is not None:
            out.append(e.name)
    return sorted(out)


def _events_before(rg: zarr.Group, buf: SpikeBuffer, dev: DeviceFollower, row: int, end: int) -> int:
    """How many of the events from ``buf.position`` to ``end`` fall before ``row``."""
    tcol = buf.columns[0]
    t = np.asarray(rg[tcol][buf.position:end], dtype=np.float64)
    scale = buf.time_scale if not math.isnan(buf.time_scale) else _guess_scale(t, dev, dev.committed)
    return int(np.searchsorted(t * scale, row * dev.dt, side="left"))


def _guess_scale(t: np.ndarray, dev: DeviceFollower, rows: int) -> float:
    """Seconds per step for a stream that does not say: the run's last step over its length."""
    if len(t) == 0 or rows == 0:
        return dev.dt
    last = float(t.max())
    return dev.dt * rows / max(last + 1.0, 1.0)


def run_task(store: str | os.PathLike[str], name: str) -> dict[str, Any] | None:
    """The run's ``[task]`` table (from its stored protocol) when the task is ``name``, else None."""
    task = ((_group_attrs(Path(store)) or {}).get("protocol") or {}).get("task") or {}
    return dict(task) if task.get("name") == name else None


def raw_committed_rows(path: str | Path, device: str, stream: str) -> int:
    """Rows of the raw stream ``stream`` of ``device`` in its committed blocks (the offset of
    the last committed block; 0 before the first one, or when the device has no such stream)."""
    path = Path(path)
    offsets = path / device / "raw" / stream / "offsets"
    if not (offsets / "zarr.json").exists():
        return 0
    blocks = int((_group_attrs(path / device) or {}).get("blocks", 0))
    arr = zarr.open_array(str(offsets), mode="r")
    n = min(blocks, arr.shape[0])
    return int(arr[n - 1]) if n else 0


def read_raw_rows(path: str | Path, device: str, stream: str, columns: list[str], start: int,
                  stop: int | None = None) -> dict[str, np.ndarray]:
    """Rows ``start`` to ``stop`` of the columns of a raw stream, never past its committed
    blocks (``stop=None``: up to the end of them). All columns are read concurrently, in one
    round trip to Zarr's I/O loop.

    Parameters
    ----------
    path : path
        The run store.
    device, stream : str
        The device group and its raw stream (``<device>/raw/<stream>``).
    columns : list of str
        The columns read.
    start, stop : int
        Row range of the stream (events, spikes), clipped to ``[0, committed rows]``.

    Returns
    -------
    dict of column name to ndarray (each of the same length, possibly 0).
    """
    end = raw_committed_rows(path, device, stream)
    stop = end if stop is None else min(int(stop), end)
    start = max(0, min(int(start), stop))
    if stop <= start:
        group = Path(path) / device / "raw" / stream
        return {c: np.zeros(0, dtype=_array_dtype(group / c)) for c in columns}
    values = _read_arrays(Path(path) / device / "raw" / stream, {c: (slice(start, stop),) for c in columns})
    return {c: np.asarray(v) for c, v in zip(columns, values)}


def _array_dtype(path: Path) -> np.dtype:
    """The data type of the Zarr v3 array at ``path`` (float64 when it cannot be read)."""
    try:
        meta = json.loads((path / "zarr.json").read_bytes())
        return np.dtype(str(meta.get("data_type")))
    except (OSError, ValueError, TypeError):
        return np.dtype(np.float64)
