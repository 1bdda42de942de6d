"""The in-silico culture: the MEA back end that simulates a dissociated cortical culture.

A culture of ``n_neurons`` Izhikevich neurons (Izhikevich 2003, IEEE Trans. Neural Netw.
14:1569) lies on the electrode array; each electrode records the neurons close to it and
stimulates the neurons around it. It is the mock of every MEA back end: seeded,
reproducible, and much faster than real time. See ``docs/mea-culture.md`` for the model,
its sources and the burst statistics it produces.

- **Neurons**: 80 % regular-spiking excitatory and 20 % fast-spiking inhibitory cells
  with Izhikevich's heterogeneity: for excitatory cells ``a = 0.02, b = 0.2,
  c = -65 + 15 r^2, d = 8 - 6 r^2``; for inhibitory cells ``a = 0.02 + 0.08 r,
  b = 0.25 - 0.05 r, c = -65, d = 2``, with ``r ~ U(0, 1)`` per cell.
- **Placement**: uniformly at random over the array's area plus ``margin_um`` on each
  side.
- **Wiring**: a pair at distance D is connected with probability ``min(1, C exp(-D /
  lambda_um))``, ``C`` set so that a neuron has ``k_out`` targets on average. Weights are
  drawn uniformly within ``+-w_spread`` of the class mean (E->E, E->I, I->E, I->I).
  Each synapse has a delay of ``syn_delay_ms + D / velocity``.
- **Synapses**: conductance-based with exponential decay. Excitatory synapses have
  AMPA and voltage-dependent NMDA components, inhibitory synapses GABA_A (Izhikevich &
  Edelman 2008, PNAS 105:3593). Excitatory synapses also depress (Tsodyks-Markram
  resources, ``std_u``, ``std_tau_rec_ms``). Depression ends a network burst and sets
  the time to the next one.
- **Spontaneous activity**: each neuron receives Poisson background events
  (``bg_rate_hz``, ``bg_weight``), standing for spontaneous transmitter release and the
  intrinsically active cells of a culture. Together with recurrent excitation and
  depression they produce network bursts.
- **Recording**: a neuron at distance D from an electrode has a spike amplitude
  proportional to ``1 / sqrt(r0^2 + D^2)`` (a point source, ``r0 = 10 um``), scaled per
  neuron by a log-normal gain. The detector threshold is ``detect_snr`` times the noise,
  so a spike is detected with probability ``Phi(snr(D) - detect_snr)``, where ``snr(D)``
  equals ``detect_snr`` at ``D = detect_radius_um`` for a median neuron. Electrodes
  detect nothing beyond ``detect_max_um``, and unusable electrodes detect nothing.
- **Stimulation**: a pulse whose first phase carries Q nC drives a neuron at distance D
  from the electrode with a one-step current ``stim_drive * Q / Q_th(D)``, with
  ``Q_th(D) = stim_q0_nc + stim_k_nc_per_mm2 * D^2``. This is the current-distance law
  ``I = I_0 + K r^2`` of Stoney, Thompson & Asanuma (1968, J. Neurophysiol. 31:659),
  written for charge (Tehovnik 1996, J. Neurosci. Methods 65:1). The default
  ``stim_drive`` (32) is the smallest one-step current (31.5 at dt = 0.5 ms) that fires
  a resting regular-spiking cell. A resting neuron is therefore activated directly when
  Q exceeds Q_th(D), within 1-3 ms.
- **Plasticity**: optional STDP on E->E synapses (Song, Miller & Abbott 2000).

Every random draw is seeded. The same seed and the same pulses give identical spikes,
and a recording split into windows gives the same spikes as one window.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from . import culture_kernel
from .backend import MEABackend, SpikeEvents, Window
from .layout import ElectrodeLayout
from .stimulation import ScheduledPulse

_R0_UM = 10.0          # point-source offset of the extracellular amplitude (soma radius scale)
_MIN_SPIKE_BUFFER = 65536   # spike buffer rows per kernel call, at least (it grows when full)
_BUFFER_RATE_HZ = 10.0       # ... and room for this mean rate over the window


class CultureParams(BaseModel):
    """Parameters of :class:`InSilicoCulture`.

    Times are in ms and distances in um. Currents are in Izhikevich's units, in which
    about 4 is the rheobase of a regular-spiking cell. Conductances are in those units per
    mV: a jump of 0.026 at -65 mV gives an AMPA current of 1.7 that decays with ``tau_e``.

    Sources for every default are in ``docs/mea-culture.md``.
    """

    model_config = ConfigDict(extra="forbid")

    # cells and placement
    n_neurons: int = Field(1000, gt=0, description="number of Izhikevich neurons (wiring is drawn from the "
                           "full N x N distance matrix: ~0.2 GB at N = 2000)")
    excitatory_fraction: float = Field(0.8, ge=0, le=1, description="fraction of regular-spiking excitatory "
                                       "cells; the rest are fast-spiking inhibitory (Izhikevich 2003)")
    margin_um: float = Field(200.0, ge=0, description="neurons are placed over the array's area plus this "
                             "margin on every side")
    # wiring
    k_out: float = Field(100.0, gt=0, description="mean number of outgoing synapses per neuron")
    lambda_um: float = Field(400.0, gt=0, description="length scale of the exponential distance rule "
                             "p = C exp(-D / lambda)")
    w_ee: float = Field(0.026, ge=0, description="E->E jump of g_AMPA per spike, fully recovered synapse "
                        "(g_NMDA: nmda_ratio x)")
    w_ei: float = Field(0.03, ge=0, description="E->I jump of g_AMPA per spike (g_NMDA: nmda_ratio x)")
    w_ie: float = Field(0.05, ge=0, description="I->E jump of g_GABA per spike")
    w_ii: float = Field(0.05, ge=0, description="I->I jump of g_GABA per spike")
    w_spread: float = Field(0.5, ge=0, le=1, description="weights uniform in mean * [1 - spread, 1 + spread]")
    tau_e: float = Field(5.0, gt=0, description="decay of the excitatory (AMPA) conductance (ms)")
    nmda_ratio: float = Field(1.0, ge=0, description="NMDA conductance jump per unit AMPA jump of an "
                              "excitatory synaptic event")
    tau_nmda: float = Field(100.0, gt=0, description="decay of the NMDA conductance (ms)")
    tau_i: float = Field(10.0, gt=0, description="decay of the inhibitory (GABA_A) conductance (ms)")
    e_exc: float = Field(0.0, description="excitatory reversal potential (mV)")
    e_inh: float = Field(-80.0, description="inhibitory reversal potential (mV)")
    syn_delay_ms: float = Field(1.0, ge=0, description="synaptic delay added to the conduction delay (ms)")
    velocity_um_per_ms: float = Field(300.0, gt=0, description="axonal conduction velocity (um/ms = mm/s)")
    # short-term depression
    std_u: float = Field(0.2, gt=0, le=1, description="fraction U of the resources one spike uses "
                         "(excitatory synapses)")
    std_tau_rec_ms: float = Field(5000.0, ge=0, description="recovery time constant of the resources (ms); "
                                  "0 turns depression off")
    std_heterogeneity: float = Field(0.3, ge=0, le=1, description="U and tau_rec are drawn per presynaptic "
                                     "neuron uniformly within +- this fraction of their means")
    # spontaneous activity
    bg_rate_hz: float = Field(40.0, ge=0, description="Poisson background events per neuron (Hz)")
    bg_weight: float = Field(0.035, ge=0, description="jump of g_AMPA per background event (no NMDA)")
    # recording
    detect_radius_um: float = Field(60.0, gt=0, description="distance at which a median neuron's spikes are "
                                    "detected half of the time")
    detect_snr: float = Field(5.0, gt=0, description="detection threshold in units of the noise RMS")
    detect_max_um: float = Field(150.0, gt=0, description="no spike is detected beyond this distance")
    detect_gain_sigma: float = Field(0.3, ge=0, description="sigma of the log-normal per-neuron amplitude gain")
    # stimulation
    stim_q0_nc: float = Field(0.1, ge=0, description="threshold charge of a neuron on the electrode (nC)")
    stim_k_nc_per_mm2: float = Field(80.0, gt=0, description="K of Q_th(D) = q0 + K D^2 (nC/mm^2)")
    stim_drive: float = Field(32.0, gt=0, description="one-step current at Q = Q_th(D)")
    stim_max_um: float = Field(400.0, gt=0, description="neurons farther than this are not stimulated")
    # STDP (Song, Miller & Abbott 2000)
    stdp: bool = Field(False, description="pair-based STDP on excitatory->excitatory synapses")
    stdp_a_plus: float = Field(0.005, ge=0, description="potentiation per pair, fraction of w_max")
    stdp_a_minus: float = Field(0.00525, ge=0, description="depression per pair, fraction of w_max "
                                "(A-/A+ = 1.05, Song et al. 2000)")
    stdp_tau_plus: float = Field(20.0, gt=0, description="potentiation window (ms)")
    stdp_tau_minus: float = Field(20.0, gt=0, description="depression window (ms)")
    stdp_w_max: float = Field(0.05, gt=0, description="upper bound of an E->E weight")
    # time
    dt: float = Field(0.5, gt=0, le=1.0, description="integration step (ms)")
    sample_rate_hz: float = Field(25000.0, gt=0, description="nominal sampling rate: a detected spike's "
                                  "time is the start of the sample it falls in")
    seed: int = Field(0, description="seed of the culture (placement, wiring, cells) and of every draw")

    @model_validator(mode="after")
    def _check_stdp_bound(self) -> CultureParams:
        top = self.w_ee * (1.0 + self.w_spread)
        if self.stdp and top > self.stdp_w_max:
            raise ValueError(f"stdp_w_max = {self.stdp_w_max} is below the largest initial E->E weight "
                             f"w_ee * (1 + w_spread) = {top:.4g}; raise stdp_w_max or lower w_ee")
        return self


class InSilicoCulture(MEABackend):
    """A simulated dissociated cortical culture on a multi-electrode array.

    Parameters
    ----------
    params : CultureParams, dict or None
        Model parameters (defaults: :class:`CultureParams`). Unknown keys are refused.
    layout : ElectrodeLayout, optional
        The electrode array (default: 8 x 8, 200 um pitch, the MCS corners unusable).

    Attributes
    ----------
    positions_um : ndarray (N, 2)
        Where the neurons are (the array centred on (0, 0)).
    excitatory : ndarray (N,) of bool
    weights : ndarray
        The current synaptic weights (CSR order, see :attr:`synapses`); STDP changes them.
    last_neuron_spikes : tuple of ndarray
        ``(time_s, neuron)`` of every spike of the last window, device time.
    """

    name = "in-silico culture"

    def __init__(self, params: CultureParams | dict | None = None, layout: ElectrodeLayout | None = None) -> None:
        if params is None:
            params = CultureParams()
        elif isinstance(params, dict):
            params = CultureParams(**params)
        elif not isinstance(params, CultureParams):
            raise TypeError(f"culture: params must be CultureParams, a dict or None, not {type(params).__name__}")
        self.params = params
        self.layout = layout if layout is not None else ElectrodeLayout()
        self._opened = False
        self._built = False
        self.last_neuron_spikes: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0, np.int32))

    # -- life cycle ------------------------------------------------------------------------
    def open(self) -> dict[str, Any]:
        """Build the culture (first call only) and return the device information."""
        if not self._built:
            self._build()
            self._reset_state()
        self._opened = True
        return self.info()

    def info(self) -> dict[str, Any]:
        """Device information for provenance: name, sizes, step, sampling rate, seed, layout
        and every parameter."""
        p = self.params
        return {"name": self.name, "backend": "culture", "n_neurons": p.n_neurons,
                "n_excitatory": int(self.excitatory.sum()) if self._built else None,
                "n_synapses": int(len(self._idx)) if self._built else None,
                "n_electrodes": self.layout.n_electrodes, "usable_electrodes": int(self.layout.usable.sum()),
                "dt_ms": p.dt, "dt_s": p.dt / 1000.0, "sample_rate_hz": p.sample_rate_hz, "seed": p.seed,
                "stdp": p.stdp, "area_mm2": self.area_mm2 if self._built else None,
                "layout": self.layout.to_dict(), "params": p.model_dump()}

    def reset(self, seed: int | None = None) -> None:
        """Back to device time 0 with the culture as it was built: same wiring, initial
        weights (STDP undone), initial state. With ``seed``, a different culture is built
        from that seed instead (placement, wiring, cells and all later draws)."""
        if seed is not None and seed != self.params.seed:
            self.params = self.params.model_copy(update={"seed": int(seed)})
            self._built = False
        if not self._built:
            self._build()
        self._reset_state()

    def stop_stimulation(self) -> None:
        """Nothing to cancel: the culture delivers a window's pulses within :meth:`record`
        and keeps none queued. Always safe to call."""

    def close(self) -> None:
        """Nothing to release but the open flag (the state is kept: ``open()`` resumes)."""
        self._opened = False

    @property
    def time_s(self) -> float:
        """Device time (s since the culture was opened or reset)."""
        return self._now_s if self._built else 0.0

    # -- building --------------------------------------------------------------------------
    def _build(self) -> None:
        p = self.params
        rng = np.random.default_rng(p.seed)
        n = p.n_neurons
        # cells (Izhikevich 2003): exactly round(f N) excitatory ones, at random indices
        exc = np.zeros(n, dtype=bool)
        exc[rng.permutation(n)[:int(round(p.excitatory_fraction * n))]] = True
        r = rng.random(n)
        self.excitatory = exc
        self._a = np.where(exc, 0.02, 0.02 + 0.08 * r)
        self._b = np.where(exc, 0.2, 0.25 - 0.05 * r)
        self._c = np.where(exc, -65.0 + 15.0 * r**2, -65.0)
        self._d = np.where(exc, 8.0 - 6.0 * r**2, 2.0)
        # placement over the array plus a margin
        el = self.layout.positions_um()
        lo = el.min(axis=0) - p.margin_um
        hi = el.max(axis=0) + p.margin_um
        pos = lo + rng.random((n, 2)) * (hi - lo)
        self.positions_um = pos
        self.area_mm2 = float(np.prod(hi - lo)) / 1e6
        # wiring: p = min(1, C exp(-D / lambda)), C for k_out targets on average
        dist = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
        kern = np.exp(-dist / p.lambda_um)
        np.fill_diagonal(kern, 0.0)
        scale = p.k_out * n / kern.sum() if kern.sum() > 0 else 0.0
        prob = np.minimum(1.0, scale * kern)
        pre, post = np.nonzero(rng.random((n, n)) < prob)     # row-major: sorted by pre, CSR order
        mean = np.where(exc[pre], np.where(exc[post], p.w_ee, p.w_ei), np.where(exc[post], p.w_ie, p.w_ii))
        w = mean * rng.uniform(1.0 - p.w_spread, 1.0 + p.w_spread, len(pre))
        delay_ms = p.syn_delay_ms + dist[pre, post] / p.velocity_um_per_ms
        self._delay = np.maximum(np.rint(delay_ms / p.dt).astype(np.int64) - 1, 0)   # acts t + 1 + delay
        self._n_slots = int(self._delay.max(initial=0)) + 2
        self._indptr = np.r_[0, np.cumsum(np.bincount(pre, minlength=n))].astype(np.int64)
        self._idx = post.astype(np.int64)
        self._pre = pre.astype(np.int64)
        self._w0 = w.astype(np.float64)
        self.synapse_distance_um = dist[pre, post]
        # CSR by postsynaptic neuron of synapse ids (STDP potentiation)
        order = np.argsort(post, kind="stable")
        self._in_syn = order.astype(np.int64)
        self._in_ptr = np.r_[0, np.cumsum(np.bincount(post, minlength=n))].astype(np.int64)
        self._plastic = exc[pre] & exc[post]
        # short-term depression on excitatory synapses, per presynaptic neuron
        het = p.std_heterogeneity
        self._std_u = np.where(exc, p.std_u * rng.uniform(1 - het, 1 + het, n), 1.0).clip(0.0, 1.0)
        self._std_tau = np.where(exc, p.std_tau_rec_ms * rng.uniform(1 - het, 1 + het, n), 0.0)
        # recording: detection probability per (neuron, electrode) pair
        usable = self.layout.usable
        d_ne = np.sqrt(((pos[:, None, :] - el[None, :, :]) ** 2).sum(-1))          # (N, E)
        gain = np.exp(p.detect_gain_sigma * rng.standard_normal(n))
        snr = p.detect_snr * gain[:, None] * math.sqrt(_R0_UM**2 + p.detect_radius_um**2) / np.sqrt(
            _R0_UM**2 + d_ne**2)
        pdet = _normal_cdf(snr - p.detect_snr)
        pdet[(d_ne > p.detect_max_um) | ~usable[None, :]] = 0.0
        nz_n, nz_e = np.nonzero(pdet > 1e-4)
        self.detection_probability = pdet
        self._rec_ptr = np.r_[0, np.cumsum(np.bincount(nz_n, minlength=n))].astype(np.int64)
        self._rec_el = nz_e.astype(np.int32)
        self._rec_p = pdet[nz_n, nz_e]
        # stimulation: gain 1 / Q_th(D) per (electrode, neuron) within stim_max_um
        d_en = d_ne.T                                                               # (E, N)
        qth = p.stim_q0_nc + p.stim_k_nc_per_mm2 * (d_en / 1000.0) ** 2
        reach = (d_en <= p.stim_max_um) & usable[:, None]
        st_e, st_n = np.nonzero(reach)
        self._st_ptr = np.r_[0, np.cumsum(np.bincount(st_e, minlength=self.layout.n_electrodes))].astype(np.int64)
        self._st_idx = st_n.astype(np.int64)
        self._st_gain = (1.0 / qth[st_e, st_n]).astype(np.float64)
        # the streams of every later draw: the network's and the detector's
        self._seeds = rng.integers(0, 2**63, size=2)
        self._built = True

    def _reset_state(self) -> None:
        p = self.params
        n = p.n_neurons
        self._rng = np.random.default_rng(self._seeds[0])
        self._rec_rng = np.random.default_rng(self._seeds[1])
        self.weights = self._w0.copy()
        self._v = np.full(n, -65.0)
        self._u = self._b * self._v
        self._ge = np.zeros(n)
        self._gn = np.zeros(n)
        self._gi = np.zeros(n)
        self._x = np.ones(n)
        self._t_last = np.full(n, -1e30)
        rate = p.bg_rate_hz / 1000.0
        self._bg_next = self._rng.exponential(1.0 / rate, n) if rate > 0 else np.full(n, np.inf)
        self._buf_e = np.zeros((self._n_slots, n))
        self._buf_i = np.zeros((self._n_slots, n))
        self._tr_pre = np.zeros(n)
        self._tr_post = np.zeros(n)
        self._i_stim = np.zeros(n)
        self._frac = np.zeros(n)
        self._t = 0                              # steps simulated
        self._now_s = 0.0                        # device time (may end inside a step)
        self._pending_t = np.zeros(0)            # spikes simulated but after the last window's end
        self._pending_n = np.zeros(0, np.int32)
        self._pending_pulses = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        self.last_neuron_spikes = (np.zeros(0), np.zeros(0, np.int32))

    # -- running ---------------------------------------------------------------------------
    def record(self, duration_s: float, pulses: list[ScheduledPulse]) -> Window:
        """Advance the culture by exactly ``duration_s`` and deliver ``pulses`` during it.

        ``t_s`` of each pulse is relative to the window's start, in ``[0, duration_s)``.
        Device time grows by exactly ``duration_s``, and the window holds every spike in
        ``[start_s, start_s + duration_s)``.

        The network advances in whole steps of ``dt``. When a window ends inside a step,
        that step is simulated in full, and its spikes after the window's end are kept for
        the next window. A pulse acts in the step that contains its time. A pulse that
        falls into such a step, already simulated by the previous window, acts at the
        next step instead (at most ``dt`` late). Windows that end on the step grid, as
        every multiple of 0.5 ms does, are therefore split-invariant with any pulses;
        other windows are split-invariant as long as no pulse lands in a straddled step.
        """
        if not self._opened:
            raise RuntimeError("culture: call open() before record()")
        if not (np.isfinite(duration_s) and duration_s >= 0):
            raise ValueError(f"culture: duration_s = {duration_s!r} must be finite and >= 0")
        p = self.params
        dt_s = p.dt / 1000.0
        start_s = self._now_s
        end_s = start_s + float(duration_s)
        target = max(self._t, int(math.ceil(end_s / dt_s - 1e-9)))     # steps that begin before end_s
        t0 = self._t
        n_steps = target - t0
        p_step, p_elec, p_amp = self._pulse_arrays(pulses, float(duration_s), start_s, dt_s)
        wall = time.perf_counter()
        times, neurons = [self._pending_t], [self._pending_n]
        done = 0
        cap = max(_MIN_SPIKE_BUFFER, 4 * p.n_neurons, int(_BUFFER_RATE_HZ * p.n_neurons * n_steps * dt_s))
        now_pulses = p_step < target
        while done < n_steps:
            remaining = n_steps - done
            st = np.empty(cap)
            sn = np.empty(cap, dtype=np.int32)
            steps, count = culture_kernel.run_steps(
                t0 + done, remaining, p.dt, self._a, self._b, self._c, self._d,
                self._indptr, self._idx, self.weights, self._delay, self.excitatory,
                self._std_u, self._std_tau,
                self._v, self._u, self._ge, self._gn, self._gi, self._x, self._t_last, self._bg_next,
                self._buf_e, self._buf_i,
                math.exp(-p.dt / p.tau_e), math.exp(-p.dt / p.tau_nmda), math.exp(-p.dt / p.tau_i),
                p.nmda_ratio, p.e_exc, p.e_inh, p.bg_rate_hz / 1000.0, p.bg_weight,
                p_step[now_pulses], p_elec[now_pulses], p_amp[now_pulses],
                self._st_ptr, self._st_idx, self._st_gain, self._i_stim, self._frac,
                p.stdp, self._plastic, self._in_ptr, self._in_syn, self._pre,
                self._tr_pre, self._tr_post, math.exp(-p.dt / p.stdp_tau_plus), math.exp(-p.dt / p.stdp_tau_minus),
                p.stdp_a_plus, p.stdp_a_minus, p.stdp_w_max,
                self._rng, st, sn)
            times.append(st[:count])
            neurons.append(sn[:count])
            done += steps
            if steps < remaining:       # the spike buffer filled up: give the next call more room
                cap *= 2
        self._t = target
        self._now_s = end_s
        self._pending_pulses = (p_step[~now_pulses], p_elec[~now_pulses], p_amp[~now_pulses])
        t_ms = np.concatenate(times)
        nrn = np.concatenate(neurons)
        order = np.argsort(t_ms, kind="stable")
        t_ms, nrn = t_ms[order], nrn[order]
        inside = t_ms < end_s * 1000.0
        self._pending_t, self._pending_n = t_ms[~inside], nrn[~inside]
        t_ms, nrn = t_ms[inside], nrn[inside]
        self.last_neuron_spikes = (t_ms / 1000.0, nrn)
        spikes = self._detect(t_ms, nrn, start_s)
        wall = time.perf_counter() - wall
        return Window(spikes=spikes, start_s=start_s, duration_s=float(duration_s),
                      info={"neuron_spikes": int(len(nrn)), "sim_wall_s": wall,
                            "realtime_factor": (duration_s / wall) if wall > 0 else float("inf")})

    def _pulse_arrays(self, pulses: list[ScheduledPulse], duration_s: float, start_s: float, dt_s: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(absolute step, electrode, stim_drive * Q) per (pulse, electrode), sorted by step,
        with the pulses left over from the previous window first."""
        steps, elecs, amps = [], [], []
        usable = self.layout.usable
        n_el = self.layout.n_electrodes
        for i, sp in enumerate(pulses):
            if not (np.isfinite(sp.t_s) and 0.0 <= sp.t_s < duration_s):
                raise ValueError(f"culture: pulse {i} at t_s = {sp.t_s!r} is not within the window "
                                 f"[0, {duration_s})")
            q = sp.pulse.charge_nc[0]     # the first (cathodic) phase sets the drive
            step = max(self._t, int(math.floor((start_s + sp.t_s) / dt_s + 1e-6)))
            for e in sp.electrodes:
                e = int(e)
                if not 0 <= e < n_el:
                    raise ValueError(f"culture: pulse {i} names electrode {e}, which does not exist (0..{n_el - 1})")
                if not usable[e]:
                    raise ValueError(f"culture: pulse {i} names electrode {e}, which is unusable")
                steps.append(step)
                elecs.append(e)
                amps.append(self.params.stim_drive * q)
        old_s, old_e, old_a = self._pending_pulses
        step_arr = np.concatenate([old_s, np.asarray(steps, dtype=np.int64)])
        elec_arr = np.concatenate([old_e, np.asarray(elecs, dtype=np.int64)])
        amp_arr = np.concatenate([old_a, np.asarray(amps, dtype=np.float64)])
        order = np.argsort(step_arr, kind="stable")
        return step_arr[order], elec_arr[order], amp_arr[order]

    def _detect(self, t_ms: np.ndarray, neurons: np.ndarray, start_s: float) -> SpikeEvents:
        """Each (spike, electrode within reach) pair is detected with the pair's probability.

        The detector's draws come from their own stream, one per pair in spike order, so
        they do not depend on how the recording is split into windows.
        """
        counts = self._rec_ptr[neurons + 1] - self._rec_ptr[neurons]
        total = int(counts.sum())
        if total == 0:
            return SpikeEvents(np.zeros(0), np.zeros(0, np.int32))
        first = np.repeat(self._rec_ptr[neurons], counts)
        offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        pair = first + offset
        hit = self._rec_rng.random(total) < self._rec_p[pair]
        fs = self.params.sample_rate_hz
        # the sample the spike falls in (never past the window's end; never before its start)
        t_s = np.maximum(np.floor(np.repeat(t_ms, counts)[hit] * (fs / 1000.0)) / fs, start_s)
        el = self._rec_el[pair[hit]]
        order = np.lexsort((el, t_s))
        return SpikeEvents(t_s[order], el[order].astype(np.int32))

    # -- introspection ---------------------------------------------------------------------
    @property
    def synapses(self) -> tuple[np.ndarray, np.ndarray]:
        """``(pre, post)`` neuron of every synapse, in the order of :attr:`weights`."""
        return self._pre, self._idx

    @property
    def initial_weights(self) -> np.ndarray:
        return self._w0

    @property
    def plastic(self) -> np.ndarray:
        """Mask of the synapses STDP may change (excitatory -> excitatory)."""
        return self._plastic

    def resources(self) -> np.ndarray:
        """Available resources x of each presynaptic neuron now (1: fully recovered)."""
        now = self._now_s * 1000.0
        with np.errstate(over="ignore"):
            rec = np.where(self._std_tau > 0, np.exp(-(now - self._t_last) / np.maximum(self._std_tau, 1e-12)), 0.0)
        return 1.0 - (1.0 - self._x) * rec


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)
