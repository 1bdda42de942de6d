"""The figures of a comparison report, drawn with matplotlib's Agg canvas (no display, no pyplot).

One function per figure, each returning a :class:`matplotlib.figure.Figure`:

- :func:`task_bars`: one bar chart per battery entry, side by side, every device at the same
  place in each, with the spread of its seeds (±1 std and a dot per seed);
- :func:`memory_capacity`: capacity against delay of every device, in one plot;
- :func:`fading`: the distance between two runs from different initial states under the same input, every
  device in one plot, log y.

Every device keeps its colour in every figure (:func:`device_colours`); legends sit outside the
axes (in a row of their own above the bar charts, to the right of the curves), never on data.
:func:`png_bytes` renders a figure to PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

__all__ = ["PALETTE", "device_colours", "fading", "memory_capacity", "png_bytes", "task_bars"]

#: Okabe-Ito (readable by colour-blind people), the monitor's order; then darker extras
PALETTE = ("#D55E00", "#0072B2", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B",
           "#7F7F7F", "#9467BD", "#BCBD22", "#17BECF")
DPI = 110

Curve = tuple[np.ndarray, np.ndarray]


def device_colours(devices: Sequence[str]) -> dict[str, str]:
    """One colour per device, in the given order (the suite's), the same in every figure and table.

    Parameters
    ----------
    devices : sequence of str
        The device names, in the suite's order.

    Returns
    -------
    dict
        ``{device: "#rrggbb"}``.
    """
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(devices)}


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg canvas, white background)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _axis_label(metric: str, unit: str | None) -> str:
    return f"{metric} ({unit})" if unit else f"{metric} (unitless)"


def task_bars(entries: Sequence[Mapping[str, Any]], devices: Sequence[str],
              values: Mapping[str, Mapping[str, Sequence[float]]],
              marks: Mapping[str, Mapping[str, str]], colours: Mapping[str, str]) -> Figure:
    """Per battery entry, a bar per device (mean over seeds), ±1 std and a dot per seed.

    Parameters
    ----------
    entries : sequence of dict
        The suite's entries (``name``, ``metric``, ``maximise``, ``unit``), one panel each.
    devices : sequence of str
        Every device, in the suite's order: each has the same x place in every panel.
    values : dict
        ``values[entry][device]``: the primary values of the device's complete seeds.
    marks : dict
        ``marks[entry][device]``: ``"n/a"``, ``"failed"`` or ``"not run"`` where a device has no
        value (written in the panel at the device's place).
    colours : dict
        ``{device: colour}`` (:func:`device_colours`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = max(len(entries), 1)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    width = max(3.2, 0.55 * len(devices) + 1.6)
    fig = Figure(figsize=(width * ncols, 3.3 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    x = np.arange(len(devices))
    rng = np.random.default_rng(0)
    for k, ax in enumerate(axes.flat):
        if k >= len(entries):
            ax.set_axis_off()
            continue
        entry = entries[k]
        name = entry["name"]
        arrow = "higher" if entry.get("maximise", True) else "lower"
        ax.set_title(f"{name}\n({arrow} is better)", fontsize=10)
        ax.set_ylabel(_axis_label(entry.get("metric") or name, entry.get("unit")), fontsize=9)
        label_at = blended_transform_factory(ax.transData, ax.transAxes)
        for i, device in enumerate(devices):
            vals = np.asarray(values.get(name, {}).get(device, []), dtype=float)
            if vals.size:
                mean = float(vals.mean())
                std = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
                ax.bar(i, mean, width=0.7, color=colours[device], alpha=0.85, edgecolor="black", linewidth=0.5)
                if vals.size > 1:
                    ax.errorbar(i, mean, yerr=std, color="black", capsize=4, linewidth=1.2, zorder=3)
                jitter = rng.uniform(-0.12, 0.12, vals.size) if vals.size > 1 else np.zeros(1)
                ax.scatter(i + jitter, vals, s=14, color="white", edgecolor="black", linewidth=0.8, zorder=4)
            mark = marks.get(name, {}).get(device)
            if mark:
                failed = mark.startswith("failed") or "failed" in mark
                ax.text(i, 0.03, mark, transform=label_at, rotation=90, ha="center", va="bottom", fontsize=8,
                        color="#B00020" if failed else "#555555", fontweight="bold" if failed else "normal")
        ax.set_xticks(x, devices, rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(devices) - 0.4)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=8)
    handles: list[Any] = [Patch(facecolor=colours[d], edgecolor="black", linewidth=0.5, label=d) for d in devices]
    handles += [Line2D([], [], marker="o", linestyle="none", markerfacecolor="white", markeredgecolor="black",
                       label="one seed"),
                Line2D([], [], color="black", marker="_", markersize=8, label="±1 std over seeds")]
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 8), fontsize=9, frameon=False)
    return fig


def _curves_axes(curves: Mapping[str, Sequence[Curve]], colours: Mapping[str, str], *, log_y: bool,
                 total_label: str | None) -> tuple[Figure, Any]:
    fig = Figure(figsize=(7.6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for device, seeds in curves.items():
        seeds = [(np.asarray(xx, float), np.asarray(yy, float)) for xx, yy in seeds if len(xx)]
        if not seeds:
            continue
        colour = colours[device]
        same_x = all(s[0].shape == seeds[0][0].shape and np.array_equal(s[0], seeds[0][0]) for s in seeds)
        if same_x:
            xs = seeds[0][0]
            ys = np.vstack([s[1] for s in seeds])
            mean = ys.mean(axis=0)
            label = device
            if total_label:
                label = f"{device} ({total_label} = {float(np.nansum(mean)):.3g})"
            ax.plot(xs, mean, color=colour, linewidth=1.8, marker="o" if len(xs) <= 40 else None, markersize=3,
                    label=label)
            if len(seeds) > 1:
                lo, hi = ys.min(axis=0), ys.max(axis=0)
                if log_y:
                    lo = np.where(lo > 0, lo, np.nan)
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.18, linewidth=0)
        else:
            for j, (xs, ys) in enumerate(seeds):
                ax.plot(xs, ys, color=colour, linewidth=1.2, alpha=0.8, label=device if j == 0 else None)
    if log_y:
        ax.set_yscale("log", nonpositive="mask")
    ax.grid(alpha=0.3, which="both" if log_y else "major")
    return fig, ax


def _legend_right(fig: Figure, ax: Any, note: str) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if len(handles):
        handles.append(Patch(facecolor="#999999", alpha=0.3, label=note))
        labels.append(note)
        fig.legend(handles, labels, loc="outside right upper", fontsize=9, frameon=False)


def memory_capacity(curves: Mapping[str, Sequence[Curve]], colours: Mapping[str, str]) -> Figure:
    """Capacity MC_k against delay k of every device in one plot (mean over seeds, min-max band).

    Parameters
    ----------
    curves : dict
        ``{device: [(delay, capacity), ...]}``, one pair per seed.
    colours : dict
        ``{device: colour}`` (:func:`device_colours`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _curves_axes(curves, colours, log_y=False, total_label="MC")
    ax.set_xlabel("delay k (rows, i.e. input steps)")
    ax.set_ylabel("capacity MC_k = r² (unitless, 0 to 1)")
    ax.set_title("Memory capacity against delay", fontsize=11)
    ax.set_ylim(bottom=0)
    _legend_right(fig, ax, "min-max over seeds")
    return fig


def fading(curves: Mapping[str, Sequence[Curve]], colours: Mapping[str, str]) -> Figure:
    """Distance between two runs from different initial states under the same input, against time,
    every device, log y (relative to the initial distance: ``d(0) = 1``).

    Parameters
    ----------
    curves : dict
        ``{device: [(step, distance), ...]}``, one pair per seed.
    colours : dict
        ``{device: colour}`` (:func:`device_colours`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _curves_axes(curves, colours, log_y=True, total_label=None)
    ax.set_xlabel("time since the shared input began (rows, i.e. input steps)")
    ax.set_ylabel("relative distance d(t) = ‖x_a − x_b‖ / d(0) (unitless, log)")
    ax.set_title("Fading memory: two runs from different states, same input", fontsize=11)
    _clip_long_curve(ax, curves)
    _legend_right(fig, ax, "min-max over seeds")
    return fig


def _clip_long_curve(ax: Any, curves: Mapping[str, Sequence[Curve]]) -> None:
    """When one device's curve runs more than twice as long as every other's, cut the x axis
    at the others' length (so theirs are not squeezed into a corner) and say where it goes on."""
    ends = sorted(((max(float(np.max(x)) for x, _ in seeds if len(x)), device)
                   for device, seeds in curves.items() if any(len(x) for x, _ in seeds)), reverse=True)
    if len(ends) < 2 or ends[0][0] <= 2 * ends[1][0]:
        return
    cut = ends[1][0] * 1.05
    ax.set_xlim(0, cut)
    clipped = [d for end, d in ends if end > cut]
    ax.annotate(f"{', '.join(clipped)}: continues to {ends[0][0]:.0f} rows →", xy=(1, 0), xycoords="axes fraction",
                xytext=(-4, 4), textcoords="offset points", ha="right", va="bottom", fontsize=8, color="#444444")
