"""The battery of ``labbench compare``: the standard reservoir measures every device family is scored on.

Each entry is defined once, here: its name, the metric that ranks it (and whether higher is
better), the metric's unit, the paper it comes from and the task code it reuses. How an
entry is run on a family (which protocol, which overrides) is the family's business
(:mod:`labbench.compare.families`); how one cell runs is :mod:`labbench.compare.cells`.

Two kinds of entries:

- ``protocol`` entries run a task through a protocol (inputs, a readout trained on the
  device's features, the task's score on held-out rows): memory capacity, NARMA-10,
  temporal XOR, classification;
- ``probe`` entries drive the device directly with streams of its own task's inputs and
  measure a property of its states, with no readout: kernel quality / generalisation rank,
  and the fading-memory (echo-state) check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ENTRIES", "FADING_HORIZON", "XOR_DELAYS", "Entry", "get_entry"]

#: rows after which the fading-memory entry compares the two runs' distance (every family's
#: probe runs at least this long)
FADING_HORIZON = 40

#: the delays of the temporal-XOR entry (one cell runs all three)
XOR_DELAYS: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class Entry:
    """One measure of the battery.

    Attributes
    ----------
    name : str
        The entry's name (a store group name).
    metric : str
        The primary metric, the one a suite ranks devices by.
    maximise : bool
        Whether a higher primary value is better.
    unit : str
        Unit of the primary metric, for tables and plots.
    paper : str
        Where the measure comes from.
    task : str or None
        The task (:data:`labbench.tasks.TASKS` name) whose code the entry reuses: the task a
        protocol entry runs, or whose input generator a probe entry draws its streams from
        (``None``: the family's own protocol task).
    kind : {"protocol", "probe"}
        Run through a protocol and a readout, or a probe of the device's states.
    description : str
        One line on what is measured.
    """

    name: str
    metric: str
    maximise: bool
    unit: str
    paper: str
    task: str | None
    kind: Literal["protocol", "probe"]
    description: str

    def describe(self) -> dict[str, Any]:
        """The entry as a comparison store's root lists it: ``{name, metric, maximise, unit, paper}``."""
        return {"name": self.name, "metric": self.metric, "maximise": self.maximise, "unit": self.unit,
                "paper": self.paper}


ENTRIES: dict[str, Entry] = {e.name: e for e in (
    Entry("memory_capacity", "memory_capacity", True, "Σ_k r²",
          "H. Jaeger, Short term memory in echo state networks, GMD Report 152, 2001",
          "memory_capacity", "protocol",
          "sum over delays k of the squared correlation between u(t-k) and its linear readout"),
    Entry("narma10", "nrmse", False, "NRMSE",
          "A. F. Atiya and A. G. Parlos, New results on recurrent network training, "
          "IEEE Trans. Neural Netw. 11(3):697-709, 2000",
          "narma", "protocol", "NARMA-10 system identification, normalised RMS error on test rows"),
    Entry("xor", "accuracy", True, "fraction correct",
          "N. Bertschinger and T. Natschläger, Real-time computation at the edge of chaos in recurrent "
          "neural networks, Neural Comput. 16:1413-1436, 2004",
          "xor", "protocol",
          "temporal XOR u(t-d) XOR u(t-d-1) for d = 0, 1, 2; primary: the mean accuracy over the delays"),
    Entry("classification", "accuracy", True, "fraction correct",
          "D. Verstraeten, B. Schrauwen, D. Stroobandt and J. Van Campenhout, Isolated word recognition "
          "with the liquid state machine, Inf. Process. Lett. 95:521-528, 2005; G. Orchard, A. Jayawant, "
          "G. K. Cohen and N. Thakor, Converting static image datasets to spiking neuromorphic datasets "
          "using saccades, Front. Neurosci. 9:437, 2015",
          None, "protocol",
          "spoken 'zero'/'one' (speaker-independent) or, on event-driven devices, saccade digits"),
    Entry("kernel", "capability_per_stream", True, "(KQ − GR) / m",
          "R. Legenstein and W. Maass, Edge of chaos and prediction of computational performance for "
          "neural circuit models, Neural Networks 20:323-334, 2007",
          None, "probe",
          "kernel quality minus generalisation rank of the end states of m streams of the family's task "
          "inputs, divided by m (both ranks are at most m)"),
    Entry("fading_memory", f"distance_at_{FADING_HORIZON}", False, f"d({FADING_HORIZON}) / d(0)",
          "H. Jaeger, The 'echo state' approach to analysing and training recurrent neural networks, "
          "GMD Report 148, 2001",
          None, "probe",
          f"distance between two runs from different states under the same input, {FADING_HORIZON} rows "
          "after they start to share it, relative to the initial distance (also reported: fading_time, "
          "the rows until it falls below 1 %, none if it never does)"),
)}


def get_entry(name: str) -> Entry:
    """The entry called ``name``; ``KeyError`` naming the known ones."""
    try:
        return ENTRIES[name]
    except KeyError:
        raise KeyError(f"unknown battery entry {name!r} (known: {', '.join(ENTRIES)})") from None
