"""Cortical Labs CL1 back end: a culture on a CL1 (or cl-sdk's simulator) through the ``cl`` API.

``cl`` is Cortical Labs' Python API. On a CL1 it drives the hardware; elsewhere the
``cl-sdk`` package (1.0 needs Python >= 3.12; licence CC BY-NC 4.0, so it is an optional
extra, ``pip install 'labbench[cl]'``) provides the same API over a simulator that replays
recordings or generates synthetic activity, optionally faster than real time
(``CL_SDK_ACCELERATED_TIME=1``). ``cl`` is imported in :meth:`ClBackend.open`, never at
import time: this module needs numpy only. See ``docs/mea-cl.md``.

What labbench asks for maps onto ``cl`` as follows (every refusal is a ``ValueError``
naming the field, raised before anything reaches the device):

- **electrodes -> channels.** ``cl`` numbers its 64 channels column by column on an 8 x 8
  grid (``channel = col * 8 + row``, Cortical Labs' "common MEA layout"); labbench numbers
  electrodes row by row (``electrode = row * 8 + col``). The default map is that
  transpose, so an electrode index means the same place on the grid for every back end.
  Channels 0, 7, 56, 63 (the corners) are grounded: ``cl`` silently drops stimulation
  there, so they are unusable (electrodes 0, 56, 7, 63); channel 4 (electrode 32) is the
  reference. Neither is ever stimulated, whatever layout is given; :func:`cl_layout` is
  the resulting :class:`~.layout.ElectrodeLayout` (unusable: 0, 7, 32, 56, 63).
- **a pulse -> ``StimDesign``.** A :class:`~.stimulation.BiphasicPulse` becomes
  ``StimDesign(phase_us, -amplitude_ua, phase2_us, +amplitude2_ua)`` (signs swapped when
  ``cathodic_first`` is false). ``cl`` needs phase widths that are whole multiples of
  20 us, |I| <= 3 uA and <= 3 nC per phase, and has no inter-phase gap: anything else is
  refused, never rounded.
- **time -> frames.** ``cl`` runs on a 25 kHz frame clock (40 us frames) and delivers a
  stim at ``at_timestamp`` + its 80 us lead time. Pulse times within a window are
  rounded to the nearest frame (at most 20 us; the largest rounding of each window is in
  ``Window.info["stim_time_rounding_max_s"]``; ``strict_timing=True`` refuses it
  instead), and so is a window's duration (``Window.duration_s`` is the true one).
- **a train -> ``BurstDesign``.** Pulses with the same electrodes and design at a constant
  period (a whole number of frames, at most 200 Hz) are sent as one
  ``stim(ChannelSet, StimDesign, BurstDesign(count, hz))`` when that is exact: the train
  and the channel time it holds stay inside the window and no other pulse uses those
  channels meanwhile. Otherwise pulses go one by one. Either way each distinct start
  frame is one ``StimPlan`` run at its exact timestamp.
- **per-channel occupancy.** ``cl`` queues stimulation per channel: after a single pulse a
  channel is busy for 5 ms (its 200 Hz limit), after a burst for one burst interval past
  its last pulse; a pulse asked for earlier would be delayed by ``cl``, so it is refused.
  This is tracked across windows.

:meth:`ClBackend.record` reads the window with ``neurons.read(frames, from_timestamp,
analysis=True)`` in chunks, queueing each chunk's stim plans one chunk ahead, and checks
the stims ``cl`` reports as delivered against those requested. Windows are contiguous on
the device clock whenever possible: a window begins where the previous one ended (the
device keeps about 5 s of the past), unless a pulse early in the window could not be
queued in time, in which case the window starts later and the span between is reported
in ``Window.gaps``.
"""

from __future__ import annotations

import math
import os
from bisect import bisect_left
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .backend import MEABackend, SpikeEvents, Window
from .layout import ElectrodeLayout
from .safety import SafetyLimits
from .stimulation import BiphasicPulse, ScheduledPulse

# ---------------------------------------------------------------------------------------------
# What the cl API fixes (cl-sdk 1.0; the simulator mirrors the CL1)
# ---------------------------------------------------------------------------------------------

CL_CHANNELS = 64
CL_GRID = 8                          # 8 x 8 electrodes
CL_FRAMES_PER_SECOND = 25_000        # one frame = one sample of every channel = 40 us
CL_GROUND_CHANNELS = (0, 7, 56, 63)  # grounded: cl drops stimulation there, no spikes
CL_REFERENCE_CHANNELS = (4,)         # reference electrode: no spikes
CL_LEAD_TIME_US = 80                 # cl's minimum (and default) stim lead time
INSTALL_HINT = "pip install 'labbench[cl]'"


