"""``rp3beta``: a three-step random walk source item → user → target item, with a popularity penalty.

Over overlap training users, the walk goes from source item s to one of its users u (probability 1/deg(s)) and
from u to one of their target items t (probability 1/deg(u), u's target degree); both transition probabilities
are raised to ``alpha``, and the arrival at t is divided by pop(t)^``beta`` (pop = t's training interactions):

    W[s, t] = Σ_u (S[u, s] / deg(s))^alpha · (T[u, t] / deg(u))^alpha / pop(t)^beta

(Paudel et al., "Updatable, accurate, diverse, and scalable recommendations for interactive applications", 2016;
Dacrema et al. 2019 found it among the strongest simple methods). A user's score sums W[s, t] over their source
history (``alpha = beta = 0`` is raw co-occurrence). ``alpha`` and ``beta`` are chosen on cold-start validation
users; target popularity breaks ties.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.baselines.sparse import popularity_tiebreak, safe_power
from tfrec_xcat.pipeline import PreparedSeed


class Rp3Beta(MatrixBaseline):
    grid: ClassVar[list[dict[str, Any]]] = [
        {"alpha": a, "beta": b} for a, b in itertools.product((0.0, 0.5, 1.0), (0.0, 0.1, 0.25, 0.5))
    ]

    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        alpha = float(self.params.get("alpha", 1.0))
        beta = float(self.params.get("beta", 0.0))
        both = m.overlap_rows()
        s, t = m.source[both].astype(np.float64), m.target[both].astype(np.float64)
        deg_s = np.asarray(s.sum(axis=0)).ravel()
        deg_u = np.asarray(t.sum(axis=1)).ravel()
        walk_s = sp.diags(safe_power(deg_s, -alpha)) @ s.T  # source item → user
        walk_t = sp.diags(safe_power(deg_u, -alpha)) @ t  # user → target item
        pop = np.asarray(m.target.sum(axis=0)).ravel().astype(np.float64)
        self.weights = (walk_s @ walk_t @ sp.diags(safe_power(pop, -beta))).tocsr()
        self.source = m.source
        self.tiebreak = popularity_tiebreak(m.target)
