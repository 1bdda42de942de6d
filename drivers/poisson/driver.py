"""Poisson rate coding of inputs into spike trains, as a labbench reservoir.

Each input channel is an intensity in [0, 1]; in every time step of ``dt`` ms the
channel spikes with probability ``intensity * max_rate * dt / 1000`` (a Bernoulli
approximation of a Poisson process, exact as ``dt -> 0``), the input coding of Diehl &
Cook 2015 for MNIST. It has no memory: it is the spiking front end that feeds spike
streams to STDP layers, and the control against which a spiking reservoir is compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...reservoir import Block, RawStreamSpec, Reservoir, Spec


class PoissonParams(BaseModel):
    """Parameters of :class:`PoissonEncoder`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_inputs: int = Field(1, gt=0, description="input channels (set from the task by the bench)")
    max_rate: float = Field(63.75, gt=0, description="rate in Hz of an input at intensity 1")
    dt: float = Field(1.0, gt=0, description="time step in ms")
    seed: int = Field(0, description="seed of the spike draws")


class PoissonEncoder(Reservoir):
    """Rate-codes inputs in [0, 1] as Bernoulli/Poisson spike trains, one channel per input.

    Features are the spikes (0 or 1, uint8) of each channel in each step; the raw
    stream ``spikes`` lists them as (step, channel) pairs. Intensities outside [0, 1]
    are clipped.

    Examples
    --------
    >>> import numpy as np
    >>> from labbench.drivers.poisson import PoissonEncoder
    >>> with PoissonEncoder(n_inputs=2, max_rate=500.0, seed=0) as enc:
    ...     spikes = enc.run(np.array([[1.0, 0.0]] * 1000)).features
    >>> bool(400 < spikes[:, 0].sum() < 600), spikes[:, 1].sum()
    (True, np.uint64(0))
    """

    Params = PoissonParams
    name = "poisson"
    deterministic = True

    def __init__(self, **params: Any) -> None:
        self.params = PoissonParams(**params)
        p = self.params
        if p.max_rate * p.dt / 1000.0 > 1.0:
            raise ValueError(f"poisson: max_rate * dt = {p.max_rate * p.dt / 1000:.3g} spikes per step; "
                             "it must be at most 1 (lower max_rate or dt)")
        self.spec = Spec(n_inputs=p.n_inputs, n_features=p.n_inputs, dt=p.dt / 1000.0, realtime=False,
                         raw={"spikes": RawStreamSpec({"step": "int64", "channel": "int32"},
                                                      "one row per input spike", time_column="step",
                                                      time_scale=p.dt / 1000.0, channel_column="channel")},
                         feature_name="channel")
        self._rng: np.random.Generator | None = None
        self._step = 0

    def open(self) -> None:
        if self._rng is None:
            self.reset()

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(self.params.seed if seed is None else seed)
        self._step = 0

    def run(self, u: np.ndarray) -> Block:
        if self._rng is None:
            raise RuntimeError("poisson: call open() before run()")
        u = self._check_input(u)
        p = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0) * (self.params.max_rate * self.params.dt / 1000.0)
        spikes = self._rng.random(u.shape) < p
        steps, channels = np.nonzero(spikes)
        raw = {"spikes": {"step": (steps + self._step).astype(np.int64), "channel": channels.astype(np.int32)}}
        self._step += u.shape[0]
        return Block(features=spikes.view(np.uint8), raw=raw)

    def close(self) -> None:
        self._rng = None

    def describe(self) -> dict[str, Any]:
        return {"driver": self.name, "params": self.params.model_dump()}
