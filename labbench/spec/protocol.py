"""Protocols: TOML files validated into typed objects before anything starts.

A protocol names a device, a task, the run's phases and its readouts::

    [protocol]
    name = "narma10"
    seed = 42
    [device]
    driver = "esn"
    params = { units = 500, spectral_radius = 0.9, leak = 0.3 }
    [task]
    name = "narma"
    [run]
    washout = 200
    train = 2000
    test = 1000
    block = 256
    [[readouts]]
    kind = "ridge"
    alpha = 1e-6

A bad file raises :class:`ProtocolError` naming the file, the dotted key, the value
and what was expected; the CLI turns it into exit code 2, and no store is created.

A protocol is data: nothing read from it (or from ``--set``) is imported, evaluated or
unpickled. Drivers are looked up by name (:func:`labbench.reservoir.get_driver`),
estimators in an allow-list (:data:`labbench.readouts.ESTIMATORS`). Validation also
refuses what the run would only hit later: NaN or infinite numbers, names that become
store groups or paths but are not simple names, a back end this machine does not have,
and a run whose arrays cannot fit in memory or on the store's disk (:func:`check_machine`).
"""

from __future__ import annotations

import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..reservoir import NAME_PATTERN, Reservoir, get_driver
from .sweep import SweepSpec, flatten_sweep_table
from .sweep import trials as make_trials
from ..tasks import TASKS, Task


class ProtocolError(Exception):
    """A protocol that cannot run, with every problem found.

    Attributes
    ----------
    source : str
        File (or ``<python>``) the protocol came from.
    problems : list of str
        One line per problem: ``key: what was wrong (got value)``.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProtocolInfo(_Section):
    name: str = Field(..., min_length=1, description="name of the protocol, used in the store's file name")
    seed: int = Field(0, ge=0, description="seed of the task data (device seeds live in device.params)")
    description: str = ""


class DeviceSection(_Section):
    driver: str = Field(..., description="registered driver name (see `labbench devices`)")
    name: str | None = Field(None, description="group name in the store (default: the driver name)")
    mock: bool = Field(False, description="use the driver's mock instead of real hardware")
    params: dict[str, Any] = Field(default_factory=dict, description="driver parameters")
    # where and how the device's Ray actor runs (see docs/cluster.md)
    num_cpus: float | None = Field(
        None, ge=0, description="CPUs reserved for the device's actor (default 1, or an equal share when the "
                                "run has more devices than the cluster has CPUs)")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description='custom Ray resources the device needs, e.g. {"device:rig-1" = 1}: pins it to that node')
    max_restarts: int = Field(3, ge=0, description="restarts of the device's actor after its process dies")
    timeout_s: float = Field(120.0, gt=0, description="longest wait for one block before the device counts as down")
    input: str | None = Field(
        None, description="name of another device of the run whose features are this device's inputs, row for "
                          "row (a chain: e.g. a DVS retina feeding an LSM); default: the task's inputs")

    @property
    def group(self) -> str:
        return self.name or self.driver


class RunSection(_Section):
    washout: int = Field(0, ge=0, description="samples run but neither trained on nor scored")
    train: int = Field(..., gt=0, description="samples the readouts are trained on")
    test: int = Field(0, ge=0, description="samples the readouts are scored on")
    block: int = Field(1000, gt=0, le=1_000_000, description="samples per device call and per store chunk")
    closed_loop: Literal["actor", "bench"] = Field(
        "actor", description="closed-loop tasks only (ignored otherwise): where the policy runs, in the device's "
                             "actor (no round trip per block) or in the bench's process")

    @property
    def total(self) -> int:
        return self.washout + self.train + self.test


class ReadoutSection(BaseModel):
    """One ``[[readouts]]`` table: an optional unsupervised module, pooling, a supervised readout.

    Every key other than ``kind``, ``name``, ``module``, ``pool`` and ``n_slices`` is a
    hyperparameter of the readout. ``module`` is a table ``{kind = "stdp" | "som", ...}``
    of the module's hyperparameters; it learns (without labels) on train rows and turns
    every row into the features the readout sees. ``pool`` (sequence tasks only) turns the
    rows of each sample into one vector: ``last``, ``mean``, ``sum`` or ``slices``.
    """

    model_config = ConfigDict(extra="allow")
    kind: str = Field("ridge", description="readout kind (see labbench.readouts.READOUT_KINDS)")
    name: str | None = Field(None, description="name in the store (default: the kind)")
    module: dict[str, Any] | None = Field(None, description="unsupervised module before the readout")
    pool: Literal["last", "mean", "sum", "slices"] | None = Field(
        None, description="per-sample pooling for sequence tasks (default: sum after a module, else mean)")
    n_slices: int = Field(4, ge=1, description="time slices for pool = 'slices'")
    feedback_steps: int = Field(
        0, ge=0, description="FORCE only: after the stream, learn this many more steps with the readout's output "
                             "fed back as the reservoir's input (Sussillo & Abbott 2009), before the free run")

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def describe(self) -> dict[str, Any]:
        """JSON-able configuration, as stored in the readout's group."""
        out: dict[str, Any] = {"kind": self.kind, "name": self.label, **self.params}
        if self.module is not None:
            out["module"] = dict(self.module)
        if self.pool is not None:
            out["pool"] = self.pool
            if self.pool == "slices":
                out["n_slices"] = self.n_slices
        if self.feedback_steps:
            out["feedback_steps"] = self.feedback_steps
        return out


