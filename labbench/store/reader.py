"""The tailing reader of a run store: :class:`RunReader` never reads past ``committed``."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .layout import TIME_ARRAYS, StoreError

#: rows per slice of :meth:`RunReader.tail` on a store that records no ``chunk_rows``
_DEFAULT_SLICE = 4096


class RunReader:
    """Read any run store, finished or still being written, never past ``committed``.

    Every property re-opens the store, so a reader sees the writer's progress.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such run store")
        #: seconds :meth:`tail` slept waiting for new rows (a trainer's timings split it off)
        self.waited_s = 0.0
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

    def read(self, device: str, start: int = 0, stop: int | None = None, *, readouts: bool = True,
             columns: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Time arrays of ``device`` for rows ``start:stop``, clipped to ``committed``.

        With ``readouts=True`` the predictions of every readout are included as
        ``readouts/<name>/predictions`` (NaN where a trainer has not got to yet).
        ``columns`` (e.g. ``["phase"]``) reads only those time arrays (and no predictions).
        """
        g = self._open()[device]
        committed = int(g.attrs.get("committed", 0))
        stop = committed if stop is None else min(stop, committed)
        start = min(start, stop)
        if columns is not None:
            wanted = list(columns)
            missing = [c for c in wanted if c not in g or not isinstance(g[c], zarr.Array)]
            if missing:
                raise StoreError(f"{self.path}: {device} has no time array {missing[0]!r}")
            return {key: g[key][start:stop] for key in wanted}
        out = {key: g[key][start:stop] for key in TIME_ARRAYS}
        if "sequence" in g:
            out["sequence"] = g["sequence"][start:stop]
        if readouts and "readouts" in g:
            for name, rg in g["readouts"].groups():
                if "predictions" not in rg:  # a trainer is creating its group right now
                    continue
                pred = rg["predictions"]
                part = pred[start:min(stop, pred.shape[0])]
                if len(part) < stop - start:  # the trainer is behind or stopped early
                    part = np.concatenate([part, np.full((stop - start - len(part), pred.shape[1]), np.nan)])
                out[f"readouts/{name}/predictions"] = part
        return out

    def raw(self, device: str, stream: str) -> dict[str, np.ndarray]:
        """Every column of a raw stream of ``device`` over its committed blocks (``{}`` if it has none).

        E.g. ``raw("mea", "spikes")`` gives ``{"time_s": ..., "electrode": ...}``, and
        ``raw(device, "loop")`` the per-block record of a closed-loop run.
        """
        g = self._open()[device]
        if f"raw/{stream}" not in g:
            return {}
        sg = g[f"raw/{stream}"]
        blocks = int(g.attrs.get("blocks", 0))
        offsets = sg["offsets"][:]
        rows = int(offsets[min(blocks, len(offsets)) - 1]) if blocks and len(offsets) else 0
        with warnings.catch_warnings():   # a live writer's temporary files (*.partial) are not arrays
            warnings.filterwarnings("ignore", message=r".*\.partial is not recognized")
            arrays = [(name, arr) for name, arr in sg.arrays() if name != "offsets"]
        return {name: arr[:rows] for name, arr in arrays}

    def readouts(self, device: str) -> dict[str, dict[str, Any]]:
        """Attributes of every readout group of ``device``, by name."""
        g = self._open()[device]
        if "readouts" not in g:
            return {}
        return {name: dict(rg.attrs) for name, rg in sorted(g["readouts"].groups())}

    def history(self, device: str, readout: str) -> dict[str, np.ndarray]:
        """The metric history of a readout, one array per column, up to ``evaluations``."""
        g = self._open()[f"{device}/readouts/{readout}"]
        n = int(g.attrs.get("evaluations", 0))
        cols = list(g.attrs.get("history_columns", []))
        return {c: g[f"history/{c}"][:n] for c in cols}

    def tail(self, device: str, *, start: int = 0, poll: float = 0.1, timeout: float | None = None,
             readouts: bool = True, max_rows: int | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Yield ``(start_row, arrays)`` for newly committed rows, in slices, until the stream ends.

        Each slice holds at most ``max_rows`` rows (default: the device's ``chunk_rows``, its
        block) and never crosses a multiple of ``max_rows``, so a reader that fell behind, or
        one replaying a finished store, holds one block at a time: its memory is bounded by
        the block, not by how far behind it is or how long the run is.

        The stream ends when the run is no longer ``running`` or its writer marked the
        device's ``stream_done`` (the run may still be evaluating). Once every expected row
        (the device's ``expected_rows``) is read, the reader polls for that mark every 5 ms
        for a second rather than every ``poll`` s: the writer sets it right after the last block.

        Raises ``TimeoutError`` if nothing new arrives within ``timeout`` seconds while
        the run is still ``running``; ``ValueError`` if ``max_rows`` is not positive.
        """
        if max_rows is None:
            max_rows = int(self.device_attrs(device).get("chunk_rows") or _DEFAULT_SLICE)
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        pos = start
        last_progress = time.monotonic()
        while True:
            root = self._open()
            status = root.attrs.get("status")
            dev_attrs = root[device].attrs
            committed = int(dev_attrs.get("committed", 0))
            if committed > pos:
                while pos < committed:   # what is committed, a slice at a time
                    stop = min(committed, (pos // max_rows + 1) * max_rows)
                    yield pos, self.read(device, pos, stop, readouts=readouts)
                    pos = stop
                last_progress = time.monotonic()
                continue
            if status != "running" or dev_attrs.get("stream_done"):
                return
            if timeout is not None and time.monotonic() - last_progress > timeout:
                raise TimeoutError(f"{self.path}:{device}: no new rows for {timeout} s (committed={pos})")
            expected = int(dev_attrs.get("expected_rows") or 0)
            # every expected row read: the end mark is due at once (for a second, then as before)
            soon = expected and pos >= expected and time.monotonic() - last_progress < 1.0
            wait = min(poll, 0.005) if soon else poll
            time.sleep(wait)
            self.waited_s += wait
