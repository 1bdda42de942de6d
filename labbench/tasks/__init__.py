"""Input and target generators for reservoir-computing benchmarks.

``TASKS`` maps each registry name (the value of a protocol's ``[task] name`` key) to
its class; :func:`get_task` builds one from keyword parameters and ``TaskSpec`` is the
discriminated union a protocol model can use to validate its ``[task]`` table.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from labbench.tasks.base import ClosedLoopTask, FreeRunPlan, Task, TaskData
from labbench.tasks.digits import Digits
from labbench.tasks.feedback import FeedbackTraining
from labbench.tasks.gestures import Gestures
from labbench.tasks.lorenz import Lorenz
from labbench.tasks.mackey_glass import MackeyGlass
from labbench.tasks.memory_capacity import MemoryCapacity
from labbench.tasks.narma import Narma
from labbench.tasks.pattern_xor import PatternXor
from labbench.tasks.rate_clamp import RateClamp
from labbench.tasks.saccade_digits import SaccadeDigits
from labbench.tasks.spontaneous import Spontaneous
from labbench.tasks.spoken_digits import SpokenDigits
from labbench.tasks.xor import TemporalXor

__all__ = [
    "TASKS",
    "ClosedLoopTask",
    "Digits",
    "FeedbackTraining",
    "FreeRunPlan",
    "Gestures",
    "Lorenz",
    "MackeyGlass",
    "MemoryCapacity",
    "Narma",
    "PatternXor",
    "RateClamp",
    "SaccadeDigits",
    "Spontaneous",
    "SpokenDigits",
    "Task",
    "TaskData",
    "TaskSpec",
    "TemporalXor",
    "get_task",
]

TASKS: dict[str, type[Task]] = {
    "mackey_glass": MackeyGlass,
    "narma": Narma,
    "lorenz": Lorenz,
    "memory_capacity": MemoryCapacity,
    "digits": Digits,
    "saccade_digits": SaccadeDigits,
    "gestures": Gestures,
    "spoken_digits": SpokenDigits,
    "xor": TemporalXor,
    "pattern_xor": PatternXor,
    "spontaneous": Spontaneous,
    "rate_clamp": RateClamp,
    "feedback": FeedbackTraining,
}

TaskSpec = Annotated[Union[MackeyGlass, Narma, Lorenz, MemoryCapacity, Digits, SaccadeDigits, Gestures, SpokenDigits,
                           TemporalXor,
                           PatternXor, Spontaneous, RateClamp, FeedbackTraining],
                     Field(discriminator="name")]
"""Any registered task, chosen by its ``name`` key (for protocol models)."""


def get_task(name: str, **params: Any) -> Task:
    """Build the task registered as ``name`` from its parameters.

    Raises
    ------
    KeyError
        If ``name`` is not registered (the message lists the known names).
    pydantic.ValidationError
        If a parameter is unknown or invalid (the message names the key).
    """
    try:
        cls = TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
    return cls.model_validate({"name": name, **params})