class StoreSection(_Section):
    root: str = Field("runs", description="directory the run store is created in")


class Protocol(_Section):
    """A validated protocol. Build it from TOML with :func:`load`, or directly in Python.

    One device is a ``[device]`` table; several devices that receive the same task input
    in one run are a ``[[devices]]`` array (each with its own ``name`` when two share a
    driver). :attr:`all_devices` is the list either way.
    """

    protocol: ProtocolInfo
    device: DeviceSection | None = None
    devices: list[DeviceSection] = Field(default_factory=list)
    task: Task
    run: RunSection
    readouts: list[ReadoutSection] = Field(default_factory=lambda: [ReadoutSection()])
    store: StoreSection = Field(default_factory=StoreSection)
    sweep: SweepSpec | None = None
    # provenance, filled by load()
    source: str = "<python>"
    text: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict)
    #: the parsed table before overrides (sweep trials are validated from it)
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    #: the driver classes the device names resolved to when the protocol was validated (from the
    #: installed entry points or register_driver, never from the protocol), so that a Ray worker
    #: that runs the protocol gets the same class without a registry of its own
    _drivers: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _one_device_form(self) -> Protocol:
        if self.device is not None and self.devices:
            raise ValueError("give either one [device] table or a [[devices]] array, not both")
        if self.device is None and not self.devices:
            raise ValueError("no device: add a [device] table (or [[devices]] for several)")
        return self

    @property
    def all_devices(self) -> list[DeviceSection]:
        """Every device of the run, in protocol order."""
        return [self.device] if self.device is not None else list(self.devices)

    def driver_class(self, device: DeviceSection | None = None) -> type[Reservoir]:
        """The driver class of ``device`` (default: the first), as resolved when the protocol was validated."""
        dev = device if device is not None else self.all_devices[0]
        cls = self._drivers.get(dev.driver)
        return cls if cls is not None else get_driver(dev.driver)

    def device_params(self, device: DeviceSection | None = None) -> dict[str, Any]:
        """Driver parameters with ``n_inputs`` taken from the task when the driver has it.

        A chained device (``input = "<device>"``) gets the feature width of the device it
        reads, when that driver can say it without being built (:meth:`Reservoir.footprint`);
        otherwise the bench sets it once the upstream device is open.
        """
        dev = device if device is not None else self.all_devices[0]
        cls = self.driver_class(dev)
        params = dict(dev.params)
        if "n_inputs" in cls.Params.model_fields and "n_inputs" not in params:
            width = self.task.n_inputs if dev.input is None else self.chain_width(dev)
            if width is not None:
                params["n_inputs"] = width
        if dev.mock:
            params = cls.mock_params(params)
        return params

    def upstream(self, device: DeviceSection) -> DeviceSection | None:
        """The device whose features ``device`` reads (``None``: it reads the task's inputs)."""
        if device.input is None:
            return None
        return next((d for d in self.all_devices if d.group == device.input), None)

    def chain_width(self, device: DeviceSection) -> int | None:
        """The feature width of ``device``'s upstream device, if its driver can say it unbuilt."""
        up = self.upstream(device)
        if up is None or up is device:
            return None
        try:
            return self.driver_class(up).footprint(self.device_params(up))[0]
        except Exception:            # invalid upstream parameters are reported on the upstream's own key
            return None

    def resolved(self) -> dict[str, Any]:
        """JSON-able view of everything that was validated (for provenance)."""
        out = self.model_dump(mode="json", exclude={"text", "source", "overrides", "task"})
        out["task"] = self.task.model_dump(mode="json")
        if self.device is not None:
            out["device"]["params"] = self.device_params()
        for i, dev in enumerate(self.devices):
            out["devices"][i]["params"] = self.device_params(dev)
        out["readouts"] = [r.describe() for r in self.readouts]
        return out

    def table(self) -> dict[str, Any]:
        """The protocol as the nested dict it was validated from, before overrides (JSON-able).

        With :attr:`overrides`, :func:`from_dict` rebuilds the same protocol from it; the
        run store keeps it so that ``labbench resume`` works for protocols built in Python.
        """
        import copy

        if self._raw:
            return copy.deepcopy(self._raw)
        out = self.model_dump(mode="json", exclude={"text", "source", "overrides", "task"}, exclude_none=True)
        out["task"] = self.task.model_dump(mode="json")
        out["readouts"] = [ro.describe() for ro in self.readouts]
        if not out.get("devices"):
            out.pop("devices", None)
        return out

    def describe_devices(self) -> str:
        """``"esn"`` or ``"esn, lsm, culture (mea)"``: the devices as people read them."""
        return ", ".join(d.driver if d.group == d.driver else f"{d.group} ({d.driver})" for d in self.all_devices)


