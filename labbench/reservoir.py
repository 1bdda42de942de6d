"""The one interface every reservoir implements, and the registry that finds drivers.

A reservoir is anything that turns an input block ``u`` of shape ``(T, n_inputs)``
into a block of features ``(T, n_features)``: an echo-state network, a spiking
liquid, a bucket of water filmed by a camera, neurons on a multi-electrode array.
Calls are block-oriented so that the costs of Ray, Zarr and Python are paid once
per block, never once per sample.

Drivers are registered through the entry-point group ``labbench.drivers`` (the
built-in ones too, see ``pyproject.toml``), so a lab can ship the driver for its
own rig as a separate package. A driver under development is registered explicitly,
by the person running the bench and never by a protocol: :func:`register_driver` in
Python, or ``--driver-path NAME=module:Class`` on the command line
(:func:`load_driver_path`). A protocol only ever names a driver; no value read from a
protocol is imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

ENTRY_POINT_GROUP = "labbench.drivers"

#: what a driver's registry name looks like (it becomes part of store paths and messages)
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"


@dataclass(frozen=True)
class RawStreamSpec:
    """Describes one raw, append-only stream a driver emits besides its features.

    Parameters
    ----------
    columns : dict of str to str
        Column name to numpy dtype string, e.g. ``{"time": "float64", "channel": "int32"}``.
    description : str
        What one row is.
    time_column : str, optional
        The column that says when an event happened (for plots: the x of a raster).
    time_scale : float
        Seconds per unit of ``time_column`` (e.g. the integration step ``dt`` for a
        column of step numbers).
    channel_column : str, optional
        The column that says where it happened (neuron, electrode, pixel): the y of a raster.
    n_channels : int, optional
        How many channels there are (default: the device's feature width).
    shapes : dict of str to tuple of int, optional
        The shape of one cell of a column whose rows are not single numbers, e.g.
        ``{"frame": (64, 64)}`` for a camera's 8-bit frames: the column is stored as an
        array ``(rows, 64, 64)`` chunked along its rows (image-like streams: cameras,
        event-count maps). Columns not named here hold one number per row.
    dims : dict of str to tuple of str, optional
        Dimension names of a shaped column's cell axes (e.g. ``{"frame": ("y", "x")}``);
        by default ``<column>_0``, ``<column>_1``, ...

    Examples
    --------
    >>> RawStreamSpec({"frame": "uint8"}, shapes={"frame": (64, 64)}, dims={"frame": ("y", "x")}).cell_shape("frame")
    (64, 64)
    """

    columns: dict[str, str]
    description: str = ""
    time_column: str | None = None
    time_scale: float = 1.0
    channel_column: str | None = None
    n_channels: int | None = None
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for col, shape in self.shapes.items():
            if col not in self.columns:
                raise ValueError(f"raw stream shape given for {col!r}, which is not one of its columns "
                                 f"{list(self.columns)}")
            if not all(isinstance(n, int) and n >= 1 for n in shape):
                raise ValueError(f"raw stream column {col!r}: cell shape {shape!r} must be positive integers")
        for col, names in self.dims.items():
            if len(names) != len(self.shapes.get(col, ())):
                raise ValueError(f"raw stream column {col!r}: {len(names)} dimension names {names!r} for a cell "
                                 f"of shape {self.shapes.get(col, ())!r}")

    def cell_shape(self, column: str) -> tuple[int, ...]:
        """The shape of one row's cell of ``column`` (``()`` for a column of numbers)."""
        return tuple(self.shapes.get(column, ()))

    def to_dict(self) -> dict[str, Any]:
        return {"columns": dict(self.columns), "description": self.description, "time_column": self.time_column,
                "time_scale": self.time_scale, "channel_column": self.channel_column,
                "n_channels": self.n_channels,
                "shapes": {c: list(s) for c, s in self.shapes.items()},
                "dims": {c: list(d) for c, d in self.dims.items()}}


@dataclass(frozen=True)
class Spec:
    """Static facts about a reservoir that the bench, the store and readouts need.

    Parameters
    ----------
    n_inputs : int
        Width of an input row.
    n_features : int
        Width of a feature row.
    dt : float
        Seconds (of device or model time) per sample.
    realtime : bool
        True for physical devices that run on the wall clock.
    raw : dict of str to RawStreamSpec
        Raw streams emitted in :attr:`Block.raw`.
    feature_name : str
        Dimension name of the feature axis in the store (``"unit"``, ``"electrode"``).
    """

    n_inputs: int
    n_features: int
    dt: float = 1.0
    realtime: bool = False
    raw: dict[str, RawStreamSpec] = field(default_factory=dict)
    feature_name: str = "unit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_inputs": self.n_inputs,
            "n_features": self.n_features,
            "dt": self.dt,
            "realtime": self.realtime,
            "feature_name": self.feature_name,
            "raw": {k: v.to_dict() for k, v in self.raw.items()},
        }


