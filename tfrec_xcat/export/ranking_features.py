"""The ranking stage's candidate lists and cross features in TensorFlow (stock ops): the exported mirror of
:meth:`tfrec_xcat.training.hybrid.Signals.lists`.

THIS MUST STAY EQUAL TO ``Signals._lists`` (and to ``standardize`` / ``Signals.fused`` there). The ranker was
trained on the NumPy features; served on anything else it silently ranks worse. Each base feature is computed by
the function of its name in :data:`FEATURE_GRAPH`, each per-family feature ``{family}_{part}`` by
:data:`OTHER_GRAPH` ``[part]``, stacked in the order of :func:`~tfrec_xcat.training.hybrid.feature_names`, so
adding a feature to ``Signals._lists`` means adding it to ``BASE_FEATURES`` / ``OTHER_FEATURES`` there and here;
:func:`check_features` refuses to export a ranker whose features this module does not compute, and
``tests/test_recommend.py`` checks the features name by name and that the exported scores equal the in-process
ones.

The semantics, as NumPy has them (everything in float64 until the features are cast to float32):

- ``deep`` and ``wide`` are (B, T) scores with the user's own items at -inf; so is each other memorisation
  family's ``source history × W_f`` (-inf where deep is);
- a list is the top N of ``deep`` and the top N of ``wide`` (ties to the lower column, N at most T), sorted by
  column; a candidate is real if it is not a repeat of the one before it and its deep score is finite;
- ranks are over all T items (0 = best, ties to the lower column), as ``log1p(rank) / log(max(T, 2))``;
- a relative score is the score over the row's largest (the user's own items as 0; 0 when no score is positive);
- ``cooc_max`` is log1p of the largest raw co-occurrence count of any of the user's source items with the
  candidate (0 without source items);
- the fused score is per-row z-scores of deep + weight · z-scores of log1p(wide), non-finite deep scores at -inf.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import tensorflow as tf

from tfrec_xcat.errors import XcatError
from tfrec_xcat.training.hybrid import BASE_FEATURES, OTHER_FEATURES, feature_names


class ListView(NamedTuple):
    """What the base features are computed from, gathered at each candidate column ((B, L), or (B, 1) per user)."""

    deep: tf.Tensor  # deep score (-1 for the user's own items)
    deep_max: tf.Tensor  # (B, 1) the row's best deep score
    deep_rank: tf.Tensor
    wide: tf.Tensor  # wide score (0 for the user's own items)
    wide_max: tf.Tensor  # (B, 1)
    wide_rank: tf.Tensor
    support: tf.Tensor  # how many of the user's source items W links to the candidate
    log_popularity: tf.Tensor  # log1p(popularity) / max(log1p(max popularity), 1)
    source_history: tf.Tensor  # (B, 1) the user's number of source items
    cooc_max: tf.Tensor  # the largest co-occurrence count of one of the user's source items with the candidate
    log_items: float  # log(max(T, 2))


class FamilyView(NamedTuple):
    """One other memorisation family, gathered at each candidate column."""

    relative: tf.Tensor  # its score over the user's best (owned items as 0)
    rank: tf.Tensor  # its 0-based rank among all items
    log_items: float


def _scaled_rank(rank: tf.Tensor, log_items: float) -> tf.Tensor:
    return tf.math.log1p(tf.cast(rank, tf.float64)) / log_items


def relative(scores: tf.Tensor) -> tf.Tensor:
    """Scores over each row's largest; 0 where a row has no positive score (``hybrid.relative``)."""
    top = tf.reduce_max(scores, axis=1, keepdims=True)
    return tf.where(top > 0, scores / tf.where(top > 0, top, 1.0), tf.zeros_like(scores))


