"""Multi-electrode arrays with neuron cultures: one driver, several back ends.

- :mod:`.layout`, :mod:`.stimulation`, :mod:`.safety`, :mod:`.encoder`: the common model
  of the device (electrodes, biphasic pulses, limits, how inputs become stimulation);
- :mod:`.backend`: what every back end does; :mod:`.culture` (the in-silico culture, the
  mock), :mod:`.serial_board` (boards speaking ``docs/serial-protocol.md``, whose wire
  format is :mod:`.serial_codec`; the firmware emulator in :mod:`.firmware` serves the
  culture behind it) and :mod:`.cl_backend` (Cortical Labs CL1 through the ``cl`` API);
- :mod:`.driver`: :class:`MEA`, the Reservoir that ties them together.

The package imports nothing heavy by itself, so that a back end module can be used alone
(the cl-sdk test runs ``drivers.mea.cl_backend`` under Python 3.12 with only numpy and
cl-sdk installed).
"""

from __future__ import annotations

__all__ = ["MEA"]


def __getattr__(name: str):
    if name == "MEA":
        from .driver import MEA

        return MEA
    raise AttributeError(name)
