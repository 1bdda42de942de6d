"""Fernando & Sojakka's XOR figure of a run: the mean camera frame of each condition and the
readout's output against the target.

In "Pattern recognition in a bucket" (Fernando & Sojakka 2003, ECAL, LNCS 2801, pp. 588-597,
Fig. 4) the mean image of the water for each of the four input conditions shows why a linear
readout can separate XOR: the (1, 1) picture is not the sum of (0, 1) and (1, 0). Here the
same is drawn from a run store: for a device with an image-like raw stream run on the
``pattern_xor`` task, the frames of the rows after each trial's first ``settle`` rows are
averaged per condition ``(a, b)`` (read from the stored inputs of the two driven motors),
in the test phase (or over the whole run), and drawn side by side with one shared colour
bar in DN, above each readout's output over the test phase against the target.

:func:`xor_mean_frames` is the numbers (tested against numpy on the store);
:func:`xor_figure` draws them with pyqtgraph (the monitor's renderer, off-screen).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from .source import image_streams, run_task

#: condition labels in the order of :attr:`XorMeans.means`: bits (a, b) of inputs 0 and 1
CONDITIONS = ("00", "01", "10", "11")


@dataclass(frozen=True)
class XorMeans:
    """Mean frame per XOR condition.

    Attributes
    ----------
    means : ndarray (4, H, W) float64
        The mean frame of each condition in :data:`CONDITIONS` order (NaN where a condition
        has no row).
    counts : ndarray (4,) int
        Frames averaged per condition.
    stream : str
        The image stream (``stream/column``).
    phase : str
        ``"test"`` or ``"all"``.
    """

    means: np.ndarray
    counts: np.ndarray
    stream: str
    phase: str


def xor_mean_frames(store: str | os.PathLike[str], device: str, *, phase: str = "test",
                    stream: str | None = None, chunk_rows: int = 512) -> XorMeans:
    """The mean frame of each XOR condition of ``device`` in the run ``store``.

    Rows count when they are committed, in the ``phase`` (``"test"``: phase 2; ``"all"``:
    every phase), and at or after row ``settle`` of their trial (rows ``hold`` long from row
    0, as ``pattern_xor`` lays them out). A row's condition is ``2 a + b`` with ``a, b`` its
    inputs 0 and 1 above half their largest value. Frames are read ``chunk_rows`` at a time
    (never the whole stream at once) and summed in float64.

    Raises
    ------
    ValueError
        The run is not a ``pattern_xor`` run, or the device has no image-like raw stream
        with one image per row.
    """
    if phase not in ("test", "all"):
        raise ValueError(f"phase must be 'test' or 'all', got {phase!r}")
    task = run_task(store, "pattern_xor")
    if task is None:
        raise ValueError(f"{store}: not a pattern_xor run")
    hold, settle = int(task.get("hold", 25)), int(task.get("settle", 10))
    g = zarr.open_group(str(store), mode="r")[device]
    images = {im.key: im for im in image_streams(dict(g.attrs.get("spec") or {}))}
    if not images:
        raise ValueError(f"{device}: no image-like raw stream")
    key = stream or next(iter(images))
    im = images[key]
    n = int(g.attrs.get("committed", 0))
    frames = g[f"raw/{im.stream}/{im.column}"]
    if frames.shape[0] < n:
        raise ValueError(f"{device}: {key} has {frames.shape[0]} images for {n} rows (not one per row)")
    u = np.asarray(g["inputs"][:n], dtype=np.float64)
    ph = np.asarray(g["phase"][:n])
    cond = _conditions(u)
    keep = (np.arange(n) % hold >= settle) & ((ph == 2) if phase == "test" else (ph >= 0))
    sums = np.zeros((4, *im.shape))
    counts = np.zeros(4, dtype=np.int64)
    for a in range(0, n, chunk_rows):
        b = min(a + chunk_rows, n)
        k = keep[a:b]
        if not k.any():
            continue
        block = np.asarray(frames[a:b], dtype=np.float64)
        c = cond[a:b]
        for j in range(4):
            sel = k & (c == j)
            if sel.any():
                sums[j] += block[sel].sum(axis=0)
                counts[j] += int(sel.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None, None]
    return XorMeans(means, counts, key, phase)


def _conditions(u: np.ndarray) -> np.ndarray:
    """Condition index ``2 a + b`` of each row from inputs 0 and 1 (a bit is on above half
    of the largest input value)."""
    if u.ndim != 2 or u.shape[1] < 2:
        raise ValueError(f"XOR needs two inputs, the store has inputs of shape {u.shape}")
    level = float(np.nanmax(u[:, :2])) if u.size else 1.0
    bits = np.nan_to_num(u[:, :2]) > 0.5 * (level if level > 0 else 1.0)
    return 2 * bits[:, 0].astype(np.int64) + bits[:, 1].astype(np.int64)


def readout_outputs(store: str | os.PathLike[str], device: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Time (s) of the test rows, their target and each readout's output there."""
    g = zarr.open_group(str(store), mode="r")[device]
    n = int(g.attrs.get("committed", 0))
    dt = float((g.attrs.get("spec") or {}).get("dt", 1.0))
    test = np.flatnonzero(np.asarray(g["phase"][:n]) == 2)
    if len(test) == 0:
        return np.zeros(0), np.zeros(0), {}
    a, b = int(test[0]), int(test[-1]) + 1
    target = np.asarray(g["targets"][a:b], dtype=np.float64)[:, 0]
    outputs = {}
    if "readouts" in g:
        for name, ro in g["readouts"].groups():
            if "predictions" in ro:
                m = min(b, int(ro.attrs.get("consumed", b)))
                p = np.full(b - a, np.nan)
                p[: max(m - a, 0)] = np.asarray(ro["predictions"][a:m], dtype=np.float64)[:, 0]
                outputs[name] = p
    return np.arange(a, b) * dt, target, outputs


