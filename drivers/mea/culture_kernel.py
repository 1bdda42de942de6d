"""The in-silico culture's time loop: Izhikevich neurons, conductance synapses, depression, STDP.

One call advances the whole network by a window of fixed steps ``dt`` (ms). Per step:

1. stimulation pulses whose step this is add a one-step current ``I_stim`` to the
   neurons near their electrode (gain per neuron precomputed, see :mod:`.culture`);
2. background input: each neuron receives Poisson events at ``bg_rate`` (per ms), each a
   jump ``bg_w`` of its AMPA conductance. The next event time of every neuron is kept, so
   the cost is one comparison per neuron per step plus one exponential draw per event;
3. synaptic input that arrives in this step is added to the conductances. It sits in a
   ring buffer indexed by step modulo its length. An excitatory event of size ``w`` adds
   ``w`` to ``g_AMPA`` and ``nmda_ratio * w`` to ``g_NMDA``; an inhibitory one adds to
   ``g_GABA``;
4. every neuron is integrated (Izhikevich 2003, IEEE Trans. Neural Netw. 14:1569)::

       dv/dt = 0.04 v^2 + 5 v + 140 - u + I,     du/dt = a (b v - u)
       if v >= 30 mV:  v <- c,  u <- u + d
       I = g_AMPA (E_exc - v) + g_NMDA B(v) (E_exc - v) + g_GABA (E_inh - v) + I_stim
       B(v) = ((v + 80) / 60)^2 / (1 + ((v + 80) / 60)^2)

   These are the conductance-based synapses and the NMDA magnesium block of Izhikevich &
   Edelman (2008, PNAS 105:3593). As in Izhikevich's published code, v takes two
   forward-Euler half steps (here of ``dt / 2``), with I re-evaluated at the half step,
   and u one step of ``dt`` with the new v. A spike is detected after either half step.
   Its time within the step is the linear interpolation of the 30 mV crossing. The
   conductances then decay exactly by ``exp(-dt / tau)``. This loop has no branches, so
   the compiler vectorises it;
5. the spikes of the step are handled in neuron order. A spike of neuron k travels
   through its outgoing synapses (CSR by presynaptic neuron) into the ring buffer.
   Emitted in step t with a delay of D steps, it acts from step t + 1 + D (the schedule
   of the LSM kernel, Brian2 and NEST). The ring buffer is longer than the longest
   delay, so nothing a spike does can reach the step being integrated;
6. short-term depression (Tsodyks & Markram 1997, PNAS 94:719; Tsodyks, Uziel & Markram
   2000, J. Neurosci. 20:RC50): each presynaptic neuron has a fraction ``x`` of available
   resources. It recovers as ``dx/dt = (1 - x) / tau_rec``, applied exactly and lazily at
   the neuron's next spike (``x <- 1 - (1 - x) exp(-Dt / tau_rec)``). A spike delivers
   ``w x`` on each outgoing synapse, where ``w`` is the jump of a fully recovered
   synapse, and then uses a fraction U of what is left: ``x <- x (1 - U)``. Neurons with
   ``tau_rec <= 0`` have static synapses;
7. optional pair-based STDP in trace form (Song, Miller & Abbott 2000, Nat. Neurosci.
   3:919; all-to-all pairing as in Morrison, Diesmann & Gerstner 2008, Biol. Cybern.
   98:459) on the synapses marked plastic. A presynaptic spike depresses
   ``w -= A_- w_max y_post``, and a postsynaptic spike potentiates
   ``w += A_+ w_max x_pre``. Weights are clipped to [0, w_max]. The traces jump by 1
   after all the pairings of the step (spikes in the same step do not pair) and decay
   with ``tau_+`` and ``tau_-``. Pairing uses emission times: the synaptic delay is
   ignored, as in Song et al.

Every random draw comes from the one generator passed in, in a fixed order. The same
state and seed therefore give the same spikes, and a window split in two gives the same
spikes as the whole window.
"""

from __future__ import annotations

import math

from numba import njit


@njit(cache=True, inline="always")
def _mg_block(v):
    """Voltage dependence of the NMDA conductance (Izhikevich & Edelman 2008, PNAS 105:3593)."""
    z = ((v + 80.0) / 60.0) ** 2
    return z / (1.0 + z)


