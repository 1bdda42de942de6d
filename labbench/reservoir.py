"""The one interface every reservoir implements, and the registry that finds drivers.

A reservoir is anything that turns an input block ``u`` of shape ``(T, n_inputs)``
into a block of features ``(T, n_features)``: an echo-state network, a spiking
liquid, a bucket of water filmed by a camera, neurons on a multi-electrode array.
Calls are block-oriented so that the costs of Ray, Zarr and Python are paid once
per block, never once per sample.

Drivers are registered through the entry-point group ``labbench.drivers`` (the
built-in ones too, see ``pyproject.toml``), so a lab can ship the driver for its
own rig as a separate package.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

ENTRY_POINT_GROUP = "labbench.drivers"


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
    """

    columns: dict[str, str]
    description: str = ""
    time_column: str | None = None
    time_scale: float = 1.0
    channel_column: str | None = None
    n_channels: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"columns": dict(self.columns), "description": self.description, "time_column": self.time_column,
                "time_scale": self.time_scale, "channel_column": self.channel_column,
                "n_channels": self.n_channels}


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


def driver_names() -> list[str]:
    """Names of all installed drivers."""
    return sorted(_entry_points())


def get_driver(name: str) -> type[Reservoir]:
    """Load the driver class registered under ``name``, or named ``"package.module:Class"``.

    The ``module:Class`` form lets a lab try a driver for its own rig before packaging
    it with an entry point.

    Raises
    ------
    KeyError
        If no driver of that name is installed; the message lists those that are.
    """
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"cannot load driver {name!r}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Reservoir)):
            raise TypeError(f"driver {name!r} is not a Reservoir subclass")
        return cls
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise KeyError(f"unknown driver {name!r}; installed drivers: {known}")
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Reservoir)):
        raise TypeError(f"entry point {name!r} ({eps[name].value}) is not a Reservoir subclass")
    return cls


def list_devices() -> list[dict[str, str]]:
    """Every installed driver with its availability, for ``labbench devices``."""
    rows = []
    for name, ep in sorted(_entry_points().items()):
        try:
            cls = ep.load()
            ok, why = cls.available()
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        except Exception as exc:  # a broken third-party plugin must not hide the others
            ok, why, doc = False, f"failed to load: {exc}", ""
        rows.append({"name": name, "target": ep.value, "available": "yes" if ok else "no",
                     "detail": why, "summary": doc})
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
