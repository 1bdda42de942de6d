"""One cell of a ``labbench compare`` suite: one device, one battery entry, one seed, in this process.

A cell is a dict::

    {"device": "esn", "family": "esn", "entry": "memory_capacity", "seed": 0,
     "scale": "quick", "mock": True, "params": {}}

:func:`run_cell` builds the entry's protocol for the family (:mod:`labbench.compare.families`),
runs it with :func:`labbench.engine.trial.run_trial` (no Ray, no run store) or probes the
device directly (kernel quality, fading memory), and returns the cell's result and curves in
the layout of :mod:`labbench.store.comparison`. A cell that fails returns ``status = "failed"``
with a one-line error; it never raises (but for ``KeyboardInterrupt``). A cell runs with one
BLAS thread wherever it runs (as a Ray task does), so its numbers do not depend on the process.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .battery import XOR_DELAYS, Entry, get_entry
from .families import Probe, build_protocol, effective_table, get_family

if TYPE_CHECKING:
    from ..reservoir import Reservoir
    from ..spec.protocol import Protocol

__all__ = ["run_cell"]

Curves = dict[str, dict[str, np.ndarray]]


def run_cell(cell: dict[str, Any]) -> tuple[dict[str, Any], Curves]:
    """Run one cell here and now.

    Parameters
    ----------
    cell : dict
        ``device`` (the suite's name for it), ``family``, ``entry``, ``seed`` (the task
        data's ``protocol.seed``), ``scale`` (``"quick"`` or ``"full"``), ``mock`` (run the
        devices' mocks) and ``params`` (device parameters overriding the family's plan, may
        be empty).

    Returns
    -------
    result : dict
        device, family, entry, seed, status (``complete`` / ``failed``), error (one line or
        ``None``), metrics ``{name: float}``, primary ``{name, value, maximise}``, cost
        ``{wall_s, device_s, energy_J, spikes, charge_C}`` (``None`` where the device does
        not report it), provenance (the effective protocol's text and source, overrides,
        driver, device parameters, mock, seed, labbench version, host, start time) and
        warnings.
    curves : dict
        ``{curve: {column: 1-D array}}``: ``memory_curve`` {delay, capacity}, ``fading``
        {step, distance}, ``kernel_spectrum`` {index, kernel, generalisation}; empty for
        the other entries and for failed cells.
    """
    from ..engine.ray_runtime import current_node_id
    from ..store.layout import now_iso
    from ..version import __version__

    t0 = time.perf_counter()
    seed = int(cell.get("seed", 0))
    result: dict[str, Any] = {
        "device": cell.get("device"), "family": cell.get("family"), "entry": cell.get("entry"), "seed": seed,
        "status": "failed", "error": None, "metrics": {}, "primary": {"name": None, "value": None, "maximise": None},
        "cost": {"wall_s": None, "device_s": None, "energy_J": None, "spikes": None, "charge_C": None},
        "provenance": {"protocol_text": None, "protocol_source": None, "overrides": {}, "driver": None,
                       "device_params": {}, "mock": bool(cell.get("mock", True)), "seed": seed,
                       "labbench_version": __version__, "host": platform.node(), "node_id": current_node_id(),
                       "started": now_iso()},
        "warnings": []}
    curves: Curves = {}
    try:
        entry = get_entry(str(cell["entry"]))
        result["primary"] = {"name": entry.metric, "value": None, "maximise": entry.maximise}
        get_family(str(cell["family"])).plan(entry.name)
        outcome = _Outcome()
        # one BLAS thread, as in a Ray task (and in the bench's trainers): the readouts' sums run
        # in one order, so a cell scores to the bit what `labbench run` scores, wherever it runs
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            if entry.kind == "probe":
                _run_probe(cell, entry, outcome)
            else:
                _run_protocols(cell, entry, outcome)
        result["metrics"] = outcome.metrics
        result["primary"]["value"] = _finite(outcome.primary)
        result["cost"].update(outcome.cost())
        result["provenance"].update(outcome.provenance)
        result["warnings"] = list(dict.fromkeys(outcome.warnings))
        curves = outcome.curves
        result["status"] = "complete"
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a failed cell is a result, not an exception
        result["error"] = _one_line(exc)
        curves = {}
    result["cost"]["wall_s"] = time.perf_counter() - t0
    return result, curves


# -- what a cell gathers -------------------------------------------------------------------------
@dataclass
class _Outcome:
    metrics: dict[str, float] = field(default_factory=dict)
    primary: float | None = None
    curves: Curves = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    device_s: float = 0.0
    energy_J: float | None = None
    spikes: int | None = None
    charge_C: float | None = None

    def add_costs(self, energy_J: float | None, spikes: int | None, charge_C: float | None) -> None:
        if energy_J is not None:
            self.energy_J = (self.energy_J or 0.0) + float(energy_J)
        if spikes is not None:
            self.spikes = (self.spikes or 0) + int(spikes)
        if charge_C is not None:
            self.charge_C = (self.charge_C or 0.0) + float(charge_C)

    def cost(self) -> dict[str, Any]:
        return {"device_s": self.device_s, "energy_J": self.energy_J, "spikes": self.spikes,
                "charge_C": self.charge_C}

    def describe(self, proto: Protocol, extra: dict[str, Any] | None = None) -> None:
        """Provenance of the (first) protocol the cell ran."""
        self.provenance = {"protocol_text": effective_table(proto), "protocol_source": proto.source,
                           "overrides": dict(proto.overrides), "driver": " → ".join(
                               d.driver for d in _chain_order(proto)),
                           "device_params": {d.group: proto.device_params(d) for d in proto.all_devices},
                           **(extra or {})}


def _device_costs(proto: Protocol, summaries: dict[str, dict[str, Any]],
                  raw_rows: dict[str, dict[str, int]]) -> tuple[float | None, int | None, float | None]:
    """``(energy_J, spikes, charge_C)`` of a run from its devices' summaries and raw-stream row counts.

    Energy: the Loihi's estimate (``summary.energy.energy_J``). Spikes: the device's spike count
    (``summary.counts.spikes``, else the rows of its raw ``spikes`` stream: an LSM's spikes, the
    spikes an MEA detected). Charge: an MEA's stimulation, one raw ``stim`` row per pulse and
    electrode, each pulse two phases of ``amplitude_ua × phase_us``.
    """
    energy = spikes = charge = None
    for dev in proto.all_devices:
        summary = summaries.get(dev.group) or {}
        rows = raw_rows.get(dev.group) or {}
        e = (summary.get("energy") or {}).get("energy_J") if isinstance(summary.get("energy"), dict) else None
        if e is not None:
            energy = (energy or 0.0) + float(e)
        counted = (summary.get("counts") or {}).get("spikes") if isinstance(summary.get("counts"), dict) else None
        if counted is None and "spikes" in rows:
            counted = rows["spikes"]
        if counted is not None:
            spikes = (spikes or 0) + int(counted)
        if "stim" in rows:
            params = proto.device_params(dev)
            amp, width = params.get("amplitude_ua"), params.get("phase_us")
            if amp is not None and width is not None:
                charge = (charge or 0.0) + rows["stim"] * 2.0 * abs(float(amp)) * float(width) * 1e-12
    return energy, spikes, charge


# -- protocol entries ------------------------------------------------------------------------------
def _run_protocols(cell: dict[str, Any], entry: Entry, out: _Outcome) -> None:
    """Memory capacity, NARMA-10, classification: one trial; XOR: one trial per delay."""
    from ..engine.trial import run_trial

    variants = [{"task.delay": d} for d in XOR_DELAYS] if entry.name == "xor" else [{}]
    accuracies = []
    for i, extra in enumerate(variants):
        proto = _protocol(cell, entry, extra)
        if i == 0:
            out.describe(proto, {"variants": variants} if len(variants) > 1 else None)
        trial = run_trial(proto, keep_test=entry.name == "memory_capacity")
        out.device_s += float(trial.timings.get("device_s", 0.0))
        out.add_costs(*_device_costs(proto, trial.summaries, trial.raw_rows))
        out.warnings += trial.warnings
        first = next(iter(trial.metrics))
        for readout, values in trial.metrics.items():
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    key = name if readout == first else f"{readout}/{name}"
                    out.metrics[f"{key}_d{extra['task.delay']}" if extra else key] = float(value)
        if entry.name == "xor":
            accuracies.append(float(trial.metrics[first]["accuracy"]))
        else:
            out.primary = trial.metrics[first].get(entry.metric)
        if entry.name == "memory_capacity":
            y_true, y_pred = trial.test[first]
            capacity = proto.task.memory_curve(y_true, y_pred)
            out.curves["memory_curve"] = {"delay": np.arange(1, len(capacity) + 1, dtype=np.float64),
                                          "capacity": np.asarray(capacity, dtype=np.float64)}
    if entry.name == "xor":
        out.primary = float(np.mean(accuracies))
        out.metrics["accuracy"] = out.primary


def _protocol(cell: dict[str, Any], entry: Entry, extra: dict[str, Any] | None = None) -> Protocol:
    return build_protocol(str(cell["family"]), entry.name, seed=int(cell.get("seed", 0)),
                          scale=cell.get("scale", "quick"), params=cell.get("params") or {},
                          mock=bool(cell.get("mock", True)), extra=extra)


# -- probe entries ---------------------------------------------------------------------------------
def _run_probe(cell: dict[str, Any], entry: Entry, out: _Outcome) -> None:
    """Kernel quality / generalisation rank, or the fading-memory check, on the family's device(s)."""
    proto = _protocol(cell, entry)
    plan = get_family(str(cell["family"])).plan(entry.name)
    probe = plan.probe_for(cell.get("scale", "quick")) or Probe()
    out.describe(proto, {"probe": vars(probe)})
    seed = int(cell.get("seed", 0))
    with _Chain(proto) as chain:
        if entry.name == "kernel":
            _kernel(chain, proto, probe, seed, out)
        else:
            _fading(chain, proto, probe, seed, out)
        chain.harvest()
        out.device_s += chain.device_s
        out.add_costs(*chain.costs)
        out.warnings += chain.health()


