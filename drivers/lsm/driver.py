"""Liquid state machine: a recurrent network of LIF neurons as a labbench reservoir."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...reservoir import Block, RawStreamSpec, Reservoir, Spec
from . import kernel, network

_MAX_SPIKE_BUFFER = 2_000_000  # spikes buffered per kernel call (memory bound, not a limit)


class LSMParams(BaseModel):
    """Parameters of :class:`LiquidStateMachine` (times in ms, potentials and currents in mV)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: int = Field(1000, gt=0, description="number of LIF neurons N")
    n_inputs: int = Field(1, gt=0, description="input channels (set from the task by the bench)")
    excitatory_fraction: float = Field(0.8, ge=0, le=1, description="fraction of excitatory neurons (Dale's law)")
    connectivity: Literal["random", "distance"] = Field("random", description="random p or Maass 2002 distance rule")
    p: float = Field(0.1, ge=0, le=1, description="connection probability for connectivity = 'random'")
    lam: float = Field(2.0, gt=0, description="length scale lambda of the distance rule (grid units)")
    w_exc: float = Field(0.5, ge=0, description="jump of J_e per excitatory spike (mV)")
    w_inh: float = Field(-2.0, le=0, description="jump of J_i per inhibitory spike (mV, <= 0)")
    delay_exc: float = Field(1.5, ge=0, description="delay of excitatory synapses (ms)")
    delay_inh: float = Field(0.8, ge=0, description="delay of inhibitory synapses (ms)")
    tau_m: float = Field(20.0, gt=0, description="membrane time constant (ms)")
    tau_e: float = Field(5.0, gt=0, description="excitatory synaptic time constant (ms)")
    tau_i: float = Field(10.0, gt=0, description="inhibitory synaptic time constant (ms)")
    e_l: float = Field(-70.0, description="resting potential (mV)")
    v_th: float = Field(-55.0, description="threshold (mV)")
    v_reset: float = Field(-70.0, description="reset potential (mV)")
    t_ref: float = Field(2.0, ge=0, description="refractory period (ms)")
    input_mode: Literal["current", "poisson", "spikes", "counts"] = Field(
        "current", description="inputs as injected currents, Poisson rates, spike rasters, or spike counts per "
                               "row (e.g. a DVS's events binned to the row: all arrive at the row's first step)")
    input_scaling: float = Field(20.0, description="mV of drive per unit input (current mode)")
    input_connectivity: float = Field(0.3, gt=0, le=1, description="fraction of neurons each input reaches")
    input_weight: float = Field(2.0, ge=0, description="jump of J_e per input spike (poisson, spikes modes)")
    max_rate: float = Field(100.0, gt=0, description="input rate (Hz) at input 1 (poisson mode)")
    input_sources: int = Field(1, ge=1, description="independent Poisson sources per input channel (poisson mode)")
    input_offset: float = Field(0.0, description="poisson mode: rate = max_rate * clip(offset + gain * u, 0, 1)")
    input_gain: float = Field(1.0, description="poisson mode: see input_offset")
    noise_rate: float = Field(0.0, ge=0, description="background Poisson input per neuron (Hz)")
    noise_weight: float = Field(0.5, ge=0, description="jump of J_e per background spike (mV)")
    dt: float = Field(0.5, gt=0, description="integration step (ms)")
    steps_per_sample: int = Field(20, ge=1, description="integration steps per input row")
    features: Literal["trace", "counts"] = Field("trace", description="filtered spike trace or spike counts per row")
    tau_trace: float = Field(20.0, gt=0, description="time constant of the feature trace (ms)")
    seed: int = Field(0, description="seed of the wiring and of every random draw")

    @model_validator(mode="after")
    def _check_sources(self) -> LSMParams:
        if self.input_sources > 1 and self.input_mode != "poisson":
            raise ValueError(f"input_sources = {self.input_sources} needs input_mode = 'poisson' "
                             f"(got {self.input_mode!r})")
        return self


