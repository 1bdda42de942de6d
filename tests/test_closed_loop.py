"""Closed-loop (generative) runs: the batched path and the one-start-at-a-time path agree."""

import numpy as np

from labbench.closed_loop import free_run
from labbench.drivers.esn import EchoStateNetwork
from labbench.readouts import IncrementalRidge


class _OneAtATime(EchoStateNetwork):
    """The same network, as a driver without batch support would present it."""

    supports_batch = False


def test_batched_and_sequential_free_runs_agree():
    u = np.sin(np.arange(1200) / 7.0)[:, None]
    params = dict(units=60, spectral_radius=0.9, leak=0.5, dtype="float64", seed=2)
    with EchoStateNetwork(**params) as esn:
        readout = IncrementalRidge(alpha=1e-8).fit(esn.run(u[:-1]).features[100:], u[101:])
        sync = np.stack([u[s - 200:s] for s in (400, 700, 1000)])
        batched = free_run(esn, readout, sync, horizon=30)
    with _OneAtATime(**params) as esn:
        one_by_one = free_run(esn, readout, sync, horizon=30)
    assert batched.shape == (3, 30, 1)
    np.testing.assert_allclose(one_by_one, batched, atol=1e-10)
    # a sine is easy: the free run stays close to the truth for 30 steps
    truth = np.stack([u[s:s + 30] for s in (400, 700, 1000)])
    assert np.abs(batched - truth).max() < 0.05
