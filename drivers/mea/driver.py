"""The MEA as a reservoir: inputs become stimulation, detected spikes become features.

One row of a run is ``row_ms`` of device time. For a block of ``T`` rows the driver:

1. encodes the inputs as pulses (:class:`~.encoder.RateEncoder`);
2. has :class:`~.safety.SafetyGuard` check every pulse. An unsafe request raises
   :class:`~.safety.UnsafeStimulation` and nothing reaches the device;
3. asks the back end to record ``T * row_ms`` while it delivers them;
4. bins the detected spikes per row and electrode (``features = "counts"``), or filters
   them into rates (``"rates"``: an exponential trace with time constant ``tau_ms``, in Hz).

The back end is a parameter: ``culture`` (the in-silico culture, the mock), ``serial``
(a board speaking ``docs/serial-protocol.md`` at ``url``; ``labbench emulate mea`` serves
the culture that way) or ``cl`` (Cortical Labs CL1 through the ``cl`` API). A protocol
swaps one for another by changing ``backend`` (and ``url``), or with ``mock = true``,
which forces the culture. Spikes and the stimulation log go to the store as raw streams:
``spikes`` (time_s, electrode) and ``stim`` (time_s, electrode).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ...reservoir import Block, RawStreamSpec, Reservoir, Spec
from .backend import MEABackend
from .encoder import RateEncoder
from .layout import ElectrodeLayout
from .safety import CEILINGS, SafetyGuard, SafetyLimits, lifted_ceilings, tightened
from .stimulation import BiphasicPulse, schedule_arrays


#: the reference and unusable electrodes of known arrays, by (rows, cols): always unusable,
#: whatever a protocol says (8 x 8: a 60-electrode MCS array has no corners; 15 is its reference)
ARRAY_UNUSABLE: dict[tuple[int, int], tuple[int, ...]] = {(8, 8): (0, 7, 15, 56, 63)}

#: spikes kept for the run's burst statistics (about 12 bytes each)
_MAX_KEPT = 20_000_000


class MEAParams(BaseModel):
    """Parameters of :class:`MEA` (times in ms unless named otherwise)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["culture", "serial", "cl"] = Field("culture", description="which device: the in-silico "
                                                        "culture (mock), a serial board, or a Cortical Labs CL1")
    url: str | None = Field(None, description="pyserial URL of a serial board (/dev/ttyACM0, socket://host:port)")
    n_inputs: int = Field(1, gt=0, description="input channels (set from the task by the bench)")
    row_ms: float = Field(20.0, gt=0, description="device time of one row of the run")
    features: Literal["counts", "rates"] = Field("counts", description="spike counts per row and electrode, "
                                                 "or exponentially filtered rates (Hz)")
    tau_ms: float = Field(50.0, gt=0, description="time constant of the 'rates' filter")
    # the array
    rows: int = Field(8, gt=0, description="electrode grid rows")
    cols: int = Field(8, gt=0, description="electrode grid columns")
    pitch_um: float = Field(200.0, gt=0, description="electrode pitch (um)")
    unusable: list[int] = Field([], description="electrodes that neither record nor stimulate, added to the "
                                "array's own reference and unusable ones (ARRAY_UNUSABLE), which stay unusable")
    # the encoder
    group_size: int = Field(4, gt=0, description="electrodes stimulated per input channel")
    max_pulses: int = Field(2, ge=0, description="pulses per row at the top of the input range")
    input_low: float = Field(0.0, description="input value that gives no pulse")
    input_high: float = Field(1.0, description="input value that gives max_pulses pulses")
    amplitude_ua: float = Field(10.0, description="pulse amplitude per phase (uA)")
    phase_us: float = Field(200.0, description="pulse phase width (us)")
    # safety: a protocol may only tighten the ceilings (drivers/mea/safety.py; unset: the ceiling)
    max_charge_nc: float | None = Field(None, gt=0, description="charge per phase limit (nC), at most 3")
    max_amplitude_ua: float | None = Field(None, gt=0, description="amplitude limit (uA), at most 50")
    max_phase_us: float | None = Field(None, gt=0, description="phase width limit (us), at most 500")
    max_rate_hz: float | None = Field(None, gt=0, description="pulses per second limit on any electrode, at most 200")
    forbidden: list[int] = Field([], description="electrodes that must never be stimulated (added to the "
                                 "array's reference and unusable ones)")
    # the in-silico culture
    culture: dict[str, Any] = Field({}, description="parameters of the in-silico culture (CultureParams)")
    cl: dict[str, Any] = Field({}, description="options of the CL1 back end (ClBackend: accelerated_time, "
                               "seed, recording_dir, ...)")
    serial: dict[str, Any] = Field({}, description="options of the serial board (SerialBoard: mode, "
                                   "heartbeat_timeout_s, ack_timeout_s, max_retries, reconnect_attempts, ...)")
    seed: int = Field(0, description="seed of the culture and of the electrode groups")


    @field_validator("cl")
    @classmethod
    def _known_cl_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(_CL_OPTIONS))
        if unknown:
            why = (" (the cl module is chosen outside the protocol: $LABBENCH_CL_MODULE)" if "module" in unknown
                   else "")
            raise ValueError(f"unknown CL1 back end option(s) {', '.join(unknown)}{why} "
                             f"(known: {', '.join(_CL_OPTIONS)})")
        bad = sorted(str(k) for k in (value.get("sim_env") or {}) if not str(k).startswith("CL_SDK_"))
        if bad:
            raise ValueError(f"sim_env: only CL_SDK_* variables of the simulator may be set (got {', '.join(bad)})")
        return value

    @field_validator("max_charge_nc", "max_amplitude_ua", "max_phase_us", "max_rate_hz")
    @classmethod
    def _only_tighter(cls, value: float | None, info: ValidationInfo) -> float | None:
        ceiling = getattr(CEILINGS, info.field_name)
        if value is not None and value > ceiling:
            raise ValueError(f"{info.field_name} = {value:g} is above the ceiling {ceiling:g}: a protocol may "
                             f"only tighten a stimulation limit (lifting one needs a signed-off --unsafe-limits "
                             f"file; docs/mea.md)")
        return value

    @field_validator("serial")
    @classmethod
    def _known_serial_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(_SERIAL_OPTIONS))
        if unknown:
            raise ValueError(f"unknown serial board option(s) {', '.join(unknown)} "
                             f"(known: {', '.join(_SERIAL_OPTIONS)})")
        return value


