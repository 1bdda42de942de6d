"""Random weight matrices of an echo-state network.

Recurrent weights follow Jaeger (2001), "The echo state approach to analysing and
training recurrent neural networks", GMD Report 148, and Lukoševičius (2012),
"A practical guide to applying echo state networks", in *Neural Networks: Tricks
of the Trade*, LNCS 7700: sparse Gaussian entries rescaled to a chosen spectral
radius. The alternative gain parametrisation draws entries i.i.d. N(0, g²/(pN))
(Sompolinsky, Crisanti & Sommers 1988, "Chaos in random neural networks", PRL 61:259),
whose spectrum fills a disc of radius g (Girko's circular law): g < 1 fading memory,
g ≈ 1.5 the edge of chaos of the leaky network, g > 1.5 chaotic.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg


def _sparse_pattern(rng: np.random.Generator, n_rows: int, n_cols: int, density: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of ``round(density * n_rows * n_cols)`` distinct entries."""
    nnz = int(round(density * n_rows * n_cols))
    nnz = max(nnz, 1)
    flat = np.sort(rng.choice(n_rows * n_cols, size=nnz, replace=False))
    return flat // n_cols, flat % n_cols


def spectral_radius(w: sp.csr_array) -> float:
    """Largest eigenvalue modulus of a square sparse matrix (deterministic)."""
    n = w.shape[0]
    if n <= 500:
        return float(np.max(np.abs(scipy.linalg.eigvals(w.toarray()))))
    v0 = np.ones(n)
    vals = scipy.sparse.linalg.eigs(w, k=1, which="LM", v0=v0, return_eigenvectors=False, tol=1e-8)
    return float(np.abs(vals[0]))


def recurrent_weights(
    rng: np.random.Generator,
    units: int,
    connectivity: float,
    spectral_radius_target: float | None,
    gain: float | None,
) -> sp.csr_array:
    """Sparse recurrent matrix W (units × units), float64.

    Exactly one of ``spectral_radius_target`` and ``gain`` is used: with a spectral
    radius, N(0, 1) entries are rescaled so that max |λ(W)| equals it; with a gain g,
    entries are drawn N(0, g² / (connectivity · units)) and not rescaled.
    """
    rows, cols = _sparse_pattern(rng, units, units, connectivity)
    if gain is not None:
        values = rng.normal(0.0, gain / np.sqrt(connectivity * units), size=rows.size)
        return sp.csr_array((values, (rows, cols)), shape=(units, units))
    values = rng.standard_normal(rows.size)
    w = sp.csr_array((values, (rows, cols)), shape=(units, units))
    rho = spectral_radius(w)
    if rho == 0.0:
        return w
    return (w * (spectral_radius_target / rho)).tocsr()


def input_weights(
    rng: np.random.Generator,
    units: int,
    n_inputs: int,
    connectivity: float,
    scaling: float | list[float],
    distribution: str,
) -> np.ndarray:
    """Dense input matrix W_in (units × n_inputs), float64, zero where not connected.

    ``distribution`` is ``"bernoulli"`` (±1, as in ReservoirPy) or ``"uniform"``
    (U[-1, 1], as in Jaeger 2001); each column is multiplied by its input scaling.
    """
    rows, cols = _sparse_pattern(rng, units, n_inputs, connectivity)
    if distribution == "bernoulli":
        values = rng.choice(np.array([-1.0, 1.0]), size=rows.size)
    elif distribution == "uniform":
        values = rng.uniform(-1.0, 1.0, size=rows.size)
    else:  # pragma: no cover - guarded by the Params model
        raise ValueError(f"unknown input distribution {distribution!r}")
    w_in = np.zeros((units, n_inputs))
    w_in[rows, cols] = values
    return w_in * np.broadcast_to(np.asarray(scaling, dtype=float), (n_inputs,))


def bias_vector(rng: np.random.Generator, units: int, scaling: float) -> np.ndarray:
    """Bias drawn U[-scaling, scaling] per unit (zeros when scaling is 0)."""
    if scaling == 0.0:
        return np.zeros(units)
    return rng.uniform(-scaling, scaling, size=units)
