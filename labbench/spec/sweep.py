"""Parameter sweeps: the ``[sweep]`` table of a protocol and the trials it describes.

A sweep varies any protocol key (dotted, as with ``--set``) over a grid or by random
sampling, with a trial budget and a seed::

    [sweep]
    method = "random"          # or "grid" (default)
    budget = 32                # trials; grid: a seeded subset when the grid is larger
    seed = 0
    metric = "ridge.nrmse"     # readout.metric to rank by (default: first readout, task metric)
    "device.params.spectral_radius" = [0.7, 0.9, 1.1]          # values (grid, or random choice)
    "device.params.input_scaling" = { low = 0.01, high = 1.0, log = true }   # random only

This module only *describes* a sweep (Bluesky's plan/executor split): :func:`trials` turns
the table into a list of override dicts, which can be dry-run, printed and validated
before anything starts; :mod:`labbench.engine.sweeper` executes them on Ray.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Range", "SweepSpec", "flatten_sweep_table", "trials"]

#: metrics where larger is better (everything else is minimised)
MAXIMISED = {"accuracy", "memory_capacity", "valid_prediction_time", "valid_steps", "r2"}
_SETTINGS = {"method", "budget", "seed", "metric", "mode", "concurrency", "params"}


class Range(BaseModel):
    """A continuous (or integer) interval sampled by ``method = "random"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    log: bool = Field(False, description="sample uniformly in log space (low > 0)")
    integer: bool = Field(False, description="round to an integer")

    @model_validator(mode="after")
    def _check(self) -> Range:
        if not self.high > self.low:
            raise ValueError(f"high ({self.high}) must exceed low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError(f"log = true needs low > 0 (got {self.low})")
        return self

    def sample(self, rng: np.random.Generator) -> float | int:
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return int(round(x)) if self.integer else float(x)


class SweepSpec(BaseModel):
    """A validated ``[sweep]`` table; ``params`` maps dotted protocol keys to values or ranges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["grid", "random"] = "grid"
    budget: int | None = Field(None, gt=0, description="number of trials (required for random sampling)")
    seed: int = Field(0, ge=0, description="seed of random sampling and of grid subsets")
    metric: str | None = Field(None, description="'readout.metric' to rank trials by")
    mode: Literal["min", "max"] | None = Field(None, description="minimise or maximise the metric")
    concurrency: int | None = Field(None, gt=0, description="trials at once (default: the cluster's CPUs)")
    params: dict[str, list[Any] | Range] = Field(..., description="dotted protocol key -> values or range")

    @field_validator("params")
    @classmethod
    def _non_empty(cls, params: dict[str, Any]) -> dict[str, Any]:
        if not params:
            raise ValueError("no parameter to sweep: add e.g. \"device.params.spectral_radius\" = [0.8, 0.9]")
        for key, values in params.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"{key!r}: empty list of values")
        return params

    @model_validator(mode="after")
    def _check_method(self) -> SweepSpec:
        ranges = [k for k, v in self.params.items() if isinstance(v, Range)]
        if self.method == "grid" and ranges:
            raise ValueError(f"{ranges[0]!r}: a range needs method = \"random\" (a grid takes a list of values)")
        if self.method == "random" and self.budget is None:
            raise ValueError("budget: random sampling needs a number of trials")
        return self

    def size(self) -> int:
        """Number of trials the sweep will run."""
        if self.method == "random":
            return int(self.budget or 0)
        full = math.prod(len(v) for v in self.params.values())  # type: ignore[arg-type]
        return min(full, self.budget) if self.budget else full

    def ranking(self, default_readout: str, default_metric: str) -> tuple[str, str, bool]:
        """(readout, metric, maximise) the trials are ranked by."""
        readout, metric = default_readout, default_metric
        if self.metric:
            readout, _, metric = self.metric.rpartition(".")
            readout = readout or default_readout
        maximise = self.mode == "max" if self.mode else metric in MAXIMISED
        return readout, metric, maximise


def flatten_sweep_table(table: dict[str, Any]) -> dict[str, Any]:
    """Gather the parameter keys of a raw ``[sweep]`` table under ``params``.

    Parameter keys may be quoted dotted keys (``"device.params.leak" = [...]``), nested
    tables (TOML's unquoted ``device.params.leak = [...]``) or an explicit
    ``[sweep.params]`` table; a leaf is a list of values or a ``{low, high}`` range.
    """
    out = {k: v for k, v in table.items() if k in _SETTINGS and k != "params"}
    params: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and not ({"low", "high"} & set(node)):
            if not node and prefix:
                params[prefix] = []
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            params[prefix] = node

    if isinstance(table.get("params"), dict):
        walk("", table["params"])
    for key, value in table.items():
        if key not in _SETTINGS:
            walk(key, value)
    out["params"] = params
    return out


def trials(spec: SweepSpec) -> list[dict[str, Any]]:
    """The override dict of every trial, in the order they are run.

    Grid: the Cartesian product in key order (a seeded subset of ``budget`` points, kept in
    grid order, when the grid is larger). Random: ``budget`` independent draws, each key
    from its list (uniform choice) or range.
    """
    keys = list(spec.params)
    rng = np.random.default_rng(spec.seed)
    if spec.method == "grid":
        grid = [dict(zip(keys, combo)) for combo in itertools.product(*(spec.params[k] for k in keys))]
        if spec.budget and spec.budget < len(grid):
            keep = np.sort(rng.choice(len(grid), size=spec.budget, replace=False))
            grid = [grid[i] for i in keep]
        return grid
    out = []
    for _ in range(spec.size()):
        trial = {}
        for k in keys:
            v = spec.params[k]
            trial[k] = v.sample(rng) if isinstance(v, Range) else _plain(v[int(rng.integers(len(v)))])
        out.append(trial)
    return out


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones (trial parameters are stored as JSON)."""
    return value.item() if isinstance(value, np.generic) else value
