"""A fixed-point CUBA-LIF emulator, bit-exact with Lava 0.10's ``fixed_pt`` LIF and Dense models.

It runs a :class:`~labbench.drivers.loihi.network.LoihiNetwork` (one LIF population, a
recurrent Dense and an input Dense fed by a binary spike source) exactly as lava-nc 0.10.0
runs it with ``Loihi2SimCfg(select_tag="fixed_pt")``: ``PyLifModelBitAcc``
(``lava/proc/lif/models.py``) and ``PyDenseModelBitAcc`` (``lava/proc/dense/models.py``). It is
named for what it is: Lava documents that model against Loihi 1, and its parity with silicon
is open upstream (lava#322, #579, #829).

Weights are prepared as Lava's Dense does on its first step (``AbstractPyDenseModelBitAcc``
with ``lava/utils/weightutils.py``):

1. ``sign_mode = proc_params["sign_mode"] or determine_sign_mode(weights)``: excitatory if
   ``min >= 0``, inhibitory if ``max <= 0``, else mixed;
2. ``clip_weights(weights, sign_mode, num_bits=8)``: mixed ``[-256, 255]``, excitatory
   ``[0, 255]``, inhibitory ``[-255, 0]`` (negated, clipped to ``[0, 255]``, negated back);
3. ``truncate_weights``: drop ``8 - num_weight_bits + mixed`` low bits with ``(w >> k) << k``
   (floor for mixed and excitatory; on the magnitude for inhibitory), so a mixed-sign matrix
   loses its lowest bit even at ``num_weight_bits = 8``.

The time loop is :func:`.emulator_kernel.run_steps` (numba), event-driven over a CSR of the
effective weights by presynaptic neuron: a step costs N neuron updates plus the fan-out of the
spikes (recurrent and input).

Step alignment: emulator row ``t`` (0-based) equals what Lava reports at its time step
``t + 1`` when column ``t`` of a ``RingBuffer``'s data holds input row ``t``. Input row ``t``
reaches ``u`` at row ``t + 1``; a spike at row ``t`` reaches its targets' ``u`` at row ``t + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .emulator_kernel import run_steps
from .network import DenseLayer, LoihiNetwork

_MIXED, _EXCITATORY, _INHIBITORY = 1, 2, 3
_COUNT_KEYS = ("synaptic_ops", "neuron_updates", "spikes")
_STATE_KEYS = ("u", "v", "rec_buf", "in_buf", "counts", "step")


@dataclass
class EmulatorSteps:
    """What :meth:`Emulator.run` returns for ``T`` steps.

    Attributes
    ----------
    spikes : ndarray of bool, shape (T, N)
        ``s_out`` of the LIF population at each step.
    u, v : ndarray of int32, shape (T, N), or None
        Current and voltage after each step (after the reset of spiking neurons), as Lava's
        ``Monitor`` probes them; ``None`` when run with ``record=False``.
    """

    spikes: np.ndarray
    u: np.ndarray | None = None
    v: np.ndarray | None = None


def _sign_mode(layer: DenseLayer) -> int:
    """Lava's sign mode: the layer's own, or ``determine_sign_mode`` (weightutils.py) when 0."""
    if layer.sign_mode:
        return int(layer.sign_mode)
    w = layer.weights
    if w.size == 0 or w.min() >= 0:
        return _EXCITATORY
    if w.max() <= 0:
        return _INHIBITORY
    return _MIXED


def effective_weights(layer: DenseLayer) -> np.ndarray:
    """The weights Lava's ``PyDenseModelBitAcc`` multiplies with: clipped, then truncated.

    Parameters
    ----------
    layer : DenseLayer
        Weight mantissas as handed to Lava's ``Dense``, with their format.

    Returns
    -------
    ndarray of int32, shape (n_post, n_pre)
        ``truncate_weights(clip_weights(w, sign_mode, 8), sign_mode, num_weight_bits)`` of
        ``lava/utils/weightutils.py`` (lava-nc 0.10.0); see the module docstring.
    """
    mode = _sign_mode(layer)
    w = layer.weights.astype(np.int32)
    mixed = int(mode == _MIXED)
    if mode == _INHIBITORY:
        w = -w
    w = np.clip(w, -256 * mixed, 255)
    k = 8 - int(layer.num_weight_bits) + mixed
    w = (w >> k) << k
    if mode == _INHIBITORY:
        w = -w
    return w.astype(np.int32)


def _csr_by_pre(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of a (post, pre) matrix by presynaptic column: indptr, post indices (int32), weights (int16).

    Effective weights are within -256..255, so int16 holds them; the narrow types halve the
    memory the event loop walks through.
    """
    pre, post = np.nonzero(w.T)
    indptr = np.zeros(w.shape[1] + 1, np.int64)
    np.cumsum(np.bincount(pre, minlength=w.shape[1]), out=indptr[1:])
    return indptr, post.astype(np.int32), w[post, pre].astype(np.int16)


