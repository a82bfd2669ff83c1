"""Item texts as term vectors, and a user's text profile: the content signal of ``content_knn`` and of the
new-arrival slots' order.

Every item's text (its text columns joined, :func:`~tfrec_xcat.data.dataset.join_text`) becomes an L2-normalised
term vector. The vocabulary and document frequencies come from the catalogue of both categories (content only, no
interactions), so an item added later is vectorised by :meth:`ContentIndex.vectorize` exactly as a catalogue item
with the same text was (``tfrec-xcat reindex`` does that for the exported ``recommend`` signature).
``weighting = "tfidf"`` is scikit-learn's TF-IDF (smooth idf ``ln((1 + N) / (1 + df)) + 1``; ``sublinear_tf``:
1 + log tf); ``"bm25"`` weighs a term t of item d by

    idf(t) · tf(t, d) · (k1 + 1) / (tf(t, d) + k1 · (1 - b + b · |d| / avg |d|)),
    idf(t) = ln(1 + (N - df(t) + ½) / (df(t) + ½))

(Robertson & Zaragoza's Okapi BM25 as a document weighting; k1 = 1.2, b = 0.75; |d| counts the vocabulary's
tokens): a repeated word saturates and long texts are damped. A user's profile combines the vectors of their
history in source and target: ``profile = "sum"`` adds them (a centroid), ``"max"`` keeps each term's largest
weight (one strong match counts as much as many). The profile is L2-normalised and an item's score is its cosine
with the profile. Terms in fewer than ``min_df`` items or in more than ``max_df`` of them are dropped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.preprocessing import normalize

from tfrec_xcat.validation import check_choice, check_number

PROFILES = ("sum", "max")
WEIGHTINGS = ("tfidf", "bm25")
BM25_K1, BM25_B = 1.2, 0.75
#: the settings a run chooses between on validation users (``content_knn`` and the slots' order alike)
GRID: list[dict[str, Any]] = [
    {"weighting": "tfidf", "sublinear_tf": s, "min_df": d, "profile": p}
    for s, d, p in itertools.product((False, True), (1, 2), PROFILES)
] + [{"weighting": "bm25", "min_df": d, "profile": p} for d, p in itertools.product((1, 2), PROFILES)]


def _vectorizer(vocabulary: dict[str, int] | None = None, min_df: int = 1, max_df: float = 1.0) -> CountVectorizer:
    return CountVectorizer(vocabulary=vocabulary, min_df=min_df, max_df=max_df, dtype=np.float64)


def weigh(
    counts: sp.csr_matrix, weighting: str, idf: np.ndarray, mean_length: float, *, sublinear_tf: bool = False
) -> sp.csr_matrix:
    """Term weights of a documents × terms count matrix, rows L2-normalised (see the module docstring)."""
    counts = sp.csr_matrix(counts, dtype=np.float64)
    if not counts.shape[0]:
        return counts
    weights = counts.copy()
    tf = counts.data
    if weighting == "bm25":
        length = np.asarray(counts.sum(axis=1)).ravel()
        norm = 1.0 - BM25_B + BM25_B * (length / mean_length if mean_length > 0 else np.zeros_like(length))
        doc = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        weights.data = idf[counts.indices] * tf * (BM25_K1 + 1.0) / (tf + BM25_K1 * norm[doc])
    else:
        weights.data = (1.0 + np.log(tf) if sublinear_tf else tf) * idf[counts.indices]
    weights.eliminate_zeros()
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


@dataclass
class ContentIndex:
    """The term vectors of a run's source and target items and how to vectorise a new text the same way."""

    vocabulary: list[str]  # term of each column
    weighting: str  # tfidf | bm25
    sublinear_tf: bool
    idf: np.ndarray  # (V,) float64
    mean_length: float  # bm25: the catalogue's mean |d|
    profile: str  # sum | max
    source_terms: sp.csr_matrix  # (n_source, V) L2-normalised
    target_terms: sp.csr_matrix  # (n_target, V) L2-normalised

    @classmethod
    def build(
        cls, source_text: pd.Series, target_text: pd.Series, params: dict[str, Any] | None = None
    ) -> ContentIndex | None:
        """The index of these texts with one setting of :data:`GRID` (None when no item has a usable term, or no
        target item has a text: then every target item scores alike)."""
        params = dict(params or {})
        weighting = params.get("weighting", "tfidf")
        profile = params.get("profile", "sum")
        min_df, max_df = params.get("min_df", 1), params.get("max_df", 0.5)
        check_choice("content_knn profile", profile, PROFILES)
        check_choice("content_knn weighting", weighting, WEIGHTINGS)
        check_number("content_knn min_df", min_df, ge=1, integer=True)
        check_number("content_knn max_df", max_df, gt=0, le=1)
        if not target_text.fillna("").astype(str).str.strip().astype(bool).any():
            return None
        corpus = pd.concat([source_text, target_text], ignore_index=True).fillna("").astype(str)
        vectorizer = _vectorizer(min_df=min_df, max_df=max_df)
        try:
            counts = vectorizer.fit_transform(corpus).tocsr()
        except ValueError:  # no term survives min_df/max_df (or no token at all)
            return None
        n_docs = counts.shape[0]
        df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
        if weighting == "bm25":
            idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        else:
            idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
        mean_length = float(counts.sum() / n_docs) if n_docs else 0.0
        vocabulary = [term for term, _ in sorted(vectorizer.vocabulary_.items(), key=lambda kv: kv[1])]
        sublinear = bool(params.get("sublinear_tf", False))
        vectors = weigh(counts, weighting, idf, mean_length, sublinear_tf=sublinear)
        return cls(
            vocabulary=vocabulary,
            weighting=weighting,
            sublinear_tf=sublinear,
            idf=idf,
            mean_length=mean_length,
            profile=profile,
            source_terms=vectors[: len(source_text)].tocsr(),
            target_terms=vectors[len(source_text) :].tocsr(),
        )

    @property
    def n_terms(self) -> int:
        return len(self.vocabulary)

    @cached_property
    def history_terms(self) -> sp.csr_matrix:
        """(n_source + n_target, V): the rows a profile combines, source items first (made once, not per block)."""
        return sp.vstack([self.source_terms, self.target_terms]).tocsr()

    @cached_property
    def terms_by_item(self) -> sp.csr_matrix:
        """(V, n_target): the right side of the scores' product (made once, not per block)."""
        return self.target_terms.T.tocsr()

    def vectorize(self, texts: list[str] | pd.Series) -> sp.csr_matrix:
        """(len(texts), V) term vectors of texts, as :meth:`build` made the catalogue's (unknown words dropped)."""
        vocabulary = {term: i for i, term in enumerate(self.vocabulary)}
        counts = _vectorizer(vocabulary).transform(pd.Series(list(texts), dtype=object).fillna("").astype(str))
        return weigh(counts.tocsr(), self.weighting, self.idf, self.mean_length, sublinear_tf=self.sublinear_tf)

    def profiles(self, source: sp.csr_matrix, target: sp.csr_matrix) -> sp.csr_matrix:
        """(U, V) L2-normalised profiles from users' (U, n_source) and (U, n_target) histories (nonzero: had; the
        sum profile weighs an item by its value there)."""
        history = sp.hstack([source, target]).tocsr()
        terms = self.history_terms
        profile = (history @ terms).tocsr() if self.profile == "sum" else max_profile(history, terms)
        return normalize(profile, norm="l2", copy=False)

    def scores(self, source: sp.csr_matrix, target: sp.csr_matrix) -> sp.coo_matrix:
        """(U, n_target) cosines of the users' profiles with every target item (sparse: no shared term, no entry)."""
        sims = (self.profiles(source, target) @ self.terms_by_item).tocoo()
        sims.sum_duplicates()
        return sims
