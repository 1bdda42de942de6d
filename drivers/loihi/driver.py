"""Loihi: a liquid state machine quantised onto Intel Loihi's fixed-point CUBA-LIF neurons.

The device takes the float LSM's parameters (``labbench.drivers.lsm``: the same names, so a
protocol swaps ``driver = "lsm"`` for ``driver = "loihi"``), quantises them with
:func:`.quantise.quantise_lsm` (du, dv, threshold and 8-bit weight mantissas with a shared
exponent; the same wiring for the same seed) and runs the integer network on one of three
back ends:

- ``emulator`` (the mock): :class:`.emulator.Emulator`, bit-exact with Lava 0.10's ``fixed_pt``
  LIF and Dense process models, compiled with numba;
- ``lava``: Lava itself, ``Loihi2SimCfg(select_tag="fixed_pt")`` on the CPU, in a Python 3.10
  worker process (:class:`.lava_backend.LavaBackend`);
- ``hw``: ``Loihi2HwCfg`` on a Loihi board, which needs Intel's closed ``lava-loihi``.

Inputs become binary spikes from a source, the only input Loihi's neurons take (Davies et al.
2018, IEEE Micro 38(1)), one row held for ``steps_per_sample`` steps as in the LSM:

- ``current``: each channel's value, clipped to [0, 1], as a deterministic rate code (a
  first-order delta-sigma modulator: a spike whenever the running sum of the value passes an
  integer), so a value ``r`` gives ``r`` spikes per step on average and the input synapses
  carry the drive of value 1 per spike (:mod:`.quantise`);
- ``poisson``: ``input_sources`` Bernoulli sources per channel at
  ``max_rate * clip(input_offset + input_gain * u, 0, 1)``, as the LSM;
- ``spikes``: a spike at every step of a row whose value is non-zero;
- ``counts``: a row's count ``c`` as spikes at its first ``c`` steps (at most
  ``steps_per_sample``; the LSM delivers them all at once, which binary spikes cannot).

Features per row are the LSM's: an exponential trace of each neuron's spikes at the row's end
(``features = "trace"``, time constant ``tau_trace``) or its spike count over the row. Every
spike goes to the raw stream ``spikes`` as (step, neuron). :meth:`Loihi.summary` reports the
operation counts, the energy and time estimate and the cores the network needs
(:mod:`.energy`), the quantisation report, and with ``compare_float = true`` how far the chip's
spikes are from the float LSM's on the same input rows (rate correlation and van Rossum
distance).
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field
from scipy.signal import lfilter

from ...metrics import rate_correlation, van_rossum_distance
from ...reservoir import Block, RawStreamSpec, Reservoir, Spec
from ..lsm import LiquidStateMachine, LSMParams
from . import energy
from .emulator import Emulator
from .quantise import quantise_lsm

#: the back ends and what each runs on
BACKENDS = ("emulator", "lava", "hw")


class LoihiParams(LSMParams):
    """The LSM's parameters (:class:`~labbench.drivers.lsm.LSMParams`) and how to put them on Loihi."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["emulator", "lava", "hw"] = Field(
        "emulator", description="emulator (bit-exact with Lava's fixed_pt models), lava (Lava's CPU simulation "
                                "in a Python 3.10 worker) or hw (a Loihi board through lava-loihi)")
    tau_syn: Literal["tau_e", "tau_i"] = Field("tau_e", description="the LSM time constant Loihi's single "
                                                                     "synaptic current takes")
    decay: Literal["issue", "exact"] = Field("issue", description="du = round(4096 dt/tau) ('issue') or the "
                                                                  "decays that equal the float propagators")
    compare_float: bool = Field(False, description="also run the float LSM on the same rows and report the "
                                                   "spike-train distance in the summary")
    vr_tau_ms: float = Field(10.0, gt=0, description="time constant of the van Rossum distance (ms)")


