"""Comparison suites: the TOML file of ``labbench compare`` and the cells it expands to.

A suite names a battery of reservoir measures (entries of :mod:`labbench.compare.battery`),
the seeds, and the devices to measure, each of a device family
(:mod:`labbench.compare.families`)::

    [suite]
    name = "quick"
    description = "every family on its mock, short plans"
    seeds = [0, 1]
    entries = ["memory_capacity", "narma10", "xor", "classification", "kernel", "fading_memory"]
    scale = "quick"          # or "full": each family's plan lengths
    concurrency = 2          # cells at once (default: as many as the cluster's CPUs hold)

    [[devices]]
    name = "esn"             # unique: the device's group in the comparison store
    family = "esn"
    mock = true              # default true in suites
    params = { }             # device parameter overrides
    seeds = [0]              # optional: this device's seeds
    entries = ["memory_capacity"]   # optional: a subset of the suite's entries
    num_cpus = 1             # optional: CPUs each of its cells asks Ray for
    resources = { "device:rig-1" = 1 }   # optional: pins its cells to the node that has the rig

A *cell* is one (device, entry, seed); :meth:`Suite.cells` lists them, leaving out the
entries a device's family cannot measure (kept in :attr:`Suite.not_applicable`, with why,
so a report can show "n/a"). A suite is data: nothing read from it is imported or
evaluated; family and entry names are looked up in the battery's own tables. A bad file
raises :class:`SuiteError` (a :class:`~labbench.spec.protocol.ProtocolError`) naming the
file, the key and what was expected; the CLI prints it on one line and exits with 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..reservoir import NAME_PATTERN
from .protocol import ProtocolError, tomllib

__all__ = ["Suite", "SuiteDevice", "SuiteError", "SuiteInfo", "from_text", "load_suite"]


class SuiteError(ProtocolError):
    """A suite that cannot run: ``source: key: problem`` per problem (see ProtocolError)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SuiteInfo(_Section):
    """The ``[suite]`` table."""

    name: str = Field(..., pattern=f"^{NAME_PATTERN}$", description="name of the suite (in the store's file name)")
    description: str = ""
    seeds: list[int] = Field(..., min_length=1, description="seeds every device is measured with")
    entries: list[str] | None = Field(None, min_length=1, description="battery entries (default: all of them)")
    scale: Literal["quick", "full"] = Field("quick", description="each family's quick or full plan lengths")
    concurrency: int | None = Field(None, gt=0, description="cells at once (default: the cluster's CPUs)")


class SuiteDevice(_Section):
    """One ``[[devices]]`` table."""

    name: str = Field(..., pattern=f"^{NAME_PATTERN}$", description="unique name (the group in the store)")
    family: str = Field(..., description="device family (labbench.compare.families)")
    mock: bool = Field(True, description="run the family's mock (software reservoirs are their own)")
    params: dict[str, Any] = Field(default_factory=dict, description="device parameter overrides")
    seeds: list[int] | None = Field(None, min_length=1, description="this device's seeds (default: the suite's)")
    entries: list[str] | None = Field(None, min_length=1, description="a subset of the suite's entries")
    num_cpus: float | None = Field(None, ge=0, description="CPUs each cell asks Ray for (default 1)")
    resources: dict[str, float] = Field(default_factory=dict,
                                        description="custom Ray resources a cell needs: pins it to a node")


