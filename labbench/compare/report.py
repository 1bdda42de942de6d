"""The report of a comparison store: one self-contained HTML page and its Markdown twin.

:func:`write_report` reads a store written by ``labbench compare``
(:mod:`labbench.store.comparison`) and writes, into ``<store>.report/`` by default:

- ``report.html``: figures embedded as PNG data URIs, inline CSS, no script and no external
  URL (a Content-Security-Policy forbids loading anything); provenance in ``<details>``;
- ``report.md`` and the figures as PNG files beside it.

Both hold the heat table (device × entry: the score normalised per entry to [0, 1], 1 the best
device in the entry's direction, 0 the worst, with the raw mean ± std over seeds; ``n/a`` for an
entry a device does not run, ``failed`` where every seed failed), the per-entry bar charts, the
memory-capacity and fading-memory curves of every device (:mod:`.figures`), a cost table (wall
time, device time and, where the device reports them, energy, spikes and stimulation charge),
the failures and warnings, and the provenance of every cell.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib import colormaps, colors

from ..store.comparison import ComparisonReader, rank_cells
from . import figures

__all__ = ["write_report"]

_NA_STATUSES = {"not_applicable", "n/a", "na", "skipped"}
_COST_KEYS = (("wall_s", "wall time", "s"), ("device_s", "device time", "s"), ("energy_J", "energy", "J"),
              ("spikes", "spikes", ""), ("charge_C", "stimulation charge", "C"))
_PROVENANCE_KEYS = ("device", "family", "driver", "mock", "seed", "protocol_source", "protocol", "overrides",
                    "labbench_version", "host", "started")


@dataclass
class _Score:
    """One device on one entry, over its seeds."""

    state: str = "not run"              # ok | partial | failed | n/a | not run
    values: list[float] = field(default_factory=list)
    mean: float | None = None
    std: float | None = None
    score: float | None = None          # normalised, 1 = best
    seeds: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reason: str = ""


@dataclass
class _Suite:
    path: Path
    attrs: dict[str, Any]
    devices: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    cells: list[dict[str, Any]]
    scores: dict[tuple[str, str], _Score]
    curves: dict[str, dict[str, list[figures.Curve]]]
    colours: dict[str, str]

    @property
    def device_names(self) -> list[str]:
        return [d["name"] for d in self.devices]


# --- reading -----------------------------------------------------------------------------------

def _not_applicable(raw: Any, devices: list[str], entries: list[str]) -> dict[tuple[str, str], str]:
    """``{(device, entry): reason}`` from the root's ``not_applicable``, in whichever shape it comes:
    a list of ``{device, entry, reason}`` or of ``[device, entry]``, or a mapping keyed by device
    (or by entry) to a list of the others or to ``{other: reason}``."""
    out: dict[tuple[str, str], str] = {}
    if isinstance(raw, dict):
        by_entry = bool(raw) and all(k in entries for k in raw) and not all(k in devices for k in raw)
        for key, val in raw.items():
            others = val.items() if isinstance(val, dict) else ((v, "") for v in (val if isinstance(val, list)
                                                                                   else [val]))
            for other, reason in others:
                pair = (str(other), str(key)) if by_entry else (str(key), str(other))
                out[pair] = str(reason or "")
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and "device" in item and "entry" in item:
                out[(str(item["device"]), str(item["entry"]))] = str(item.get("reason") or "")
            elif isinstance(item, (list, tuple)) and len(item) >= 2:
                out[(str(item[0]), str(item[1]))] = str(item[2]) if len(item) > 2 else ""
    return out


def _maximise(entry: dict[str, Any], cells: list[dict[str, Any]]) -> bool:
    if entry.get("maximise") is not None:
        return bool(entry["maximise"])
    for c in cells:
        p = c.get("primary") or {}
        if c.get("entry") == entry["name"] and p.get("maximise") is not None:
            return bool(p["maximise"])
    return True


def _read(store: Path) -> _Suite:
    reader = ComparisonReader(store)
    attrs = reader.attrs
    cells = list(reader.cells())
    devices = [dict(d) if isinstance(d, dict) else {"name": str(d)} for d in attrs.get("devices") or []]
    entries = [dict(e) if isinstance(e, dict) else {"name": str(e)} for e in attrs.get("entries") or []]
    for c in cells:                     # cells of devices or entries the root does not list
        if c["device"] not in {d["name"] for d in devices}:
            devices.append({"name": c["device"], "family": c.get("family")})
        if c["entry"] not in {e["name"] for e in entries}:
            entries.append({"name": c["entry"], "metric": (c.get("primary") or {}).get("name")})
    for e in entries:
        e["maximise"] = _maximise(e, cells)
        if not e.get("metric"):
            e["metric"] = next(((c.get("primary") or {}).get("name") for c in cells if c["entry"] == e["name"]),
                               None) or e["name"]
    names = [d["name"] for d in devices]
    order = {e["name"]: i for i, e in enumerate(entries)}
    cells.sort(key=lambda c: (names.index(c["device"]), order[c["entry"]], int(c["seed"])))
    na = _not_applicable(attrs.get("not_applicable"), names, [e["name"] for e in entries])
    ranking = rank_cells(cells, {e["name"]: e for e in entries})
    scores: dict[tuple[str, str], _Score] = {}
    for e in entries:
        for d in names:
            s = scores[(d, e["name"])] = _Score()
            mine = [c for c in cells if c["device"] == d and c["entry"] == e["name"]]
            real = [c for c in mine if str(c.get("status")) not in _NA_STATUSES]
            s.seeds, s.failed = len(real), sum(c.get("status") != "complete" for c in real)
            s.errors = [f"seed {c['seed']}: {c.get('error') or c.get('status')}" for c in real
                        if c.get("status") != "complete"]
            s.warnings = [f"seed {c['seed']}: {w}" for c in mine for w in (c.get("warnings") or [])]
            row = next((r for r in ranking.get(e["name"], []) if r["device"] == d), None)
            if row and row["n"]:
                s.values, s.mean, s.std = list(row["values"]), row["mean"], row["std"]
                s.state = "partial" if s.failed else "ok"
            elif real:
                s.state = "failed"
            elif (d, e["name"]) in na or mine:
                s.state = "n/a"
                s.reason = na.get((d, e["name"])) or next((str(c.get("error") or "") for c in mine), "")
        means = [scores[(d, e["name"])].mean for d in names if scores[(d, e["name"])].mean is not None]
        if means:
            lo, hi = min(means), max(means)
            for d in names:
                s = scores[(d, e["name"])]
                if s.mean is not None:
                    if hi == lo:
                        s.score = 1.0
                    else:
                        frac = (s.mean - lo) / (hi - lo)
                        s.score = frac if e["maximise"] else 1.0 - frac
    curves: dict[str, dict[str, list[figures.Curve]]] = {"memory_curve": {}, "fading": {}}
    columns = {"memory_curve": ("delay", "capacity"), "fading": ("step", "distance")}
    for c in cells:
        if c.get("status") != "complete":
            continue
        for name, cols in reader.curves(c["device"], c["entry"], c["seed"]).items():
            if name in columns and all(k in cols for k in columns[name]):
                x, y = columns[name]
                curves[name].setdefault(c["device"], []).append((cols[x], cols[y]))
    for name in curves:                 # the suite's device order
        curves[name] = {d: curves[name][d] for d in names if d in curves[name]}
    return _Suite(store, attrs, devices, entries, cells, scores, curves, figures.device_colours(names))


# --- formatting --------------------------------------------------------------------------------

def _num(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.3g}"
    return str(v)


def _si(v: float | None, unit: str) -> str:
    """``0.00123, "J"`` → ``"1.23 mJ"``."""
    if v is None or not math.isfinite(v):
        return "—"
    if not unit:
        return f"{int(round(v)):,}"
    if unit == "s" and abs(v) >= 100:
        return f"{v:,.0f} s"
    if v == 0:
        return f"0 {unit}"
    exp = max(-15, min(9, 3 * math.floor(math.log10(abs(v)) / 3)))
    prefix = {-15: "f", -12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}[exp]
    return f"{v / 10 ** exp:.3g} {prefix}{unit}"


def _mean_std(mean: float, std: float | None) -> str:
    """``mean ± std``, the std to 2 significant digits and the mean to the same decimal place."""
    if std is None or not math.isfinite(std):
        return _num(mean)
    if std == 0:
        return f"{_num(mean)} ± 0"
    if not 1e-3 <= abs(mean) < 1e6 and mean != 0:
        return f"{mean:.3g} ± {std:.2g}"
    dec = min(8, 1 - math.floor(math.log10(std)))
    if dec <= 0:
        step = 10 ** -dec
        return f"{round(mean / step) * step:.0f} ± {round(std / step) * step:.0f}"
    return f"{mean:.{dec}f} ± {std:.{dec}f}"


def _raw(s: _Score) -> str:
    if s.mean is None:
        return ""
    return _mean_std(s.mean, s.std) if len(s.values) > 1 else _num(s.mean)


def _costs(suite: _Suite) -> dict[str, dict[str, float | None]]:
    """Per device, each cost summed over its cells (``None`` where no cell reports it)."""
    out: dict[str, dict[str, float | None]] = {}
    for d in suite.device_names:
        row: dict[str, float | None] = {"cells": 0}
        for key, _, _ in _COST_KEYS:
            vals = [c["cost"][key] for c in suite.cells if c["device"] == d and isinstance(c.get("cost"), dict)
                    and isinstance(c["cost"].get(key), (int, float))]
            row[key] = float(sum(vals)) if vals else None
        row["cells"] = sum(c["device"] == d for c in suite.cells)
        out[d] = row
    return out


def _provenance(cell: dict[str, Any]) -> dict[str, Any]:
    """The cell's provenance, its known keys first (device, family and seed from the cell itself)."""
    prov = dict(cell.get("provenance") or {})
    for key in ("device", "family", "seed"):
        prov.setdefault(key, cell.get(key))
    ordered = {k: prov.pop(k) for k in _PROVENANCE_KEYS if k in prov}
    return {**ordered, **prov}


