"""Stimulation of an MEA: charge-balanced biphasic current pulses on chosen electrodes.

A pulse is two rectangular current phases of opposite sign, by default cathodic
(negative) first, as in the stimulation of cultured cortical networks (Wagenaar, Pine &
Potter 2004, J Neurosci Methods 138:27: biphasic +-0.2-0.9 V / ~10-50 uA, 200-400 us per
phase). The charge of a phase is amplitude x width (1 uA x 1 us = 1 pC); a pulse is
charge-balanced when both phases carry the same charge.

:class:`Stimulus` is what a protocol or an encoder asks for (a train of pulses on a set of
electrodes); :meth:`Stimulus.schedule` expands it into :class:`ScheduledPulse` items
within one recording window, which is what back ends deliver and what the safety guard
(:mod:`.safety`) checks before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BiphasicPulse:
    """One biphasic current pulse.

    Parameters
    ----------
    amplitude_ua : float
        Current of the first phase, microamperes (> 0; its sign is set by ``cathodic_first``).
    phase_us : float
        Width of the first phase, microseconds.
    amplitude2_ua, phase2_us : float, optional
        Second phase (default: the same as the first: charge-balanced).
    interphase_us : float
        Gap between the phases.
    cathodic_first : bool
        First phase negative (default), as usual for extracellular stimulation.
    """

    amplitude_ua: float
    phase_us: float
    amplitude2_ua: float | None = None
    phase2_us: float | None = None
    interphase_us: float = 0.0
    cathodic_first: bool = True

    @property
    def second_amplitude_ua(self) -> float:
        return self.amplitude_ua if self.amplitude2_ua is None else self.amplitude2_ua

    @property
    def second_phase_us(self) -> float:
        return self.phase_us if self.phase2_us is None else self.phase2_us

    @property
    def charge_nc(self) -> tuple[float, float]:
        """Charge of each phase in nanocoulombs (uA x us = pC; / 1000)."""
        return (abs(self.amplitude_ua) * self.phase_us / 1000.0,
                abs(self.second_amplitude_ua) * self.second_phase_us / 1000.0)

    @property
    def duration_us(self) -> float:
        return self.phase_us + self.interphase_us + self.second_phase_us

    def to_dict(self) -> dict:
        return {"amplitude_ua": self.amplitude_ua, "phase_us": self.phase_us,
                "amplitude2_ua": self.second_amplitude_ua, "phase2_us": self.second_phase_us,
                "interphase_us": self.interphase_us, "cathodic_first": self.cathodic_first}


@dataclass(frozen=True)
class ScheduledPulse:
    """A pulse delivered at ``t_s`` seconds into a recording window, on ``electrodes``."""

    t_s: float
    electrodes: tuple[int, ...]
    pulse: BiphasicPulse


@dataclass(frozen=True)
class Stimulus:
    """A train of ``count`` identical pulses at ``rate_hz`` on ``electrodes``, starting
    ``offset_s`` into a window."""

    electrodes: tuple[int, ...]
    pulse: BiphasicPulse
    count: int = 1
    rate_hz: float = 0.0
    offset_s: float = 0.0

    def schedule(self) -> list[ScheduledPulse]:
        if self.count < 0:
            raise ValueError(f"stimulus: count must be >= 0, got {self.count}")
        if self.count > 1 and self.rate_hz <= 0:
            raise ValueError(f"stimulus: a train of {self.count} pulses needs rate_hz > 0")
        period = 1.0 / self.rate_hz if self.count > 1 else 0.0
        return [ScheduledPulse(self.offset_s + k * period, tuple(int(e) for e in self.electrodes), self.pulse)
                for k in range(self.count)]


def schedule_arrays(pulses: list[ScheduledPulse]) -> tuple[np.ndarray, np.ndarray]:
    """(times, electrodes) with one row per (pulse, electrode): the stimulation log of a window."""
    t = [p.t_s for p in pulses for _ in p.electrodes]
    e = [el for p in pulses for el in p.electrodes]
    return np.asarray(t, dtype=np.float64), np.asarray(e, dtype=np.int32)
