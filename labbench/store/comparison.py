"""The comparison store: one Zarr v3 group per ``labbench compare`` suite, one group per cell.

A *cell* is one (device, battery entry, seed) of a suite. This process (the comparer) is
the store's only writer; each finished cell becomes a group created with its attributes,
so a reader never sees a cell without them, and an interrupted suite keeps every cell
that finished.

Layout::

    <suite>.zarr              attrs: kind = "labbench.comparison", labbench_version, versions,
                                     suite_name, suite_text (the suite file), suite_source,
                                     devices  [{name, family, substrate, mock, encoding}],
                                     entries  [{name, metric, maximise, unit, paper}],
                                     seeds, status, error, started, ended, host,
                                     ranking  {entry: [{device, mean, std, n, values}], best first}
      cells/<device>/<entry>/seed-<k>/
                              attrs: the cell result: device, family, entry, seed, status,
                                     error, metrics {name: value}, primary {name, value,
                                     maximise}, cost {wall_s, device_s, energy_J, spikes,
                                     charge_C}, provenance {...}, warnings
        <curve>/<column>      (point,) float64: a curve of the cell, e.g.
                              memory_curve/{delay, capacity}, fading/{step, distance}

Curves are the arrays of a cell; everything else is attributes (small, JSON).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .layout import StoreError, jsonable, now_iso, versions

__all__ = ["KIND", "ComparisonReader", "ComparisonStore", "rank_cells"]

KIND = "labbench.comparison"


def _cell_path(device: str, entry: str, seed: int) -> str:
    return f"cells/{device}/{entry}/seed-{int(seed)}"


class ComparisonStore:
    """The single writer of a comparison store.

    Parameters
    ----------
    path : path-like
        The store to create (it must not exist).
    attrs : dict
        The root attributes (``suite_name``, ``suite_text``, ``devices``, ``entries``,
        ``seeds``, ...); ``kind``, versions, ``status`` and ``started`` are added.
    """

    def __init__(self, path: str | os.PathLike[str], attrs: dict[str, Any]) -> None:
        from ..version import __version__

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._root = zarr.open_group(str(self.path), mode="w-")
        self._entries = {e["name"]: e for e in attrs.get("entries", [])}
        self._cells: list[dict[str, Any]] = []
        self._root.update_attributes(jsonable({
            **attrs, "kind": KIND, "labbench_version": __version__, "versions": versions(),
            "started": now_iso(), "ended": None, "status": "running", "error": None, "ranking": {},
            "writer_pid": os.getpid(), "host": platform.node()}))

    def add_cell(self, result: dict[str, Any], curves: dict[str, dict[str, np.ndarray]] | None = None) -> None:
        """Write one finished cell (its result attributes and curves) and re-rank.

        Parameters
        ----------
        result : dict
            The cell's attributes; must hold ``device``, ``entry`` and ``seed``.
        curves : dict, optional
            ``{curve: {column: 1-D array}}``, e.g. ``{"memory_curve": {"delay": d, "capacity": c}}``.
        """
        attrs = jsonable(result)
        g = self._root.require_group(f"cells/{attrs['device']}/{attrs['entry']}") \
            .create_group(f"seed-{int(attrs['seed'])}", attributes=attrs)
        for curve, cols in (curves or {}).items():
            cg = g.create_group(curve)
            for col, values in cols.items():
                v = np.asarray(values, dtype=np.float64).ravel()
                arr = cg.create_array(col, shape=v.shape, dtype="float64", chunks=(max(len(v), 1),),
                                      compressors=None)
                arr[:] = v
        self._cells.append(attrs)
        self._root.update_attributes(jsonable({"ranking": rank_cells(self._cells, self._entries)}))

    def set_attrs(self, **attrs: Any) -> None:
        self._root.update_attributes(jsonable(attrs))

    def finish(self, status: str, error: str | None = None) -> None:
        """Mark the suite ``complete``, ``aborted`` or ``failed``."""
        self._root.update_attributes(jsonable({"status": status, "error": error, "ended": now_iso()}))


def rank_cells(cells: list[dict[str, Any]], entries: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per entry, one row per device over its seeds (mean, sample std, n, values), best first.

    A cell counts when its status is ``complete`` and its primary value is a finite number;
    a device with none of them is ranked last with ``mean = None``. ``maximise`` comes from
    the entry (``entries[name]["maximise"]``), else from the cells' ``primary``.
    """
    by: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for c in cells:
        by.setdefault(c["entry"], {}).setdefault(c["device"], []).append(c)
    out: dict[str, list[dict[str, Any]]] = {}
    for entry, devices in by.items():
        rows = []
        maximise = entries.get(entry, {}).get("maximise")
        for device, cs in devices.items():
            vals = []
            for c in sorted(cs, key=lambda c: c["seed"]):
                p = c.get("primary") or {}
                if maximise is None and "maximise" in p:
                    maximise = bool(p["maximise"])
                v = p.get("value")
                if c.get("status") == "complete" and isinstance(v, (int, float)) and math.isfinite(v):
                    vals.append(float(v))
            mean = float(np.mean(vals)) if vals else None
            std = float(np.std(vals, ddof=1)) if len(vals) > 1 else (0.0 if vals else None)
            rows.append({"device": device, "mean": mean, "std": std, "n": len(vals), "values": vals,
                         "metric": (cs[0].get("primary") or {}).get("name")})
        sign = -1.0 if maximise or maximise is None else 1.0
        rows.sort(key=lambda r: (r["mean"] is None, sign * r["mean"] if r["mean"] is not None else 0.0))
        out[entry] = rows
    return out


class ComparisonReader:
    """Read a comparison store (finished, or still being written).

    Parameters
    ----------
    path : path-like
        The store; :class:`StoreError` when it is not a comparison store.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._root = zarr.open_group(str(self.path), mode="r")
        except Exception as exc:
            raise StoreError(f"{self.path}: not a Zarr v3 group ({type(exc).__name__}: {exc})") from None
        if self._root.attrs.get("kind") != KIND:
            raise StoreError(f"{self.path}: a Zarr group, but not a labbench comparison "
                             f"(kind is {self._root.attrs.get('kind')!r}, expected {KIND!r})")

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(zarr.open_group(str(self.path), mode="r").attrs)

    def cells(self) -> Iterator[dict[str, Any]]:
        """Every written cell's attributes, in device, entry, seed order."""
        root = zarr.open_group(str(self.path), mode="r")
        if "cells" not in root:
            return
        for device, dg in sorted(root["cells"].groups()):
            for entry, eg in sorted(dg.groups()):
                for _, sg in sorted(eg.groups(), key=lambda kv: int(kv[0].split("-")[1])):
                    yield dict(sg.attrs)

    def curves(self, device: str, entry: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
        """The curves of one cell: ``{curve: {column: array}}`` (``{}`` when it has none)."""
        root = zarr.open_group(str(self.path), mode="r")
        path = _cell_path(device, entry, seed)
        if path not in root:
            raise StoreError(f"{self.path}: no cell {path}")
        return {name: {col: arr[:] for col, arr in cg.arrays()} for name, cg in sorted(root[path].groups())}
