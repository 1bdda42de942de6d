"""Keep an emulator serving in the foreground until Ctrl-C or SIGTERM (``labbench emulate ...``)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_until_interrupted(close: Callable[[], None], stop: threading.Event | None = None) -> int:
    """Block until SIGINT (Ctrl-C), SIGTERM or ``stop`` is set, then call ``close``; returns 0.

    Both signals are handled explicitly while serving: a process started from a background
    job inherits SIGINT ignored, and a SIGTERM would otherwise end it without ``close``
    (leaving the pty's link behind).

    Parameters
    ----------
    close
        Stops the emulator (called however the wait ends).
    stop
        Ends the wait from another thread (tests); default: only a signal ends it.
    """
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        close()
    return 0