@dataclass(frozen=True)
class ClStimLimits:
    """What ``cl`` can express. Defaults are cl-sdk 1.0's (``StimDesign``/``BurstDesign``);
    :meth:`from_cl` reads them from an imported ``cl`` where it exposes them."""

    max_current_ua: float = 3.0       # |I| per phase
    max_charge_nc: float = 3.0        # per phase
    phase_bin_us: int = 20            # phase widths are whole multiples of this
    max_burst_hz: float = 200.0
    lead_time_us: int = CL_LEAD_TIME_US

    @classmethod
    def from_cl(cls, cl: Any) -> ClStimLimits:
        sd, bd = getattr(cl, "StimDesign", None), getattr(cl, "BurstDesign", None)
        d = cls()
        return cls(max_current_ua=float(getattr(sd, "_CURRENT_LIMIT_UA", d.max_current_ua)),
                   max_charge_nc=float(getattr(sd, "_PHASE_CHARGE_INJECTION_LIMIT_PC", d.max_charge_nc * 1000))
                   / 1000.0,
                   phase_bin_us=int(getattr(sd, "_DURATION_BIN_US", d.phase_bin_us)),
                   max_burst_hz=float(getattr(bd, "_BURST_FREQUENCY_LIMIT_HZ", d.max_burst_hz)))

    def to_dict(self) -> dict:
        return {"max_current_ua": self.max_current_ua, "max_charge_nc": self.max_charge_nc,
                "phase_bin_us": self.phase_bin_us, "max_burst_hz": self.max_burst_hz,
                "lead_time_us": self.lead_time_us}


class ClUnavailableError(ImportError):
    """``cl`` (Cortical Labs' cl-sdk, or the CL1's own API) cannot be imported."""


# ---------------------------------------------------------------------------------------------
# Electrodes and channels
# ---------------------------------------------------------------------------------------------

