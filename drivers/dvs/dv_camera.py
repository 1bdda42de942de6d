"""The live event path through iniVation's ``dv-processing``: a USB camera or a DV network stream.

Both sources are read by the same loop: ``getNextEventBatch()`` in sequence, each batch (a
``dv.EventStore``) optionally through ``dv-processing``'s background-activity noise filter,
converted to an :data:`~.events.EVENT_DTYPE` array and cut by time into per-block slices
(:meth:`CameraSource.read_until`).

- :func:`open_camera` opens a camera with ``dv.io.camera.open()`` after checking
  ``dv.io.camera.discover()`` (with no camera, ``open()`` itself raises a bare IndexError) and
  applies the biases of :func:`apply_biases`.
- :class:`NetworkSource` reads a DV network event stream (``dv.io.NetworkReader``): what DV's
  "Network server" output module serves, and what :func:`serve_events` serves from an event
  array, so the live path runs in CI without a camera.

Times: a live source's blocks are relative to its first event's timestamp,
:attr:`CameraSource.t0_us` (absolute µs of the camera's clock). A block ending at ``t_us`` is
complete once an event at or after ``t_us`` has arrived (a camera's stream is ordered by time);
in a quiet scene it is returned once the wall clock is ``latency_s`` past the block's end, and
events arriving later than that go to the next block (counted in ``late_events``): every event
is returned exactly once.

Faults: no batch at all for ``silence_s``, or the stream closing (camera unplugged, server gone),
raise :class:`CameraDown` (``pending`` holds the events not yet returned).
"""

from __future__ import annotations

import datetime
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import numpy as np

from .events import EVENT_DTYPE, empty_events, make_events

__all__ = ["CameraDown", "CameraNotFound", "CameraSource", "EventServer", "NetworkSource", "apply_biases",
           "open_camera", "serve_events"]

NO_CAMERA = ("no iniVation camera found by dv-processing (dv.io.camera.discover() is empty): plug one in or use "
             "backend = 'sim'")


class CameraNotFound(RuntimeError):
    """``dv.io.camera.discover()`` found no camera (or none with the requested name)."""


class CameraDown(ConnectionError):
    """The event source went silent for ``silence_s``, or its stream closed (unplugged, server gone).

    ``pending`` holds the events received but not yet returned by ``read_until``."""

    def __init__(self, message: str, pending: np.ndarray | None = None) -> None:
        super().__init__(message)
        self.pending = empty_events() if pending is None else pending


