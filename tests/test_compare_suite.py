"""``labbench compare``: the suite file, its cells, and a reduced comparison end to end.

- a bad suite (unknown key, family or entry, no seeds, a narrowing naming nothing known) is
  refused with exit 2 and one line naming the file and the key, and no store is made;
- ``--devices`` / ``--tasks`` / ``--mock`` narrow the suite; cells are device x applicable
  entry x seed, and entries a family cannot measure are kept as n/a with why;
- a reduced compare (two software families, two entries, one seed) through the CLI fills the
  store with every cell, ranks each entry in its direction and prints each device;
- a Ctrl-C after the first cell leaves an ``aborted`` store that keeps it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from labbench.cli import main
from labbench.spec.suite import SuiteError, from_text, load_suite
from labbench.store.comparison import KIND, ComparisonReader

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
[suite]
name = "small"
seeds = [0, 1]
entries = ["memory_capacity", "narma10", "kernel"]

[[devices]]
name = "esn"
family = "esn"

[[devices]]
name = "esn_small"
family = "esn"
seeds = [3]
entries = ["kernel"]

[[devices]]
name = "lsm"
family = "lsm"
mock = false
"""


def _write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- the suite file -------------------------------------------------------------------------------

BAD = {
    "bad key": (SUITE.replace('name = "small"', 'name = "small"\ncolour = "red"'), "suite.colour", "unknown key"),
    "bad device key": (SUITE.replace('family = "lsm"', 'family = "lsm"\nunits = 5'), "devices[2].units",
                       "unknown key"),
    "unknown family": (SUITE.replace('family = "lsm"', 'family = "quantum"'), "devices[2].family",
                       "unknown family 'quantum' (families: "),
    "unknown entry": (SUITE.replace('"narma10", "kernel"', '"narma11", "kernel"'), "suite.entries[1]",
                      "unknown entry 'narma11' (entries: "),
    "empty seeds": (SUITE.replace("seeds = [0, 1]", "seeds = []"), "suite.seeds", "must not be empty"),
    "entry outside the suite": (SUITE.replace('entries = ["kernel"]', 'entries = ["xor"]'), "devices[1].entries[0]",
                                "is not one of suite.entries"),
    "duplicate device": (SUITE.replace('name = "esn_small"', 'name = "esn"'), "devices[1].name", "also devices[0]"),
    "no devices": (SUITE.split("[[devices]]")[0], "devices", "Field required"),
    "bad device parameter": (SUITE.replace('family = "lsm"', 'family = "lsm"\nparams = { units = -3 }'),
                             "devices[2].params.units", "greater than 0 (got -3)"),
    "negative seed": (SUITE.replace("seeds = [3]", "seeds = [-1]"), "devices[1].seeds", ">= 0"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_suite_is_refused_on_one_line_naming_the_key(case, tmp_path, capsys):
    text, key, message = BAD[case]
    path = _write(tmp_path, text)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert any(p.startswith(f"{key}: ") and message in p for p in err.value.problems), err.value.problems
    store_root = tmp_path / "runs"
    assert main(["compare", str(path), "--store-root", str(store_root)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {key}: ") and message in lines[0], lines
    assert not store_root.exists()


def test_narrowing_names_only_known_devices_and_entries(tmp_path, capsys):
    path = _write(tmp_path, SUITE)
    for flag, value, valid in (("--devices", "esn,rc", "devices of the suite: esn, esn_small, lsm"),
                               ("--tasks", "xor", "entries of the suite: memory_capacity, narma10, kernel")):
        assert main(["compare", str(path), flag, value]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"error: {path}: {flag}: unknown") and valid in line, line


def test_cells_are_device_by_applicable_entry_by_seed():
    suite = from_text(SUITE)
    cells = suite.cells()
    fam = _families()
    expected = [(d, e, s) for d, fam_name, entries, seeds in (
        ("esn", "esn", ["memory_capacity", "narma10", "kernel"], [0, 1]),
        ("esn_small", "esn", ["kernel"], [3]),
        ("lsm", "lsm", ["memory_capacity", "narma10", "kernel"], [0, 1]))
        for e in entries if e in fam[fam_name] for s in seeds]
    assert [(c["device"], c["entry"], c["seed"]) for c in cells] == expected
    assert {c["scale"] for c in cells} == {"quick"} and all(c["params"] == {} for c in cells)
    assert {c["device"]: c["mock"] for c in cells} == {"esn": True, "esn_small": True, "lsm": False}
    assert suite.seeds == [0, 1, 3] and suite.entries == ["memory_capacity", "narma10", "kernel"]
    assert [d["name"] for d in suite.device_info()] == ["esn", "esn_small", "lsm"]
    assert [e["name"] for e in suite.entry_info()] == suite.entries
    assert all(set(e) == {"name", "metric", "maximise", "unit", "paper"} for e in suite.entry_info())

    narrowed = from_text(SUITE, mock=True, devices="lsm,esn_small", entries=["kernel", "narma10"])
    assert [d.name for d in narrowed.devices] == ["esn_small", "lsm"]
    assert narrowed.entries == ["narma10", "kernel"] and all(d.mock for d in narrowed.devices)
    assert {(c["device"], c["entry"]) for c in narrowed.cells()} <= {
        ("esn_small", "kernel"), ("lsm", "narma10"), ("lsm", "kernel")}
    assert narrowed.narrowed == {"devices": ["esn_small", "lsm"], "entries": ["narma10", "kernel"], "mock": True}
    # a device whose own subset is narrowed away has nothing left to measure
    assert [d.name for d in from_text(SUITE, entries="narma10").devices] == ["esn", "lsm"]


def test_entries_a_family_cannot_measure_are_recorded_as_not_applicable():
    fam = _families()
    pair = next(((f, e) for f in fam for e in _entries() if e not in fam[f]), None)
    if pair is None:
        pytest.skip("every installed family measures every entry")
    family, entry = pair
    text = (f'[suite]\nname = "na"\nseeds = [0]\nentries = ["{entry}"]\n'
            f'[[devices]]\nname = "d"\nfamily = "{family}"\n'
            f'[[devices]]\nname = "e"\nfamily = "esn"\n')
    if entry not in fam["esn"]:
        pytest.skip(f"no family measures {entry!r} besides others")
    suite = from_text(text)
    assert [c["device"] for c in suite.cells()] == ["e"]
    (na,) = suite.not_applicable
    assert na["device"] == "d" and na["entry"] == entry and na["why"]
    # asked of that device explicitly, it is an error instead
    with pytest.raises(SuiteError, match=r"devices\[0\]\.entries\[0\]: family"):
        from_text(text.replace(f'family = "{family}"', f'family = "{family}"\nentries = ["{entry}"]'))


def _families() -> dict[str, list[str]]:
    suite = from_text('[suite]\nname = "x"\nseeds = [0]\n[[devices]]\nname = "esn"\nfamily = "esn"\n')
    return {name: f["entries"] for name, f in suite._families.items()}


def _entries() -> list[str]:
    return from_text('[suite]\nname = "x"\nseeds = [0]\n[[devices]]\nname = "esn"\nfamily = "esn"\n').entries


# -- a reduced comparison, end to end -------------------------------------------------------------

REDUCED = """
[suite]
name = "reduced"
seeds = [0]
entries = ["memory_capacity", "kernel"]

[[devices]]
name = "esn"
family = "esn"

[[devices]]
name = "lsm"
family = "lsm"
"""


@pytest.fixture(scope="module")
def compared(ray_session, tmp_path_factory):
    """The reduced suite through `labbench compare` once: (exit code, stdout, store)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("compare")
    path = _write(tmp, REDUCED)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["compare", str(path), "--quiet", "--no-report", "--store-root", str(tmp / "runs")])
    (store,) = (tmp / "runs").glob("*.zarr")
    return code, out.getvalue(), store


def test_a_reduced_compare_fills_the_store_with_every_cell_ranked(compared):
    code, out, store = compared
    assert code == 0, out
    reader = ComparisonReader(store)
    attrs = reader.attrs
    assert attrs["kind"] == KIND and attrs["status"] == "complete" and attrs["suite_name"] == "reduced"
    assert attrs["suite_text"] == REDUCED and attrs["seeds"] == [0]
    assert [d["name"] for d in attrs["devices"]] == ["esn", "lsm"]
    assert [e["name"] for e in attrs["entries"]] == ["memory_capacity", "kernel"]
    cells = {(c["device"], c["entry"], c["seed"]): c for c in reader.cells()}
    assert set(cells) == {(d, e, 0) for d in ("esn", "lsm") for e in ("memory_capacity", "kernel")}
    assert all(c["status"] == "complete" for c in cells.values()), {k: c.get("error") for k, c in cells.items()}
    for entry in attrs["entries"]:
        rows = attrs["ranking"][entry["name"]]
        assert [r["device"] for r in rows] and {r["device"] for r in rows} == {"esn", "lsm"}
        means = [r["mean"] for r in rows]
        assert all(isinstance(m, float) and math.isfinite(m) for m in means), rows
        assert means == sorted(means, reverse=entry["maximise"]), (entry, rows)
        for r in rows:
            assert r["mean"] == cells[(r["device"], entry["name"], 0)]["primary"]["value"]
    # the printed tables: one per entry, every device in each
    for entry in ("memory_capacity", "kernel"):
        block = out.split(f"{entry}: ", 1)[1]
        assert "esn" in block and "lsm" in block
    assert "store:" in out and str(store) in out.replace("\n", "")


def test_show_and_report_know_a_comparison_store(compared, capsys, tmp_path):
    _, _, store = compared
    assert main(["show", str(store)]) == 0
    out = capsys.readouterr().out
    assert "(comparison)" in out and "4/4 finished, 0 failed" in out and "memory_capacity:" in out
    assert main(["show", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == KIND
    # `labbench report` dispatches on the store's kind: the comparison's report, not a run's panels
    assert main(["report", str(store), "--out", str(tmp_path / "rep")]) == 0
    assert "report html:" in capsys.readouterr().out and (tmp_path / "rep" / "report.html").is_file()


def test_ctrl_c_leaves_an_aborted_store_keeping_the_finished_cells(ray_session, tmp_path, monkeypatch, capsys):
    """Ctrl-C (here raised as the first cell is counted) marks the store aborted and keeps that cell."""
    import labbench.engine.comparer as comparer

    class InterruptedBar(comparer.ProgressBar):
        def advance(self, n: int) -> None:
            raise KeyboardInterrupt

    stopped: list = []
    monkeypatch.setattr(comparer, "ProgressBar", InterruptedBar)
    # the session's Ray is the caller's, so the comparer would cancel the cell still running
    # (force=True kills its worker); keep the session's workers and let that cell finish instead
    monkeypatch.setattr(comparer, "cancel_running", lambda running, own_ray: stopped.extend(running))
    path = _write(tmp_path, REDUCED.replace('["memory_capacity", "kernel"]', '["kernel"]'))
    assert main(["compare", str(path), "--quiet", "--no-report", "--store-root", str(tmp_path / "runs")]) == 130
    assert "interrupted" in capsys.readouterr().err
    (store,) = (tmp_path / "runs").glob("*.zarr")
    attrs = ComparisonReader(store).attrs
    assert attrs["status"] == "aborted" and "after 1 of 2 cells" in attrs["error"]
    assert len(list(ComparisonReader(store).cells())) == 1
    assert len(stopped) == 1                      # the second cell was running when Ctrl-C came
    ray_session.wait(stopped, num_returns=1, timeout=120)


def test_the_shipped_suites_are_valid():
    for name in ("suite_quick", "suite_all"):
        suite = load_suite(ROOT / "protocols" / f"{name}.toml")
        assert suite.cells()
    quick = load_suite(ROOT / "protocols" / "suite_quick.toml", mock=True)
    assert {d.family for d in quick.devices} == {"esn", "lsm", "mea", "bucket", "dvs_lsm", "loihi"}
    assert load_suite(ROOT / "protocols" / "suite_all.toml").suite.scale == "full"


def test_validate_checks_a_suite_and_a_protocol_and_a_suite_are_told_apart(tmp_path, capsys):
    suite, proto = str(ROOT / "protocols" / "suite_quick.toml"), str(ROOT / "protocols" / "narma10.toml")
    assert main(["validate", suite]) == 0
    out = capsys.readouterr().out
    assert "suite suite_quick: 6 devices, 6 entries" in out and "96 cells" in out and "mea/classification" in out
    # a suite given where a protocol goes, and the other way round: one line saying which command takes it
    for argv, want in ((["run", suite], "labbench compare"), (["compare", proto], "labbench run"),
                       (["validate", suite, "--set", "device.params.units=3"], "--set")):
        assert main(argv) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert want in line, line
