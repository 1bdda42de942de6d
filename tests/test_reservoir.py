import numpy as np
import pytest

import labbench as lb
from labbench.drivers.esn import EchoStateNetwork
from labbench.reservoir import get_driver, list_devices


def test_esn_is_registered_through_entry_points():
    assert get_driver("esn") is EchoStateNetwork
    rows = {r["name"]: r for r in list_devices()}
    assert rows["esn"]["available"] == "yes"
    assert rows["esn"]["target"] == "labbench.drivers.esn:EchoStateNetwork"


def test_unknown_driver_lists_installed_ones():
    with pytest.raises(KeyError, match=r"unknown driver 'nope'.*esn"):
        get_driver("nope")


def test_open_device_context_manager_opens_and_closes():
    with lb.open_device("esn", units=20, seed=1) as res:
        block = res.run(np.zeros((5, 1)))
        assert block.features.shape == (5, 20)
        assert len(block) == 5
    with pytest.raises(RuntimeError, match="not open"):
        res.run(np.zeros((5, 1)))


def test_bad_input_shape_names_expected_shape():
    with lb.open_device("esn", units=10, n_inputs=2) as res:
        with pytest.raises(ValueError, match=r"shape \(5, 3\).*n_inputs=2"):
            res.run(np.zeros((5, 3)))


def test_spec_and_describe_are_json_able():
    import json

    with lb.open_device("esn", units=10) as res:
        json.dumps(res.spec.to_dict())
        d = res.describe()
        json.dumps(d)
        assert d["driver"] == "esn" and d["params"]["units"] == 10
