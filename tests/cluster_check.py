"""Runs labbench on a two-node Ray cluster on loopback and prints where everything ran, as JSON.

Used by ``tests/test_cluster.py`` in a subprocess (the test session's own Ray stays out of
the way), and runnable by hand::

    python tests/cluster_check.py [--keep DIR]

The cluster is ``ray.cluster_utils.Cluster``: a head node with 1 CPU (this process's
driver, the run store's writer and the trainers live there) and a "rig" node with 2 CPUs
and the custom resource ``device:rig-1``, both on 127.0.0.1. On it the script

* runs a ``[[devices]]`` protocol: an ESN pinned to the rig (``resources``) and two
  unpinned software devices (an ESN and the identity baseline). Every device asks for one
  CPU and the head has only one, so the unpinned devices cannot both run there: they must
  spread over both nodes;
* runs a 4-trial sweep of an unpinned ESN (3 trials at once on 3 CPUs: they spread), and a
  2-trial sweep of an ESN pinned to the rig (every trial on the rig node).

It prints one JSON line: the nodes (id, CPUs, custom resources), the driver's node, and the
``node_id``/``pid``/``resources`` attrs of every device group and sweep trial read back
from the stores. It never runs ``ray stop``: it shuts down only the cluster it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from labbench.engine.ray_runtime import RAY_ENV

RIG = "device:rig-1"
HEAD_CPUS = 1
RIG_CPUS = 2

ESN = {"units": 40, "spectral_radius": 0.8, "input_scaling": 0.1, "seed": 1, "dtype": "float64"}
COMMON = {
    "task": {"name": "narma"},
    "run": {"washout": 50, "train": 400, "test": 150, "block": 100},
    "readouts": [{"kind": "ridge", "alpha": 1e-8}],
}


def run_protocol() -> dict:
    return {
        "protocol": {"name": "cluster", "seed": 3},
        "devices": [
            {"driver": "esn", "name": "rig", "params": ESN, "resources": {RIG: 1}, "timeout_s": 60},
            {"driver": "esn", "name": "soft", "params": {**ESN, "seed": 2}, "timeout_s": 60},
            {"driver": "identity", "timeout_s": 60},
        ],
        **COMMON,
    }


def sweep_protocol(name: str, values: list[float], resources: dict | None = None) -> dict:
    device = {"driver": "esn", "params": ESN}
    if resources:
        device["resources"] = resources
    return {"protocol": {"name": name, "seed": 3}, "device": device, **COMMON,
            "sweep": {"metric": "ridge.nrmse", "device.params.spectral_radius": values}}


PINNED_SUITE = f"""
[suite]
name = "pinned"
seeds = [0, 1]
entries = ["kernel", "fading_memory"]
scale = "quick"
[[devices]]
name = "esn"
family = "esn"
params = {{ units = 20 }}
resources = {{ "{RIG}" = 1 }}
"""


def trial_attrs(path: Path) -> list[dict]:
    import zarr

    root = zarr.open_group(str(path), mode="r")
    out = []
    for i in range(int(root.attrs["n_trials"])):
        a = dict(root[f"trial-{i:04d}"].attrs)
        out.append({"index": a["index"], "status": a["status"], "node_id": a.get("node_id"), "error": a.get("error")})
    return out


def wait_for_idle_cpus(total: float, timeout: float = 20.0) -> None:
    """Killed actors give their CPUs back asynchronously; wait so the next step sees the whole cluster."""
    import ray

    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", metavar="DIR", help="write the stores under DIR (default: a temporary directory)")
    args = ap.parse_args(argv)

    for key, value in RAY_ENV.items():  # loopback only, no token auth, no usage stats
        os.environ.setdefault(key, value)
    os.environ.pop("RAY_ADDRESS", None)  # never join whatever cluster the caller had
    # a private Ray temp dir (short: it holds Unix sockets): the cluster's sessions, logs and
    # its "current cluster" address file stay out of /tmp/ray, so `address="auto"` elsewhere
    # on this machine never finds this cluster, and its shutdown never deletes another's file
    ray_tmp = tempfile.mkdtemp(prefix="lbc-", dir="/tmp" if os.path.isdir("/tmp") else None)
    os.environ["RAY_TMPDIR"] = ray_tmp

    import ray
    from ray.cluster_utils import Cluster

    import labbench as lb
    from labbench.spec.protocol import from_dict

    t0 = time.perf_counter()
    small = 128 * 1024**2
    cluster = None
    result: dict = {}
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": HEAD_CPUS, "object_store_memory": small, "node_ip_address": "127.0.0.1",
            "include_dashboard": False})
        rig_node = cluster.add_node(num_cpus=RIG_CPUS, resources={RIG: 1}, object_store_memory=small,
                                    node_ip_address="127.0.0.1")
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        result["cluster_up_s"] = time.perf_counter() - t0
        nodes = [{"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU", 0),
                  "custom": sorted(k for k in n["Resources"] if ":" in k)}
                 for n in ray.nodes() if n["Alive"]]
        result.update(nodes=nodes, driver_node_id=ray.get_runtime_context().get_node_id(),
                      rig_node_id=rig_node.node_id, head_node_id=cluster.head_node.node_id,
                      gcs_address=cluster.address)

        with tempfile.TemporaryDirectory(prefix="labbench-cluster-") as tmp:
            root = Path(args.keep) if args.keep else Path(tmp)
            t1 = time.perf_counter()
            sw = lb.run(from_dict(sweep_protocol("spread", [0.5, 0.7, 0.9, 1.1])),
                      store_root=root / "sweeps", progress=False)
            result["sweep_s"] = time.perf_counter() - t1
            result["sweep"] = {"status": sw.status, "trials": trial_attrs(sw.store)}

            wait_for_idle_cpus(HEAD_CPUS + RIG_CPUS)
            t1 = time.perf_counter()
            run = lb.run(from_dict(run_protocol()), store_root=root / "runs", progress=False)
            result["run_s"] = time.perf_counter() - t1
            reader = lb.open_run(run.store)
            result["run"] = {"status": reader.status, "store_device_node_id": reader.attrs.get("device_node_id"),
                             "metrics": run.metrics, "devices": {},
                             "timings": {k: v for k, v in run.timings.items() if isinstance(v, float)}}
            for group in reader.devices:
                a = reader.device_attrs(group)
                result["run"]["devices"][group] = {"node_id": a.get("node_id"), "pid": a.get("pid"),
                                                   "resources": a.get("resources"), "committed": a.get("committed")}

            wait_for_idle_cpus(HEAD_CPUS + RIG_CPUS)
            t1 = time.perf_counter()
            sw = lb.run(from_dict(sweep_protocol("pinned", [0.6, 0.9], {RIG: 1})),
                      store_root=root / "sweeps", progress=False)
            result["pinned_sweep_s"] = time.perf_counter() - t1
            result["pinned_sweep"] = {"status": sw.status, "trials": trial_attrs(sw.store)}

            # a comparison suite whose device is pinned to the rig: every cell runs there
            from labbench.engine.comparer import run_compare
            from labbench.spec.suite import from_text as suite_from_text
            from labbench.store.comparison import ComparisonReader

            wait_for_idle_cpus(HEAD_CPUS + RIG_CPUS)
            t1 = time.perf_counter()
            cmp = run_compare(suite_from_text(PINNED_SUITE), store_root=root / "compare", progress=False)
            result["pinned_compare_s"] = time.perf_counter() - t1
            result["pinned_compare"] = {
                "status": cmp.status,
                "cells": [{"entry": c["entry"], "seed": c["seed"], "status": c["status"], "error": c["error"],
                           "node_id": c["provenance"].get("node_id")} for c in ComparisonReader(cmp.store).cells()]}
        result["total_s"] = time.perf_counter() - t0
        print(json.dumps(result, default=str), flush=True)
        return 0
    finally:
        try:
            ray.shutdown()
            if cluster is not None:
                cluster.shutdown()  # only the processes this cluster started; never `ray stop`
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
