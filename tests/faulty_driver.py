"""A test device that works for a few blocks and then fails, as hardware does (or is just slow)."""

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from labbench.reservoir import Block, Reservoir, Spec


class FaultyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_inputs: int = 1
    fail_at_block: int = 2  # -1: never
    delay_s: float = 0.0  # wall time per block, like a device running in real time


class FaultyReservoir(Reservoir):
    """Echoes its input as features, then raises at block ``fail_at_block``."""

    Params = FaultyParams
    name = "faulty"

    def __init__(self, **params: Any) -> None:
        self.params = FaultyParams(**params)
        self.spec = Spec(n_inputs=self.params.n_inputs, n_features=3)
        self.blocks = 0

    def open(self) -> None:
        pass

    def reset(self, seed=None) -> None:
        self.blocks = 0

    def run(self, u: np.ndarray) -> Block:
        u = self._check_input(u)
        if len(u) and self.blocks == self.params.fail_at_block:
            raise RuntimeError("sensor on fire")
        self.blocks += bool(len(u))
        if len(u) and self.params.delay_s:
            time.sleep(self.params.delay_s)
        return Block(np.hstack([u[:, :1], u[:, :1] ** 2, np.sin(3 * u[:, :1])]))

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"driver": "faulty", "params": self.params.model_dump()}
