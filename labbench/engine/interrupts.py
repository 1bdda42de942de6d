"""Ctrl-C during a run: the first one stops it, and never in the middle of writing its status."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


class SigintGuard:
    """The SIGINT policy of a run, installed for its duration (main thread only).

    - The first Ctrl-C raises :class:`KeyboardInterrupt`, as Python's default handler does.
    - Inside :meth:`held` (creating the store, writing its final status) a Ctrl-C is held
      back and raised when the block ends, so the store is never left half-made or with a
      torn status.
    - Once the run is stopping, further Ctrl-Cs are ignored (with a note on stderr): a
      second impatient Ctrl-C cannot interrupt the ``aborted`` mark.

    Outside the main thread (a notebook's worker thread) signals cannot be handled, and the
    guard does nothing.

    Examples
    --------
    >>> with SigintGuard() as guard:            # doctest: +SKIP
    ...     with guard.held():
    ...         store = RunStore(...)
    """

    def __init__(self) -> None:
        self._old: object = None
        self._installed = False
        self._depth = 0
        self.pending = False
        self.stopping = False

    def __enter__(self) -> SigintGuard:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._old)  # type: ignore[arg-type]
            self._installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            print("labbench: already stopping (marking the store), please wait", file=sys.stderr)
            return
        if self._depth:
            self.pending = True
            return
        self.stopping = True
        raise KeyboardInterrupt

    def stop(self) -> None:
        """Mark the run as stopping (an error ends it): later Ctrl-Cs are ignored."""
        self.stopping = True

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold a Ctrl-C back until the block is done, then raise it (unless already stopping)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self.pending:
                self.pending = False
                if not self.stopping:
                    self.stopping = True
                    raise KeyboardInterrupt