def cl_channel_of_electrode() -> np.ndarray:
    """Default map, electrode index -> cl channel: the transpose of the 8 x 8 grid.

    labbench: ``electrode = row * 8 + col``; cl (its common MEA layout): ``channel = col * 8
    + row``. The map is its own inverse.
    """
    e = np.arange(CL_CHANNELS)
    return ((e % CL_GRID) * CL_GRID + e // CL_GRID).astype(np.int64)


def cl_layout(channel_of_electrode: Sequence[int] | None = None, pitch_um: float = 200.0) -> ElectrodeLayout:
    """The CL1 array as an :class:`ElectrodeLayout`: 8 x 8, the electrodes of the grounded
    and reference channels unusable. ``cl`` does not expose the electrode pitch; 200 um
    (the labbench default) is assumed unless given."""
    ch_of_el = _check_channel_map(channel_of_electrode)
    bad = set(CL_GROUND_CHANNELS) | set(CL_REFERENCE_CHANNELS)
    unusable = tuple(sorted(int(e) for e in range(CL_CHANNELS) if int(ch_of_el[e]) in bad))
    return ElectrodeLayout(rows=CL_GRID, cols=CL_GRID, pitch_um=pitch_um, unusable=unusable)


def cl_safety_limits(limits: ClStimLimits | None = None, **overrides: Any) -> SafetyLimits:
    """:class:`~.safety.SafetyLimits` no looser than what ``cl`` accepts, for the driver's
    guard in front of this back end (the guard then refuses what cl would refuse, with
    its own messages). ``overrides`` tighten further (e.g. ``max_rate_hz=50``)."""
    lim = limits or ClStimLimits()
    base = SafetyLimits()
    kw = dict(max_charge_nc=min(base.max_charge_nc, lim.max_charge_nc),
              max_amplitude_ua=min(base.max_amplitude_ua, lim.max_current_ua),
              max_phase_us=base.max_phase_us, min_phase_us=max(base.min_phase_us, lim.phase_bin_us),
              max_rate_hz=min(base.max_rate_hz, lim.max_burst_hz))
    kw.update(overrides)
    return SafetyLimits(**kw)


def _check_channel_map(channel_of_electrode: Sequence[int] | None) -> np.ndarray:
    if channel_of_electrode is None:
        return cl_channel_of_electrode()
    m = np.asarray(channel_of_electrode, dtype=np.int64)
    if m.shape != (CL_CHANNELS,) or sorted(m.tolist()) != list(range(CL_CHANNELS)):
        raise ValueError(f"cl: channel_of_electrode must be a permutation of 0..{CL_CHANNELS - 1} "
                         f"(one cl channel per electrode), got {list(m)[:8]}... of length {m.size}")
    return m


# ---------------------------------------------------------------------------------------------
# Stimulation -> cl (pure: testable without cl)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClStimDesign:
    """The arguments of ``cl.StimDesign``: ``(duration_us, current_uA)`` per phase, signed."""

    phases: tuple[tuple[int, float], ...]

    @property
    def args(self) -> tuple:
        return tuple(x for ph in self.phases for x in ph)

    @property
    def duration_us(self) -> int:
        return sum(d for d, _ in self.phases)


@dataclass(frozen=True)
class ClStimCommand:
    """One ``stim(ChannelSet(*channels), StimDesign(*design.args)[, BurstDesign(count, hz)])``
    whose first pulse lands on ``frame`` (window-relative)."""

    frame: int
    channels: tuple[int, ...]
    electrodes: tuple[int, ...]
    design: ClStimDesign
    burst_count: int = 1
    burst_hz: float | None = None         # None: a single pulse, no BurstDesign
    period_frames: int = 0                # frames between the burst's pulses

    def pulse_frames(self) -> list[int]:
        return [self.frame + k * self.period_frames for k in range(self.burst_count)]


@dataclass
class ClWindowPlan:
    """What :func:`plan_stimulation` makes of a window's pulses."""

    commands: list[ClStimCommand] = field(default_factory=list)
    expected: list[tuple[int, int]] = field(default_factory=list)    # (frame, channel) of every pulse
    busy_until: dict[int, int] = field(default_factory=dict)         # channel -> first free frame after
    rounding_max_s: float = 0.0
    n_pulses: int = 0

    @property
    def n_bursts(self) -> int:
        return sum(1 for c in self.commands if c.burst_hz is not None)

    def frames(self) -> list[int]:
        """Distinct start frames, ascending: one StimPlan run each."""
        return sorted({c.frame for c in self.commands})


def stim_design_for(pulse: BiphasicPulse, limits: ClStimLimits | None = None, where: str = "pulse") -> ClStimDesign:
    """Map a biphasic pulse to cl's phases exactly, or raise ``ValueError`` naming the field.

    cathodic first: ``(phase_us, -amplitude_ua), (phase2_us, +amplitude2_ua)``.
    """
    lim = limits or ClStimLimits()
    if pulse.interphase_us != 0:
        raise ValueError(f"{where}: interphase_us = {pulse.interphase_us} us: cl's StimDesign has no gap "
                         f"between phases; use interphase_us = 0")
    phases = []
    sign = -1.0 if pulse.cathodic_first else 1.0
    for k, (width, wname, amp, aname) in enumerate(((pulse.phase_us, "phase_us", pulse.amplitude_ua, "amplitude_ua"),
                                                     (pulse.second_phase_us, "phase2_us",
                                                      pulse.second_amplitude_ua, "amplitude2_ua"))):
        width, amp = float(width), float(amp)
        if not math.isfinite(width) or width <= 0:
            raise ValueError(f"{where}: {wname} = {width} us; a phase must be a positive width")
        n_bins = round(width / lim.phase_bin_us)
        if abs(n_bins * lim.phase_bin_us - width) > 1e-6 or n_bins < 1:
            raise ValueError(f"{where}: {wname} = {width:g} us is not a whole multiple of {lim.phase_bin_us} us, "
                             f"which cl requires (nearest: {max(1, n_bins) * lim.phase_bin_us} us)")
        if not math.isfinite(amp) or amp <= 0:
            raise ValueError(f"{where}: {aname} = {amp} uA; give the magnitude (> 0), "
                             f"the polarity comes from cathodic_first")
        if amp > lim.max_current_ua + 1e-12:
            raise ValueError(f"{where}: {aname} = {amp:g} uA exceeds cl's limit of {lim.max_current_ua:g} uA per phase")
        d_us = int(n_bins * lim.phase_bin_us)
        if amp * d_us / 1000.0 > lim.max_charge_nc + 1e-12:
            raise ValueError(f"{where}: {aname} x {wname} = {amp * d_us / 1000.0:.4g} nC exceeds cl's limit of "
                             f"{lim.max_charge_nc:g} nC per phase")
        phases.append((d_us, (sign if k == 0 else -sign) * amp))
    return ClStimDesign(tuple(phases))


def _cl_interval_us(hz: float, bin_us: int = 20) -> int:
    """cl's burst interval for a frequency (rounded to its 20 us bin, as ``BurstDesign`` does)."""
    return int((1_000_000 / hz / bin_us) + 0.5) * bin_us


def _hold_frames(design: ClStimDesign, burst_hz: float | None, fps: int, lim: ClStimLimits) -> int:
    """How long after a command's last pulse its channels stay busy, in frames: cl's burst
    interval (a single pulse is a burst of one at min(1/(duration + lead), max_burst_hz))."""
    if burst_hz is None:
        burst_hz = min(1_000_000 / (design.duration_us + lim.lead_time_us), lim.max_burst_hz)
    return math.ceil(_cl_interval_us(burst_hz, lim.phase_bin_us) * fps / 1_000_000 - 1e-9)


def plan_stimulation(pulses: Iterable[ScheduledPulse], n_frames: int, *,
                     frames_per_second: int = CL_FRAMES_PER_SECOND,
                     channel_of_electrode: Sequence[int] | None = None,
                     unusable_electrodes: Iterable[int] = (),
                     limits: ClStimLimits | None = None,
                     use_bursts: bool = True,
                     strict_timing: bool = False,
                     free_from: Mapping[int, int] | None = None) -> ClWindowPlan:
    """Turn a window's pulses into ``cl`` stim commands, or raise ``ValueError``.

    ``n_frames`` is the window's length in frames; ``free_from`` maps a channel to the
    first window-relative frame at which it is free (earlier windows may still hold it;
    may be negative). Pure: needs no ``cl``.
    """
    lim = limits or ClStimLimits()
    ch_of_el = _check_channel_map(channel_of_electrode)
    # cl's grounded and reference channels are never stimulated, whatever the layout says
    never = set(CL_GROUND_CHANNELS) | set(CL_REFERENCE_CHANNELS)
    unusable = {int(e) for e in unusable_electrodes} | {int(e) for e in range(CL_CHANNELS) if int(ch_of_el[e]) in never}
    fps = int(frames_per_second)
    plan = ClWindowPlan()

    # 1. each pulse -> (frame, channels, design)
    events: list[tuple[int, tuple[int, ...], tuple[int, ...], ClStimDesign]] = []
    designs: dict[BiphasicPulse, ClStimDesign] = {}
    for i, sp in enumerate(pulses):
        where = f"pulse {i} at t={sp.t_s:.6f} s on electrodes {list(sp.electrodes)}"
        t = float(sp.t_s)
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"{where}: t_s = {sp.t_s} s is not within the window")
        f_exact = t * fps
        f = int(math.floor(f_exact + 0.5))
        err = abs(f_exact - f) / fps
        if strict_timing and err > 1e-9:
            raise ValueError(f"{where}: t_s = {t!r} s is not on cl's {1e6 / fps:g} us frame grid "
                             f"(nearest {f / fps!r} s); strict_timing refuses rounding")
        if f >= n_frames:
            raise ValueError(f"{where}: t_s = {t} s is at or after the window's end ({n_frames / fps} s)")
        if not sp.electrodes:
            raise ValueError(f"{where}: electrodes is empty")
        els = tuple(sorted({int(e) for e in sp.electrodes}))
        for e in els:
            if not 0 <= e < CL_CHANNELS:
                raise ValueError(f"{where}: electrode {e} does not exist on the CL1 (0..{CL_CHANNELS - 1})")
            if e in unusable:
                raise ValueError(f"{where}: electrode {e} (cl channel {int(ch_of_el[e])}) cannot be stimulated "
                                 f"(grounded, reference or listed unusable)")
        if sp.pulse not in designs:
            designs[sp.pulse] = stim_design_for(sp.pulse, lim, where)
        plan.rounding_max_s = max(plan.rounding_max_s, err)
        events.append((f, els, tuple(sorted(int(ch_of_el[e]) for e in els)), designs[sp.pulse]))
    plan.n_pulses = len(events)
    events.sort(key=lambda ev: (ev[0], ev[2]))

    # 2. trains -> bursts, where exact
    commands: list[ClStimCommand] = []
    used = [False] * len(events)
    if use_bursts:
        by_channel: dict[int, list[int]] = {}
        for k, (f, _, chs, _) in enumerate(events):
            for c in chs:
                by_channel.setdefault(c, []).append(f)
        groups: dict[tuple, list[int]] = {}
        for k, (f, els, chs, d) in enumerate(events):
            groups.setdefault((chs, d), []).append(k)
        min_period = math.ceil(fps / lim.max_burst_hz - 1e-9)

        def exact_burst(chs: tuple[int, ...], d: ClStimDesign, f0: int, period: int, count: int) -> bool:
            hz = fps / period
            f_last = f0 + (count - 1) * period
            return (count >= 2 and period >= min_period and hz <= lim.max_burst_hz
                    # cl rounds a burst's interval to its 20 us bin: it must come out as the period
                    and _cl_interval_us(hz, lim.phase_bin_us) * fps == period * 1_000_000
                    and period * 1_000_000 >= (d.duration_us + lim.lead_time_us) * fps
                    # the channels' hold after the last pulse ends inside the window
                    and f_last + period <= n_frames
                    # nothing else uses these channels from the first pulse to the hold's end
                    and all(bisect_left(by_channel[c], f_last + period) - bisect_left(by_channel[c], f0) == count
                            for c in chs))

        for (chs, d), idx in groups.items():
            j = 0
            while j < len(idx) - 1:
                f0 = events[idx[j]][0]
                period = events[idx[j + 1]][0] - f0
                m = j + 1
                while m + 1 < len(idx) and events[idx[m + 1]][0] - events[idx[m]][0] == period:
                    m += 1
                # the whole run, else all but its last pulse (a train running up to the window's end)
                count = next((c for c in (m - j + 1, m - j) if period > 0 and exact_burst(chs, d, f0, period, c)), 0)
                if count:
                    commands.append(ClStimCommand(f0, chs, events[idx[j]][1], d, count, float(fps / period), period))
                    for q in idx[j:j + count]:
                        used[q] = True
                    j += count
                else:
                    j += 1
    for k, (f, els, chs, d) in enumerate(events):
        if not used[k]:
            commands.append(ClStimCommand(f, chs, els, d))
    commands.sort(key=lambda c: (c.frame, c.channels))

    # 3. per-channel occupancy: cl would delay a pulse on a busy channel
    free = {int(c): int(v) for c, v in (free_from or {}).items()}
    last_cmd: dict[int, ClStimCommand] = {}
    for cmd in commands:
        hold = _hold_frames(cmd.design, cmd.burst_hz, fps, lim)
        for c in cmd.channels:
            if cmd.frame < free.get(c, -(1 << 62)):
                e = int(np.flatnonzero(ch_of_el == c)[0])
                prev = last_cmd.get(c)
                what = (f"its pulse at t={prev.pulse_frames()[-1] / fps:.6f} s" if prev is not None
                        else "a pulse of the previous window")
                raise ValueError(f"pulse at t={cmd.frame / fps:.6f} s on electrode {e} (cl channel {c}): the channel "
                                 f"is still busy after {what} until t={free[c] / fps:.6f} s (cl holds a channel "
                                 f"{1e3 / lim.max_burst_hz:g} ms after a pulse, one interval after a burst); "
                                 f"cl would deliver it late")
            free[c] = cmd.pulse_frames()[-1] + hold
            last_cmd[c] = cmd
        plan.expected.extend((pf, c) for pf in cmd.pulse_frames() for c in cmd.channels)
    plan.commands = commands
    plan.busy_until = free
    plan.expected.sort()
    return plan


