"""The report of a comparison store (labbench/compare/report.py): HTML, Markdown, figures.

A synthetic but plausible store (6 substrates × 6 battery entries × 2 seeds, an entry one device
does not run, a device whose every seed failed on one entry, one failed seed of another, memory
and fading curves) is written with the real ComparisonStore; the report of it is checked for
being self-contained (no external URL, no script, every figure a decodable PNG), for its heat
table (a row per device, a column per entry, n/a and failed markers, the best device at 1.0),
its Markdown twin and its cost table; and headless Chromium opens the page (no console error,
every image decoded) and screenshots it into the report's folder.
"""

from __future__ import annotations

import base64
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from labbench.compare.report import write_report
from labbench.store.comparison import ComparisonStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = ("install Debian's Chromium and its driver: `apt-get install -y --no-install-recommends chromium "
                "chromium-driver` (as root), or `bash .ci/chromium.sh`")

# name, family, substrate, mock, and how good it is (0..1) at everything
DEVICES = [("esn", "esn", "software", False, 0.9), ("lsm", "lsm", "software (spiking)", False, 0.7),
           ("mea", "mea", "biological culture", True, 0.35), ("bucket", "bucket", "water", True, 0.45),
           ("dvs_lsm", "dvs", "event camera → LSM", True, 0.55), ("loihi", "loihi", "neuromorphic", True, 0.75)]
ENTRIES = [{"name": "memory_capacity", "metric": "MC", "maximise": True, "unit": "delays", "paper": "Jaeger 2001"},
           {"name": "narma10", "metric": "NRMSE", "maximise": False, "unit": "", "paper": "Atiya & Parlos 2000"},
           {"name": "temporal_xor", "metric": "accuracy", "maximise": True, "unit": "fraction", "paper": ""},
           {"name": "spoken_digits", "metric": "accuracy", "maximise": True, "unit": "fraction", "paper": ""},
           {"name": "kernel_rank", "metric": "kernel − generalisation rank", "maximise": True, "unit": "dimensions",
            "paper": "Legenstein & Maass 2007"},
           {"name": "fading_memory", "metric": "half-life", "maximise": False, "unit": "rows", "paper": ""}]
SEEDS = [0, 1]
NOT_APPLICABLE = ("dvs_lsm", "narma10")
ALL_FAILED = ("mea", "temporal_xor")        # both seeds
ONE_FAILED = ("bucket", "spoken_digits", 1)  # one seed


def _value(entry: str, quality: float, seed: int) -> float:
    jitter = 0.03 * (1 if seed else -1) * (1 + quality)
    return {"memory_capacity": 40 * quality + 3 * jitter, "narma10": 1.0 - 0.8 * quality + jitter,
            "temporal_xor": 0.5 + 0.5 * quality + jitter / 3, "spoken_digits": 0.1 + 0.85 * quality + jitter / 3,
            "kernel_rank": round(60 * quality + 10 * jitter), "fading_memory": 30 - 25 * quality + 5 * jitter}[entry]


def _cost(family: str, rng: np.random.Generator) -> dict:
    cost = {"wall_s": float(rng.uniform(0.5, 3)), "device_s": None, "energy_J": None, "spikes": None,
            "charge_C": None}
    if family == "esn":
        cost["device_s"] = cost["wall_s"] * 0.8
    if family in ("lsm", "dvs", "mea", "loihi"):
        cost["spikes"] = int(rng.integers(10_000, 2_000_000))
    if family == "loihi":
        cost["device_s"], cost["energy_J"] = 0.12, float(rng.uniform(1e-4, 5e-4))
    if family == "mea":
        cost["device_s"], cost["charge_C"] = 300.0, float(rng.uniform(1e-6, 5e-6))
    if family == "bucket":
        cost["device_s"] = 240.0
    return cost


