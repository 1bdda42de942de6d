"""Closed-loop (generative) runs: the batched path and the one-start-at-a-time path agree."""

import numpy as np

from labbench.engine.closed_loop import free_run
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


def test_force_learning_with_the_loop_closed_then_runs_free():
    """Sussillo & Abbott 2009, Fig. 2 style: learn a periodic signal with the output fed
    back from the first step, then let the network run on its own."""
    from labbench.engine.closed_loop import learn_with_feedback
    from labbench.readouts.rls import FORCE

    t = np.arange(4000)
    signal = (0.5 * np.sin(2 * np.pi * t / 60) + 0.25 * np.sin(4 * np.pi * t / 60))[:, None]
    with EchoStateNetwork(units=200, spectral_radius=1.2, leak=0.3, input_scaling=0.5, bias=0.2,
                          dtype="float64", seed=3) as esn:
        force = FORCE(alpha=1.0)
        trace = learn_with_feedback(esn, force, signal[:3000], sync=100)
        assert trace.shape == (2900, 1)
        # the output stays close to the target while learning with the loop closed
        err = np.abs(trace[:, 0] - signal[100:3000, 0])
        assert err[-500:].mean() < 0.02
        # learning off: the network generates the signal by itself
        sync = signal[3000 - 200:3000][None]
        free = free_run(esn, force, sync, horizon=600)[0]
    assert np.sqrt(np.mean((free - signal[3000:3600]) ** 2)) / signal.std() < 0.3  # measured 0.18
