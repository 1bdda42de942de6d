"""Stimulation safety, enforced in the driver for every back end.

Every window's stimulation is checked here *before* a back end sees it. The back end may
be the in-silico culture, the serial board or the Cortical Labs CL1. An unsafe request
raises :class:`UnsafeStimulation`, which names the pulse, the electrode, the limit and the
value, and nothing is sent.

The defaults follow what is used to stimulate cultured neurons without damage:

- **charge per phase at most 3 nC.** That is 30 uC/cm2 on a 30 um electrode, well inside
  the Shannon (1992) limit for k = 1.85, and the limit Cortical Labs' cl-sdk 1.0 enforces.
- **amplitude at most 50 uA and phase width at most 500 us.** Wagenaar et al. 2004 used
  10-50 uA at 200-400 us per phase.
- **charge balance**: both phases within 1 % of each other. An unbalanced pulse leaves net
  charge that corrodes the electrode and harms the cells.
- **at most 200 pulses per second on any electrode**, the cl-sdk 1.0 limit.
- **phases at least 20 us wide**, and never zero or negative.
- **forbidden electrodes**: the layout's unusable ones plus any the lab lists.

The rate check remembers the last pulse on each electrode across windows (the guard is
stateful), so a train that straddles two blocks is judged as one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .stimulation import ScheduledPulse


class UnsafeStimulation(ValueError):
    """A stimulation request was refused before anything reached the device."""


@dataclass(frozen=True)
class SafetyLimits:
    """Stimulation limits of one device (every field configurable per device)."""

    max_charge_nc: float = 3.0
    max_amplitude_ua: float = 50.0
    max_phase_us: float = 500.0
    min_phase_us: float = 20.0
    max_rate_hz: float = 200.0
    balance_tolerance: float = 0.01
    forbidden: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"max_charge_nc": self.max_charge_nc, "max_amplitude_ua": self.max_amplitude_ua,
                "max_phase_us": self.max_phase_us, "min_phase_us": self.min_phase_us,
                "max_rate_hz": self.max_rate_hz, "balance_tolerance": self.balance_tolerance,
                "forbidden": list(self.forbidden)}


class SafetyGuard:
    """Checks the pulses of each window against :class:`SafetyLimits`.

    Parameters
    ----------
    limits : SafetyLimits
    n_electrodes : int
        Electrodes on the array (indices outside ``0..n_electrodes-1`` are refused).
    unusable : iterable of int
        The layout's unusable electrodes, forbidden like ``limits.forbidden``.
    """

    def __init__(self, limits: SafetyLimits, n_electrodes: int, unusable: Iterable[int] = ()) -> None:
        self.limits = limits
        self.n_electrodes = int(n_electrodes)
        self.forbidden = frozenset(int(e) for e in (*limits.forbidden, *unusable))
        self._last = np.full(self.n_electrodes, -np.inf)   # device time of each electrode's last pulse

    def reset(self) -> None:
        self._last[:] = -np.inf

    def check(self, pulses: list[ScheduledPulse], window_start_s: float) -> None:
        """Refuse the whole window if any pulse is unsafe; on success remember its pulse times.

        ``window_start_s`` is the device time at which the window begins. A pulse's
        ``t_s`` is relative to it.
        """
        lim = self.limits
        last = self._last.copy()
        for i, sp in enumerate(sorted(pulses, key=lambda p: p.t_s)):
            p = sp.pulse
            where = f"pulse {i} at t={sp.t_s:.6f} s on electrodes {list(sp.electrodes)}"
            if not sp.electrodes:
                raise UnsafeStimulation(f"{where}: no electrode given")
            for width, name in ((p.phase_us, "phase_us"), (p.second_phase_us, "phase2_us")):
                if not np.isfinite(width) or width <= 0:
                    raise UnsafeStimulation(f"{where}: {name} = {width} us; a phase must be a positive width")
                if width < lim.min_phase_us:
                    raise UnsafeStimulation(f"{where}: {name} = {width} us is below the minimum {lim.min_phase_us} us")
                if width > lim.max_phase_us:
                    raise UnsafeStimulation(f"{where}: {name} = {width} us exceeds the limit {lim.max_phase_us} us")
            for amp, name in ((p.amplitude_ua, "amplitude_ua"), (p.second_amplitude_ua, "amplitude2_ua")):
                if not np.isfinite(amp) or amp <= 0:
                    raise UnsafeStimulation(f"{where}: {name} = {amp} uA; give the magnitude (> 0), "
                                            f"the polarity comes from cathodic_first")
                if amp > lim.max_amplitude_ua:
                    raise UnsafeStimulation(f"{where}: {name} = {amp} uA exceeds the limit {lim.max_amplitude_ua} uA")
            q1, q2 = p.charge_nc
            if max(q1, q2) > lim.max_charge_nc:
                raise UnsafeStimulation(f"{where}: {max(q1, q2):.3g} nC per phase exceeds the limit "
                                        f"{lim.max_charge_nc} nC")
            if abs(q1 - q2) > lim.balance_tolerance * max(q1, q2):
                raise UnsafeStimulation(f"{where}: not charge-balanced: phases carry {q1:.4g} nC and {q2:.4g} nC "
                                        f"(tolerance {100 * lim.balance_tolerance:g} %)")
            if not np.isfinite(sp.t_s) or sp.t_s < 0:
                raise UnsafeStimulation(f"{where}: time {sp.t_s} s is not within the window")
            for e in sp.electrodes:
                if not 0 <= e < self.n_electrodes:
                    raise UnsafeStimulation(f"{where}: electrode {e} does not exist (0..{self.n_electrodes - 1})")
                if e in self.forbidden:
                    raise UnsafeStimulation(f"{where}: electrode {e} is forbidden")
                t = window_start_s + sp.t_s
                gap = t - last[e]
                if gap < 1.0 / lim.max_rate_hz - 1e-9:
                    raise UnsafeStimulation(f"{where}: electrode {e} pulsed {gap * 1000:.3g} ms after its previous "
                                            f"pulse: faster than the limit of {lim.max_rate_hz} pulses/s")
                last[e] = t
        self._last = last
