"""labbench: one protocol, one run store, many reservoirs.

The Python API mirrors the CLI::

    import labbench as lb
    run = lb.run("protocols/narma10.toml", set={"device.params.units": 1000})
    run.metrics, run.store
    r = lb.open_run(run.store)          # any run, finished or still going
    lb.train(run.store, "rls", name="rls")  # replay it through another learner
    with lb.open_device("esn", units=500, seed=1) as res:
        block = res.run(u)
"""

from .version import __version__  # noqa: F401

from .reservoir import Block, Reservoir, Spec, open_device  # noqa: E402


def run(protocol, **kwargs):
    """Run a protocol (a path or a :class:`~labbench.spec.protocol.Protocol`); see :func:`labbench.engine.bench.run`."""
    from .engine.bench import run as _run

    return _run(protocol, **kwargs)


def resume(store, **kwargs):
    """Continue an aborted run of deterministic devices; see :func:`labbench.engine.bench.resume`."""
    from .engine.bench import resume as _resume

    return _resume(store, **kwargs)


def sweep(protocol, **kwargs):
    """Run a protocol's ``[sweep]``; see :func:`labbench.engine.sweeper.run_sweep`."""
    from .engine.sweeper import run_sweep

    return run_sweep(protocol, **kwargs)


def __getattr__(name):
    # exception classes, importable without importing Ray or Zarr up front
    if name == "DeviceDown":
        from .engine.errors import DeviceDown

        return DeviceDown
    if name == "StoreError":
        from .store import StoreError

        return StoreError
    raise AttributeError(f"module 'labbench' has no attribute {name!r}")


def open_run(path):
    """Open a run store for reading; see :class:`labbench.store.RunReader`."""
    from .store import RunReader

    return RunReader(path)


def train(store, readout=None, **kwargs):
    """Train a readout on a run store (finished or running); see :func:`labbench.engine.live.train`."""
    from .engine.live import train as _train

    return _train(store, readout, **kwargs)


def load_protocol(path, overrides=None):
    """Read and validate a protocol file; see :func:`labbench.spec.protocol.load`."""
    from .spec.protocol import load

    return load(path, overrides)


__all__ = ["Block", "DeviceDown", "Reservoir", "StoreError", "Spec", "load_protocol", "open_device", "open_run", "resume", "run",
           "sweep", "train", "__version__"]