class LiquidStateMachine(Reservoir):
    """A liquid state machine (Maass, Natschläger & Markram 2002) of LIF neurons.

    Current-based exponential synapses, excitatory and inhibitory populations obeying
    Dale's law, sparse random or distance-dependent wiring, synaptic delays, optional
    background noise; integrated exactly for its linear subthreshold dynamics (see
    :mod:`labbench.drivers.lsm.kernel`). Each input row is held for ``steps_per_sample``
    integration steps; features are each neuron's exponentially filtered spike train at
    the end of the row (``features = "trace"``) or its spike count during the row
    (``"counts"``). Every spike goes to the raw stream ``spikes`` as (step, neuron).
    """

    Params = LSMParams
    name = "lsm"
    deterministic = True

    def __init__(self, **params: Any) -> None:
        self.params = LSMParams(**params)
        p = self.params
        sample_s = p.steps_per_sample * p.dt / 1000.0
        self.spec = Spec(n_inputs=p.n_inputs, n_features=p.units, dt=sample_s, realtime=False,
                         raw={"spikes": RawStreamSpec({"step": "int64", "neuron": "int32"},
                                                      f"one row per spike; step = {p.dt} ms",
                                                      time_column="step", time_scale=p.dt / 1000.0,
                                                      channel_column="neuron")},
                         feature_name="neuron")
        self._opened = False

    # -- life cycle ------------------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        p = self.params
        rng = np.random.default_rng(p.seed)
        self.excitatory_ = network.populations(p.units, p.excitatory_fraction, rng)
        adj = network.connect(self.excitatory_, kind=p.connectivity, p=p.p, lam=p.lam, rng=rng)
        pre = np.repeat(np.arange(p.units), np.diff(adj.indptr))
        exc_pre = self.excitatory_[pre]
        self._indptr = adj.indptr.astype(np.int64)
        self._idx = adj.indices.astype(np.int64)
        self._w = np.where(exc_pre, p.w_exc, p.w_inh).astype(np.float64)
        self._delay = np.where(exc_pre, self._steps(p.delay_exc), self._steps(p.delay_inh)).astype(np.int64)
        self._n_slots = int(self._delay.max(initial=0)) + 2
        # input wiring: each channel reaches a random fraction of the neurons
        n_src = p.n_inputs * p.input_sources
        mask = rng.random((n_src, p.units)) < p.input_connectivity
        signs = rng.choice([-1.0, 1.0], size=(n_src, p.units))
        self.W_in_ = np.where(mask, signs, 0.0)  # current mode: +-1 (times input_scaling)
        in_csr = [np.flatnonzero(mask[c]) for c in range(n_src)]
        self._in_indptr = np.r_[0, np.cumsum([len(t) for t in in_csr])].astype(np.int64)
        self._in_idx = (np.concatenate(in_csr) if in_csr else np.empty(0)).astype(np.int64)
        self._in_w = np.full(len(self._in_idx), p.input_weight)
        self.adjacency_ = adj
        self._rng_seed = rng.integers(2**63)
        self._spikes_total = 0  # spikes and steps since open, for health()
        self._steps_total = 0
        self._opened = True
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self._require_open()
        p = self.params
        n = p.units
        self._v = np.full(n, p.e_l)
        self._je = np.zeros(n)
        self._ji = np.zeros(n)
        self._refr = np.zeros(n, dtype=np.int64)
        self._trace = np.zeros(n)
        self._buf_e = np.zeros((self._n_slots, n))
        self._buf_i = np.zeros((self._n_slots, n))
        self._t = 0
        self._rng = np.random.default_rng(self._rng_seed if seed is None else seed)

    def close(self) -> None:
        self._opened = False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"driver": self.name, "params": self.params.model_dump()}
        if self._opened:
            out["synapses"] = int(self.adjacency_.nnz)
            out["excitatory"] = int(self.excitatory_.sum())
        return out

    # -- running ---------------------------------------------------------------------------------
    def run(self, u: np.ndarray) -> Block:
        self._require_open()
        p = self.params
        u = np.asarray(self._check_input(u), dtype=np.float64)
        T, K, n = u.shape[0], p.steps_per_sample, p.units
        feats = np.empty((T, n))
        steps_out, neurons_out = [np.empty(0, np.int64)], [np.empty(0, np.int32)]
        # chunk rows so that the spike buffer (sized for the maximum possible rate) stays bounded
        max_per_row = n * math.ceil(K / (self._steps(p.t_ref) + 1))
        rows = max(1, _MAX_SPIKE_BUFFER // max(max_per_row, 1))
        P = self._propagators()
        empty_rows = np.zeros((0, n))
        empty_rates = np.zeros((0, p.n_inputs))
        for a in range(0, T, rows):
            b = min(T, a + rows)
            if p.input_mode == "current":
                j_ext, rates = u[a:b] @ (p.input_scaling * self.W_in_), empty_rates
            elif p.input_mode == "poisson":
                level = np.clip(p.input_offset + p.input_gain * u[a:b], 0.0, 1.0)
                j_ext, rates = empty_rows, np.repeat(level, p.input_sources, axis=1) * (p.max_rate * p.dt / 1000.0)
            elif p.input_mode == "counts":
                j_ext, rates = empty_rows, np.rint(np.clip(u[a:b], 0.0, None))
            else:
                j_ext, rates = empty_rows, (u[a:b] != 0).astype(np.float64)
            cap = (b - a) * max_per_row
            st = np.empty(cap, dtype=np.int64)
            ne = np.empty(cap, dtype=np.int32)
            count = kernel.run_block(
                K, b - a, j_ext, rates, self._in_indptr, self._in_idx, self._in_w,
                self._indptr, self._idx, self._w, self._delay, self.excitatory_,
                self._v, self._je, self._ji, self._refr, self._buf_e, self._buf_i, self._trace, self._t,
                p.e_l, p.v_th, p.v_reset, self._steps(p.t_ref), *P,
                p.noise_rate * p.dt / 1000.0, p.noise_weight, self._rng, 0 if p.features == "trace" else 1,
                1 if p.input_mode == "counts" else 0,
                feats[a:b], st, ne)
            self._t += (b - a) * K
            self._spikes_total += count
            self._steps_total += (b - a) * K
            steps_out.append(st[:count])
            neurons_out.append(ne[:count])
        raw = {"spikes": {"step": np.concatenate(steps_out), "neuron": np.concatenate(neurons_out)}}
        return Block(features=feats.astype(np.float32), raw=raw)

    def health(self) -> list[str]:
        """A silent network (no spike at all) or a saturated one (every neuron firing at the
        maximum rate 1 / (t_ref + dt)) computes nothing useful: say so."""
        p = self.params
        if not self._opened or self._steps_total == 0:
            return []
        seconds = self._steps_total * p.dt / 1000.0
        rate = self._spikes_total / p.units / seconds
        max_rate = 1000.0 / ((self._steps(p.t_ref) + 1) * p.dt)
        if self._spikes_total == 0:
            return [f"silent: no neuron spiked in {seconds:.3g} s (mean rate 0 Hz); raise the input or "
                    "the excitatory weights"]
        if rate >= 0.9 * max_rate:
            return [f"saturated: mean rate {rate:.4g} Hz is {rate / max_rate:.0%} of the maximum "
                    f"1/(t_ref + dt) = {max_rate:.4g} Hz; lower the input or the excitatory weights"]
        return []

    # -- helpers -----------------------------------------------------------------------------------
    def _steps(self, ms: float) -> int:
        return int(round(ms / self.params.dt))

    def _propagators(self) -> tuple[float, ...]:
        p = self.params
        P_mm = math.exp(-p.dt / p.tau_m)
        P_ee = math.exp(-p.dt / p.tau_e)
        P_ii = math.exp(-p.dt / p.tau_i)
        P_me = _p_syn(p.dt, p.tau_m, p.tau_e)
        P_mi = _p_syn(p.dt, p.tau_m, p.tau_i)
        P_tr = math.exp(-p.dt / p.tau_trace)
        return P_mm, P_me, P_mi, P_ee, P_ii, P_tr

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError("lsm: call open() before using the reservoir")


def _p_syn(dt: float, tau_m: float, tau_s: float) -> float:
    """Membrane response after ``dt`` to a unit exponential current (Rotter & Diesmann 1999)."""
    if abs(tau_s - tau_m) < 1e-12 * tau_m:
        return dt / tau_m * math.exp(-dt / tau_m)
    return tau_s / (tau_s - tau_m) * (math.exp(-dt / tau_s) - math.exp(-dt / tau_m))
