"""``ridge_map``: a linear map from source history to target items, fit by ridge regression on overlap users.

W = argmin ||S W - T||² + λ||W||² over training users active in both categories. Solved in the dual,
W = Sᵀ (S Sᵀ + λI)⁻¹ T, which needs one (n_overlap × n_overlap) Cholesky factor, so scoring a user u is
s_u Sᵀ (S Sᵀ + λI)⁻¹ T. λ is chosen on cold-start validation users from ``grid``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.baselines.sparse import popularity_tiebreak
from tfrec_xcat.pipeline import PreparedSeed


class RidgeMap(MatrixBaseline):
    grid: ClassVar[list[dict[str, Any]]] = [{"l2": v} for v in (10.0, 100.0, 1000.0, 3000.0, 10000.0)]

    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        l2 = float(self.params.get("l2", 100.0))
        both = m.overlap_rows()
        self.s = m.source[both].astype(np.float64).tocsr()
        self.t = m.target[both].astype(np.float64).tocsr()
        gram = np.asarray((self.s @ self.s.T).todense())
        gram[np.diag_indices_from(gram)] += l2
        self.factor = cho_factor(gram, lower=True, check_finite=False)
        self.source = m.source
        self.tiebreak = popularity_tiebreak(m.target)

    def score(self, rows: np.ndarray) -> np.ndarray:
        kernel = np.asarray((self.s @ self.source[rows].T.astype(np.float64)).todense())  # n_overlap × users
        alpha = cho_solve(self.factor, kernel, check_finite=False)
        return np.asarray((self.t.T @ alpha).T) + self.tiebreak
