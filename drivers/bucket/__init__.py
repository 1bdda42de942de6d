"""A bucket of water as a reservoir (Fernando & Sojakka 2003): motors make waves, a camera films them.

- :mod:`.params`: the simulated tank, motors and camera (SI units);
- :mod:`.wave_fd`, :mod:`.wave_spectral`: the two solvers of the surface height; :mod:`.motors`: the
  forcing; :mod:`.camera`: the observation models and :func:`~.camera.pool_frames`;
  :mod:`.tank`: :class:`~.tank.SimTank`, all of them together (the ``sim`` back end, the mock);
- :mod:`.rig`: the real rig (an Arduino running StandardFirmata, a camera read by OpenCV),
  with emulators of both for CI;
- :mod:`.driver`: :class:`Bucket`, the Reservoir that ties them together (entry point ``bucket``).

``docs/bucket.md`` has the equations, the rig and the measured results. The package imports
nothing heavy by itself.
"""

from __future__ import annotations

__all__ = ["Bucket"]


def __getattr__(name: str):
    if name == "Bucket":
        from .driver import Bucket

        return Bucket
    raise AttributeError(name)
