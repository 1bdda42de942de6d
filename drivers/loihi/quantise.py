"""The float LSM's parameters onto Loihi's integer formats, with a record of what is lost.

:func:`quantise_lsm` builds :class:`~labbench.drivers.lsm.LiquidStateMachine` with the given
parameters, opens it, and reads its wiring (``adjacency_``, ``excitatory_``, ``W_in_``), so the
quantised network has *exactly* the float LSM's synapses and input wiring for the same seed.

The two models
--------------
Float LSM (``labbench.drivers.lsm.kernel``; Rotter & Diesmann 1999, Biol. Cybern. 81:381), per
step of ``dt``, voltages measured from ``E_L``::

    v <- v P_mm + J_e P_me + J_i P_mi,   J_x <- J_x P_xx,   P_xx = exp(-dt/tau_x),
    P_mx = tau_x / (tau_x - tau_m) (P_xx - P_mm)

and a spike adds its weight ``w`` (mV) to ``J_e`` or ``J_i`` in the step it arrives.

Loihi CUBA-LIF as Lava's ``PyLifModelBitAcc`` (lava-nc 0.10.0, ``lava/proc/lif/models.py``,
``AbstractPyLifModelFixed.subthr_dynamics``) with Lava's ``Dense`` (``lava/proc/dense/models.py``,
``AbstractPyDenseModelBitAcc``)::

    u <- u (4096 - du - 1) / 4096 + (a_in << 6)       (ds_offset = 1: the decay is du + 1)
    v <- v (4096 - dv) / 4096 + u + (bias_mant << bias_exp)
    spike when v > vth << 6, then v <- 0
    a_in(t+1) = (sum of the weight mantissas of the spikes of step t) << weight_exp

Mapping (derived here)
----------------------
* Decays: the issue's ``du = round(4096 dt / tau_syn)``, ``dv = round(4096 dt / tau_m)``
  (``decay="issue"``, a forward-Euler decay), or ``decay="exact"``:
  ``dv = round(4096 (1 - exp(-dt/tau_m)))`` and ``du`` the same minus Lava's ``ds_offset`` of 1,
  so that the decay factors equal the float propagators ``P_mm``, ``P_ee`` to 1/4096. The report
  gives the effective time constants ``-dt / ln(alpha)`` of the rounded decays
  ``alpha_u = (4096 - du - 1)/4096``, ``alpha_v = (4096 - dv)/4096``.
* Voltages are measured from ``E_L`` (``E_L`` maps to 0, the value Loihi resets to) in integer
  units of ``1/scale`` mV: ``vth = round((v_th - E_L) scale / 64)``.
* A synaptic jump ``w`` (mV of J) maps to the input ``a_in`` whose **integrated membrane response
  equals the float one**. Summing the step responses of a unit jump gives, for the float LSM,
  ``R_x = sum_n v_n = P_mx / ((1 - P_mm)(1 - P_xx))`` (steps·mV per mV), and for Loihi
  ``64 a_in / ((1 - alpha_u)(1 - alpha_v))``. Hence::

      a_in = w * scale * R_x * (1 - alpha_u)(1 - alpha_v) / 64

  Matching the integral keeps each PSP's charge, hence the mean drive at any rate, exactly (up
  to the mantissa grid) even though the inhibitory time constant is replaced by ``tau_syn``
  (``R_i`` is computed with ``tau_i``). Matching the per-step drive instead
  (``a_in = w scale (1 - alpha_v) / 64``) agrees with this to first order in ``dt/tau`` but not
  for the inhibitory synapses.
* In ``input_mode = "current"`` the input is a current, which Loihi cannot take: each input
  channel becomes a spike source whose synapses carry ``a_in`` such that one spike **every step**
  gives the steady drive of input value 1 (``R = 1``: ``a_in = input_scaling W_in scale
  (1-alpha_u)(1-alpha_v)/64``); a rate-coded input of ``r`` spikes per step then gives the mean
  drive of input value ``r``. The encoder is the driver's business.
* Weights: 8-bit mantissas with one ``weight_exp`` per Dense. The largest |weight| of the
  recurrent layer takes the full mantissa range (mixed sign: −256…254 in steps of 2, as Lava's
  ``truncate_weights`` drops the lowest bit; one sign: 0…255). ``scale = c · 2**weight_exp``
  where ``c`` is the mantissa per unit ``a_in`` target; ``weight_exp`` is the largest of −8…7
  for which ``vth`` fits 17 bits and ``|u|``, ``|v|`` stay inside 24 bits when every
  presynaptic neuron and input source fires at ``rate_hz`` (the bounds are in the report).
  The input layer gets its own exponent (0…7) with its mantissa as large as fits.

Lost on Loihi (listed per network in :attr:`QuantisationReport.dropped`): the refractory period
and axonal/synaptic delays (``PyLifModelBitAcc`` docstring: "missing features … refractory
period after spiking, axonal delays"; Dense delivers one step after the spike), the separate
E/I synaptic time constants (one ``du`` per population), background noise (unless the driver
feeds it as input spikes), and a reset potential other than ``E_L``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from ..lsm import LiquidStateMachine, LSMParams
from .network import DenseLayer, LoihiNetwork

#: parameter names that only an echo-state network has (labbench.drivers.esn)
_ESN_ONLY = ("spectral_radius", "leak", "gain", "bias", "input_distribution", "dtype", "threads")
_VTH_MAX = 2**17 - 1
_UV_MAX = 2**23 - 1


@dataclass
class QuantisationReport:
    """What quantising an LSM onto Loihi's formats chose and what it cost (JSON-able via :meth:`to_dict`).

    Attributes
    ----------
    du, dv, vth : int
        Chosen current decay, voltage decay and threshold mantissa.
    scale : float
        Integer units of ``v`` per mV (``v_loihi = (v_lsm - E_L) * scale``).
    weight_exp, input_weight_exp : int
        Weight exponents of the recurrent and input Dense.
    mantissas : dict
        The mantissas used: ``excitatory``, ``inhibitory`` (recurrent) and ``input`` (its
        magnitude; signs in ``W_in_`` for current mode).
    relative_weight_error : dict
        ``||W_q - W||_F / ||W||_F`` for ``recurrent`` and ``input``, in the LSM's mV, with ``W_q``
        the effective Loihi weights mapped back through the same integrated-response gain.
    time_constants_ms : dict
        Requested ``tau_m``, ``tau_syn`` (and which LSM constant it is), ``tau_i``, and the
        effective ``tau_u``, ``tau_v`` of the rounded decays.
    headroom : dict
        Bounds of |u| and |v| at ``rate_hz`` and the 24-bit limit.
    dropped : list of str
        Features of the float LSM that the Loihi network does not have.
    warnings : list of str
        Anything else worth reading (reset potential, clipped mantissas, floored sums).
    """

    du: int
    dv: int
    vth: int
    scale: float
    weight_exp: int
    input_weight_exp: int
    mantissas: dict[str, int]
    relative_weight_error: dict[str, float]
    time_constants_ms: dict[str, Any]
    headroom: dict[str, float]
    decay: str
    mapping: str
    input_encoding: str
    dropped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able Python types."""
        return _plain(asdict(self))


