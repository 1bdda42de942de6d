"""Keep an emulator serving in the foreground until Ctrl-C (``labbench emulate ...``)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def serve_until_interrupted(close: Callable[[], None], stop: threading.Event | None = None) -> int:
    """Block until Ctrl-C or until ``stop`` is set, then call ``close``; returns 0 (the exit code).

    Parameters
    ----------
    close
        Stops the emulator (called however the wait ends).
    stop
        Ends the wait from another thread (tests); default: only Ctrl-C ends it.
    """
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        close()
    return 0