class Suite(_Section):
    """A validated suite; build it with :func:`load_suite` or :func:`from_text`.

    Attributes
    ----------
    suite : SuiteInfo
        The ``[suite]`` table (``entries`` filled in and narrowed by ``--tasks``).
    devices : list of SuiteDevice
        The devices, narrowed by ``--devices``.
    source, text : str
        The file and its text (kept in the store).
    narrowed : dict
        What the command line changed: ``mock``, ``devices``, ``entries``.
    """

    suite: SuiteInfo
    devices: list[SuiteDevice] = Field(..., min_length=1)
    source: str = "<python>"
    text: str = ""
    narrowed: dict[str, Any] = Field(default_factory=dict)
    _entries: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _families: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @property
    def entries(self) -> list[str]:
        """The suite's entry names, in order."""
        return list(self.suite.entries or self._entries)

    def device_entries(self, dev: SuiteDevice) -> list[str]:
        """The entries ``dev`` is asked for (its own subset, else the suite's), in suite order."""
        own = set(dev.entries) if dev.entries is not None else None
        return [e for e in self.entries if own is None or e in own]

    def device_seeds(self, dev: SuiteDevice) -> list[int]:
        """The seeds ``dev`` is measured with (its own, else the suite's)."""
        return list(dev.seeds if dev.seeds is not None else self.suite.seeds)

    @property
    def seeds(self) -> list[int]:
        """Every seed any device uses, sorted."""
        return sorted({s for d in self.devices for s in self.device_seeds(d)})

    def cells(self) -> list[dict[str, Any]]:
        """Every (device, applicable entry, seed), device by device, as the cell dicts of
        :func:`labbench.compare.cells.run_cell`."""
        out = []
        for dev in self.devices:
            applies = self._families[dev.family]["entries"]
            for entry in self.device_entries(dev):
                if entry not in applies:
                    continue
                for seed in self.device_seeds(dev):
                    out.append({"device": dev.name, "family": dev.family, "entry": entry, "seed": int(seed),
                                "scale": self.suite.scale, "mock": dev.mock, "params": dict(dev.params)})
        return out

    @property
    def not_applicable(self) -> list[dict[str, str]]:
        """``{device, entry, why}`` for every entry asked of a device whose family cannot measure it."""
        out = []
        for dev in self.devices:
            fam = self._families[dev.family]
            for entry in self.device_entries(dev):
                if entry not in fam["entries"]:
                    why = fam["why"].get(entry) or f"family {dev.family!r} does not support {entry!r}"
                    out.append({"device": dev.name, "entry": entry, "why": str(why)})
        return out

    def entry_info(self) -> list[dict[str, Any]]:
        """``{name, metric, maximise, unit, paper}`` of every entry of the suite, in order."""
        return [dict(self._entries[e]) for e in self.entries]

    def device_info(self) -> list[dict[str, Any]]:
        """``{name, family, substrate, mock, encoding}`` of every device, in order."""
        return [{"name": d.name, "family": d.family, "substrate": self._families[d.family]["substrate"],
                 "mock": d.mock, "encoding": self._families[d.family]["encoding"]} for d in self.devices]

    def placement(self, dev: SuiteDevice) -> tuple[float, dict[str, float]]:
        """(CPUs, custom resources) each of ``dev``'s cells asks Ray for: the device's own, else
        its family's when it runs real hardware, else one CPU and none."""
        fam = self._families[dev.family]
        cpus = dev.num_cpus if dev.num_cpus is not None else fam.get("num_cpus")
        resources = dict(dev.resources) or ({} if dev.mock else dict(fam.get("resources") or {}))
        return (float(cpus) if cpus is not None else 1.0), resources