def quantise_lsm(params: dict[str, Any] | LSMParams, *, tau_syn: Literal["tau_e", "tau_i"] | float = "tau_e",
                 decay: Literal["issue", "exact"] = "issue", rate_hz: float = 50.0
                 ) -> tuple[LoihiNetwork, QuantisationReport]:
    """Quantise a liquid state machine onto Loihi's CUBA-LIF and 8-bit Dense formats.

    Parameters
    ----------
    params : dict or LSMParams
        The float LSM's parameters (those of :class:`~labbench.drivers.lsm.LiquidStateMachine`).
        An echo-state network's parameters are refused: an ESN is not a LIF network.
    tau_syn : "tau_e", "tau_i" or float
        The one synaptic time constant (ms) Loihi's population gets; default the excitatory one.
    decay : "issue" or "exact"
        ``"issue"``: ``du = round(4096 dt/tau_syn)``, ``dv = round(4096 dt/tau_m)`` (issue 17).
        ``"exact"``: decays equal to ``exp(-dt/tau)`` to 1/4096, compensating Lava's ``ds_offset``.
    rate_hz : float
        The rate at which every presynaptic neuron and input source is assumed to fire when the
        weight exponent is chosen so that ``u`` and ``v`` stay inside 24 bits.

    Returns
    -------
    network : LoihiNetwork
        Same wiring and input wiring as the float LSM; ``meta`` holds ``scale`` (units per mV),
        ``e_l`` (mV) and ``dt`` (ms) to map ``v`` back to millivolts.
    report : QuantisationReport
        Choices, errors and what was dropped (see the module docstring for the derivation).
    """
    p = _lsm_params(params)
    if decay not in ("issue", "exact"):
        raise ValueError(f"decay must be 'issue' or 'exact', got {decay!r}")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    if isinstance(tau_syn, str):
        if tau_syn not in ("tau_e", "tau_i"):
            raise ValueError(f"tau_syn must be 'tau_e', 'tau_i' or a time in ms, got {tau_syn!r}")
        tau_s, tau_name = float(getattr(p, tau_syn)), tau_syn
    else:
        tau_s, tau_name = float(tau_syn), "given"
        if not tau_s > 0:
            raise ValueError(f"tau_syn must be > 0 ms, got {tau_syn}")
    if p.v_th <= p.e_l:
        raise ValueError(f"v_th ({p.v_th} mV) must be above e_l ({p.e_l} mV) for a Loihi threshold")

    lsm = LiquidStateMachine(**p.model_dump())
    lsm.open()
    try:
        adj = lsm.adjacency_.tocoo()          # pre x post
        exc = np.asarray(lsm.excitatory_, dtype=bool)
        w_in_signs = np.asarray(lsm.W_in_, dtype=np.float64)   # (n_sources, units)
    finally:
        lsm.close()
    n = p.units

    # -- decays ----------------------------------------------------------------------------------
    du, dv = decays(p.dt, tau_s, p.tau_m, decay)
    a_u = (4096 - du - 1) / 4096
    a_v = (4096 - dv) / 4096
    gain = (1.0 - a_u) * (1.0 - a_v) / 64.0      # a_in per (mV x scale) of integrated response 1
    k_e = response_integral(p.dt, p.tau_m, p.tau_e) * gain
    k_i = response_integral(p.dt, p.tau_m, p.tau_i) * gain

    # -- recurrent targets (a_in per unit scale), post x pre ----------------------------------------
    pre, post = adj.row, adj.col
    w_mv = np.where(exc[pre], p.w_exc, p.w_inh)
    k_syn = np.where(exc[pre], k_e, k_i)
    target = w_mv * k_syn
    nz = target != 0
    max_pos = float(target[nz].max(initial=0.0)) if nz.any() else 0.0
    max_neg = float(-target[nz].min(initial=0.0)) if nz.any() else 0.0
    report_warn: list[str] = []
    if max_pos > 0 and max_neg > 0:
        sign_mode, lo, hi, step = 1, -256, 254, 2
        ref, m_ref = (max_pos, 254) if 254 / max_pos <= 256 / max_neg else (-max_neg, -256)
    elif max_pos > 0:
        sign_mode, lo, hi, step = 2, 0, 255, 1
        ref, m_ref = max_pos, 255
    elif max_neg > 0:
        sign_mode, lo, hi, step = 3, -255, 0, 1
        ref, m_ref = -max_neg, -255
    else:
        sign_mode, lo, hi, step = 2, 0, 255, 1
        ref, m_ref = 0.0, 0
    # mantissa per unit target: ratios to the reference keep grid weights exact
    m_float = (target / ref * m_ref) if ref != 0 else np.zeros_like(target)
    m_rec = np.clip(np.round(m_float / step) * step, lo, hi).astype(np.int64)

    # -- input targets ----------------------------------------------------------------------------
    mask_in = w_in_signs != 0
    if p.input_mode == "current":
        x_in = w_in_signs * p.input_scaling * gain          # R = 1: one spike per step = input 1
        in_rate = 1.0
        encoding = ("current mode: each input channel is a spike source; one spike every step gives the "
                    "steady drive of input value 1, so a rate-coded input of r spikes/step gives input r")
    else:
        x_in = np.where(mask_in, p.input_weight * k_e, 0.0)
        in_rate = p.max_rate * p.dt / 1000.0 if p.input_mode == "poisson" else rate_hz * p.dt / 1000.0
        encoding = (f"{p.input_mode} mode: one input spike = a jump of {p.input_weight} mV of J_e "
                    f"({p.n_inputs * p.input_sources} sources)")

    # mantissa per unit target (= scale / 2**exp), from the recurrent layer or, without recurrent
    # synapses, from the input layer's largest weight
    if ref != 0:
        c = m_ref / ref
    else:
        peak_in = float(np.abs(x_in).max(initial=0.0))
        if peak_in == 0:
            raise ValueError("quantise_lsm: the LSM has neither recurrent nor input synapses to quantise")
        c = (254 if p.input_mode == "current" else 255) / peak_in

    # -- weight exponent: largest with vth in 17 bits and u, v inside 24 bits at rate_hz --------------
    r = rate_hz * p.dt / 1000.0
    rows_abs = np.zeros(n)
    rows_neg = np.zeros(n)
    np.add.at(rows_abs, post, np.abs(m_rec) * r)
    np.add.at(rows_neg, post, np.maximum(-m_rec, 0) * r)
    chosen = None
    for exp in range(7, -9, -1):
        scale = c * 2.0**exp
        vth = round((p.v_th - p.e_l) * scale / 64.0)
        in_exp, m_in, _ = _input_mantissas(x_in * scale, p.input_mode == "current")
        u_in = np.abs(m_in).sum(axis=1) * in_rate * 2.0**in_exp
        neg_in = np.maximum(-m_in, 0).sum(axis=1) * in_rate * 2.0**in_exp
        u_bound = float(64 * (rows_abs * 2.0**exp + u_in).max(initial=0.0) / (1 - a_u)) if a_u < 1 else 0.0
        v_bound = float(64 * (rows_neg * 2.0**exp + neg_in).max(initial=0.0) / ((1 - a_u) * (1 - a_v))) \
            if a_u < 1 and a_v < 1 else float("inf")
        if vth <= _VTH_MAX and u_bound <= _UV_MAX and v_bound <= _UV_MAX:
            chosen = exp
            break
    if chosen is None:
        chosen = -8
        report_warn.append(f"no weight_exp in -8..7 keeps vth <= {_VTH_MAX} and |u|, |v| inside 24 bits at "
                           f"{rate_hz} Hz; used -8 (u may wrap or v saturate at high rates)")
    exp = chosen
    scale = c * 2.0**exp
    vth = int(min(round((p.v_th - p.e_l) * scale / 64.0), _VTH_MAX))
    if vth < 1:
        raise ValueError(f"threshold (v_th - e_l = {p.v_th - p.e_l} mV) rounds to a zero vth mantissa at "
                         f"scale {scale:.4g}/mV; the weights are too large relative to the threshold")
    in_exp, m_in, clipped = _input_mantissas(x_in * scale, p.input_mode == "current")
    if clipped:
        report_warn.append("input weights exceed mantissa 255 << 7 and were clipped")
    if exp < -1 or (exp < 0 and sign_mode != 1):
        report_warn.append(f"weight_exp = {exp} < 0: Lava floors each step's summed input (>> {-exp}), "
                           "a bias towards inhibition")
    u_in = np.abs(m_in).sum(axis=1) * in_rate * 2.0**in_exp
    neg_in = np.maximum(-m_in, 0).sum(axis=1) * in_rate * 2.0**in_exp
    u_bound = float(64 * (rows_abs * 2.0**exp + u_in).max(initial=0.0) / (1 - a_u)) if a_u < 1 else 0.0
    v_bound = float(64 * (rows_neg * 2.0**exp + neg_in).max(initial=0.0) / ((1 - a_u) * (1 - a_v))) \
        if a_u < 1 and a_v < 1 else float("inf")

    # -- the network ------------------------------------------------------------------------------------
    w_rec = np.zeros((n, n), dtype=np.int32)
    w_rec[post, pre] = m_rec
    network = LoihiNetwork(
        du=du, dv=dv, vth=vth, bias_mant=np.zeros(n, dtype=np.int32), bias_exp=0,
        recurrent=DenseLayer(w_rec, weight_exp=exp, num_weight_bits=8, sign_mode=sign_mode),
        input=DenseLayer(m_in.astype(np.int32), weight_exp=in_exp, num_weight_bits=8,
                         sign_mode=1 if p.input_mode == "current" else 2),
        meta={"source": "quantise_lsm", "scale": scale, "e_l": p.e_l, "dt": p.dt})

    # -- errors in the LSM's mV: effective Loihi weight back through the same gain ------------------------
    eff_rec = _lava_effective(m_rec, sign_mode) * 2.0**exp / (scale * k_syn) if len(m_rec) else m_rec
    rec_err = _rel_error(eff_rec, w_mv)
    in_gain = gain if p.input_mode == "current" else k_e
    w_in_mv = (w_in_signs * p.input_scaling if p.input_mode == "current" else
               np.where(mask_in, p.input_weight, 0.0)).T
    eff_in = _lava_effective(m_in, 1 if p.input_mode == "current" else 2) * 2.0**in_exp / (scale * in_gain)
    in_err = _rel_error(eff_in, w_in_mv)

    # -- what is lost ---------------------------------------------------------------------------------
    dropped = []
    if p.t_ref > 0:
        dropped.append(f"refractory period t_ref = {p.t_ref} ms (Lava's LIF has none)")
    dropped.append(f"synaptic delays (exc {p.delay_exc} ms, inh {p.delay_inh} ms): on Loihi every recurrent "
                   "spike arrives one step after it is emitted, and input spikes one step later than in the LSM")
    if tau_s != p.tau_e or tau_s != p.tau_i:
        dropped.append(f"separate E/I synaptic time constants (tau_e {p.tau_e} ms, tau_i {p.tau_i} ms): both "
                       f"become tau_syn = {tau_s} ms; each PSP keeps its float integral")
    if p.noise_rate > 0:
        dropped.append(f"background noise ({p.noise_rate} Hz of {p.noise_weight} mV per neuron) unless the "
                       "driver feeds it as input spikes")
    if p.input_mode == "current":
        dropped.append("analog input current: inputs must be rate-coded into spikes (see input_encoding)")
    if p.v_reset != p.e_l:
        msg = f"v_reset ({p.v_reset} mV) != e_l ({p.e_l} mV): Loihi resets v to 0 = e_l"
        report_warn.append(msg)
        warnings.warn(f"quantise_lsm: {msg}", stacklevel=2)

    report = QuantisationReport(
        du=du, dv=dv, vth=vth, scale=scale, weight_exp=exp, input_weight_exp=in_exp,
        mantissas={"excitatory": _class_mantissa(m_rec, exc[pre], True),
                   "inhibitory": _class_mantissa(m_rec, exc[pre], False),
                   "input": int(np.abs(m_in).max(initial=0))},
        relative_weight_error={"recurrent": rec_err, "input": in_err},
        time_constants_ms={"tau_m": p.tau_m, "tau_syn": tau_s, "tau_syn_from": tau_name, "tau_e": p.tau_e,
                           "tau_i": p.tau_i, "inhibitory_becomes": tau_s,
                           "tau_u_effective": _tau_eff(p.dt, a_u), "tau_v_effective": _tau_eff(p.dt, a_v)},
        headroom={"rate_hz": rate_hz, "u_bound": u_bound, "v_bound": v_bound, "limit": float(_UV_MAX)},
        decay=decay, mapping="integrated membrane response (PSP charge) matched per synapse class",
        input_encoding=encoding, dropped=dropped, warnings=report_warn)
    return network, report


