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
    nan_at_block: int = -1  # block whose features are all NaN (a broken amplifier); -1: never


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
        features = np.hstack([u[:, :1], u[:, :1] ** 2, np.sin(3 * u[:, :1])])
        if len(u) and self.blocks - 1 == self.params.nan_at_block:
            features[:] = np.nan
        return Block(features)

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"driver": "faulty", "params": self.params.model_dump()}


# -- an echo-state network whose process dies, or whose driver raises, once ---------------
from labbench.drivers.esn import EchoStateNetwork  # noqa: E402
from labbench.drivers.esn.driver import ESNParams  # noqa: E402


class CrashingESNParams(ESNParams):
    crash_at_block: int = -1      # block (0-based, counted since open) at which to crash; -1: never
    how: str = "sigkill"          # "sigkill": the worker process kills itself; "raise": the driver raises
    once_marker: str = ""         # crash only if this file does not exist yet (then create it); "": every time
    # crash only once the store holds every row before this block (a glob of the device group's
    # zarr.json): the previous block's reply has then surely reached the writer, so what the store
    # holds at each death does not depend on how fast that reply travelled (a busy machine)
    wait_committed: str = ""
    wait_rows: int = -1           # with wait_committed: the rows to wait for (-1: every row before this block)


class CrashingESN(EchoStateNetwork):
    """A real ESN (deterministic, so the bench can replay it) whose worker dies mid-run.

    ``how = "sigkill"`` sends SIGKILL to its own process, as the OOM killer or an unplugged
    machine would; the parameters are excluded from the features, which equal a plain ESN's.
    """

    Params = CrashingESNParams

    def __init__(self, **params: Any) -> None:
        crash = {k: params.pop(k) for k in ("crash_at_block", "how", "once_marker", "wait_committed", "wait_rows")
                 if k in params}
        super().__init__(**params)
        self.crash = CrashingESNParams(**params, **crash)
        self.blocks = 0

    def run(self, u: np.ndarray):
        import os
        import signal
        from pathlib import Path

        c = self.crash
        if len(u) and self.blocks == c.crash_at_block:
            marker = Path(c.once_marker) if c.once_marker else None
            if marker is None or not marker.exists():
                if marker is not None:
                    marker.write_text("crashed once")
                if c.wait_committed:
                    _wait_committed(c.wait_committed, self.blocks * len(u) if c.wait_rows < 0 else c.wait_rows)
                if c.how == "sigkill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError(f"amplifier saturated at block {self.blocks}")
        self.blocks += bool(len(u))
        return super().run(u)


def _wait_committed(pattern: str, rows: int, timeout_s: float = 60.0) -> None:
    """Wait until the store group matched by ``pattern`` (a glob of its zarr.json) has ``committed >= rows``."""
    import glob
    import json

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for path in glob.glob(pattern):
            try:
                attrs = json.loads(open(path).read()).get("attributes", {})
            except (OSError, ValueError):
                continue
            if int(attrs.get("committed", 0)) >= rows:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{pattern}: committed never reached {rows} rows")