def _text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True) if v else "—"
    return _num(v)


def _mean_score(suite: _Suite, device: str) -> tuple[float | None, int]:
    vals = [suite.scores[(device, e["name"])].score for e in suite.entries]
    vals = [v for v in vals if v is not None]
    return (sum(vals) / len(vals) if vals else None), len(vals)


# --- figures -----------------------------------------------------------------------------------

@dataclass
class _Figure:
    name: str
    title: str
    caption: str
    png: bytes


def _figures(suite: _Suite) -> list[_Figure]:
    names = suite.device_names
    values = {e["name"]: {d: suite.scores[(d, e["name"])].values for d in names} for e in suite.entries}
    marks = {e["name"]: {d: _mark(suite.scores[(d, e["name"])]) for d in names} for e in suite.entries}
    out = []
    fig = figures.task_bars(suite.entries, names, values, marks, suite.colours)
    out.append(_Figure("bars", "Every entry, every device", "Bars: mean over the complete seeds; black bars: "
                       "±1 std; dots: one seed each. A device keeps its place and colour in every panel.",
                       figures.png_bytes(fig)))
    if suite.curves["memory_curve"]:
        fig = figures.memory_capacity(suite.curves["memory_curve"], suite.colours)
        out.append(_Figure("memory_capacity", "Memory capacity", "Capacity against delay; line: mean over "
                           "seeds, band: min-max; MC in the legend is the sum of the mean curve.",
                           figures.png_bytes(fig)))
    if suite.curves["fading"]:
        fig = figures.fading(suite.curves["fading"], suite.colours)
        out.append(_Figure("fading", "Fading memory", "Distance between two runs of the device started from different "
                           "states and then given the same input, relative to where they started (log scale); a "
                           "fading memory (the echo-state property) decays towards zero, down to the device's noise.", figures.png_bytes(fig)))
    return out


