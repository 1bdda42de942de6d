"""Network bursts in array-wide spike trains: detection and the statistics cultures are described by.

The detector follows the burst detection of Wagenaar, Madhavan, Pine & Potter (2005,
J. Neurosci. 25:680) and Wagenaar, Pine & Potter (2006, BMC Neurosci. 7:11):

1. **Burstlets, per electrode.** A burstlet is a maximal run of at least ``min_spikes``
   spikes (default 4) on one electrode in which every inter-spike interval is shorter
   than ``min(isi_max_s, isi_factor / f_e)``. Here ``f_e`` is the electrode's mean
   detection rate over the recording. The defaults, 1/4 of the mean inter-spike interval
   but at most 100 ms, are Wagenaar's. An electrode that fires rarely thus needs a dense
   cluster, while a busy electrode is judged against its own rate.
2. **Network bursts, array-wide.** Burstlets that overlap in time (or come within
   ``merge_gap_s`` of each other) are merged into one burst. It runs from the first
   burstlet's start to the last one's end. A burst must involve at least
   ``min_electrodes`` distinct electrodes (default 4). This is our choice, not
   Wagenaar's: it keeps network bursts and drops a single cell firing a doublet train.

Statistics (:meth:`NetworkBursts.summary`): bursts per minute, mean and median burst
duration (first to last spike of its burstlets), the fraction of all detected spikes
that fall inside a burst (any electrode, between the burst's start and end), and the
inter-burst intervals. An inter-burst interval is onset to onset, as usual for burst
rates.

Everything is vectorised over spikes. The only loop is inside numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NetworkBursts:
    """Network bursts found in a recording of ``recording_s`` seconds."""

    start_s: np.ndarray
    end_s: np.ndarray
    n_spikes: np.ndarray          # detected spikes (all electrodes) within [start, end]
    n_electrodes: np.ndarray      # electrodes with a burstlet in the burst
    recording_s: float
    total_spikes: int

    def __len__(self) -> int:
        return len(self.start_s)

    @property
    def durations_s(self) -> np.ndarray:
        return self.end_s - self.start_s

    @property
    def ibi_s(self) -> np.ndarray:
        """Inter-burst intervals, onset to onset (s)."""
        return np.diff(self.start_s)

    @property
    def rate_per_min(self) -> float:
        return len(self) / (self.recording_s / 60.0) if self.recording_s > 0 else float("nan")

    @property
    def fraction_in_bursts(self) -> float:
        return float(self.n_spikes.sum() / self.total_spikes) if self.total_spikes else 0.0

    def summary(self) -> dict[str, float]:
        """Bursts per minute, durations, fraction of spikes in bursts, inter-burst intervals."""
        dur, ibi = self.durations_s, self.ibi_s
        nan = float("nan")
        return {
            "n_bursts": int(len(self)),
            "recording_s": float(self.recording_s),
            "bursts_per_min": float(self.rate_per_min),
            "mean_duration_s": float(dur.mean()) if len(dur) else nan,
            "median_duration_s": float(np.median(dur)) if len(dur) else nan,
            "fraction_spikes_in_bursts": self.fraction_in_bursts,
            "mean_ibi_s": float(ibi.mean()) if len(ibi) else nan,
            "median_ibi_s": float(np.median(ibi)) if len(ibi) else nan,
            "cv_ibi": float(ibi.std() / ibi.mean()) if len(ibi) > 1 else nan,
            "mean_electrodes_per_burst": float(self.n_electrodes.mean()) if len(self) else nan,
        }


def detect_bursts(time_s: np.ndarray, electrode: np.ndarray, recording_s: float, *, start_s: float = 0.0,
                  min_spikes: int = 4, isi_factor: float = 0.25, isi_max_s: float = 0.1,
                  min_electrodes: int = 4, merge_gap_s: float = 0.0) -> NetworkBursts:
    """Detect network bursts (see the module docstring for the algorithm).

    Parameters
    ----------
    time_s, electrode : ndarray
        Detected spikes (any order): time in seconds and electrode index.
    recording_s : float
        Length of the recording (for the per-electrode rates and the burst rate).
    start_s : float
        Device time at which the recording starts (only spikes from here on count).
    min_spikes : int
        Spikes in a burstlet (Wagenaar: 4).
    isi_factor : float
        Burstlet ISI threshold as a fraction of the electrode's mean ISI (Wagenaar: 1/4).
    isi_max_s : float
        Upper bound of that threshold (Wagenaar: 100 ms).
    min_electrodes : int
        Distinct electrodes a network burst needs.
    merge_gap_s : float
        Burstlets closer than this are merged even if they do not overlap.
    """
    if recording_s <= 0:
        raise ValueError(f"detect_bursts: recording_s must be > 0, got {recording_s}")
    if min_spikes < 2:
        raise ValueError(f"detect_bursts: min_spikes must be >= 2, got {min_spikes}")
    t = np.asarray(time_s, dtype=np.float64)
    e = np.asarray(electrode, dtype=np.int64)
    if t.shape != e.shape:
        raise ValueError(f"detect_bursts: time_s {t.shape} and electrode {e.shape} differ in shape")
    keep = (t >= start_s) & (t < start_s + recording_s)
    t, e = t[keep], e[keep]
    empty = NetworkBursts(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64),
                          float(recording_s), int(len(t)))
    if len(t) < min_spikes:
        return empty
    order = np.lexsort((t, e))
    ts, es = t[order], e[order]
    # per-electrode ISI threshold
    n_el = int(es.max()) + 1
    counts = np.bincount(es, minlength=n_el)
    rate = counts / recording_s
    with np.errstate(divide="ignore"):
        thr_el = np.minimum(isi_max_s, np.where(rate > 0, isi_factor / rate, 0.0))
    close = (np.diff(ts) < thr_el[es[1:]]) & (es[1:] == es[:-1])      # spike i and i+1 close, same electrode
    # runs of `close`: a run of m True values is a cluster of m + 1 spikes
    padded = np.r_[False, close, False].astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == 1)          # first spike of the run
    ends = np.flatnonzero(np.diff(padded) == -1)           # last spike of the run
    big = (ends - starts + 1) >= min_spikes
    starts, ends = starts[big], ends[big]
    if len(starts) == 0:
        return empty
    b_start, b_end, b_el = ts[starts], ts[ends], es[starts]
    # merge overlapping burstlets (sorted by start; a new burst where start > all previous ends)
    o = np.argsort(b_start, kind="stable")
    b_start, b_end, b_el = b_start[o], b_end[o], b_el[o]
    prev_end = np.maximum.accumulate(b_end)
    new = np.r_[True, b_start[1:] > prev_end[:-1] + merge_gap_s]
    group = np.cumsum(new) - 1
    n_groups = int(group[-1]) + 1
    g_start = b_start[new]
    g_end = np.zeros(n_groups)
    np.maximum.at(g_end, group, b_end)
    pairs = np.unique(group * n_el + b_el)
    g_nel = np.bincount(pairs // n_el, minlength=n_groups)
    ok = g_nel >= min_electrodes
    g_start, g_end, g_nel = g_start[ok], g_end[ok], g_nel[ok]
    # spikes (all electrodes) within each burst
    t_sorted = np.sort(t)
    n_in = np.searchsorted(t_sorted, g_end, side="right") - np.searchsorted(t_sorted, g_start, side="left")
    return NetworkBursts(g_start, g_end, n_in.astype(np.int64), g_nel.astype(np.int64), float(recording_s),
                         int(len(t)))


def array_wide_rate(time_s: np.ndarray, recording_s: float, bin_s: float = 0.01, start_s: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Array-wide spike detection rate (ASDR, Wagenaar 2006): spikes per second in bins of
    ``bin_s``. Returns ``(bin_start_s, rate_hz)``."""
    n_bins = int(np.ceil(recording_s / bin_s - 1e-9))
    idx = np.floor((np.asarray(time_s) - start_s) / bin_s + 1e-9).astype(np.int64)
    idx = idx[(idx >= 0) & (idx < n_bins)]
    return start_s + np.arange(n_bins) * bin_s, np.bincount(idx, minlength=n_bins) / bin_s
