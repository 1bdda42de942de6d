"""A CUBA-LIF network in Loihi's integer formats: what the emulator and Lava both run.

The fields are exactly the arguments of Lava's ``LIF`` and ``Dense`` processes (lava-nc
0.8–0.10, ``lava.proc.lif.process.LIF`` and ``lava.proc.dense.process.Dense``), so that one
description builds either back end:

- one population of ``n_neurons`` LIF neurons with scalar ``du``, ``dv`` (unsigned 12-bit),
  ``vth`` (unsigned 17-bit mantissa; a neuron spikes when ``v > vth << 6``), per-neuron
  ``bias_mant`` (signed 13-bit) and a scalar ``bias_exp`` (3-bit);
- a recurrent ``Dense`` (``n_neurons`` × ``n_neurons``, post × pre as Lava stores it);
- an input ``Dense`` (``n_neurons`` × ``n_inputs``) fed by a source of binary spikes.

Weights are the mantissas handed to Lava, *before* Lava's own clipping and truncation
(which the emulator repeats: a mixed-sign matrix loses its lowest bit). ``sign_mode`` is
Lava's ``SignMode`` value (1 mixed, 2 excitatory, 3 inhibitory); ``0`` means "let Lava
determine it from the weights" (``lava.utils.weightutils.determine_sign_mode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Lava's SignMode values
SIGN_MODES = {0: "auto", 1: "mixed", 2: "excitatory", 3: "inhibitory"}


@dataclass(frozen=True)
class DenseLayer:
    """One Lava ``Dense`` process: integer weight mantissas (post × pre) and their format.

    Parameters
    ----------
    weights : ndarray of int, shape (n_post, n_pre)
        Weight mantissas as given to Lava (8-bit range: −256…255 for mixed sign, 0…255 or
        −256…0 for one sign).
    weight_exp : int
        Shared weight exponent, −8…7: the accumulated input is shifted ``<< weight_exp``.
    num_weight_bits : int
        Bits of precision of the mantissas (1–8); Lava truncates the rest.
    sign_mode : int
        Lava's ``SignMode`` (1 mixed, 2 excitatory, 3 inhibitory), or 0 to determine it from
        the weights as Lava does.
    """

    weights: np.ndarray
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: int = 0

    def __post_init__(self) -> None:
        w = np.asarray(self.weights)
        if w.ndim != 2 or not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"Dense weights must be a 2-D integer array, got {w.dtype} of shape {w.shape}")
        if not -8 <= int(self.weight_exp) <= 7:
            raise ValueError(f"weight_exp must be in -8..7, got {self.weight_exp}")
        if not 1 <= int(self.num_weight_bits) <= 8:
            raise ValueError(f"num_weight_bits must be in 1..8, got {self.num_weight_bits}")
        if int(self.sign_mode) not in SIGN_MODES:
            raise ValueError(f"sign_mode must be one of {sorted(SIGN_MODES)}, got {self.sign_mode}")
        object.__setattr__(self, "weights", w.astype(np.int32))


@dataclass(frozen=True)
class LoihiNetwork:
    """A recurrent CUBA-LIF population with a spike input, in Lava's fixed-point formats.

    Parameters
    ----------
    du, dv : int
        Current and voltage decays, 0…4095 (``4096·dt/τ``).
    vth : int
        Threshold mantissa, 0…2¹⁷−1 (compared with ``v`` after ``<< 6``).
    bias_mant : ndarray of int, shape (n_neurons,)
        Bias mantissas, −4096…4095.
    bias_exp : int
        Bias exponent, 0…7 (``bias = bias_mant << bias_exp``).
    recurrent : DenseLayer
        Recurrent synapses, (n_neurons, n_neurons).
    input : DenseLayer
        Input synapses, (n_neurons, n_inputs).
    """

    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray
    bias_exp: int
    recurrent: DenseLayer
    input: DenseLayer
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = self.recurrent.weights.shape[0]
        if self.recurrent.weights.shape != (n, n):
            raise ValueError(f"recurrent weights must be square, got {self.recurrent.weights.shape}")
        if self.input.weights.shape[0] != n:
            raise ValueError(f"input weights have {self.input.weights.shape[0]} rows, expected {n} (one per neuron)")
        for name, value, lo, hi in (("du", self.du, 0, 4095), ("dv", self.dv, 0, 4095),
                                    ("vth", self.vth, 0, 2**17 - 1), ("bias_exp", self.bias_exp, 0, 7)):
            if not lo <= int(value) <= hi:
                raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
        b = np.broadcast_to(np.asarray(self.bias_mant), (n,))
        if not np.issubdtype(b.dtype, np.integer) or b.min(initial=0) < -4096 or b.max(initial=0) > 4095:
            raise ValueError("bias_mant must be integers in -4096..4095 (signed 13-bit)")
        object.__setattr__(self, "bias_mant", b.astype(np.int32).copy())

    @property
    def n_neurons(self) -> int:
        return int(self.recurrent.weights.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.input.weights.shape[1])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The network as plain numpy arrays (for ``np.savez``/a worker process; no pickle)."""
        out = {"du": np.int64(self.du), "dv": np.int64(self.dv), "vth": np.int64(self.vth),
               "bias_mant": self.bias_mant, "bias_exp": np.int64(self.bias_exp)}
        for key, layer in (("recurrent", self.recurrent), ("input", self.input)):
            out[f"{key}_weights"] = layer.weights
            out[f"{key}_weight_exp"] = np.int64(layer.weight_exp)
            out[f"{key}_num_weight_bits"] = np.int64(layer.num_weight_bits)
            out[f"{key}_sign_mode"] = np.int64(layer.sign_mode)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LoihiNetwork:
        """Inverse of :meth:`to_arrays`."""
        def layer(key: str) -> DenseLayer:
            return DenseLayer(np.asarray(arrays[f"{key}_weights"]), int(arrays[f"{key}_weight_exp"]),
                              int(arrays[f"{key}_num_weight_bits"]), int(arrays[f"{key}_sign_mode"]))
        return cls(du=int(arrays["du"]), dv=int(arrays["dv"]), vth=int(arrays["vth"]),
                   bias_mant=np.asarray(arrays["bias_mant"]), bias_exp=int(arrays["bias_exp"]),
                   recurrent=layer("recurrent"), input=layer("input"))
