"""``itemknn``: source item → target item neighbourhoods from co-occurrence, normalised (asymmetric cosine).

Over overlap training users (active in both categories), C[s, t] counts the users who have source item s and
target item t. The similarity is the asymmetric cosine with shrinkage,

    sim[s, t] = C[s, t] / (deg(s)^alpha · deg(t)^(1 - alpha) + shrink),

(``alpha = 0.5`` is the cosine), each source item keeps its ``neighbours`` most similar target items, and a user's
score for t sums sim[s, t] over their source history. ``alpha``, ``shrink`` and ``neighbours`` are chosen on
cold-start validation users. Target popularity breaks ties.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.baselines.sparse import popularity_tiebreak
from tfrec_xcat.features.sparse import top_k_per_row
from tfrec_xcat.pipeline import PreparedSeed


class ItemKnn(MatrixBaseline):
    grid: ClassVar[list[dict[str, Any]]] = [
        {"alpha": a, "shrink": s, "neighbours": k}
        for a, s, k in itertools.product((0.5, 0.75, 1.0), (0.0, 10.0), (100, 1000))
    ]

    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        alpha = float(self.params.get("alpha", 0.5))
        shrink = float(self.params.get("shrink", 0.0))
        neighbours = int(self.params.get("neighbours", 100))
        both = m.overlap_rows()
        s, t = m.source[both], m.target[both]
        counts = (s.T @ t).tocoo()
        deg_s = np.asarray(s.sum(axis=0)).ravel().astype(np.float64)
        deg_t = np.asarray(t.sum(axis=0)).ravel().astype(np.float64)
        denom = deg_s[counts.row] ** alpha * deg_t[counts.col] ** (1.0 - alpha) + shrink
        sim = sp.csr_matrix((counts.data / denom, (counts.row, counts.col)), shape=counts.shape)
        self.weights = top_k_per_row(sim, neighbours)
        self.source = m.source
        self.tiebreak = popularity_tiebreak(m.target)
