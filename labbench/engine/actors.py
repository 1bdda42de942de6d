"""Ray actors of the bench: one per device, one per live trainer.

A device actor takes coarse calls (a block, not a sample) and rebuilds its device in
``__init__``, so after a restart it is ready again; the bench decides where to resume
from the store's ``committed`` row, and for a deterministic device first replays the
stored inputs up to that row (:meth:`DeviceActor.replay`) so its state is what it was. A trainer actor makes one long call: it tails the
run store, learns, and writes its readout group (see :mod:`labbench.engine.live`).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .closed_loop import LoopChunk, PolicyLoop, free_run, learn_with_feedback
from .memory import release_object_store_pages
from .trained import Packed, unpacked
from ..reservoir import Reservoir


class DeviceActor:
    """Owns one open reservoir inside a Ray worker process.

    ``driver`` is the class itself, resolved by the bench from the protocol's driver name
    (installed entry points or an explicit registration): the worker never looks a name up
    or imports a module a protocol names.
    """

    def __init__(self, driver: type[Reservoir], params: dict[str, Any],
                 unsafe_limits: dict[str, float] | None = None) -> None:
        # lifted safety limits (a signed-off --unsafe-limits file) are an argument of their own,
        # never part of the protocol's params
        self.reservoir = driver(**params) if unsafe_limits is None else driver(**params, unsafe_limits=unsafe_limits)
        self.reservoir.open()
        self.busy_s = 0.0  # time spent inside reservoir.run
        self._last_end: float | None = None  # when the last run_timed call finished (closed loops)
        self._loop: PolicyLoop | None = None  # a closed loop run here (closed_loop = "actor")

    def info(self) -> dict[str, Any]:
        import ray

        return {"spec": self.reservoir.spec.to_dict(), "describe": self.reservoir.describe(),
                "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "deterministic": bool(type(self.reservoir).deterministic)}

    def reset(self, seed: int | None = None) -> None:
        self.reservoir.reset(seed)

    def run(self, u: np.ndarray) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        release_object_store_pages()   # the store pages of blocks already returned (engine/memory.py)
        t0 = time.perf_counter()
        block = self.reservoir.run(u)
        self.busy_s += time.perf_counter() - t0
        return block.features, block.raw

    def run_chained(self, upstream: tuple[np.ndarray, dict[str, Any]]) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
        """``run`` on another device's block ``(features, raw)``: its features are this device's inputs."""
        return self.run(upstream[0])

    def run_timed(self, u: np.ndarray) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], dict[str, float]]:
        """``run`` for closed loops, with the loop's timing on this process's clock.

        ``latency_s`` is how long the device sat idle since the previous ``run_timed``
        returned (the whole loop around the bench and its policy; ``nan`` the first time),
        ``device_s`` how long the block took.
        """
        t0 = time.perf_counter()
        latency = float("nan") if self._last_end is None else t0 - self._last_end
        block = self.reservoir.run(u)
        t1 = time.perf_counter()
        self.busy_s += t1 - t0
        self._last_end = t1
        return block.features, block.raw, {"latency_s": latency, "device_s": t1 - t0}

    def loop_start(self, task: Any, policy: Any, previous: Any, start: int, total: int, block: int,
                   input_dtype: str) -> int:
        """Take a closed-loop task's policy and run its loop here from row ``start`` (see
        :class:`~labbench.engine.closed_loop.PolicyLoop`); the blocks come back through
        :meth:`loop_chunk`. ``policy`` and ``previous`` are fresh at the start of a run, or as
        the last chunk the bench received left them after a restart. Returns ``start``."""
        import sys

        self._end_loop()
        # the loop's thread and the thread that hands its chunks over share the GIL: switch every
        # 0.5 ms rather than Python's 5 ms, so serialising a chunk never holds a decision up for long
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._loop = PolicyLoop(self.reservoir, task, policy, start=start, total=total, block=block,
                                input_dtype=input_dtype, previous=previous)
        self._loop.start()
        return int(start)

    def loop_chunk(self, max_s: float) -> LoopChunk:
        """The blocks the loop started by :meth:`loop_start` has run since the last call (it waits
        about ``max_s`` seconds for them; the loop runs on meanwhile, on a thread of its own)."""
        if self._loop is None:
            raise RuntimeError("no closed loop started in this device actor (loop_start first)")
        return self._loop.take(max_s)

    def _end_loop(self) -> None:
        """Stop the loop's thread (if any) and count its device time."""
        if self._loop is not None:
            self._loop.stop()
            self.busy_s += self._loop.device_s
            self._loop = None

    def replay(self, u: np.ndarray) -> int:
        """Run ``u`` and keep nothing but the device's new state (after a restart); returns its rows."""
        t0 = time.perf_counter()
        self.reservoir.run(u)
        self.busy_s += time.perf_counter() - t0
        return len(u)

    def free_run(self, readout, sync_inputs: np.ndarray, horizon: int) -> np.ndarray:
        """Free runs of a trained pipeline (:class:`~labbench.engine.trained.Packed` or not)."""
        return free_run(self.reservoir, unpacked(readout), sync_inputs, horizon)

    def learn_with_feedback(self, pipeline, teacher: np.ndarray, sync: int) -> tuple[Any, np.ndarray]:
        """FORCE learning with the loop closed; returns the updated pipeline (packed when it came
        packed) and its trace."""
        import copy

        packed = isinstance(pipeline, Packed)
        # arrays that came through Ray's object store are read-only: learn on a copy
        pipeline = pipeline.unpack() if packed else copy.deepcopy(pipeline)
        trace = learn_with_feedback(self.reservoir, pipeline.readout, teacher, sync)
        return (Packed.of(pipeline) if packed else pipeline), trace

    def prepare_evaluation(self) -> None:
        """Import what a trained readout needs here (scikit-learn, the readouts) before it arrives:
        the bench calls it after the last block, so it runs while the trainers finish."""
        from . import live  # noqa: F401

    def health(self) -> list[str]:
        return self.reservoir.health()

    def summary(self) -> dict[str, Any]:
        return self.reservoir.summary()

    def stats(self) -> dict[str, float]:
        """Seconds spent in the driver's ``run`` and peak resident memory (MiB) of this worker."""
        import resource

        return {"device_busy_s": self.busy_s + (self._loop.device_s if self._loop is not None else 0.0),
                "device_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    def close(self) -> None:
        self._end_loop()                       # the loop's thread lets go of the device first
        self.reservoir.close()


class TrainerActor:
    """Runs :func:`labbench.engine.live.train_store` for one readout inside a Ray worker.

    It reads and writes the run store through the file system, so the bench places it on
    the node that holds the store.
    """

    def __init__(self, path: str, spec: dict[str, Any], device: str, task: Any) -> None:
        from ..spec.protocol import ReadoutSection

        from . import live  # noqa: F401 - the training stack, imported while the devices start

        self.path = path
        self.spec = ReadoutSection.model_validate(spec)
        self.device = device
        self.task = task

    def train(self, poll: float = 0.05, path: str | None = None) -> Any:
        """Train on the store at ``path`` (default: the one given at start-up)."""
        from .live import train_store

        result = train_store(path or self.path, self.spec, device=self.device, task=self.task, poll=poll)
        # sealed for the trip: the run's process passes it to the device without importing the
        # training stack (scikit-learn) to open it
        result.pipeline = Packed.of(result.pipeline)
        return result