@dataclass
class Block:
    """What one ``run`` call returns.

    Parameters
    ----------
    features : ndarray, shape (T, n_features) or (B, T, n_features)
        What readouts learn from.
    raw : dict of str to dict of str to ndarray
        Raw streams for this block, each a dict of equally long columns.
    """

    features: np.ndarray
    raw: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.features.shape[-2])


class Reservoir(ABC):
    """Base class of every driver.

    Subclasses set :attr:`Params` to a pydantic model of their parameters (extra keys
    forbidden) and take those parameters as keyword arguments. A reservoir is a
    context manager: ``with open_device("esn", units=100) as res: res.run(u)``.
    """

    #: pydantic model validating the driver's keyword parameters
    Params: ClassVar[type[BaseModel]]
    #: short registry name
    name: ClassVar[str] = ""
    #: whether ``run`` accepts a batch ``(B, T, n_inputs)`` of independent sequences
    supports_batch: ClassVar[bool] = False
    #: whether the driver can replay deterministically from a seed (software models)
    deterministic: ClassVar[bool] = False

    spec: Spec

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this back end can be used on this machine, and why not."""
        return True, "ok"

    @classmethod
    def backends(cls) -> dict[str, tuple[bool, str]]:
        """Every back end of the driver with whether it can be used here and why not.

        A driver with several back ends (the MEA: an in-silico culture, a serial board, a
        CL1) overrides this and :meth:`backend_of`; the default is one back end,
        ``"default"``, available as :meth:`available` says. Nothing here opens a device or
        imports a back end's vendor module.
        """
        return {"default": cls.available()}

    @classmethod
    def backend_of(cls, params: dict[str, Any]) -> str:
        """The key of :meth:`backends` that ``params`` (the driver's keyword parameters) select."""
        return "default"

    @classmethod
    def footprint(cls, params: dict[str, Any]) -> tuple[int | None, int | None]:
        """``(n_features, bytes)`` of a device built from ``params``, estimated without building it.

        Validation uses it to refuse a run whose store or device cannot fit on this machine.
        ``None`` means the driver cannot say (the default); drivers whose size grows with their
        parameters (units, weights) should say.
        """
        return None, None

    @abstractmethod
    def open(self) -> None:
        """Connect to or allocate the device. Idempotent."""

    @abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """Return to the initial state (and reseed stochastic parts)."""

    @abstractmethod
    def run(self, u: np.ndarray) -> Block:
        """Drive the reservoir with ``u`` (T, n_inputs) and return its features."""

    @abstractmethod
    def close(self) -> None:
        """Release the device, leaving hardware safe. Always safe to call."""

    @classmethod
    def mock_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters that swap the real device for its mock (``mock = true`` in a
        protocol, ``--mock`` on the command line). Software reservoirs are their own
        mock: unchanged."""
        return params

    def health(self) -> list[str]:
        """Warnings about the device's behaviour so far (silent, saturated, ...); none by default.

        Not errors: a run goes on and records them in its store and summary.
        """
        return []

    def summary(self) -> dict[str, Any]:
        """Facts about the device over the whole run, for the run's summary (JSON-able); none by default.

        Measurements that only the driver can make, e.g. the MEA's network-burst statistics
        and the gaps in its recording. The bench stores them as the device's ``device``
        metrics after the stream.
        """
        return {}

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Driver name, version, parameters, firmware, serial number (JSON-able)."""

    def __enter__(self) -> Reservoir:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_input(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u)
        if u.ndim == 1 and self.spec.n_inputs == 1:
            u = u[:, None]
        ok_ndim = (2, 3) if self.supports_batch else (2,)
        if u.ndim not in ok_ndim or u.shape[-1] != self.spec.n_inputs:
            want = "(T, n_inputs)" + (" or (B, T, n_inputs)" if self.supports_batch else "")
            raise ValueError(
                f"{self.name}: input block has shape {u.shape}, expected {want} "
                f"with n_inputs={self.spec.n_inputs}"
            )
        return u


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in eps}


#: drivers registered explicitly in this process (register_driver, --driver-path)
_registered: dict[str, type[Reservoir]] = {}


def _check_driver_class(cls: Any, what: str) -> type[Reservoir]:
    if not (isinstance(cls, type) and issubclass(cls, Reservoir)):
        raise TypeError(f"{what} is not a Reservoir subclass (got {cls!r})")
    return cls


def register_driver(name: str, cls: type[Reservoir] | None) -> None:
    """Make a driver class known under ``name`` in this process (``None`` forgets it).

    This is how a driver under development reaches a run without being packaged: the
    person running the bench names the class, and protocols use ``driver = "<name>"``. A
    registered name takes precedence over an installed driver of the same name. The bench
    hands the class object itself to the device's Ray actor, so its module must be
    importable by the workers (installed, or on ``PYTHONPATH``), or defined in a notebook
    or ``__main__`` (sent by value).

    Examples
    --------
    >>> import labbench as lb
    >>> from labbench.drivers.esn import EchoStateNetwork
    >>> lb.register_driver("my-esn", EchoStateNetwork)
    >>> lb.get_driver("my-esn") is EchoStateNetwork
    True
    >>> lb.register_driver("my-esn", None)
    """
    if not (isinstance(name, str) and re.fullmatch(NAME_PATTERN, name)):
        raise ValueError(f"driver name {name!r}: expected a simple name matching {NAME_PATTERN}")
    if cls is None:
        _registered.pop(name, None)
        return
    _registered[name] = _check_driver_class(cls, f"driver {name!r}")