def decays(dt: float, tau_syn: float, tau_m: float, rule: Literal["issue", "exact"] = "issue") -> tuple[int, int]:
    """``(du, dv)`` for Lava's LIF from time constants in the same unit as ``dt``.

    ``"issue"``: ``du = round(4096 dt/tau_syn)``, ``dv = round(4096 dt/tau_m)`` (issue 17; a
    forward-Euler decay). ``"exact"``: ``dv = round(4096 (1 - exp(-dt/tau_m)))`` and
    ``du = round(4096 (1 - exp(-dt/tau_syn))) - 1``, since ``PyLifModelBitAcc`` decays ``u`` by
    ``du + ds_offset`` with ``ds_offset = 1`` (lava-nc 0.10.0, ``lava/proc/lif/models.py``).
    Both are clipped to Lava's unsigned 12-bit range 0…4095.
    """
    if rule == "issue":
        du, dv = round(4096 * dt / tau_syn), round(4096 * dt / tau_m)
    elif rule == "exact":
        du = round(4096 * (1 - math.exp(-dt / tau_syn))) - 1
        dv = round(4096 * (1 - math.exp(-dt / tau_m)))
    else:
        raise ValueError(f"decay rule must be 'issue' or 'exact', got {rule!r}")
    return int(min(max(du, 0), 4095)), int(min(max(dv, 0), 4095))


