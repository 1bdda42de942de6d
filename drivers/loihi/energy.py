"""What a run would cost on Loihi: energy and time from operation counts, and the cores a network needs.

Figures are Loihi 1's, from M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with
On-Chip Learning", IEEE Micro 38(1):82–99, 2018, **Table 2** ("Loihi pre-silicon performance and
energy measurements": SDF and SPICE simulations, "consistent with early post-silicon
characterization", p. 95)::

    Energy per synaptic spike op (min)              23.6 pJ
    Time per synaptic spike op (max)                 3.5 ns
    Energy per neuron update (active / inactive)    81 pJ / 52 pJ
    Time per neuron update (active / inactive)      8.4 ns / 5.3 ns
    Within-tile spike energy                         1.7 pJ
    Mesh-wide barrier sync time (1-32 tiles)       113-465 ns

and the core limits of p. 86/89: 1,024 compartments per core, 128 KB of synaptic state per core
("The total synaptic fan-in state mapped to any core must not exceed 128 KB"), 4,096 input axons
(distribution lists) per core, 128 cores per chip. Loihi 2 limits are derived from Intel's chip
totals (128 neuro-cores, up to 1 M neurons and 120 M synapses per chip) and are lower bounds.
``docs/loihi_energy.md`` lists which figures were checked against which source.

The model (an estimate, not a measurement):

* energy = synaptic_ops · 23.6 pJ + neuron_updates · 52 pJ + spikes · (81 − 52) pJ + spikes · 1.7 pJ,
  counting a neuron update as *active* when the neuron spikes (the paper does not define the
  split in Table 2; ``energy_range_J`` gives all-inactive and all-active bounds); spikes are
  routed within a tile (inter-tile hops, static power and host I/O are left out);
* time per step = (synaptic_ops · 3.5 ns + updates at 5.3/8.4 ns) / cores + barrier, with the
  work spread evenly over the cores the network needs (:func:`resources`) and the barrier
  interpolated linearly over tiles of 4 cores.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .network import DenseLayer, LoihiNetwork

#: Davies et al. 2018, IEEE Micro 38(1), Table 2 (joules and seconds)
DAVIES_2018: dict[str, float] = {
    "energy_per_synaptic_op": 23.6e-12,
    "time_per_synaptic_op": 3.5e-9,
    "energy_per_neuron_update_active": 81e-12,
    "energy_per_neuron_update_inactive": 52e-12,
    "time_per_neuron_update_active": 8.4e-9,
    "time_per_neuron_update_inactive": 5.3e-9,
    "energy_per_spike_within_tile": 1.7e-12,
    "barrier_sync_1_tile": 113e-9,
    "barrier_sync_32_tiles": 465e-9,
}

#: Loihi 1 core limits (Davies et al. 2018, p. 86 and the mapping constraints on p. 89)
LOIHI1_CORE = {"compartments": 1024, "synapse_memory_bits": 128 * 1024 * 8, "input_axons": 4096,
               "cores_per_chip": 128, "cores_per_tile": 4}
#: Loihi 2 per-core limits derived from the chip totals (128 cores, 1 M neurons, 120 M synapses)
LOIHI2_CORE = {"neurons": 1_000_000 // 128, "synapses": 120_000_000 // 128, "cores_per_chip": 128}

_INDEX_BITS = 10   # a sparse synapse names its target among a core's 1,024 compartments
_COUNT_KEYS = ("synaptic_ops", "neuron_updates", "spikes", "steps")


def estimate(counts: dict[str, int], network: LoihiNetwork) -> dict[str, Any]:
    """Energy (J) and time (s) a run's operations would take on Loihi 1, per run and per step.

    Parameters
    ----------
    counts : dict
        ``synaptic_ops``, ``neuron_updates``, ``spikes``, ``steps`` since reset, as the emulator's
        and the Lava back end's ``counts`` give them.
    network : LoihiNetwork
        The network that ran (its core count sets how the work is spread).

    Returns
    -------
    dict
        JSON-able: ``energy_J``, ``energy_per_step_J``, ``energy_range_J`` (all updates inactive,
        all active), ``energy_breakdown_J``, ``time_s``, ``time_per_step_s``, ``cores``, the
        ``counts``, the ``figures`` used, ``assumptions`` and ``source``.
    """
    c = _counts(counts)
    f = DAVIES_2018
    cores = resources(network)["loihi1"]["cores"]
    syn, upd, spk, steps = c["synaptic_ops"], c["neuron_updates"], c["spikes"], c["steps"]
    active = min(spk, upd)
    e_syn = syn * f["energy_per_synaptic_op"]
    e_upd = upd * f["energy_per_neuron_update_inactive"] + active * (
        f["energy_per_neuron_update_active"] - f["energy_per_neuron_update_inactive"])
    e_spk = spk * f["energy_per_spike_within_tile"]
    energy = e_syn + e_upd + e_spk
    e_lo = e_syn + upd * f["energy_per_neuron_update_inactive"] + e_spk
    e_hi = e_syn + upd * f["energy_per_neuron_update_active"] + e_spk
    work = (syn * f["time_per_synaptic_op"] + (upd - active) * f["time_per_neuron_update_inactive"]
            + active * f["time_per_neuron_update_active"])
    tiles = math.ceil(cores / LOIHI1_CORE["cores_per_tile"])
    barrier = f["barrier_sync_1_tile"] + (f["barrier_sync_32_tiles"] - f["barrier_sync_1_tile"]) * (
        min(tiles, 32) - 1) / 31
    time_s = work / cores + steps * barrier
    per = 1.0 / steps if steps else 0.0
    return {
        "chip": "Loihi 1",
        "counts": c,
        "energy_J": energy,
        "energy_per_step_J": energy * per,
        "energy_range_J": [e_lo, e_hi],
        "energy_breakdown_J": {"synaptic_ops": e_syn, "neuron_updates": e_upd, "spikes": e_spk},
        "time_s": time_s,
        "time_per_step_s": time_s * per,
        "cores": cores,
        "figures": dict(f),
        "assumptions": [
            "a neuron update is active when the neuron spikes; energy_range_J bounds the split",
            "spikes routed within a tile; inter-tile hops, static power and host I/O left out",
            "work spread evenly over the cores; barrier interpolated over tiles of 4 cores",
        ],
        "source": "Davies et al., IEEE Micro 38(1):82-99, 2018, Table 2 (pre-silicon SDF/SPICE figures)",
    }


def resources(network: LoihiNetwork) -> dict[str, Any]:
    """Cores and synapse memory a network needs on Loihi 1 and (lower bound) Loihi 2.

    Synapse memory counts each Dense in the cheaper of two formats: sparse,
    ``nnz · (num_weight_bits + 10)`` bits (weight plus a 10-bit target index among a core's
    1,024 compartments), or dense, ``n_post · n_pre · num_weight_bits`` bits. List headers and
    alignment (Davies et al. 2018, p. 89: "subject to compression and list alignment
    considerations") are left out, so the memory is a lower bound and the core count
    ``max(ceil(N / 1024), ceil(bits / 128 KB))`` the fewest that could hold the network.

    Parameters
    ----------
    network : LoihiNetwork

    Returns
    -------
    dict
        JSON-able: ``neurons``, ``inputs``, ``synapses`` per layer, and for ``loihi1`` the
        ``cores``, ``synapse_memory_bits`` (with the format per layer), ``chips`` and whether the
        4,096 input axons per core suffice; for ``loihi2`` the ``cores`` and ``chips``.
    """
    n, n_in = network.n_neurons, network.n_inputs
    layers = {"recurrent": network.recurrent, "input": network.input}
    synapses = {k: int(np.count_nonzero(v.weights)) for k, v in layers.items()}
    memory = {k: _layer_bits(v) for k, v in layers.items()}
    bits = sum(m["bits"] for m in memory.values())
    core_bits = LOIHI1_CORE["synapse_memory_bits"]
    cores1 = max(1, math.ceil(n / LOIHI1_CORE["compartments"]), math.ceil(bits / core_bits))
    n_syn = sum(synapses.values())
    cores2 = max(1, math.ceil(n / LOIHI2_CORE["neurons"]), math.ceil(n_syn / LOIHI2_CORE["synapses"]))
    sources = _presynaptic_sources(network)
    return {
        "neurons": n,
        "inputs": n_in,
        "synapses": synapses,
        "loihi1": {
            "cores": cores1,
            "chips": math.ceil(cores1 / LOIHI1_CORE["cores_per_chip"]),
            "synapse_memory_bits": bits,
            "synapse_memory_per_layer": memory,
            "core_limits": dict(LOIHI1_CORE),
            "input_axons_needed": sources,
            "input_axons_fit": sources <= LOIHI1_CORE["input_axons"],
            "source": "Davies et al., IEEE Micro 38(1):82-99, 2018, pp. 86, 89",
        },
        "loihi2": {
            "cores": cores2,
            "chips": math.ceil(cores2 / LOIHI2_CORE["cores_per_chip"]),
            "core_limits": dict(LOIHI2_CORE),
            "source": "derived from Intel's Loihi 2 chip totals (128 cores, 1 M neurons, 120 M synapses); "
                      "a lower bound, per-core memory not checked",
        },
    }


def _counts(counts: dict[str, int]) -> dict[str, int]:
    missing = [k for k in _COUNT_KEYS if k not in counts]
    if missing:
        raise ValueError(f"counts lacks {', '.join(missing)}; expected keys {', '.join(_COUNT_KEYS)}")
    out = {}
    for k in _COUNT_KEYS:
        v = counts[k]
        if not float(v) >= 0 or float(v) != int(v):
            raise ValueError(f"counts[{k!r}] must be a non-negative integer, got {v!r}")
        out[k] = int(v)
    return out


def _layer_bits(layer: DenseLayer) -> dict[str, Any]:
    nnz = int(np.count_nonzero(layer.weights))
    n_post, n_pre = layer.weights.shape
    wb = int(layer.num_weight_bits)
    sparse = nnz * (wb + _INDEX_BITS)
    dense = n_post * n_pre * wb if nnz else 0
    return {"format": "dense" if dense < sparse else "sparse", "bits": min(sparse, dense), "weight_bits": wb}


def _presynaptic_sources(network: LoihiNetwork) -> int:
    """Distinct presynaptic neurons and input channels with at least one synapse (input axons a
    core may need if its neurons receive from all of them)."""
    rec = int(np.count_nonzero(np.any(network.recurrent.weights != 0, axis=0)))
    inp = int(np.count_nonzero(np.any(network.input.weights != 0, axis=0)))
    return rec + inp
