"""labbench: one protocol, one run store, many reservoirs.

The Python API mirrors the CLI::

    import labbench as lb
    run = lb.run("protocols/narma10.toml", set={"device.params.units": 1000})
    run.metrics, run.store
    r = lb.open_run(run.store)          # any run, finished or still going
    lb.train(run.store, "rls", name="rls")  # replay it through another learner
    with lb.open_device("esn", units=500, seed=1) as res:
        block = res.run(u)
    lb.run("rig.toml", drivers={"rig": MyRig})   # a driver under development (never named by a file)
"""

from .version import __version__  # noqa: F401

from .reservoir import Block, Reservoir, Spec, get_driver, open_device, register_driver  # noqa: E402


def _register(drivers) -> None:
    for name, cls in (drivers or {}).items():
        register_driver(name, cls)


def run(protocol, *, drivers=None, **kwargs):
    """Run a protocol (a path or a :class:`~labbench.spec.protocol.Protocol`); see :func:`labbench.engine.bench.run`.

    ``drivers={"rig": MyRig}`` registers driver classes (:func:`register_driver`) before the
    protocol is read, for protocols that say ``driver = "rig"``.
    """
    from .engine.bench import run as _run

    _register(drivers)
    return _run(protocol, **kwargs)


def resume(store, *, drivers=None, **kwargs):
    """Continue an aborted run of deterministic devices; see :func:`labbench.engine.bench.resume`."""
    from .engine.bench import resume as _resume

    _register(drivers)
    return _resume(store, **kwargs)


def sweep(protocol, *, drivers=None, **kwargs):
    """Run a protocol's ``[sweep]``; see :func:`labbench.engine.sweeper.run_sweep`."""
    from .engine.sweeper import run_sweep

    _register(drivers)
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


def load_protocol(path, overrides=None, *, drivers=None, mock=False):
    """Read and validate a protocol file; see :func:`labbench.spec.protocol.load`."""
    from .spec.protocol import load

    _register(drivers)
    return load(path, overrides, mock=mock)


__all__ = ["Block", "DeviceDown", "Reservoir", "StoreError", "Spec", "get_driver", "load_protocol", "open_device",
           "open_run", "register_driver", "resume", "run", "sweep", "train", "__version__"]