def _pulse_frame_of(t_s: float, fps: int) -> int:
    return int(math.floor(float(t_s) * fps + 0.5))


# ---------------------------------------------------------------------------------------------
# The back end
# ---------------------------------------------------------------------------------------------

#: environment variable that names the module of the cl API instead of ``cl`` (a stand-in for
#: tests, a vendor's renamed package); never a protocol key
CL_MODULE_ENV = "LABBENCH_CL_MODULE"


def cl_module_name() -> str:
    """The module the CL1 back end imports: ``cl``, or ``$LABBENCH_CL_MODULE`` when set."""
    return os.environ.get(CL_MODULE_ENV, "").strip() or "cl"


def cl_available() -> tuple[bool, str]:
    """Whether the cl API can be imported here, and why not, without importing it."""
    import importlib.util

    module = cl_module_name()
    here = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    if module == "cl" and sys.version_info < (3, 12):
        return False, f"the Cortical Labs cl API (cl-sdk 1.0) needs Python >= 3.12; this is {here}"
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return False, f"no module {module!r} on {here}: on a CL1 it is installed; elsewhere `{INSTALL_HINT}`"
    return True, "ok"


def import_cl() -> Any:
    """Import the cl API (:func:`cl_module_name`) or raise :class:`ClUnavailableError` saying how to get it."""
    import importlib

    module = cl_module_name()
    here = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    need = (f"The Cortical Labs CL1 back end needs the `{module}` API: on a CL1 it is installed; elsewhere "
            f"install Cortical Labs' cl-sdk simulator with `{INSTALL_HINT}` (cl-sdk >= 1.0, which needs "
            f"Python >= 3.12; its licence is CC BY-NC 4.0, so it is an optional extra).")
    try:
        # "cl" or the module the person running the bench named in $LABBENCH_CL_MODULE
        cl = importlib.import_module(module)
    except Exception as exc:   # ImportError, or cl-sdk 0.1 on Python < 3.12 failing as it imports
        extra = "" if sys.version_info >= (3, 12) else f" This is {here}: cl-sdk 1.0 cannot be installed here."
        raise ClUnavailableError(f"{need}{extra} (import {module} failed: {type(exc).__name__}: {exc})") from exc
    missing = [n for n in ("open", "ChannelSet", "StimDesign", "BurstDesign") if not hasattr(cl, n)]
    if missing:
        raise ClUnavailableError(f"{need} The `{module}` found at {getattr(cl, '__file__', '?')} lacks {missing}.")
    ver = _dist_version("cl-sdk")
    if ver is not None and _version_tuple(ver) < (1, 0):
        raise ClUnavailableError(f"{need} Found cl-sdk {ver}, older than 1.0.")
    return cl


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:   # pragma: no cover
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


