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
