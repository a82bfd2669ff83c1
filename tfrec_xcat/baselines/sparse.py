"""Small sparse-matrix helpers shared by the item-to-item baselines."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def safe_power(values: np.ndarray, power: float) -> np.ndarray:
    """``values ** power`` where values > 0, and 0 elsewhere (no division by zero for unseen items)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    np.power(values, power, out=out, where=values > 0)
    return out


def popularity_tiebreak(target: sp.csr_matrix) -> np.ndarray:
    """A tiny popularity score (at most 1e-9) that orders items no history item reaches."""
    pop = np.asarray(target.sum(axis=0)).ravel().astype(np.float64)
    return 1e-9 * pop / max(pop.max(), 1.0)


def top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a CSR matrix (ties: the lower column)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    counts = np.diff(matrix.indptr)
    if counts.max(initial=0) <= k:
        return matrix
    keep = np.zeros(matrix.nnz, dtype=bool)
    for row in np.flatnonzero(counts > 0):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        if hi - lo <= k:
            keep[lo:hi] = True
        else:
            order = np.lexsort((matrix.indices[lo:hi], -matrix.data[lo:hi]))[:k]
            keep[lo + order] = True
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape)
