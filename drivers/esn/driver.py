"""Leaky-integrator echo-state network as a labbench reservoir."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ...reservoir import Block, Reservoir, Spec
from . import kernel, weights


class ESNParams(BaseModel):
    """Hyperparameters of :class:`EchoStateNetwork`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    units: int = Field(100, gt=0, description="number of reservoir units N")
    n_inputs: int = Field(1, gt=0, description="input dimension (set from the task by the bench)")
    spectral_radius: float | None = Field(
        None, ge=0, description="rescale W to this spectral radius (default 0.9 when gain is not set)")
    gain: float | None = Field(
        None, ge=0, description="draw W ~ N(0, g^2/(pN)) instead of rescaling: g<1 fading, ~1.5 edge of chaos")
    connectivity: float = Field(0.1, gt=0, le=1, description="fraction p of non-zero recurrent weights")
    input_scaling: float | list[float] = Field(1.0, description="scale of W_in (one value or one per input)")
    input_connectivity: float = Field(1.0, gt=0, le=1, description="fraction of non-zero input weights")
    input_distribution: Literal["bernoulli", "uniform"] = Field(
        "bernoulli", description="W_in entries: ±1 (ReservoirPy) or U[-1, 1] (Jaeger 2001)")
    bias: float = Field(0.0, ge=0, description="bias drawn U[-bias, bias] per unit")
    leak: float = Field(1.0, gt=0, le=1, description="leak rate a of the leaky integrator")
    dtype: Literal["float32", "float64"] = Field("float32", description="precision of states and weights")
    seed: int = Field(0, description="seed of the random weights")
    threads: int = Field(1, ge=1, le=256, description="threads used per step")

    @model_validator(mode="after")
    def _one_scaling(self) -> ESNParams:
        if self.spectral_radius is not None and self.gain is not None:
            raise ValueError("set either spectral_radius or gain, not both")
        if isinstance(self.input_scaling, list) and len(self.input_scaling) != self.n_inputs:
            raise ValueError(f"input_scaling has {len(self.input_scaling)} values but n_inputs={self.n_inputs}")
        return self