def response_integral(dt: float, tau_m: float, tau_syn: float) -> float:
    """Sum over steps of the float LSM's membrane response (mV) to a unit jump of J (1 mV).

    With the exact propagators of Rotter & Diesmann 1999 (as in ``labbench.drivers.lsm.kernel``)
    the response ``n`` steps after the arrival is ``sum_k P_mm^(n-k) P_ms P_ss^k``, whose sum over
    ``n >= 0`` is ``P_ms / ((1 - P_mm)(1 - P_ss))`` (≈ ``tau_syn / dt`` for ``dt`` ≪ τ).
    """
    p_mm, p_ss = math.exp(-dt / tau_m), math.exp(-dt / tau_syn)
    if abs(tau_syn - tau_m) < 1e-12 * tau_m:
        p_ms = dt / tau_m * p_mm
    else:
        p_ms = tau_syn / (tau_syn - tau_m) * (p_ss - p_mm)
    return p_ms / ((1 - p_mm) * (1 - p_ss))


# -- helpers -----------------------------------------------------------------------------------------
def _lsm_params(params: Any) -> LSMParams:
    if isinstance(params, LSMParams):
        return params
    if not isinstance(params, dict):
        name = type(params).__name__
        if "ESN" in name or "EchoState" in name:
            raise ValueError(f"quantise_lsm: an ESN is not a LIF network (got {name}); quantise an LSM's parameters")
        raise TypeError(f"quantise_lsm: params must be a dict or LSMParams, got {name}")
    esn = [k for k in _ESN_ONLY if k in params]
    if esn:
        raise ValueError(f"quantise_lsm: an ESN is not a LIF network (got ESN parameter(s) {', '.join(esn)}); "
                         "quantise an LSM's parameters (labbench.drivers.lsm.LSMParams)")
    try:
        return LSMParams(**params)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "params"
        raise ValueError(f"quantise_lsm: LSM parameter {where}: {err.get('msg', 'invalid')}") from None


