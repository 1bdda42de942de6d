"""Stimulation safety, enforced in the driver for every back end.

Every window's stimulation is checked here *before* a back end sees it. The back end may
be the in-silico culture, the serial board or the Cortical Labs CL1. An unsafe request
raises :class:`UnsafeStimulation`, which names the pulse, the electrode, the limit and the
value, and nothing is sent.

**The ceilings** (:data:`CEILINGS`) are what is used to stimulate cultured neurons without
damage; a protocol may only tighten them (:func:`tightened`):

- **charge per phase at most 3 nC.** On a 30 um disc electrode (7.1e-6 cm2) that is
  about 0.42 mC/cm2, below the reversible charge-injection capacity of TiN electrodes
  (Merrill et al. 2005, J Neurosci Methods 141:171) and far inside the Shannon (1992)
  tissue-damage line for k = 1.85 (k = log D + log Q = 0.1 here); it is also the limit
  Cortical Labs' cl-sdk 1.0 enforces.
- **amplitude at most 50 uA and phase width at most 500 us.** Wagenaar et al. 2004 used
  10-50 uA at 200-400 us per phase.
- **charge balance**: both phases within 1 % of each other. An unbalanced pulse leaves net
  charge that corrodes the electrode and harms the cells. Never lifted.
- **at most 200 pulses per second on any electrode**, the cl-sdk 1.0 limit.
- **phases at least 20 us wide**, and never zero or negative.
- **forbidden electrodes**: the layout's reference and unusable ones, plus any the lab
  lists. Never lifted.

**Lifting** a ceiling is an act outside the protocol: a signed-off file
(``labbench run --unsafe-limits FILE``) whose ``[limits]`` the bench hands to the driver;
:func:`lifted_ceilings` checks them. Even then a ceiling never goes past
:data:`HARD_MAXIMA` (20 nC per phase: Shannon's k = 1.85 line is 22 nC for a 30 um disc).

The rate check remembers the last pulse on each electrode across windows (the guard is
stateful), so a train that straddles two blocks is judged as one. The guard's clock is
the schedule's: a window is checked where it will start (never before the end of the
window placed last: the clock never moves backwards), and once the back end has placed it
(:meth:`SafetyGuard.placed`) its pulses are remembered where they really are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from .stimulation import ScheduledPulse

#: the limits a signed-off file may lift, and the most it may lift them to
HARD_MAXIMA: dict[str, float] = {"max_charge_nc": 20.0, "max_amplitude_ua": 150.0, "max_phase_us": 1000.0,
                                 "max_rate_hz": 1000.0}


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

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "forbidden":
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"safety limits: {f.name} = {v!r}; expected a positive number")
            top = HARD_MAXIMA.get(f.name)
            if top is not None and v > top:
                raise ValueError(f"safety limits: {f.name} = {v} is above the hard maximum {top}, "
                                 f"which nothing lifts")
        if self.balance_tolerance > 0.01:
            raise ValueError(f"safety limits: balance_tolerance = {self.balance_tolerance} is above 0.01 "
                             f"(1 %); charge balance is never lifted")
        if self.min_phase_us < 20.0:
            raise ValueError(f"safety limits: min_phase_us = {self.min_phase_us} is below 20 us, which nothing lowers")
        object.__setattr__(self, "forbidden", tuple(sorted({int(e) for e in self.forbidden})))

    def to_dict(self) -> dict:
        return {"max_charge_nc": self.max_charge_nc, "max_amplitude_ua": self.max_amplitude_ua,
                "max_phase_us": self.max_phase_us, "min_phase_us": self.min_phase_us,
                "max_rate_hz": self.max_rate_hz, "balance_tolerance": self.balance_tolerance,
                "forbidden": list(self.forbidden)}


#: the standard ceilings; a protocol may only tighten them
CEILINGS = SafetyLimits()

#: limits where a smaller value is looser (every other numeric limit: a larger one)
_FLOORS = ("min_phase_us",)


def looser(limits: SafetyLimits, ceilings: SafetyLimits) -> list[str]:
    """``"key = value (ceiling C)"`` for every limit of ``limits`` looser than ``ceilings``."""
    out = []
    for f in fields(SafetyLimits):
        if f.name == "forbidden":
            continue
        v, c = getattr(limits, f.name), getattr(ceilings, f.name)
        if (v < c) if f.name in _FLOORS else (v > c):
            out.append(f"{f.name} = {v:g} (ceiling {c:g})")
    return out


def tightened(ceilings: SafetyLimits = CEILINGS, forbidden: Iterable[int] = (), **values: float | None
              ) -> SafetyLimits:
    """The ceilings with some limits tightened (``None``: keep the ceiling) and electrodes
    added to the forbidden ones. A looser value raises ``ValueError`` naming the key, the
    value and the ceiling: a protocol may only tighten."""
    given = {k: v for k, v in values.items() if v is not None}
    unknown = sorted(set(given) - {f.name for f in fields(SafetyLimits)} - {"forbidden"})
    if unknown:
        raise ValueError(f"safety limits: unknown limit(s) {', '.join(unknown)}")
    limits = replace(ceilings, **given, forbidden=(*ceilings.forbidden, *forbidden))
    bad = looser(limits, ceilings)
    if bad:
        raise ValueError(f"{bad[0]} is looser than the ceiling: a protocol may only tighten a stimulation "
                         f"limit (lifting one needs a signed-off --unsafe-limits file)")
    return limits


def lifted_ceilings(limits: Mapping[str, Any], *, source: str = "unsafe limits") -> SafetyLimits:
    """The ceilings with the ``[limits]`` of a signed-off file applied.

    Only the limits of :data:`HARD_MAXIMA` can be lifted, each to at most its hard maximum,
    never below the standard ceiling (tighten in the protocol instead). Charge balance, the
    minimum phase width and the forbidden electrodes are never lifted. A bad entry raises
    ``ValueError`` naming ``source``, the key and what was expected.
    """
    if not limits:
        raise ValueError(f"{source}: [limits] is empty; name at least one of {', '.join(HARD_MAXIMA)}")
    kw: dict[str, float] = {}
    for key, v in limits.items():
        if key not in HARD_MAXIMA:
            raise ValueError(f"{source}: limits.{key} cannot be lifted (liftable: {', '.join(HARD_MAXIMA)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{source}: limits.{key} = {v!r}; expected a number")
        if v < getattr(CEILINGS, key):
            raise ValueError(f"{source}: limits.{key} = {v:g} is below the ceiling {getattr(CEILINGS, key):g}; "
                             f"tighten limits in the protocol, not here")
        if v > HARD_MAXIMA[key]:
            raise ValueError(f"{source}: limits.{key} = {v:g} is above the hard maximum {HARD_MAXIMA[key]:g}, "
                             f"which nothing lifts")
        kw[key] = float(v)
    return replace(CEILINGS, **kw)


class SafetyGuard:
    """Checks the pulses of each window against :class:`SafetyLimits`.

    Parameters
    ----------
    limits : SafetyLimits
    n_electrodes : int
        Electrodes on the array (indices outside ``0..n_electrodes-1`` are refused).
    unusable : iterable of int
        The layout's reference and unusable electrodes, forbidden like ``limits.forbidden``.
    ceilings : SafetyLimits
        What ``limits`` may not exceed (default :data:`CEILINGS`; lifted ones come from
        :func:`lifted_ceilings`). Looser limits raise ``ValueError``.
    """

    def __init__(self, limits: SafetyLimits, n_electrodes: int, unusable: Iterable[int] = (),
                 ceilings: SafetyLimits = CEILINGS) -> None:
        bad = looser(limits, ceilings)
        if bad:
            raise ValueError(f"safety guard: {bad[0]} is looser than the ceiling; lifting a limit needs a "
                             f"signed-off --unsafe-limits file")
        self.limits = limits
        self.ceilings = ceilings
        self.n_electrodes = int(n_electrodes)
        self.forbidden = frozenset(int(e) for e in (*limits.forbidden, *unusable))
        self._last = np.full(self.n_electrodes, -np.inf)   # device time of each electrode's last pulse
        self._clock = -np.inf                               # end of the last window placed
        self._pending: tuple[float, np.ndarray] | None = None   # start and electrodes of the last window checked

    @property
    def clock_s(self) -> float:
        """The earliest device time the next window can start: the end of the last one
        placed (``-inf`` before any). It never moves backwards."""
        return self._clock

    def reset(self) -> None:
        self._last[:] = -np.inf
        self._clock = -np.inf
        self._pending = None

    def check(self, pulses: list[ScheduledPulse], window_start_s: float) -> float:
        """Refuse the whole window if any pulse is unsafe; on success remember its pulse times.

        ``window_start_s`` is the device time at which the back end will start the window
        (at the earliest); a pulse's ``t_s`` is relative to it. A start before
        :attr:`clock_s` is taken as :attr:`clock_s` (a window cannot begin before the last
        one ended). Returns the start used. Call :meth:`placed` once the back end says
        where the window really began.
        """
        start = max(float(window_start_s), self._clock)
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
                t = start + sp.t_s
                gap = t - last[e]
                if gap < 1.0 / lim.max_rate_hz - 1e-9:
                    raise UnsafeStimulation(f"{where}: electrode {e} pulsed {gap * 1000:.3g} ms after its previous "
                                            f"pulse: faster than the limit of {lim.max_rate_hz} pulses/s")
                last[e] = t
        self._pending = (start, np.flatnonzero(last != self._last))
        self._last = last
        return start

    def placed(self, window_start_s: float, duration_s: float) -> None:
        """The back end began the window last checked at ``window_start_s`` (device time)
        and it lasted ``duration_s``: remember its pulses there if that is later than
        checked (never earlier: the guard's times only move forwards), and move the clock
        to its end."""
        pending, self._pending = self._pending, None
        start = float(window_start_s)
        if pending is not None:
            checked, electrodes = pending
            shift = start - checked
            if shift > 0 and len(electrodes):
                self._last[electrodes] += shift
            start = max(start, checked)
        self._clock = max(self._clock, start + float(duration_s))