@njit(cache=True, error_model="numpy")
def run_steps(
    t0, n_steps, dt,                     # absolute step of the window start, steps to do, step (ms)
    a, b, c, d,                          # (N,) Izhikevich parameters
    indptr, idx, w, delay,               # CSR by presynaptic neuron: targets, weights, delays (steps)
    excitatory,                          # (N,) bool: sign class of each presynaptic neuron
    std_u, std_tau,                      # (N,) per presynaptic neuron: U and tau_rec (ms; <= 0: static)
    v, u, ge, gn, gi, x_res, t_last, bg_next, buf_e, buf_i,   # state, modified in place
    p_e, p_n, p_i,                       # exp(-dt / tau) of AMPA, NMDA, GABA_A
    nmda_ratio,                          # NMDA jump per unit AMPA jump of a synaptic event
    e_exc, e_inh,                        # reversal potentials (mV)
    bg_rate, bg_w,                       # background events per ms per neuron, jump of g_e per event
    p_step, p_elec, p_amp,               # pulses: absolute step (ascending), electrode, drive scale
    st_indptr, st_idx, st_gain,          # CSR by electrode: neurons stimulated and their gain
    i_stim, frac,                        # (N,) scratch: i_stim all zeros on entry and on return
    stdp, plastic, in_ptr, in_syn, syn_pre,   # STDP on/off; plastic synapses; CSR by post of synapse ids
    tr_pre, tr_post, q_plus, q_minus, a_plus, a_minus, w_max,
    rng,
    spike_t, spike_n,                    # out: spike time (ms, absolute) and neuron
):
    """Advance up to ``n_steps`` steps; returns ``(steps_done, n_spikes)``.

    Stops early (at a step boundary) when fewer than N free rows are left in the spike
    buffers, so that a step can never overflow them; the caller grows them and goes on.
    """
    N = v.shape[0]
    D = buf_e.shape[0]
    cap = spike_t.shape[0]
    n_sp = 0
    h = 0.5 * dt
    pp = 0
    n_pulses = p_step.shape[0]
    use_bg = bg_rate > 0.0
    mean_gap = 1.0 / bg_rate if use_bg else 0.0
    for s in range(n_steps):
        if cap - n_sp < N:
            return s, n_sp
        t = t0 + s
        slot = t % D
        t_end = (t + 1) * dt
        be = buf_e[slot]
        bi = buf_i[slot]
        # stimulation pulses of this step
        while pp < n_pulses and p_step[pp] < t:
            pp += 1
        first_pulse = pp
        while pp < n_pulses and p_step[pp] == t:
            e = p_elec[pp]
            for q in range(st_indptr[e], st_indptr[e + 1]):
                i_stim[st_idx[q]] += p_amp[pp] * st_gain[q]
            pp += 1
        # background events (a scalar pass: one comparison per neuron)
        if use_bg:
            for k in range(N):
                while bg_next[k] < t_end:
                    ge[k] += bg_w
                    bg_next[k] += rng.exponential(mean_gap)
        # integrate every neuron; branch-free so that the compiler can vectorise it
        for k in range(N):
            gek = ge[k] + be[k]
            gnk = gn[k] + nmda_ratio * be[k]
            gik = gi[k] + bi[k]
            be[k] = 0.0
            bi[k] = 0.0
            ge[k] = gek * p_e
            gn[k] = gnk * p_n
            gi[k] = gik * p_i
            ist = i_stim[k]
            v0 = v[k]
            uk = u[k]
            cur = (gek + gnk * _mg_block(v0)) * (e_exc - v0) + gik * (e_inh - v0) + ist
            v1 = v0 + h * (0.04 * v0 * v0 + 5.0 * v0 + 140.0 - uk + cur)
            v1c = min(v1, 30.0)
            cur = (gek + gnk * _mg_block(v1c)) * (e_exc - v1c) + gik * (e_inh - v1c) + ist
            v2 = v1c + h * (0.04 * v1c * v1c + 5.0 * v1c + 140.0 - uk + cur)
            # where the 30 mV crossing lies within the step (-1: no spike)
            f1 = 0.5 * (30.0 - v0) / (v1 - v0)
            f2 = 0.5 + 0.5 * (30.0 - v1c) / (v2 - v1c)
            fr = f1 if v1 >= 30.0 else (f2 if v2 >= 30.0 else -1.0)
            fired = fr >= 0.0
            v[k] = c[k] if fired else v2
            u[k] = uk + d[k] if fired else uk + dt * a[k] * (b[k] * v2 - uk)
            frac[k] = fr
        # spikes, in neuron order: record, depress, propagate, STDP
        for k in range(N):
            if frac[k] < 0.0:
                continue
            ts = (t + frac[k]) * dt
            spike_t[n_sp] = ts
            spike_n[n_sp] = k
            n_sp += 1
            eff = 1.0
            if std_tau[k] > 0.0:
                xk = 1.0 - (1.0 - x_res[k]) * math.exp(-(ts - t_last[k]) / std_tau[k])
                eff = xk
                x_res[k] = xk * (1.0 - std_u[k])
                t_last[k] = ts
            exc = excitatory[k]
            for q in range(indptr[k], indptr[k + 1]):
                dslot = (t + 1 + delay[q]) % D
                if exc:
                    buf_e[dslot, idx[q]] += w[q] * eff
                else:
                    buf_i[dslot, idx[q]] += w[q] * eff
            if stdp:
                dep = a_minus * w_max
                for q in range(indptr[k], indptr[k + 1]):      # k as presynaptic: depression
                    if plastic[q]:
                        wq = w[q] - dep * tr_post[idx[q]]
                        w[q] = wq if wq > 0.0 else 0.0
                pot = a_plus * w_max
                for r in range(in_ptr[k], in_ptr[k + 1]):      # k as postsynaptic: potentiation
                    q = in_syn[r]
                    if plastic[q]:
                        wq = w[q] + pot * tr_pre[syn_pre[q]]
                        w[q] = wq if wq < w_max else w_max
        # the stimulation current lasts one step
        for p in range(first_pulse, pp):
            e = p_elec[p]
            for q in range(st_indptr[e], st_indptr[e + 1]):
                i_stim[st_idx[q]] = 0.0
        if stdp:   # the traces jump after all the step's pairings: no pairing within a step
            for k in range(N):
                if frac[k] >= 0.0:
                    tr_pre[k] += 1.0
                    tr_post[k] += 1.0
                tr_pre[k] *= q_plus
                tr_post[k] *= q_minus
    return n_steps, n_sp