def _streams(proto: Protocol, rows: int, seeds: list[int]) -> np.ndarray:
    """``(len(seeds), rows, n_inputs)``: the task's own inputs (its encoding) for each seed."""
    return np.stack([np.asarray(proto.task.generate(rows, s).inputs, dtype=np.float64)[:rows] for s in seeds])


def _seeds(seed: int, n: int, salt: int) -> list[int]:
    """``n`` task seeds for a probe, distinct per cell seed and per use (``salt``)."""
    return [int(s) for s in np.random.SeedSequence([seed, salt]).generate_state(n, dtype=np.uint32)]


def _kernel(chain: _Chain, proto: Protocol, probe: Probe, seed: int, out: _Outcome) -> None:
    from ..metrics import computational_capability, generalisation_rank, kernel_quality

    m, rows, recent = probe.streams, probe.rows, min(probe.recent, probe.rows)
    different = _streams(proto, rows, _seeds(seed, m, 1))
    # generalisation: the same recent past, a different remote past (Büsing et al. 2010)
    common = _streams(proto, rows, _seeds(seed, 1, 2))[0]
    similar = different.copy()
    similar[:, rows - recent:] = common[rows - recent:]
    ends_k = chain.end_states(different)
    ends_g = chain.end_states(similar)
    kq = kernel_quality(ends_k, rtol=probe.rtol)
    gr = generalisation_rank(ends_g, rtol=probe.rtol)
    cc = computational_capability(kq, gr)
    out.metrics.update({"kernel_quality": float(kq), "generalisation_rank": float(gr),
                        "computational_capability": float(cc), "capability_per_stream": float(cc) / m,
                        "streams": float(m), "n_features": float(ends_k.shape[1])})
    # per stream: both ranks are at most m, and the families' probes use different m
    out.primary = float(cc) / m
    spectra = {}
    for name, states in (("kernel", ends_k), ("generalisation", ends_g)):
        s = np.linalg.svd(states, compute_uv=False)
        spectra[name] = s / s[0] if s.size and s[0] > 0 else np.zeros_like(s)
    n = max(len(v) for v in spectra.values())
    out.curves["kernel_spectrum"] = {"index": np.arange(1, n + 1, dtype=np.float64),
                                     **{k: np.pad(v, (0, n - len(v)), constant_values=np.nan)
                                        for k, v in spectra.items()}}


