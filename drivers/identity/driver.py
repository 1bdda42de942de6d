"""The no-reservoir baseline, as a labbench reservoir.

Features are the inputs, unchanged: a readout trained on them shows what the task
needs from a reservoir at all (a readout that does as well without one was not helped
by it), and unsupervised modules (SOM, STDP) can learn from raw data through the same
protocol machinery as from reservoir states.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ...reservoir import Block, Reservoir, Spec


class IdentityParams(BaseModel):
    """Parameters of :class:`Identity`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_inputs: int = Field(1, gt=0, description="input channels (set from the task by the bench)")
    dtype: Literal["float32", "float64"] = Field("float32", description="dtype of the features")


class Identity(Reservoir):
    """Features = inputs (a baseline with no memory and no nonlinearity).

    Examples
    --------
    >>> import numpy as np
    >>> from labbench.drivers.identity import Identity
    >>> with Identity(n_inputs=3) as dev:
    ...     dev.run(np.ones((2, 3))).features.shape
    (2, 3)
    """

    Params = IdentityParams
    name = "identity"
    supports_batch = True
    deterministic = True

    def __init__(self, **params: Any) -> None:
        self.params = IdentityParams(**params)
        self.spec = Spec(n_inputs=self.params.n_inputs, n_features=self.params.n_inputs, dt=1.0,
                         feature_name="input_channel")

    def open(self) -> None:
        pass

    def reset(self, seed: int | None = None) -> None:
        pass

    def run(self, u: np.ndarray) -> Block:
        return Block(features=np.array(self._check_input(u), dtype=self.params.dtype))

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"driver": self.name, "params": self.params.model_dump()}