def registered_drivers() -> dict[str, type[Reservoir]]:
    """The drivers registered in this process with :func:`register_driver`, by name."""
    return dict(_registered)


def load_driver_path(spec: str) -> tuple[str, type[Reservoir]]:
    """Import the driver named on the command line as ``NAME=module:Class`` or ``module:Class``.

    This is the one place a module named by a person (``--driver-path``), never by a
    protocol, is imported. Without ``NAME=`` the driver's own :attr:`Reservoir.name`
    (else the class name) is the name protocols use. The caller registers the result.

    Raises
    ------
    ValueError
        On a malformed spec, a module that cannot be imported or a missing class.
    TypeError
        If the object is not a :class:`Reservoir` subclass.
    """
    name, sep, target = spec.partition("=")
    if not sep:
        name, target = "", spec
    module, colon, attr = target.partition(":")
    if not colon or not module or not attr:
        raise ValueError(f"--driver-path {spec!r}: expected NAME=package.module:Class or package.module:Class")
    try:
        # the command-line user's explicit choice of code to run (never a protocol value)
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--driver-path {spec!r}: cannot load {target!r} ({type(exc).__name__}: {exc}); "
                         f"the module must be importable (installed, or on PYTHONPATH)") from None
    cls = _check_driver_class(obj, f"--driver-path {spec!r}")
    name = name.strip() or cls.name or attr
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"--driver-path {spec!r}: name {name!r} is not a simple name ({NAME_PATTERN})")
    return name, cls


def driver_names() -> list[str]:
    """Names of all installed and registered drivers."""
    return sorted(set(_entry_points()) | set(_registered))


def get_driver(name: str) -> type[Reservoir]:
    """The driver class registered under ``name`` (:func:`register_driver`) or installed under it
    (entry point group ``labbench.drivers``).

    A name is only looked up, never imported: ``"package.module:Class"`` is refused (register
    such a class explicitly, e.g. ``labbench run --driver-path NAME=package.module:Class``).

    Raises
    ------
    KeyError
        If no driver of that name is registered or installed; the message lists those that are.
    TypeError
        If the entry point does not load a Reservoir subclass.
    """
    if not isinstance(name, str):
        raise KeyError(f"driver must be a name (got {name!r})")
    if name in _registered:
        return _registered[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(driver_names()) or "none"
        hint = ""
        if ":" in name or "." in name:
            hint = ("; a protocol names a driver, it never imports one: give a driver under development on the "
                    "command line (--driver-path NAME=package.module:Class) or in Python (lb.register_driver)")
        raise KeyError(f"unknown driver {name!r}; installed drivers: {known}{hint}")
    # an installed package's registered entry point, looked up by a name that is a key of it
    return _check_driver_class(eps[name].load(), f"entry point {name!r} ({eps[name].value})")


def list_devices() -> list[dict[str, Any]]:
    """Every installed (and registered) driver with the availability of each back end, for
    ``labbench devices``."""
    rows: list[dict[str, Any]] = []
    entries: list[tuple[str, str, Any]] = [(n, ep.value, ep) for n, ep in sorted(_entry_points().items())
                                           if n not in _registered]
    entries += [(n, f"{c.__module__}:{c.__qualname__} (registered)", c) for n, c in sorted(_registered.items())]
    for name, target, src in sorted(entries):
        try:
            # an installed package's registered entry point, listed by the user's request
            cls = src if isinstance(src, type) else src.load()
            backends = {k: {"available": bool(ok), "detail": why} for k, (ok, why) in cls.backends().items()}
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        except Exception as exc:  # a broken third-party plugin must not hide the others
            backends, doc = {"default": {"available": False, "detail": f"failed to load: {exc}"}}, ""
        ok = any(b["available"] for b in backends.values())
        detail = "; ".join(f"{k}: {'ok' if b['available'] else b['detail']}" for k, b in backends.items()) \
            if len(backends) > 1 else next(iter(backends.values()))["detail"]
        rows.append({"name": name, "target": target, "available": "yes" if ok else "no",
                     "detail": detail, "summary": doc, "backends": backends})
    return rows


def open_device(driver: str, /, **params: Any) -> Reservoir:
    """Create (not yet opened) a driver by name; use it as a context manager.

    Examples
    --------
    >>> import numpy as np, labbench as lb
    >>> with lb.open_device("esn", units=50, seed=1) as res:
    ...     block = res.run(np.zeros((10, 1)))
    >>> block.features.shape
    (10, 50)
    """
    return get_driver(driver)(**params)