def _fading(chain: _Chain, proto: Protocol, probe: Probe, seed: int, out: _Outcome) -> None:
    from ..metrics import fading_memory_distance, fading_time
    from .battery import FADING_HORIZON

    histories = _streams(proto, probe.prefix, _seeds(seed, 2, 3))          # two different pasts
    common = _streams(proto, probe.rows, _seeds(seed, 1, 4))[0]             # then the same input
    u = np.concatenate([histories, np.broadcast_to(common, (2, *common.shape))], axis=1)
    states = chain.trajectories(u)[:, probe.prefix - 1:]                     # step 0: the two initial states
    d = fading_memory_distance(states[0], states[1])
    t = fading_time(d, probe.fraction)
    at = d[min(FADING_HORIZON, len(d) - 1)]
    out.metrics.update({"fading_time": float("nan") if t is None else float(t),
                        f"distance_at_{FADING_HORIZON}": float(at), "final_distance": float(d[-1]),
                        "rows": float(probe.rows)})
    # ranked by the distance left after a horizon every family's probe reaches: a spiking
    # liquid or a noisy culture may never get within 1 % (no fading time), yet how far it got
    # still compares
    out.primary = float(at) if np.isfinite(at) else None
    out.curves["fading"] = {"step": np.arange(len(d), dtype=np.float64), "distance": d}