#: ClBackend's keyword options that a protocol may set (plain values; no layout, no limits, no module)
_CL_OPTIONS = ("channel_of_electrode", "use_bursts", "strict_timing", "chunk_s", "schedule_margin_s",
               "max_backfill_s", "accelerated_time", "visualisation", "seed", "sim_env", "recording_dir")

#: SerialBoard's keyword options that a protocol may set (plain values; no callables, no layout)
_SERIAL_OPTIONS = ("mode", "sampling_rate_hz", "threshold_sd", "record_electrodes", "heartbeat_ms",
                   "heartbeat_timeout_s", "ack_timeout_s", "max_retries", "max_resends", "reconnect_attempts",
                   "backoff_s", "backoff_max_s", "reconnect_on_timeout", "window_timeout_s", "stream_lead_s",
                   "serial_kwargs")


class MEA(Reservoir):
    """A multi-electrode array with a neuron culture, as a reservoir (see the module doc)."""

    name = "mea"
    Params = MEAParams
    deterministic: ClassVar[bool] = False   # set per instance: the culture back end replays exactly

    def __init__(self, *, unsafe_limits: Mapping[str, float] | None = None, **params: Any) -> None:
        """``params``: :class:`MEAParams` (what a protocol sets). ``unsafe_limits``: the
        ``[limits]`` of a signed-off file that lifts stimulation ceilings (never part of a
        protocol; the bench passes it from ``--unsafe-limits`` / ``lb.run(unsafe_limits=...)``)."""
        self.params = MEAParams(**params)
        p = self.params
        self.ceilings = (lifted_ceilings(unsafe_limits, source="unsafe limits") if unsafe_limits is not None
                         else CEILINGS)
        self.limits_lifted = unsafe_limits is not None
        own = ARRAY_UNUSABLE.get((p.rows, p.cols), ())
        self.layout = ElectrodeLayout(p.rows, p.cols, p.pitch_um, tuple(sorted({*own, *p.unusable})))
        self.limits = tightened(self.ceilings, forbidden=p.forbidden, max_charge_nc=p.max_charge_nc,
                                max_amplitude_ua=p.max_amplitude_ua, max_phase_us=p.max_phase_us,
                                max_rate_hz=p.max_rate_hz)
        if p.backend == "cl":   # the CL1's own grid and limits, where tighter than the protocol's
            from .cl_backend import cl_layout, cl_safety_limits

            grid = cl_layout(pitch_um=p.pitch_um)
            self.layout = ElectrodeLayout(grid.rows, grid.cols, grid.pitch_um,
                                          tuple(sorted({*grid.unusable, *p.unusable})))
            cl = cl_safety_limits()
            lim = self.limits
            self.limits = SafetyLimits(max_charge_nc=min(lim.max_charge_nc, cl.max_charge_nc),
                                       max_amplitude_ua=min(lim.max_amplitude_ua, cl.max_amplitude_ua),
                                       max_phase_us=min(lim.max_phase_us, cl.max_phase_us),
                                       min_phase_us=max(lim.min_phase_us, cl.min_phase_us),
                                       max_rate_hz=min(lim.max_rate_hz, cl.max_rate_hz), forbidden=lim.forbidden)
        self.encoder = RateEncoder(self.layout, p.n_inputs, p.row_ms / 1000.0,
                                   BiphasicPulse(p.amplitude_ua, p.phase_us), p.group_size, p.max_pulses,
                                   p.input_low, p.input_high, p.seed)
        self.guard = SafetyGuard(self.limits, self.layout.n_electrodes, self.layout.unusable, self.ceilings)
        # refuse an unsafe encoder now, not at the first block: one row at full scale
        self.guard.check(self.encoder.encode(np.full((1, p.n_inputs), p.input_high)), 0.0)
        self.guard.reset()
        self.deterministic = p.backend == "culture"
        self.spec = Spec(n_inputs=p.n_inputs, n_features=self.layout.n_electrodes, dt=p.row_ms / 1000.0,
                         realtime=p.backend == "cl", feature_name="electrode",
                         raw={"spikes": RawStreamSpec({"time_s": "float64", "electrode": "int32"},
                                                      "one row per detected spike (device time, s)",
                                                      time_column="time_s", time_scale=1.0,
                                                      channel_column="electrode"),
                              "stim": RawStreamSpec({"time_s": "float64", "electrode": "int32"},
                                                    "one row per pulse and electrode (device time, s)",
                                                    time_column="time_s", time_scale=1.0,
                                                    channel_column="electrode")})
        self.backend: MEABackend | None = None
        self.info: dict[str, Any] = {}
        self._trace = np.zeros(self.layout.n_electrodes)
        self._rows = 0
        self.gaps: list[tuple[float, float]] = []
        self.last_window: dict[str, Any] = {}
        self._spikes: list[tuple[np.ndarray, np.ndarray]] = []   # every window's spikes, for summary()
        self._n_spikes = 0
        self._recorded_s = 0.0
        self._first_s: float | None = None

    @classmethod
    def backends(cls) -> dict[str, tuple[bool, str]]:
        """The in-silico culture, a serial board (pyserial) and a CL1 (the cl API), each with its availability."""
        import importlib.util

        from .cl_backend import cl_available

        serial = (True, "ok") if importlib.util.find_spec("serial") is not None else (
            False, "pyserial is not installed (pip install pyserial)")
        return {"culture": (True, "ok"), "serial": serial, "cl": cl_available()}

    @classmethod
    def backend_of(cls, params: dict[str, Any]) -> str:
        return str(params.get("backend", "culture"))

    @classmethod
    def check_unsafe_limits(cls, limits: Mapping[str, float]) -> dict[str, Any]:
        """The ceilings ``limits`` (the ``[limits]`` of a signed-off --unsafe-limits file)
        would give this driver; ``ValueError`` naming the key if it cannot lift them (the
        bench asks before anything starts)."""
        return lifted_ceilings(limits, source="unsafe limits").to_dict()

    @classmethod
    def mock_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The in-silico culture instead of whatever device the protocol names."""
        return {**{k: v for k, v in params.items() if k != "url"}, "backend": "culture"}

    # -- life cycle ------------------------------------------------------------------------
    def _make_backend(self) -> MEABackend:
        p = self.params
        if p.backend == "culture":
            from .culture import InSilicoCulture

            return InSilicoCulture({**p.culture, "seed": p.culture.get("seed", p.seed)}, layout=self.layout)
        if p.backend == "serial":
            if not p.url:
                raise ValueError("mea: backend 'serial' needs url (e.g. /dev/ttyACM0, socket://127.0.0.1:5000, "
                                 "or the tty that `labbench emulate mea` prints)")
            from .serial_board import SerialBoard

            return SerialBoard(p.url, layout=self.layout, **p.serial)
        from .cl_backend import ClBackend

        return ClBackend(layout=self.layout, **p.cl)

    def open(self) -> None:
        if self.backend is not None:
            return
        backend = self._make_backend()
        try:
            self.info = dict(backend.open())
        except BaseException:
            backend.close()
            raise
        self.backend = backend

    def reset(self, seed: int | None = None) -> None:
        self.close()
        if seed is not None:
            self.params = self.params.model_copy(update={"seed": seed})
        self._trace[:] = 0.0
        self._rows = 0
        self.guard.reset()
        self.gaps = []
        self._spikes, self._n_spikes, self._recorded_s, self._first_s = [], 0, 0.0, None

    def close(self) -> None:
        """Stop stimulation and disconnect; safe to call at any time, also after a failure."""
        backend, self.backend = self.backend, None
        if backend is None:
            return
        try:
            backend.stop_stimulation()
        finally:
            backend.close()

    # -- running ---------------------------------------------------------------------------
    def run(self, u: np.ndarray) -> Block:
        if self.backend is None:
            raise RuntimeError("mea: run() before open()")
        u = self._check_input(u)
        T = len(u)
        row_s = self.params.row_ms / 1000.0
        if T == 0:   # nothing to deliver or record (the bench asks once, for the dtype)
            empty = {"time_s": np.zeros(0), "electrode": np.zeros(0, np.int32)}
            return Block(features=np.zeros((0, self.layout.n_electrodes), np.float32),
                         raw={"spikes": dict(empty), "stim": dict(empty)})
        pulses = self.encoder.encode(u)
        # checked where the window will start on the device's clock, at the earliest (a real-time
        # device starts it where the last one ended, or later); then remembered where it did start
        self.guard.check(pulses, self._next_start_s())   # UnsafeStimulation: nothing has been sent
        t0 = time.perf_counter()
        window = self.backend.record(T * row_s, pulses)
        wall = time.perf_counter() - t0
        self.guard.placed(window.start_s, window.duration_s)
        self.gaps.extend(window.gaps)
        rel = window.spikes.time_s - window.start_s
        row = np.clip(np.floor(rel / row_s + 1e-9).astype(np.int64), 0, max(T - 1, 0))
        counts = np.zeros((T, self.layout.n_electrodes), dtype=np.float32)
        if len(rel):
            np.add.at(counts, (row, window.spikes.electrode.astype(np.int64)), 1.0)
        features = counts if self.params.features == "counts" else self._rates(counts, row_s)
        st, se = schedule_arrays(pulses)
        self._rows += T
        self._keep(window)
        self.last_window = {"start_s": window.start_s, "duration_s": window.duration_s, "wall_s": wall,
                            "spikes": int(len(window.spikes)), "pulses": len(pulses), **window.info}
        return Block(features=features, raw={
            "spikes": {"time_s": np.asarray(window.spikes.time_s, dtype=np.float64),
                       "electrode": np.asarray(window.spikes.electrode, dtype=np.int32)},
            "stim": {"time_s": st + window.start_s, "electrode": se}})

    def _next_start_s(self) -> float:
        """The earliest device time the back end can start the next window at: its
        ``next_start_s`` where it has one (a real-time device), else its time now."""
        if isinstance(getattr(type(self.backend), "next_start_s", None), property):
            return float(self.backend.next_start_s)
        return float(self.backend.time_s)

    def _rates(self, counts: np.ndarray, row_s: float) -> np.ndarray:
        """Exponential trace of the counts in spikes per second, ``r[t] = a r[t-1] + (1 - a) c[t] / row_s``
        with ``a = exp(-row / tau)``, carried across blocks (one IIR filter over the block)."""
        from scipy.signal import lfilter

        if len(counts) == 0:
            return counts
        a = math.exp(-row_s / (self.params.tau_ms / 1000.0))
        out, _ = lfilter([1 - a], [1, -a], counts / row_s, axis=0, zi=(a * self._trace)[None, :])
        self._trace = out[-1].astype(np.float64)
        return out.astype(np.float32)

    def _keep(self, window) -> None:
        """Keep the window's spikes for the run's burst statistics (up to ``_MAX_KEPT`` spikes)."""
        if self._first_s is None:
            self._first_s = float(window.start_s)
        self._recorded_s += float(window.duration_s)
        if self._n_spikes + len(window.spikes) <= _MAX_KEPT:
            self._spikes.append((np.asarray(window.spikes.time_s, np.float64),
                                 np.asarray(window.spikes.electrode, np.int32)))
        self._n_spikes += len(window.spikes)

    # -- reporting -------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Network-burst statistics of everything recorded (Wagenaar et al. 2006; :mod:`.bursts`),
        the mean rate per recording electrode, and the recording's gaps: ``gaps`` lists the
        ``[start_s, end_s]`` device-time spans lost to a disconnect, ``gap_s`` their total."""
        from .bursts import detect_bursts

        if not self._recorded_s:
            return {}
        out: dict[str, Any] = {"spikes": int(self._n_spikes), "recorded_s": self._recorded_s,
                               "rate_hz_per_electrode": self._n_spikes / self._recorded_s
                               / max(len(self.layout.usable_indices), 1),
                               "gaps": [[float(a), float(b)] for a, b in self.gaps],
                               "gap_s": float(sum(b - a for a, b in self.gaps))}
        if self._n_spikes > _MAX_KEPT:
            out["bursts_note"] = f"more than {_MAX_KEPT} spikes: burst statistics of the first ones only"
        if self._spikes:
            t = np.concatenate([x[0] for x in self._spikes])
            e = np.concatenate([x[1] for x in self._spikes])
            truncated = self._n_spikes > _MAX_KEPT and len(t)
            kept_s = float(t.max() - self._first_s) if truncated else self._recorded_s
            if kept_s > 0:
                out["bursts"] = detect_bursts(t, e, kept_s, start_s=self._first_s).summary()
        return out

    def health(self) -> list[str]:
        if self._rows and self.last_window.get("spikes", 0) == 0:
            return [f"mea: no spike detected in the last window ({self.last_window.get('duration_s', 0):.3g} s): "
                    "is the culture alive, the threshold too high, or the recording off?"]
        return []

    def describe(self) -> dict[str, Any]:
        return {"driver": self.name, "params": self.params.model_dump(), "layout": self.layout.to_dict(),
                "encoder": self.encoder.to_dict(), "safety": self.limits.to_dict(),
                "safety_ceilings": self.ceilings.to_dict(), "limits_lifted": self.limits_lifted, "device": self.info,
                "gaps": [list(g) for g in self.gaps]}
