"""Live monitor: a pyqtgraph window that follows a run store, and off-screen snapshots.

- :class:`~.source.StoreFollower` (no Qt): reads what is new, never past ``committed``;
- :mod:`.panels` and :mod:`.window`: the pyqtgraph panels and the window;
- :func:`snapshot`, :func:`report` and :func:`watch` (:mod:`.render`): the same panels rendered to PNG.

Qt is imported only by the functions that draw, so ``labbench.monitor.source`` stays
usable on machines without a display or Qt libraries.
"""

from __future__ import annotations

from .source import StoreFollower

__all__ = ["StoreFollower", "snapshot", "report", "watch"]


def __getattr__(name: str):
    if name in ("snapshot", "report", "watch"):
        from . import render

        return getattr(render, name)
    raise AttributeError(name)