class Emulator:
    """Lava 0.10 ``fixed_pt`` LIF + Dense, bit for bit, T steps per call (numba).

    Parameters
    ----------
    network : LoihiNetwork
        The network in Lava's integer formats.

    Attributes
    ----------
    counts : dict of str to int
        Since the last :meth:`reset`: ``synaptic_ops`` (spikes x fan-out of the effective
        non-zero weights, input spikes included), ``neuron_updates`` (N per step), ``spikes``
        and ``steps``.
    """

    def __init__(self, network: LoihiNetwork) -> None:
        if not isinstance(network, LoihiNetwork):
            raise TypeError(f"network must be a LoihiNetwork, got {type(network).__name__}")
        self.network = network
        n = network.n_neurons
        self._rec = _csr_by_pre(effective_weights(network.recurrent))
        self._in = _csr_by_pre(effective_weights(network.input))
        self._rec_exp = int(network.recurrent.weight_exp)
        self._in_exp = int(network.input.weight_exp)
        self._factor_u = 4096 - (int(network.du) + 1)   # ds_offset = 1
        self._factor_v = 4096 - int(network.dv)          # dm_offset = 0
        self._bias = network.bias_mant.astype(np.int64) << int(network.bias_exp)
        self._vth = int(network.vth) << 6
        self._u = np.zeros(n, np.int32)
        self._v = np.zeros(n, np.int32)
        self._rec_buf = np.zeros(n, np.int32)
        self._in_buf = np.zeros(n, np.int32)
        self._counts = np.zeros(3, np.int64)
        self._step = 0

    @property
    def n_neurons(self) -> int:
        """Number of LIF neurons."""
        return self.network.n_neurons

    @property
    def n_inputs(self) -> int:
        """Number of input channels."""
        return self.network.n_inputs

    @property
    def counts(self) -> dict[str, int]:
        """Operation counts since the last :meth:`reset` (see the class docstring)."""
        out = {key: int(c) for key, c in zip(_COUNT_KEYS, self._counts)}
        out["steps"] = int(self._step)
        return out

    def reset(self) -> None:
        """Zero ``u``, ``v``, the in-flight Dense outputs, the counts and the step counter."""
        for a in (self._u, self._v, self._rec_buf, self._in_buf, self._counts):
            a[:] = 0
        self._step = 0

    def run(self, spikes_in: np.ndarray, record: bool = False) -> EmulatorSteps:
        """Advance ``T`` steps.

        Parameters
        ----------
        spikes_in : ndarray, shape (T, n_inputs)
            0/1 (bool, integer or float): row ``t`` is what the source emits at step ``t``;
            it reaches ``u`` one step later (Dense delivers one step late).
        record : bool
            Also return ``u`` and ``v`` per step.

        Returns
        -------
        EmulatorSteps
        """
        x = np.asarray(spikes_in)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"spikes_in must have shape (T, {self.n_inputs}), got {x.shape}")
        if x.dtype == np.bool_:
            x8 = x.view(np.uint8)
        else:
            if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
                raise ValueError(f"spikes_in must be bool, integer or float 0/1, got dtype {x.dtype}")
            if x.size and not np.isin(x, (0, 1)).all():
                raise ValueError("spikes_in must hold only 0 and 1 (binary spikes; graded spikes are not modelled)")
            x8 = x.astype(np.uint8)
        x8 = np.ascontiguousarray(x8)
        T, n = x8.shape[0], self.n_neurons
        spikes = np.zeros((T, n), np.bool_)
        rows = T if record else 0
        out_u = np.zeros((rows, n), np.int32)
        out_v = np.zeros((rows, n), np.int32)
        run_steps(x8, self._u, self._v, self._rec_buf, self._in_buf,
                  *self._rec, self._rec_exp, *self._in, self._in_exp,
                  self._factor_u, self._factor_v, self._bias, self._vth,
                  bool(record), spikes, out_u, out_v, self._counts)
        self._step += T
        return EmulatorSteps(spikes, out_u if record else None, out_v if record else None)

    def checkpoint(self) -> dict[str, np.ndarray]:
        """The whole dynamic state as plain arrays (copies).

        Returns
        -------
        dict of str to ndarray
            ``u``, ``v``, ``rec_buf``, ``in_buf`` (int32, the Dense outputs due next step),
            ``counts`` (int64: synaptic_ops, neuron_updates, spikes) and ``step`` (int64).
        """
        return {"u": self._u.copy(), "v": self._v.copy(), "rec_buf": self._rec_buf.copy(),
                "in_buf": self._in_buf.copy(), "counts": self._counts.copy(),
                "step": np.asarray(self._step, np.int64)}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a :meth:`checkpoint` of an emulator of the same network.

        Parameters
        ----------
        state : dict of str to ndarray
            As returned by :meth:`checkpoint`.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"checkpoint state lacks {missing}; expected keys {list(_STATE_KEYS)}")
        n = self.n_neurons
        for key in ("u", "v", "rec_buf", "in_buf"):
            if np.shape(state[key]) != (n,):
                raise ValueError(f"checkpoint state[{key!r}] has shape {np.shape(state[key])}, expected ({n},)")
        if np.shape(state["counts"]) != (3,):
            raise ValueError(f"checkpoint state['counts'] has shape {np.shape(state['counts'])}, expected (3,)")
        self._u[:] = np.asarray(state["u"], np.int32)
        self._v[:] = np.asarray(state["v"], np.int32)
        self._rec_buf[:] = np.asarray(state["rec_buf"], np.int32)
        self._in_buf[:] = np.asarray(state["in_buf"], np.int32)
        self._counts[:] = np.asarray(state["counts"], np.int64)
        self._step = int(state["step"])
