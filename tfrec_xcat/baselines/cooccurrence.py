"""``cooccurrence``: source item → target item co-occurrence over training users active in both categories.

C[s, t] = number of overlap training users with source item s and target item t. A user's score for t sums
C[s, t] over their source history, after an optional per-source-item normalisation (``normalize``: ``none``,
``sqrt_row`` = divide row s by sqrt(Σ_t C[s, t]), ``row`` = divide by Σ_t C[s, t]), chosen on validation users.
On the real Food→Kitchen data (seed 0) raw counts win on validation: NDCG@10 0.044 val, 0.042 test.
Target popularity breaks ties (users whose source items never co-occurred get it).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.baselines.sparse import popularity_tiebreak
from tfrec_xcat.features.memorisation import overlap_counts
from tfrec_xcat.pipeline import PreparedSeed

POWERS = {"none": 0.0, "sqrt_row": 0.5, "row": 1.0}


class Cooccurrence(MatrixBaseline):
    grid: ClassVar[list[dict[str, Any]]] = [{"normalize": n} for n in POWERS]

    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        normalize = self.params.get("normalize", "none")
        if normalize not in POWERS:
            raise ValueError(f"cooccurrence normalize must be one of {', '.join(POWERS)}, got {normalize!r}")
        counts = overlap_counts(m)
        row = np.asarray(counts.sum(axis=1)).ravel() ** POWERS[normalize]
        scale = sp.diags(np.divide(1.0, row, out=np.zeros_like(row), where=row > 0))
        self.weights = (scale @ counts).tocsr()
        self.source = m.source
        self.tiebreak = popularity_tiebreak(m.target)
