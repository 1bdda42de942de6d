"""A signed-off file that lifts a device's safety ceilings: ``labbench run --unsafe-limits FILE``.

A protocol may only tighten a device's safety limits (for the MEA: 3 nC per phase,
200 pulses/s per electrode, ...; docs/mea.md). Lifting one is an act outside the protocol,
by a named person for a stated reason, recorded in the run store's provenance. The file
is TOML::

    [sign_off]                     # all three required
    name = "A. Researcher"         # who takes responsibility
    reason = "charge-response curve up to 10 nC/phase, approved by ... (ref ...)"
    date = 2026-12-04              # a TOML date, or "YYYY-MM-DD"

    [limits]                       # what the device's driver may lift (MEA: max_charge_nc,
    max_charge_nc = 10.0           # max_amplitude_ua, max_phase_us, max_rate_hz), each up to
                                   # a hard maximum the driver never exceeds

This module reads and checks the file's form (:func:`read_unsafe_limits`); the driver of
each device checks the ``[limits]`` themselves. A bad file raises
:class:`UnsafeLimitsError` (one line naming the file and the key; exit 2 on the CLI).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: what [sign_off] must hold
SIGN_OFF_KEYS = ("name", "reason", "date")


class UnsafeLimitsError(ValueError):
    """An --unsafe-limits file that cannot be used (one line: the file, the key, what was expected)."""


@dataclass(frozen=True)
class SignedLimits:
    """A checked --unsafe-limits file.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    text : str
        Its full text, as read.
    sha256 : str
        SHA-256 of its bytes.
    name, reason, date : str
        The sign-off (``date`` as ``YYYY-MM-DD``).
    limits : dict
        ``[limits]``: limit name -> value, for the devices' drivers to check and apply.
    """

    path: str
    text: str
    sha256: str
    name: str
    reason: str
    date: str
    limits: dict[str, float] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """What the run store records (root attribute ``unsafe_limits``)."""
        return {"path": self.path, "sha256": self.sha256, "text": self.text, "signed_off_by": self.name,
                "reason": self.reason, "date": self.date, "limits": dict(self.limits)}


def read_unsafe_limits(path: str | os.PathLike[str]) -> SignedLimits:
    """Read and check an --unsafe-limits file (see the module doc).

    Raises
    ------
    UnsafeLimitsError
        The file is missing or not TOML, its sign-off is incomplete, or ``[limits]`` is
        empty or holds something other than numbers.
    """
    p = Path(path).expanduser().resolve()
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UnsafeLimitsError(f"{p}: cannot read the --unsafe-limits file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UnsafeLimitsError(f"{p}: not a TOML file: {exc}") from None
    unknown = sorted(set(data) - {"sign_off", "limits"})
    if unknown:
        raise UnsafeLimitsError(f"{p}: unknown table or key {unknown[0]!r}; expected [sign_off] and [limits]")
    sign = data.get("sign_off")
    if not isinstance(sign, dict):
        raise UnsafeLimitsError(f"{p}: no [sign_off] table; lifting a limit needs name, reason and date of "
                                f"who signed it off")
    extra = sorted(set(sign) - set(SIGN_OFF_KEYS))
    if extra:
        raise UnsafeLimitsError(f"{p}: sign_off.{extra[0]} is not a sign-off key (expected {', '.join(SIGN_OFF_KEYS)})")
    for key in ("name", "reason"):
        value = sign.get(key)
        if not isinstance(value, str) or not value.strip():
            raise UnsafeLimitsError(f"{p}: sign_off.{key} is missing or empty; expected a non-empty string")
    date = _date(p, sign.get("date"))
    limits = data.get("limits")
    if not isinstance(limits, dict) or not limits:
        raise UnsafeLimitsError(f"{p}: no [limits] table, or an empty one; name the limits to lift")
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UnsafeLimitsError(f"{p}: limits.{key} = {value!r}; expected a number")
    return SignedLimits(path=str(p), text=text, sha256=hashlib.sha256(raw).hexdigest(), name=sign["name"].strip(),
                        reason=sign["reason"].strip(), date=date, limits={k: float(v) for k, v in limits.items()})


def _date(p: Path, value: Any) -> str:
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    raise UnsafeLimitsError(f"{p}: sign_off.date is {'missing' if value is None else repr(value)}; expected a date "
                            f"(2026-12-04)")