def load_suite(path: str | Path, *, mock: bool = False, devices: list[str] | str | None = None,
               entries: list[str] | str | None = None) -> Suite:
    """Read and validate a suite file.

    Parameters
    ----------
    path : path-like
        The ``.toml`` file.
    mock : bool
        Run every device on its mock (``--mock``).
    devices : list of str or "a,b", optional
        Keep only these devices (``--devices``); an unknown name is an error listing the suite's.
    entries : list of str or "x,y", optional
        Keep only these entries (``--tasks``); an unknown name is an error listing the suite's.

    Raises
    ------
    SuiteError
        On a missing file, a TOML syntax error, an unknown key, family or entry, an empty
        list of seeds, duplicate device names, or a narrowing that names nothing known.
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(source, ["no such file"]) from None
    except OSError as exc:
        raise SuiteError(source, [f"cannot read: {exc.strerror}"]) from None
    return from_text(text, source=source, mock=mock, devices=devices, entries=entries)


def from_text(text: str, *, source: str = "<text>", mock: bool = False, devices: list[str] | str | None = None,
              entries: list[str] | str | None = None) -> Suite:
    """Validate a suite given as TOML text (see :func:`load_suite`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(source, [f"TOML syntax error: {exc}"]) from None
    if "protocol" in data and "suite" not in data:
        raise SuiteError(source, ["a protocol ([protocol] table), not a comparison suite: run it with "
                                  "`labbench run`"])
    try:
        suite = Suite.model_validate({**data, "source": source, "text": text})
    except ValidationError as exc:
        raise SuiteError(source, _problems(exc)) from None
    if {"source", "text", "narrowed"} & set(data):
        raise SuiteError(source, [f"{k}: unknown key" for k in ("source", "text", "narrowed") if k in data])
    battery, families = _battery(), _families()
    suite._entries, suite._families = battery, families
    problems = _check(suite, battery, families)
    if problems:
        raise SuiteError(source, problems)
    suite = _narrow(suite, mock=mock, devices=_names(devices), entries=_names(entries))
    problems = _plan_problems(suite, data)
    if problems:
        raise SuiteError(source, problems)
    return suite


def _plan_problems(suite: Suite, data: dict[str, Any]) -> list[str]:
    """Every device's protocol of every entry asked of it, validated as its cells will build it
    (:func:`labbench.compare.families.build_protocol`): a bad device parameter, or a back end
    this machine lacks, is refused now, named as the suite's key, instead of failing cells."""
    from ..compare.families import build_protocol

    index = {d.get("name"): i for i, d in enumerate(data.get("devices") or []) if isinstance(d, dict)}
    problems: list[str] = []
    for dev in suite.devices:
        key = f"devices[{index.get(dev.name, '?')}]"
        seed = suite.device_seeds(dev)[0]
        for entry in suite.device_entries(dev):
            if entry not in suite._families[dev.family]["entries"]:
                continue
            try:
                build_protocol(dev.family, entry, seed=seed, scale=suite.suite.scale, params=dict(dev.params),
                               mock=dev.mock)
            except ProtocolError as exc:
                for p in exc.problems:
                    where, _, what = p.partition(": ")
                    tail = where.split(".params.", 1)[1] if ".params." in where else ""
                    line = (f"{key}.params.{tail}: {what}" if tail else f"{key}: {p}") + \
                        f" (in the {entry!r} protocol of family {dev.family!r}, {exc.source})"
                    if line.split(" (in the ")[0] not in {q.split(" (in the ")[0] for q in problems}:
                        problems.append(line)
            except (KeyError, ValueError) as exc:
                problems.append(f"{key}: entry {entry!r}: {exc.args[0] if exc.args else exc}")
    return problems


def _check(suite: Suite, battery: dict[str, dict[str, Any]], families: dict[str, dict[str, Any]]) -> list[str]:
    """Cross-field rules: known families and entries, unique names and seeds."""
    problems = []
    known = ", ".join(battery)
    for i, e in enumerate(suite.suite.entries or []):
        if e not in battery:
            problems.append(f"suite.entries[{i}]: unknown entry {e!r} (entries: {known})")
    problems += _duplicates(suite.suite.entries or [], "suite.entries")
    problems += _seed_problems(suite.suite.seeds, "suite.seeds")
    names: dict[str, int] = {}
    for i, dev in enumerate(suite.devices):
        key = f"devices[{i}]"
        if dev.name in names:
            problems.append(f"{key}.name: {dev.name!r} is also devices[{names[dev.name]}]'s; give each device "
                            f"its own name")
        names.setdefault(dev.name, i)
        if dev.family not in families:
            problems.append(f"{key}.family: unknown family {dev.family!r} (families: {', '.join(families)})")
            continue
        fam = families[dev.family]
        for j, e in enumerate(dev.entries or []):
            if e not in battery:
                problems.append(f"{key}.entries[{j}]: unknown entry {e!r} (entries: {known})")
            elif suite.suite.entries is not None and e not in suite.suite.entries:
                problems.append(f"{key}.entries[{j}]: {e!r} is not one of suite.entries "
                                f"({', '.join(suite.suite.entries)})")
            elif e not in fam["entries"]:
                why = fam["why"].get(e) or "not supported"
                problems.append(f"{key}.entries[{j}]: family {dev.family!r} cannot measure {e!r} ({why}; it "
                                f"measures {', '.join(fam['entries']) or 'nothing'})")
        if dev.entries is not None:
            problems += _duplicates(dev.entries, f"{key}.entries")
        if dev.seeds is not None:
            problems += _seed_problems(dev.seeds, f"{key}.seeds")
        problems += _nonfinite(dev.params, f"{key}.params")
    return problems


def _narrow(suite: Suite, *, mock: bool, devices: list[str] | None, entries: list[str] | None) -> Suite:
    """``--mock``, ``--devices`` and ``--tasks`` applied to a valid suite."""
    narrowed: dict[str, Any] = {}
    kept = suite.devices
    if devices is not None:
        valid = [d.name for d in suite.devices]
        unknown = [n for n in devices if n not in valid]
        if unknown or not devices:
            raise SuiteError(suite.source, [f"--devices: unknown device {', '.join(map(repr, unknown)) or '(none)'} "
                                            f"(devices of the suite: {', '.join(valid)})"])
        kept = [d for d in suite.devices if d.name in devices]
        narrowed["devices"] = [d.name for d in kept]
    info = suite.suite
    if entries is not None:
        valid = suite.entries
        unknown = [n for n in entries if n not in valid]
        if unknown or not entries:
            raise SuiteError(suite.source, [f"--tasks: unknown entry {', '.join(map(repr, unknown)) or '(none)'} "
                                            f"(entries of the suite: {', '.join(valid)})"])
        keep = [e for e in valid if e in entries]
        info = info.model_copy(update={"entries": keep})
        # a device's own subset is narrowed too; one left with no entry has nothing to measure
        kept = [d if d.entries is None else d.model_copy(update={"entries": [e for e in d.entries if e in keep]})
                for d in kept]
        kept = [d for d in kept if d.entries is None or d.entries]
        narrowed["entries"] = keep
    if mock:
        kept = [d.model_copy(update={"mock": True}) for d in kept]
        narrowed["mock"] = True
    if not kept:
        raise SuiteError(suite.source, ["--tasks: no device of the suite measures "
                                        f"{', '.join(entries or [])}"])
    out = suite.model_copy(update={"suite": info, "devices": kept, "narrowed": narrowed})
    out._entries, out._families = suite._entries, suite._families
    if not out.cells():
        raise SuiteError(suite.source, ["no cell to run: no device's family measures any entry asked of it "
                                        f"({', '.join(out.entries)})"])
    return out


def _names(value: list[str] | str | None) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` as a list of stripped names; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s.strip()]


def _duplicates(items: list[Any], key: str) -> list[str]:
    seen: set[Any] = set()
    dup = [x for x in items if x in seen or seen.add(x)]
    return [f"{key}: {dup[0]!r} is listed twice"] if dup else []


def _seed_problems(seeds: list[int], key: str) -> list[str]:
    bad = [s for s in seeds if s < 0]
    out = [f"{key}: seeds are integers >= 0 (got {bad[0]})"] if bad else []
    return out + _duplicates(seeds, key)


def _nonfinite(node: Any, key: str) -> list[str]:
    import math

    if isinstance(node, float) and not math.isfinite(node):
        return [f"{key}: expected a finite number (got {node!r})"]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _nonfinite(v, f"{key}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _nonfinite(v, f"{key}[{i}]")]
    return []


def _problems(exc: ValidationError) -> list[str]:
    """``key: what was wrong (got value)``, one per pydantic error."""
    out = []
    for err in exc.errors():
        key = ""
        for item in err["loc"]:
            key = f"{key}[{item}]" if isinstance(item, int) else (f"{key}.{item}" if key else str(item))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "too_short" and key.endswith(("seeds", "entries", "devices")):
            msg = "must not be empty"
        if err["type"] == "string_pattern_mismatch":
            msg = f"expected a simple name matching {NAME_PATTERN}"
        got = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        out.append(f"{key or '(top level)'}: {msg}{shown}")
    return out


def _battery() -> dict[str, dict[str, Any]]:
    """{entry: {name, metric, maximise, unit, paper}}, in battery order (:mod:`labbench.compare.battery`)."""
    from ..compare.battery import ENTRIES

    return {name: e.describe() for name, e in ENTRIES.items()}


def _families() -> dict[str, dict[str, Any]]:
    """{family: {name, substrate, encoding, entries, why, num_cpus, resources}}
    (:mod:`labbench.compare.families`); ``why`` says why an omitted entry does not apply."""
    from ..compare.families import FAMILIES

    return {name: {"name": name, "substrate": f.substrate, "encoding": f.encoding, "entries": list(f.entries),
                   "why": dict(f.omitted), "num_cpus": getattr(f, "num_cpus", None),
                   "resources": dict(getattr(f, "resources", None) or {})} for name, f in FAMILIES.items()}
