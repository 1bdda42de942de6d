"""The wire between a labbench process and a worker script in another interpreter: numpy arrays, no pickle.

Both ends import this module: the labbench side as ``labbench.drivers.transport.worker_wire``,
the worker script **by path** (it runs in a venv where labbench is not installed, e.g. the
Python 3.10 venv of lava-nc), so it needs the standard library and numpy only.

One message (either direction)::

    8 bytes    header length H (unsigned, little-endian)
    H bytes    JSON header: {"op": str, "scalars": {name: JSON value},
                             "arrays": [{"name", "dtype", "shape", "nbytes"}, ...]}
    ...        the arrays' raw C-order bytes, one after the other, in header order

A reply carries ``"op": "ok"`` and the results, or ``"op": "error"`` and one line in
``scalars["error"]`` (the worker's exception type and message). ``dtype`` is numpy's
``dtype.str`` (e.g. ``"<i4"``, ``"|b1"``); object, structured and void dtypes are refused,
so nothing on the wire is ever unpickled. Arrays are read with ``readinto`` straight into
their final buffers, so a large array moves at pipe speed with one copy per side.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np

_LEN = struct.Struct("<Q")
#: scalar types carried in the JSON header instead of as arrays
SCALAR_TYPES = (bool, int, float, str, type(None))
#: environment variable through which a worker script finds this file
WIRE_ENV = "LABBENCH_WORKER_WIRE"
_CHUNK = 1 << 24


class WireError(RuntimeError):
    """The other end sent something that is not a message of this wire (or vanished mid-message)."""


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split keyword values into JSON scalars and numpy arrays.

    Parameters
    ----------
    values
        ``name -> value``; a value is a bool/int/float/str/None (sent in the header), a
        numpy scalar (sent as a 0-d array, keeping its dtype) or array, or anything
        :func:`numpy.asarray` turns into a numeric array.

    Returns
    -------
    scalars, arrays
    """
    scalars: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in values.items():
        if isinstance(value, SCALAR_TYPES) and not isinstance(value, np.generic):
            scalars[name] = value
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufc":
            raise TypeError(f"worker wire: value {name!r} has dtype {arr.dtype}; expected a numeric or bool array "
                            "(object/structured arrays would need pickle)")
        arrays[name] = arr
    return scalars, arrays


def write_message(stream: BinaryIO, op: str, scalars: Mapping[str, Any] | None = None,
                  arrays: Mapping[str, np.ndarray] | None = None) -> None:
    """Write one message (header then raw array bytes) and flush.

    Parameters
    ----------
    stream
        A binary stream (an unbuffered pipe is best).
    op
        The operation (requests) or ``"ok"``/``"error"`` (replies).
    scalars, arrays
        As returned by :func:`split_values`.
    """
    arrays = {k: np.require(v, requirements="C") for k, v in (arrays or {}).items()}   # keeps 0-d
    header = {"op": op, "scalars": dict(scalars or {}),
              "arrays": [{"name": k, "dtype": v.dtype.str, "shape": list(v.shape), "nbytes": int(v.nbytes)}
                         for k, v in arrays.items()]}
    blob = json.dumps(header).encode()
    _write_all(stream, _LEN.pack(len(blob)) + blob)
    for arr in arrays.values():
        if arr.nbytes:
            _write_all(stream, memoryview(arr.reshape(-1)).cast("B"))
    stream.flush()


def read_message(stream: BinaryIO) -> tuple[str, dict[str, Any], dict[str, np.ndarray]] | None:
    """Read one message; ``None`` on a clean end of stream (before any byte of a message).

    Returns
    -------
    op, scalars, arrays

    Raises
    ------
    WireError
        The stream ended inside a message, or the header is not this wire's.
    """
    head = _read_exact(stream, _LEN.size, allow_eof=True)
    if head is None:
        return None
    (length,) = _LEN.unpack(head)
    if length > 1 << 26:
        raise WireError(f"worker wire: header of {length} bytes announced; the stream is not this wire's")
    try:
        header = json.loads(bytes(_read_exact(stream, length)))
        op, scalars, specs = header["op"], header["scalars"], header["arrays"]
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"worker wire: malformed header ({exc})") from None
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        dtype = np.dtype(spec["dtype"])
        if dtype.kind not in "biufc":
            raise WireError(f"worker wire: array {spec['name']!r} has dtype {dtype}; only numeric/bool are allowed")
        arr = np.empty(tuple(spec["shape"]), dtype=dtype)
        if arr.nbytes != spec["nbytes"]:
            raise WireError(f"worker wire: array {spec['name']!r} announces {spec['nbytes']} bytes, "
                            f"its shape and dtype make {arr.nbytes}")
        if arr.nbytes:
            _read_exact(stream, arr.nbytes, into=memoryview(arr.reshape(-1)).cast("B"))
        arrays[spec["name"]] = arr
    return op, scalars, arrays


def serve(handlers: Mapping[str, Callable[..., Mapping[str, Any] | None]]) -> int:
    """The worker's main loop: answer requests on stdin/stdout until end of input or op ``close``.

    The real stdout is kept for the wire and file descriptor 1 is pointed at stderr, so
    that prints from the worker or the libraries it uses cannot corrupt a message. An
    exception in a handler becomes an ``"error"`` reply (one line; the traceback goes to
    stderr) and the worker keeps serving. A ``"ready"`` message (Python version, pid) is
    sent first. ``close`` (if not a handler, a no-op) ends the loop after its reply.

    Parameters
    ----------
    handlers
        ``op -> callable(**values) -> dict of results`` (scalars and arrays mixed).

    Returns
    -------
    int
        The exit status (0).
    """
    wire_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    wire_in = os.fdopen(os.dup(0), "rb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    write_message(wire_out, "ready", {"python": sys.version.split()[0], "pid": os.getpid(),
                                      "executable": sys.executable})
    while True:
        msg = read_message(wire_in)
        if msg is None:
            return 0
        op, scalars, arrays = msg
        handler = handlers.get(op)
        try:
            if handler is None and op != "close":
                raise KeyError(f"unknown op {op!r}; this worker knows {sorted(set(handlers) | {'close'})}")
            result = handler(**scalars, **arrays) if handler is not None else None
            out_scalars, out_arrays = split_values(dict(result or {}))
        except Exception as exc:  # noqa: BLE001 - every failure goes back as one line
            traceback.print_exc(file=sys.stderr)
            line = f"{type(exc).__name__}: {exc}".replace("\n", " | ")
            write_message(wire_out, "error", {"error": line})
            continue
        write_message(wire_out, "ok", out_scalars, out_arrays)
        if op == "close":
            return 0


def _write_all(stream: BinaryIO, data) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = stream.write(view[:_CHUNK])
        if n is None:
            raise WireError("worker wire: write would block on a non-blocking stream")
        view = view[n:]


def _read_exact(stream: BinaryIO, n: int, *, allow_eof: bool = False, into: memoryview | None = None):
    buf = into if into is not None else memoryview(bytearray(n))
    got = 0
    while got < n:
        k = stream.readinto(buf[got:got + _CHUNK])
        if not k:
            if got == 0 and allow_eof:
                return None
            raise WireError(f"worker wire: stream ended after {got} of {n} bytes of a message")
        got += k
    return buf
