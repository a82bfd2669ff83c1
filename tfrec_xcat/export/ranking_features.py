"""The ranking stage's candidate lists and cross features in TensorFlow (stock ops): the exported mirror of
:meth:`tfrec_xcat.training.hybrid.Signals.lists`.

THIS MUST STAY EQUAL TO ``Signals.lists`` (and to ``standardize`` / ``Signals.fused`` there). The ranker was
trained on the NumPy features; served on anything else it silently ranks worse. Each feature is computed by the
function of its name in :data:`FEATURE_GRAPH`, stacked in the order of
:data:`~tfrec_xcat.training.hybrid.FEATURES`, so adding a feature to ``Signals.lists`` means adding it to
``FEATURES`` and here; :func:`check_features` refuses to export a ranker whose features this module does not
compute, and ``tests/test_recommend.py`` checks that the exported scores equal the in-process ones.

The semantics, as NumPy has them (everything in float64 until the features are cast to float32):

- ``deep`` and ``wide`` are (B, T) scores with the user's own items at -inf;
- a list is the top N of ``deep`` and the top N of ``wide`` (ties to the lower column, N at most T), sorted by
  column; a candidate is real if it is not a repeat of the one before it and its deep score is finite;
- ranks are over all T items (0 = best, ties to the lower column), as ``log1p(rank) / log(max(T, 2))``;
- the fused score is per-row z-scores of deep + weight · z-scores of log1p(wide), non-finite deep scores at -inf.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from tfrec_xcat.errors import XcatError
from tfrec_xcat.training.hybrid import FEATURES


class ListView(NamedTuple):
    """What the features are computed from, gathered at each candidate column ((B, L), or (B, 1) per user)."""

    deep: tf.Tensor  # deep score (-1 for the user's own items)
    deep_max: tf.Tensor  # (B, 1) the row's best deep score
    deep_rank: tf.Tensor
    wide: tf.Tensor  # wide score (0 for the user's own items)
    wide_max: tf.Tensor  # (B, 1)
    wide_rank: tf.Tensor
    support: tf.Tensor  # how many of the user's source items W links to the candidate
    log_popularity: tf.Tensor  # log1p(popularity) / max(log1p(max popularity), 1)
    source_history: tf.Tensor  # (B, 1) the user's number of source items
    log_items: float  # log(max(T, 2))


def _scaled_rank(rank: tf.Tensor, log_items: float) -> tf.Tensor:
    return tf.math.log1p(tf.cast(rank, tf.float64)) / log_items


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
}


def check_features(trained: list[str], n_features: int) -> None:
    """Refuse a ranker this module cannot feed: trained on other features than ``FEATURES``, a feature without a
    TensorFlow twin here, or an input width that is not the number of features."""
    missing = [name for name in FEATURES if name not in FEATURE_GRAPH]
    if missing:
        raise XcatError(
            f"ranking feature(s) {', '.join(missing)} of training.hybrid.FEATURES have no TensorFlow version in "
            "export/ranking_features.py (FEATURE_GRAPH); add them there exactly as Signals.lists computes them"
        )
    if list(trained) != list(FEATURES):
        raise XcatError(
            f"the run's ranker was trained on the features {list(trained)}, this code computes {list(FEATURES)}; "
            "train the run again with this code"
        )
    if n_features != len(FEATURES):
        raise XcatError(f"the ranker takes {n_features} features, FEATURES names {len(FEATURES)}")


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


def candidate_lists(
    deep: tf.Tensor,
    wide: tf.Tensor,
    support: tf.Tensor,
    log_popularity: tf.Tensor,
    source_history: tf.Tensor,
    n: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``Signals.lists`` for a batch: (columns (B, L) int32, mask (B, L) bool, features (B, L, F) float32).

    ``deep``, ``wide``, ``support``: (B, T) float64 (the user's own items at -inf in deep and wide);
    ``log_popularity``: (T,) float64; ``source_history``: (B,) float64."""
    n_items = int(deep.shape[1])
    n = min(n, n_items)
    deep_order, wide_order = order_of(deep), order_of(wide)
    both = tf.sort(tf.concat([deep_order[:, :n], wide_order[:, :n]], axis=1), axis=1)
    fresh = tf.concat([tf.ones_like(both[:, :1], tf.bool), both[:, 1:] != both[:, :-1]], axis=1)

    def at(values: tf.Tensor) -> tf.Tensor:
        return tf.gather(values, both, batch_dims=1)

    mask = fresh & tf.math.is_finite(at(deep))
    deep_f = tf.where(tf.math.is_finite(deep), deep, -1.0)
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
        log_items=math.log(max(n_items, 2)),
    )
    features = tf.stack([FEATURE_GRAPH[name](view) for name in FEATURES], axis=-1)
    return both, mask, tf.cast(features, tf.float32)
