"""The bench's side of a closed loop run inside the device actor (``[run] closed_loop = "actor"``).

The task's policy is shipped to each device actor once (:meth:`DeviceActor.loop_start`);
the actor then loops block -> policy -> next block by itself, on a thread of its own
(:class:`~labbench.engine.closed_loop.PolicyLoop`), so a decision costs no Ray round trip.
The bench takes the blocks in coarse chunks (about :data:`CHUNK_S` seconds of them; the
loop runs on while a chunk travels) and writes every block with its ``loop`` record to
the store as the chunks arrive (from a writer thread of its own, as in the bench-side loop).

Each chunk also carries the policy as it stands after its last block. When the device's
process dies, the bench writes what it received, lets the run's recovery rebuild the
device (replaying the stored inputs of a deterministic device), and starts the loop again
from the committed row with that policy and the last block it saw: the run goes on as if
nothing happened, like the bench-side loop.

A policy error stops the loop at that block: the blocks before it are written and the run
fails with one line naming the policy, the rows and the error. A driver error aborts the
run (:class:`~labbench.engine.errors.DeviceDown`) the same way, its blocks kept.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from .coalescing_writer import CoalescingWriter
from .errors import DeviceDown, remote_cause
from .progress import ProgressBar
from ..store import RunStore

__all__ = ["CHUNK_S", "stream_in_actor"]

#: seconds of loop per chunk the actor hands back: how far the store may lag behind the loop
CHUNK_S = 0.2
#: chunk calls queued per device actor: the next take is waiting there when one returns
_IN_FLIGHT = 2


def stream_in_actor(proto: Any, streams: list[Any], store: RunStore, phase: np.ndarray, *,
                    timings: dict[str, Any], recover: Callable[[Any, BaseException], None],
                    progress: bool = True, console: Any = None) -> None:
    """Run a closed-loop protocol with the policy in each device's actor, writing the store as it goes.

    Parameters
    ----------
    proto : Protocol
        The run's protocol (a closed-loop task).
    streams : list
        The run's device streams (``actor``, ``group``, ``section``, ``next_row``), one per device.
    store : RunStore
        The run store, each device's group created.
    phase : ndarray of int8
        Every row's phase.
    timings : dict
        Filled with ``stream_s``, ``samples_per_s``, ``store_appends`` and ``loop_chunks``.
    recover : callable
        ``recover(stream, exc)`` after a device's process died: waits for its restart, rebuilds
        its state from the store's committed rows and sets ``stream.next_row`` to them.
    progress, console
        The progress bar's.

    Raises
    ------
    DeviceDown
        A driver raised, a device returned nothing within ``device.timeout_s``, or it died
        more often than ``device.max_restarts``.
    RuntimeError
        The policy raised or answered wrongly (one line: the task, the rows, the error).
    """
    import ray
    import zarr
    from threadpoolctl import threadpool_limits

    task = proto.task
    total, block = proto.run.total, proto.run.block
    in_dtype = {s.group: np.dtype(store.input_dtype(s.group)).str for s in streams}
    # what each device's loop resumes from after a restart: (policy, previous block, next row)
    state: dict[str, tuple[Any, Any, int]] = {s.group: (task.policy(proto.protocol.seed), None, s.next_row)
                                              for s in streams}
    inflight: dict[str, deque[Any]] = {s.group: deque() for s in streams}
    finished: set[str] = set()
    #: when each device's oldest chunk call became the one it is working on
    since: dict[str, float] = {}
    chunks = 0

    def start(s: Any) -> None:
        policy, previous, row = state[s.group]
        try:
            ray.get(s.actor.loop_start.remote(task, policy, previous, row, total, block, in_dtype[s.group]),
                    timeout=s.section.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise DeviceDown(f"device {s.group!r} did not take the closed loop within "
                             f"{s.section.timeout_s:g} s") from None
        except ray.exceptions.RayTaskError as exc:
            raise DeviceDown(f"device {s.group!r} could not start the closed loop: {remote_cause(exc)}") from None
        since[s.group] = time.monotonic()
        while len(inflight[s.group]) < _IN_FLIGHT:
            inflight[s.group].append(s.actor.loop_chunk.remote(CHUNK_S))

    label = f"{proto.protocol.name} on {proto.describe_devices()} (closed loop in the device)"
    bar = ProgressBar(sum(total - s.next_row for s in streams), label, enabled=progress, console=console)
    t_start = time.perf_counter()
    with bar, CoalescingWriter(store) as writer, threadpool_limits(limits=1, user_api="blas"), \
            zarr.config.set({"threading.max_workers": 1, "async.concurrency": 1}):
        for s in streams:
            start(s)
        by_group = {s.group: s for s in streams}
        while any(inflight.values()):
            heads = {q[0]: by_group[g] for g, q in inflight.items() if q}
            due = min(since[s.group] + s.section.timeout_s + CHUNK_S for s in heads.values())
            ready, _ = ray.wait(list(heads), num_returns=1, timeout=max(due - time.monotonic(), 0.0))
            if not ready:
                late = min(heads.values(), key=lambda s: since[s.group])
                raise DeviceDown(f"device {late.group!r} returned no closed-loop block after row "
                                 f"{state[late.group][2]} within {late.section.timeout_s:g} s (device.timeout_s)")
            s = heads[ready[0]]
            inflight[s.group].popleft()
            since[s.group] = time.monotonic()
            try:
                chunk = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                raise DeviceDown(f"device {s.group!r} failed in its closed loop: {remote_cause(exc)}") from None
            except ray.exceptions.RayActorError as exc:          # its process died
                inflight[s.group].clear()
                writer.flush()                   # every block received is in the store before the replay
                recover(s, exc)
                if s.next_row != state[s.group][2]:
                    raise DeviceDown(f"device {s.group!r}: the store holds {s.next_row} rows but the loop "
                                     f"stood at row {state[s.group][2]}; cannot go on") from None
                start(s)
                continue
            chunks += 1
            for blk in chunk.blocks:
                a = blk["start"]
                b = a + len(blk["features"])
                writer.put(s.group, inputs=blk["inputs"], features=blk["features"], targets=blk["targets"],
                           phase=phase[a:b], raw={**blk["raw"], "loop": blk["loop"]})
                bar.advance(b - a)
            if chunk.blocks:
                state[s.group] = (chunk.policy, chunk.previous, chunk.next_row)
            if chunk.error is not None:
                writer.flush()                   # the blocks before the error are committed
                if chunk.error_kind == "policy":
                    raise RuntimeError(chunk.error)
                raise DeviceDown(f"device {s.group!r} {chunk.error}")
            if chunk.done:
                finished.add(s.group)
            elif s.group not in finished:
                inflight[s.group].append(s.actor.loop_chunk.remote(CHUNK_S))
    elapsed = time.perf_counter() - t_start
    timings["store_appends"] = writer.appends
    timings["loop_chunks"] = chunks
    timings["stream_s"] = elapsed
    timings["samples_per_s"] = total * len(streams) / elapsed if elapsed > 0 else float("inf")