class ClBackend(MEABackend):
    """A CL1 culture (or cl-sdk's simulator) as an MEA back end.

    Parameters
    ----------
    channel_of_electrode : sequence of 64 ints, optional
        cl channel of each labbench electrode (default: :func:`cl_channel_of_electrode`,
        the transpose that matches cl's common MEA layout).
    layout : ElectrodeLayout, optional
        Default :func:`cl_layout` (grounded and reference channels unusable).
    use_bursts : bool
        Send exact periodic trains as one ``BurstDesign`` (default) instead of pulse by pulse.
    strict_timing : bool
        Refuse pulse times off cl's 40 us frame grid instead of rounding them.
    chunk_s : float
        A window is read in chunks of this length; stim plans are queued one chunk ahead.
    schedule_margin_s : float, optional
        How far ahead of the device clock the first stim of a window is queued. Default
        0 for cl-sdk's accelerated simulator (its clock only moves when read), else 5 ms.
    max_backfill_s : float
        A window may begin up to this far in the past (where the previous one ended) so
        that windows stay contiguous; the device keeps about 5 s.
    limits : ClStimLimits, optional
        Default: read from ``cl`` at open (cl-sdk 1.0: 3 uA, 3 nC, 20 us, 200 Hz).
    accelerated_time, visualisation, seed : simulator only
        Set ``CL_SDK_ACCELERATED_TIME``, ``CL_SDK_VISUALISATION`` (default off: cl-sdk
        would otherwise serve a web visualiser on 127.0.0.1:8000) and
        ``CL_SDK_RANDOM_SEED`` before the simulator starts; ``None`` leaves the
        environment (and a ``.env`` in the working directory) in charge.
    sim_env : mapping, optional
        Further ``CL_SDK_*`` variables for the simulator (e.g. ``CL_SDK_REPLAY_PATH``).
    recording_dir : str, optional
        Also record everything to HDF5 with ``neurons.record()`` into this directory
        from open to close (the simulator keeps it in memory until close).

    The API module is ``cl``, or the one ``$LABBENCH_CL_MODULE`` names (:func:`cl_module_name`):
    never a parameter, so that no protocol can choose what is imported.
    """

    name = "cl"

    def __init__(self, *, channel_of_electrode: Sequence[int] | None = None,
                 layout: ElectrodeLayout | None = None, use_bursts: bool = True,
                 strict_timing: bool = False, chunk_s: float = 0.1,
                 schedule_margin_s: float | None = None, max_backfill_s: float = 4.0,
                 limits: ClStimLimits | None = None, accelerated_time: bool | None = None,
                 visualisation: bool | None = False, seed: int | None = None,
                 sim_env: Mapping[str, str] | None = None,
                 recording_dir: str | os.PathLike | None = None) -> None:
        self.channel_of_electrode = _check_channel_map(channel_of_electrode)
        self.electrode_of_channel = np.argsort(self.channel_of_electrode)
        self.layout = layout or cl_layout(self.channel_of_electrode)
        if (self.layout.rows, self.layout.cols) != (CL_GRID, CL_GRID):
            raise ValueError(f"cl: the layout must be the CL1's {CL_GRID} x {CL_GRID} grid, "
                             f"got {self.layout.rows} x {self.layout.cols}")
        if chunk_s <= 0 or max_backfill_s < 0 or (schedule_margin_s is not None and schedule_margin_s < 0):
            raise ValueError("cl: chunk_s must be > 0, max_backfill_s and schedule_margin_s >= 0")
        self.use_bursts = bool(use_bursts)
        self.strict_timing = bool(strict_timing)
        self.chunk_s = float(chunk_s)
        self.schedule_margin_s = schedule_margin_s
        self.max_backfill_s = float(max_backfill_s)
        self.limits = limits
        self.accelerated_time = accelerated_time
        self.visualisation = visualisation
        self.seed = seed
        self.sim_env = dict(sim_env or {})
        self.recording_dir = None if recording_dir is None else os.fspath(recording_dir)

        self._cl: Any = None
        self._ctx: Any = None
        self._neurons: Any = None
        self._info: dict[str, Any] | None = None
        self._fps = CL_FRAMES_PER_SECOND
        self._t0 = 0                  # device timestamp at open
        self._next = 0                # device timestamp where the next window would continue
        self._free: dict[int, int] = {}   # channel -> device timestamp from which it is free
        self._plans: OrderedDict[tuple, Any] = OrderedDict()
        self._recording: Any = None
        self._last_time_s = 0.0
        self.windows = 0

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._neurons is not None

    def open(self) -> dict[str, Any]:
        if self._neurons is not None:
            return dict(self._info or {})
        cl = import_cl()
        simulator = bool(getattr(cl, "is_simulator", lambda: False)())
        if simulator:
            env = {}
            if self.accelerated_time is not None:
                env["CL_SDK_ACCELERATED_TIME"] = "1" if self.accelerated_time else "0"
            if self.visualisation is not None:
                env["CL_SDK_VISUALISATION"] = "1" if self.visualisation else "0"
            if self.seed is not None:
                env["CL_SDK_RANDOM_SEED"] = str(int(self.seed))
            env.update({str(k): str(v) for k, v in self.sim_env.items()})
            os.environ.update(env)
        ctx = cl.open()
        neurons = ctx.__enter__()
        try:
            self._cl, self._ctx, self._neurons = cl, ctx, neurons
            self._fps = int(neurons.get_frames_per_second())
            n_ch = int(neurons.get_channel_count())
            if n_ch != CL_CHANNELS:
                raise RuntimeError(f"cl: the device reports {n_ch} channels; this back end knows the {CL_CHANNELS}-"
                                   f"channel CL1")
            if self.limits is None:
                self.limits = ClStimLimits.from_cl(cl)
            # labbench owns the device from here: nothing queued by an earlier session goes on
            neurons.interrupt(cl.ChannelSet(*range(CL_CHANNELS)))
            self._t0 = int(neurons.timestamp())
            self._next = self._t0
            self._free = {}
            self._plans.clear()
            self.windows = 0
            accelerated = simulator and os.environ.get("CL_SDK_ACCELERATED_TIME", "0") == "1"
            if self.schedule_margin_s is None:
                self._margin_frames = 0 if accelerated else int(round(0.005 * self._fps))
            else:
                self._margin_frames = int(math.ceil(self.schedule_margin_s * self._fps))
            attrs = {}
            if hasattr(cl, "get_system_attributes"):
                try:
                    attrs = dict(cl.get_system_attributes())
                except Exception as exc:   # informative only
                    attrs = {"error": f"{type(exc).__name__}: {exc}"}
            if self.recording_dir is not None:
                self._recording = neurons.record(file_location=os.path.abspath(self.recording_dir),
                                                 file_suffix="labbench", attributes={"labbench_backend": "cl"})
            self._info = {
                "backend": "cl",
                "device": attrs.get("system_id", "cl1"),
                "simulator": simulator,
                "accelerated_time": accelerated,
                "system_attributes": _jsonable(attrs),
                "cl_sdk_version": _dist_version("cl-sdk"),
                "cl_api_version": _dist_version("cl-api"),
                "cl_module": getattr(cl, "__file__", None),
                "python": sys.version.split()[0],
                "channels": n_ch,
                "electrodes": self.layout.n_electrodes,
                "frames_per_second": self._fps,
                "frame_duration_us": float(neurons.get_frame_duration_us())
                if hasattr(neurons, "get_frame_duration_us") else 1e6 / self._fps,
                "start_timestamp": self._t0,
                "layout": self.layout.to_dict(),
                "channel_of_electrode": self.channel_of_electrode.tolist(),
                "ground_channels": list(CL_GROUND_CHANNELS),
                "reference_channels": list(CL_REFERENCE_CHANNELS),
                "stim_limits": self.limits.to_dict(),
                "use_bursts": self.use_bursts,
                "strict_timing": self.strict_timing,
                "schedule_margin_s": self._margin_frames / self._fps,
                "chunk_s": self.chunk_s,
                "recording": None if self._recording is None else dict(getattr(self._recording, "file", {}) or {}),
                "gc_disabled_by_cl": True,
            }
        except BaseException:
            self._teardown()
            raise
        return dict(self._info)

    def stop_stimulation(self) -> None:
        """Interrupt ongoing and cancel queued stimulation on every channel (no-op when closed)."""
        neurons = self._neurons
        if neurons is None:
            return
        neurons.interrupt(self._cl.ChannelSet(*range(CL_CHANNELS)))
        now = int(neurons.timestamp())
        self._free = {c: min(v, now) for c, v in self._free.items()}

    def close(self) -> None:
        """Stop stimulation, stop the HDF5 recording if any, and release the device. Always safe."""
        if self._neurons is None:
            return
        try:
            self.stop_stimulation()
        except Exception as exc:   # still release the device
            warnings.warn(f"cl: interrupting stimulation on close failed: {exc!r}", RuntimeWarning, stacklevel=2)
        finally:
            self._teardown()

    def _teardown(self) -> None:
        neurons, ctx, rec = self._neurons, self._ctx, self._recording
        if neurons is not None:
            try:
                self._last_time_s = (int(neurons.timestamp()) - self._t0) / self._fps
            except Exception:
                pass
        self._neurons = self._ctx = self._recording = None
        self._plans.clear()
        try:
            if rec is not None:
                rec.stop()
        except Exception as exc:
            warnings.warn(f"cl: stopping the recording failed: {exc!r}", RuntimeWarning, stacklevel=3)
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)

    def __enter__(self) -> ClBackend:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:   # last resort; close() is the contract
        try:
            if self._neurons is not None:
                self.close()
        except Exception:
            pass

    @property
    def next_start_s(self) -> float:
        """Where the next window begins (device time since open) if it can follow the last one
        without a gap; the safety guard's rate check can use this as the window's start."""
        return (self._next - self._t0) / self._fps

    @property
    def time_s(self) -> float:
        if self._neurons is None:
            return self._last_time_s
        return (int(self._neurons.timestamp()) - self._t0) / self._fps

    # -- one window -----------------------------------------------------------------------------

    def plan(self, duration_s: float, pulses: Sequence[ScheduledPulse], free_from: Mapping[int, int] | None = None
             ) -> tuple[int, ClWindowPlan]:
        """(frames, plan) for a window, validated; sends nothing. Usable before :meth:`open`."""
        fps = self._fps
        d = float(duration_s)
        if not math.isfinite(d) or d <= 0:
            raise ValueError(f"cl: duration_s = {duration_s} must be > 0")
        n = int(math.floor(d * fps + 0.5))
        if n < 1:
            raise ValueError(f"cl: duration_s = {duration_s} s is shorter than one {1e6 / fps:g} us frame")
        if self.strict_timing and abs(n - d * fps) > 1e-6:
            raise ValueError(f"cl: duration_s = {d!r} s is not a whole number of {1e6 / fps:g} us frames "
                             f"(strict_timing)")
        return n, plan_stimulation(pulses, n, frames_per_second=fps, channel_of_electrode=self.channel_of_electrode,
                                   unusable_electrodes=self.layout.unusable, limits=self.limits or ClStimLimits(),
                                   use_bursts=self.use_bursts, strict_timing=self.strict_timing,
                                   free_from=free_from)

    def record(self, duration_s: float, pulses: list[ScheduledPulse]) -> Window:
        """Advance the device by a window, delivering ``pulses``; see the module doc.

        ``Window.info`` holds, besides the window's device timestamps:

        - ``wall_s`` (the call's wall-clock time) and ``speed`` (device s per wall s);
        - ``latency_s`` / ``latency_max_s`` / ``jitter_s``: mean, max and standard deviation
          over the window's chunks of how far the device clock had moved past a chunk's end
          when its read returned (0 in cl-sdk's accelerated time);
        - ``start_offset_s``: window start minus device time at the call (< 0: the window
          began in the past, following on from the previous one);
        - ``stims_requested`` / ``stims_delivered`` / ``stims_missing`` / ``stims_unexpected``
          (as cl reports them back), ``stims_late`` (plans queued after their timestamp),
          ``stim_error_max_s``, ``schedule_lead_min_s`` (least time a plan was queued ahead),
          ``stim_time_rounding_max_s``, ``bursts``, ``stim_commands``, ``stim_plans``;
        - ``spikes_dropped_unusable``: spikes cl reported on unusable electrodes.
        """
        neurons = self._neurons
        if neurons is None:
            raise RuntimeError("cl: record() before open()")
        fps = self._fps
        wall0 = time.perf_counter()
        pulses = list(pulses or ())
        # validate everything that does not depend on the window's start (nothing is sent yet)
        n, _ = self.plan(duration_s, pulses)
        lead = int(math.ceil((self.limits or ClStimLimits()).lead_time_us * fps / 1_000_000))

        # where the window starts: contiguous with the previous one where possible
        now = int(neurons.timestamp())
        start = max(self._next, now - int(self.max_backfill_s * fps))
        if pulses:
            f_min = min(_pulse_frame_of(p.t_s, fps) for p in pulses)
            start = max(start, now + self._margin_frames + lead - f_min)
        free_rel = {c: v - start for c, v in self._free.items()}
        _, plan = self.plan(duration_s, pulses, free_from=free_rel)
        gaps = []
        if start > self._next:
            gaps.append(((self._next - self._t0) / fps, (start - self._t0) / fps))

        # stim plans: one per distinct start frame, each run at its exact timestamp
        by_frame: dict[int, list[ClStimCommand]] = {}
        for cmd in plan.commands:
            by_frame.setdefault(cmd.frame, []).append(cmd)
        queue = [(start + f - lead, by_frame[f]) for f in sorted(by_frame)]
        qi = 0
        late = 0
        lead_min = math.inf
        chunk = max(1, int(round(self.chunk_s * fps)))
        spikes_t: list[int] = []
        spikes_c: list[int] = []
        delivered: list[tuple[int, int]] = []
        lat: list[float] = []
        try:
            pos = 0
            while pos < n:
                k = min(chunk, n - pos)
                horizon = start + pos + k + chunk        # queue one chunk ahead
                while qi < len(queue) and queue[qi][0] < horizon:
                    at, cmds = queue[qi]
                    ahead = at - int(neurons.timestamp())
                    lead_min = min(lead_min, ahead)
                    if ahead < 0:
                        late += 1
                    self._stim_plan(cmds).run(at_timestamp=int(at))
                    qi += 1
                res = neurons.read(k, start + pos, analysis=True)
                lat.append((int(neurons.timestamp()) - (start + pos + k)) / fps)
                for s in res.spikes:
                    spikes_t.append(int(s.timestamp))
                    spikes_c.append(int(s.channel))
                delivered.extend((int(s.timestamp), int(s.channel)) for s in res.stims)
                pos += k
        except BaseException:
            # nothing of this window was returned: the next one may read it again (or report a gap)
            self.stop_stimulation()
            raise
        self._next = start + n
        for c, v in plan.busy_until.items():
            self._free[c] = start + v
        self.windows += 1

        # spikes -> (time since open, electrode)
        ts = np.asarray(spikes_t, dtype=np.int64)
        el = self.electrode_of_channel[np.asarray(spikes_c, dtype=np.int64)] if spikes_c else np.zeros(0, np.int64)
        keep = self.layout.usable[el] if el.size else np.zeros(0, bool)
        order = np.argsort(ts[keep], kind="stable")
        spikes = SpikeEvents(time_s=((ts[keep] - self._t0) / fps)[order].astype(np.float64),
                             electrode=el[keep][order].astype(np.int32))

        # stimulation as delivered vs as asked
        expected = sorted((start + f, c) for f, c in plan.expected)
        exp_set, got_set = set(expected), set(delivered)
        missing = sorted(exp_set - got_set)
        unexpected = sorted(got_set - exp_set)
        err = 0
        if missing or unexpected:   # match by channel, nearest in time
            for f, c in missing:
                cand = [g for g, cc in unexpected if cc == c]
                if cand:
                    err = max(err, min(abs(g - f) for g in cand))
        wall = time.perf_counter() - wall0
        info = {
            "start_timestamp": start, "stop_timestamp": start + n, "frames": n,
            "requested_duration_s": float(duration_s),
            "start_offset_s": (start - now) / fps,     # < 0: began in the past, contiguous with the last window
            "wall_s": wall, "speed": (n / fps) / wall if wall > 0 else math.inf,
            "latency_s": float(np.mean(lat)) if lat else 0.0,
            "latency_max_s": float(np.max(lat)) if lat else 0.0,
            "jitter_s": float(np.std(lat)) if lat else 0.0,
            "chunks": len(lat),
            "pulses": plan.n_pulses, "stim_commands": len(plan.commands), "bursts": plan.n_bursts,
            "stim_plans": len(queue),
            "stims_requested": len(expected), "stims_delivered": len(delivered),
            "stims_missing": len(missing), "stims_unexpected": len(unexpected),
            "stims_late": late,
            "stim_error_max_s": err / fps,
            "schedule_lead_min_s": (lead_min / fps) if math.isfinite(lead_min) else None,
            "stim_time_rounding_max_s": plan.rounding_max_s,
            "spikes_dropped_unusable": int((~keep).sum()) if el.size else 0,
        }
        if late or missing or unexpected:
            warnings.warn(f"cl: window at {(start - self._t0) / fps:.3f} s: {late} stim plan(s) queued late, "
                          f"{len(missing)} requested stim(s) not delivered as asked, {len(unexpected)} unexpected",
                          RuntimeWarning, stacklevel=2)
        return Window(spikes=spikes, start_s=(start - self._t0) / fps, duration_s=n / fps, gaps=gaps, info=info)

    def _stim_plan(self, cmds: list[ClStimCommand]) -> Any:
        """A (cached, reusable) cl StimPlan holding these commands."""
        key = tuple((c.channels, c.design.args, c.burst_count, c.burst_hz) for c in cmds)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        cl = self._cl
        plan = self._neurons.create_stim_plan()
        for c in cmds:
            args = [cl.ChannelSet(*c.channels), cl.StimDesign(*c.design.args)]
            if c.burst_hz is not None:
                args.append(cl.BurstDesign(int(c.burst_count), float(c.burst_hz)))
            plan.stim(*args)
        self._plans[key] = plan
        while len(self._plans) > 512:
            self._plans.popitem(last=False)
        return plan


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)