class Loihi(Reservoir):
    """An LSM on Loihi's integer neurons and synapses (see the module docstring)."""

    Params = LoihiParams
    name = "loihi"
    deterministic = True

    def __init__(self, **params: Any) -> None:
        self.params = LoihiParams(**params)
        p = self.params
        self.spec = Spec(n_inputs=p.n_inputs, n_features=p.units, dt=p.steps_per_sample * p.dt / 1000.0,
                         realtime=False,
                         raw={"spikes": RawStreamSpec({"step": "int64", "neuron": "int32"},
                                                      f"one row per spike; step = {p.dt} ms",
                                                      time_column="step", time_scale=p.dt / 1000.0,
                                                      channel_column="neuron")},
                         feature_name="neuron")
        self._opened = False
        self._backend: Any = None

    # -- back ends -----------------------------------------------------------------------------
    @classmethod
    def backends(cls) -> dict[str, tuple[bool, str]]:
        """The emulator (always), Lava in its 3.10 worker, and a board (Lava plus Intel's lava-loihi)."""
        from .lava_backend import find_lava_python, lava_loihi_available

        python = find_lava_python()
        if python is None:
            lava = (False, "no Python 3.10 interpreter with lava-nc found (set LABBENCH_LAVA_PYTHON, or run "
                           "`bash .ci/lava_venv.sh` to make .venv-lava)")
            return {"emulator": (True, "ok"), "lava": lava, "hw": lava}
        hw = (True, "ok") if lava_loihi_available(python) else (
            False, f"Intel's lava-loihi is not installed in {python} (Loihi2HwCfg needs it; it is distributed "
                   f"to INRC members only)")
        return {"emulator": (True, "ok"), "lava": (True, "ok"), "hw": hw}

    @classmethod
    def backend_of(cls, params: dict[str, Any]) -> str:
        return str(params.get("backend", "emulator"))

    @classmethod
    def mock_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The emulator instead of Lava or a board."""
        return {**params, "backend": "emulator"}

    @classmethod
    def footprint(cls, params: dict[str, Any]) -> tuple[int | None, int | None]:
        units = int(params.get("units", 1000))
        return units, units * units * 4   # dense integer weights while quantising

    # -- life cycle ----------------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        p = self.params
        lsm_params = p.model_dump(include=set(LSMParams.model_fields))
        self.network_, self.quantisation_ = quantise_lsm(lsm_params, tau_syn=p.tau_syn, decay=p.decay)
        self._backend = self._make_backend()
        self._float = LiquidStateMachine(**lsm_params) if p.compare_float else None
        if self._float is not None:
            self._float.open()
        self._rng_seed = int(np.random.default_rng(p.seed).integers(2**63))
        self._opened = True
        self.reset()

    def _make_backend(self) -> Any:
        p = self.params
        if p.backend == "emulator":
            return Emulator(self.network_)
        from .lava_backend import LavaBackend

        # the interpreter comes from the person running the bench ($LABBENCH_LAVA_PYTHON, else
        # .venv-lava), never from the protocol: a protocol names no program to run
        return LavaBackend(self.network_, hardware=p.backend == "hw")

    def reset(self, seed: int | None = None) -> None:
        self._require_open()
        p = self.params
        self._backend.reset()
        if self._float is not None:
            self._float.reset(seed)
        self._rng = np.random.default_rng(self._rng_seed if seed is None else seed)
        self._sigma = np.zeros(p.n_inputs)                  # delta-sigma integrators (current mode)
        self._trace = np.zeros(p.units)
        self._t = 0
        self._clipped_counts = 0
        self._clipped_values = 0
        self._backend_s = 0.0
        self._fidelity = {"d2_pair": np.zeros(p.units), "d2_chip": np.zeros(p.units), "d2_float": np.zeros(p.units),
                          "steps": 0, "spikes_chip": np.zeros(p.units), "spikes_float": np.zeros(p.units)}

    def close(self) -> None:
        if self._backend is not None and hasattr(self._backend, "close"):
            self._backend.close()
        self._backend = None
        self._opened = False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"driver": self.name, "params": self.params.model_dump(),
                               "model": "CUBA-LIF, bit-exact with Lava 0.10 fixed_pt (PyLifModelBitAcc, "
                                        "PyDenseModelBitAcc)"}
        if self._opened:
            out["quantisation"] = self.quantisation_.to_dict()
            out["resources"] = energy.resources(self.network_)
            out["synapses"] = int(np.count_nonzero(self.network_.recurrent.weights))
            versions = getattr(self._backend, "versions", None)
            if versions:   # Lava's worker: its Lava, Python and numpy
                out["backend_versions"] = {k: (v.item() if hasattr(v, "item") else v) for k, v in versions.items()}
        return out

    # -- running -------------------------------------------------------------------------------
    def run(self, u: np.ndarray) -> Block:
        self._require_open()
        p = self.params
        u = np.asarray(self._check_input(u), dtype=np.float64)
        T, K, n = u.shape[0], p.steps_per_sample, p.units
        if T == 0:   # the bench may send an empty block: no step, no state change
            return Block(features=np.zeros((0, n), np.float32),
                         raw={"spikes": {"step": np.zeros(0, np.int64), "neuron": np.zeros(0, np.int32)}})
        x = self.encode(u)
        t0 = time.perf_counter()
        spikes = self._backend.run(x).spikes                        # (T K, N) bool
        self._backend_s += time.perf_counter() - t0
        per_step = spikes.reshape(T, K, n)
        if p.features == "counts":
            feats = per_step.sum(axis=1, dtype=np.float64)
        else:
            P_tr = math.exp(-p.dt / p.tau_trace)
            trace, zf = lfilter([1.0], [1.0, -P_tr], spikes.astype(np.float64), axis=0,
                                zi=(P_tr * self._trace)[None, :])
            self._trace = zf[0] / P_tr if P_tr > 0 else np.zeros(n)
            feats = trace.reshape(T, K, n)[:, -1, :]
        steps, neurons = np.nonzero(spikes)
        raw = {"spikes": {"step": (steps + self._t).astype(np.int64), "neuron": neurons.astype(np.int32)}}
        if self._float is not None:
            self._compare(u, spikes)
        self._t += T * K
        return Block(features=feats.astype(np.float32), raw=raw)

    def encode(self, u: np.ndarray) -> np.ndarray:
        """The input spikes of rows ``u`` (T, n_inputs): ``(T * steps_per_sample, n_sources)`` of 0/1
        by ``input_mode`` (see the module docstring)."""
        p = self.params
        T, K = u.shape[0], p.steps_per_sample
        if T == 0:
            return np.zeros((0, self.network_.n_inputs), np.uint8)
        if p.input_mode == "current":
            r = np.clip(u, 0.0, 1.0)
            self._clipped_values += int(np.count_nonzero(r != u))
            steps = np.repeat(r, K, axis=0)                          # (T K, n_in)
            total = np.cumsum(steps, axis=0) + self._sigma
            fired = np.floor(total + 1e-12)
            prev = np.vstack([np.floor(self._sigma + 1e-12)[None, :], fired[:-1]])
            x = (fired - prev) > 0
            self._sigma = total[-1] - fired[-1]
            return x.astype(np.uint8)
        if p.input_mode == "poisson":
            level = np.clip(p.input_offset + p.input_gain * u, 0.0, 1.0)
            prob = np.repeat(np.repeat(level, p.input_sources, axis=1), K, axis=0) * (p.max_rate * p.dt / 1000.0)
            return (self._rng.random(prob.shape) < prob).astype(np.uint8)
        if p.input_mode == "spikes":
            return np.repeat((u != 0).astype(np.uint8), K, axis=0)
        counts = np.rint(np.clip(u, 0.0, None)).astype(np.int64)     # "counts"
        self._clipped_counts += int(np.clip(counts - K, 0, None).sum())
        step_in_row = np.arange(K)[None, :, None]
        return (step_in_row < counts[:, None, :]).reshape(T * K, -1).astype(np.uint8)

    def _compare(self, u: np.ndarray, spikes: np.ndarray) -> None:
        """Run the float LSM on the same rows; add up the squared van Rossum distances (van Rossum
        2001, Neural Comput. 13:751) of each neuron's two trains, and of each train to silence,
        block by block (the pairs of spikes in different blocks are left out: a few kernel time
        constants at each block boundary), and the spike counts."""
        p = self.params
        block = self._float.run(u)
        ref = np.zeros_like(spikes)
        st = block.raw["spikes"]["step"] - (self._t)
        ref[st, block.raw["spikes"]["neuron"]] = True
        tau_steps = p.vr_tau_ms / p.dt
        silent = np.zeros_like(spikes)
        f = self._fidelity
        f["d2_pair"] += van_rossum_distance(spikes, ref, tau_steps)[1] ** 2
        f["d2_chip"] += van_rossum_distance(spikes, silent, tau_steps)[1] ** 2
        f["d2_float"] += van_rossum_distance(ref, silent, tau_steps)[1] ** 2
        f["steps"] += len(spikes)
        f["spikes_chip"] += spikes.sum(axis=0)
        f["spikes_float"] += ref.sum(axis=0)

    # -- reporting -----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Operation counts, the energy/time estimate and resources on Loihi, the quantisation's
        cost, and (``compare_float``) the distance to the float LSM."""
        if not self._opened:
            return {}
        p = self.params
        counts = dict(self._backend.counts)
        out: dict[str, Any] = {"backend": p.backend, "counts": counts,
                               "energy": {k: v for k, v in energy.estimate(counts, self.network_).items()
                                          if k != "counts"},
                               "resources": energy.resources(self.network_),
                               "backend_cpu_s": round(self._backend_s, 3),
                               "quantisation": {"relative_weight_error":
                                                self.quantisation_.relative_weight_error,
                                                "du": self.quantisation_.du, "dv": self.quantisation_.dv,
                                                "vth": self.quantisation_.vth,
                                                "dropped": self.quantisation_.dropped}}
        f = self._fidelity
        if self._float is not None and f["steps"]:
            seconds = f["steps"] * p.dt / 1000.0
            out["versus_float_lsm"] = {
                "rate_correlation": rate_correlation(f["spikes_chip"][None, :], f["spikes_float"][None, :]),
                "van_rossum_relative": _relative_distance(f),
                "van_rossum_per_neuron_per_s": float(np.sqrt(f["d2_pair"] / seconds).mean()),
                "van_rossum_tau_ms": p.vr_tau_ms,
                "mean_rate_hz": {"loihi": float(f["spikes_chip"].mean() / seconds),
                                 "float_lsm": float(f["spikes_float"].mean() / seconds)}}
        return out

    def health(self) -> list[str]:
        out = []
        if self._opened and self._clipped_values:
            out.append(f"current input outside [0, 1] was clipped {self._clipped_values} times (Loihi takes "
                       f"spikes: a rate code of 0 to 1 spike per step)")
        if self._opened and self._clipped_counts:
            out.append(f"{self._clipped_counts} input spikes were dropped: a row's count is at most "
                       f"steps_per_sample = {self.params.steps_per_sample} binary spikes")
        return out

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError("loihi: call open() before using the reservoir")


def _relative_distance(f: dict[str, Any]) -> float:
    """The chip's spike trains against the float LSM's, as a fraction of their distance to silence:
    ``sqrt(sum D^2(chip, float) / (sum D^2(chip, 0) + sum D^2(float, 0)))`` over neurons; 0 for
    identical trains, about 1 for independent trains of the same rates (the cross terms vanish),
    up to sqrt(2) for trains that never coincide."""
    norm = float(f["d2_chip"].sum() + f["d2_float"].sum())
    return float(np.sqrt(f["d2_pair"].sum() / norm)) if norm > 0 else 0.0