FEATURE_GRAPH: dict[str, Callable[[ListView], tf.Tensor]] = {
    "deep": lambda v: v.deep,
    "deep_gap": lambda v: v.deep - v.deep_max,
    "deep_rank": lambda v: _scaled_rank(v.deep_rank, v.log_items),
    "wide_rel": lambda v: tf.where(v.wide_max > 0, v.wide / tf.where(v.wide_max > 0, v.wide_max, 1.0), 0.0),
    "wide_log": lambda v: tf.math.log1p(tf.maximum(v.wide, 0.0)),
    "wide_rank": lambda v: _scaled_rank(v.wide_rank, v.log_items),
    "support": lambda v: tf.math.log1p(v.support),
    "popularity": lambda v: v.log_popularity,
    "source_history": lambda v: tf.broadcast_to(tf.math.log1p(v.source_history), tf.shape(v.deep)),
    "cooc_max": lambda v: tf.math.log1p(v.cooc_max),
}

#: ``{family}_{part}`` for each other memorisation family
OTHER_GRAPH: dict[str, Callable[[FamilyView], tf.Tensor]] = {
    "rel": lambda f: f.relative,
    "rank": lambda f: _scaled_rank(f.rank, f.log_items),
}


def check_features(trained: Sequence[str], others: Sequence[str], n_features: int) -> None:
    """Refuse a ranker this module cannot feed: a feature of ``hybrid.feature_names`` without a TensorFlow twin
    here, trained on other features than this code computes for its memorisation families ``others``, or an input
    width that is not the number of features."""
    missing = [name for name in BASE_FEATURES if name not in FEATURE_GRAPH]
    missing += [f"<family>_{part}" for part in OTHER_FEATURES if part not in OTHER_GRAPH]
    if missing:
        raise XcatError(
            f"ranking feature(s) {', '.join(missing)} of training.hybrid.feature_names have no TensorFlow version "
            "in export/ranking_features.py (FEATURE_GRAPH / OTHER_GRAPH); add them there exactly as Signals._lists "
            "computes them"
        )
    computed = list(feature_names(list(others)))
    if list(trained) != computed:
        raise XcatError(
            f"the run's ranker was trained on the features {list(trained)}, this code computes {computed}; "
            "train the run again with this code"
        )
    if n_features != len(computed):
        raise XcatError(f"the ranker takes {n_features} features, training.hybrid.feature_names names {len(computed)}")


def standardize(scores: tf.Tensor) -> tf.Tensor:
    """Per-row z-scores; rows with no spread become 0 (``hybrid.standardize``)."""
    mean = tf.reduce_mean(scores, axis=1, keepdims=True)
    std = tf.math.reduce_std(scores, axis=1, keepdims=True)
    return tf.where(std > 0, (scores - mean) / tf.where(std > 0, std, 1.0), tf.zeros_like(scores))


def fused(deep: tf.Tensor, wide: tf.Tensor, weight: float) -> tf.Tensor:
    """``Signals.fused``: standardised deep + weight · standardised log1p(wide); -inf where deep is not finite."""
    finite = tf.math.is_finite(deep)
    zero = tf.zeros_like(deep)
    d = standardize(tf.where(finite, deep, zero))
    w = standardize(tf.where(finite, tf.math.log1p(tf.maximum(wide, 0.0)), zero))
    return tf.where(finite, d + weight * w, tf.constant(-math.inf, deep.dtype))


def order_of(scores: tf.Tensor) -> tf.Tensor:
    """(B, T) columns best first, ties to the lower column (``hybrid.order_of``)."""
    return tf.math.top_k(scores, k=scores.shape[1]).indices


def ranks_of(order: tf.Tensor) -> tf.Tensor:
    """(B, T) each column's 0-based rank, from :func:`order_of` (the inverse permutation)."""
    return tf.argsort(order, axis=1, stable=True)


