"""The retrieve → rank stage of the shipped ``transfer`` as a graph: from the two-tower's scores to the final
ranking, exactly as ``Transfer.score`` computes it in NumPy (:mod:`tfrec_xcat.training.hybrid`).

Given a batch's deep scores (the wide & deep two-tower), the user's source items (multi-hot) and their own target
items, :meth:`RetrieveRankGraph.scores` returns the (B, T) scores of the chosen stage:

- ``deep``: the two-tower's scores;
- ``wide``: the memorisation term ``multi-hot source history × W`` (one sparse-dense product) plus the popularity
  tie-break its baseline adds (1e-9 · popularity / max popularity);
- ``fusion``: standardised deep + w · standardised log1p(wide);
- ``ranker``: the candidate lists and their features (:mod:`tfrec_xcat.export.ranking_features`), the ranker's
  normalisation + MLP, then the candidates by their logit first and every other item by its fused score - 1e4.

The user's own items are -inf in every stage (never recommended). Scores are float64 (the NumPy precision of
wide and fusion; deep and ranker are float32 values), so the ordering is the in-process one.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from tfrec_xcat.export.ranking_features import candidate_lists, check_features, fused
from tfrec_xcat.models.ranker import ListwiseRanker
from tfrec_xcat.training.shipped import RetrieveRank

OUTSIDE_LISTS = 1e4  # Transfer._ranked_scores: items outside the candidate lists sit this far below any logit


class _Held:
    """Keeps the Keras ranker out of the SavedModel's object graph (its variables are tracked directly)."""

    def __init__(self, ranker: ListwiseRanker | None) -> None:
        self.ranker = ranker


def _sparse_transposed(matrix: sp.spmatrix, name: str) -> tuple[tf.Variable, tf.Variable]:
    """A scipy matrix transposed, as ordered (indices, values) variables for ``tf.sparse.SparseTensor`` (every
    stored entry kept, explicit zeros included)."""
    coo = matrix.T.tocoo()
    order = np.lexsort((coo.col, coo.row))
    indices = np.stack([coo.row[order], coo.col[order]], axis=1).astype(np.int64)
    return (
        tf.Variable(indices.reshape(-1, 2), trainable=False, name=f"{name}_indices"),
        tf.Variable(coo.data[order].astype(np.float64), trainable=False, name=f"{name}_values"),
    )


class RetrieveRankGraph(tf.Module):
    """The chosen final stage of ``transfer`` over (B, T) deep scores (see the module docstring)."""

    def __init__(self, part: RetrieveRank, n_source: int, n_target: int) -> None:
        super().__init__()
        if part.weights.shape != (n_source, n_target):
            raise ValueError(
                f"the memorisation matrix is {part.weights.shape}, the feature space has {n_source} source × "
                f"{n_target} target items: the run's files do not belong together"
            )
        self.stage, self.n, self.weight = part.stage, part.candidates, part.fusion_weight
        self.n_source, self.n_target = n_source, n_target
        # W and its support (1 per stored link, explicit zeros included, as Signals.support_matrix), transposed:
        # target × source, for one sparse-dense product with the multi-hot history
        self.w_indices, self.w_values = _sparse_transposed(part.weights, "wide")
        self.support_values = tf.Variable(np.ones(part.weights.nnz), trainable=False, name="support_values")
        pop = np.asarray(part.popularity, np.float64)
        self.tiebreak = tf.Variable(1e-9 * pop / max(pop.max(), 1.0), trainable=False, name="wide_tiebreak")
        log_pop = np.log1p(pop) / max(np.log1p(pop.max()), 1.0)
        self.log_popularity = tf.Variable(log_pop, trainable=False, name="log_popularity")
        ranker = part.ranker() if part.stage == "ranker" else None
        if ranker is not None:
            check_features(part.features, ranker.n_features)
        self._held = _Held(ranker)
        self.ranker_variables = list(ranker.variables) if ranker is not None else []

    def _product(self, values: tf.Tensor, hot: tf.Tensor) -> tf.Tensor:
        matrix = tf.sparse.SparseTensor(self.w_indices, values, [self.n_target, self.n_source])
        return tf.transpose(tf.sparse.sparse_dense_matmul(matrix, hot, adjoint_b=True))

    def wide(self, hot: tf.Tensor) -> tf.Tensor:
        """(B, T) ``hot @ W`` for a (B, n_source) float64 multi-hot source history."""
        return self._product(self.w_values, hot)

    def scores(self, deep: tf.Tensor, hot: tf.Tensor, owned: tf.Tensor) -> tf.Tensor:
        """(B, T) float64 final scores from the two-tower's (B, T) ``deep`` scores, the (B, n_source) multi-hot
        source history ``hot`` and the (B, T) bool ``owned`` target items."""
        minus_inf = tf.constant(-math.inf, tf.float64)
        deep = tf.where(owned, minus_inf, tf.cast(deep, tf.float64))
        if self.stage == "deep":
            return deep
        wide = tf.where(owned, minus_inf, self.wide(hot))
        if self.stage == "wide":
            return wide + self.tiebreak[None, :]
        fusion = fused(deep, wide, self.weight)
        if self.stage == "fusion":
            return fusion
        support = self._product(self.support_values, hot)
        history = tf.reduce_sum(hot, axis=1)
        columns, mask, features = candidate_lists(deep, wide, support, self.log_popularity, history, self.n)
        ranker = self._held.ranker
        assert ranker is not None
        logits = ranker(features)  # (B, L) float32
        fallback = tf.cast(fusion, tf.float32)
        outside = tf.where(tf.math.is_finite(fallback), fallback - OUTSIDE_LISTS, -math.inf)
        where = tf.where(mask)  # (M, 2): batch row, list position
        rows = tf.cast(where[:, 0], tf.int32)
        cells = tf.stack([rows, tf.gather_nd(columns, where)], axis=1)
        ranked = tf.tensor_scatter_nd_update(outside, cells, tf.gather_nd(logits, where))
        return tf.cast(ranked, tf.float64)
