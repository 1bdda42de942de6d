"""What every MEA back end does: deliver a window's pulses and report the spikes detected.

The :class:`~drivers.mea.driver.MEA` driver turns a block of inputs into stimulation (an
encoder), has :class:`~.safety.SafetyGuard` check it, and hands it to a back end:

- ``culture``: the in-silico culture, in this process (:mod:`.culture`);
- ``serial``: a board speaking ``docs/serial-protocol.md`` through pyserial; the firmware
  emulator serves the in-silico culture behind the same protocol on a pseudo-terminal;
- ``cl``: Cortical Labs' CL1 through their ``cl`` API (or its cl-sdk simulator).

A back end is block-oriented like the Reservoir interface: one :meth:`MEABackend.record`
call advances the device by a whole window.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .layout import ElectrodeLayout
from .stimulation import ScheduledPulse


@dataclass
class SpikeEvents:
    """Spikes detected in a window: device time (s, since the back end opened) and electrode."""

    time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    electrode: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.time_s)


@dataclass
class Window:
    """What one :meth:`MEABackend.record` returns."""

    spikes: SpikeEvents
    start_s: float                    # device time at the window's start
    duration_s: float
    gaps: list[tuple[float, float]] = field(default_factory=list)   # (start, end) device-time spans lost
    info: dict[str, Any] = field(default_factory=dict)               # back-end specific (latency, frames...)


class MEABackend(ABC):
    """One MEA device."""

    layout: ElectrodeLayout

    @abstractmethod
    def open(self) -> dict[str, Any]:
        """Connect (idempotent). Returns device information for provenance (name, serial,
        firmware, electrodes, sampling rate)."""

    @abstractmethod
    def record(self, duration_s: float, pulses: list[ScheduledPulse]) -> Window:
        """Advance the device by ``duration_s`` seconds, delivering ``pulses`` (times
        relative to the window's start). The pulses have already passed the safety guard."""

    @abstractmethod
    def stop_stimulation(self) -> None:
        """Cancel any stimulation still queued on the device. Always safe to call."""

    @abstractmethod
    def close(self) -> None:
        """Stop stimulation and disconnect. Always safe, also after a failure."""

    @property
    def time_s(self) -> float:
        """Device time now (seconds since open)."""
        return 0.0