class CameraSource:
    """Events from a ``dv-processing`` input (a camera or a network reader), in per-block slices.

    Made by :func:`open_camera` or :class:`NetworkSource`; not constructed directly.

    Attributes
    ----------
    name : str
        The camera name dv-processing reports (model and serial number).
    resolution : (int, int)
        ``(W, H)`` of the event stream.
    t0_us : int or None
        Absolute timestamp of the first event: time 0 of the slices (None before it arrived).
    late_events : int
        Events that arrived after their block had been returned (delivered in the next block).
    biases : dict
        The biases set on the camera (see :func:`apply_biases`).
    """

    def __init__(self, reader: Any, *, what: str, silence_s: float = 2.0, latency_s: float = 0.05,
                 noise_filter_us: int | None = None, poll_s: float = 0.001) -> None:
        if not silence_s > 0 or latency_s < 0:
            raise ValueError(f"silence_s={silence_s}, latency_s={latency_s}: expected silence_s > 0, latency_s >= 0")
        self._reader = reader
        self._what = what
        self.name: str = reader.getCameraName()
        res = reader.getEventResolution()
        if res is None:
            raise ValueError(f"{what}: the source has no event stream")
        self.resolution: tuple[int, int] = (int(res[0]), int(res[1]))
        self.silence_s, self.latency_s, self.poll_s = float(silence_s), float(latency_s), float(poll_s)
        self.noise_filter_us = noise_filter_us
        self._filter = None
        if noise_filter_us:
            import dv_processing as dv

            self._filter = dv.noise.BackgroundActivityNoiseFilter(
                self.resolution, backgroundActivityDuration=datetime.timedelta(microseconds=int(noise_filter_us)))
        self.biases: dict[str, Any] = {}
        self.t0_us: int | None = None
        self.late_events = 0
        self._wall0 = 0.0
        self._parts: list[np.ndarray] = [empty_events()]  # the rest of the last cut, then dv's arrays
        self._newest = -1  # newest relative timestamp received
        self._last = 0
        self._floor = 0  # the end of the last returned block: events arriving below it are late
        self._last_batch_wall: float | None = None
        self._ended = False

    def read_until(self, t_us: int) -> np.ndarray:
        """The events with ``t < t_us`` (relative to :attr:`t0_us`) not returned before.

        Blocks until the slice is complete (see the module's docstring).

        Raises
        ------
        CameraDown
            No batch for ``silence_s``, or the stream closed with nothing left to return.
        """
        t_us = int(t_us)
        if t_us < self._last:
            raise ValueError(f"t_us={t_us}: expected >= the previous call's {self._last} (time runs forward)")
        self._last = t_us
        now = time.perf_counter()
        if self._last_batch_wall is None:
            self._last_batch_wall = now
        while self._newest < t_us and not self._ended:
            batch = self._next_batch()
            now = time.perf_counter()
            if batch is not None:
                self._last_batch_wall = now
                self._take(batch, now)
                continue
            if now - self._last_batch_wall > self.silence_s:
                raise CameraDown(f"{self._what}: no events for {self.silence_s:g} s (silence_s)", self._pending())
            if self.t0_us is not None and now >= self._wall0 + t_us * 1e-6 + self.latency_s:
                break  # a quiet scene: the camera's clock has passed t_us
            time.sleep(self.poll_s)
        pending = self._pending()
        before = pending["t"] < t_us  # a mask, not a search: late events need not be in order
        out, rest = pending[before], pending[~before]
        self._parts = [rest]
        if self._ended and not len(out) and not len(rest):
            raise CameraDown(f"{self._what}: the event stream closed (camera unplugged or server gone)")
        self._floor = t_us
        return out

    def describe(self) -> dict[str, Any]:
        """What the source is, for a driver's ``describe()``."""
        return {"source": self._what, "camera": self.name, "resolution": list(self.resolution),
                "biases": dict(self.biases), "noise_filter_us": self.noise_filter_us, "silence_s": self.silence_s,
                "latency_s": self.latency_s}

    def close(self) -> None:
        """Disconnect (always safe)."""
        self._reader = None
        self._ended = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_batch(self) -> Any:
        if self._reader is None:
            raise CameraDown(f"{self._what}: the source is closed")
        try:
            batch = self._reader.getNextEventBatch()
            if batch is None and not self._reader.isRunning():
                self._ended = True
        except RuntimeError as exc:  # dv raises RuntimeError when the device or socket fails
            self._ended = True
            raise CameraDown(f"{self._what}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
                             self._pending()) from exc
        return batch

    def _take(self, batch: Any, now: float) -> None:
        """Keep a batch as dv's own array; it is converted at the next cut, once for many batches."""
        if self._filter is not None:
            self._filter.accept(batch)
            batch = self._filter.generateEvents()
        arr = batch.numpy()
        if not len(arr):
            return
        if self.t0_us is None:
            self.t0_us, self._wall0 = int(arr["timestamp"][0]), now
        ts = arr["timestamp"]
        self.late_events += int(np.count_nonzero(ts < self.t0_us + self._floor))
        self._newest = max(self._newest, int(ts[-1]) - self.t0_us)
        self._parts.append(arr)

    def _pending(self) -> np.ndarray:
        """Every event received and not returned, as EVENT_DTYPE (the first part already is)."""
        raw = self._parts[1:]
        if not raw:
            return self._parts[0] if self._parts else empty_events()
        arr = raw[0] if len(raw) == 1 else np.concatenate(raw)
        ev = make_events(arr["timestamp"] - self.t0_us, arr["x"], arr["y"], arr["polarity"] != 0)
        return np.concatenate([self._parts[0], ev]) if len(self._parts[0]) else ev