def xor_figure(store: str | os.PathLike[str], device: str, out: str | os.PathLike[str], *,
               phase: str = "test", size: tuple[int, int] = (1400, 700)) -> Path:
    """Draw the four mean frames side by side (one colour bar, DN) above the readouts' output
    against the target over the test phase, to the PNG ``out``. Returns its path."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore, QtWidgets

    from .panels import READOUT_COLOURS
    from .window import application

    means = xor_mean_frames(store, device, phase=phase)
    t, target, outputs = readout_outputs(store, device)
    application()
    win = pg.GraphicsLayoutWidget()
    win.resize(*size)
    task = run_task(store, "pattern_xor") or {}
    where = "test phase" if phase == "test" else "whole run"
    win.ci.addLabel(f"<b>{device}</b>: mean camera frame per XOR condition (inputs a, b), {where}, rows "
                    f"{task.get('settle')}-{int(task.get('hold', 0)) - 1} of each trial", row=0, col=0, colspan=5)
    finite = means.means[np.isfinite(means.means)]
    levels = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 255.0)
    if levels[1] <= levels[0]:
        levels = (levels[0], levels[0] + 1.0)
    cmap = pg.ColorMap([0.0, 1.0], [(0, 0, 0), (255, 255, 255)])   # black = 0 DN, as the camera sees it
    h, w = means.means.shape[1:]
    items = []
    for j, label in enumerate(CONDITIONS):
        plot = win.ci.addPlot(row=1, col=j)
        a, b = label
        plot.setTitle(f"a={a}, b={b} (XOR {int(a) ^ int(b)}; {means.counts[j]} frames)")
        img = pg.ImageItem(axisOrder="row-major")
        img.setImage(np.nan_to_num(means.means[j], nan=levels[0]), autoLevels=False, levels=levels)
        img.setRect(QtCore.QRectF(0.0, 0.0, float(w), float(h)))
        img.setColorMap(cmap)
        plot.addItem(img)
        plot.setAspectLocked(True)
        plot.invertY(True)
        plot.setLabel("bottom", "x (pixel)")
        plot.setLabel("left", "y (pixel)" if j == 0 else "")
        items.append(img)
    bar = pg.ColorBarItem(values=levels, colorMap=cmap, width=14, interactive=False, label="mean brightness (DN)")
    bar.setImageItem(items)
    win.ci.addItem(bar, row=1, col=4)
    plot = win.ci.addPlot(row=2, col=0, colspan=4)
    plot.setTitle("readout output against the target (test phase)")
    plot.setLabel("bottom", "time (s)")
    plot.setLabel("left", "output (target: a XOR b)")
    plot.showGrid(x=False, y=True, alpha=0.15)
    shown = [target]
    plot.plot(t, target, pen=pg.mkPen("k", width=1.5), name="target")
    curves = [("target", "k")]
    for i, (name, p) in enumerate(outputs.items()):
        colour = READOUT_COLOURS[i % len(READOUT_COLOURS)]
        plot.plot(t, p, pen=pg.mkPen(colour, width=1), connect="finite")
        curves.append((f"{name} output", colour))
        shown.append(p)
    vals = np.concatenate([s[np.isfinite(s)] for s in shown]) if shown else np.zeros(1)
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    if len(t):
        plot.setXRange(float(t[0]), float(t[-1]), padding=0.01)
    plot.setYRange(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), padding=0)
    # the legend beside the plot (never over the data): a label in the colour bar's column
    legend = "<br>".join(f"<span style='color:{c if c != 'k' else '#000000'}'>&#9473;&#9473;</span> {n}"
                         for n, c in curves)
    win.ci.addLabel(legend, row=2, col=4)
    win.ci.layout.setRowStretchFactor(1, 3)
    win.ci.layout.setRowStretchFactor(2, 2)
    win.show()
    app = QtWidgets.QApplication.instance()
    for _ in range(3):
        app.processEvents()
    image = win.grab().toImage()
    win.close()
    if not image.save(str(out), "PNG"):
        raise OSError(f"{out}: could not write the PNG")
    return Path(out)