def _mark(s: _Score) -> str:
    if s.state == "failed":
        return "failed"
    if s.state == "partial":
        return f"{s.failed}/{s.seeds} failed"
    return s.state if s.state in ("n/a", "not run") else ""


# --- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:1.5em auto;
     max-width:1500px;padding:0 1em;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:.9em}.notice{background:#fff4e5;border-left:4px solid #e69f00;padding:.4em .8em}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
table.heat td{text-align:center;min-width:7.5em}
table.heat td .score{display:block;font-size:1.25em;font-weight:600}
table.heat td .raw,table.heat td .note{display:block;font-size:.82em}
td.na{background:#eeeeee;color:#666}
td.failed{background:repeating-linear-gradient(45deg,#fde0e0,#fde0e0 6px,#f7c6c6 6px,#f7c6c6 12px);
          color:#9b0000;font-weight:600}
td.notrun{background:#fafafa;color:#999}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.4em;vertical-align:-1px;
        border:1px solid #0003}
.sub{color:#666;font-size:.82em;display:block;font-weight:normal}
.badge{background:#e8e8ff;color:#333;border-radius:3px;padding:0 .3em;font-size:.78em;margin-left:.3em}
.legend{font-size:.82em;color:#555}
figure{margin:.6em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
.row{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}.row figure{flex:1 1 560px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.prov td{white-space:nowrap}.scroll{overflow-x:auto}code{white-space:pre-wrap}
details{margin:.3em 0}summary{cursor:pointer}pre{background:#f6f6f6;padding:.6em;overflow-x:auto}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _text_colour(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return "#000000" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.45 else "#ffffff"


def _heat_colour(score: float) -> str:
    return colors.to_hex(colormaps["viridis"](0.15 + 0.85 * score))


def _device_cell(suite: _Suite, d: dict[str, Any]) -> str:
    sub = " · ".join(str(d[k]) for k in ("family", "substrate") if d.get(k))
    mock = '<span class="badge" title="a simulated stand-in for the hardware">mock</span>' if d.get("mock") else ""
    return (f'<th scope="row"><span class="swatch" style="background:{suite.colours[d["name"]]}"></span>'
            f'{_e(d["name"])}{mock}<span class="sub">{_e(sub)}</span></th>')


def _heat_html(suite: _Suite) -> str:
    head = "".join(
        f'<th data-entry="{_e(e["name"])}">{_e(e["name"])}<span class="sub">{_e(e["metric"])}'
        f'{" (" + _e(e["unit"]) + ")" if e.get("unit") else ""}, {"higher" if e["maximise"] else "lower"} '
        f'is better</span></th>' for e in suite.entries)
    rows = []
    for d in suite.devices:
        tds = []
        for e in suite.entries:
            s = suite.scores[(d["name"], e["name"])]
            tip = "; ".join([*s.errors, *s.warnings, s.reason] if s.reason else [*s.errors, *s.warnings])
            attrs = f'data-device="{_e(d["name"])}" data-entry="{_e(e["name"])}" data-state="{s.state}"'
            if tip:
                attrs += f' title="{_e(tip)}"'
            if s.state in ("ok", "partial"):
                bg = _heat_colour(s.score if s.score is not None else 0.0)
                note = []
                if s.failed:
                    note.append(f"⚠ {s.failed}/{s.seeds} seeds failed")
                if s.warnings:
                    note.append(f"⚠ {len(s.warnings)} warning{'s' * (len(s.warnings) > 1)}")
                tds.append(f'<td {attrs} data-score="{s.score:.6f}" style="background:{bg};color:{_text_colour(bg)}">'
                           f'<span class="score">{s.score:.2f}</span><span class="raw">{_e(_raw(s))}</span>'
                           + "".join(f'<span class="note">{_e(n)}</span>' for n in note) + "</td>")
            elif s.state == "failed":
                tds.append(f'<td {attrs} class="failed">✗ failed<span class="note">{s.failed}/{s.seeds} seeds'
                           '</span></td>')
            elif s.state == "n/a":
                tds.append(f'<td {attrs} class="na">n/a</td>')
            else:
                tds.append(f'<td {attrs} class="notrun">not run</td>')
        mean, n = _mean_score(suite, d["name"])
        tds.append(f'<td class="num">{"—" if mean is None else f"{mean:.2f}"}<span class="sub">over {n}</span></td>')
        rows.append(f'<tr data-device="{_e(d["name"])}">{_device_cell(suite, d)}{"".join(tds)}</tr>')
    return (f'<table class="heat" id="heat"><thead><tr><th>device</th>{head}<th>mean score</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            '<p class="legend">Score: per entry, 1 = the best device in the entry\'s direction, 0 = the worst '
            '(colour from dark to yellow); below it the raw mean ± sample std over seeds. '
            '<b>n/a</b>: the device does not run that entry; <b>✗ failed</b>: every seed failed (hover for the '
            'error); <b>not run</b>: no cell in the store (an interrupted suite).</p>')


def _cost_html(suite: _Suite) -> str:
    costs = _costs(suite)
    head = "".join(f"<th>{_e(label)}{f' ({unit})' if unit else ''}</th>" for _, label, unit in _COST_KEYS)
    rows = []
    for d in suite.devices:
        c = costs[d["name"]]
        tds = "".join(f'<td class="num" data-cost="{k}">{_e(_si(c[k], unit))}</td>' for k, _, unit in _COST_KEYS)
        rows.append(f'<tr data-device="{_e(d["name"])}">{_device_cell(suite, d)}<td class="num">{c["cells"]}</td>'
                    f"{tds}</tr>")
    per_cell = []
    for cell in suite.cells:
        cost = cell.get("cost") or {}
        tds = "".join(f'<td class="num">{_e(_si(cost.get(k), unit))}</td>' for k, _, unit in _COST_KEYS)
        per_cell.append(f"<tr><td>{_e(cell['device'])}</td><td>{_e(cell['entry'])}</td><td>{cell['seed']}</td>"
                        f"<td>{_e(cell.get('status'))}</td>{tds}</tr>")
    return (f'<table id="cost"><thead><tr><th>device</th><th>cells</th>{head}</tr></thead><tbody>{"".join(rows)}'
            '</tbody></table><p class="legend">Summed over every cell of the device; — where the device does not '
            'report that cost.</p>'
            f'<details><summary>per cell</summary><table><thead><tr><th>device</th><th>entry</th><th>seed</th>'
            f'<th>status</th>{head}</tr></thead><tbody>{"".join(per_cell)}</tbody></table></details>')


def _issues(suite: _Suite) -> list[tuple[str, str, str]]:
    """(cell, kind, message) for every failed cell and every warning."""
    out = []
    for c in suite.cells:
        where = f"{c['device']} / {c['entry']} / seed {c['seed']}"
        if c.get("status") != "complete" and str(c.get("status")) not in _NA_STATUSES:
            out.append((where, str(c.get("status")), str(c.get("error") or "(no error message)")))
        out += [(where, "warning", str(w)) for w in c.get("warnings") or []]
    return out


def _provenance_html(suite: _Suite) -> str:
    parts = []
    for d in suite.device_names:
        cells = [c for c in suite.cells if c["device"] == d]
        provs = [_provenance(c) for c in cells]
        keys = list(dict.fromkeys(k for p in provs for k in p if k not in ("device",)))
        head = "".join(f"<th>{_e(k)}</th>" for k in ["entry", "status", *keys])
        rows = []
        for c, p in zip(cells, provs):
            tds = []
            for k in keys:
                v = _text(p.get(k))
                tds.append(f"<td><details><summary>{_e(v[:40])}…</summary><pre>{_e(v)}</pre></details></td>"
                           if len(v) > 60 or "\n" in v else f"<td>{_e(v)}</td>")
            rows.append(f"<tr><td>{_e(c['entry'])}</td><td>{_e(c.get('status'))}</td>{''.join(tds)}</tr>")
        parts.append(f'<details class="prov" data-device="{_e(d)}"><summary><span class="swatch" style="background:'
                     f'{suite.colours[d]}"></span>{_e(d)} — {len(cells)} cells</summary><div class="scroll">'
                     f'<table class="prov"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
                     '</div></details>')
    return "".join(parts)


def _definitions_html(suite: _Suite) -> str:
    dkeys = ["name", "family", "substrate", "mock", "encoding"]
    ekeys = ["name", "metric", "maximise", "unit", "paper"]
    dev = "".join("<tr>" + "".join(f"<td>{_e(_text(d.get(k)))}</td>" for k in dkeys) + "</tr>" for d in suite.devices)
    ent = "".join("<tr>" + "".join(f"<td>{_e(_text(e.get(k)))}</td>" for k in ekeys) + "</tr>" for e in suite.entries)
    return (f'<div class="row"><table><thead><tr>{"".join(f"<th>{k}</th>" for k in dkeys)}</tr></thead>'
            f'<tbody>{dev}</tbody></table><table><thead><tr>{"".join(f"<th>{k}</th>" for k in ekeys)}</tr></thead>'
            f'<tbody>{ent}</tbody></table></div>')


def _title(suite: _Suite) -> str:
    return f"labbench compare — {suite.attrs.get('suite_name') or suite.path.stem}"


def _meta(suite: _Suite) -> list[tuple[str, str]]:
    a = suite.attrs
    return [("store", str(suite.path)), ("status", str(a.get("status"))), ("started", str(a.get("started"))),
            ("ended", str(a.get("ended"))), ("seeds", _text(a.get("seeds"))), ("host", str(a.get("host"))),
            ("labbench", str(a.get("labbench_version"))), ("suite file", str(a.get("suite_source") or "—"))]


def _html(suite: _Suite, figs: list[_Figure]) -> str:
    a = suite.attrs
    meta = " · ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in _meta(suite))
    notice = ""
    if a.get("status") != "complete":
        notice = (f'<p class="notice">The suite is <b>{_e(a.get("status"))}</b>'
                  f'{": " + _e(a.get("error")) if a.get("error") else ""}; the report shows the cells written.</p>')

    def fig_html(f: _Figure) -> str:
        data = base64.b64encode(f.png).decode("ascii")
        return (f'<figure id="fig-{f.name}"><img src="data:image/png;base64,{data}" alt="{_e(f.title)}">'
                f"<figcaption>{_e(f.caption)}</figcaption></figure>")
    bars = "".join(fig_html(f) for f in figs if f.name == "bars")
    curves = "".join(fig_html(f) for f in figs if f.name != "bars")
    if not curves:
        curves = "<p>No memory-capacity or fading-memory curves in this store.</p>"
    issues = _issues(suite)
    issues_html = ("<table><thead><tr><th>cell</th><th>kind</th><th>message</th></tr></thead><tbody>"
                   + "".join(f"<tr><td>{_e(w)}</td><td>{_e(k)}</td><td><code>{_e(m)}</code></td></tr>"
                             for w, k, m in issues) + "</tbody></table>") if issues else "<p>None.</p>"
    suite_text = (f'<details><summary>the suite file</summary><pre>{_e(a["suite_text"])}</pre></details>'
                  if a.get("suite_text") else "")
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(_title(suite))}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(_title(suite))}</h1>
<p class="meta">{meta}</p>{notice}
<h2>Scores</h2>{_heat_html(suite)}
<h2>Per entry</h2>{bars}
<h2>Memory</h2><div class="row">{curves}</div>
<h2>Cost</h2>{_cost_html(suite)}
<h2>Failures and warnings</h2>{issues_html}
<h2>Devices and entries</h2>{_definitions_html(suite)}{suite_text}
<h2>Provenance</h2>{_provenance_html(suite)}
</body></html>
"""


# --- Markdown ----------------------------------------------------------------------------------

def _md(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows])


def _markdown(suite: _Suite, figs: list[_Figure]) -> str:
    out = [f"# {_title(suite)}", "", " · ".join(f"{k}: **{_md(v)}**" for k, v in _meta(suite)), ""]
    if suite.attrs.get("status") != "complete":
        out += [f"> The suite is **{suite.attrs.get('status')}**"
                f"{': ' + _md(suite.attrs.get('error')) if suite.attrs.get('error') else ''}.", ""]
    rows = []
    for d in suite.devices:
        row = [d["name"] + (" (mock)" if d.get("mock") else "")]
        for e in suite.entries:
            s = suite.scores[(d["name"], e["name"])]
            if s.state in ("ok", "partial"):
                row.append(f"**{s.score:.2f}** ({_raw(s)})" + (f" ⚠ {s.failed}/{s.seeds} failed" if s.failed else ""))
            else:
                row.append({"failed": "✗ failed", "n/a": "n/a"}.get(s.state, "not run"))
        mean, n = _mean_score(suite, d["name"])
        row.append("—" if mean is None else f"{mean:.2f} (over {n})")
        rows.append(row)
    head = ["device", *(f"{e['name']} ({'↑' if e['maximise'] else '↓'})" for e in suite.entries), "mean score"]
    out += ["## Scores", "", _md_table(head, rows), "",
            "Score: per entry, 1 = the best device in the entry's direction (↑ higher, ↓ lower is better), 0 = the "
            "worst; in brackets the raw mean ± sample std over seeds. n/a: the device does not run that entry.", ""]
    for f in figs:
        out += [f"## {f.title}", "", f"![{f.title}]({f.name}.png)", "", f.caption, ""]
    costs = _costs(suite)
    out += ["## Cost", "", _md_table(["device", "cells", *(f"{lab} ({u})" if u else lab for _, lab, u in _COST_KEYS)],
                                     [[d, _num(c["cells"]), *(_si(c[k], u) for k, _, u in _COST_KEYS)]
                                      for d, c in costs.items()]), ""]
    issues = _issues(suite)
    out += ["## Failures and warnings", "", _md_table(["cell", "kind", "message"], [list(i) for i in issues])
            if issues else "None.", ""]
    provs = [_provenance(c) for c in suite.cells]
    keys = list(dict.fromkeys(k for p in provs for k in p))
    out += ["## Provenance", "", _md_table(["entry", "status", *keys],
                                           [[c["entry"], str(c.get("status")), *(_text(p.get(k)) for k in keys)]
                                            for c, p in zip(suite.cells, provs)]), ""]
    return "\n".join(out)


# --- the report ----------------------------------------------------------------------------------

def write_report(store: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None
                 ) -> dict[str, Path | list[Path]]:
    """Write the HTML report and its Markdown twin of a comparison store.

    Parameters
    ----------
    store : path-like
        A comparison store (:mod:`labbench.store.comparison`), finished or not.
    out_dir : path-like, optional
        Where to write; default ``<store>.report/`` beside the store. Created if missing; the
        files it already holds of an earlier report are overwritten.

    Returns
    -------
    dict
        ``{"html": Path, "markdown": Path, "figures": [Path, ...]}`` (the PNG files beside the
        Markdown; the HTML embeds the same images).

    Raises
    ------
    labbench.store.layout.StoreError
        When ``store`` is not a comparison store.
    """
    store = Path(store)
    suite = _read(store)
    out = Path(out_dir) if out_dir is not None else store.parent / f"{store.name}.report"
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(suite)
    paths = []
    for f in figs:
        p = out / f"{f.name}.png"
        p.write_bytes(f.png)
        paths.append(p)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(_html(suite, figs), encoding="utf-8")
    md_path.write_text(_markdown(suite, figs), encoding="utf-8")
    return {"html": html_path, "markdown": md_path, "figures": paths}
