"""The saccade digits' event images of a run: the mean ON and OFF events per pixel of each class.

N-MNIST (Orchard, Jayawant, Cohen & Thakor 2015, Front. Neurosci. 9:437, Fig. 3) shows what
an event camera sees of a digit during its three saccades by accumulating the recording's
events per pixel, ON and OFF apart. Here the same is drawn from a run store of the
``saccade_digits`` task: every event of a device's raw stream ``events`` is assigned to the
row it falls in (``floor(t · time_scale / dt)``), the row to its digit (the store's
``sequence`` column; rows between digits, -1, are left out) and the digit to its class (the
row's target); the events of each class are counted per pixel and polarity and divided by the
number of digits of that class:

    mean[c, p, y, x] = #{events at (x, y) of polarity p in digits of class c} / #{digits of class c}

over the held-out digits (test phase) or all of them. :func:`digit_event_means` is the numbers
(tested against a direct count); :func:`digit_event_figure` draws them with pyqtgraph (the
monitor's renderer, off-screen): ON above OFF, one column per class, one colour bar in events
per digit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from .event_panel import event_streams, sensor_hw

#: events read per chunk (bounds the memory of the count)
CHUNK = 1 << 21
N_CLASSES = 10


@dataclass(frozen=True)
class DigitEvents:
    """Mean events per pixel of each digit class.

    Attributes
    ----------
    means : ndarray (10, 2, H, W) float64
        Events per digit at each pixel: ``means[c, 1]`` ON, ``means[c, 0]`` OFF, for class ``c``
        (NaN for a class with no digit).
    digits : ndarray (10,) int
        Digits of each class counted.
    stream : str
        The event stream read.
    phase : str
        ``"test"`` (the held-out digits) or ``"all"``.
    """

    means: np.ndarray
    digits: np.ndarray
    stream: str
    phase: str


def digit_event_means(store: str | os.PathLike[str], device: str, *, phase: str = "test",
                      stream: str | None = None, chunk: int = CHUNK) -> DigitEvents:
    """Mean ON and OFF events per pixel per digit of each class, from the store.

    Rows count when they are committed, belong to a digit (``sequence >= 0``) and are in the
    ``phase`` (``"test"``: phase 2; ``"all"``: every phase). Events are read ``chunk`` at a
    time, up to the committed blocks, and counted with one ``bincount`` per chunk.

    Raises
    ------
    ValueError
        ``phase`` is neither "test" nor "all", the device has no event stream or no
        ``sequence`` column, or a target is not a class 0-9.
    """
    if phase not in ("test", "all"):
        raise ValueError(f"phase must be 'test' or 'all', got {phase!r}")
    g = zarr.open_group(str(store), mode="r")[device]
    spec = dict(g.attrs.get("spec") or {})
    streams = event_streams(spec)
    if not streams:
        raise ValueError(f"{device}: no event stream (a raw stream with columns t, x, y, p)")
    key = stream or streams[0]
    s = spec["raw"][key]
    h, w = sensor_hw(dict(g.attrs), s)
    if "sequence" not in g:
        raise ValueError(f"{device}: no 'sequence' column (not a sequence task's run)")
    n = int(g.attrs.get("committed", 0))
    dt = float(spec.get("dt", 1.0))
    scale = float(s.get("time_scale", 1e-6))
    tcol = str(s.get("time_column") or "t")
    seq = np.asarray(g["sequence"][:n], dtype=np.int64)
    target = np.asarray(g["targets"][:n], dtype=np.float64)[:, 0] if n else np.zeros(0)
    ph = np.asarray(g["phase"][:n])
    use = (seq >= 0) & ((ph == 2) if phase == "test" else (ph >= 0))
    labels = target[use]
    if labels.size and (np.any(~np.isfinite(labels)) or np.any(labels % 1 != 0)
                        or labels.min() < 0 or labels.max() >= N_CLASSES):
        raise ValueError(f"{device}: the targets of the digits' rows are not classes 0-{N_CLASSES - 1}")
    cls = np.where(use, np.nan_to_num(target, nan=-1.0), -1.0).astype(np.int64)   # class of each row, -1: none
    digits = np.zeros(N_CLASSES, dtype=np.int64)
    if use.any():
        _, first = np.unique(seq[use], return_index=True)
        np.add.at(digits, labels[first].astype(np.int64), 1)
    rg = g[f"raw/{key}"]
    offsets = rg["offsets"]
    blocks = min(int(g.attrs.get("blocks", 0)), offsets.shape[0])
    end = int(offsets[blocks - 1]) if blocks else 0
    sums = np.zeros(N_CLASSES * 2 * h * w)
    for a in range(0, end, chunk):
        b = min(a + chunk, end)
        t = np.asarray(rg[tcol][a:b], dtype=np.float64)
        rows = np.floor(t * scale / dt + 1e-9).astype(np.int64)
        ok = (rows >= 0) & (rows < n)
        c = np.full(len(rows), -1, dtype=np.int64)
        c[ok] = cls[rows[ok]]
        x = np.asarray(rg["x"][a:b], dtype=np.int64)
        y = np.asarray(rg["y"][a:b], dtype=np.int64)
        p = np.asarray(rg["p"][a:b], dtype=np.int64)
        keep = (c >= 0) & (x < w) & (y < h)
        idx = ((c[keep] * 2 + p[keep]) * h + y[keep]) * w + x[keep]
        sums += np.bincount(idx, minlength=sums.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums.reshape(N_CLASSES, 2, h, w) / digits[:, None, None, None]
    return DigitEvents(means, digits, key, phase)


def digit_event_figure(store: str | os.PathLike[str], device: str, out: str | os.PathLike[str], *,
                       phase: str | None = None, size: tuple[int, int] = (1500, 380)) -> Path:
    """Draw the mean ON (top row) and OFF (bottom row) events per pixel of each class 0-9 with
    one colour bar (events per digit) to the PNG ``out``. ``phase`` defaults to the held-out
    digits when the run has any, else all digits. Returns the PNG's path."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore, QtGui, QtWidgets

    from .window import application

    if phase is None:
        ph = zarr.open_group(str(store), mode="r")[device]["phase"]
        phase = "test" if np.any(np.asarray(ph[:]) == 2) else "all"
    ev = digit_event_means(store, device, phase=phase)
    h, w = ev.means.shape[2:]
    application()
    win = pg.GraphicsLayoutWidget()
    win.resize(*size)
    where = "held-out digits (test phase)" if phase == "test" else "all digits"
    win.ci.addLabel(f"<b>{device}</b>: mean events per pixel of each digit class, {where}, "
                    f"{int(ev.digits.sum())} digits (as N-MNIST, Orchard et al. 2015); "
                    f"x across, y down, in sensor pixels ({w} x {h})",
                    row=0, col=0, colspan=N_CLASSES + 2)
    finite = ev.means[np.isfinite(ev.means)]
    top = float(np.percentile(finite, 99.5)) if finite.size else 1.0
    levels = (0.0, top if top > 0 else 1.0)
    cmap = pg.colormap.get("CET-L3")     # black - red - yellow - white: more events, brighter
    items = []
    for c in range(N_CLASSES):   # the column titles in a row of their own: every image row the same height
        win.ci.addLabel(f"<b>{c}</b> ({ev.digits[c]} digits)", row=1, col=c + 1, size="9pt")
    for r, (pol, name) in enumerate(((1, "ON"), (0, "OFF"))):
        win.ci.addLabel(f"<b>{name}</b>", row=r + 2, col=0, angle=-90)
        for c in range(N_CLASSES):
            plot = win.ci.addPlot(row=r + 2, col=c + 1)
            img = pg.ImageItem(axisOrder="row-major")
            img.setImage(np.nan_to_num(ev.means[c, pol], nan=0.0), autoLevels=False, levels=levels)
            img.setRect(QtCore.QRectF(0.0, 0.0, float(w), float(h)))
            img.setColorMap(cmap)
            plot.addItem(img)
            plot.setAspectLocked(True)
            plot.invertY(True)
            plot.setXRange(0, w, padding=0)
            plot.setYRange(0, h, padding=0)
            plot.setMouseEnabled(x=False, y=False)
            # every image the same size: the same axes on each (ticks in pixels, named in the title)
            font = QtGui.QFont()
            font.setPointSize(7)
            for side in ("left", "bottom"):
                axis = plot.getAxis(side)
                axis.setTickFont(font)
                if max(h, w) <= 60:
                    axis.setTickSpacing(major=10, minor=5)
            plot.getAxis("left").setWidth(24)
            plot.getAxis("bottom").setHeight(18)
            items.append(img)
    bar = pg.ColorBarItem(values=levels, colorMap=cmap, width=14, interactive=False,
                          label="events per digit (per pixel)")
    bar.setImageItem(items)
    win.ci.addItem(bar, row=2, col=N_CLASSES + 1, rowspan=2)
    win.ci.layout.setRowStretchFactor(2, 1)
    win.ci.layout.setRowStretchFactor(3, 1)
    win.show()
    app = QtWidgets.QApplication.instance()
    for _ in range(3):
        app.processEvents()
    image = win.grab().toImage()
    win.close()
    if not image.save(str(out), "PNG"):
        raise OSError(f"{out}: could not write the PNG")
    return Path(out)
