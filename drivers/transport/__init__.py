"""Transport code shared by serial device drivers and their emulators.

- :mod:`.framing`: sync word + checked header + payload + CRC-16 frames, and an incremental
  parser that resynchronises after garbage;
- :mod:`.pty`: a pseudo-terminal device emulator base (serving thread, periodic ticks,
  fault injection), on which firmware emulators such as :mod:`labbench.drivers.mea.firmware`
  are built.
"""

from .framing import FLAG_FROM_DEVICE, MAX_PAYLOAD, Frame, FrameParser, crc8, crc16, encode_frame

__all__ = ["FLAG_FROM_DEVICE", "MAX_PAYLOAD", "Frame", "FrameParser", "crc8", "crc16", "encode_frame"]
