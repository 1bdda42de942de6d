"""Rate clamp: hold a device's activity at a set point by closed-loop stimulation.

A proportional-integral (PI) controller sets the stimulation of the next block from the
activity measured on the last one, as in the closed-loop control of firing rates in
cortical cultures on multi-electrode arrays by Newman et al. 2015 (eLife 4:e07192,
"Optogenetic feedback control of neural activity"; there with light, here with electrical
pulses through the MEA driver's rate encoder, whose safety guard still checks every pulse).

The measured activity of a block is the mean of its features over rows and units: spikes
per row and electrode for ``features = "counts"``, Hz for ``features = "rates"``. With
``e_k = target - activity_k`` the command for block ``k + 1`` is::

    I_k     = clip(I_{k-1} + ki * e_k, 0, u_max)          (integral, clamped: no wind-up)
    u_{k+1} = clip(kp * e_k + I_k, 0, u_max)

held for every row of the block (the MEA's encoder turns it into pulses per row). The
first ``baseline_blocks`` blocks are unstimulated and measure the spontaneous activity.

Loop columns (one row per block): ``command`` (this block's input), ``measured`` (the
activity the policy measured on the previous block; ``nan`` for the first) and ``error``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from labbench.spec.policy import LoopBlock, NextBlock
from labbench.tasks.base import ClosedLoopTask

__all__ = ["RateClamp", "RateClampPolicy"]


class RateClampPolicy:
    """The PI controller of :class:`RateClamp` (a plain callable; see the module doc)."""

    def __init__(self, target: float, kp: float, ki: float, u_max: float, baseline_blocks: int) -> None:
        self.target = target
        self.kp = kp
        self.ki = ki
        self.u_max = u_max
        self.baseline_blocks = baseline_blocks
        self.integral_ = 0.0

    def __call__(self, previous: LoopBlock | None, rows: int) -> NextBlock:
        index = 0 if previous is None else previous.index + 1
        measured = float("nan") if previous is None else float(np.mean(previous.features))
        error = self.target - measured
        if index < self.baseline_blocks:
            command = 0.0
        else:
            self.integral_ = float(np.clip(self.integral_ + self.ki * error, 0.0, self.u_max))
            command = float(np.clip(self.kp * error + self.integral_, 0.0, self.u_max))
        return NextBlock(inputs=np.full((rows, 1), command), targets=np.full((rows, 1), self.target),
                         record={"command": command, "measured": measured, "error": error})


class RateClamp(ClosedLoopTask):
    """Drive the mean activity to ``target`` with a PI controller (see the module doc)."""

    name: Literal["rate_clamp"] = "rate_clamp"
    target: float = Field(..., gt=0, description="set point, in feature units (Hz with features = 'rates')")
    kp: float = Field(0.05, ge=0, description="proportional gain (command per unit of error)")
    ki: float = Field(0.02, ge=0, description="integral gain (command per unit of error and block)")
    u_max: float = Field(1.0, gt=0, description="largest command (the encoder's input_high gives its most pulses)")
    baseline_blocks: int = Field(2, ge=1, description="unstimulated blocks at the start (spontaneous activity)")

    primary_metric: ClassVar[str] = "error_rel"

    @property
    def n_inputs(self) -> int:
        return 1

    @property
    def n_outputs(self) -> int:
        return 1

    def policy(self, seed: int) -> RateClampPolicy:
        return RateClampPolicy(self.target, self.kp, self.ki, self.u_max, self.baseline_blocks)

    def score_loop(self, loop: dict[str, np.ndarray]) -> dict[str, Any]:
        """How well the clamp held the set point over its second half.

        ``achieved`` is the mean activity over the second half of the clamped blocks and
        ``error_rel = |achieved - target| / target`` (the primary metric: a bursting
        culture cannot sit at a rate between its quiet and its bursting level block by
        block, but the clamp can hold the *mean* there by setting how often it bursts).
        ``block_error_rel`` is the mean relative error of single blocks over the same half,
        the size of the fluctuations around it. ``spontaneous`` is the mean activity of the
        unstimulated baseline blocks. ``measured[k]`` is block ``k - 1``'s activity, so
        block ``j``'s is ``measured[j + 1]``.
        """
        measured = np.asarray(loop["measured"], dtype=np.float64)[1:]
        base = measured[:self.baseline_blocks]
        clamp = measured[self.baseline_blocks:]
        late = clamp[clamp.size // 2:]
        out: dict[str, Any] = {"spontaneous": float(np.mean(base)) if base.size else float("nan"),
                               "target": self.target, "blocks": int(measured.size)}
        if late.size == 0:
            return out | {"error_rel": float("nan")}
        achieved = float(np.mean(late))
        out["achieved"] = achieved
        out["error_rel"] = abs(achieved - self.target) / self.target
        out["block_error_rel"] = float(np.mean(np.abs(late - self.target)) / self.target)
        out["command_mean"] = float(np.mean(np.asarray(loop["command"])[self.baseline_blocks:]))
        return out
