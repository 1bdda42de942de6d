"""A device emulator on a pseudo-terminal, with fault injection.

:class:`PtyEmulator` opens a pty, puts its slave side in raw mode (without it, early output
is echoed and newlines are mangled), and serves it from two daemon threads: one reads what
the host writes and hands it to :meth:`PtyEmulator.on_data`, the other calls
:meth:`PtyEmulator.on_tick` every ``tick_s`` (heartbeats, streaming). A subclass implements
those hooks and answers with :meth:`PtyEmulator.write`, one message per call, so that faults
land on message boundaries.

The host opens :attr:`PtyEmulator.path`, a symbolic link to the current ``/dev/pts/N``
(like ``/dev/serial/by-id/...``): it stays the same when a dropped connection comes back on
a new pty. A pty ignores the baud rate; ``bytes_per_s`` paces the writes where a realistic
line speed matters.

Faults (thread-safe; call them from a test, or from :attr:`PtyEmulator.tx_hook`, which sees
every message just before it is written and can act on that very message):

- :meth:`inject`: raw bytes written before the next message (garbage between frames);
- :meth:`corrupt`: flip the bits of one byte (by default the last: the CRC) of the next
  ``n`` messages;
- :meth:`drop`: the device disappears (the host's reads fail, the link vanishes) and comes
  back on a new pty after ``down_s``;
- :meth:`silence`: the device stays connected but neither reads nor writes (hung firmware).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class PtyEmulator:
    """Base class of device emulators served on a pseudo-terminal.

    Parameters
    ----------
    link : str or Path, optional
        Where to put the stable symbolic link to the pty (default: a new temporary
        directory, removed by :meth:`close`).
    tick_s : float, optional
        Period of :meth:`on_tick` calls (``None``: never). May be changed while serving.
    poll_s : float
        Longest the serving thread sleeps before checking for close, drop and silence.
    write_timeout_s : float
        A message the host does not read within this time is discarded (counted in
        ``tx_overflow``), as a device with a full USB buffer would; the emulator never
        blocks for ever on a host that stopped reading.
    bytes_per_s : float, optional
        Pace writes to this line rate (default: as fast as the pty goes, ~60 MB/s).
    name : str
        Thread name prefix.
    """

    def __init__(self, *, link: str | os.PathLike | None = None, tick_s: float | None = None,
                 poll_s: float = 0.02, write_timeout_s: float = 1.0, bytes_per_s: float | None = None,
                 name: str = "pty-emulator") -> None:
        self._tmpdir = None if link is not None else tempfile.mkdtemp(prefix="labbench-pty-")
        self._link = Path(link) if link is not None else Path(self._tmpdir) / "tty"
        self.tick_s = tick_s
        self.poll_s = float(poll_s)
        self.write_timeout_s = float(write_timeout_s)
        self.bytes_per_s = bytes_per_s
        self.name = name
        self.tx_hook: Callable[[bytes, str | None], None] | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._tty_path: str | None = None
        self._wlock = threading.RLock()
        self._closing = threading.Event()
        self._started = False
        self._down = False
        self._up_at = 0.0
        self._silent = False
        self._stalled = False
        self._inject = bytearray()
        self._corrupt: list[tuple[int, int]] = []
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.rx_bytes = self.tx_bytes = self.tx_discarded = self.tx_overflow = 0
        self.injected_bytes = self.corrupted = self.drops = 0

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The stable path the host opens (a symbolic link to the current pty)."""
        return str(self._link)

    @property
    def tty_path(self) -> str | None:
        """The current ``/dev/pts/N`` (``None`` while the connection is down)."""
        return self._tty_path

    @property
    def connected(self) -> bool:
        return self._master is not None and not self._down

    def start(self) -> str:
        """Open the pty and start serving; returns :attr:`path`."""
        if self._started:
            return self.path
        self._open_pty()
        self._started = True
        self.on_connect()
        for target, suffix in ((self._serve, "serve"), (self._tick, "tick")):
            t = threading.Thread(target=target, name=f"{self.name}-{suffix}", daemon=True)
            t.start()
            self._threads.append(t)
        return self.path

    def close(self) -> None:
        """Stop serving, close the pty and remove the link. Idempotent."""
        self._closing.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5.0)
        self._threads.clear()
        with self._wlock:
            self._close_pty()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- hooks for subclasses -----------------------------------------------------------------
    def on_connect(self) -> None:
        """Called (serving thread) when the pty is (re)opened."""

    def on_disconnect(self) -> None:
        """Called (serving thread) when a dropped connection's pty has been closed."""

    def on_data(self, data: bytes) -> None:
        """Called (serving thread) with the bytes the host wrote."""

    def on_tick(self) -> None:
        """Called (tick thread) every ``tick_s`` while connected and not silent."""

    # -- writing ------------------------------------------------------------------------------
    def write(self, data: bytes, kind: str | None = None) -> bool:
        """Write one message (thread-safe). Returns False if it was discarded (connection
        down, silent, or the host not reading)."""
        with self._wlock:
            if self.tx_hook is not None:
                self.tx_hook(data, kind)
            if self._down or self._silent or self._master is None:
                self.tx_discarded += len(data)
                return False
            out = bytearray()
            if self._inject:
                out += self._inject
                self.injected_bytes += len(self._inject)
                self._inject.clear()
            msg = bytearray(data)
            if self._corrupt and msg:
                offset, xor = self._corrupt.pop(0)
                msg[offset] ^= xor
                self.corrupted += 1
            out += msg
            return self._write_all(bytes(out))

    def _write_all(self, data: bytes) -> bool:
        fd = self._master
        view = memoryview(data)
        # a host that stopped reading costs one write timeout, not one per message
        deadline = time.monotonic() + (0.0 if self._stalled else self.write_timeout_s)
        while view:
            try:
                n = os.write(fd, view)
                self.tx_bytes += n
                view = view[n:]
                self._stalled = False
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [fd], [], left)[1]:
                    self.tx_overflow += len(view)
                    self._stalled = True
                    return False
            except OSError as e:     # EIO: no reader
                if e.errno != errno.EIO:
                    log.debug("%s: write failed: %s", self.name, e)
                self.tx_discarded += len(view)
                return False
        if self.bytes_per_s:
            time.sleep(len(data) / self.bytes_per_s)
        return True

    # -- faults -------------------------------------------------------------------------------
    def inject(self, data: bytes) -> None:
        """Write ``data`` (raw, unframed) just before the next message."""
        with self._wlock:
            self._inject += data

    def corrupt(self, n: int = 1, offset: int = -1, xor: int = 0xFF) -> None:
        """XOR byte ``offset`` (default: the last, i.e. the CRC) of each of the next ``n``
        messages with ``xor``."""
        if not 1 <= xor <= 0xFF:
            raise ValueError(f"corrupt: xor must be 1..255, got {xor}")
        with self._wlock:
            self._corrupt.extend([(offset, xor)] * n)

    def drop(self, down_s: float = 0.2) -> None:
        """Disconnect now; come back on a new pty (same :attr:`path`) after ``down_s``."""
        self._up_at = time.monotonic() + down_s
        self._down = True
        self.drops += 1

    def silence(self, on: bool = True) -> None:
        """Stop (or resume) reading and writing, staying connected."""
        self._silent = bool(on)

    # -- internals ----------------------------------------------------------------------------
    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)            # at once: no echo, no newline mangling
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._stalled = False
        self._tty_path = os.ttyname(slave)
        tmp = self._link.with_name(self._link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(self._tty_path, tmp)
        os.replace(tmp, self._link)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        self._tty_path = None
        try:
            self._link.unlink(missing_ok=True)
        except OSError:
            pass

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                if self._down:
                    if self._master is not None:
                        with self._wlock:
                            self._close_pty()
                        self.on_disconnect()
                    wait = self._up_at - time.monotonic()
                    if wait > 0:
                        self._closing.wait(min(wait, self.poll_s))
                        continue
                    with self._wlock:
                        self._open_pty()
                        self._down = False
                    self.on_connect()
                    continue
                if self._silent:
                    self._closing.wait(self.poll_s)
                    continue
                fd = self._master
                if not select.select([fd], [], [], self.poll_s)[0]:
                    continue
                if self._down or self._silent or fd != self._master:
                    continue
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:          # EIO: the host side is closed
                    self._closing.wait(self.poll_s)
                    continue
                if data:
                    self.rx_bytes += len(data)
                    self.on_data(data)
            except Exception as e:       # a bug in a hook must not kill the device silently
                log.exception("%s: serving thread", self.name)
                self.errors.append(e)
                self._closing.wait(self.poll_s)

    def _tick(self) -> None:
        next_t = time.monotonic()
        while not self._closing.is_set():
            period = self.tick_s
            if not period:
                self._closing.wait(self.poll_s)
                next_t = time.monotonic()
                continue
            next_t += period
            wait = next_t - time.monotonic()
            if wait < -period:           # fell behind (suspended): do not burst
                next_t = time.monotonic()
            elif wait > 0 and self._closing.wait(wait):
                break
            if self._down or self._silent or self._master is None:
                continue
            try:
                self.on_tick()
            except Exception as e:
                log.exception("%s: tick thread", self.name)
                self.errors.append(e)
