"""A readout group written in batches is the group written one call at a time (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from labbench.store import ReadoutWriter, RunStore


def _store(path: Path) -> Path:
    st = RunStore(path, "text", {"protocol": {"task": {"name": "x"}}, "seed": 1})
    st.add_device("esn", spec={"n_inputs": 1, "n_features": 4}, describe={"driver": "esn"}, n_outputs=2,
                  dtype="float32", chunk_rows=10, expected_rows=40, layout={"washout": 0, "train": 20, "test": 20})
    return path


def _files(path: Path) -> dict[str, object]:
    """Every file of a readout group: metadata (minus the instants) and chunk bytes."""
    out: dict[str, object] = {}
    for p in sorted((path / "esn" / "readouts").rglob("*")):
        if p.is_file():
            if p.name == "zarr.json":
                meta = json.loads(p.read_text())
                for key in ("started", "ended", "trainer"):
                    meta.get("attributes", {}).pop(key, None)
                out[str(p.relative_to(path))] = meta
            else:
                out[str(p.relative_to(path))] = p.read_bytes()
    return out


# parts of a stream: (start, rows) pairs with gaps and with two parts inside one 10-row chunk
PARTS = [[(0, 4)], [(4, 3), (7, 8)], [], [(20, 5)], [(25, 2), (27, 13)]]


@pytest.mark.parametrize("split", ["per_part", "per_stretch", "one_batch"])
def test_batched_writes_leave_the_store_of_single_writes(tmp_path: Path, split: str) -> None:
    rng = np.random.default_rng(0)
    stretches = [[(a, rng.normal(size=(n, 2))) for a, n in parts] for parts in PARTS]
    history = [[{"row": 7.0, "x": 0.5}], [], [{"row": 15.0}, {"row": 25.0, "x": -1.0}], [], [{"x": 3.0}]]
    consumed = [4, 15, 20, 25, 40]
    columns = ["row", "n_train", "x"]

    def writer(path: Path) -> ReadoutWriter:
        return ReadoutWriter(_store(path), "esn", "ridge", n_outputs=2, describe={"kind": "ridge"},
                             history_columns=columns, rows=40, chunk_rows=10)

    ref = writer(tmp_path / "ref.zarr")
    for k, parts in enumerate(stretches):   # one call per array and row, as before batching
        if not parts:
            ref.write(0, None, consumed[k])
        for a, rows in parts:
            ref.write(a, rows, consumed[k])
        for h in history[k]:
            ref.add_evaluation(h, {"nrmse": float(k)})
    ref.finish("complete")

    new = writer(tmp_path / "new.zarr")
    if split == "per_part":
        for k, parts in enumerate(stretches):
            new.write_batch(parts, consumed[k], history[k], {"nrmse": float(k)} if history[k] else None)
    elif split == "per_stretch":
        for k in range(0, len(stretches), 2):
            ks = range(k, min(k + 2, len(stretches)))
            hist = [h for j in ks for h in history[j]]
            new.write_batch([p for j in ks for p in stretches[j]], consumed[ks[-1]], hist,
                            {"nrmse": float(max(j for j in ks if history[j]))} if hist else None)
    else:
        new.write_batch([p for s in stretches for p in s], consumed[-1], [h for hs in history for h in hs],
                        {"nrmse": 4.0})
    new.finish("complete")

    a, b = _files(tmp_path / "ref.zarr"), _files(tmp_path / "new.zarr")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], key
    g = zarr.open_group(str(tmp_path / "new.zarr"), mode="r")["esn/readouts/ridge"]
    assert g.attrs["evaluations"] == 4 and g.attrs["consumed"] == 40 and g.attrs["metrics"] == {"nrmse": 4.0}
    expect = np.full((40, 2), np.nan)
    for parts in stretches:
        for a0, rows in parts:
            expect[a0:a0 + len(rows)] = rows
    assert np.array_equal(g["predictions"][:], expect, equal_nan=True)
    assert np.array_equal(g["history/x"][:], [0.5, np.nan, -1.0, 3.0], equal_nan=True)
    assert np.array_equal(g["history/row"][:], [7.0, 15.0, 25.0, np.nan], equal_nan=True)


def test_tail_still_waits_for_the_end_mark_once_every_expected_row_is_read(tmp_path: Path) -> None:
    """Polling faster after the expected rows never ends a stream early: the end is the writer's mark."""
    import threading

    from labbench.store import RunReader

    st = RunStore(tmp_path / "r.zarr", "text", {})
    st.add_device("esn", spec={"n_inputs": 1, "n_features": 2}, describe={}, n_outputs=1, dtype="float32",
                  chunk_rows=5, expected_rows=10)
    for a in (0, 5):
        st.append("esn", inputs=np.zeros((5, 1)), features=np.full((5, 2), a, dtype=np.float32),
                  targets=np.zeros((5, 1)), phase=np.ones(5, dtype=np.int8))
    reader = RunReader(tmp_path / "r.zarr")
    with pytest.raises(TimeoutError):      # every expected row is there, but no end mark yet
        list(reader.tail("esn", poll=0.01, timeout=0.3, readouts=False))
    timer = threading.Timer(0.2, st.end_stream, args=("esn",))
    timer.start()
    starts = [a for a, _ in RunReader(tmp_path / "r.zarr").tail("esn", poll=0.01, timeout=30, readouts=False)]
    timer.join()
    assert starts == [0, 5]