def max_link(indptr: tf.Tensor, indices: tf.Tensor, values: tf.Tensor, hot: tf.Tensor, columns: tf.Tensor) -> tf.Tensor:
    """``hybrid.max_per_history``: (B, L) float64, for each user (a row of the (B, S) multi-hot source history
    ``hot``) and candidate column, the largest count ``C[s, column]`` over the user's source items s (0 for none).

    C is given per target column as CSR arrays of its transpose: column c's counts are ``values[indptr[c] :
    indptr[c + 1]]`` at source items ``indices[...]`` (counts are never negative)."""
    width = tf.shape(columns)[1]
    cells = tf.reshape(columns, [-1])
    starts = tf.gather(indptr, cells)
    positions = tf.ragged.range(starts, tf.gather(indptr, cells + 1))  # (B·L, links of the candidate)
    cell = positions.value_rowids()
    at = positions.flat_values
    source = tf.cast(tf.gather(indices, at), tf.int64)
    user = cell // tf.cast(width, cell.dtype)
    present = tf.gather_nd(hot, tf.stack([tf.cast(user, tf.int64), source], axis=1)) > 0
    linked = tf.where(present, tf.cast(tf.gather(values, at), tf.float64), tf.zeros([], tf.float64))
    best = tf.math.unsorted_segment_max(linked, cell, tf.size(cells))  # the lowest float for a cell with no link
    return tf.reshape(tf.maximum(best, 0.0), tf.shape(columns))


def candidate_lists(
    deep: tf.Tensor,
    wide: tf.Tensor,
    support: tf.Tensor,
    others: dict[str, tf.Tensor],
    link: Callable[[tf.Tensor], tf.Tensor],
    log_popularity: tf.Tensor,
    source_history: tf.Tensor,
    n: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``Signals.lists`` for a batch: (columns (B, L) int32, mask (B, L) bool, features (B, L, F) float32), the
    features in the order of ``hybrid.feature_names(list(others))``.

    ``deep``, ``wide``, ``support``: (B, T) float64 (the user's own items at -inf in deep and wide); ``others``:
    each other memorisation family's (B, T) float64 ``source history × W_f``, in feature order; ``link``: the
    candidate columns → their (B, L) :func:`max_link`; ``log_popularity``: (T,) float64; ``source_history``: (B,)
    float64."""
    n_items = int(deep.shape[1])
    n = min(n, n_items)
    log_items = math.log(max(n_items, 2))
    deep_order, wide_order = order_of(deep), order_of(wide)
    both = tf.sort(tf.concat([deep_order[:, :n], wide_order[:, :n]], axis=1), axis=1)
    fresh = tf.concat([tf.ones_like(both[:, :1], tf.bool), both[:, 1:] != both[:, :-1]], axis=1)

    def at(values: tf.Tensor) -> tf.Tensor:
        return tf.gather(values, both, batch_dims=1)

    finite = tf.math.is_finite(deep)
    mask = fresh & at(finite)
    deep_f = tf.where(finite, deep, -1.0)
    wide_f = tf.where(tf.math.is_finite(wide), wide, 0.0)
    view = ListView(
        deep=at(deep_f),
        deep_max=tf.reduce_max(deep_f, axis=1, keepdims=True),
        deep_rank=at(ranks_of(deep_order)),
        wide=at(wide_f),
        wide_max=tf.reduce_max(wide_f, axis=1, keepdims=True),
        wide_rank=at(ranks_of(wide_order)),
        support=at(support),
        log_popularity=tf.gather(log_popularity, both),
        source_history=source_history[:, None],
        cooc_max=link(both),
        log_items=log_items,
    )
    columns = [FEATURE_GRAPH[name](view) for name in BASE_FEATURES]
    minus_inf = tf.constant(-math.inf, tf.float64)
    for scores in others.values():
        scores = tf.where(finite, scores, minus_inf)  # the user's own items, as Signals._lists sets them
        family = FamilyView(
            relative=at(relative(tf.where(tf.math.is_finite(scores), scores, 0.0))),
            rank=at(ranks_of(order_of(scores))),
            log_items=log_items,
        )
        columns += [OTHER_GRAPH[part](family) for part in OTHER_FEATURES]
    return both, mask, tf.cast(tf.stack(columns, axis=-1), tf.float32)
