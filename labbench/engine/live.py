"""Live training: trainers that tail a run store and learn from it while the run goes on.

A :class:`Trainer` is the pure learning logic of one ``[[readouts]]`` entry: an optional
unsupervised module (STDP, SOM), per-sample pooling for sequence tasks, and a supervised
readout. It consumes the device stream one store block at a time, in order, so a trainer
following a live run and one replaying the finished store see exactly the same blocks and
end with the same model and metrics.

The phase column decides what each row is for, and nothing scored has been learned from:

- washout rows are ignored;
- train rows teach the module (without labels) and then the readout. Before a train
  block is learned, the current readout is scored on it (*prequential* or
  test-then-train evaluation; Dawid 1984, Gama et al. 2013, "On evaluating stream
  learning algorithms", Mach. Learn. 90:317), so the learning curve is visible while
  training runs, on data the readout has not yet seen;
- test rows are predicted with everything frozen and scored on held-out data.

:func:`train_store` runs a trainer over a store (following it while it is written) and
writes predictions, the metric history and the final metrics under
``<device>/readouts/<name>/``; the bench runs it in a Ray actor during ``labbench run``
and ``labbench train`` runs it stand-alone on a finished store.
"""

from __future__ import annotations

import math
import pickle
import resource
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ..spec.protocol import ReadoutSection
from ..readouts import READOUT_KINDS, make_module, make_readout, parameters
from ..readouts.pooling import pool_sequences
from ..store import PHASES, ReadoutWriter, RunReader, StoreError
from ..tasks import Task
from .memory import keep_large_arrays_mapped
from .trained import Pipeline, TrainResult

WASHOUT, TRAIN, TEST = PHASES["washout"], PHASES["train"], PHASES["test"]
#: most prequential / test evaluations a trainer makes over a phase
MAX_EVALUATIONS = 50


class TrainerError(Exception):
    """A trainer that cannot start on a store (wrong store, no train rows, width mismatch)."""


@dataclass
class Emitted:
    """What one consumed block produced: predictions to write, rows now final, a history row."""

    start: int
    predictions: np.ndarray | None
    consumed: int
    history: dict[str, float] | None


