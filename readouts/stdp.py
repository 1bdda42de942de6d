"""A layer of leaky integrate-and-fire neurons that learns from spikes by STDP.

:class:`STDPLayer` follows the network of Diehl & Cook (2015), "Unsupervised learning
of digit recognition using spike-timing-dependent plasticity", Front. Comput.
Neurosci. 9:99: every input channel excites every neuron through a plastic
conductance-based synapse, the neurons inhibit each other (winner-take-all), each
neuron's firing threshold rises with its own spikes (homeostasis), and the summed input
weight of each neuron is held fixed (normalisation). Two learning rules are available:

- ``rule="pair"``: trace-based pair STDP (Song, Miller & Abbott 2000, "Competitive
  Hebbian learning through spike-timing-dependent synaptic plasticity", Nat. Neurosci.
  3:919), in the trace form Diehl & Cook (2015) use.
- ``rule="triplet"``: the triplet rule of Pfister & Gerstner (2006), "Triplets of spikes
  in a model of spike timing-dependent plasticity", J. Neurosci. 26:9673, eqs. 1-4
  (traces r1, r2, o1, o2 and amplitudes A2+, A3+, A2-, A3-). The pair rule is the
  triplet rule with A3+ = A3- = 0.

The layer reads a spike raster (rows are time steps of ``dt`` ms, columns are input
channels, any non-zero entry is a spike; dense, or a scipy.sparse matrix, which long
sparse streams need not densify) and writes one: ``partial_fit`` runs it with
plasticity on, ``transform`` with plasticity and threshold adaptation off, and
``partial_fit_transform`` learns and returns the output spikes in one pass. The
dynamic state (membranes, conductances, traces, refractory counters) carries over
from one call to the next, so a stream cut into blocks gives the same weights and the
same output spikes as the whole stream in one call. The time loop is one numba kernel.

The same class, with one neuron, no inhibition, no threshold adaptation and no
normalisation, is the single conductance-based neuron of Song, Miller & Abbott (2000)
(Brian2's example ``synapses/STDP.py``); see ``bench/stdp_vs_brian2.py``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numba
import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

__all__ = ["STDPLayer"]

_RULES = ("pair", "triplet")
_TRACES = ("all", "nearest")


class STDPLayer(TransformerMixin, BaseEstimator):
    """Leaky integrate-and-fire neurons with lateral inhibition that learn by STDP.

    Parameters
    ----------
    n_neurons : int, default=100
        Number of neurons (outputs).
    rule : {"pair", "triplet"}, default="pair"
        Learning rule. ``"pair"`` ignores ``a3_plus``, ``a3_minus``, ``tau_x`` and
        ``tau_y``.
    a_plus : float, default=0.01
        Pair potentiation amplitude A2+ (applied at each postsynaptic spike, times the
        presynaptic trace r1). Diehl & Cook's ``nu_post`` = 0.01.
    a_minus : float, default=0.0001
        Pair depression amplitude A2- (applied at each presynaptic spike, times the
        postsynaptic trace o1). Diehl & Cook's ``nu_pre`` = 0.0001.
    a3_plus : float, default=0.0062
        Triplet potentiation amplitude A3+ (``rule="triplet"`` only); Pfister & Gerstner
        (2006), Table 4, visual cortex, minimal all-to-all model: 6.2e-3.
    a3_minus : float, default=0.0
        Triplet depression amplitude A3- (``rule="triplet"`` only); 0 in the minimal
        model.
    tau_plus : float, default=20.0
        Time constant (ms) of the fast presynaptic trace r1.
    tau_minus : float, default=20.0
        Time constant (ms) of the fast postsynaptic trace o1.
    tau_x : float, default=101.0
        Time constant (ms) of the slow presynaptic trace r2 (triplet depression).
    tau_y : float, default=125.0
        Time constant (ms) of the slow postsynaptic trace o2 (triplet potentiation).
    traces : {"all", "nearest"}, default="all"
        ``"all"``: each spike adds 1 to its traces (all-to-all spike interactions);
        ``"nearest"``: each spike sets them to 1 (nearest-spike interactions, as in
        Diehl & Cook's code). Pfister & Gerstner (2006) define both.
    mu : float, default=0.0
        Weight dependence: potentiation is scaled by ``(w_max - w) ** mu`` and
        depression by ``(w - w_min) ** mu`` (Diehl & Cook 2015 use the former in their
        weight-dependent rule). ``0`` gives additive updates, bounded by clipping to
        ``[w_min, w_max]``.
    w_min, w_max : float, default=0.0, 1.0
        Weight bounds; every update and every normalisation is clipped to them.
    w_init : tuple of float, default=(0.0, 0.3)
        Initial weights are uniform on ``[w_init[0], w_init[1])`` (Diehl & Cook: 0-0.3),
        then normalised when normalisation is on, then clipped to the bounds.
    norm_total : float, "auto" or None, default="auto"
        Norm (see ``norm_ord``; by default the sum) of each neuron's input weights,
        restored every ``norm_every`` learning steps by scaling the neuron's weights
        (then clipping to the bounds). ``"auto"`` is the norm of weights all equal to
        0.1: ``0.1 * n_inputs`` for the sum (Diehl & Cook: 78 for 784 inputs),
        ``0.1 * sqrt(n_inputs)`` for ``norm_ord=2``. ``None`` disables it.
    norm_ord : {1, 2}, default=1
        Norm held at ``norm_total``: 1, the sum of the weights (Diehl & Cook); 2, their
        Euclidean norm. With equal Euclidean norms the neurons' drives by one input rank
        as the cosines between the input and their weight vectors, whereas equal sums
        favour neurons whose weight is concentrated on few inputs.
    norm_every : int, default=10
        Number of learning steps between normalisations.
    theta_plus : float, default=0.05
        Threshold increase (mV) at each spike while learning (Diehl & Cook: 0.05 mV).
        ``0`` disables threshold adaptation.
    tau_theta : float, default=1e7
        Time constant (ms) of the threshold's decay while learning (Diehl & Cook: 1e7
        ms). The threshold is frozen in :meth:`transform`.
    inhibition : "hard", float or None, default="hard"
        Lateral inhibition. ``"hard"``: winner-take-all, at most one neuron spikes per
        step (the one whose membrane is the most above its threshold) and its spike
        resets every other membrane to ``v_reset``. A float: soft inhibition, each
        spike adds that inhibitory conductance to every other neuron (Diehl & Cook's
        inhibitory population gives 17). ``None`` or ``0``: no inhibition.
    tau_m : float, default=100.0
        Membrane time constant (ms).
    tau_e, tau_i : float, default=1.0, 2.0
        Excitatory and inhibitory conductance time constants (ms).
    v_rest, v_reset, v_thresh : float, default=-65.0, -65.0, -52.0
        Resting potential, reset potential and base threshold (mV).
    e_exc, e_inh : float, default=0.0, -100.0
        Excitatory and inhibitory reversal potentials (mV).
    t_ref : float, default=5.0
        Refractory period (ms), rounded to whole steps; the membrane is held during it.
    dt : float, default=1.0
        Time step (ms): the duration of one row of the input raster.
    seed : int or None, default=None
        Seed of the initial weights.

    Attributes
    ----------
    weights_ : ndarray of shape (n_features_in_, n_neurons)
        Input weights (float64), i.e. the peak conductance each input spike adds,
        in units of the leak conductance.
    theta_ : ndarray of shape (n_neurons,)
        Adaptive threshold increments (mV).
    n_features_in_ : int
        Number of input channels, fixed by the first call.
    v_, ge_, gi_ : ndarray of shape (n_neurons,)
        Membrane potentials (mV) and excitatory / inhibitory conductances.
    refractory_ : ndarray of int64, shape (n_neurons,)
        Remaining refractory steps.
    pre_trace_, pre_trace_slow_ : ndarray of shape (n_features_in_,)
        Presynaptic traces r1 and r2.
    post_trace_, post_trace_slow_ : ndarray of shape (n_neurons,)
        Postsynaptic traces o1 and o2.
    n_steps_learned_ : int
        Number of time steps run with plasticity on.

    Notes
    -----
    Neuron (Diehl & Cook 2015, eqs. 1-2, conductances in units of the leak)::

        tau_m dv/dt = (v_rest - v) + ge (e_exc - v) + gi (e_inh - v)
        tau_e dge/dt = -ge,   tau_i dgi/dt = -gi
        spike when v > v_thresh + theta;  then v = v_reset, refractory t_ref,
        theta += theta_plus (learning only);  tau_theta dtheta/dt = -theta

    Within a step ``v`` is integrated exactly with the conductances held at their
    value at the start of the step (exponential Euler; the exponential is a
    vectorisable polynomial accurate to a few 1e-14), which stays stable however large
    they are. An input spike of channel i adds ``weights_[i, j]`` to ``ge[j]``; it acts
    on the membrane from the next step, as in Brian2. Conductances and traces below
    1e-30 are set to 0 (subnormal numbers would slow every step down).

    Plasticity (Pfister & Gerstner 2006, eqs. 1-4; traces decay with their time
    constants and jump by 1, or to 1 for ``traces="nearest"``, after each spike)::

        pre spike of i:   w_ij -= o1_j (A2- + A3- r2_i)    then r1_i, r2_i jump
        post spike of j:  w_ij += r1_i (A2+ + A3+ o2_j)    then o1_j, o2_j jump

    where ``r2`` and ``o2`` are read before their own jump (the paper's ``t - eps``).
    In a step the input spikes are processed before the output spikes (as Brian2 runs
    a ``Synapses`` object's ``on_pre`` before its ``on_post``), so an input and an
    output spike in the same step count as pre-before-post. For a single pair with
    ``rule="pair"``, ``traces="all"`` and no clipping, a presynaptic spike at ``t_pre``
    and a postsynaptic one at ``t_post`` change the weight by
    ``a_plus * exp(-(t_post - t_pre) / tau_plus)`` if ``t_pre <= t_post`` and by
    ``-a_minus * exp(-(t_pre - t_post) / tau_minus)`` otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((500, 64)) < 0.05
    >>> layer = STDPLayer(n_neurons=10, seed=0).fit(X)
    >>> layer.weights_.shape, layer.transform(X[:100]).shape
    ((64, 10), (100, 10))
    """

    def __init__(
        self,
        n_neurons: int = 100,
        rule: str = "pair",
        a_plus: float = 0.01,
        a_minus: float = 0.0001,
        a3_plus: float = 0.0062,
        a3_minus: float = 0.0,
        tau_plus: float = 20.0,
        tau_minus: float = 20.0,
        tau_x: float = 101.0,
        tau_y: float = 125.0,
        traces: str = "all",
        mu: float = 0.0,
        w_min: float = 0.0,
        w_max: float = 1.0,
        w_init: tuple[float, float] = (0.0, 0.3),
        norm_total: float | str | None = "auto",
        norm_ord: int = 1,
        norm_every: int = 10,
        theta_plus: float = 0.05,
        tau_theta: float = 1e7,
        inhibition: str | float | None = "hard",
        tau_m: float = 100.0,
        tau_e: float = 1.0,
        tau_i: float = 2.0,
        v_rest: float = -65.0,
        v_reset: float = -65.0,
        v_thresh: float = -52.0,
        e_exc: float = 0.0,
        e_inh: float = -100.0,
        t_ref: float = 5.0,
        dt: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.n_neurons = n_neurons
        self.rule = rule
        self.a_plus = a_plus
        self.a_minus = a_minus
        self.a3_plus = a3_plus
        self.a3_minus = a3_minus
        self.tau_plus = tau_plus
        self.tau_minus = tau_minus
        self.tau_x = tau_x
        self.tau_y = tau_y
        self.traces = traces
        self.mu = mu
        self.w_min = w_min
        self.w_max = w_max
        self.w_init = w_init
        self.norm_total = norm_total
        self.norm_ord = norm_ord
        self.norm_every = norm_every
        self.theta_plus = theta_plus
        self.tau_theta = tau_theta
        self.inhibition = inhibition
        self.tau_m = tau_m
        self.tau_e = tau_e
        self.tau_i = tau_i
        self.v_rest = v_rest
        self.v_reset = v_reset
        self.v_thresh = v_thresh
        self.e_exc = e_exc
        self.e_inh = e_inh
        self.t_ref = t_ref
        self.dt = dt
        self.seed = seed

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None) -> STDPLayer:
        """Forget everything (weights, thresholds, dynamics) and learn from ``X``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_steps, n_inputs)
            Input spike raster; any non-zero entry is a spike.
        y : None
            Ignored.

        Returns
        -------
        self : STDPLayer
        """
        self._forget()
        return self.partial_fit(X)

    def partial_fit(self, X: Any, y: Any = None) -> STDPLayer:
        """Run the layer over ``X`` with plasticity and threshold adaptation on.

        The first call draws the initial weights from ``seed``. A raster with zero
        rows only does that, so ``partial_fit(X[:0])`` gives an untrained layer.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_steps, n_inputs)
            Input spike raster; any non-zero entry is a spike.
        y : None
            Ignored.

        Returns
        -------
        self : STDPLayer

        Raises
        ------
        ValueError
            If ``X`` is not 2-D, its width differs from the first call's, a
            hyperparameter is invalid, or ``n_neurons`` changed since the weights were
            drawn.
        """
        self._run(X, learn=True, record=False)
        return self

    def partial_fit_transform(self, X: Any) -> np.ndarray:
        """Learn from ``X`` and return the output spikes of that same pass.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_steps, n_inputs)
            Input spike raster; any non-zero entry is a spike.

        Returns
        -------
        spikes : ndarray of float32, shape (n_steps, n_neurons)
            1 where a neuron spiked in a step, else 0.
        """
        return self._run(X, learn=True, record=True)

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Forget everything, learn from ``X`` and return the output spikes of that pass.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_steps, n_inputs)
            Input spike raster; any non-zero entry is a spike.
        y : None
            Ignored.

        Returns
        -------
        spikes : ndarray of float32, shape (n_steps, n_neurons)
        """
        self._forget()
        return self.partial_fit_transform(X)

    def transform(self, X: Any) -> np.ndarray:
        """Run the layer over ``X`` with plasticity and threshold adaptation off.

        Weights and thresholds are left unchanged; the dynamic state advances.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_steps, n_inputs)
            Input spike raster; any non-zero entry is a spike.

        Returns
        -------
        spikes : ndarray of float32, shape (n_steps, n_neurons)
            1 where a neuron spiked in a step, else 0.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before the first ``fit`` / ``partial_fit``.
        """
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(
                f"This {type(self).__name__} instance has no weights yet; call 'fit' or "
                "'partial_fit' first (partial_fit(X[:0]) draws untrained weights)."
            )
        return self._run(X, learn=False, record=True)

    def reset_state(self) -> STDPLayer:
        """Clear the dynamics (membranes, conductances, traces, refractoriness).

        Weights, thresholds and the normalisation phase are kept.

        Returns
        -------
        self : STDPLayer
        """
        if self.__sklearn_is_fitted__():
            self._init_dynamics(self.n_features_in_)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        """Return whether the weights have been drawn."""
        return hasattr(self, "weights_")

    # ------------------------------------------------------------------ helpers

    _STATE = (
        "weights_", "theta_", "n_features_in_", "v_", "ge_", "gi_", "refractory_",
        "pre_trace_", "pre_trace_slow_", "post_trace_", "post_trace_slow_",
        "n_steps_learned_", "_norm_phase",
    )

    def _forget(self) -> None:
        for name in self._STATE:
            self.__dict__.pop(name, None)

    def _init_dynamics(self, n_in: int) -> None:
        n = int(self.n_neurons)
        self.v_ = np.full(n, float(self.v_rest))
        self.ge_ = np.zeros(n)
        self.gi_ = np.zeros(n)
        self.refractory_ = np.zeros(n, dtype=np.int64)
        self.pre_trace_ = np.zeros(n_in)
        self.pre_trace_slow_ = np.zeros(n_in)
        self.post_trace_ = np.zeros(n)
        self.post_trace_slow_ = np.zeros(n)

    def _check_state(self) -> None:
        """Refuse state arrays the kernel cannot index safely (it does no bounds checks)."""
        n_in, n = self.n_features_in_, int(self.n_neurons)
        if self.weights_.shape[1] != n:
            raise ValueError(
                f"n_neurons is {n} but the layer was fitted with {self.weights_.shape[1]}; call "
                "'fit' to start again with the new size."
            )
        shapes = {"weights_": (n_in, n), "theta_": (n,), "v_": (n,), "ge_": (n,), "gi_": (n,),
                  "refractory_": (n,), "pre_trace_": (n_in,), "pre_trace_slow_": (n_in,),
                  "post_trace_": (n,), "post_trace_slow_": (n,)}
        for name, shape in shapes.items():
            value = getattr(self, name)
            dtype = np.int64 if name == "refractory_" else np.float64
            if (not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype
                    or not value.flags.c_contiguous or not value.flags.writeable):
                raise ValueError(
                    f"{name} must be a writeable C-contiguous {np.dtype(dtype).name} array of "
                    f"shape {shape}."
                )

    def _norm_target(self, n_in: int) -> float:
        """The normalisation total (0.0 when normalisation is off)."""
        total = self.norm_total
        if total is None:
            return 0.0
        if isinstance(total, str):
            if total != "auto":
                raise ValueError(f"norm_total must be a positive number, 'auto' or None, got {total!r}.")
            return 0.1 * (n_in if self.norm_ord == 1 else math.sqrt(n_in))
        if not _is_real(total) or not total > 0:
            raise ValueError(f"norm_total must be a positive number, 'auto' or None, got {total!r}.")
        return float(total)

    def _initialise(self, n_in: int) -> None:
        params = self._check_params()
        rng = np.random.default_rng(self.seed)
        low, high = params["w_init"]
        W = rng.uniform(low, high, size=(n_in, int(self.n_neurons)))
        total = self._norm_target(n_in)
        if total > 0:
            _normalise(W, total, int(self.norm_ord), params["w_min"], params["w_max"])
        np.clip(W, params["w_min"], params["w_max"], out=W)
        self.weights_ = W
        self.theta_ = np.zeros(int(self.n_neurons))
        self.n_features_in_ = n_in
        self.n_steps_learned_ = 0
        self._norm_phase = np.zeros(1, dtype=np.int64)
        self._init_dynamics(n_in)

    def _check_params(self) -> dict[str, Any]:
        """Validate the hyperparameters; return the derived kernel constants."""
        n = self.n_neurons
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n_neurons must be a positive integer, got {n!r}.")
        if self.rule not in _RULES:
            raise ValueError(f"rule must be one of {_RULES}, got {self.rule!r}.")
        if self.traces not in _TRACES:
            raise ValueError(f"traces must be one of {_TRACES}, got {self.traces!r}.")
        for name in ("tau_plus", "tau_minus", "tau_x", "tau_y", "tau_theta", "tau_m", "tau_e",
                     "tau_i", "dt"):
            value = getattr(self, name)
            if not _is_real(value) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        for name in ("a_plus", "a_minus", "a3_plus", "a3_minus", "mu", "theta_plus", "t_ref"):
            value = getattr(self, name)
            if not _is_real(value) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}.")
        for name in ("w_min", "w_max", "v_rest", "v_reset", "v_thresh", "e_exc", "e_inh"):
            if not _is_real(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}.")
        if not self.w_min < self.w_max:
            raise ValueError(f"w_min must be < w_max, got {self.w_min!r} and {self.w_max!r}.")
        try:
            low, high = (float(v) for v in self.w_init)
        except (TypeError, ValueError):
            raise ValueError(f"w_init must be a pair (low, high), got {self.w_init!r}.") from None
        if not low <= high:
            raise ValueError(f"w_init must be a pair (low, high) with low <= high, got {self.w_init!r}.")
        if isinstance(self.norm_ord, bool) or self.norm_ord not in (1, 2):
            raise ValueError(f"norm_ord must be 1 or 2, got {self.norm_ord!r}.")
        every = self.norm_every
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"norm_every must be a positive integer, got {every!r}.")
        inh = self.inhibition
        if inh is None:
            inh_mode, inh_strength = 0, 0.0
        elif isinstance(inh, str):
            if inh != "hard":
                raise ValueError(f"inhibition must be 'hard', a number >= 0 or None, got {inh!r}.")
            inh_mode, inh_strength = 1, 0.0
        elif _is_real(inh) and inh >= 0:
            inh_mode, inh_strength = (2 if inh > 0 else 0), float(inh)
        else:
            raise ValueError(f"inhibition must be 'hard', a number >= 0 or None, got {inh!r}.")
        dt = float(self.dt)
        triplet = self.rule == "triplet"
        return {
            "w_init": (low, high),
            "w_min": float(self.w_min),
            "w_max": float(self.w_max),
            "inh_mode": inh_mode,
            "inh_strength": inh_strength,
            "triplet": triplet,
            "a2p": float(self.a_plus),
            "a2m": float(self.a_minus),
            "a3p": float(self.a3_plus) if triplet else 0.0,
            "a3m": float(self.a3_minus) if triplet else 0.0,
            "dec_p": math.exp(-dt / self.tau_plus),
            "dec_m": math.exp(-dt / self.tau_minus),
            "dec_x": math.exp(-dt / self.tau_x),
            "dec_y": math.exp(-dt / self.tau_y),
            "dec_e": math.exp(-dt / self.tau_e),
            "dec_i": math.exp(-dt / self.tau_i),
            "dec_theta": math.exp(-dt / self.tau_theta),
            "dt_over_tau_m": dt / self.tau_m,
            "n_ref": int(round(self.t_ref / dt)),
        }

    def _check_width(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects a 2-D spike raster (n_steps, n_inputs), got an "
                f"array of shape {shape}."
            )
        if self.__sklearn_is_fitted__() and shape[1] != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.n_features_in_} inputs, got {shape[1]}."
            )

    def _spike_lists(self, X: Any) -> tuple[np.ndarray, np.ndarray, int, int]:
        """The input spikes as CSR rows: ``(indptr, indices, n_steps, n_inputs)``."""
        if scipy.sparse.issparse(X):
            self._check_width(X.shape)
            csr = scipy.sparse.csr_array(X)  # a copy only when X is not CSR already
            if not csr.has_canonical_format or (csr.data == 0).any():
                csr = csr.copy()
                csr.sum_duplicates()
                csr.eliminate_zeros()
            n_steps, n_in = csr.shape
            return (csr.indptr.astype(np.int64, copy=False),
                    csr.indices.astype(np.int64, copy=False), n_steps, n_in)
        X = np.asarray(X)
        self._check_width(X.shape)
        n_steps, n_in = X.shape
        rows, indices = np.nonzero(X)
        indptr = np.zeros(n_steps + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_steps), out=indptr[1:])
        return indptr, indices.astype(np.int64, copy=False), n_steps, n_in

    def _run(self, X: Any, learn: bool, record: bool) -> np.ndarray | None:
        indptr, indices, n_steps, n_in = self._spike_lists(X)
        if not self.__sklearn_is_fitted__():
            self._initialise(n_in)
        p = self._check_params()
        self._check_state()
        out = np.zeros((n_steps if record else 0, int(self.n_neurons)), dtype=np.float32)
        if n_steps:
            _stdp_kernel(
                indptr, indices, self.weights_, self.v_, self.ge_,
                self.gi_, self.refractory_, self.theta_, self.pre_trace_, self.pre_trace_slow_,
                self.post_trace_, self.post_trace_slow_, self._norm_phase, out, learn, record,
                float(self.v_rest), float(self.v_reset), float(self.v_thresh), float(self.e_exc),
                float(self.e_inh), p["dt_over_tau_m"], p["dec_e"], p["dec_i"], p["n_ref"],
                p["inh_mode"], p["inh_strength"], float(self.theta_plus), p["dec_theta"],
                p["a2p"], p["a3p"], p["a2m"], p["a3m"], p["dec_p"], p["dec_m"], p["dec_x"],
                p["dec_y"], self.traces == "nearest", p["triplet"], float(self.mu),
                p["w_min"], p["w_max"], self._norm_target(self.n_features_in_),
                int(self.norm_ord), int(self.norm_every),
            )
            if learn:
                self.n_steps_learned_ += n_steps
        return out if record else None


