"""Stimulus → response → feedback: a two-class training loop in the spirit of DishBrain.

Kagan et al. 2022 (Neuron 110:3952, "In vitro neurons learn and exhibit sentience when
embodied in a simulated game-world") closed a loop around a cortical culture on an MEA:
sensory stimulation encoded the game, activity in two motor regions moved the paddle, and
the outcome was fed back: *predictable* stimulation after a hit (the same pattern on
every sensory electrode at once) and *unpredictable* stimulation after a miss (random in
place and time). This task keeps that structure with two classes.

Each block is one trial of ``feedback_rows + stim_rows + response_rows`` rows:

1. **feedback** on the previous trial: input 2 at 1.0 on every row after a hit
   (predictable), or input 3 on a random half of the rows after a miss (unpredictable);
   nothing before the first trial;
2. **stimulus**: input 0 (class 0) or input 1 (class 1) at 1.0, the class drawn at random;
3. **response** window: no input. The action is read from the response rows: the mean
   activity of the first half of the feature units (motor region 0) against the second
   half (motor region 1); the larger one wins. A hit is action == class.

Targets are the class (1.0 for class 1, 0.0 for class 0) on stimulus and response rows,
and 0.5 on feedback rows, so a readout can also be trained to decode the class.

Loop columns (one row per block): ``trial_class`` (this block's class), and for the
previous trial ``action``, ``hit`` and ``margin`` (region 1 minus region 0 activity),
``nan`` before the first. Metrics: the hit rate over all trials and over the first and
last quarter, to see whether the device learns.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from labbench.spec.policy import LoopBlock, NextBlock
from labbench.tasks.base import ClosedLoopTask

__all__ = ["FeedbackPolicy", "FeedbackTraining"]


class FeedbackPolicy:
    """The trial loop of :class:`FeedbackTraining` (a plain callable; see the module doc)."""

    def __init__(self, feedback_rows: int, stim_rows: int, response_rows: int, seed: int) -> None:
        self.feedback_rows = feedback_rows
        self.stim_rows = stim_rows
        self.response_rows = response_rows
        self.rng_ = np.random.default_rng(seed)
        self.last_class_: int | None = None

    def __call__(self, previous: LoopBlock | None, rows: int) -> NextBlock:
        f, s = self.feedback_rows, self.stim_rows
        record = {"action": float("nan"), "hit": float("nan"), "margin": float("nan")}
        u = np.zeros((f + s + self.response_rows, 4))
        y = np.full((len(u), 1), 0.5)
        if previous is not None and self.last_class_ is not None:
            response = np.asarray(previous.features[-self.response_rows:], dtype=np.float64)
            half = response.shape[1] // 2
            margin = float(response[:, half:].mean() - response[:, :half].mean())
            action = int(margin > 0)
            hit = action == self.last_class_
            record = {"action": float(action), "hit": float(hit), "margin": margin}
            if hit:
                u[:f, 2] = 1.0                                    # predictable: every row, same pattern
            else:
                u[:f, 3] = self.rng_.integers(0, 2, f)            # unpredictable: random rows
        c = int(self.rng_.integers(0, 2))
        u[f:f + s, c] = 1.0
        y[f:, 0] = float(c)
        self.last_class_ = c
        return NextBlock(inputs=u[:rows], targets=y[:rows], record={"trial_class": float(c), **record})


class FeedbackTraining(ClosedLoopTask):
    """Two-class stimulus → response → feedback trials, one per block (see the module doc)."""

    name: Literal["feedback"] = "feedback"
    feedback_rows: int = Field(5, ge=1, description="rows of feedback on the previous trial")
    stim_rows: int = Field(2, ge=1, description="rows of class stimulus")
    response_rows: int = Field(3, ge=1, description="rows the action is read from")

    primary_metric: ClassVar[str] = "hit_rate"

    @property
    def n_inputs(self) -> int:
        return 4

    @property
    def n_outputs(self) -> int:
        return 1

    @property
    def trial_rows(self) -> int:
        return self.feedback_rows + self.stim_rows + self.response_rows

    def check_block(self, block: int) -> list[str]:
        if block != self.trial_rows:
            return [f"run.block: task 'feedback' runs one trial per block, so the block must be feedback_rows + "
                    f"stim_rows + response_rows = {self.trial_rows} rows (got {block})"]
        return []

    def policy(self, seed: int) -> FeedbackPolicy:
        return FeedbackPolicy(self.feedback_rows, self.stim_rows, self.response_rows, seed)

    def score_loop(self, loop: dict[str, np.ndarray]) -> dict[str, Any]:
        hit = np.asarray(loop["hit"], dtype=np.float64)
        hit = hit[np.isfinite(hit)]
        q = max(hit.size // 4, 1)
        if hit.size == 0:
            return {"hit_rate": float("nan"), "trials": 0}
        return {"hit_rate": float(hit.mean()), "hit_rate_first_quarter": float(hit[:q].mean()),
                "hit_rate_last_quarter": float(hit[-q:].mean()), "trials": int(hit.size)}
