"""Exercise drivers/mea/cl_backend.py against Cortical Labs' cl-sdk 1.0 simulator.

Run by a Python >= 3.12 that has cl-sdk (``.ci/cl_venv.sh`` makes ``.venv-cl``)::

    .venv-cl/bin/python tests/cl_check.py [--json out.json] [--source random|echo|realtime|all]

``tests/test_mea_cl.py`` runs it from the main test venv and asserts on the JSON summary
it prints (last line, prefixed ``CL_CHECK_JSON``) and writes (``--json``). It needs no
labbench install: the repository root goes on ``sys.path`` and only
``drivers.mea.cl_backend`` (numpy-only) is imported.

The simulator runs in accelerated time, with its web visualiser off, in a temporary
working directory (cl-sdk reads a ``.env`` from the working directory). Two data sources:

- ``random``: cl-sdk's default synthetic culture (Poisson spikes; it ignores stimulation).
  Checks: spikes per window, times inside their window, contiguous windows, usable
  electrodes only; stimulation (single pulses, a multi-electrode pulse, a train sent as a
  BurstDesign) delivered exactly when and where asked, as cl reports it; unsafe or
  inexpressible requests refused before reaching the device; stop_stimulation cancels
  queued stimulation; close is idempotent; an HDF5 recording agrees with the windows.
- ``echo``: a data source defined here (``echo_source``) that answers each stim with one
  spike on the same channel 2 ms later and fires a marker spike on cl channel 8 every
  40 ms. Checks the electrode <-> channel map end to end, in both directions.
- ``realtime``: the random source on the wall clock, as a CL1 runs: window latency and
  stimulation timing as numbers (a stim queued late on a loaded machine is reported in
  the summary's notes, not counted as a failure).

Each source after the first runs in a child process: cl's ``Neurons`` is a per-process
singleton, bound when created to its data source and its time policy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ECHO_DELAY_FRAMES = 50          # 2 ms at 25 kHz
MARKER_CHANNEL = 8              # cl channel 8 = row 0, column 1 = labbench electrode 1 ("B1")
MARKER_EVERY_FRAMES = 1000      # 40 ms


# ---------------------------------------------------------------------------------------------
# The echo data source (imported by name in cl-sdk's producer subprocess: keep it top level)
# ---------------------------------------------------------------------------------------------

def echo_source(delay_frames: int = ECHO_DELAY_FRAMES, marker_channel: int = MARKER_CHANNEL,
                marker_every: int = MARKER_EVERY_FRAMES):
    from cl.sim import DataSourceBatch, DataSourceSpike, SimulatorDataSource, SimulatorDataSourceMetadata

    class EchoSource(SimulatorDataSource):
        def __init__(self) -> None:
            self._pending: list[tuple[int, int]] = []

        @property
        def metadata(self):
            return SimulatorDataSourceMetadata(channel_count=64, duration_frames=None, seekable=True)

        def on_stim(self, stim) -> None:
            self._pending.append((int(stim.timestamp) + delay_frames, int(stim.channel)))

        def read(self, from_timestamp: int, frame_count: int):
            to = from_timestamp + frame_count
            hits = [(t, c) for t, c in self._pending if from_timestamp <= t < to]
            self._pending = [(t, c) for t, c in self._pending if t >= to]
            first = -(-from_timestamp // marker_every) * marker_every
            hits += [(t, marker_channel) for t in range(max(first, marker_every), to, marker_every)]
            spikes = [DataSourceSpike(timestamp=t, channel=c, samples=np.zeros(75, np.float32),
                                      channel_mean_sample=0.0) for t, c in sorted(hits)]
            return DataSourceBatch(frames=np.zeros((frame_count, 64), np.int16), spikes=spikes)

    return EchoSource()


# ---------------------------------------------------------------------------------------------

class Checks:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def __call__(self, cond: bool, what: str, detail: object = "") -> bool:
        if cond:
            self.passed += 1
        else:
            self.failures.append(f"{what}: {detail}" if detail != "" else what)
        return bool(cond)

    def raises(self, fn, exc: type[BaseException], what: str, must_mention: str = "") -> str:
        try:
            fn()
        except exc as e:
            msg = str(e)
            self(must_mention.lower() in msg.lower(), f"{what}: the error names {must_mention!r}", msg)
            return msg
        except Exception as e:  # wrong type
            self(False, f"{what}: raised {type(e).__name__} instead of {exc.__name__}", e)
            return repr(e)
        self(False, f"{what}: did not raise {exc.__name__}")
        return ""


def _import_backend():
    sys.path.insert(0, str(ROOT))
    mea_init = ROOT / "drivers" / "mea" / "__init__.py"
    from drivers.mea import cl_backend, safety, stimulation   # noqa: E402
    return cl_backend, safety, stimulation, (mea_init.read_text() if mea_init.exists() else None)


def window_summary(w) -> dict:
    return {"start_s": w.start_s, "duration_s": w.duration_s, "spikes": len(w.spikes), "gaps": w.gaps,
            **{k: w.info[k] for k in ("wall_s", "speed", "latency_s", "latency_max_s", "jitter_s",
                                      "stims_requested", "stims_delivered", "stims_missing", "stims_unexpected",
                                      "stims_late", "stim_error_max_s", "bursts", "stim_commands", "stim_plans",
                                      "start_offset_s", "schedule_lead_min_s", "stim_time_rounding_max_s",
                                      "spikes_dropped_unusable")}}


def check_window(ok: Checks, w, name: str, usable: np.ndarray) -> None:
    t, e = w.spikes.time_s, w.spikes.electrode
    ok(bool(np.all((t >= w.start_s - 1e-9) & (t < w.start_s + w.duration_s + 1e-9))),
       f"{name}: spike times inside the window", (t.min() if t.size else None, t.max() if t.size else None))
    ok(bool(np.all(np.diff(t) >= 0)), f"{name}: spikes sorted by time")
    ok(bool(np.all(usable[e])) if e.size else True, f"{name}: spikes only on usable electrodes",
       sorted(set(e[~usable[e]].tolist())) if e.size else "")
    ok(e.dtype == np.int32 and t.dtype == np.float64, f"{name}: dtypes", (t.dtype, e.dtype))


def scenario_random(ok: Checks, cb, safety, stim) -> dict:
    import cl
    out: dict = {}
    P = stim.BiphasicPulse
    with tempfile.TemporaryDirectory() as rec_dir:
        be = cb.ClBackend(accelerated_time=True, visualisation=False, seed=1234, recording_dir=rec_dir)
        t = time.perf_counter()
        info = be.open()
        out["open_s"] = time.perf_counter() - t
        ok(be.open() == info, "open() is idempotent")
        out["info"] = info
        ok(info["channels"] == 64 and info["frames_per_second"] == 25000, "64 channels at 25 kHz",
           (info["channels"], info["frames_per_second"]))
        ok(info["simulator"] is True and info["accelerated_time"] is True, "simulator in accelerated time")
        ok(bool(info["system_attributes"].get("system_id")), "system attributes carry a system id",
           info["system_attributes"])
        ok(info["cl_sdk_version"] == "1.0.0", "cl-sdk 1.0.0", info["cl_sdk_version"])
        ok(info["stim_limits"]["max_current_ua"] == 3.0, "current limit read from cl", info["stim_limits"])
        ok(info["layout"]["unusable"] == [0, 7, 32, 56, 63], "unusable electrodes", info["layout"])
        usable = be.layout.usable

        # 1. spontaneous activity, contiguous windows
        windows = []
        for k in range(3):
            w = be.record(1.0, [])
            check_window(ok, w, f"quiet window {k}", usable)
            ok(len(w.spikes) > 0, f"quiet window {k} has spikes", len(w.spikes))
            ok(w.info["stims_delivered"] == 0, f"quiet window {k}: no stims", w.info["stims_delivered"])
            windows.append(w)
        for a, b in zip(windows, windows[1:]):
            ok(abs(a.start_s + a.duration_s - b.start_s) < 1e-9 and not b.gaps, "quiet windows are contiguous",
               (a.start_s, a.duration_s, b.start_s, b.gaps))
        out["quiet_windows"] = [window_summary(w) for w in windows]
        rates = np.bincount(np.concatenate([w.spikes.electrode for w in windows]), minlength=64) / 3.0
        out["spike_rate_hz"] = {"mean_per_usable_electrode": float(rates[usable].mean()),
                                "max": float(rates.max()), "electrodes_active": int((rates > 0).sum())}

        # 2. stimulation: singles, a multi-electrode pulse, a 100 Hz train (one BurstDesign)
        p = P(2.0, 160)                                  # 0.32 nC per phase
        pulses = [stim.ScheduledPulse(0.010, (9,), p),
                  stim.ScheduledPulse(0.020, (10, 11, 12), P(1.5, 200, cathodic_first=False)),
                  *stim.Stimulus((20, 21), p, count=10, rate_hz=100.0, offset_s=0.100).schedule(),
                  stim.ScheduledPulse(0.3333, (30,), P(1.0, 100))]       # 0.3333 s: off the 40 us grid
        w = be.record(0.5, pulses)
        check_window(ok, w, "stim window", usable)
        ok(w.info["stims_requested"] == 1 + 3 + 20 + 1, "stims requested", w.info["stims_requested"])
        ok(w.info["stims_delivered"] == w.info["stims_requested"] and w.info["stims_missing"] == 0
           and w.info["stims_unexpected"] == 0, "every stim delivered where and when asked",
           {k: w.info[k] for k in ("stims_delivered", "stims_missing", "stims_unexpected", "stim_error_max_s")})
        ok(w.info["bursts"] == 1 and w.info["stim_commands"] == 4, "the train went as one BurstDesign",
           (w.info["bursts"], w.info["stim_commands"]))
        ok(w.info["stims_late"] == 0, "no stim plan queued late", w.info["stims_late"])
        ok(0 < w.info["stim_time_rounding_max_s"] <= 20e-6, "off-grid time rounded by at most 20 us",
           w.info["stim_time_rounding_max_s"])
        ok(not w.gaps and abs(w.start_s - (windows[-1].start_s + 1.0)) < 1e-9, "stim window contiguous too",
           (w.start_s, w.gaps))
        out["stim_window"] = window_summary(w)

        # a pulse at t = 0 cannot be queued before the window's own start: it starts 80 us later
        w0 = be.record(0.2, [stim.ScheduledPulse(0.0, (40,), p)])
        ok(len(w0.gaps) == 1 and abs((w0.gaps[0][1] - w0.gaps[0][0]) - 80e-6) < 1e-9,
           "a pulse at t=0 leaves an 80 us gap (cl's lead time)", w0.gaps)
        ok(w0.info["stims_delivered"] == 1 and w0.info["stims_missing"] == 0, "pulse at t=0 delivered",
           window_summary(w0))
        out["t0_pulse_window"] = window_summary(w0)

        # per-channel occupancy carries across windows: 2 ms after the previous window's last pulse
        w1 = be.record(0.2, [stim.ScheduledPulse(0.198, (41,), p)])
        msg = ok.raises(lambda: be.record(0.1, [stim.ScheduledPulse(0.0, (41,), p)]), ValueError,
                        "a pulse 2 ms after one in the previous window", "busy")
        ok(w1.info["stims_delivered"] == 1, "pulse at the end of a window delivered", window_summary(w1))
        out["busy_refusal"] = msg

        # 3. refusals, before anything reaches the device
        refusals = {}
        for name, pulse, mention in [("current above cl's 3 uA", P(4.0, 100), "amplitude_ua"),
                                     ("second phase above 3 uA", P(2.0, 160, amplitude2_ua=3.5, phase2_us=80),
                                      "amplitude2_ua"),
                                     ("phase not a multiple of 20 us", P(1.0, 150), "phase_us"),
                                     ("inter-phase gap", P(1.0, 100, interphase_us=40), "interphase_us"),
                                     ("charge above 3 nC", P(3.0, 1020), "nC")]:
            refusals[name] = ok.raises(lambda pulse=pulse: be.record(0.1, [stim.ScheduledPulse(0.01, (9,), pulse)]),
                                       ValueError, f"refuses {name}", mention)
        refusals["grounded electrode"] = ok.raises(
            lambda: be.record(0.1, [stim.ScheduledPulse(0.01, (0,), p)]), ValueError, "refuses a grounded electrode",
            "electrode 0")
        refusals["reference electrode"] = ok.raises(
            lambda: be.record(0.1, [stim.ScheduledPulse(0.01, (32,), p)]), ValueError,
            "refuses the reference electrode", "electrode 32")
        refusals["overlapping pulses"] = ok.raises(
            lambda: be.record(0.1, [stim.ScheduledPulse(0.010, (9,), p), stim.ScheduledPulse(0.012, (9,), p)]),
            ValueError, "refuses 2 pulses 2 ms apart on one electrode", "busy")
        # cl's own validation agrees with the limits the back end applies
        refusals["cl StimDesign 4 uA"] = ok.raises(lambda: cl.StimDesign(160, -4.0, 160, 4.0), ValueError,
                                                   "cl refuses 4 uA", "3.000 uA")
        refusals["cl StimDesign 150 us"] = ok.raises(lambda: cl.StimDesign(150, -1.0, 150, 1.0), ValueError,
                                                     "cl refuses 150 us", "divisible by 20")
        refusals["cl BurstDesign 300 Hz"] = ok.raises(lambda: cl.BurstDesign(2, 300), ValueError,
                                                      "cl refuses 300 Hz", "200")
        guard = safety.SafetyGuard(cb.cl_safety_limits(), 64, be.layout.unusable)
        refusals["labbench guard, cl limits"] = ok.raises(
            lambda: guard.check([stim.ScheduledPulse(0.01, (9,), P(4.0, 100))], 0.0), safety.UnsafeStimulation,
            "SafetyGuard with cl_safety_limits() refuses 4 uA", "amplitude_ua")
        ok(hasattr(cl, "UnsafeOperationError"), "cl exposes UnsafeOperationError")
        out["refusals"] = refusals
        w = be.record(0.2, [])
        ok(w.info["stims_delivered"] == 0, "nothing delivered after the refusals", w.info["stims_delivered"])

        # 4. stop_stimulation cancels stimulation queued on the device
        n = be._neurons
        n.stim(cl.ChannelSet(9), cl.StimDesign(160, -1.0, 160, 1.0), cl.BurstDesign(40, 100))
        w_a = be.record(0.05, [])
        be.stop_stimulation()
        w_b = be.record(0.5, [])
        ok(w_a.info["stims_unexpected"] >= 1, "a burst queued behind the back end's back is seen",
           w_a.info["stims_unexpected"])
        ok(w_b.info["stims_delivered"] == 0, "stop_stimulation() cancelled the rest of it", w_b.info["stims_delivered"])
        out["stop_stimulation"] = {"delivered_before": w_a.info["stims_delivered"],
                                   "delivered_after": w_b.info["stims_delivered"]}

        # 5. pace: a longer run in accelerated time
        t = time.perf_counter()
        long = [be.record(1.0, []) for _ in range(10)]
        wall = time.perf_counter() - t
        out["accelerated_10s"] = {"wall_s": wall, "speed": 10.0 / wall,
                                  "spikes_per_window": [len(w.spikes) for w in long],
                                  "latency_max_s": max(w.info["latency_max_s"] for w in long)}
        total_spikes = sum(len(x.spikes) for x in long)
        t_end = be.time_s
        ok(abs(t_end - (long[-1].start_s + 1.0)) < 1e-6, "time_s is the device clock", (t_end, long[-1].start_s))

        rec_info = info.get("recording") or {}
        be.close()
        be.close()
        be.stop_stimulation()
        ok(not be.is_open, "closed")
        ok.raises(lambda: be.record(0.1, []), RuntimeError, "record() after close() raises", "open")

        # 6. the HDF5 recording saw the same spikes over the last 10 windows
        path = rec_info.get("path")
        ok(bool(path) and os.path.exists(path), "HDF5 recording written", path)
        if path and os.path.exists(path):
            try:
                view = cl.RecordingView(path)
                try:
                    ts = np.asarray(view.spikes.col("timestamp"))
                    lo, hi = long[0].info["start_timestamp"], long[-1].info["stop_timestamp"]
                    in_file = int(((ts >= lo) & (ts < hi)).sum())
                finally:
                    view.close()
                out["recording"] = {"path_name": os.path.basename(path), "spikes_in_file_last_10s": in_file,
                                    "spikes_from_windows_last_10s": total_spikes,
                                    "file_complete": in_file == total_spikes}
                # cl-sdk writes the file from a recording process of its own, which on a busy machine can
                # fall behind its ring buffer and drop data (it logs "Recording fell behind ring buffer ...
                # Some data was lost"): the file then holds fewer spikes, never others than the windows saw
                ok(0 < in_file <= total_spikes and (in_file == total_spikes or in_file >= 0.5 * total_spikes),
                   "HDF5 spikes over 10 s: those of the windows (fewer only if cl-sdk's recorder lost data)",
                   (in_file, total_spikes))
            except Exception as e:
                ok(False, "reading the HDF5 recording", repr(e))

    # 7. open again in the same process (cl's Neurons is a singleton)
    be2 = cb.ClBackend(accelerated_time=True, visualisation=False, seed=99)
    try:
        be2.open()
        w = be2.record(0.5, [stim.ScheduledPulse(0.1, (9,), p)])
        ok(len(w.spikes) > 0 and w.info["stims_delivered"] == 1 and w.start_s == 0.0,
           "a second open in the same process works", window_summary(w))
    finally:
        be2.close()
    return out


def scenario_echo(ok: Checks, cb, safety, stim) -> dict:
    out: dict = {}
    be = cb.ClBackend(accelerated_time=True, visualisation=False)
    info = be.open()
    out["data_source"] = os.environ.get("CL_SDK_DATA_SOURCE")
    try:
        fps, t0 = info["frames_per_second"], info["start_timestamp"]
        marker_el = int(be.electrode_of_channel[MARKER_CHANNEL])
        ok(marker_el == 1, "cl channel 8 is labbench electrode 1 (B1)", marker_el)
        p = stim.BiphasicPulse(1.0, 100)
        usable = [int(e) for e in be.layout.usable_indices if e != marker_el]
        # every usable electrode once, 6 ms apart, in two windows; plus a 50 Hz train on two
        pulses = [stim.ScheduledPulse(0.006 * (k + 1), (e,), p) for k, e in enumerate(usable[:30])]
        pulses += stim.Stimulus((usable[0], usable[1]), p, count=5, rate_hz=50.0, offset_s=0.25).schedule()
        rest = [stim.ScheduledPulse(0.006 * (k + 1), (e,), p) for k, e in enumerate(usable[30:])]
        results = []
        for plist in (pulses, rest):
            w = be.record(0.4, plist)
            results.append(w)
            frames = np.round(w.spikes.time_s * fps).astype(np.int64) + t0     # device timestamps again
            e = w.spikes.electrode
            marker = e == marker_el
            lo, hi = w.info["start_timestamp"], w.info["stop_timestamp"]
            exp_marker = [f for f in range(MARKER_EVERY_FRAMES, hi, MARKER_EVERY_FRAMES) if f >= lo]
            ok(frames[marker].tolist() == exp_marker, "marker spikes (cl channel 8) on electrode 1 every 40 ms",
               (frames[marker][:3].tolist(), exp_marker[:3]))
            echoes = sorted(zip(frames[~marker].tolist(), e[~marker].tolist()))
            want = sorted((lo + int(round(sp.t_s * fps)) + ECHO_DELAY_FRAMES, el)
                          for sp in plist for el in sp.electrodes)
            ok(echoes == want, "one echo per stim, on the stimulated electrode, 2 ms later",
               {"missing": sorted(set(want) - set(echoes))[:5], "extra": sorted(set(echoes) - set(want))[:5]})
            ok(w.info["stims_missing"] == 0 and w.info["stims_unexpected"] == 0, "echo: stims as asked",
               window_summary(w))
        out["windows"] = [window_summary(w) for w in results]
        out["echoes"] = int(sum(int((w.spikes.electrode != marker_el).sum()) for w in results))
        out["bursts"] = int(sum(w.info["bursts"] for w in results))
        ok(out["echoes"] == len(usable) + 10, "echo count: one per usable electrode + 5 x 2 from the train",
           out["echoes"])
    finally:
        be.close()
    return out


def scenario_realtime(ok: Checks, cb, safety, stim) -> dict:
    """Wall-clock time, as on a CL1: numbers only (a loaded machine may queue a stim late,
    which the window reports; that is not a failure of the back end)."""
    out: dict = {"windows": [], "notes": []}
    be = cb.ClBackend(accelerated_time=False, visualisation=False, seed=7)
    info = be.open()
    out["schedule_margin_s"] = info["schedule_margin_s"]
    ok(info["accelerated_time"] is False, "real-time simulator")
    p = stim.BiphasicPulse(1.0, 160)
    try:
        for k in range(6):
            pulses = [] if k % 2 else ([stim.ScheduledPulse(0.0, (9,), p)]
                                       + stim.Stimulus((20,), p, count=5, rate_hz=50.0, offset_s=0.1).schedule())
            w = be.record(0.25, pulses)
            check_window(ok, w, f"real-time window {k}", be.layout.usable)
            out["windows"].append(window_summary(w))
            if w.info["stims_missing"] or w.info["stims_late"]:
                out["notes"].append(f"window {k}: {w.info['stims_late']} plan(s) late, "
                                    f"{w.info['stims_missing']} stim(s) not as asked")
            time.sleep(0.01)                       # the caller's own work between windows
        ws = out["windows"]
        ok(all(not w["gaps"] for w in ws[1::2]), "real time: windows without a pulse at t=0 follow on without a gap",
           [w["gaps"] for w in ws])
        out["latency_max_s"] = max(w["latency_max_s"] for w in ws)
        out["speed"] = sum(w["duration_s"] for w in ws) / sum(w["wall_s"] for w in ws)
    finally:
        be.close()
    return out


def run(source: str) -> dict:
    result: dict = {"python": sys.version.split()[0], "source": source, "ok": False}
    ok = Checks()
    try:
        cb, safety, stim, mea_init = _import_backend()
        result["drivers_mea_init"] = "missing (namespace package)" if mea_init is None else (
            "empty" if not mea_init.strip() else f"{len(mea_init)} chars")
        from importlib.metadata import version
        result["cl_sdk"] = version("cl-sdk")
        with tempfile.TemporaryDirectory() as work:
            os.chdir(work)      # no .env from the repository, recordings land here
            scenario = {"random": scenario_random, "echo": scenario_echo, "realtime": scenario_realtime}[source]
            result[source] = scenario(ok, cb, safety, stim)
            os.chdir(ROOT)
    except Exception as e:
        ok(False, "exception", "".join(traceback.format_exception(e))[-3000:])
    result["checks_passed"] = ok.passed
    result["failures"] = ok.failures
    result["ok"] = not ok.failures
    return result


def run_child(source: str, timeout: float) -> dict:
    """A scenario in a fresh process: cl's Neurons is a per-process singleton, bound at its
    creation to its data source and time policy."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        child_json = f.name
    try:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                                             os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, __file__, "--source", source, "--json", child_json],
                              env=env, capture_output=True, text=True, timeout=timeout)
        try:
            return json.loads(Path(child_json).read_text())
        except (OSError, ValueError):
            return {"ok": False, "failures": [f"{source} child exited {proc.returncode}: "
                                              f"{(proc.stdout + proc.stderr)[-2000:]}"]}
    except subprocess.TimeoutExpired:
        return {"ok": False, "failures": [f"{source} child timed out after {timeout} s"]}
    finally:
        os.unlink(child_json)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--source", choices=("random", "echo", "realtime", "all"), default="all")
    ap.add_argument("--timeout", type=float, default=120.0, help="for each child process (s)")
    args = ap.parse_args(argv)
    os.environ.update({"CL_SDK_ACCELERATED_TIME": "1", "CL_SDK_VISUALISATION": "0"})
    t0 = time.perf_counter()
    if args.source != "all":
        if args.source == "echo":
            os.environ["CL_SDK_DATA_SOURCE"] = "cl_check:echo_source"   # this file, imported by name
        summary = run(args.source)
    else:
        summary = {"python": sys.version.split()[0], "random": run("random")}
        summary["echo"] = run_child("echo", args.timeout)
        summary["realtime"] = run_child("realtime", args.timeout)
        parts = [summary[k] for k in ("random", "echo", "realtime")]
        summary["ok"] = all(p.get("ok") for p in parts)
        summary["failures"] = [f for p in parts for f in p.get("failures", [])]
        summary["cl_sdk"] = summary["random"].get("cl_sdk")
    summary["wall_s"] = time.perf_counter() - t0
    text = json.dumps(summary, default=lambda o: o.tolist() if hasattr(o, "tolist") else repr(o))
    if args.json:
        Path(args.json).write_text(text)
    print("CL_CHECK_JSON " + text, flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