def build_store(path: Path) -> dict[tuple[str, str], list[float]]:
    """Write the synthetic suite to ``path``; returns the complete values per (device, entry)."""
    rng = np.random.default_rng(19)
    store = ComparisonStore(path, {
        "suite_name": "six substrates", "suite_text": "[suite]\nname = \"six substrates\"\n",
        "suite_source": "suites/six.toml", "seeds": SEEDS, "entries": ENTRIES,
        "devices": [{"name": n, "family": f, "substrate": s, "mock": m, "encoding": "rate"}
                    for n, f, s, m, _ in DEVICES],
        "not_applicable": [{"device": NOT_APPLICABLE[0], "entry": NOT_APPLICABLE[1],
                            "reason": "an event camera sees no scalar input"}]})
    values: dict[tuple[str, str], list[float]] = {}
    for name, family, _, mock, quality in DEVICES:
        for e in ENTRIES:
            if (name, e["name"]) == NOT_APPLICABLE:
                continue
            for seed in SEEDS:
                failed = (name, e["name"]) == ALL_FAILED or (name, e["name"], seed) == ONE_FAILED
                v = None if failed else float(_value(e["name"], quality, seed))
                result = {
                    "device": name, "family": family, "entry": e["name"], "seed": seed,
                    "status": "failed" if failed else "complete",
                    "error": "StimulationLimit: charge per phase above 2 µC" if failed else None,
                    "metrics": {} if failed else {e["metric"]: v},
                    "primary": {"name": e["metric"], "value": v, "maximise": e["maximise"]},
                    "cost": _cost(family, rng),
                    "provenance": {"driver": f"labbench.drivers.{family}", "mock": mock,
                                   "protocol_source": f"battery/{e['name']}.toml", "overrides": {"seed": seed},
                                   "labbench_version": "0.1.0", "host": "bench-01",
                                   "started": "2025-01-01T00:00:00.000+00:00"},
                    "warnings": ["washout shorter than the echo time"] if (name, e["name"]) == ("lsm", "narma10")
                    else []}
                curves = None
                if not failed and e["name"] == "memory_capacity":
                    d = np.arange(1, 61)
                    cap = np.clip(np.exp(-(d / (45 * quality)) ** 3) + rng.normal(0, 0.02, d.size), 0, 1)
                    curves = {"memory_curve": {"delay": d, "capacity": cap}}
                if not failed and e["name"] == "fading_memory":
                    t = np.arange(0, 120)
                    dist = np.exp(-t / (4 + 25 * (1 - quality))) * (1 + rng.normal(0, 0.05, t.size)) + 1e-6
                    curves = {"fading": {"step": t, "distance": dist}}
                store.add_cell(result, curves)
                if v is not None:
                    values.setdefault((name, e["name"]), []).append(v)
    store.finish("complete")
    return values


