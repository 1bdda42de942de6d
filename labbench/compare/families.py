"""The device families of ``labbench compare`` and, for each, how every battery entry runs on it.

A family is one kind of substrate (an ESN, a spiking liquid, a culture on an MEA, a bucket
of water, an event camera feeding a liquid, a Loihi chip), always run on its mock in the
mock suite. Its :class:`Plan` for an entry names the tuned protocol in ``protocols/`` the
entry starts from (picking one device when the file has several side by side), the
overrides that turn that protocol into the entry (``task.*`` when the family has no protocol
of its own for it), and the ``quick`` overrides that shorten the run for ``scale = "quick"``.
Overrides are dotted keys, as ``labbench run --set`` takes them. Nothing here encodes
inputs: every family uses its driver's own encoding.

An entry a family does not run is listed in :attr:`Family.omitted` with the reason.

Example
-------
>>> proto = build_protocol("esn", "memory_capacity", seed=0, scale="quick")   # doctest: +SKIP
>>> proto.source                                                               # doctest: +SKIP
'.../protocols/memory_capacity.toml'
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .battery import ENTRIES

if TYPE_CHECKING:
    from ..spec.protocol import Protocol

__all__ = ["FAMILIES", "PROTOCOLS", "Family", "Plan", "Probe", "build_protocol", "effective_table", "get_family",
           "plan_table"]

#: the repository's protocol files, which the plans start from
PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"

Scale = Literal["quick", "full"]


@dataclass(frozen=True)
class Probe:
    """How a probe entry (kernel, fading memory) drives the device, in rows of the device.

    Attributes
    ----------
    streams : int
        Kernel: input streams ``m`` (the rank is at most ``m``).
    rows : int
        Kernel: rows of each stream (its end state is scored). Fading: rows of the common input.
    recent : int
        Kernel, generalisation rank: the last rows, identical in every stream (the streams differ
        only in their remote past, Büsing et al. 2010).
    prefix : int
        Fading: rows of the two different input histories that set the two initial states.
    rtol : float
        Relative singular-value threshold of the ranks.
    fraction : float
        Fading: the distance, relative to the initial one, that counts as forgotten.
    """

    streams: int = 40
    rows: int = 100
    recent: int = 20
    prefix: int = 100
    rtol: float = 0.01
    fraction: float = 0.01


@dataclass(frozen=True)
class Plan:
    """How one battery entry runs on one family.

    Attributes
    ----------
    protocol : str
        File in ``protocols/`` the entry starts from.
    device : str or None
        When the file has several devices side by side (``[[devices]]``), the driver (or
        name) of the one this family runs; ``None``: the file's device(s) as they are (a
        chain keeps every stage).
    overrides : dict
        Dotted keys applied at every scale (what makes the file into this entry).
    quick : dict
        Dotted keys applied on top for ``scale = "quick"`` (shorter runs).
    probe : Probe or None
        The probe settings of a probe entry (the protocol then gives the device and the task
        whose inputs the probe streams are drawn from).
    quick_probe : Probe or None
        The probe settings for ``scale = "quick"`` (default: ``probe``).
    note : str
        Why the plan is what it is (shown in reports).
    """

    protocol: str
    device: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    probe: Probe | None = None
    quick_probe: Probe | None = None
    note: str = ""

    def probe_for(self, scale: Scale) -> Probe | None:
        """The probe settings at ``scale``."""
        return self.quick_probe if scale == "quick" and self.quick_probe is not None else self.probe


@dataclass(frozen=True)
class Family:
    """One device family of the suite.

    Attributes
    ----------
    name : str
        ``esn``, ``lsm``, ``mea``, ``bucket``, ``dvs_lsm`` or ``loihi``.
    substrate : str
        What the reservoir is made of.
    encoding : str
        How the driver turns task inputs into drive (one line; the driver's own encoding).
    driver : str
        The driver of the family's reservoir (the last stage of a chain).
    plans : dict
        ``{entry: Plan}`` for every entry the family runs, in battery order.
    omitted : dict
        ``{entry: reason}`` for the entries it does not run.
    """

    name: str
    substrate: str
    encoding: str
    driver: str
    plans: dict[str, Plan]
    omitted: dict[str, str] = field(default_factory=dict)

    @property
    def entries(self) -> list[str]:
        """The entries the family runs, in battery order."""
        return [e for e in ENTRIES if e in self.plans]

    def plan(self, entry: str) -> Plan:
        """The plan of ``entry``; ``KeyError`` saying why the family does not run it."""
        if entry in self.plans:
            return self.plans[entry]
        if entry in self.omitted:
            raise KeyError(f"family {self.name!r} does not run entry {entry!r}: {self.omitted[entry]}")
        raise KeyError(f"unknown battery entry {entry!r} (known: {', '.join(ENTRIES)})")

    def describe(self) -> dict[str, Any]:
        """JSON-able: name, substrate, encoding, driver, entries and omitted entries."""
        return {"name": self.name, "substrate": self.substrate, "encoding": self.encoding, "driver": self.driver,
                "entries": self.entries, "omitted": dict(self.omitted)}


# -- the plans -------------------------------------------------------------------------------------
# Measured on the 2-core development machine (issue 19), one cell per core, numba's caches warm:
# the full battery takes about 140 s of CPU per seed, the quick one about 40 s (wall time per
# cell 0.1-14 s full, 0.1-4 s quick). A fresh machine pays once for numba's compilations and the
# espeak-ng corpus. Software families are cheap enough to run their tuned protocols unchanged;
# quick shortens the slow mocks (MEA, bucket, Loihi) and the classification corpora.

_ESN_MC = "memory_capacity.toml"
_SLOW_PROBE_QUICK = Probe(streams=20, rows=40, recent=10, prefix=40)

#: spoken "zero" / "one", as in the bucket of Fernando & Sojakka 2003, speaker-independent
_ZERO_ONE = {"task.digits": [0, 1]}
#: 40 speakers, 3 repeats, 2 digits: 180 training utterances (30 speakers), 60 test ones (10 speakers)
_ZERO_ONE_FULL = {**_ZERO_ONE, "run.train": 18000, "run.test": 6000, "readouts.0.refit_every": 60}
#: 12 speakers (4 held out), 2 repeats: 32 training and 16 test utterances
_ZERO_ONE_QUICK = {"task.n_speakers": 12, "task.n_test_speakers": 4, "task.repeats": 2, "run.train": 3200,
                   "run.test": 1600, "run.block": 1600, "readouts.0.refit_every": 16}

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family(
        "esn", "software", "analogue: the input, through random input weights, drives tanh units", "esn",
        plans={
            "memory_capacity": Plan(_ESN_MC, note="protocols/memory_capacity.toml exactly, at every scale"),
            "narma10": Plan("narma10.toml", note="narma10.toml as it is (3,200 rows) at every scale"),
            "xor": Plan("narma10.toml", overrides={"task": {"name": "xor"}, "run.washout": 100, "run.train": 4000,
                                                   "run.test": 2000},
                        note="the NARMA-10 ESN (500 units, input scaling 0.1) on temporal XOR"),
            "classification": Plan("spoken_digits_esn.toml", overrides=_ZERO_ONE_FULL, quick=_ZERO_ONE_QUICK,
                                   note="spoken_digits_esn.toml on 'zero' / 'one'"),
            "kernel": Plan(_ESN_MC, probe=Probe(streams=60), quick_probe=Probe(streams=30)),
            "fading_memory": Plan(_ESN_MC, probe=Probe(rows=1000),
                                  note="spectral radius 0.99: the distance shrinks ~1 % a row, so 1,000 rows"),
        }),
    Family(
        "lsm", "software (spiking)", "Poisson rate code (rates from the input) or injected current, per the "
        "protocol's input_mode", "lsm",
        plans={
            "memory_capacity": Plan("memory_capacity_lsm.toml"),
            "narma10": Plan("narma10_lsm.toml"),
            "xor": Plan("narma10_lsm.toml",
                        overrides={"task": {"name": "xor"}, "run.washout": 100, "run.train": 4000, "run.test": 2000},
                        note="the NARMA-10 LSM (Poisson rate code, bits at 0 or 50 Hz) on temporal XOR"),
            "classification": Plan("spoken_digits_lsm.toml", overrides=_ZERO_ONE_FULL, quick=_ZERO_ONE_QUICK,
                                   note="spoken_digits_lsm.toml on 'zero' / 'one'"),
            "kernel": Plan("memory_capacity_lsm.toml", probe=Probe(), quick_probe=Probe(streams=30)),
            "fading_memory": Plan("memory_capacity_lsm.toml", probe=Probe(rows=300)),
        }),
    Family(
        "mea", "biological", "pulses: each input channel's value sets the biphasic pulses per row on its "
        "electrode group", "mea",
        plans={
            "memory_capacity": Plan("mea_memory_capacity.toml", quick={"run.train": 3000, "run.test": 1000}),
            "narma10": Plan("mea_memory_capacity.toml",
                            overrides={"task": {"name": "narma", "order": 10}, "device.params.input_low": 0.0,
                                       "device.params.input_high": 0.5, "run.train": 6000, "run.test": 2000},
                            quick={"run.train": 3000, "run.test": 1000},
                            note="the memory-capacity culture on NARMA-10, its pulse code spanning NARMA's [0, 0.5]"),
            "xor": Plan("mea_xor.toml", quick={"run.train": 3000, "run.test": 1000},
                        note="mea_xor.toml (bits held 5 rows = 100 ms) at delays 0, 1, 2 bits"),
            "kernel": Plan("mea_memory_capacity.toml", probe=Probe(streams=30, rows=50, recent=10, prefix=50),
                           quick_probe=_SLOW_PROBE_QUICK),
            "fading_memory": Plan("mea_memory_capacity.toml", probe=Probe(rows=200, prefix=50),
                                  quick_probe=_SLOW_PROBE_QUICK),
        },
        omitted={"classification": "no tuned speech encoding onto electrodes, and the corpus (24,000 rows of 20 ms) "
                                   "is 8 minutes of culture time per seed"}),
    Family(
        "bucket", "physical", "motor drive: each input channel is one motor's PWM duty in [0, 1]; features are "
        "pooled camera frames", "bucket",
        plans={
            "memory_capacity": Plan("bucket_memory_capacity.toml",
                                    quick={"run.train": 3000, "run.test": 1000}),
            "narma10": Plan("bucket_memory_capacity.toml",
                            overrides={"task": {"name": "narma", "order": 10}, "run.train": 6000, "run.test": 2000},
                            quick={"run.train": 3000, "run.test": 1000},
                            note="the memory-capacity bucket (one motor) on NARMA-10"),
            "xor": Plan("bucket_xor.toml",
                        overrides={"task": {"name": "xor", "hold": 15}, "device.params.motors.n_motors": 1,
                                   "run.train": 6000, "run.test": 2000},
                        quick={"run.train": 3000, "run.test": 1000},
                        note="bucket_xor.toml's tank on temporal XOR: one motor, bits held 15 frames (600 ms, 2.4 periods "
                             "of the 4 Hz motor; at 2 frames the bucket scores chance)"),
            "classification": Plan("bucket_speech.toml", device="bucket", overrides={"run.train": 5400},
                                   quick={"task.n_speakers": 12, "task.n_test_speakers": 4, "task.repeats": 2,
                                          "run.train": 960, "run.test": 480, "run.block": 480,
                                          "readouts.0.refit_every": 16},
                                   note="bucket_speech.toml's bucket: band envelopes of 'zero' / 'one' on 4 motors"),
            "kernel": Plan("bucket_memory_capacity.toml", probe=Probe(streams=30, rows=50, recent=10, prefix=50),
                           quick_probe=_SLOW_PROBE_QUICK),
            "fading_memory": Plan("bucket_memory_capacity.toml", probe=Probe(rows=200, prefix=50),
                                  quick_probe=Probe(rows=100, prefix=40)),
        }),
    Family(
        "dvs_lsm", "event camera → spiking", "events→counts: the retina's events counted per pooled pixel "
        "and row, fed as spike counts to the liquid", "lsm",
        plans={
            "classification": Plan("dvs_lsm_digits.toml",
                                   quick={"task.n_test": 100, "run.train": 14000, "run.test": 7000,
                                          "run.block": 1400},
                                   note="dvs_lsm_digits.toml: saccade digits, DVS retina chained into an LSM"),
            "kernel": Plan("dvs_lsm_digits.toml", probe=Probe(streams=30, rows=140, recent=70),
                           quick_probe=Probe(streams=20, rows=140, recent=70),
                           note="streams of two saccade digits (70 rows each) through the chain; generalisation: "
                                "the same second digit"),
            "fading_memory": Plan("dvs_lsm_digits.toml", probe=Probe(rows=280, prefix=70),
                                  quick_probe=Probe(rows=140, prefix=70),
                                  note="two different digits, then the same digits, through the chain"),
        },
        omitted={e: "an event camera sees images, not a scalar stream: its scalar tasks would measure the "
                    "camera's scene model, not the chain" for e in ("memory_capacity", "narma10", "xor")}),
    Family(
        "loihi", "neuromorphic", "spikes: the input as a Poisson (or count) spike code onto the quantised LSM "
        "of the Loihi emulator", "loihi",
        plans={
            "memory_capacity": Plan("loihi_memory_capacity.toml", device="loihi",
                                    overrides={"device.params.compare_float": False},
                                    quick={"run.train": 3000, "run.test": 1000}),
            "narma10": Plan("loihi_narma10.toml", device="loihi", overrides={"device.params.compare_float": False},
                            quick={"run.train": 3000, "run.test": 1000}),
            "xor": Plan("loihi_narma10.toml", device="loihi",
                        overrides={"device.params.compare_float": False, "task": {"name": "xor"},
                                   "run.washout": 100, "run.train": 4000, "run.test": 2000},
                        quick={"run.train": 3000, "run.test": 1000},
                        note="the NARMA-10 Loihi network on temporal XOR"),
            "classification": Plan("loihi_spoken_digits.toml", device="loihi",
                                   overrides={"device.params.compare_float": False, **_ZERO_ONE_FULL},
                                   quick=_ZERO_ONE_QUICK,
                                   note="loihi_spoken_digits.toml's Loihi network on 'zero' / 'one'"),
            "kernel": Plan("loihi_memory_capacity.toml", device="loihi",
                           overrides={"device.params.compare_float": False}, probe=Probe(),
                           quick_probe=_SLOW_PROBE_QUICK),
            "fading_memory": Plan("loihi_memory_capacity.toml", device="loihi",
                                  overrides={"device.params.compare_float": False}, probe=Probe(rows=300),
                                  quick_probe=_SLOW_PROBE_QUICK),
        }),
)}


def get_family(name: str) -> Family:
    """The family called ``name``; ``KeyError`` naming the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown device family {name!r} (known: {', '.join(FAMILIES)})") from None


def plan_table(family: str, entry: str, *, seed: int = 0, scale: Scale = "quick",
               params: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, str, dict[str, Any]]:
    """The base table, its source, its text and the overrides of one cell's protocol.

    Parameters
    ----------
    family, entry : str
        The family and the battery entry.
    seed : int
        ``protocol.seed`` (the task data's seed).
    scale : {"quick", "full"}
        ``quick`` applies the plan's quick overrides.
    params : dict, optional
        Device parameters overriding the plan's, for the family's reservoir (nested tables
        merge key by key). In a chain, a key naming another stage (``retina``) holds that
        stage's parameters.
    extra : dict, optional
        Dotted overrides applied last (e.g. ``{"task.delay": 1}``).

    Returns
    -------
    table : dict
        The protocol file parsed, reduced to the plan's device when it names one.
    source : str
        The file's path.
    text : str
        The file's text.
    overrides : dict
        Dotted keys, in the order they apply: the plan's, the quick ones, the seed, the
        device parameters, ``extra``.
    """
    if scale not in ("quick", "full"):
        raise ValueError(f"scale must be 'quick' or 'full' (got {scale!r})")
    fam = get_family(family)
    plan = fam.plan(entry)
    path = PROTOCOLS / plan.protocol
    text = path.read_text(encoding="utf-8")
    table = tomllib.loads(text)
    if plan.device is not None and isinstance(table.get("devices"), list):
        picked = [d for d in table["devices"] if plan.device in (d.get("name"), d.get("driver"))]
        if len(picked) != 1:
            raise KeyError(f"{path}: {len(picked)} devices match {plan.device!r}")
        table.pop("devices")
        table["device"] = picked[0]
    overrides: dict[str, Any] = {}
    for key, value in {**plan.overrides, **(plan.quick if scale == "quick" else {})}.items():
        if isinstance(value, dict) and key in ("task",):
            # a whole new task table: replace the file's, do not merge into it
            table[key] = copy.deepcopy(value)
        else:
            overrides[key] = value
    overrides["protocol.seed"] = int(seed)
    overrides.update(_device_overrides(table, fam, params or {}))
    overrides.update(extra or {})
    return table, str(path), text, overrides


def build_protocol(family: str, entry: str, *, seed: int = 0, scale: Scale = "quick",
                   params: dict[str, Any] | None = None, mock: bool = True,
                   extra: dict[str, Any] | None = None) -> Protocol:
    """The validated protocol of one cell (see :func:`plan_table` for the parameters).

    ``mock=True`` runs every device on its mock (``--mock``). Raises
    :class:`~labbench.spec.protocol.ProtocolError` naming the key when the result is invalid.
    """
    from ..spec.protocol import from_dict

    table, source, text, overrides = plan_table(family, entry, seed=seed, scale=scale, params=params, extra=extra)
    return from_dict(table, source=source, text=text, overrides=overrides, mock=mock)


def effective_table(proto: Protocol) -> str:
    """The protocol as it ran: its table with every override applied, as JSON text.

    ``labbench.spec.protocol.from_dict(json.loads(text))`` rebuilds the same protocol.
    """
    table = proto.table()
    for key, value in proto.overrides.items():
        _set_dotted(table, key, value)
    return json.dumps(table, indent=1, default=str)


def _device_overrides(table: dict[str, Any], fam: Family, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as dotted overrides of the family's device (the last of a chain, or a named stage)."""
    if "device" in table:
        groups = {table["device"].get("name") or table["device"]["driver"]: "device"}
        main = "device"
    else:
        devs = table.get("devices", [])
        groups = {d.get("name") or d["driver"]: f"devices.{i}" for i, d in enumerate(devs)}
        main = f"devices.{len(devs) - 1}"
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in groups and groups[key] != main and isinstance(value, dict):
            out.update(_flatten(f"{groups[key]}.params", value))
        else:
            out.update(_flatten(f"{main}.params.{key}", value) if isinstance(value, dict)
                       else {f"{main}.params.{key}": value})
    return out


def _flatten(prefix: str, value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        out.update(_flatten(f"{prefix}.{k}", v) if isinstance(v, dict) and v else {f"{prefix}.{k}": v})
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data[a][b]... = value`` for ``key = "a.b..."``; a number indexes an array of tables."""
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[parts[-1]] = value
