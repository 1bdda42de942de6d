"""The monitor's comparison view of a run with several devices (issue 19, deliverable 4): a
reduced protocols/narma10_compare.toml (an ESN, an LSM and the identity baseline on one
NARMA-10 input), rendered off-screen; every device must appear in the comparison panels."""

from __future__ import annotations

import numpy as np
import tomllib
import zarr
from conftest import PROTOCOLS

import labbench as lb
from labbench.monitor.source import StoreFollower
from labbench.spec.protocol import from_dict

DEVICES = ["esn", "lsm", "identity"]


def _reduced_compare() -> dict:
    """narma10_compare.toml with 60 units per reservoir and 950 rows."""
    proto = tomllib.loads((PROTOCOLS / "narma10_compare.toml").read_text())
    for dev in proto["devices"]:
        params = dev.get("params")
        if params:
            params["units"] = 60
            if "input_sources" in params:
                params["input_sources"] = 40
    proto["run"] = {"washout": 50, "train": 600, "test": 300, "block": 100}
    return proto


def test_the_comparison_view_shows_every_device_of_narma10_compare(ray_session, store_root, tmp_path):
    from labbench.monitor.window import MonitorWindow, application

    run = lb.run(from_dict(_reduced_compare()), store_root=store_root, progress=False)
    root = zarr.open_group(str(run.store), mode="r")
    assert list(root.attrs["devices"]) == DEVICES
    application()
    win = MonitorWindow(StoreFollower(run.store), window=None, device="lsm")
    try:
        win.resize(1400, 1200)
        win.show()
        win.catch_up()
        assert win.compare is not None, "a run with three devices has no comparison view"
        preds = win.compare.panels["compare_predictions"]
        # the target once, one prediction curve per device, named in the legend
        assert preds.target is not None and preds.target_device == "esn"
        assert sorted(preds.predictions) == sorted((d, "ridge") for d in DEVICES)
        legend = [label.text for _sample, label in preds.legend.items]
        assert legend == ["target", *DEVICES], legend
        pens = {preds.predictions[(d, "ridge")].opts["pen"].color().name() for d in DEVICES}
        assert len(pens) == 3, pens                                   # one colour per device
        n = root["esn"].attrs["committed"]
        test = np.flatnonzero(root["esn/phase"][:n] == 2)
        for d in DEVICES:                                             # each curve is the store's predictions
            curve = preds.predictions[(d, "ridge")]
            stored = root[f"{d}/readouts/ridge/predictions"][:n, 0]
            x, y = curve.xData, curve.yData
            ok = np.isfinite(y)
            np.testing.assert_allclose(x[ok], test, atol=1e-9)        # rows of the test phase (shared axis: rows)
            np.testing.assert_allclose(y[ok], stored[test])
        np.testing.assert_allclose(preds.target.yData, root["esn/targets"][test[0] - 1:n, 0])
        # the x axis is shared in rows: the LSM counts seconds, the ESN steps
        assert preds.plot.getAxis("bottom").labelUnits == "row"

        metrics = win.compare.panels["compare_metrics"]
        for d in DEVICES:
            hist = root[f"{d}/readouts/ridge/history"]
            curve = metrics.curves[(d, "ridge", "test_nrmse")]
            x = curve.xData
            assert len(x) > 1 and len(np.unique(x)) == len(x), x      # a curve over the test rows
            rows = hist["row"][:]
            ok = np.isfinite(hist["test_nrmse"][:])
            np.testing.assert_array_equal(x, rows[ok])
            np.testing.assert_allclose(curve.yData, hist["test_nrmse"][:][ok])
            assert (d, "ridge", "prequential_nrmse") in metrics.curves
        assert "(dimensionless)" in metrics.plot.getAxis("left").labelText
        # the device selector picks the feature views; the comparison stays on every device
        assert win.stack.currentWidget() is win.views["lsm"]
        lsm_metrics = win.views["lsm"].panels["metrics"]
        test_x = next(c.xData for (ro, col), c in lsm_metrics.curves.items() if col == "test_nrmse")
        assert len(np.unique(test_x)) > 1, test_x                      # not stacked at the last training row
        win.device_box.setCurrentText("identity")
        assert win.stack.currentWidget() is win.views["identity"]
        assert sorted(win.compare.panels["compare_predictions"].predictions) == sorted(
            (d, "ridge") for d in DEVICES)
        bar = win.views["lsm"].panels["features"].bar
        assert bar is not None and "(" in bar.getAxis("left").labelText    # a colour bar with its unit
    finally:
        win.close()
    png = lb.monitor.snapshot(run.store, tmp_path / "compare.png", device="lsm", size=(1400, 1200))
    from pyqtgraph.Qt import QtGui

    img = QtGui.QImage(str(png))
    assert img.width() == 1400 and img.height() == 1200
