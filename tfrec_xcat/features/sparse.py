"""Sparse-matrix helpers shared by the memorisation feature and the item-to-item baselines."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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