class EchoStateNetwork(Reservoir):
    """Leaky-integrator echo-state network (Jaeger 2001; Lukoševičius 2012).

    ``x[t] = (1 - a) x[t-1] + a tanh(W x[t-1] + W_in u[t] + b)``; features are the
    states x[t]. Weights come from a ``numpy.random.Generator`` seeded with ``seed``,
    so a network is rebuilt bit for bit from its parameters, and the same inputs
    always give the same bits. ``run`` accepts one sequence (T, n_inputs) or a batch
    of independent sequences (B, T, n_inputs) that share the network.

    Parameters
    ----------
    **params
        See :class:`ESNParams`.

    Examples
    --------
    >>> import numpy as np
    >>> from labbench.drivers.esn import EchoStateNetwork
    >>> with EchoStateNetwork(units=200, spectral_radius=0.9, leak=0.3, seed=1) as esn:
    ...     states = esn.run(np.sin(np.arange(500) / 10)[:, None]).features
    >>> states.shape
    (500, 200)
    """

    Params = ESNParams
    name = "esn"
    supports_batch = True
    deterministic = True

    @classmethod
    def footprint(cls, params: dict[str, Any]) -> tuple[int | None, int | None]:
        """``units`` features; the sparse recurrent weights (about two copies of ``units**2 *
        connectivity`` values and indices) and the input weights dominate the memory."""
        units = int(params.get("units", ESNParams.model_fields["units"].default))
        n_in = int(params.get("n_inputs", 1))
        density = float(params.get("connectivity", ESNParams.model_fields["connectivity"].default))
        item = 8 if params.get("dtype") == "float64" else 4
        return units, int(2 * units * units * density * (item + 4) + units * (n_in + 4) * item)

    def __init__(self, **params: Any) -> None:
        self.params = ESNParams(**params)
        p = self.params
        self.spec = Spec(n_inputs=p.n_inputs, n_features=p.units, dt=1.0, realtime=False)
        self._dtype = np.dtype(p.dtype)
        self._opened = False

    # -- life cycle -------------------------------------------------------------------
    def open(self) -> None:
        if self._opened:
            return
        p = self.params
        rng = np.random.default_rng(p.seed)
        radius = p.spectral_radius if (p.spectral_radius is not None or p.gain is not None) else 0.9
        self.W_ = weights.recurrent_weights(rng, p.units, p.connectivity, radius if p.gain is None else None, p.gain)
        self.W_in_ = weights.input_weights(rng, p.units, p.n_inputs, p.input_connectivity, p.input_scaling,
                                           p.input_distribution)
        self.bias_ = weights.bias_vector(rng, p.units, p.bias)
        self._sell = kernel.SellMatrix.from_csr(self.W_, self._dtype)
        n_pad = self._sell.n_padded
        perm = self._sell.perm
        w_in_t = np.zeros((p.n_inputs, n_pad), dtype=self._dtype)
        w_in_t[:, : p.units] = self.W_in_[perm].T
        self._w_in_t = w_in_t
        bias = np.zeros(n_pad, dtype=self._dtype)
        bias[: p.units] = self.bias_[perm]
        self._bias = bias
        # position[i] = where original unit i sits in the permuted state
        self._position = np.empty(p.units, dtype=np.int64)
        self._position[perm] = np.arange(p.units)
        self._leak = self._dtype.type(p.leak)
        self._opened = True
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Zero the state. The network is deterministic, so ``seed`` is ignored."""
        self._require_open()
        self._x = np.zeros(self._sell.n_padded, dtype=self._dtype)
        self._xb: np.ndarray | None = None

    def close(self) -> None:
        self._opened = False

    def describe(self) -> dict[str, Any]:
        out = {"driver": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
               "version": _version(), "params": self.params.model_dump()}
        if self._opened:
            out["nnz"] = int(self.W_.nnz)
            out["spectral_radius_measured"] = (
                weights.spectral_radius(self.W_) if self.params.units <= 2000 else None)
        return out

    # -- state --------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """Current state in original unit order: (N,), or (B, N) after a batched run."""
        self._require_open()
        if self._xb is not None:
            xb = self._xb[0]  # (n_panels, N, W), original unit order
            return xb.transpose(0, 2, 1).reshape(-1, xb.shape[1])[: self._xb_n].copy()
        return self._x[self._position].copy()

    def set_state(self, x: np.ndarray) -> None:
        """Set the state from (N,) for single sequences or (B, N) for a batch."""
        self._require_open()
        x = np.asarray(x, dtype=self._dtype)
        n = self.params.units
        if x.shape[-1] != n or x.ndim not in (1, 2):
            raise ValueError(f"state has shape {x.shape}, expected ({n},) or (B, {n})")
        if x.ndim == 1:
            self._x[:] = 0
            self._x[self._position] = x
            self._xb = None
        else:
            self._xb = self._new_batch_state(x.shape[0])
            n_panels, _, width = self._xb.shape[1:]
            lanes = np.zeros((n_panels * width, n), dtype=self._dtype)
            lanes[: x.shape[0]] = x
            self._xb[0] = lanes.reshape(n_panels, width, n).transpose(0, 2, 1)

    # -- running ------------------------------------------------------------------------
    def run(self, u: np.ndarray) -> Block:
        self._require_open()
        u = np.ascontiguousarray(self._check_input(u), dtype=self._dtype)
        s = self._sell
        if u.ndim == 3:
            n_batch, n_steps, n_in = u.shape
            if self._xb is None or self._xb_n != n_batch:
                self._xb = self._new_batch_state(n_batch)
            n_panels, _, width = self._xb.shape[1:]
            mat, w_in_t, bias = self._batch_operands(width)
            # sequence b -> lane b % width of panel b // width: (n_panels, T, n_in, width)
            lanes = np.zeros((n_panels * width, n_steps, n_in), dtype=self._dtype)
            lanes[:n_batch] = u
            u_panels = np.ascontiguousarray(lanes.reshape(n_panels, width, n_steps, n_in).transpose(0, 2, 3, 1))
            out = np.empty((n_batch, n_steps, self.params.units), dtype=self._dtype)
            kernel.run_batch(mat, w_in_t, bias, u_panels, self._xb, self._leak, out, self.params.threads)
            return Block(out)
        out = np.empty((u.shape[0], self.params.units), dtype=self._dtype)
        self._xb = None
        if self.params.threads == 1:
            kernel.run_sequence(s.slice_ptr, s.idx, s.val, self._w_in_t, self._bias, u, self._x, self._leak,
                                self._position, out)
        else:
            kernel.run_sequence_parallel(s.slice_ptr, s.idx, s.val, self._w_in_t, self._bias, u, self._x,
                                         self._leak, self._position, out, self.params.threads)
        return Block(out)

    def _new_batch_state(self, n_batch: int) -> np.ndarray:
        """Zero batch state (2, n_panels, N, W): panels of W sequences, original unit order."""
        width = kernel.batch_width(n_batch, self._dtype, self.params.threads)
        self._xb_n = n_batch
        return kernel.aligned_zeros((2, -(-n_batch // width), self.params.units, width), self._dtype)

    def _batch_operands(self, width: int) -> tuple[kernel.BatchMatrix, np.ndarray, np.ndarray]:
        """W (column-blocked for ``width``), W_in^T and b in original order, built once per width."""
        cache = self.__dict__.setdefault("_batch_cache", {})
        entry = cache.get(width)
        if entry is None or entry[0] is not self._sell:
            mat = kernel.BatchMatrix.from_csr(self.W_, self._dtype, width)
            w_in_t = np.ascontiguousarray(self.W_in_.T, dtype=self._dtype)
            entry = cache[width] = (self._sell, mat, w_in_t, np.ascontiguousarray(self.bias_, dtype=self._dtype))
        return entry[1:]

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError("the ESN is not open: call open() or use it as a context manager")


def _version() -> str:
    from ... import __version__

    return __version__
