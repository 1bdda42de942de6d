"""Wiring of a liquid: excitatory/inhibitory populations, sparse random or distance-dependent
connectivity with Dale's law, synaptic delays.

``connectivity = "random"``: every ordered pair (no self-connections) is connected with
probability ``p``. ``connectivity = "distance"``: neurons sit on a 3-D grid and a pair at
distance D is connected with probability ``C * exp(-(D / lambda)^2)``, with C = 0.3 (E→E),
0.2 (E→I), 0.4 (I→E), 0.1 (I→I) and lambda = 2 (Maass, Natschläger & Markram 2002,
"Real-time computing without stable states", Neural Comput. 14:2531).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Maass et al. 2002 connection scale C for (pre excitatory?, post excitatory?)
MAASS_C = {(True, True): 0.3, (True, False): 0.2, (False, True): 0.4, (False, False): 0.1}


def populations(n: int, excitatory_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask of excitatory neurons: exactly round(f N) of them, at random positions."""
    n_exc = int(round(excitatory_fraction * n))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:n_exc]] = True
    return mask


def grid_positions(n: int, shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Integer 3-D positions of ``n`` neurons on a column of 3x3 cross-section (Maass 2002: 15x3x3)."""
    if shape is None:
        shape = (int(np.ceil(n / 9)), 3, 3)
    if int(np.prod(shape)) < n:
        raise ValueError(f"grid {shape} holds {int(np.prod(shape))} neurons, fewer than {n}")
    idx = np.arange(n)
    return np.stack(np.unravel_index(idx, shape), axis=1).astype(np.float64)


def connect(excitatory: np.ndarray, *, kind: str, p: float, lam: float, rng: np.random.Generator
            ) -> sp.csr_matrix:
    """Adjacency (pre × post) as a boolean CSR matrix, built without an N² Python loop."""
    n = len(excitatory)
    if kind == "random":
        # draw the number of targets per neuron, then the targets (no autapses)
        rows, cols = [], []
        counts = rng.binomial(n - 1, p, size=n)
        for pre in range(n):  # one call per neuron, vectorised inside
            tgt = rng.choice(n - 1, size=counts[pre], replace=False)
            tgt[tgt >= pre] += 1
            rows.append(np.full(len(tgt), pre))
            cols.append(tgt)
        r, c = np.concatenate(rows), np.concatenate(cols)
    elif kind == "distance":
        pos = grid_positions(n)
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
        c_scale = np.empty((n, n))
        for (pre_e, post_e), value in MAASS_C.items():
            c_scale[np.ix_(excitatory == pre_e, excitatory == post_e)] = value
        prob = c_scale * np.exp(-d2 / lam**2)
        np.fill_diagonal(prob, 0.0)
        r, c = np.nonzero(rng.random((n, n)) < prob)
    else:
        raise ValueError(f"connectivity must be 'random' or 'distance', got {kind!r}")
    return sp.csr_matrix((np.ones(len(r), dtype=bool), (r, c)), shape=(n, n))
