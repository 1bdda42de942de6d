"""Ends an embedded Ray's processes once the process that started it is gone.

Run as a script (``python ray_reaper.py OWNER``, started by
:func:`labbench.engine.ray_runtime.ensure_ray`): it blocks on its standard input, whose write
end belongs to the process that started it, so EOF means that process has exited, however
it exited (``ray.shutdown`` at exit, an exception, SIGKILL). It then sends SIGKILL to every
process of this user whose environment has ``LABBENCH_RAY_OWNER=OWNER`` or that names the
Ray's session directory (sent as a line on standard input once the Ray is up) in its command
line or an open file: the GCS, raylet, agents and workers of that Ray, re-parented or not,
until none is left or 30 s have passed.

Measured without it (Ray 2.60): after a SIGKILL of ``labbench run`` the GCS and raylet die
with it and the workers within ~3 s, but the dashboard and runtime-env agents notice the
raylet's death, then hang reporting it to the dead GCS, and stay for good.

It imports nothing of labbench, so it starts in ~0.1 s and holds ~15 MB.
"""

from __future__ import annotations

import os
import signal
import sys
import time

OWNER_ENV = "LABBENCH_RAY_OWNER"


def owned(owner: str, session_dir: str = "", *, spare: int | None = None) -> list[int]:
    """Pids of this user's processes of the Ray: with ``LABBENCH_RAY_OWNER=owner`` in their
    environment, or naming ``session_dir`` in their command line or an open file (a process
    that sets its title, as Ray's agents and workers do, may overwrite its environment).
    Never this process, nor ``spare`` (the process that started the Ray: it holds the Ray's
    driver log open until its last moment)."""
    needle = f"{OWNER_ENV}={owner}".encode()
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (me, spare):
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    out.append(int(entry))
                    continue
            if session_dir:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if session_dir.encode() in fh.read():
                        out.append(int(entry))
                        continue
                for fd in os.listdir(f"/proc/{entry}/fd"):
                    try:
                        if os.readlink(f"/proc/{entry}/fd/{fd}").startswith(session_dir):
                            out.append(int(entry))
                            break
                    except OSError:
                        pass
        except OSError:                  # gone, or another user's
            continue
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` is running (a zombie, exited but not yet waited for, is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def reap(owner: str, session_dir: str = "", *, owner_pid: int | None = None, grace_s: float = 1.0,
         deadline_s: float = 30.0) -> int:
    """SIGKILL every process of the Ray until none is left; returns how many were signalled.

    The pipe closes while its owner is still exiting (``ray.shutdown`` in its exit handlers can
    take seconds on a busy machine): wait up to ``deadline_s`` for ``owner_pid`` to be gone
    first, and never signal it (it was once killed mid-exit here, its exit status lost).
    """
    end = time.monotonic() + deadline_s
    while owner_pid is not None and alive(owner_pid) and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(grace_s)                  # a normal exit: ray.shutdown has just ended them itself
    killed: set[int] = set()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = owned(owner, session_dir, spare=owner_pid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.5)
    return len(killed)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1]:
        print("usage: ray_reaper.py OWNER", file=sys.stderr)
        return 2
    owner_pid = os.getppid()                          # the process that started the Ray (before re-parenting)
    for sig in (signal.SIGINT, signal.SIGHUP):       # a terminal's Ctrl-C or hang-up is not for it
        signal.signal(sig, signal.SIG_IGN)
    session_dir = ""
    try:
        for line in sys.stdin:           # the session directory, once the Ray is up; then EOF
            if line.strip():
                session_dir = line.strip().rstrip("/") + "/"
    except OSError:
        pass
    reap(argv[1], session_dir, owner_pid=owner_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