def sweep_base(proto: Protocol) -> tuple[dict[str, Any], str]:
    """The protocol's parsed table without its ``[sweep]`` (what each trial overrides)."""
    base = proto.table()
    base.pop("sweep", None)
    return base, proto.source


# ---------------------------------------------------------------------------------------------
def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``dotted.key=value``; the value is read as TOML, falling back to a bare string."""
    if "=" not in item:
        raise ProtocolError("--set", [f"{item!r}: expected dotted.key=value"])
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ProtocolError("--set", [f"{item!r}: empty key"])
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _apply(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b]... = value`` for ``key = "a.b..."``; a number indexes an array of
    tables (``devices.1.params.units``)."""
    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                raise ProtocolError("--set", [f"{key}: {part!r} is not an index of the {len(node)}-entry array"])
            node = node[int(part)]
            continue
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, (dict, list)):
            raise ProtocolError("--set", [f"{key}: {part!r} is a value, not a table"])
        node = nxt
    if isinstance(node, list):
        raise ProtocolError("--set", [f"{key}: set a key of one entry, e.g. {key.rsplit('.', 1)[0]}.0.<key>"])
    node[parts[-1]] = value


def _fmt_loc(prefix: str, loc: tuple[Any, ...]) -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _problems(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        key = _fmt_loc(prefix, loc) or prefix or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        shown = "" if err["type"] in ("missing",) or isinstance(got, dict) else f" (got {got!r})"
        out.append(f"{key}: {msg}{shown}")
    return out


def from_dict(data: dict[str, Any], *, source: str = "<python>", text: str = "",
              overrides: dict[str, Any] | None = None, mock: bool = False) -> Protocol:
    """Validate a protocol given as nested dicts (what a TOML file parses into).

    ``mock=True`` (``--mock``) sets every device's ``mock`` (recorded as overrides) before
    anything is checked, so a protocol for hardware this machine lacks validates on its mock.
    """
    import copy

    raw = copy.deepcopy(data)
    data = copy.deepcopy(data)
    overrides = dict(overrides or {})
    if mock:
        devices = data.get("devices") if isinstance(data.get("devices"), list) else None
        if devices and "device" not in data:
            overrides.update({f"devices.{i}.mock": True for i in range(len(devices))})
        else:
            overrides["device.mock"] = True
    for key, value in overrides.items():
        _apply(data, key, value)
    problems: list[str] = _nonfinite(data)
    if isinstance(data.get("sweep"), dict):
        data["sweep"] = flatten_sweep_table(data["sweep"])

    task_raw = data.pop("task", None)
    task: Task | None = None
    if not isinstance(task_raw, dict):
        problems.append("task: missing [task] table")
    elif "name" not in task_raw:
        problems.append(f"task.name: missing (known tasks: {', '.join(sorted(TASKS))})")
    elif task_raw["name"] not in TASKS:
        problems.append(f"task.name: unknown task {task_raw['name']!r} (known tasks: {', '.join(sorted(TASKS))})")
    else:
        try:
            task = TASKS[task_raw["name"]].model_validate(task_raw)
        except ValidationError as exc:
            problems += _problems(exc, "task")

    # validate everything but the task with a placeholder, then check cross-field rules
    try:
        # an invalid task was reported above; validate the other sections around a stand-in
        skeleton = Protocol.model_validate({**data, "task": task if task is not None else _placeholder()})
    except ValidationError as exc:
        problems += [p for p in _problems(exc) if not p.startswith("task")]
        raise ProtocolError(source, problems) from None
    proto = skeleton.model_copy(update={"source": source, "text": text, "overrides": overrides})
    proto._raw = raw
    proto._drivers = {}
    problems += _bad_names(proto)

    groups: dict[str, str] = {}
    for key, dev in _device_keys(proto):
        if dev.group in groups:
            problems.append(f"{key}.name: device group {dev.group!r} is also {groups[dev.group]}'s; give each "
                            f"device its own name")
        groups.setdefault(dev.group, key)
        try:
            cls = get_driver(dev.driver)
        except (KeyError, TypeError) as exc:
            problems.append(f"{key}.driver: {exc.args[0]}")
            continue
        proto._drivers[dev.driver] = cls
        if task is None:
            continue
        try:
            params = cls.Params.model_validate(proto.device_params(dev))
        except ValidationError as exc:
            problems += _problems(exc, f"{key}.params")
        else:
            n_in = getattr(params, "n_inputs", task.n_inputs)
            if dev.input is None and n_in != task.n_inputs:
                problems.append(f"{key}.params.n_inputs: task {task.name!r} has {task.n_inputs} input(s) "
                                f"(got {n_in})")
            width = proto.chain_width(dev) if dev.input is not None else None
            if width is not None and n_in != width:
                problems.append(f"{key}.params.n_inputs: device {dev.input!r} gives {width} feature(s) per row "
                                f"(got {n_in})")
    problems += _chain_problems(proto, task)
    problems += check_readouts(proto.readouts)
    if task is not None:
        min_washout = int(getattr(task, "min_washout", 0) or 0)
        if proto.run.washout < min_washout:
            problems.append(f"run.washout: must be at least {min_washout} for task {task.name!r} "
                            f"(got {proto.run.washout})")
        problems += task.check_layout(proto.run.washout, proto.run.train, proto.run.test)
        for i, ro in enumerate(proto.readouts):
            if ro.feedback_steps and ro.kind != "force":
                problems.append(f"readouts[{i}].feedback_steps: only a 'force' readout learns with its output fed "
                                f"back (got kind {ro.kind!r})")
            elif ro.feedback_steps and task.n_outputs != task.n_inputs:
                problems.append(f"readouts[{i}].feedback_steps: task {task.name!r} has {task.n_outputs} output(s) "
                                f"and {task.n_inputs} input(s); feeding outputs back needs as many of each")
            elif ro.feedback_steps and ro.feedback_steps + 1 > proto.run.train:
                problems.append(f"readouts[{i}].feedback_steps: at most run.train - 1 = {proto.run.train - 1} "
                                f"(got {ro.feedback_steps})")
        if task.closed_loop:
            problems += task.check_block(proto.run.block)
            if proto.run.closed_loop == "actor" and not task.policy_in_actor:
                problems.append(f"run.closed_loop: the policy of task {task.name!r} needs the bench's process; "
                                f"set run.closed_loop = \"bench\"")
            if proto.sweep is not None:
                problems.append(f"sweep: task {task.name!r} is closed-loop; sweeps run open-loop tasks only")
        if task.sequence_length is None:
            problems += [f"readouts[{i}].pool: only sequence tasks pool per sample (task {task.name!r} "
                         f"is scored row by row)" for i, ro in enumerate(proto.readouts) if ro.pool is not None]
    if problems:
        # a NaN also fails the field's own bounds: say it once
        flagged = {p.split(":", 1)[0] for p in problems if p.endswith("(got nan)") or p.endswith("(got inf)")
                   or p.endswith("(got -inf)")}
        problems = [p for i, p in enumerate(problems) if p.split(":", 1)[0] not in flagged
                    or "expected a finite number" in p or p in problems[:i]]
        raise ProtocolError(source, problems)
    problems = check_machine(proto)
    if problems:
        raise ProtocolError(source, problems)
    if proto.sweep is not None:
        _check_sweep(proto)
    return proto


def _nonfinite(node: Any, key: str = "") -> list[str]:
    """``key: ... (got nan)`` for every NaN or infinite number anywhere in the parsed table."""
    out: list[str] = []
    if isinstance(node, float) and not math.isfinite(node):
        out.append(f"{key or '(top level)'}: expected a finite number (got {node!r})")
    elif isinstance(node, dict):
        for k, v in node.items():
            out += _nonfinite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out += _nonfinite(v, f"{key}[{i}]")
    return out


def _bad_names(proto: Protocol) -> list[str]:
    """Names that become groups (paths) in the store must be simple names. (The protocol's name is
    made safe for the store's file name by the store itself.)"""
    # a device without a name is stored under its driver's name, which get_driver checks
    named = [(f"{key}.name", dev.name) for key, dev in _device_keys(proto) if dev.name is not None]
    named += [(f"readouts[{i}].name", ro.name) for i, ro in enumerate(proto.readouts) if ro.name is not None]
    return [f"{key}: {value!r} becomes a store group or file name: expected a simple name "
            f"(letters, digits, _ and -, starting with a letter or _)"
            for key, value in named if not re.fullmatch(NAME_PATTERN, str(value))]


def _chain_problems(proto: Protocol, task: Task | None) -> list[str]:
    """What is wrong with the protocol's chains (``input = "<device>"``): unknown or own names,
    cycles, and the run kinds chains do not support (closed loops, sweeps)."""
    problems: list[str] = []
    groups = {d.group for d in proto.all_devices}
    chained = [(key, dev) for key, dev in _device_keys(proto) if dev.input is not None]
    for key, dev in chained:
        if dev.input == dev.group:
            problems.append(f"{key}.input: a device cannot read its own features (got {dev.input!r})")
        elif dev.input not in groups:
            problems.append(f"{key}.input: no device named {dev.input!r} in this protocol (devices: "
                            f"{', '.join(sorted(groups))})")
    if problems:
        return problems
    for key, dev in chained:
        seen, cur = {dev.group}, proto.upstream(dev)
        while cur is not None and cur.input is not None:
            if cur.group in seen:
                problems.append(f"{key}.input: the chain {dev.group!r} <- {dev.input!r} ... comes back to "
                                f"{cur.group!r} (a cycle): chains must start at a device fed by the task")
                break
            seen.add(cur.group)
            cur = proto.upstream(cur)
    if chained and task is not None and task.closed_loop:
        problems.append(f"{chained[0][0]}.input: task {task.name!r} is closed-loop; chains run open-loop tasks only")
    if chained and proto.sweep is not None:
        problems.append(f"{chained[0][0]}.input: sweeps do not run chained devices yet (run the chain without "
                        f"[sweep])")
    return problems


def chained_params(proto: Protocol, dev: DeviceSection, params: dict[str, Any], width: int) -> dict[str, Any]:
    """``params`` of a chained device with ``n_inputs`` set to ``width``, its upstream's feature
    width (unless its driver has no ``n_inputs``); ValueError naming the key when the protocol
    gives another ``n_inputs``."""
    if "n_inputs" not in proto.driver_class(dev).Params.model_fields:
        return params
    given = params.get("n_inputs")
    if given is not None and int(given) != width:
        raise ValueError(f"devices.{dev.group}.params.n_inputs: device {dev.input!r} gives {width} feature(s) "
                         f"per row (got {given})")
    return {**params, "n_inputs": width}


def chain_order(proto: Protocol) -> list[DeviceSection]:
    """Every device of the run, each after the device it reads (protocol order otherwise)."""
    done: list[DeviceSection] = []
    todo = list(proto.all_devices)
    while todo:
        ready = [d for d in todo if d.input is None or any(u.group == d.input for u in done)]
        if not ready:                         # a cycle: validation reports it
            raise ValueError("devices' inputs form a cycle")
        done += ready
        todo = [d for d in todo if d not in ready]
    return done


def estimate_sizes(proto: Protocol) -> dict[str, int]:
    """Bytes the run needs: ``memory`` (the task's data held by the bench, and the devices' own
    state where the driver can say it) and ``store`` (the run store's arrays on disk), with
    ``task_data`` and ``device:<group>`` (each device's memory) broken out.

    The store holds, per device and row, the inputs, features and targets as float32 (4 bytes
    each) and the phase (1 byte), and per readout its float64 predictions; the bench holds the
    task's inputs and targets as float64. Raw streams (spikes, events) are not counted.
    """
    rows = proto.run.total
    n_in, n_out = proto.task.n_inputs, proto.task.n_outputs
    out = {"task_data": rows * (n_in + n_out) * 8, "store": 0}
    memory = out["task_data"]
    for dev in proto.all_devices:
        cls = proto.driver_class(dev)
        n_feat, dev_bytes = cls.footprint(proto.device_params(dev))
        out[f"device:{dev.group}"] = dev_bytes or 0
        memory += dev_bytes or 0
        out["store"] += rows * (n_in + (n_feat or 0) + n_out) * 4 + rows + len(proto.readouts) * rows * n_out * 8
    out["memory"] = memory
    return out


def _gib(n: float) -> str:
    return f"{n / 1024**3:.3g} GiB" if n >= 1024**3 / 10 else f"{n / 1024**2:.3g} MiB"


def check_machine(proto: Protocol, store_root: str | Path | None = None) -> list[str]:
    """What this machine cannot do for the protocol: back ends it lacks, and arrays that cannot
    fit in its available memory or on the store's disk. One line per problem, naming the key.

    Parameters
    ----------
    proto : Protocol
        A protocol that is otherwise valid.
    store_root : path-like, optional
        Where the store will be written (default ``store.root``).
    """
    import psutil

    problems = []
    for key, dev in _device_keys(proto):
        cls = proto.driver_class(dev)
        params = proto.device_params(dev)
        backend = cls.backend_of(params)
        ok, why = cls.backends().get(backend, (True, "ok"))
        if not ok:
            where = f"{key}.params.backend" if backend != "default" else f"{key}.driver"
            mock = "" if dev.mock else " (--mock runs the device's mock instead)"
            problems.append(f"{where}: back end {backend!r} of driver {dev.driver!r} is not available here: "
                            f"{why}{mock}")
    sizes = estimate_sizes(proto)
    rows = f"{proto.run.total:,} rows (run.washout + run.train + run.test)"
    avail = psutil.virtual_memory().available
    if sizes["memory"] > avail:
        parts = [f"task data for {rows}: {_gib(sizes['task_data'])}"]
        biggest, where = sizes["task_data"], "run.train"
        for key, dev in _device_keys(proto):
            n = sizes[f"device:{dev.group}"]
            if n:
                parts.append(f"device {dev.group!r}: {_gib(n)}")
            if n > biggest:
                biggest, where = n, f"{key}.params"
        problems.append(f"{where}: the run needs about {_gib(sizes['memory'])} of memory ({'; '.join(parts)}); "
                        f"{_gib(avail)} is available")
    root = Path(store_root if store_root is not None else proto.store.root).absolute()
    while not root.exists() and root != root.parent:
        root = root.parent
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        free = None
    if free is not None and sizes["store"] > free:
        problems.append(f"run.train: {rows} need about {_gib(sizes['store'])} for the run store; {_gib(free)} is "
                        f"free on {root}")
    return problems


def _device_keys(proto: Protocol) -> list[tuple[str, DeviceSection]]:
    """(dotted key, section) of every device, as the user wrote them."""
    if proto.device is not None:
        return [("device", proto.device)]
    return [(f"devices[{i}]", d) for i, d in enumerate(proto.devices)]


def _check_sweep(proto: Protocol) -> None:
    """Every trial of the sweep must be a valid protocol, and the ranking metric must exist."""
    sweep = proto.sweep
    problems = []
    if len(proto.all_devices) != 1:
        problems.append(f"sweep: a sweep varies one device (the protocol has {len(proto.all_devices)})")
    labels = [ro.label for ro in proto.readouts]
    readout, metric, _ = sweep.ranking(labels[0] if labels else "ridge", proto.task.primary_metric)
    if readout not in labels:
        problems.append(f"sweep.metric: no readout {readout!r} to rank by (readouts: {', '.join(labels)})")
    if problems:
        raise ProtocolError(proto.source, problems)
    trial_protocols(proto)


def trial_protocols(proto: Protocol) -> list[tuple[dict[str, Any], Protocol]]:
    """Every trial's overrides and validated protocol (raises ProtocolError naming the key)."""
    base, source = sweep_base(proto)
    # the sweep's own settings (also when given with --set sweep.*) are not part of a trial
    fixed = {k: v for k, v in proto.overrides.items() if k != "sweep" and not k.startswith("sweep.")}
    out = []
    for i, params in enumerate(make_trials(proto.sweep)):
        try:
            trial = from_dict(base, source=source, text=proto.text, overrides={**fixed, **params})
        except ProtocolError as exc:
            problems = []
            for line in exc.problems:
                key = next((k for k in params if line.startswith(k + ":") or line.startswith(k + ".")
                            or line.startswith(k.rsplit(".", 1)[0] + ":")), None)
                problems.append(f'sweep."{key}": trial {i} ({key} = {params[key]!r}): {line}' if key
                                else f"sweep: trial {i} {params}: {line}")
            raise ProtocolError(source, problems) from None
        out.append((params, trial))
    return out


def _placeholder() -> Task:
    return TASKS["narma"]()


#: names in a run's metrics that are not readouts: the closed loop's and the device's own summary
_RESERVED = frozenset({"loop", "device"})


def check_readouts(readouts: list[ReadoutSection]) -> list[str]:
    # the kinds' parameters are read from the readouts' sources: checking a protocol imports no
    # readout class and so not scikit-learn (a run's process never needs it)
    from ..readouts import MODULES, READOUT_KINDS, check_estimator_name, parameters

    problems = []
    seen = set()
    for i, ro in enumerate(readouts):
        key = f"readouts[{i}]"
        if ro.module is not None:
            mod = dict(ro.module)
            mkind = mod.pop("kind", None)
            if mkind not in MODULES:
                problems.append(f"{key}.module.kind: unknown module {mkind!r} (known: {', '.join(sorted(MODULES))})")
            else:
                accepted = set(parameters(mkind) or mod)
                problems += [f"{key}.module.{k}: unknown parameter of module {mkind!r} "
                             f"(known: {', '.join(sorted(accepted))})" for k in mod if k not in accepted]
        if ro.kind not in READOUT_KINDS:
            problems.append(f"{key}.kind: unknown readout {ro.kind!r} (known: {', '.join(sorted(READOUT_KINDS))})")
            continue
        allowed = set(parameters(ro.kind) or ro.params)
        if ro.kind == "sklearn":
            allowed.add("estimator_params")
            if "estimator" in ro.params:
                why = check_estimator_name(ro.params["estimator"])
                if why is not None:
                    problems.append(f"{key}.estimator: {why}")
        for p in ro.params:
            if p not in allowed:
                problems.append(f"{key}.{p}: unknown parameter of readout {ro.kind!r} "
                                f"(known: {', '.join(sorted(allowed))})")
        if ro.label in _RESERVED:
            problems.append(f"{key}.name: {ro.label!r} is reserved for the run's own summary "
                            f"({', '.join(sorted(_RESERVED))}); give the readout another name")
        if ro.label in seen:
            problems.append(f"{key}.name: duplicate readout name {ro.label!r}")
        seen.add(ro.label)
    return problems


def load(path: str | Path, overrides: dict[str, Any] | list[str] | None = None, *, mock: bool = False) -> Protocol:
    """Read and validate a TOML protocol file.

    Parameters
    ----------
    path : path-like
        The ``.toml`` file.
    overrides : dict or list of "dotted.key=value" strings
        Applied to the parsed file before validation (``--set`` on the CLI).
    mock : bool
        Run every device on its mock (``--mock`` on the CLI), see :func:`from_dict`.

    Raises
    ------
    ProtocolError
        On a missing file, a TOML syntax error or any invalid key or value.
    """
    path = Path(path)
    source = str(path)
    if isinstance(overrides, list):
        overrides = dict(parse_override(item) for item in overrides)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(source, ["no such file"]) from None
    except OSError as exc:
        raise ProtocolError(source, [f"cannot read: {exc.strerror}"]) from None
    return from_text(text, source=source, overrides=overrides, mock=mock)


def from_text(text: str, *, source: str = "<text>", overrides: dict[str, Any] | None = None,
              mock: bool = False) -> Protocol:
    """Validate a protocol given as TOML text (e.g. the copy kept in a run store)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(source, [f"TOML syntax error: {exc}"]) from None
    if "suite" in data and "protocol" not in data:
        raise ProtocolError(source, ["a comparison suite ([suite] table), not a protocol: run it with "
                                     "`labbench compare`"])
    return from_dict(data, source=source, text=text, overrides=overrides, mock=mock)