class _Chain:
    """The protocol's devices opened here, run as one reservoir from its initial state."""

    def __init__(self, proto: Protocol) -> None:
        self.proto = proto
        self.order = _chain_order(proto)
        self.devices: dict[str, Reservoir] = {}
        self.device_s = 0.0
        self.costs: tuple[float | None, int | None, float | None] = (None, None, None)
        self._raw: dict[str, dict[str, int]] = {d.group: {} for d in self.order}
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _Chain:
        p = self.proto
        try:
            for dev in self.order:
                params = p.device_params(dev)
                if dev.input is not None and "n_inputs" in p.driver_class(dev).Params.model_fields:
                    params = {**params, "n_inputs": int(self.devices[dev.input].spec.n_features)}
                self.devices[dev.group] = self._stack.enter_context(p.driver_class(dev)(**params))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    @property
    def batched(self) -> bool:
        return all(type(r).supports_batch for r in self.devices.values())

    def reset(self) -> None:
        """Every device back to its initial state (costs so far harvested first)."""
        self.harvest()
        for r in self.devices.values():
            r.reset()
            r.open()

    def harvest(self) -> None:
        """Add the devices' costs since their last reset to :attr:`costs`."""
        summaries = {g: r.summary() for g, r in self.devices.items()}
        e, s, c = _device_costs(self.proto, summaries, self._raw)
        old = self.costs
        self.costs = tuple(None if a is None and b is None else (a or 0) + (b or 0)   # type: ignore[assignment]
                           for a, b in zip(old, (e, s, c)))
        self._raw = {d.group: {} for d in self.order}

    def run(self, u: np.ndarray) -> np.ndarray:
        """The last device's features for ``u`` (each stage fed the one before it)."""
        features: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        for dev in self.order:
            x = u if dev.input is None else features[dev.input]
            block = self.devices[dev.group].run(x)
            features[dev.group] = np.asarray(block.features)
            counts = self._raw[dev.group]
            for stream, cols in block.raw.items():
                n = len(next(iter(cols.values()))) if cols else 0
                counts[stream] = counts.get(stream, 0) + int(n)
        self.device_s += time.perf_counter() - t0
        return features[self.order[-1].group]

    def trajectories(self, u: np.ndarray) -> np.ndarray:
        """``(B, T, n_features)``: each of the ``B`` streams ``u[b]`` run from the initial state."""
        if self.batched:
            self.reset()
            return np.asarray(self.run(u), dtype=np.float64)
        out = []
        for stream in u:
            self.reset()
            out.append(np.asarray(self.run(stream), dtype=np.float64))
        return np.stack(out)

    def end_states(self, u: np.ndarray) -> np.ndarray:
        """``(B, n_features)``: the state at the end of each stream, from the initial state."""
        return self.trajectories(u)[:, -1, :]

    def health(self) -> list[str]:
        found = [(g, w) for g, r in self.devices.items() for w in r.health()]
        return [f"{g}: {w}" if len(self.devices) > 1 else w for g, w in found]


def _chain_order(proto: Protocol) -> list:
    from ..spec.protocol import chain_order

    return chain_order(proto)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _one_line(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(text.split())[:500]
