"""``labbench compare``: one battery of reservoir measures on every device family.

- :mod:`~labbench.compare.battery`: the entries (memory capacity, NARMA-10, temporal XOR,
  classification, kernel quality, fading memory), each defined once;
- :mod:`~labbench.compare.families`: the families (ESN, LSM, MEA, bucket, DVS → LSM, Loihi)
  and how each entry runs on each;
- :mod:`~labbench.compare.cells`: one cell (device × entry × seed) run in one process.

Importing this package imports neither Ray nor scikit-learn.
"""

from __future__ import annotations

from .battery import ENTRIES, XOR_DELAYS, Entry, get_entry
from .cells import run_cell
from .families import FAMILIES, Family, Plan, Probe, build_protocol, effective_table, get_family, plan_table

__all__ = ["ENTRIES", "FAMILIES", "XOR_DELAYS", "Entry", "Family", "Plan", "Probe", "build_protocol",
           "effective_table", "get_entry", "get_family", "plan_table", "run_cell"]
