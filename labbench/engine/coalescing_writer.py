"""A store writer on a thread of its own that merges the blocks queued behind a slow write.

A closed loop runs the device one small block at a time, and a store append costs about
the same whatever its size (a chunk per array, a resize per raw column, an attribute
write): with 10-row trials the store, not the device, would set the pace. This writer
takes appends from a queue; when it finds several blocks of one device waiting, it writes
them as one append (rows concatenated, raw streams concatenated), so it never falls more
than one write behind. Rows, their order and every raw row are unchanged; only the number
of appends (the raw streams' ``offsets``) differs.

A failed write is raised on the next :meth:`CoalescingWriter.put` or at
:meth:`CoalescingWriter.flush`; nothing after it is written.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from ..store import RunStore

__all__ = ["CoalescingWriter"]

_STOP = object()


class CoalescingWriter:
    """Appends to ``store`` from a background thread, merging queued blocks per device.

    Use as a context manager; leaving it, normally or on an error, waits for every queued
    block to be written.
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.appends = 0                      # store appends made (<= blocks put)
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="labbench-store-writer", daemon=True)
        self._thread.start()

    def put(self, device: str, **block: Any) -> None:
        """Queue one block (the keyword arguments of :meth:`RunStore.append`)."""
        self._raise()
        self._queue.put((device, block))

    def flush(self) -> None:
        """Wait until every queued block is written; raise the first write error."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> CoalescingWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        """Write what is queued, also when the run is failing (those blocks are the device's real
        output); a write error is raised unless another error is already on its way."""
        try:
            self.flush()
        except BaseException:
            if exc_type is None:
                raise
        finally:
            self.close()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _serve(self) -> None:
        held = None
        while True:
            item = held if held is not None else self._queue.get()
            held = None
            if item is _STOP:
                self._queue.task_done()
                return
            batch = [item]
            while True:                      # everything of the same device already waiting
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or nxt[0] != item[0] or _streams(nxt[1]) != _streams(item[1]):
                    held = nxt
                    break
                batch.append(nxt)
            try:
                if self._error is None:
                    self.store.append(item[0], **_merge([b for _, b in batch]))
                    self.appends += 1
            except BaseException as exc:    # kept for the caller; later blocks are dropped
                self._error = exc
            finally:
                for _ in batch:
                    self._queue.task_done()


def _streams(block: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """The raw streams and columns of a block: only blocks that agree are merged."""
    return [(name, tuple(cols)) for name, cols in (block.get("raw") or {}).items()]


def _merge(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """One append's arguments from several consecutive blocks'."""
    if len(blocks) == 1:
        return blocks[0]
    out: dict[str, Any] = {}
    for key in ("inputs", "features", "targets", "phase", "sequence"):
        parts = [b.get(key) for b in blocks]
        out[key] = None if any(p is None for p in parts) else np.concatenate(parts)
    raws = [b.get("raw") or {} for b in blocks]
    out["raw"] = {stream: {col: np.concatenate([r[stream][col] for r in raws]) for col in raws[0][stream]}
                  for stream in raws[0]}
    return out
