"""The matrix baselines' common part: users' sparse source history times a source → target item matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.recommender import Recommender


class MatrixBaseline(Recommender):
    """A baseline whose scores are ``source[rows] @ weights`` plus a popularity tie-break (set by ``fit``)."""

    source: sp.csr_matrix
    weights: sp.csr_matrix
    tiebreak: np.ndarray

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self.source[rows] @ self.weights).todense()) + self.tiebreak