class Trainer:
    """Learns one readout from a device stream, block by block.

    Parameters
    ----------
    spec : ReadoutSection
        The ``[[readouts]]`` entry: readout kind and hyperparameters, optional module,
        pooling.
    task : Task
        Scores predictions; for sequence tasks it also gives the class labels.
    layout : dict
        Rows per phase (``washout``, ``train``, ``test``), to spread evaluations evenly.
    block : int
        Rows per store block; the stream is consumed in exactly these blocks.
    """

    def __init__(self, spec: ReadoutSection, task: Task, *, layout: dict[str, int], block: int) -> None:
        self.spec = spec
        self.task = task
        self.block = int(block)
        self.name = spec.label
        self.sequential = task.sequence_length is not None
        self.metric = task.primary_metric
        self.module = None
        if spec.module is not None:
            mod = dict(spec.module)
            self.module = make_module(mod.pop("kind"), **mod)
        params = dict(spec.params)
        if task.classes is not None and spec.kind in READOUT_KINDS and "classes" in (parameters(spec.kind) or ()):
            params.setdefault("classes", list(task.classes))
        self.readout = make_readout(spec.kind, **params)
        self.pool = spec.pool or ("sum" if self.module is not None else "mean")
        self._every = {
            TRAIN: _cadence(layout.get("train", 0), self.block),
            TEST: _cadence(layout.get("test", 0), self.block),
        }
        self._blocks_seen = {TRAIN: 0, TEST: 0}
        self._test_due = False
        self._last_history: dict[str, float] | None = None
        self.n_train = 0
        self.n_test = 0
        self._fitted = False
        self._module_fitted = False
        # the scored test rows (or samples): the task's scores are functions of the whole
        # test set (correlations, trial means), so these are kept, n_outputs values a row
        held_out = int(layout.get("test", 0))
        if self.sequential:
            held_out = held_out // max(int(task.sequence_length or 1), 1) + 1
        self._y_true = _Rows(held_out)
        self._y_pred = _Rows(held_out)
        self._carry: dict[str, np.ndarray] | None = None  # rows of a sequence not yet complete
        self._carry_start = 0
        self.position = 0  # rows consumed
        self._received = 0  # rows handed to consume()
        self._pending: dict[str, np.ndarray] | None = None  # an incomplete block
        self._pending_start = 0
        #: warnings raised while training or predicting (e.g. an ill-conditioned ridge system)
        self.warnings: list[str] = []

    # -- the stream --------------------------------------------------------------------------
    def history_columns(self) -> list[str]:
        return ["row", "n_train", "n_test", f"prequential_{self.metric}", f"test_{self.metric}"]

    def consume(self, start: int, arrays: dict[str, np.ndarray]) -> list[Emitted]:
        """Consume rows ``start:start+len`` (they must follow the rows already received).

        Rows are learned one store block at a time (a block is ``block`` rows from a
        multiple of ``block``), whatever stretches they arrive in, so a trainer following
        a live run and one replaying its store agree exactly; an incomplete last block
        waits for more rows or for :meth:`finish`.
        """
        received = self._received
        if start != received:
            raise ValueError(f"trainer {self.name!r}: rows must arrive in order (expected row {received}, "
                             f"got {start})")
        if self._pending is not None:
            arrays = {k: np.concatenate([self._pending[k], v]) for k, v in arrays.items()}
            start = self._pending_start
        n = len(arrays["phase"])
        self._received = start + n
        out = []
        a = 0
        while a < n:
            b = a + self.block - (start + a) % self.block
            if b > n:
                break
            out.append(self._block(start + a, {k: v[a:b] for k, v in arrays.items()}))
            a = b
        self._pending = {k: v[a:] for k, v in arrays.items()} if a < n else None
        self._pending_start = start + a
        return out

    def finish(self) -> list[Emitted]:
        """Learn a last incomplete block, flush a sequence still open, and evaluate a last time."""
        out = []
        if self._pending is not None:
            out.append(self._block(self._pending_start, self._pending))
            self._pending = None
        if self.sequential and self._carry is not None and len(self._carry["phase"]):
            start = self._carry_start
            preds, _ = self._sequences(self._carry, start)
            self.position = start + len(self._carry["phase"])
            out.append(Emitted(start, preds, self.position, None))
        self._carry = None
        final = self._history(None, force_test=True)
        out.append(Emitted(self.position, None, self.position, final))
        return out

    def metrics(self) -> dict[str, Any]:
        """The task's metrics on every test row (or sample) seen so far."""
        out: dict[str, Any] = {"n_train": self.n_train, "n_test": self.n_test}
        if len(self._y_true):
            out = {**self.task.score(self._y_true.view(), self._y_pred.view()), **out}
        return out

    def predictor(self) -> Pipeline:
        return Pipeline(self.module, self.readout)

    # -- one block -------------------------------------------------------------------------------
    def _block(self, start: int, arrays: dict[str, np.ndarray]) -> Emitted:
        phase = np.asarray(arrays["phase"])
        X = np.asarray(arrays["features"])
        Z = self._module_rows(X, phase)
        self.position = start + len(phase)
        if not self.sequential:
            preds, preq = self._rows(Z, np.asarray(arrays["targets"], dtype=np.float64), phase)
            return Emitted(start, preds, self.position, self._history(preq))
        if "sequence" not in arrays:
            raise TrainerError(f"task {self.task.name!r} classifies samples, but the store has no 'sequence' "
                               "column")
        rows = {"Z": Z, "y": np.asarray(arrays["targets"], dtype=np.float64).reshape(len(phase), -1)[:, 0],
                "sequence": np.asarray(arrays["sequence"]), "phase": phase}
        if self._carry is not None:
            rows = {k: np.concatenate([self._carry[k], v]) for k, v in rows.items()}
            seq_start = self._carry_start
        else:
            seq_start = start
        # the last sequence may continue in the next block: keep it back. Sample k of a sequence
        # task starts at row k * sequence_length, so a block ending on that grid closes it.
        seq = rows["sequence"]
        cut = len(seq)
        if seq[-1] >= 0 and self.position % self.task.sequence_length:
            cut = int(np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])[-1])
        done = {k: v[:cut] for k, v in rows.items()}
        self._carry = {k: v[cut:] for k, v in rows.items()}
        self._carry_start = seq_start + cut
        preq = None
        preds = None
        if cut:
            preds, preq = self._sequences(done, seq_start)
        consumed = self._carry_start
        return Emitted(seq_start, preds, consumed, self._history(preq))

    def _module_rows(self, X: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """Rows through the module: learning on train rows, frozen on test rows, NaN on washout."""
        if self.module is None:
            return X
        parts = []
        segments = _segments(phase)
        for a, b, ph in segments:
            if ph == TRAIN:
                if hasattr(self.module, "partial_fit_transform"):
                    parts.append(self.module.partial_fit_transform(X[a:b]))
                else:
                    parts.append(self.module.partial_fit(X[a:b]).transform(X[a:b]))
                self._module_fitted = True
            elif ph == TEST:
                if not self._module_fitted:
                    raise TrainerError(f"readout {self.name!r}: test rows arrived before any train rows")
                parts.append(self.module.transform(X[a:b]))
            else:
                parts.append(None)
        width = next((p.shape[1] for p in parts if p is not None), None)
        if width is None:
            return np.full((len(phase), 1), np.nan)
        return np.concatenate([p if p is not None else np.full((b - a, width), np.nan)
                               for p, (a, b, _) in zip(parts, segments)])

    def _rows(self, Z: np.ndarray, y: np.ndarray, phase: np.ndarray):
        preq = None
        train = phase == TRAIN
        if train.any():
            if self._tick(TRAIN) and self._fitted:
                pred = self._predict(Z[train]).reshape(int(train.sum()), -1)
                preq = self.task.score(y[train].reshape(pred.shape), pred).get(self.metric)
            self._learn(Z[train], y[train])
            self.n_train += int(train.sum())
        test = phase == TEST
        if not test.any():
            return None, preq
        if not self._fitted:
            raise TrainerError(f"readout {self.name!r}: test rows arrived before any train rows")
        pred = self._predict(Z[test]).reshape(int(test.sum()), -1)
        self._y_true.append(y[test].reshape(pred.shape))
        self._y_pred.append(pred)
        self.n_test += int(test.sum())
        self._test_due = self._tick(TEST)
        out = np.full((len(phase), pred.shape[1]), np.nan)
        out[test] = pred
        return out, preq

    def _sequences(self, rows: dict[str, np.ndarray], start: int):
        """Pool complete sequences, learn from the train ones, predict the test ones."""
        pooled, ids = pool_sequences(rows["Z"], rows["sequence"], self.pool, self.spec.n_slices)
        seq = rows["sequence"]
        new = np.r_[True, seq[1:] != seq[:-1]] & (seq >= 0)
        starts = np.flatnonzero(new)
        labels = rows["y"][starts]
        phases = rows["phase"][starts]
        preq = None
        train = phases == TRAIN
        if train.any():
            if self._tick(TRAIN) and self._fitted:
                pred = np.asarray(self._predict(pooled[train])).ravel()
                preq = self.task.score(labels[train], pred).get(self.metric)
            self._learn(pooled[train], labels[train])
            self.n_train += int(train.sum())
        test = phases == TEST
        preds = np.full((len(seq), 1), np.nan)
        if test.any():
            if not self._fitted:
                raise TrainerError(f"readout {self.name!r}: test samples arrived before any train samples")
            pred = np.asarray(self._predict(pooled[test]), dtype=np.float64).ravel()
            self._y_true.append(labels[test])
            self._y_pred.append(pred)
            self.n_test += int(test.sum())
            self._test_due = self._tick(TEST)
            # every row of a test sample carries the sample's predicted class
            row_pred = np.full(len(ids), np.nan)
            row_pred[test] = pred
            index = np.cumsum(new) - 1  # pooled index of each row's sample
            valid = seq >= 0
            preds[valid, 0] = row_pred[index[valid]]
        return preds, preq

    # -- helpers ---------------------------------------------------------------------------------
    def _learn(self, X: np.ndarray, y: np.ndarray) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.readout.partial_fit(X, y)
        self._note(caught)
        self._fitted = True

    def _predict(self, X: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = np.asarray(self.readout.predict(X), dtype=np.float64)
        self._note(caught)
        return pred

    def _note(self, caught: list[warnings.WarningMessage]) -> None:
        for w in caught:
            msg = f"{w.category.__name__}: {w.message}"
            if msg not in self.warnings:
                self.warnings.append(msg)

    def _tick(self, phase: int) -> bool:
        """Count a block with rows of ``phase``; True when this one is due for evaluation."""
        k = self._blocks_seen[phase]
        self._blocks_seen[phase] = k + 1
        return k % self._every[phase] == 0

    def _history(self, preq: float | None, force_test: bool = False) -> dict[str, float] | None:
        test_now = len(self._y_true) > 0 and (force_test or self._test_due)
        self._test_due = False
        if preq is None and not test_now:
            return None
        row = {"row": float(self.position), "n_train": float(self.n_train), "n_test": float(self.n_test)}
        if preq is not None:
            row[f"prequential_{self.metric}"] = float(preq)
        if test_now:
            row[f"test_{self.metric}"] = float(self.metrics().get(self.metric, np.nan))
        if force_test and preq is None and self._last_history is not None and \
                {k: v for k, v in self._last_history.items() if k != "row"} == \
                {k: v for k, v in row.items() if k != "row"}:
            return None  # the final evaluation adds nothing new
        self._last_history = row
        return row


class _Rows:
    """Rows appended block by block into one array whose capacity doubles when full.

    ``view()`` is the rows so far as one contiguous array, with the same values (and
    dtype) ``np.concatenate`` of the appended parts would give, without copying every
    part again at each evaluation.
    """

    def __init__(self, capacity: int = 0) -> None:
        self._capacity = max(int(capacity), 1)
        self._buf: np.ndarray | None = None
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if self._buf is None:
            self._buf = np.empty((max(self._capacity, len(rows)), *rows.shape[1:]), dtype=rows.dtype)
        need = self._n + len(rows)
        if need > len(self._buf):
            grown = np.empty((max(need, 2 * len(self._buf)), *self._buf.shape[1:]), dtype=self._buf.dtype)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:need] = rows
        self._n = need

    def view(self) -> np.ndarray:
        return self._buf[:self._n] if self._buf is not None else np.empty(0)


def _cadence(rows: int, block: int) -> int:
    """Evaluate every k-th block so that a phase gets at most MAX_EVALUATIONS evaluations."""
    blocks = math.ceil(max(rows, 1) / max(block, 1))
    return max(1, math.ceil(blocks / MAX_EVALUATIONS))


def _segments(phase: np.ndarray) -> list[tuple[int, int, int]]:
    edges = np.flatnonzero(np.r_[True, phase[1:] != phase[:-1], True])
    return [(int(a), int(b), int(phase[a])) for a, b in zip(edges[:-1], edges[1:])]


# ---------------------------------------------------------------------------------------------
# running a trainer over a store
# ---------------------------------------------------------------------------------------------
def prepare(path: str | Path, spec: ReadoutSection, *, device: str | None = None, task: Task | None = None,
            model: Pipeline | None = None) -> tuple[RunReader, str, Trainer, dict[str, Any]]:
    """Check that ``spec`` can train on the store; nothing is written.

    Raises
    ------
    TrainerError
        Not a labbench run, unknown device, no train rows, or a readout whose input width
        is fixed and differs from the store's features.
    """
    try:
        reader = RunReader(path)
    except StoreError as exc:
        raise TrainerError(str(exc)) from None
    devices = reader.devices
    if device is None:
        if len(devices) != 1:
            raise TrainerError(f"{path}: choose a device with --device (the store has {devices or 'none'})")
        device = devices[0]
    if device not in devices:
        raise TrainerError(f"{path}: no device {device!r} (the store has {', '.join(devices) or 'none'})")
    dev = reader.device_attrs(device)
    attrs = reader.attrs
    if task is None:
        from ..tasks import TASKS

        task_dict = (attrs.get("protocol") or {}).get("task")
        if not task_dict or task_dict.get("name") not in TASKS:
            raise TrainerError(f"{path}: the store records no known task (root attribute protocol.task)")
        task = TASKS[task_dict["name"]].model_validate(task_dict)
    layout = dict(dev.get("layout") or {})
    finished = attrs.get("status") != "running" or dev.get("stream_done")
    if finished:
        phase = reader.read(device, columns=["phase"])["phase"]
        layout = {k: int(np.sum(phase == v)) for k, v in PHASES.items()}
    if layout.get("train", 0) == 0:
        raise TrainerError(f"{path}: device {device!r} has no train rows (phase == 1): nothing to learn from")
    n_features = int(dev["spec"]["n_features"])
    try:
        trainer = Trainer(spec, task, layout=layout, block=int(dev.get("chunk_rows") or 1000))
    except ValueError as exc:
        raise TrainerError(f"readout {spec.label!r}: {exc}") from None
    if model is not None:
        trainer.module, trainer.readout = model.module, model.readout
        trainer._fitted = trainer._module_fitted = True
        expected = getattr(model.module if model.module is not None else model.readout, "n_features_in_", None)
        if expected is not None and int(expected) != n_features:
            raise TrainerError(f"readout {spec.label!r}: the model was fitted on {expected} features, but "
                               f"{device}/features has {n_features}")
    if trainer.sequential and "sequence" not in reader.read(device, 0, 0, readouts=False):
        raise TrainerError(f"{path}: task {task.name!r} classifies samples, but {device} has no 'sequence' column")
    readouts = reader.readouts(device)
    if spec.label in readouts:
        raise TrainerError(f"{path}: {device}/readouts/{spec.label} already exists; choose another --name")
    return reader, device, trainer, dev


def train_store(path: str | Path, spec: ReadoutSection, *, device: str | None = None, task: Task | None = None,
                model: Pipeline | None = None, poll: float = 0.05, timeout: float | None = None,
                on_block: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train one readout on a store, following it while it is being written.

    Writes ``<device>/readouts/<name>/`` (predictions, metric history, final metrics and
    status) as it goes. Checks everything it can before writing anything, so a trainer
    refused with :class:`TrainerError` leaves the store unchanged.

    Parameters
    ----------
    path : path-like
        The run store.
    spec : ReadoutSection
        What to train (``ReadoutSection(kind="ridge", alpha=1e-6, name="ridge2")``).
    device : str, optional
        Device group (default: the only one).
    task : Task, optional
        Default: the task recorded in the store's protocol.
    model : Pipeline, optional
        An already trained pipeline (``--model``) to go on training and evaluating.
    poll, timeout : float
        Seconds between polls of a live store; give up after ``timeout`` s without rows.
    on_block : callable, optional
        Called with ``(rows consumed, rows expected)`` after each stretch (progress bars).
    """
    t_start = time.perf_counter()
    started_unix = time.time()
    reader, device, trainer, dev = prepare(path, spec, device=device, task=task, model=model)
    keep_large_arrays_mapped()   # block-sized arrays do not fragment the heap (engine/memory.py)
    expected = int(dev.get("expected_rows") or 0) or reader.committed(device)
    writer = ReadoutWriter(path, device, trainer.name, n_outputs=trainer.task.n_outputs,
                           describe=spec.describe(), history_columns=trainer.history_columns(),
                           rows=expected, chunk_rows=trainer.block)
    setup_s = time.perf_counter() - t_start
    write_s = 0.0

    def emit(emitted: list[Emitted]) -> None:
        """What a stretch of rows produced, in one batch: the store's round trips are paid per
        stretch (a block while the trainer keeps up), not per array and history column."""
        nonlocal write_s
        if not emitted:
            return
        t0 = time.perf_counter()
        history = [e.history for e in emitted if e.history is not None]
        writer.write_batch([(e.start, e.predictions) for e in emitted if e.predictions is not None],
                           emitted[-1].consumed, history, trainer.metrics() if history else None)
        write_s += time.perf_counter() - t0

    learn_s = 0.0
    last_rows_unix = time.time()
    try:
        for start, arrays in reader.tail(device, start=0, poll=poll, timeout=timeout, readouts=False,
                                          max_rows=trainer.block):
            last_rows_unix = time.time()
            t0 = time.perf_counter()
            emit(trainer.consume(start, arrays))
            learn_s += time.perf_counter() - t0
            if on_block is not None:
                on_block(trainer.position, expected)
        t_finish = time.perf_counter()
        emit(trainer.finish())
        learn_s += time.perf_counter() - t_finish
        status = "complete" if reader.status in ("running", "complete") else "aborted"
        metrics = trainer.metrics()
        total = time.perf_counter() - t_start
        timings = {"learn_s": learn_s, "read_s": total - setup_s - learn_s - reader.waited_s,
                   "wait_s": reader.waited_s, "write_s": write_s, "setup_s": setup_s,
                   "finish_s": time.perf_counter() - t_finish, "started_unix": started_unix,
                   "last_rows_unix": last_rows_unix,
                   "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        writer.set_attrs(metrics=metrics, warnings=trainer.warnings, timings=timings)
        writer.finish(status)
        timings["ended_unix"] = time.time()
        return TrainResult(trainer.name, metrics, trainer.warnings, trainer.predictor(), status, timings)
    except KeyboardInterrupt:
        writer.finish("aborted", "interrupted by the user (SIGINT)")
        raise
    except BaseException as exc:
        writer.finish("failed", "".join(traceback.format_exception_only(type(exc), exc)).strip())
        raise


def readout_specs(path: str | Path, readout: str | dict[str, Any] | ReadoutSection | None = None, *,
                  name: str | None = None, params: dict[str, Any] | None = None) -> list[ReadoutSection]:
    """What :func:`train` trains: one readout described by kind + parameters, or (no
    ``readout``) every readout of the store's own protocol, renamed ``<name>-replay``."""
    from ..spec.protocol import ProtocolError, check_readouts

    if readout is None:
        try:
            proto = RunReader(path).attrs.get("protocol") or {}
        except StoreError as exc:
            raise TrainerError(str(exc)) from None
        specs = [ReadoutSection.model_validate({**r, "name": f"{r.get('name') or r['kind']}-replay"})
                 for r in proto.get("readouts", [])]
        if not specs:
            raise TrainerError(f"{path}: the store's protocol lists no readouts; give one with --readout")
        return specs
    if isinstance(readout, ReadoutSection):
        data = readout.describe()
    elif isinstance(readout, str):
        data = {"kind": readout}
    else:
        data = dict(readout)
    data.update(params or {})
    if name is not None:
        data["name"] = name
    try:
        spec = ReadoutSection.model_validate(data)
    except Exception as exc:
        raise TrainerError(f"readout {data.get('kind')!r}: {exc}") from None
    problems = check_readouts([spec])
    if problems:
        raise TrainerError(str(ProtocolError("--readout", [p.replace("readouts[0].", "") for p in problems])))
    return [spec]


def train(store: str | Path, readout: str | dict[str, Any] | ReadoutSection | None = None, *,
          name: str | None = None, device: str | None = None, model: str | Path | Pipeline | None = None,
          **params: Any) -> list[TrainResult]:
    """Train readouts on a run store, finished or still running (``labbench train``).

    Parameters
    ----------
    store : path-like
        The run store.
    readout : str, dict or ReadoutSection, optional
        Readout kind (``"rls"``) or a whole ``[[readouts]]`` table. Omitted: replay every
        readout of the store's protocol, each as ``<name>-replay``.
    name : str, optional
        Name of the new readout group (default: the kind).
    device : str, optional
        Device group (default: the only one).
    model : path-like or Pipeline, optional
        Start from an already trained pipeline (e.g. one trained on another run).
    **params
        Hyperparameters of the readout (and ``module``, ``pool``...).

    Examples
    --------
    >>> lb.train("runs/20261122T101500_mackey_glass.zarr", "rls", forgetting=1.0, name="rls")  # doctest: +SKIP
    """
    specs = readout_specs(store, readout, name=name, params=params)
    pipeline = load_model(model) if isinstance(model, (str, Path)) else model
    return [train_store(store, spec, device=device, model=pipeline) for spec in specs]


def save_model(pipeline: Pipeline, path: str | Path) -> None:
    """Pickle a trained pipeline (``labbench train --save-model``)."""
    Path(path).write_bytes(pickle.dumps(pipeline))


def load_model(path: str | Path) -> Pipeline:
    """Load a pipeline saved by :func:`save_model` (only load files you trust: it is a pickle)."""
    try:
        obj = pickle.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise TrainerError(f"{path}: no such model file") from None
    except Exception as exc:
        raise TrainerError(f"{path}: not a labbench model ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, Pipeline):
        raise TrainerError(f"{path}: not a labbench model (a pickled {type(obj).__name__})")
    return obj


def wait_for(path: str | Path, device: str, name: str, *, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until a readout group finished (tests, notebooks); returns its attributes."""
    reader = RunReader(path)
    t0 = time.monotonic()
    while True:
        ro = reader.readouts(device).get(name)
        if ro is not None and ro.get("status") != "running":
            return ro
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{path}: readout {device}/{name} still running after {timeout} s")
        time.sleep(0.05)
