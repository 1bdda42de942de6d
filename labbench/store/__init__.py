"""The run store: one Zarr v3 group per run, written by one writer, tailed by many readers.

Layout (see ``docs/design.md`` and ``docs/store.md``)::

    <run>.zarr                attrs: labbench version, protocol text + sha256, seed, host,
                                     started/ended, status, error, metrics
      <device>/               attrs: driver, describe, spec, committed
        inputs    (time, input)
        features  (time, unit)
        targets   (time, output)
        phase     (time,)     int8: 0 washout, 1 train, 2 test
        sequence  (time,)     int32, only for sequence tasks: sample index, -1 between samples
        raw/<stream>/<column> (row,) append-only, plus raw/<stream>/offsets (block,);
                              (row, *cell) for a column of cells (frames: row, y, x)
        readouts/<name>/      written by that readout's trainer (see ``ReadoutWriter``)
          predictions (time, output)
          history/<column> (evaluation,)   the metric history, one row per evaluation
          attrs: describe, status, consumed, evaluations, metrics, warnings, error

Every array carries ``dimension_names`` so ``xarray.open_zarr(path, group=device,
consolidated=False)`` opens a device group as a Dataset.

Durability rule: the writer writes a block into every time array first and only then
advances the group attribute ``committed``; readers re-open the group on every poll and
read rows below ``committed`` only. Zarr's local store writes each chunk and each
``zarr.json`` by temp file and rename, so a reader never sees a torn block and a run
killed at any point leaves every committed row intact. When the expected length is
known the arrays are allocated at full length up front (rows past ``committed`` hold
the fill value) and trimmed to ``committed`` when the run ends, so an append costs
chunk writes plus one small attribute write.

Each readout group has its own single writer, the trainer (a Ray actor during a run, or
``labbench train`` replaying a finished run); it follows the same rule with its own
``consumed`` and ``evaluations`` attributes, so the run's writer and the trainers never
write the same file.
"""

from .layout import PHASES, STATUSES, StoreError, jsonable, new_run_path, now_iso, versions, writer_is_dead
from .reader import RunReader
from .writer import ReadoutWriter, RunStore

__all__ = ["PHASES", "STATUSES", "ReadoutWriter", "RunReader", "RunStore", "StoreError", "jsonable",
           "new_run_path", "now_iso", "versions", "writer_is_dead"]