class _Page(HTMLParser):
    """The <img>s, links, scripts and heat-table cells of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict] = []
        self.urls: list[str] = []
        self.scripts: list[dict] = []
        self.heat_rows: list[str] = []
        self.heat_cols: list[str] = []
        self.cells: dict[tuple[str, str], dict] = {}
        self._cell: dict | None = None
        self._in_heat = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "action", "data", "poster") and v]
        if tag == "img":
            self.imgs.append(a)
        if tag == "script":
            self.scripts.append(a)
        if tag == "table" and a.get("id") == "heat":
            self._in_heat = True
        if self._in_heat and tag == "tr" and "data-device" in a:
            self.heat_rows.append(a["data-device"])
        if self._in_heat and tag == "th" and "data-entry" in a:
            self.heat_cols.append(a["data-entry"])
        if self._in_heat and tag == "td" and "data-entry" in a:
            self._cell = {**a, "text": ""}
            self.cells[(a["data-device"], a["data-entry"])] = self._cell

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_heat = False
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data + " "


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare_report")
    store = root / "six.zarr"
    values = build_store(store)
    paths = write_report(store)
    return store, values, paths


def test_default_out_dir_and_files(report):
    store, _, paths = report
    out = store.parent / "six.zarr.report"
    assert paths["html"] == out / "report.html" and paths["markdown"] == out / "report.md"
    assert [p.name for p in paths["figures"]] == ["bars.png", "memory_capacity.png", "fading.png"]
    assert all(p.is_file() for p in [paths["html"], paths["markdown"], *paths["figures"]])


def test_html_is_self_contained_and_figures_decode(report):
    _, _, paths = report
    text = paths["html"].read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert not page.scripts, "the report needs no script"
    assert not re.search(r"<script", text, re.I)
    external = [u for u in page.urls if re.match(r"\s*(https?:)?//", u, re.I)]
    assert not external, external
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", text, re.I)
    assert len(page.imgs) == len(paths["figures"]) == 3
    for img, png in zip(page.imgs, paths["figures"]):
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data == png.read_bytes()
        w, h = _png_size(data)
        assert 400 <= w <= 3000 and 250 <= h <= 2500, (png.name, w, h)
        assert img.get("alt")


def test_heat_table(report):
    _, values, paths = report
    page = _Page()
    page.feed(paths["html"].read_text(encoding="utf-8"))
    devices = [d[0] for d in DEVICES]
    entries = [e["name"] for e in ENTRIES]
    assert page.heat_rows == devices
    assert page.heat_cols == entries
    assert set(page.cells) == {(d, e) for d in devices for e in entries}
    na = page.cells[NOT_APPLICABLE]
    assert na["data-state"] == "n/a" and na["text"].strip() == "n/a"
    failed = page.cells[ALL_FAILED]
    assert failed["data-state"] == "failed" and "failed" in failed["text"]
    assert "StimulationLimit" in failed["title"]
    partial = page.cells[ONE_FAILED[:2]]
    assert partial["data-state"] == "partial" and "1/2 seeds failed" in partial["text"]
    others = {k: v for k, v in page.cells.items() if k not in (NOT_APPLICABLE, ALL_FAILED, ONE_FAILED[:2])}
    assert all(c["data-state"] == "ok" for c in others.values())
    for e in ENTRIES:
        means = {d: float(np.mean(values[(d, e["name"])])) for d in devices if (d, e["name"]) in values}
        best = (max if e["maximise"] else min)(means, key=means.get)
        worst = (min if e["maximise"] else max)(means, key=means.get)
        assert float(page.cells[(best, e["name"])]["data-score"]) == 1.0, e["name"]
        assert float(page.cells[(worst, e["name"])]["data-score"]) == 0.0, e["name"]
        for d, m in means.items():
            score = float(page.cells[(d, e["name"])]["data-score"])
            assert 0.0 <= score <= 1.0
            vals = values[(d, e["name"])]
            text = page.cells[(d, e["name"])]["text"]
            if len(vals) > 1:       # the raw mean ± std, rounded to the std's second digit
                mean, std = (float(x) for x in re.search(r"(-?[\d.e+-]+) ± ([\d.e+-]+)", text).groups())
                sd = float(np.std(vals, ddof=1))
                assert abs(std - sd) <= 0.05 * sd + 1e-12 and abs(mean - m) <= 0.05 * sd + 1e-12, (d, e, text)
            else:
                assert f"{m:.3g}" in text, (d, e["name"], text)


def test_markdown_twin(report):
    _, _, paths = report
    md = paths["markdown"].read_text(encoding="utf-8")
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert refs == [p.name for p in paths["figures"]]
    for ref in refs:
        png = paths["markdown"].parent / ref
        assert png.is_file()
        _png_size(png.read_bytes())
    assert "n/a" in md and "✗ failed" in md and "http" not in md
    assert md.count("\n| ") >= len(DEVICES) * 2


def test_cost_table_shows_loihi_energy(report):
    _, _, paths = report
    text = paths["html"].read_text(encoding="utf-8")
    table = re.search(r'<table id="cost">.*?</table>', text, re.S).group(0)
    rows = dict(re.findall(r'<tr data-device="([^"]+)">(.*?)</tr>', table, re.S))
    energy = {d: re.search(r'data-cost="energy_J">([^<]*)<', r).group(1) for d, r in rows.items()}
    assert re.fullmatch(r"[\d.]+ [mµ]J", energy["loihi"]), energy["loihi"]
    assert energy["esn"] == "—"
    charge = re.search(r'data-cost="charge_C">([^<]*)<', rows["mea"]).group(1)
    assert charge.endswith("µC")
    md = paths["markdown"].read_text(encoding="utf-8")
    assert re.search(r"\| loihi \|.*[mµ]J", md)


def _chromium_driver(profile: Path):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        reason = f"no {CHROMIUM if not CHROMIUM.exists() else CHROMEDRIVER}: {INSTALL_HINT}"
        print(reason)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,1000", "--hide-scrollbars"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


def test_chromium_renders_the_report(report, tmp_path, monkeypatch):
    _, _, paths = report
    monkeypatch.setenv("SE_OFFLINE", "true")     # selenium's manager never downloads anything
    driver = _chromium_driver(tmp_path / "profile")
    try:
        driver.get(paths["html"].resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(images) == 3
        assert all(done and w > 0 and h > 0 for done, w, h in images), images
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert not severe, severe
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 40, 12000))
        shot = paths["html"].parent / "report_screenshot.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    w, h = _png_size(shot.read_bytes())
    assert w >= 1000 and h >= 1000


def test_report_of_an_interrupted_suite(tmp_path):
    """A suite still running: cells not written yet are 'not run', n/a from a mapping keyed by device,
    no curves (no curve figure), and a notice of the suite's status."""
    store = ComparisonStore(tmp_path / "partial.zarr", {
        "suite_name": "partial", "seeds": [0],
        "entries": [{"name": "e1", "metric": "NRMSE", "maximise": False, "unit": ""},
                    {"name": "e2", "metric": "accuracy", "maximise": True, "unit": "fraction"}],
        "devices": [{"name": "a", "family": "esn"}, {"name": "b", "family": "bucket"}],
        "not_applicable": {"b": ["e2"]}})
    store.add_cell({"device": "a", "entry": "e1", "seed": 0, "status": "complete", "error": None,
                    "primary": {"name": "NRMSE", "value": 0.3, "maximise": False}, "cost": {"wall_s": 1.0}})
    paths = write_report(tmp_path / "partial.zarr", tmp_path / "out")
    assert paths["html"].parent == tmp_path / "out"
    assert [p.name for p in paths["figures"]] == ["bars.png"]
    page = _Page()
    text = paths["html"].read_text(encoding="utf-8")
    page.feed(text)
    states = {k: v["data-state"] for k, v in page.cells.items()}
    assert states == {("a", "e1"): "ok", ("a", "e2"): "not run", ("b", "e1"): "not run", ("b", "e2"): "n/a"}
    assert float(page.cells[("a", "e1")]["data-score"]) == 1.0
    assert "The suite is <b>running</b>" in text


def test_not_a_comparison_store(tmp_path):
    from labbench.store.layout import StoreError

    with pytest.raises(StoreError):
        write_report(tmp_path / "missing.zarr")
