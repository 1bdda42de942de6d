"""What training hands back: the trained :class:`Pipeline`, a trainer's :class:`TrainResult`,
and :class:`Packed`, the pipeline sealed for the trip from a trainer actor to a device actor.

This module imports neither scikit-learn nor the readouts, so the run's own process can
hold a trainer's result and pass its pipeline on to the device for the closed-loop
evaluation without importing the training stack (about a second of a small run's start).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from sklearn.base import BaseEstimator

__all__ = ["Packed", "Pipeline", "TrainResult", "unpacked"]


class Pipeline:
    """Module (optional) followed by a readout: what a trained trainer predicts with.

    ``predict`` maps rows of features to outputs; the closed-loop evaluation of the bench
    drives a reservoir with it.
    """

    def __init__(self, module: BaseEstimator | None, readout: BaseEstimator) -> None:
        self.module = module
        self.readout = readout

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = X if self.module is None else self.module.transform(X)
        return self.readout.predict(Z)


@dataclass(frozen=True)
class Packed:
    """A trained pipeline pickled in the trainer actor that made it, carried unopened through the
    run's process and opened in the device actor that evaluates it.

    Only labbench's own processes make and open one; nothing read from a protocol, a store
    or the user's files is ever unpacked (trained models from files go through
    :func:`labbench.engine.live.load_model`).
    """

    blob: bytes

    @classmethod
    def of(cls, obj: Any) -> Packed:
        return cls(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def unpack(self) -> Any:
        return pickle.loads(self.blob)


def unpacked(obj: Any) -> Any:
    """``obj`` itself, or what it holds when it is :class:`Packed`."""
    return obj.unpack() if isinstance(obj, Packed) else obj


@dataclass
class TrainResult:
    """What :func:`labbench.engine.live.train_store` returns: the readout's name, final metrics
    and trained pipeline (:class:`Packed` when it came back from a trainer actor)."""

    name: str
    metrics: dict[str, Any]
    warnings: list[str]
    pipeline: Pipeline | Packed
    status: str
    #: learn_s (learning and writing), write_s (of it, writing), read_s (reading), wait_s (waiting for
    #: rows), setup_s (checks, the readout group), finish_s (the last block and evaluation), peak_rss_mib,
    #: started_unix / last_rows_unix / ended_unix (wall-clock instants, to place it in a run's time line)
    timings: dict[str, float] = field(default_factory=dict)
