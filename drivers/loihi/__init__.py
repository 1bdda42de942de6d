"""Intel Loihi: an LSM quantised onto fixed-point CUBA-LIF neurons, on a bit-exact emulator of
Lava's ``fixed_pt`` models, on Lava itself (a Python 3.10 worker) or on a board."""

from .driver import Loihi, LoihiParams

__all__ = ["Loihi", "LoihiParams"]