def _is_real(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and math.isfinite(value))


def _normalise(W: np.ndarray, total: float, ord: int, w_min: float, w_max: float) -> None:
    """Scale each column of ``W`` to ``ord``-norm ``total`` (all-zero columns are left)."""
    sums = np.linalg.norm(W, ord=ord, axis=0)
    scale = np.where(sums > 0, total / np.where(sums > 0, sums, 1.0), 1.0)
    W *= scale
    np.clip(W, w_min, w_max, out=W)


@numba.njit(cache=True, inline="always")
def _decay(x, factor):  # pragma: no cover - compiled
    """``x * factor``, flushed to 0 below 1e-30 in magnitude.

    Decaying variables would otherwise sink into subnormal numbers, on which every
    arithmetic operation is about a hundred times slower.
    """
    y = x * factor
    return y if abs(y) > 1e-30 else 0.0


@numba.njit(cache=True, inline="always")
def _exp_neg(x):  # pragma: no cover - compiled
    """``exp(x)`` for ``x <= 0`` in arithmetic that LLVM vectorises (libm's exp does not).

    ``exp(x) = exp(x / 128) ** 128``: a degree-13 Taylor polynomial on
    ``|x / 128| <= 0.4`` (truncation error < 3e-17), then 7 squarings, which leave a
    relative error of a few 1e-14. ``x`` is clamped at -50 (``exp(-50) ~ 2e-22``).
    """
    y = max(x, -50.0) * 0.0078125
    p = 1.6059043836821613e-10
    p = p * y + 2.08767569878681e-09
    p = p * y + 2.505210838544172e-08
    p = p * y + 2.755731922398589e-07
    p = p * y + 2.755731922398589e-06
    p = p * y + 2.48015873015873e-05
    p = p * y + 0.0001984126984126984
    p = p * y + 0.001388888888888889
    p = p * y + 0.008333333333333333
    p = p * y + 0.041666666666666664
    p = p * y + 0.16666666666666666
    p = p * y + 0.5
    p = p * y + 1.0
    p = p * y + 1.0
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _stdp_kernel(indptr, indices, W, v, ge, gi, refractory, theta, r1, r2, o1, o2, norm_phase,
                 out, learn, record,
                 v_rest, v_reset, v_thresh, e_exc, e_inh, dt_over_tau_m, dec_e, dec_i, n_ref,
                 inh_mode, inh_strength, theta_plus, dec_theta,
                 a2p, a3p, a2m, a3m, dec_p, dec_m, dec_x, dec_y, nearest, triplet, mu,
                 w_min, w_max, norm_total, norm_ord, norm_every):  # pragma: no cover - compiled
    """Advance the layer over every time step; updates the state arrays in place.

    The input spikes of step ``t`` are ``indices[indptr[t]:indptr[t + 1]]`` (CSR rows),
    so the cost per step grows with the number of spikes, not of input channels.
    Per step: (1) the membranes integrate with the conductances of the start of the
    step; conductances, traces and (learning) thresholds decay; (2) neurons above
    threshold spike (one at most under hard WTA); (3) input spikes add their weights
    to the excitatory conductances and, when learning, depress (Pfister & Gerstner
    2006, eq. 3); (4) output spikes potentiate (eq. 4), reset, raise their threshold
    and inhibit the others; (5) every ``norm_every`` learning steps the weights are
    normalised (Diehl & Cook 2015 do it after each input image).
    """
    n_steps = indptr.shape[0] - 1
    n_in, n_out = W.shape
    fired = np.zeros(n_out, dtype=np.bool_)
    eligible = np.zeros(n_out, dtype=np.bool_)
    col = np.zeros(n_out)
    weight_dep = mu != 0.0
    adapt = learn and theta_plus > 0.0
    normalise = learn and norm_total > 0.0
    for t in range(n_steps):
        # (1) membranes (exact for conductances held over the step), conductances
        for j in range(n_out):
            g_tot = 1.0 + ge[j] + gi[j]
            v_inf = (v_rest + ge[j] * e_exc + gi[j] * e_inh) / g_tot
            v_new = v_inf + (v[j] - v_inf) * _exp_neg(-dt_over_tau_m * g_tot)
            free = refractory[j] == 0
            eligible[j] = free
            v[j] = v_new if free else v[j]
            refractory[j] = refractory[j] if free else refractory[j] - 1
            ge[j] = _decay(ge[j], dec_e)
            gi[j] = _decay(gi[j], dec_i)
        if adapt:
            for j in range(n_out):
                theta[j] *= dec_theta
        for i in range(n_in):
            r1[i] = _decay(r1[i], dec_p)
        for j in range(n_out):
            o1[j] = _decay(o1[j], dec_m)
        if triplet:
            for i in range(n_in):
                r2[i] = _decay(r2[i], dec_x)
            for j in range(n_out):
                o2[j] = _decay(o2[j], dec_y)
        # (2) threshold
        n_fired = 0
        if inh_mode == 1:
            best = -1
            best_margin = 0.0
            for j in range(n_out):
                fired[j] = False
                if eligible[j]:
                    margin = v[j] - (v_thresh + theta[j])
                    if margin > 0.0 and (best < 0 or margin > best_margin):
                        best = j
                        best_margin = margin
            if best >= 0:
                fired[best] = True
                n_fired = 1
        else:
            for j in range(n_out):
                fired[j] = eligible[j] and v[j] > v_thresh + theta[j]
                n_fired += fired[j]
        # (3) presynaptic spikes
        for k in range(indptr[t], indptr[t + 1]):
            i = indices[k]
            for j in range(n_out):
                ge[j] += W[i, j]
            if learn:
                f = a2m + a3m * r2[i]
                if f != 0.0:
                    if weight_dep:
                        for j in range(n_out):
                            w = W[i, j]
                            w -= o1[j] * f * max(w - w_min, 0.0) ** mu
                            W[i, j] = min(max(w, w_min), w_max)
                    else:
                        for j in range(n_out):
                            W[i, j] = min(max(W[i, j] - o1[j] * f, w_min), w_max)
            if nearest:
                r1[i] = 1.0
                r2[i] = 1.0
            else:
                r1[i] += 1.0
                r2[i] += 1.0
        # (4) postsynaptic spikes
        if n_fired > 0:
            for j in range(n_out):
                if not fired[j]:
                    continue
                if learn:
                    f = a2p + a3p * o2[j]
                    if f != 0.0:
                        if weight_dep:
                            for i in range(n_in):
                                w = W[i, j]
                                w += r1[i] * f * max(w_max - w, 0.0) ** mu
                                W[i, j] = min(max(w, w_min), w_max)
                        else:
                            for i in range(n_in):
                                W[i, j] = min(max(W[i, j] + r1[i] * f, w_min), w_max)
                    if adapt:
                        theta[j] += theta_plus
                if nearest:
                    o1[j] = 1.0
                    o2[j] = 1.0
                else:
                    o1[j] += 1.0
                    o2[j] += 1.0
                v[j] = v_reset
                refractory[j] = n_ref
                if record:
                    out[t, j] = 1.0
                if inh_mode == 1:
                    for k in range(n_out):
                        if k != j:
                            v[k] = v_reset
                elif inh_mode == 2:
                    for k in range(n_out):
                        if k != j:
                            gi[k] += inh_strength
        # (5) normalisation: scale each neuron's weights to sum to norm_total
        if normalise:
            norm_phase[0] += 1
            if norm_phase[0] >= norm_every:
                norm_phase[0] = 0
                col[:] = 0.0
                if norm_ord == 2:
                    for i in range(n_in):
                        for j in range(n_out):
                            col[j] += W[i, j] * W[i, j]
                    for j in range(n_out):
                        col[j] = math.sqrt(col[j])
                else:
                    for i in range(n_in):
                        for j in range(n_out):
                            col[j] += W[i, j]
                for j in range(n_out):
                    col[j] = norm_total / col[j] if col[j] > 0.0 else 1.0
                for i in range(n_in):
                    for j in range(n_out):
                        W[i, j] = min(max(W[i, j] * col[j], w_min), w_max)