def _input_mantissas(a_target: np.ndarray, mixed: bool) -> tuple[int, np.ndarray, bool]:
    """Input Dense (post x source) mantissas and exponent 0..7 for targets ``a_target`` (source x post)."""
    top = 254 if mixed else 255
    step = 2 if mixed else 1
    peak = float(np.abs(a_target).max(initial=0.0))
    exp = 0
    while exp < 7 and peak / 2.0**exp > top:
        exp += 1
    m = np.round(a_target.T / 2.0**exp / step) * step
    clipped = bool(peak / 2.0**exp > top + step / 2)
    m = np.clip(m, -256 if mixed else 0, top)
    return exp, m.astype(np.int64), clipped


def _lava_effective(m: np.ndarray, sign_mode: int) -> np.ndarray:
    """Weights as Lava's Dense uses them: ``clip_weights`` then ``truncate_weights``
    (lava-nc 0.10.0, ``lava/utils/weightutils.py``; 8 weight bits)."""
    w = np.asarray(m, dtype=np.int64)
    if sign_mode == 3:
        w = -w
    mixed = int(sign_mode == 1)
    w = np.clip(w, -256 * mixed, 255)
    w = (w >> mixed) << mixed
    return (-w if sign_mode == 3 else w).astype(np.float64)


def _rel_error(w_q: np.ndarray, w: np.ndarray) -> float:
    norm = float(np.linalg.norm(w))
    return float(np.linalg.norm(w_q - w) / norm) if norm > 0 else 0.0


def _class_mantissa(m: np.ndarray, is_exc: np.ndarray, exc: bool) -> int:
    sel = m[is_exc == exc]
    return int(sel[0]) if len(sel) else 0


def _tau_eff(dt: float, alpha: float) -> float:
    return float(-dt / math.log(alpha)) if 0 < alpha < 1 else (0.0 if alpha <= 0 else float("inf"))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and math.isinf(x):
        return None
    return x
