"""``content_knn``: TF-IDF similarity between the item texts of a user's history and every target item.

Every item's text (its text columns joined, :meth:`~tfrec_xcat.data.dataset.ShopData.item_text`) becomes an
L2-normalised term vector; the vocabulary and document frequencies come from the catalog of both categories
(content only, no interactions, so new items are vectorised like any other). ``weighting = "tfidf"`` is
scikit-learn's TF-IDF (``sublinear_tf``: 1 + log tf); ``"bm25"`` weighs a term t of item d by

    idf(t) · tf(t, d) · (k1 + 1) / (tf(t, d) + k1 · (1 - b + b · |d| / avg |d|)),
    idf(t) = ln(1 + (N - df(t) + ½) / (df(t) + ½))

(Robertson & Zaragoza's Okapi BM25 as a document weighting; k1 = 1.2, b = 0.75): a repeated word saturates and
long texts are damped. A user's profile combines the vectors of their TRAINING history in source and target:
``profile = "sum"`` adds them (a centroid), ``"max"`` keeps each term's largest weight (one strong match counts
as much as many). The profile is L2-normalised and a target item's score is its cosine with the profile.
``weighting``, ``sublinear_tf``, ``min_df`` (drop terms in fewer items) and ``profile`` are chosen on cold-start
validation users; terms in more than ``max_df`` of the items are dropped.

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
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from tfrec_xcat.baselines.sparse import popularity_tiebreak
from tfrec_xcat.pipeline import PreparedSeed
from tfrec_xcat.recommender import Recommender
from tfrec_xcat.validation import check_choice, check_number

log = logging.getLogger(__name__)

PROFILES = ("sum", "max")
WEIGHTINGS = ("tfidf", "bm25")
BLOCK = 512  # users scored per sparse product


def bm25_weights(counts: sp.csr_matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Okapi BM25 weights (see the module docstring) of a documents × terms count matrix, rows L2-normalised."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    n_docs = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    length = np.asarray(counts.sum(axis=1)).ravel()
    mean = length.mean() if n_docs else 0.0
    norm = 1.0 - b + b * np.divide(length, mean, out=np.zeros_like(length), where=mean > 0)
    doc = np.repeat(np.arange(n_docs), np.diff(counts.indptr))
    tf = counts.data
    weights = counts.copy()
    weights.data = idf[counts.indices] * tf * (k1 + 1.0) / (tf + k1 * norm[doc])
    return normalize(weights, norm="l2", copy=False)


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
        {"weighting": "tfidf", "sublinear_tf": s, "min_df": d, "profile": p}
        for s, d, p in itertools.product((False, True), (1, 2), PROFILES)
    ] + [{"weighting": "bm25", "min_df": d, "profile": p} for d, p in itertools.product((1, 2), PROFILES)]

    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        sublinear = bool(self.params.get("sublinear_tf", False))
        min_df = self.params.get("min_df", 1)
        max_df = self.params.get("max_df", 0.5)
        self.profile = self.params.get("profile", "sum")
        weighting = self.params.get("weighting", "tfidf")
        check_choice("content_knn profile", self.profile, PROFILES)
        check_choice("content_knn weighting", weighting, WEIGHTINGS)
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
        if weighting == "tfidf":
            vectorizer: CountVectorizer = TfidfVectorizer(
                sublinear_tf=sublinear, min_df=min_df, max_df=max_df, dtype=np.float64
            )
        else:
            vectorizer = CountVectorizer(min_df=min_df, max_df=max_df, dtype=np.float64)
        try:
            vectors = vectorizer.fit_transform(corpus)
        except ValueError as exc:  # no term survives min_df/max_df (or no token at all)
            log.info("content_knn: no usable vocabulary (%s); scoring by popularity", exc)
            return
        if weighting == "bm25":
            vectors = bm25_weights(vectors)
        self.history_terms = vectors.tocsr()  # source items, then target items (the columns of source | target)
        self.item_terms = self.history_terms[len(source_text) :]
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
