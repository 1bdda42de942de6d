"""Run a script under another Python interpreter and exchange numpy arrays with it.

Some back ends cannot live in the bench's interpreter: lava-nc 0.10 needs Python 3.10,
Cortical Labs' cl-sdk 1.0 needs 3.12. :class:`PythonWorker` starts ``python script`` in a
process of its own, with pipes, and calls operations in it::

    with PythonWorker(".venv-lava/bin/python", "drivers/loihi/lava_worker.py") as w:
        out = w.call("run", spikes_in=x)        # dict of numpy arrays / JSON scalars

The messages are those of :mod:`.worker_wire` (a JSON header and raw array bytes, never
pickle); the script imports that module by path (the environment variable
``LABBENCH_WORKER_WIRE`` holds it) and calls :func:`.worker_wire.serve` with its handlers.

Failures are one line each (:class:`WorkerError`), naming the interpreter and script and
quoting the last lines of the worker's stderr: a missing interpreter, a worker that dies
or does not answer within ``timeout_s`` (it is then killed), or an exception in a
handler (its type and message; the worker lives on). The worker runs in a session of its
own; :meth:`PythonWorker.close` asks it to stop, closes its stdin, waits ``grace_s`` and
then kills its whole process group (so processes *it* started, such as Lava's runtime
processes, go too). A worker whose parent dies sees end of input on stdin and exits.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .worker_wire import WIRE_ENV, WireError, read_message, split_values, write_message

#: the wire module's file, which worker scripts import by path
WIRE_PATH = Path(__file__).resolve().with_name("worker_wire.py")
_PIPE_SIZE = 1 << 20


class WorkerError(RuntimeError):
    """A worker process failed: not started, died, timed out, or its handler raised."""


class PythonWorker:
    """A script running under another interpreter, answering calls with numpy arrays.

    Parameters
    ----------
    python : str or Path
        The interpreter, e.g. ``.venv-lava/bin/python``.
    script : str or Path
        The worker script; it serves with :func:`.worker_wire.serve`.
    args : sequence of str
        Extra command-line arguments for the script.
    env : mapping, optional
        Variables added to the environment (``PYTHONPATH``/``PYTHONHOME`` of this process
        are not passed on, since they belong to this interpreter, unless given here).
    timeout_s : float
        Longest wait for the worker's start-up and for any one call; a worker that exceeds
        it is killed.
    grace_s : float
        How long :meth:`close` waits for a clean exit before killing.
    """

    def __init__(self, python: str | os.PathLike, script: str | os.PathLike, *, args: Sequence[str] = (),
                 env: dict[str, str] | None = None, timeout_s: float = 300.0, grace_s: float = 5.0) -> None:
        self.python = str(python)
        self.script = Path(script)
        self.timeout_s = float(timeout_s)
        self.grace_s = float(grace_s)
        self.info: dict[str, Any] = {}
        self._stderr: deque[str] = deque(maxlen=20)
        if not self.script.is_file():
            raise WorkerError(f"worker script {self.script} does not exist")
        full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        full_env.update({"PYTHONUNBUFFERED": "1", WIRE_ENV: str(WIRE_PATH)})
        full_env.update(env or {})
        try:
            self._proc = subprocess.Popen([self.python, str(self.script), *args], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                                          bufsize=0, start_new_session=True)
        except OSError as exc:
            raise WorkerError(f"worker interpreter {self.python} cannot be started: {exc.strerror or exc}") from None
        self._finalizer = weakref.finalize(self, _kill_group, self._proc)
        self._reader = threading.Thread(target=_drain, args=(self._proc.stderr, self._stderr), daemon=True)
        self._reader.start()
        self._in = _DeadlineStream(self._proc.stdout.fileno())
        self._out = _DeadlineStream(self._proc.stdin.fileno())
        self._lock = threading.Lock()
        op, scalars, _ = self._receive("start-up")
        if op != "ready":
            self._fail(f"sent {op!r} instead of 'ready' at start-up")
        self.info = scalars

    # -- public ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Whether the worker process is still running."""
        return self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The worker's process id (also its process group id)."""
        return self._proc.pid

    def call(self, op: str, /, **values: Any) -> dict[str, Any]:
        """Run ``op`` in the worker with keyword arrays/scalars; return its results.

        Parameters
        ----------
        op
            The operation's name (a handler of the worker script).
        **values
            numpy arrays (any numeric/bool dtype and shape) and JSON scalars
            (bool/int/float/str/None).

        Returns
        -------
        dict
            The handler's results: numpy arrays and scalars by name.

        Raises
        ------
        WorkerError
            The handler raised (message: its exception type and message), or the worker
            died or timed out (message: interpreter, script, last stderr lines).
        """
        scalars, arrays = split_values(values)
        with self._lock:
            if not self.alive:
                self._fail("is not running")
            self._out.deadline = time.monotonic() + self.timeout_s
            try:
                write_message(self._out, op, scalars, arrays)
            except (BrokenPipeError, WireError, TimeoutError) as exc:
                self._fail(f"did not take the request {op!r} ({type(exc).__name__})")
            reply, out_scalars, out_arrays = self._receive(f"op {op!r}")
        if reply == "error":
            raise WorkerError(f"worker {self.script.name} ({self.python}) op {op!r} failed: {out_scalars.get('error')}")
        return {**out_scalars, **out_arrays}

    def close(self) -> int | None:
        """Stop the worker: ask it (op ``close``), close its stdin, wait ``grace_s``, then kill its group.

        Returns
        -------
        int or None
            The worker's exit status (negative: killed by that signal). Safe to call twice.
        """
        proc = self._proc
        if proc.poll() is None:
            try:
                with self._lock:
                    self._out.deadline = time.monotonic() + self.grace_s
                    write_message(self._out, "close")
                    self._in.deadline = time.monotonic() + self.grace_s
                    read_message(self._in)
            except (OSError, WireError, TimeoutError):
                pass
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            pass
        self._finalizer()
        self._reader.join(1.0)
        return proc.returncode

    def stderr_tail(self, n: int = 5) -> str:
        """The last ``n`` lines the worker wrote to stderr, joined with `` | ``."""
        return " | ".join(list(self._stderr)[-n:])

    def __enter__(self) -> PythonWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- private ------------------------------------------------------------------------------
    def _receive(self, what: str) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
        self._in.deadline = time.monotonic() + self.timeout_s
        try:
            msg = read_message(self._in)
        except TimeoutError:
            self._finalizer()
            self._fail(f"gave no answer to {what} within {self.timeout_s:g} s (killed)")
        except WireError as exc:
            self._fail(f"broke off during {what} ({exc})")
        if msg is None:
            self._fail(f"ended during {what}")
        return msg

    def _fail(self, what: str) -> None:
        try:
            code = self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        self._reader.join(0.5)
        status = "" if code is None else f" (exit status {code})"
        tail = self.stderr_tail() or "(nothing)"
        raise WorkerError(f"worker {self.script.name} under {self.python} {what}{status}; last stderr: {tail}")


class _DeadlineStream:
    """A pipe end with ``readinto``/``write`` that give up at ``deadline`` (TimeoutError)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.deadline = float("inf")
        os.set_blocking(fd, False)
        try:   # a larger pipe (Linux) moves big arrays in fewer wake-ups
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_SIZE)
        except OSError:
            pass

    def _wait(self, readable: bool) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        r, w, _ = select.select([self.fd] if readable else [], [] if readable else [self.fd], [],
                                min(remaining, 3600.0))
        if not (r or w):
            raise TimeoutError

    def readinto(self, buf: memoryview) -> int:
        while True:
            self._wait(True)
            try:
                return os.readv(self.fd, [buf])
            except BlockingIOError:
                continue

    def write(self, data: memoryview) -> int:
        while True:
            self._wait(False)
            try:
                return os.write(self.fd, data)
            except BlockingIOError:
                continue

    def flush(self) -> None:
        pass


def _drain(stream, lines: deque) -> None:
    for raw in iter(stream.readline, b""):
        text = raw.decode(errors="replace").rstrip()
        if text:
            lines.append(text)
    stream.close()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5.0)
    except subprocess.TimeoutExpired:
        pass