class NetworkSource(CameraSource):
    """Events of a DV network event stream (``dv.io.NetworkReader``), in per-block slices.

    Parameters
    ----------
    host : str
        The server's address.
    port : int
        Its TCP port.
    silence_s : float
        :class:`CameraDown` after this long without any batch.
    latency_s : float
        How long past a block's end a quiet stream is waited for.
    noise_filter_us : int or None
        Background-activity filter window (``dv.noise.BackgroundActivityNoiseFilter``): an event
        passes only if one of its 8 neighbours had an event within this many µs. None: off.
    connect_timeout_s : float
        How long to retry a refused connection.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 7777, *, silence_s: float = 2.0,
                 latency_s: float = 0.05, noise_filter_us: int | None = None, connect_timeout_s: float = 5.0) -> None:
        import dv_processing as dv

        what = f"DV network stream {host}:{port}"
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                reader = dv.io.NetworkReader(host, int(port))
                break
            except RuntimeError as exc:
                if time.monotonic() >= deadline:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise CameraDown(f"{what}: cannot connect within {connect_timeout_s:g} s ({first})") from exc
                time.sleep(0.05)
        super().__init__(reader, what=what, silence_s=silence_s, latency_s=latency_s,
                         noise_filter_us=noise_filter_us)


def open_camera(name: str | None = None, *, biases: dict[str, Any] | None = None,
                noise_filter_us: int | None = None, time_interval_us: int | None = None,
                silence_s: float = 2.0, latency_s: float = 0.05) -> CameraSource:
    """Open a live iniVation camera with ``dv-processing``.

    Parameters
    ----------
    name : str or None
        A serial number or dv's camera name (``"DVXplorer_DXA00093"``); None: the first camera.
    biases : dict or None
        Sensor settings, by camera family (see :func:`apply_biases`).
    noise_filter_us : int or None
        ``dv.noise.BackgroundActivityNoiseFilter`` window in µs (None: off).
    time_interval_us : int or None
        The camera's packet commit interval (``setTimeInterval``; dv's default 10 ms).
    silence_s, latency_s : float
        As for :class:`NetworkSource`.

    Raises
    ------
    CameraNotFound
        ``dv.io.camera.discover()`` is empty, or no camera has ``name``.
    """
    import dv_processing as dv

    found = dv.io.camera.discover()
    if not found:
        raise CameraNotFound(NO_CAMERA)
    if name is not None:
        names = {f"{d.cameraModel}_{d.serialNumber}": d for d in found} | {d.serialNumber: d for d in found}
        if name not in names:
            raise CameraNotFound(f"no iniVation camera named {name!r}; dv.io.camera.discover() found "
                                 f"{sorted(n for n in names if '_' in n)}")
        camera = dv.io.camera.open(names[name].serialNumber)
    else:
        camera = dv.io.camera.open()
    if time_interval_us:
        camera.setTimeInterval(datetime.timedelta(microseconds=int(time_interval_us)))
    applied = apply_biases(camera, biases or {})
    source = CameraSource(camera, what=f"camera {camera.getCameraName()}", silence_s=silence_s,
                          latency_s=latency_s, noise_filter_us=noise_filter_us)
    source.biases = applied
    return source


def apply_biases(camera: Any, biases: dict[str, Any]) -> dict[str, Any]:
    """Set a camera's biases by name; returns what was set.

    Which names exist depends on the camera family (dv-processing 2.0 setters):

    - DVXplorer: ``contrast_threshold_on``, ``contrast_threshold_off`` (int; ``setContrastThresholdOn/Off``).
    - DVS128: the bias registers ``CAS, INJGND, REQPD, PUX, DIFF_OFF, REQ, REFR, PUY, DIFF_ON, DIFF,
      FOLL, PR`` (int; ``setBias``).
    - DAVIS346 / DAVIS240: the coarse/fine biases of ``Davis346BiasCF`` / ``Davis240BiasCF``
      (``On``, ``Off``, ``Diff``, ``Photoreceptor``, ``Refractory``, ...; value ``(coarse, fine)``)
      and, on a DAVIS346, the voltages of ``Davis346BiasVDAC`` (int, 52.4 mV steps).
      ``background_activity_filter_250us`` (int) sets the DAVIS's on-board filter.

    Raises
    ------
    ValueError
        A name the camera does not have (the message lists those it has).
    """
    import dv_processing as dv

    cams = dv.io.camera
    setters: dict[str, Any] = {}
    if hasattr(camera, "setContrastThresholdOn"):
        setters = {"contrast_threshold_on": camera.setContrastThresholdOn,
                   "contrast_threshold_off": camera.setContrastThresholdOff}
    elif hasattr(camera, "setBias"):
        setters = {k: (lambda v, b=b: camera.setBias(b, int(v))) for k, b in cams.DVS128.Bias.__members__.items()}
    elif hasattr(camera, "getSensorModel"):
        model = camera.getSensorModel().name
        if model.startswith("DAVIS346"):
            setters = {k: (lambda v, b=b: camera.setDavis346BiasCoarseFine(b, int(v[0]), int(v[1])))
                       for k, b in cams.DAVIS.Davis346BiasCF.__members__.items()}
            setters |= {k: (lambda v, b=b: camera.setDavis346BiasVoltage(b, int(v)))
                        for k, b in cams.DAVIS.Davis346BiasVDAC.__members__.items()}
        elif model.startswith("DAVIS240"):
            setters = {k: (lambda v, b=b: camera.setDavis240BiasCoarseFine(b, int(v[0]), int(v[1])))
                       for k, b in cams.DAVIS.Davis240BiasCF.__members__.items()}
        setters["background_activity_filter_250us"] = lambda v: camera.setBackgroundActivityFilter(int(v))
    unknown = sorted(set(biases) - set(setters))
    if unknown:
        raise ValueError(f"biases {unknown}: not settable on camera {camera.getCameraName()}; it has "
                         f"{sorted(setters) or 'no bias setters known to labbench'}")
    for key, value in biases.items():
        setters[key](value)
    return dict(biases)


class EventServer:
    """A DV network event stream served from an event array by a child process (see :func:`serve_events`).

    Attributes
    ----------
    host, port : str, int
        Where it listens (loopback by default).
    pid : int
        The server process.
    """

    def __init__(self, events: np.ndarray, resolution: tuple[int, int], *, host: str = "127.0.0.1", port: int = 0,
                 camera_name: str = "labbench_sim", realtime: bool = False, speed: float = 1.0,
                 packet_us: int = 10_000, after: str = "hold", clients: int = 1, client_timeout_s: float = 30.0,
                 start_timeout_s: float = 60.0) -> None:
        import multiprocessing as mp

        from .aedat4 import write_aedat4

        if after not in ("hold", "close"):
            raise ValueError(f"after={after!r}: expected 'hold' (stay connected, silent) or 'close' (hang up)")
        if not speed > 0 or packet_us < 1:
            raise ValueError(f"speed={speed}, packet_us={packet_us}: expected speed > 0, packet_us >= 1")
        self.host = host
        self.port = int(port) or _free_port(host)
        self._dir = tempfile.TemporaryDirectory(prefix="labbench-dvserve-")
        recording = Path(self._dir.name) / "events.aedat4"
        write_aedat4(recording, events, resolution, camera_name=camera_name)
        ctx = mp.get_context("spawn")  # a fresh interpreter: never fork a process holding dv or Ray threads
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_serve, daemon=True, name="labbench-dv-server",
                                 args=(str(recording), host, self.port, camera_name, tuple(resolution), realtime,
                                       float(speed), int(packet_us), after, int(clients), float(client_timeout_s),
                                       child))
        self._proc.start()
        child.close()
        self.pid: int = self._proc.pid
        msg = self._recv(start_timeout_s)
        if msg[0] != "ready":
            self.close()
            raise OSError(f"event server on {host}:{self.port} did not start: {msg[1]}")
        self.sent = 0

    def wait_sent(self, timeout_s: float = 60.0) -> int:
        """Block until every event was handed to the network writer; returns their number."""
        msg = self._recv(timeout_s)
        if msg[0] != "sent":
            raise OSError(f"event server on {self.host}:{self.port}: {msg[1]}")
        self.sent = int(msg[1])
        return self.sent

    def unplug(self) -> None:
        """Kill the server at once (SIGKILL): a camera pulled out mid-stream."""
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join(10)

    def close(self) -> None:
        """Stop the server and remove its temporary recording (always safe)."""
        self.unplug()
        self._conn.close()
        self._dir.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, timeout_s: float) -> tuple:
        if not self._conn.poll(timeout_s):
            return ("error", f"no answer within {timeout_s:g} s (exit code {self._proc.exitcode})")
        try:
            return self._conn.recv()
        except EOFError:
            return ("error", f"the server process ended (exit code {self._proc.exitcode})")


def serve_events(events: np.ndarray, resolution: tuple[int, int], *, port: int = 0, host: str = "127.0.0.1",
                 **kwargs: Any) -> EventServer:
    """Serve an event array as a DV network event stream (``dv.io.NetworkWriter``) on loopback.

    The writer runs in a child process (dv-processing's ``NetworkWriter`` cannot be destroyed
    while a client is connected without hanging its process). It waits for ``clients``
    readers, then writes the events in packets of ``packet_us`` (paced to the wall clock at
    ``speed`` if ``realtime``), then stays connected and silent (``after="hold"``) or hangs up
    (``after="close"``).

    Parameters
    ----------
    events : ndarray of EVENT_DTYPE
        Sorted by ``t`` (µs, >= 0).
    resolution : (int, int)
        ``(W, H)`` announced in the stream definition.
    port : int
        0: a free port.
    host : str
        The address to bind: 127.0.0.1 unless you mean to publish the stream.
    **kwargs
        ``camera_name``, ``realtime``, ``speed``, ``packet_us``, ``after``, ``clients``,
        ``client_timeout_s`` (see :class:`EventServer`).
    """
    if events.dtype != EVENT_DTYPE:
        raise ValueError(f"events: dtype {events.dtype}, expected EVENT_DTYPE {EVENT_DTYPE}")
    return EventServer(events, resolution, host=host, port=port, **kwargs)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _unsent_bytes() -> int:
    """Bytes this process's TCP sockets have sent but the peers have not acknowledged (SIOCOUTQ)."""
    import fcntl
    import struct
    import termios

    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            total += struct.unpack("i", fcntl.ioctl(int(fd), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:  # closed meanwhile, or not a TCP socket
            continue
    return total


def _drain(writer: Any, quiet_s: float = 0.3) -> None:
    """Wait until the writer's queue is empty and every sent byte was acknowledged for ``quiet_s``
    in a row: the clients hold all data in their receive buffers, so the process may exit."""
    since = None
    while True:
        idle = writer.getQueuedPacketCount() == 0 and _unsent_bytes() == 0
        now = time.monotonic()
        if not idle:
            since = None
        elif since is None:
            since = now
        elif now - since >= quiet_s:
            return
        time.sleep(0.005)


def _serve(recording: str, host: str, port: int, camera_name: str, resolution: tuple[int, int], realtime: bool,
           speed: float, packet_us: int, after: str, clients: int, client_timeout_s: float, conn: Any) -> None:
    """The server process: AEDAT4 batches (fast to build from numpy) -> NetworkWriter.

    Ends with ``os._exit``: running the writer's destructor with a client connected hangs."""
    import dv_processing as dv

    try:
        writer = dv.io.NetworkWriter(host, port, dv.io.Stream.EventStream(0, "events", camera_name, resolution))
    except (RuntimeError, OSError, ValueError) as exc:  # a taken port, an address not on this host
        conn.send(("error", f"NetworkWriter({host!r}, {port}): {str(exc).strip().splitlines()[0]}"))
        os._exit(1)
    conn.send(("ready", port))
    deadline = time.monotonic() + client_timeout_s
    while writer.getClientCount() < clients:
        if time.monotonic() > deadline:
            conn.send(("error", f"no client connected within {client_timeout_s:g} s"))
            os._exit(1)
        time.sleep(0.005)
    rec = dv.io.MonoCameraRecording(recording)
    sent, t_first, wall0 = 0, None, time.perf_counter()
    while (batch := rec.getNextEventBatch()) is not None:
        if batch.isEmpty():
            continue
        lo, hi = batch.getLowestTime(), batch.getHighestTime()
        t_first = lo if t_first is None else t_first
        start = lo - (lo - t_first) % packet_us  # packets on the stream's packet_us grid
        for a in range(start, hi + 1, packet_us):
            part = batch.sliceTime(a, a + packet_us)
            if part.isEmpty():
                continue
            if realtime:
                wait = wall0 + (min(a + packet_us, hi + 1) - t_first) / (1e6 * speed) - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            writer.writeEvents(part)
            sent += part.size()
    _drain(writer)
    conn.send(("sent", sent))
    if after == "close":
        os._exit(0)
    while True:
        time.sleep(3600)
