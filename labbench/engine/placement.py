"""Where device actors go: CPU shares that fit the cluster's nodes, and custom resources that pin hardware."""

from __future__ import annotations

import math

from ..spec.protocol import DeviceSection
from .errors import DeviceDown


def device_cpus(devices: list[DeviceSection]) -> list[float]:
    """CPUs each device actor asks for: its ``num_cpus``, else 1, or an equal share small
    enough that every device fits on the cluster's nodes at once.

    Raises DeviceDown at once when the devices need custom resources the cluster lacks.
    """
    import ray

    check_resources(devices)
    free = [d for d in devices if d.num_cpus is None]
    nodes = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    share = fair_share(nodes, len(free)) if free else 1.0
    return [d.num_cpus if d.num_cpus is not None else share for d in devices]


def fair_share(node_cpus: list[float], n: int) -> float:
    """Largest share ``s <= 1`` of a CPU such that ``n`` actors of ``s`` CPUs fit on the nodes.

    Actors cannot straddle nodes, so the share is ``c / k`` for some node's ``c`` CPUs and
    ``k`` actors on it; the best is the largest such value with ``sum(floor(c_i / s)) >= n``.
    """
    cpus = [c for c in node_cpus if c > 0]
    if n <= 0 or not cpus:
        return 1.0
    candidates = sorted({min(1.0, c / k) for c in cpus for k in range(1, n + 1)}, reverse=True)
    for s in candidates:
        if sum(math.floor(c / s + 1e-9) for c in cpus) >= n:
            return s
    return min(cpus) / n


def check_resources(devices: list[DeviceSection]) -> None:
    """DeviceDown, before anything starts, if the devices together need more of a custom
    resource (e.g. ``device:rig-1``) than the cluster has."""
    import ray

    available = ray.cluster_resources()
    demand: dict[str, float] = {}
    for dev in devices:
        for key, amount in dev.resources.items():
            demand[key] = demand.get(key, 0.0) + float(amount)
    for key, amount in demand.items():
        have = float(available.get(key, 0.0))
        if have >= amount:
            continue
        users = [d.group for d in devices if key in d.resources]
        custom = sorted(k for k in available if ":" in k and not k.startswith("node:")) or ["none"]
        if have == 0:
            raise DeviceDown(f"device {users[0]!r} needs resource {key!r}, which no node of the cluster has "
                             f"(custom resources: {', '.join(custom)}); start the node that holds it with "
                             f"ray start --resources '{{\"{key}\": 1}}' (docs/cluster.md)")
        raise DeviceDown(f"devices {', '.join(map(repr, users))} need {amount:g} of resource {key!r} together, "
                         f"but the cluster has {have:g}")
