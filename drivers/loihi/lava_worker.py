"""Worker script: a LoihiNetwork as a real Lava process graph, run block by block (Python 3.10 + lava-nc).

Run by :class:`labbench.drivers.loihi.lava_backend.LavaBackend` through
:class:`labbench.drivers.transport.python_worker.PythonWorker` under the interpreter of a
venv with lava-nc 0.10 (which needs Python < 3.11). It imports numpy, lava and the wire
module (by path, ``$LABBENCH_WORKER_WIRE``) only: labbench is not installed there.

The graph (lava-nc 0.10: ``lava.proc.io.source.RingBuffer``, ``lava.proc.dense.process.Dense``,
``lava.proc.lif.process.LIF``, ``lava.proc.io.sink.RingBuffer``)::

    source RingBuffer --s_out--> Dense(input) --a_out--> LIF.a_in <--a_out-- Dense(recurrent)
                                                          LIF.s_out --s_in--^
                                                          LIF.s_out -------> sink RingBuffer

run with ``Loihi2SimCfg(select_tag="fixed_pt")`` (CPU: ``PyLifModelBitAcc``,
``PyDenseModelBitAcc``) or ``Loihi2HwCfg`` (needs Intel's lava-loihi, checked up front).

Streaming. Both ring buffers hold ``buffer`` columns and use column
``(time_step - 1) % buffer`` at Lava step ``time_step`` (``source.py``/``sink.py``). A
block of T rows is run in chunks of at most ``buffer`` steps; before a chunk, while the
runtime is paused, the source's ``data`` Var is set so that input row k sits in the column
of the step it is emitted at, and after the chunk the sink's ``data`` Var is read. Input
row t (of everything run since ``build``) is thus emitted at Lava step t + 1 and the
returned spikes row t is what LIF sent at step t + 1. Lava's ``Monitor`` was not used for
spikes: it probes through a RefPort in the management phase of every step.

``record``: u and v are recorded by ``_RecordingLIF``, a LIF subclass whose process model
subclasses Lava's ``PyLifModelBitAcc`` and, after Lava's own ``run_spk``, copies ``u`` and
``v`` into two ring-buffer Vars (no arithmetic of its own), so recording costs one copy per
step and no extra process. With ``cfg="hw"`` recording is refused (a Python model cannot
run on the chip; Lava's ``Monitor`` would be the way, and cannot be tested without lava-loihi).

``reset``: while paused, LIF ``u`` and ``v`` and both Dense ``a_buff`` (the in-flight
activations) are set to zero; Lava's step counter keeps counting, which the worker tracks.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np

_WIRE = os.environ.get("LABBENCH_WORKER_WIRE") or str(Path(__file__).resolve().parents[1] / "transport" / "worker_wire.py")
_spec = importlib.util.spec_from_file_location("worker_wire", _WIRE)
worker_wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker_wire)

import lava
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.dense.process import Dense
from lava.proc.lif.models import PyLifModelBitAcc
from lava.proc.lif.process import LIF
from lava.utils.weightutils import SignMode

#: the module Intel's closed lava-loihi adds (Loihi2HwCfg fails deep without it)
LOIHI_MODULE = "lava.magma.core.model.nc.model"


#: this worker's shared-memory rings by name; Lava forks its runtime processes after they are
#: made (``mp.set_start_method("fork")`` in lava/magma/runtime/message_infrastructure), so the
#: process models below find the same pages here
_SHARED: dict[str, np.ndarray] = {}


def _shared(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    count = int(np.prod(shape))
    pages = mmap.mmap(-1, max(1, count * np.dtype(dtype).itemsize))   # anonymous, MAP_SHARED
    arr = np.frombuffer(pages, dtype, count=count).reshape(shape)
    _SHARED[name] = arr
    return arr


class _ShmSource(AbstractProcess):
    """Binary spikes from the shared ring ``"in"`` (B, n): row ``(time_step - 1) % B`` at each step."""

    def __init__(self, *, shape: tuple[int, ...]) -> None:
        super().__init__(shape=shape)
        self.s_out = OutPort(shape=shape)


class _ShmSink(AbstractProcess):
    """Writes what arrives to row ``(time_step - 1) % B`` of the shared ring ``"spikes"``."""

    def __init__(self, *, shape: tuple[int, ...]) -> None:
        super().__init__(shape=shape)
        self.a_in = InPort(shape=shape)


@implements(proc=_ShmSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class _PyShmSource(PyLoihiProcessModel):
    """As Lava's ``PySendModelFixed`` (lava/proc/io/source.py) with its data in shared memory."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

    def run_spk(self) -> None:
        ring = _SHARED["in"]
        self.s_out.send(ring[(self.time_step - 1) % ring.shape[0]])


