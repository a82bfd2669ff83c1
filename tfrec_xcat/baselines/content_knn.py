"""``content_knn``: TF-IDF / BM25 similarity between the item texts of a user's history and every target item.

The term vectors and profiles are :class:`~tfrec_xcat.features.content.ContentIndex` (its docstring has the
weightings): a user's profile combines the vectors of their TRAINING history in source and target, and a target
item's score is its cosine with the profile. ``weighting``, ``sublinear_tf``, ``min_df`` and ``profile`` are
chosen on cold-start validation users from :data:`~tfrec_xcat.features.content.GRID`; terms in more than
``max_df`` of the items are dropped.

Target popularity breaks ties, so users whose history shares no term with an item, and every user when the data
has no item text at all, get the popularity order. The item tower's content path learns what this measures by
hand: whether a product's words alone can place it, which is all a new item has.

Scoring is sparse (profile × item-term matrix) in blocks of 512 users, added straight into the dense users ×
items output that every scorer of the run returns (the evaluator asks for 1,024 users at a time: 770 MB of
float64 for 93,860 target items); no other dense users × items array is made.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from tfrec_xcat.baselines.sparse import popularity_tiebreak
from tfrec_xcat.features.content import GRID, ContentIndex
from tfrec_xcat.pipeline import PreparedSeed
from tfrec_xcat.recommender import Recommender

log = logging.getLogger(__name__)

BLOCK = 512  # users scored per sparse product


class ContentKnn(Recommender):
    grid: ClassVar[list[dict[str, Any]]] = GRID

    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        self.source, self.target = m.source, m.target
        self.tiebreak = popularity_tiebreak(m.target)
        self.n_items = len(m.target_items)
        text = prepared.data.item_text()
        self.index = ContentIndex.build(
            text.reindex(m.source_items).fillna("").astype(str),
            text.reindex(m.target_items).fillna("").astype(str),
            self.params,
        )
        self.choices: dict[str, Any] = {"vocabulary": self.index.n_terms if self.index is not None else 0}
        if self.index is None:
            log.info("content_knn: the items have no usable text; scoring by popularity")

    def score(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.empty((len(rows), self.n_items), dtype=np.float64)
        out[:] = self.tiebreak
        if self.index is None:
            return out
        for start in range(0, len(rows), BLOCK):
            block = rows[start : start + BLOCK]
            sims = self.index.scores(self.source[block], self.target[block])
            out[start + sims.row, sims.col] += sims.data  # one entry per (user, item): the add is exact
        return out
