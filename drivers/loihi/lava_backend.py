"""Lava itself as a back end: a LoihiNetwork run by lava-nc 0.10 in a Python 3.10 worker process.

lava-nc 0.10 declares Python < 3.11 and fails to import on 3.11, so it runs in a worker
process under the interpreter of its own venv (``.ci/lava_venv.sh`` makes ``.venv-lava``):
:class:`LavaBackend` starts ``lava_worker.py`` there through
:class:`~labbench.drivers.transport.python_worker.PythonWorker` and exchanges blocks as
numpy arrays. Its surface is the emulator's (``run(spikes_in, record) -> EmulatorSteps``,
``reset()``, ``counts``), so the two are interchangeable and comparable row for row:
row ``t`` is Lava's time step ``t + 1`` (see ``lava_worker.py`` and ``docs/loihi_lava.md``).

``hardware=True`` runs ``Loihi2HwCfg``, which needs Intel's closed lava-loihi; it is
checked up front (:func:`lava_loihi_available`) and refused in one line without it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from ..transport.python_worker import PythonWorker, WorkerError
from .emulator import EmulatorSteps, effective_weights
from .network import LoihiNetwork

#: the worker script run under the Lava interpreter
WORKER_SCRIPT = Path(__file__).resolve().with_name("lava_worker.py")
#: the module Intel's lava-loihi provides (Loihi2HwCfg fails with NameError: CLoihiProcessModel without it)
LOIHI_MODULE = "lava.magma.core.model.nc.model"
#: environment variable naming the Lava interpreter
PYTHON_ENV = "LABBENCH_LAVA_PYTHON"


class LavaUnavailable(RuntimeError):
    """No interpreter with lava-nc, or (for hardware) no Intel lava-loihi in it."""


def find_lava_python() -> Path | None:
    """The interpreter to run Lava in: ``$LABBENCH_LAVA_PYTHON``, else ``<repo>/.venv-lava/bin/python``.

    Returns
    -------
    Path or None
        An executable file, or None when neither exists (``$LABBENCH_LAVA_PYTHON`` is
        returned as given even if missing, so that the error names it).
    """
    env = os.environ.get(PYTHON_ENV)
    if env:
        return Path(env)
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        cand = root / ".venv-lava" / "bin" / "python"
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def lava_loihi_available(python: str | os.PathLike | None = None) -> bool:
    """Whether Intel's lava-loihi (``lava.magma.core.model.nc.model``) is importable in ``python``.

    Parameters
    ----------
    python
        The Lava interpreter; default :func:`find_lava_python`.
    """
    python = python or find_lava_python()
    if python is None:
        return False
    code = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({LOIHI_MODULE!r}) else 1)"
    try:
        return subprocess.run([str(python), "-c", code], capture_output=True, timeout=120, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def require_lava_loihi(python: str | os.PathLike | None = None) -> None:
    """Raise :class:`LavaUnavailable` (one line) unless lava-loihi is importable in ``python``."""
    python = python or find_lava_python()
    if python is None:
        raise LavaUnavailable(f"backend 'hw' needs a Lava interpreter: set {PYTHON_ENV} or run .ci/lava_venv.sh")
    if not lava_loihi_available(python):
        raise LavaUnavailable(f"backend 'hw' needs Intel's lava-loihi ({LOIHI_MODULE}), which {python} cannot "
                              "import; it is distributed to INRC members only (use backend 'lava' or 'emulator')")


class LavaBackend:
    """A LoihiNetwork in Lava 0.10 (``Loihi2SimCfg(select_tag="fixed_pt")`` or ``Loihi2HwCfg``).

    Parameters
    ----------
    network : LoihiNetwork
        The network; built in the worker at once.
    python : str or Path, optional
        The Lava interpreter (default :func:`find_lava_python`).
    hardware : bool
        Run ``Loihi2HwCfg`` (needs lava-loihi; refused up front without it).
    record : bool
        Build the graph so that ``run(..., record=True)`` can return u and v (one copy of
        u and v per step inside Lava's LIF process; see ``lava_worker.py``).
    buffer : int
        Columns of the source and sink ring buffers: a block longer than this runs in
        chunks of ``buffer`` steps.
    timeout_s : float
        Longest wait for the worker's start-up and for one call.

    Attributes
    ----------
    counts : dict of str to int
        As the emulator's, since the last reset: ``synaptic_ops`` (spikes x fan-out of the
        effective non-zero weights, input spikes included), ``neuron_updates``, ``spikes``,
        ``steps``; computed here from the spikes Lava returns.
    timing : dict of str to float
        ``run_s``: seconds spent inside Lava's ``run`` calls (measured in the worker),
        summed since the last reset.
    """

    def __init__(self, network: LoihiNetwork, python: str | os.PathLike | None = None, hardware: bool = False,
                 *, record: bool = False, buffer: int = 1024, timeout_s: float = 600.0) -> None:
        if not isinstance(network, LoihiNetwork):
            raise TypeError(f"network must be a LoihiNetwork, got {type(network).__name__}")
        python = python or find_lava_python()
        if python is None:
            raise LavaUnavailable(f"no Lava interpreter: set {PYTHON_ENV} or run .ci/lava_venv.sh to make .venv-lava")
        if hardware:
            require_lava_loihi(python)
        self.network = network
        self.python = Path(python)
        self.hardware = bool(hardware)
        self.record = bool(record)
        self._fan_rec = (effective_weights(network.recurrent) != 0).sum(axis=0).astype(np.int64)
        self._fan_in = (effective_weights(network.input) != 0).sum(axis=0).astype(np.int64)
        self._counts = dict.fromkeys(("synaptic_ops", "neuron_updates", "spikes", "steps"), 0)
        self.timing = {"run_s": 0.0}
        self._worker = PythonWorker(self.python, WORKER_SCRIPT, timeout_s=timeout_s)
        try:
            self.versions = self._worker.call("version")
            self._worker.call("build", cfg="hw" if hardware else "sim", record=self.record, buffer=int(buffer),
                              **network.to_arrays())
        except BaseException:
            self._worker.close()
            raise

    @property
    def n_neurons(self) -> int:
        """Number of LIF neurons."""
        return self.network.n_neurons

    @property
    def n_inputs(self) -> int:
        """Number of input channels."""
        return self.network.n_inputs

    @property
    def worker_pid(self) -> int:
        """The worker's process id; Lava's runtime processes are in its process group."""
        return self._worker.pid

    @property
    def counts(self) -> dict[str, int]:
        """Operation counts since the last :meth:`reset`."""
        return dict(self._counts)

    def run(self, spikes_in: np.ndarray, record: bool = False) -> EmulatorSteps:
        """Advance ``T`` Lava time steps.

        Parameters
        ----------
        spikes_in : ndarray, shape (T, n_inputs)
            0/1: row ``t`` is what the source emits at the ``t``-th step of this block.
        record : bool
            Also return u and v (needs ``record=True`` at construction).

        Returns
        -------
        EmulatorSteps
        """
        x = np.asarray(spikes_in)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"spikes_in must have shape (T, {self.n_inputs}), got {x.shape}")
        if x.dtype != np.bool_:
            if x.size and not np.isin(x, (0, 1)).all():
                raise ValueError("spikes_in must hold only 0 and 1 (binary spikes)")
            x = x.astype(bool)
        if record and not self.record:
            raise ValueError("run(record=True) needs LavaBackend(..., record=True): the graph records u/v only if built so")
        out = self._worker.call("run", spikes_in=np.ascontiguousarray(x), record=bool(record))
        spikes = out["spikes"]
        self.timing["run_s"] += float(out["run_s"])
        c = self._counts
        c["steps"] += x.shape[0]
        c["neuron_updates"] += x.shape[0] * self.n_neurons
        c["spikes"] += int(spikes.sum())
        c["synaptic_ops"] += int(spikes.sum(axis=0) @ self._fan_rec + x.sum(axis=0) @ self._fan_in)
        if record:
            return EmulatorSteps(spikes, out["u"], out["v"])
        return EmulatorSteps(spikes)

    def reset(self) -> None:
        """u = v = 0 and no activation in flight (Lava Vars set while paused); counts zeroed."""
        self._worker.call("reset")
        self._counts = dict.fromkeys(self._counts, 0)
        self.timing = {"run_s": 0.0}

    def close(self) -> None:
        """Stop Lava's runtime and the worker. Safe to call twice."""
        self._worker.close()

    def __enter__(self) -> LavaBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LOIHI_MODULE", "LavaBackend", "LavaUnavailable", "WorkerError", "find_lava_python",
           "lava_loihi_available", "require_lava_loihi"]