@implements(proc=_ShmSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class _PyShmSink(PyLoihiProcessModel):
    """As Lava's ``PyReceiveModelFixed`` (lava/proc/io/sink.py) with its data in shared memory."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

    def run_spk(self) -> None:
        ring = _SHARED["spikes"]
        ring[(self.time_step - 1) % ring.shape[0]] = self.a_in.recv()


class _RecordingLIF(LIF):
    """Lava's LIF, run by :class:`_PyRecordingLifBitAcc`."""


@implements(proc=_RecordingLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class _PyRecordingLifBitAcc(PyLifModelBitAcc):
    """``PyLifModelBitAcc`` unchanged, then u and v copied to row ``(time_step - 1) % B`` of rings "u", "v"."""

    implements_process = None   # inherited from PyLifModelBitAcc (LIF); lava's @implements refuses to overwrite it

    def run_spk(self) -> None:
        super().run_spk()
        u, v = _SHARED["u"], _SHARED["v"]
        row = (self.time_step - 1) % u.shape[0]
        u[row] = self.u
        v[row] = self.v


class _Session:
    """One built graph and where it stands."""

    def __init__(self) -> None:
        self.graph = None

    # -- ops --------------------------------------------------------------------------------
    def version(self) -> dict:
        return {"lava": getattr(lava, "__version__", None) or _dist_version("lava-nc"),
                "python": sys.version.split()[0], "numpy": np.__version__,
                "lava_loihi": _has_module(LOIHI_MODULE)}

    def build(self, *, cfg: str = "sim", record: bool = False, buffer: int = 1024, **net) -> dict:
        self.close()
        if cfg not in ("sim", "hw"):
            raise ValueError(f"cfg must be 'sim' (Loihi2SimCfg fixed_pt) or 'hw' (Loihi2HwCfg), got {cfg!r}")
        if cfg == "hw" and not _has_module(LOIHI_MODULE):
            raise RuntimeError(f"cfg 'hw' needs Intel's lava-loihi ({LOIHI_MODULE} is not importable in "
                               f"{sys.executable}); without it Loihi2HwCfg fails with NameError: CLoihiProcessModel")
        if record and cfg == "hw":
            raise NotImplementedError("recording u/v with cfg 'hw' is not implemented (a Python recording model "
                                      "cannot run on the chip; Lava's Monitor would be needed, untested without lava-loihi)")
        if int(buffer) < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        self.graph = _Graph(net, cfg=cfg, record=bool(record), buffer=int(buffer))
        return {"n_neurons": self.graph.n, "n_inputs": self.graph.n_in}

    def run(self, *, spikes_in: np.ndarray, record: bool = True) -> dict:
        return self._graph().run(spikes_in, record=bool(record))

    def reset(self) -> dict:
        self._graph().reset()
        return {}

    def close(self) -> dict:
        if self.graph is not None:
            graph, self.graph = self.graph, None
            graph.stop()
        return {}

    def _graph(self) -> _Graph:
        if self.graph is None:
            raise RuntimeError("no network: call op 'build' first")
        return self.graph


class _Graph:
    def __init__(self, net: dict, *, cfg: str, record: bool, buffer: int) -> None:
        w_rec = np.asarray(net["recurrent_weights"], np.int32)
        w_in = np.asarray(net["input_weights"], np.int32)
        self.n, self.n_in = w_rec.shape[0], w_in.shape[1]
        self.buffer, self.record, self.cfg = buffer, record, cfg
        self.steps = 0          # Lava steps run since build
        self.ring_in = _shared("in", (buffer, self.n_in), np.int32)
        self.ring_spikes = _shared("spikes", (buffer, self.n), np.int32)
        if record:
            self.ring_u = _shared("u", (buffer, self.n), np.int32)
            self.ring_v = _shared("v", (buffer, self.n), np.int32)
        self.source = _ShmSource(shape=(self.n_in,))
        self.dense_in = Dense(weights=w_in, **_dense_params(net, "input"))
        self.dense_rec = Dense(weights=w_rec, **_dense_params(net, "recurrent"))
        lif_args = dict(shape=(self.n,), du=int(net["du"]), dv=int(net["dv"]), vth=int(net["vth"]),
                        bias_mant=np.asarray(net["bias_mant"], np.int32), bias_exp=int(net["bias_exp"]))
        self.lif = _RecordingLIF(**lif_args) if record else LIF(**lif_args)
        self.sink = _ShmSink(shape=(self.n,))
        self.source.s_out.connect(self.dense_in.s_in)
        self.dense_in.a_out.connect(self.lif.a_in)
        self.lif.s_out.connect(self.dense_rec.s_in)
        self.dense_rec.a_out.connect(self.lif.a_in)
        self.lif.s_out.connect(self.sink.a_in)
        models = {_ShmSource: _PyShmSource, _ShmSink: _PyShmSink, _RecordingLIF: _PyRecordingLifBitAcc}
        if cfg == "sim":
            from lava.magma.core.run_configs import Loihi2SimCfg
            self.run_cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)
        else:
            from lava.magma.core.run_configs import Loihi2HwCfg
            self.run_cfg = Loihi2HwCfg(exception_proc_model_map=models)
        self.started = False

    def run(self, spikes_in: np.ndarray, record: bool = True) -> dict:
        x = np.asarray(spikes_in)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"spikes_in must have shape (T, {self.n_in}), got {x.shape}")
        T = x.shape[0]
        record = record and self.record
        spikes = np.zeros((T, self.n), bool)
        u = np.zeros((T, self.n), np.int32) if record else None
        v = np.zeros((T, self.n), np.int32) if record else None
        done, run_s = 0, 0.0
        while done < T:
            k = min(self.buffer, T - done)
            rows = (self.steps + np.arange(k)) % self.buffer
            self.ring_in[rows] = x[done:done + k] != 0
            t0 = time.perf_counter()
            self.lif.run(condition=RunSteps(num_steps=k, blocking=True), run_cfg=self.run_cfg)
            run_s += time.perf_counter() - t0
            self.started = True
            spikes[done:done + k] = self.ring_spikes[rows] != 0
            if record:
                u[done:done + k] = self.ring_u[rows]
                v[done:done + k] = self.ring_v[rows]
            self.steps += k
            done += k
        out = {"spikes": spikes, "steps": self.steps, "run_s": run_s}
        if record:
            out.update(u=u, v=v)
        return out

    def reset(self) -> None:
        if not self.started:
            return
        zeros = np.zeros(self.n, np.int32)
        self.lif.u.set(zeros)
        self.lif.v.set(zeros)
        self.dense_in.a_buff.set(zeros)
        self.dense_rec.a_buff.set(zeros)

    def stop(self) -> None:
        if self.started:
            self.lif.stop()
            self.started = False


def _dense_params(net: dict, key: str) -> dict:
    mode = int(net[f"{key}_sign_mode"])
    return {"weight_exp": int(net[f"{key}_weight_exp"]), "num_weight_bits": int(net[f"{key}_num_weight_bits"]),
            "sign_mode": SignMode(mode) if mode else None}


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:   # a parent package is missing
        return False


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main() -> int:
    session = _Session()
    try:
        return worker_wire.serve({"version": session.version, "build": session.build, "run": session.run,
                                  "reset": session.reset, "close": session.close})
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
