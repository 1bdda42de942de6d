"""The engine's exceptions, and how an error raised inside Ray is told in one line."""

from __future__ import annotations

import traceback


class DeviceDown(RuntimeError):
    """A device raised, died more often than ``max_restarts``, or did not answer in ``timeout_s``."""


def remote_cause(exc: BaseException) -> str:
    """``Type: message`` of what went wrong inside Ray, on one line (the driver's or the policy's
    own exception when Ray attached it).

    A Ray error without the original exception attached (e.g. one raised in an actor's
    creation task) carries the whole remote traceback in its message: its last line is the
    original ``Type: message``.
    """
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    lines = [line.strip() for line in "".join(traceback.format_exception_only(type(exc), exc)).splitlines()
             if line.strip()]
    return lines[-1] if lines else type(exc).__name__
