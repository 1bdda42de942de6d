"""The emulator's time loop: T steps of Lava 0.10's fixed-point LIF and Dense models in one call.

Every line reproduces the integer arithmetic of lava-nc 0.10.0, including the places where
numpy's ``int32`` wraps silently:

- ``lava/proc/dense/models.py`` ``AbstractPyDenseModelBitAcc.run_spk``: the Dense sends the
  ``a_buff`` it accumulated at the previous step, then accumulates the spikes it receives now,
  ``a_accum = weights[:, s_in].sum(axis=1)`` (int64), and stores
  ``a_buff = a_accum << weight_exp`` (``>> -weight_exp`` when ``weight_exp <= 0``, an
  arithmetic shift of the *sum*, i.e. floor division by ``2**-weight_exp``). ``a_buff``
  travels through an ``int32`` channel (``a_out: LavaPyType(PyOutPort.VEC_DENSE, np.int32)``),
  so it arrives wrapped to 32 bits.
- ``lava/magma/core/model/py/ports.py`` ``PyInPortVectorDense.recv``: the LIF's ``a_in`` is the
  ``int32`` sum of its incoming channels (recurrent + input Dense).
- ``lava/proc/lif/models.py`` ``AbstractPyLifModelFixed.subthr_dynamics`` and
  ``PyLifModelBitAcc.spiking_activation``::

      du_eff = du + 1 (ds_offset),  dv_eff = dv (dm_offset = 0)
      decay(x, d) = sign(x (4096 - d)) * (|x (4096 - d)| >> 12)        (int64, sign-magnitude)
      u' = int32( decay(u, du_eff) + int32(a_in << 6) )
      u  = u' - 2**24 if u' > 2**23;  u' + 2**24 if u' <= -2**23;  else u'   (24-bit wrap)
      v  = clip( int32(decay(v, dv_eff) + u + bias), -(2**23 - 1), 2**23 - 1 )  (saturation)
      s  = v > (vth << 6);   v[s] = 0

  where ``bias = bias_mant << bias_exp`` (``scale_bias``). Lava's wrap test is ``> 2**23`` and
  ``<= -2**23``, so ``u = +2**23`` is kept and ``-2**23`` becomes ``+2**23``; a single wrap
  only (an input that overshoots by more than 2**24 is not folded back, exactly as in Lava).

Emulator step ``t`` (0-based) is Lava time step ``t + 1``: the neurons integrate the Dense
outputs accumulated at step ``t - 1`` (zero at ``t = 0``), spike, and then both Dense
processes accumulate this step's spikes (recurrent) and this step's input row (input) for
step ``t + 1``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_TWO24 = 1 << 24
_MAX_UV = 1 << 23
_V_LIMIT = (1 << 23) - 1


@njit(cache=True, inline="always")
def _wrap32(x: np.int64) -> np.int64:
    """Two's-complement wrap of an int64 to int32, as numpy's silent int32 overflow does."""
    return ((x + 2147483648) & 4294967295) - 2147483648


@njit(cache=True, inline="always")
def _decay(x: np.int64, factor: np.int64) -> np.int64:
    """Lava's sign-magnitude decay ``sign(x f) (|x f| >> 12)`` (AbstractPyLifModelFixed)."""
    p = x * factor
    if p >= 0:
        return p >> 12
    return -((-p) >> 12)


@njit(cache=True, inline="always")
def _shift(acc: np.int64, exp: np.int64) -> np.int64:
    """Dense's ``a_accum << weight_exp`` (``>> -weight_exp`` for ``weight_exp <= 0``), wrapped to int32."""
    if exp > 0:
        return _wrap32(acc << exp)
    return _wrap32(acc >> (-exp))


@njit(cache=True, error_model="numpy")
def run_steps(
    spikes_in,                        # (T, n_in) uint8 0/1: row t is what the source emits at step t
    u, v,                             # (N,) int32 state, modified in place
    rec_buf, in_buf,                  # (N,) int32 in-flight Dense outputs (arrive next step), in place
    rec_indptr, rec_idx, rec_w, rec_exp,   # recurrent Dense: CSR by presynaptic neuron
    in_indptr, in_idx, in_w, in_exp,       # input Dense: CSR by input channel
    factor_u, factor_v,               # 4096 - (du + 1), 4096 - dv
    bias,                             # (N,) int64 bias_mant << bias_exp
    vth_scaled,                       # vth << 6
    record,                           # bool: write u, v per step
    out_spikes,                       # (T, N) bool out
    out_u, out_v,                     # (T, N) int32 out, or (0, N) when not recording
    counts,                           # (3,) int64 in place: synaptic_ops, neuron_updates, spikes
):
    """Advance the network ``T = spikes_in.shape[0]`` steps (see the module docstring)."""
    T = spikes_in.shape[0]
    N = u.shape[0]
    n_in = spikes_in.shape[1]
    acc_rec = np.zeros(N, np.int64)
    acc_in = np.zeros(N, np.int64)
    syn_ops = 0
    n_spikes = 0
    for t in range(T):
        # neurons: integrate what the Dense processes accumulated at step t - 1
        for k in range(N):
            a_in = _wrap32(np.int64(rec_buf[k]) + np.int64(in_buf[k]))
            uu = _wrap32(_decay(np.int64(u[k]), factor_u) + _wrap32(a_in << 6))
            if uu > _MAX_UV:
                uu -= _TWO24
            elif uu <= -_MAX_UV:
                uu += _TWO24
            u[k] = uu
            vv = _wrap32(_decay(np.int64(v[k]), factor_v) + uu + bias[k])
            if vv > _V_LIMIT:
                vv = _V_LIMIT
            elif vv < -_V_LIMIT:
                vv = -_V_LIMIT
            s = vv > vth_scaled
            if s:
                vv = 0
            v[k] = vv
            out_spikes[t, k] = s
            acc_rec[k] = 0
            acc_in[k] = 0
        if record:
            for k in range(N):
                out_u[t, k] = u[k]
                out_v[t, k] = v[k]
        # Dense processes: accumulate this step's spikes, delivered at step t + 1
        for j in range(N):
            if out_spikes[t, j]:
                n_spikes += 1
                lo = rec_indptr[j]
                hi = rec_indptr[j + 1]
                syn_ops += hi - lo
                for q in range(lo, hi):
                    acc_rec[rec_idx[q]] += rec_w[q]
        for c in range(n_in):
            if spikes_in[t, c] != 0:
                lo = in_indptr[c]
                hi = in_indptr[c + 1]
                syn_ops += hi - lo
                for q in range(lo, hi):
                    acc_in[in_idx[q]] += in_w[q]
        for k in range(N):
            rec_buf[k] = _shift(acc_rec[k], rec_exp)
            in_buf[k] = _shift(acc_in[k], in_exp)
    counts[0] += syn_ops
    counts[1] += np.int64(N) * T
    counts[2] += n_spikes
