"""Placement on a Ray cluster: pinned hardware, spreading software, missing resources.

The two-node part runs ``tests/cluster_check.py`` in a subprocess: it starts its own
``ray.cluster_utils.Cluster`` on 127.0.0.1 (a 1-CPU head and a 2-CPU node holding the
custom resource ``device:rig-1``), so the session's shared Ray (``ray_session``) is not
disturbed. Placement is checked through Ray's node ids as the run and sweep stores record
them (``node_id`` of each device group and each trial group).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

import labbench as lb
from conftest import small_protocol
from labbench.engine.ray_runtime import RAY_ENV
from labbench.spec.protocol import from_dict

SCRIPT = Path(__file__).with_name("cluster_check.py")
RIG = "device:rig-1"


@pytest.fixture(scope="module")
def cluster_report(tmp_path_factory) -> dict:
    """Run cluster_check.py once (35–70 s on 2 cores) and return its JSON report."""
    cwd = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_ENV)
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--keep", str(cwd / "stores")], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)   # the script and every Ray process its cluster started
        out, err = proc.communicate()
        pytest.fail(f"cluster_check.py did not finish in 180 s\n--- stdout\n{out}\n--- stderr\n{err[-6000:]}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # stragglers of that cluster only (its own process group)
        except ProcessLookupError:
            pass
    if proc.returncode != 0:
        pytest.fail(f"cluster_check.py exited {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err[-6000:]}")
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON report on stdout\n--- stdout\n{out}\n--- stderr\n{err[-6000:]}"
    return json.loads(lines[-1])


@pytest.mark.slow
def test_the_loopback_cluster_has_a_head_and_a_rig_node(cluster_report):
    r = cluster_report
    nodes = {n["node_id"]: n for n in r["nodes"]}
    assert len(nodes) == 2
    assert all(n["ip"] == "127.0.0.1" for n in nodes.values())     # loopback only
    (rig,) = [nid for nid, n in nodes.items() if RIG in n["custom"]]
    assert rig == r["rig_node_id"] != r["head_node_id"]
    assert r["driver_node_id"] == r["head_node_id"]                # the writer runs on the head
    assert nodes[r["head_node_id"]]["cpus"] == 1 and nodes[rig]["cpus"] == 2


@pytest.mark.slow
def test_the_pinned_device_runs_on_the_node_holding_its_resource(cluster_report):
    r = cluster_report
    run = r["run"]
    devices = run["devices"]
    assert run["status"] == "complete"
    assert set(devices) == {"rig", "soft", "identity"}
    assert all(d["committed"] == 600 for d in devices.values())
    assert devices["rig"]["resources"] == {RIG: 1.0}
    # the device actor's own Ray node id, as the store recorded it
    assert devices["rig"]["node_id"] == r["rig_node_id"]
    assert run["store_device_node_id"] == r["rig_node_id"]
    # only the pinned device asks for the rig, and no device that asks for it is anywhere else
    pinned = [g for g, d in devices.items() if d["resources"]]
    assert pinned == ["rig"]
    assert all(devices[g]["node_id"] == r["rig_node_id"] for g in pinned)
    # no node holds more one-CPU device actors than it has CPUs (head 1, rig 2)
    per_node = Counter(d["node_id"] for d in devices.values())
    assert per_node[r["head_node_id"]] <= 1 and per_node[r["rig_node_id"]] <= 2
    assert set(per_node) <= {r["head_node_id"], r["rig_node_id"]}
    assert len({d["pid"] for d in devices.values()}) == 3          # one actor process per device
    for group in ("rig", "soft"):
        assert run["metrics"][f"{group}/ridge"]["nrmse"] < 0.7        # the ESNs learnt something


@pytest.mark.slow
def test_software_devices_spread_over_the_cluster(cluster_report):
    r = cluster_report
    devices = r["run"]["devices"]
    unpinned = {g: d["node_id"] for g, d in devices.items() if not d["resources"]}
    assert set(unpinned) == {"soft", "identity"}
    # each asks for one CPU and the head has one: they cannot both run there
    assert set(unpinned.values()) == {r["head_node_id"], r["rig_node_id"]}


@pytest.mark.slow
def test_sweep_trials_spread_and_pinned_trials_stay_on_the_rig(cluster_report):
    r = cluster_report
    sweep = r["sweep"]
    assert sweep["status"] == "complete"
    assert [t["status"] for t in sweep["trials"]] == ["complete"] * 4, sweep["trials"]
    nodes = {t["node_id"] for t in sweep["trials"]}
    # three trials at once on three CPUs, of which the head has one
    assert nodes == {r["head_node_id"], r["rig_node_id"]}

    pinned = r["pinned_sweep"]
    assert pinned["status"] == "complete"
    assert [t["status"] for t in pinned["trials"]] == ["complete"] * 2, pinned["trials"]
    assert {t["node_id"] for t in pinned["trials"]} == {r["rig_node_id"]}


@pytest.mark.slow
def test_compare_cells_of_a_pinned_device_run_on_its_node(cluster_report):
    cmp = cluster_report["pinned_compare"]
    assert cmp["status"] == "complete"
    assert sorted((c["entry"], c["seed"]) for c in cmp["cells"]) == [("fading_memory", 0), ("fading_memory", 1),
                                                                     ("kernel", 0), ("kernel", 1)]
    assert all(c["status"] == "complete" for c in cmp["cells"]), cmp["cells"]
    assert {c["node_id"] for c in cmp["cells"]} == {cluster_report["rig_node_id"]}


def test_a_device_needing_a_resource_no_node_has_fails_at_once(ray_session, store_root):
    proto = from_dict(small_protocol(
        device=None,
        devices=[{"driver": "esn", "name": "soft", "params": {"units": 20}},
                 {"driver": "esn", "name": "mea", "params": {"units": 20}, "resources": {"device:mea-rig-9": 1},
                  "timeout_s": 120}]))
    t0 = time.monotonic()
    with pytest.raises(lb.DeviceDown, match=r"device 'mea' needs resource 'device:mea-rig-9', which no node "
                                            r"of the cluster has") as info:
        lb.run(proto, store_root=store_root, progress=False)
    assert time.monotonic() - t0 < 10                    # at once, not after timeout_s = 120
    assert "ray start --resources" in str(info.value)    # and it says how to provide it
    assert list(store_root.iterdir()) == []              # nothing ran, so no store


TINY = """
[protocol]
name = "tiny"
[device]
driver = "esn"
params = { units = 20, seed = 1 }
[task]
name = "narma"
[run]
washout = 10
train = 200
test = 100
block = 100
[[readouts]]
kind = "ridge"
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_joining_a_cluster_with_token_authentication(tmp_path):
    """A head started with RAY_AUTH_MODE=token (docs/cluster.md) takes a run that has the token
    (RAY_AUTH_TOKEN_PATH) and refuses one that has not."""
    import secrets

    marker = Path("/tmp/ray/ray_current_cluster")
    before = marker.read_text() if marker.exists() else None
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(16))
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    base.update(RAY_USAGE_STATS_ENABLED="0", RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    # a temp dir of its own: `ray start` leaves its address in <temp dir>/ray_current_cluster, which
    # a later plain ray.init() on this machine would try to join (short: Ray's socket paths must fit)
    temp_dir = tempfile.mkdtemp(prefix="lbray", dir="/tmp")
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
         "--include-dashboard", "false", "--temp-dir", temp_dir, "--block"],
        env={**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token.read_text()}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    (tmp_path / "p.toml").write_text(TINY)
    cmd = [sys.executable, "-m", "labbench.cli", "run", "p.toml", "--address", f"127.0.0.1:{port}", "--quiet",
           "--json", "--store-root", str(tmp_path / "runs")]
    try:
        deadline = time.monotonic() + 90
        while True:   # the head is up once a client with the token gets through
            ok = subprocess.run(cmd, env={**base, "RAY_AUTH_TOKEN_PATH": str(token)}, cwd=tmp_path,
                                capture_output=True, text=True, timeout=180)
            if ok.returncode == 0 or time.monotonic() > deadline or head.poll() is not None:
                break
            time.sleep(2)
        assert ok.returncode == 0, f"with the token: exit {ok.returncode}\n{ok.stdout}\n{ok.stderr[-3000:]}"
        assert json.loads(ok.stdout)["status"] == "complete"
        # without the token: refused. The head is up (the run above went through), so a client that
        # could get in would on its first try; Ray's 20 one-second connection retries (~25 s) are cut
        # to 2 (RAY_gcs_server_port_wait_time_s), which changes how soon it gives up, not the answer
        refused = subprocess.run(cmd, env={**base, "RAY_gcs_server_port_wait_time_s": "2"}, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=180)
        assert refused.returncode == 1
        assert "Failed to connect to Ray cluster" in refused.stderr
        assert "Authentication token is missing or incorrect" in refused.stderr   # refused for the token
        assert len(list((tmp_path / "runs").iterdir())) == 1      # the refused run made no store
    finally:
        os.killpg(head.pid, signal.SIGKILL)     # the head and every Ray process it started (its session)
        head.communicate()
        shutil.rmtree(temp_dir, ignore_errors=True)
    # the machine's own Ray address file is as it was
    assert (marker.read_text() if marker.exists() else None) == before
