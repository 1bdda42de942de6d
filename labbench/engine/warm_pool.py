"""Warm actors: device and trainer processes that ``labbench ray start`` keeps ready on its shared Ray.

Ray never reuses a worker process across jobs, so every run on the shared local Ray would pay
a new process, its imports (labbench, the drivers, numba, scikit-learn) and only then its
device's ``open`` for each actor. ``labbench ray start`` therefore leaves a small pool of
*hosts* in the namespace :data:`NAMESPACE`: detached actors that have done those imports and
wait, unconfigured, for a run. A run on that Ray claims one per device and trainer
(:func:`start_device`, :func:`start_trainer`; the pool's :class:`PoolSupervisor` hands each host
out once, atomically), configures it with its spec through the very ``__init__`` of
:class:`~labbench.engine.actors.DeviceActor` / :class:`~labbench.engine.actors.TrainerActor` (so
results are bit for bit those of a fresh actor), and kills it at the end as it kills any actor.
A host is never given to a second run: the supervisor starts a fresh one in the background once
the used one is gone. It also kills a host whose run died without killing it (a SIGKILLed run):
it watches the claiming process's pid.

Everything falls back to a fresh actor, as before, when the run is not on the shared local Ray
(a fresh Ray of its own, a cluster), no pool is there, the pool is empty, the pool's code is not
the run's code (another checkout, files edited since the pool started), or the device needs
something a host was not made for (custom resources, more restarts than :data:`HOST_RESTARTS`).
``labbench ray stop`` ends the hosts with every other process of that Ray.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from .actors import DeviceActor, TrainerActor

#: the Ray namespace of the pool (runs live in anonymous namespaces of their own)
NAMESPACE = "labbench-pool"
#: the name of the pool's supervisor actor in :data:`NAMESPACE`
SUPERVISOR = "supervisor"
#: restarts a warm device host allows (Ray's ``max_restarts``); a device asking for more starts cold
HOST_RESTARTS = 8
#: set to ``0`` in a run's environment to start its actors cold even when a pool is there
WARM_ENV = "LABBENCH_WARM"
#: seconds between the supervisor's checks of the hosts it handed out
_WATCH_S = 0.5


def code_fingerprint() -> str:
    """Where labbench's code (with its drivers and readouts) is imported from: the pool's hosts
    serve only runs of the same code (another checkout on ``PYTHONPATH`` gives another)."""
    package = Path(__file__).resolve().parents[1]   # labbench/, found without importing it
    return os.pathsep.join(sorted({str(package), *(str(Path(p).resolve()) for p in _subpackage_paths())}))


def _source_stamps() -> dict[str, float]:
    """Modification times of the source files this process imported that are not part of the
    Python installation (labbench's tree, editable drivers): what :meth:`WarmDevice.fresh` checks."""
    import sys

    installed = tuple(str(Path(p).resolve()) for p in {sys.prefix, sys.base_prefix})
    roots = tuple(code_fingerprint().split(os.pathsep))
    stamps: dict[str, float] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path or not path.endswith(".py"):
            continue
        if path.startswith(installed) and not path.startswith(roots):
            continue
        try:
            stamps[path] = os.stat(path).st_mtime
        except OSError:
            pass
    return stamps


def _unchanged(stamps: dict[str, float]) -> bool:
    for path, mtime in stamps.items():
        try:
            if os.stat(path).st_mtime != mtime:
                return False
        except OSError:
            return False
    return True


def _subpackage_paths() -> list[str]:
    """The directories of ``labbench.drivers`` and ``labbench.readouts`` (installed beside labbench)."""
    import importlib.util

    paths: list[str] = []
    for name in ("labbench.drivers", "labbench.readouts"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            paths += list(spec.submodule_search_locations)
    return paths


def _process_start(pid: int) -> str | None:
    """An identity of process ``pid`` that a reused pid does not share (its start time), or
    ``None`` when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "?"
    return "?"


class WarmDevice(DeviceActor):
    """A device actor's process, imported and waiting; :meth:`configure` makes it the run's device.

    Parameters
    ----------
    key : str
        Its key in the supervisor (how a restarted host finds its run's configuration).
    """

    def __init__(self, key: str) -> None:     # DeviceActor.__init__ runs in configure
        import ray

        self._key = key
        self._fingerprint = _preimport(device=True)
        self._stamps = _source_stamps()
        with warnings.catch_warnings():     # Ray 2.60 warns about its own use of a deprecated API here
            warnings.simplefilter("ignore")
            reconstructed = ray.get_runtime_context().was_current_actor_reconstructed
        if reconstructed:
            # the run's device died and Ray restarted this host: open the same device again
            blob = ray.get(ray.get_actor(SUPERVISOR, namespace=NAMESPACE).recall.remote(key))
            if blob is not None:
                driver, params, unsafe_limits = ray.cloudpickle.loads(blob)
                DeviceActor.__init__(self, driver, params, unsafe_limits)

    def ready(self) -> dict[str, Any]:
        """Its pid and the fingerprint of the code it imported (:func:`code_fingerprint`)."""
        return {"pid": os.getpid(), "fingerprint": self._fingerprint}

    def fresh(self) -> bool:
        """Whether no source file it imported (outside the Python installation) changed since."""
        return _unchanged(self._stamps)

    def configure(self, driver: type, params: dict[str, Any], unsafe_limits: dict[str, float] | None,
                  restartable: bool) -> dict[str, Any]:
        """Become the run's device (``DeviceActor.__init__``); its :meth:`info`. With
        ``restartable``, the supervisor keeps the configuration for a restart of this host."""
        import ray

        if restartable:
            ray.get(ray.get_actor(SUPERVISOR, namespace=NAMESPACE).remember.remote(
                self._key, ray.cloudpickle.dumps((driver, params, unsafe_limits))))
        DeviceActor.__init__(self, driver, params, unsafe_limits)
        return {**self.info(), "warm": True}


class WarmTrainer(TrainerActor):
    """A trainer actor's process with the training stack imported; :meth:`configure` gives it its readout."""

    def __init__(self, key: str) -> None:     # TrainerActor.__init__ runs in configure
        self._key = key
        self._fingerprint = _preimport(device=False)
        self._stamps = _source_stamps()

    def ready(self) -> dict[str, Any]:
        """Its pid and the fingerprint of the code it imported (:func:`code_fingerprint`)."""
        return {"pid": os.getpid(), "fingerprint": self._fingerprint}

    def fresh(self) -> bool:
        """Whether no source file it imported (outside the Python installation) changed since."""
        return _unchanged(self._stamps)

    def configure(self, path: str, spec: dict[str, Any], device: str, task: Any) -> bool:
        """Become the run's trainer (``TrainerActor.__init__``)."""
        TrainerActor.__init__(self, path, spec, device, task)
        return True


def _preimport(device: bool) -> str:
    """What a run's actor would import first (the drivers and their kernels for a device, the
    training stack for both); the code's fingerprint, taken after the imports."""
    from . import live  # noqa: F401 - scikit-learn and the readouts (trainer; device: its evaluation)

    if device:
        from importlib.metadata import entry_points

        for ep in entry_points(group="labbench.drivers"):
            try:
                ep.load()
            except Exception:     # a driver whose SDK is missing is imported, and fails, in the run
                pass
        _load_kernels()
    return code_fingerprint()


def _load_kernels() -> None:
    """Have numba load the ESN's compiled kernels (its on-disk cache) with a throwaway 20-unit
    network of each dtype: ~0.3 s of the first block otherwise. The run's own network is a new
    instance built by its ``__init__``; numba's code is the same whichever call loaded it."""
    import numpy as np

    try:
        from labbench.drivers.esn import EchoStateNetwork
    except ImportError:
        return
    for dtype in ("float32", "float64"):
        esn = EchoStateNetwork(units=20, seed=0, dtype=dtype)
        esn.open()
        esn.run(np.zeros((3, 1)))
        esn.close()


class PoolSupervisor:
    """Keeps ``devices`` device hosts and ``trainers`` trainer hosts ready, hands each out once.

    A detached actor (``num_cpus=0``) of the shared Ray, named :data:`SUPERVISOR` in
    :data:`NAMESPACE`. A thread of its own watches the hosts it handed out: when the host is
    gone (the run killed it) or the run that claimed it is gone (it is then killed), it starts
    a fresh host in its place.
    """

    def __init__(self, devices: int = 1, trainers: int = 1) -> None:
        self._want = {"device": int(devices), "trainer": int(trainers)}
        self._idle: dict[str, list[tuple[str, Any, Any]]] = {"device": [], "trainer": []}   # key, handle, ready ref
        self._claimed: dict[str, dict[str, Any]] = {}
        self._configs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._stats = {"claimed": 0, "refused_stale": 0, "released": 0}
        with self._lock:
            self._fill()
        threading.Thread(target=self._watch, name="labbench-pool-watch", daemon=True).start()

    def claim(self, kind: str, owner_pid: int, fingerprint: str) -> Any:
        """A host of ``kind`` (``device`` | ``trainer``) for the run in process ``owner_pid``, or
        ``None`` (pool empty, or its hosts run other code than ``fingerprint``: they are replaced)."""
        import ray

        with self._lock:
            idle = self._idle[kind]
            done = {h[2] for h in idle}
            ready, _ = ray.wait(list(done), num_returns=len(done), timeout=0) if done else ([], [])
            # a host that is up first; one still starting is still ahead of a fresh actor
            idle.sort(key=lambda h: h[2] not in ready)
            while idle:
                key, handle, ref = idle.pop(0)
                try:
                    info = ray.get(ref, timeout=0) if ref in ready else None
                except Exception:                       # died while waiting: replace it
                    self._fill()
                    continue
                # a host still starting imports the code as it is on disk now; one that is up must
                # have imported the run's code, and none of its files may have changed since
                stale = (info["fingerprint"] if info is not None else code_fingerprint()) != fingerprint
                if not stale and info is not None:
                    try:
                        stale = not ray.get(handle.fresh.remote(), timeout=10)
                    except ray.exceptions.RayError:
                        stale = True
                if stale:
                    self._stats["refused_stale"] += 1
                    ray.kill(handle)
                    self._fill()                        # with the code as it is now
                    return None
                self._claimed[key] = {"kind": kind, "handle": handle, "owner": owner_pid,
                                      "owner_start": _process_start(owner_pid), "probe": None}
                self._stats["claimed"] += 1
                return handle
            return None

    def remember(self, key: str, blob: bytes) -> None:
        """Keep a claimed device host's configuration, for its restart after a crash."""
        self._configs[key] = blob

    def recall(self, key: str) -> bytes | None:
        """The configuration :meth:`remember` kept for ``key`` (``None`` if none)."""
        return self._configs.get(key)

    def status(self) -> dict[str, Any]:
        """Hosts idle and handed out, and counters (claimed, refused as stale, released)."""
        with self._lock:
            return {"idle": {k: len(v) for k, v in self._idle.items()}, "in_use": len(self._claimed),
                    "wanted": dict(self._want), **self._stats}

    def shutdown(self) -> None:
        """Kill every host (idle and handed out)."""
        import ray

        with self._lock:
            self._want = {"device": 0, "trainer": 0}
            for hosts in self._idle.values():
                for _, handle, _ in hosts:
                    ray.kill(handle)
                hosts.clear()
            for entry in self._claimed.values():
                ray.kill(entry["handle"])
            self._claimed.clear()

    def _fill(self) -> None:
        """Start hosts until each kind has as many idle (or starting) as wanted (lock held)."""
        import ray

        for kind, want in self._want.items():
            while len(self._idle[kind]) < want:
                key = uuid.uuid4().hex
                cls = WarmDevice if kind == "device" else WarmTrainer
                opts: dict[str, Any] = {"num_cpus": 0, "lifetime": "detached", "namespace": NAMESPACE,
                                        "name": f"{kind}-{key}"}
                if kind == "device":
                    opts["max_restarts"] = HOST_RESTARTS
                handle = ray.remote(cls).options(**opts).remote(key)
                self._idle[kind].append((key, handle, handle.ready.remote()))

    def _watch(self) -> None:
        while True:
            time.sleep(_WATCH_S)
            try:
                self._check()
            except Exception:   # pragma: no cover - keep watching whatever one check met
                pass

    def _check(self) -> None:
        """Release hosts whose run killed them; kill (and release) those whose run is gone."""
        import ray

        with self._lock:
            for key, entry in list(self._claimed.items()):
                gone = False
                start = entry["owner_start"]
                if start is not None and _process_start(entry["owner"]) != start:
                    ray.kill(entry["handle"])           # its run is over (or died holding it: SIGKILL)
                    gone = True
                else:
                    probe = entry["probe"]
                    if probe is None:
                        entry["probe"] = entry["handle"].ready.remote()
                    elif ray.wait([probe], timeout=0)[0]:
                        entry["probe"] = None
                        try:
                            ray.get(probe)
                        except ray.exceptions.ActorDiedError:
                            gone = True                 # killed by its run (or out of restarts)
                        except ray.exceptions.RayError:
                            pass                        # restarting: look again
                if gone:
                    self._stats["released"] += 1
                    del self._claimed[key]
                    self._configs.pop(key, None)
            self._fill()


def ensure_pool(devices: int = 1, trainers: int = 1) -> None:
    """Start the pool's supervisor on the connected (shared local) Ray, if it is not there."""
    import ray

    sup = ray.remote(PoolSupervisor).options(name=SUPERVISOR, namespace=NAMESPACE, lifetime="detached",
                                             num_cpus=0, get_if_exists=True).remote(devices, trainers)
    ray.get(sup.status.remote())


def pool_status() -> dict[str, Any] | None:
    """The pool's :meth:`PoolSupervisor.status` on the connected Ray, or ``None`` when it has none."""
    sup = _supervisor()
    if sup is None:
        return None
    import ray

    return ray.get(sup.status.remote(), timeout=10)


def _supervisor() -> Any:
    """The pool's supervisor when this process is on the shared local Ray and it is there, else ``None``."""
    from .ray_runtime import session

    s = session()
    if s is None or s.mode != "shared":
        return None
    import ray

    try:
        return ray.get_actor(SUPERVISOR, namespace=NAMESPACE)
    except ValueError:
        return None


def _claim(kind: str) -> Any:
    if os.environ.get(WARM_ENV, "1") == "0":
        return None
    sup = _supervisor()
    if sup is None:
        return None
    import ray

    try:
        return ray.get(sup.claim.remote(kind, os.getpid(), code_fingerprint()), timeout=10)
    except ray.exceptions.RayError:
        return None


def start_device(options: dict[str, Any], driver: type, params: dict[str, Any],
                 unsafe_limits: dict[str, float] | None) -> tuple[Any, Any]:
    """A device actor for a run: a warm host of the pool configured with ``driver(**params)`` when
    one fits, else a fresh :class:`DeviceActor` with Ray ``options``.

    Returns
    -------
    tuple
        ``(actor, info_ref)``: the handle and a reference to its ``info()`` (with ``warm: True``
        for a warm host), ready once the device is open.
    """
    import ray

    restarts = int(options.get("max_restarts", 0))
    if not options.get("resources") and restarts <= HOST_RESTARTS:
        host = _claim("device")
        if host is not None:
            return host, host.configure.remote(driver, params, unsafe_limits, restarts > 0)
    actor = ray.remote(DeviceActor).options(**options).remote(driver, params, unsafe_limits)
    return actor, actor.info.remote()


def start_trainer(options: dict[str, Any], path: str, spec: dict[str, Any], device: str,
                  task: Any) -> tuple[Any, bool]:
    """A trainer actor for a run: a warm host of the pool when there is one, else a fresh
    :class:`TrainerActor` with Ray ``options``; ``(actor, warm)``."""
    import ray

    host = _claim("trainer")
    if host is not None:
        host.configure.remote(path, spec, device, task)    # before train(), which the bench calls next
        return host, True
    return ray.remote(TrainerActor).options(**options).remote(path, spec, device, task), False
