"""``content_knn``: TF-IDF similarity between the item texts of a user's history and every target item.

Every item's text (its text columns joined, :meth:`~tfrec_xcat.data.dataset.ShopData.item_text`) becomes an
L2-normalised TF-IDF vector; the vocabulary and IDF come from the catalog of both categories (content only, no
interactions, so new items are vectorised like any other). A user's profile combines the vectors of their
TRAINING history in source and target: ``profile = "sum"`` adds them (a centroid), ``"max"`` keeps each term's
largest weight (one strong match counts as much as many). The profile is L2-normalised and a target item's score
is its cosine with the profile. ``sublinear_tf`` (1 + log tf), ``min_df`` (drop terms in fewer items) and
``profile`` are chosen on cold-start validation users; terms in more than ``max_df`` of the items are dropped.

Target popularity breaks ties, so users whose history shares no term with an item, and every user when the data
has no item text at all, get the popularity order. The item tower's content path learns what this measures by
hand: whether a product's words alone can place it, which is all a new item has.

Scoring is sparse (profile × item-term matrix) in blocks of 512 users, added straight into the dense users ×
items output that every scorer of the run returns (the evaluator asks for 1,024 users at a time: 770 MB of
float64 for 93,860 target items); no other dense users × items array is made.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from tfrec_xcat.baselines.sparse import popularity_tiebreak
from tfrec_xcat.pipeline import PreparedSeed
from tfrec_xcat.recommender import Recommender
from tfrec_xcat.validation import check_choice, check_number

log = logging.getLogger(__name__)

PROFILES = ("sum", "max")
BLOCK = 512  # users scored per sparse product


def max_profile(history: sp.csr_matrix, vectors: sp.csr_matrix) -> sp.csr_matrix:
    """Per user (row of ``history``, users × items, nonzero = in the history), the element-wise maximum of the
    item rows of ``vectors`` (items × terms, nonnegative) over the history."""
    pairs = history.tocoo()
    keep = pairs.data != 0  # stored zeros are no history
    n_users, n_terms = history.shape[0], vectors.shape[1]
    if not keep.any():
        return sp.csr_matrix((n_users, n_terms), dtype=np.float64)
    gathered = vectors.tocsr()[pairs.col[keep]]  # one row per (user, history item) pair
    users = np.repeat(pairs.row[keep].astype(np.int64), np.diff(gathered.indptr))
    keys = users * n_terms + gathered.indices.astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], gathered.data[order]
    if not len(keys):
        return sp.csr_matrix((n_users, n_terms), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    best = np.maximum.reduceat(values, starts)
    unique = keys[starts]
    return sp.csr_matrix((best, (unique // n_terms, unique % n_terms)), shape=(n_users, n_terms), dtype=np.float64)


class ContentKnn(Recommender):
    grid: ClassVar[list[dict[str, Any]]] = [
        {"sublinear_tf": s, "min_df": d, "profile": p} for s, d, p in itertools.product((False, True), (1, 2), PROFILES)
    ]

    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        sublinear = bool(self.params.get("sublinear_tf", False))
        min_df = self.params.get("min_df", 1)
        max_df = self.params.get("max_df", 0.5)
        self.profile = self.params.get("profile", "sum")
        check_choice("content_knn profile", self.profile, PROFILES)
        check_number("content_knn min_df", min_df, ge=1, integer=True)
        check_number("content_knn max_df", max_df, gt=0, le=1)
        self.source, self.target = m.source, m.target
        self.tiebreak = popularity_tiebreak(m.target)
        self.n_items = len(m.target_items)
        self.choices: dict[str, Any] = {"vocabulary": 0}

        text = prepared.data.item_text()
        source_text = text.reindex(m.source_items).fillna("").astype(str)
        target_text = text.reindex(m.target_items).fillna("").astype(str)
        self.item_terms: sp.csr_matrix | None = None  # target items × terms
        corpus = pd.concat([source_text, target_text], ignore_index=True)
        if not corpus.str.strip().astype(bool).any():
            log.info("content_knn: the items have no text; scoring by popularity")
            return
        vectorizer = TfidfVectorizer(sublinear_tf=sublinear, min_df=min_df, max_df=max_df, dtype=np.float64)
        try:
            vectorizer.fit(corpus)
        except ValueError as exc:  # no term survives min_df/max_df (or no token at all)
            log.info("content_knn: no usable vocabulary (%s); scoring by popularity", exc)
            return
        self.item_terms = vectorizer.transform(target_text).tocsr()
        self.history_terms = sp.vstack([vectorizer.transform(source_text), self.item_terms]).tocsr()
        self.terms_by_item = self.item_terms.T.tocsr()  # terms × target items: the right side of the product
        self.choices = {"vocabulary": len(vectorizer.vocabulary_)}

    def profiles(self, rows: np.ndarray) -> sp.csr_matrix:
        """The L2-normalised term profiles of users ``rows`` from their training history in both categories."""
        assert self.item_terms is not None
        history = sp.hstack([self.source[rows], self.target[rows]]).tocsr()  # users × (source, target items)
        if self.profile == "sum":
            profile = (history @ self.history_terms).tocsr()
        else:
            profile = max_profile(history, self.history_terms)
        return normalize(profile, norm="l2", copy=False)

    def score(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.empty((len(rows), self.n_items), dtype=np.float64)
        out[:] = self.tiebreak
        if self.item_terms is None:
            return out
        for start in range(0, len(rows), BLOCK):
            block = rows[start : start + BLOCK]
            sims = (self.profiles(block) @ self.terms_by_item).tocoo()
            sims.sum_duplicates()  # one entry per (user, item), so the fancy-indexed add below is exact
            out[start + sims.row, sims.col] += sims.data
        return out
