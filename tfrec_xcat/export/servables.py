"""The three servables, as ``tf.Module``s whose ``serve`` function is the ``serving_default`` signature.

All take and return string ids, do their id lookups with stock hash tables, and use only stock TensorFlow ops
(exact brute-force top-k, no ScaNN), so stock TF Serving (CPU or GPU) loads them.

- ``RetrievalServable``: ``user_id`` [B] string (may be unknown), ``history`` [B, T] string (recent item ids of
  any category, oldest first, "" padding; unknown ids ignored), ``k`` [B] int32 (the batch uses the largest) →
  ``item_ids`` [B, K] string, ``scores`` [B, K] float32, ``popularity_fallback`` [B] bool. A known user with no
  request history is served from their stored training history; a user with neither a known id nor a usable
  history gets the target popularity list (and the flag). Items in the history are never recommended.
  With the retrieve → rank stage of ``transfer`` (a run trained by ``tfrec-xcat train``), it also has the
  ``recommend`` signature: the same inputs and outputs, scored by the shipped ``transfer`` (the two-tower, the
  memorisation matrix W, and the final stage chosen on validation: deep, wide, fusion or the ranking stage;
  :mod:`tfrec_xcat.export.recommend`). Its memorisation term reads every source item of the request history (or
  of the stored one when the request has none).
- ``RankingServable``: ``user_id``, ``history`` as above, ``candidates`` [B, C] string → ``scores`` [B, C]
  (ranking logits; -1e9 for unknown candidates), ``known`` [B, C] bool.
- ``ItemTowerServable``: ``item_id`` [B], ``category`` [B], ``text`` [B] string → ``embedding`` [B, d]: embeds
  any item, new ones from their category and text alone, for external ANN indexes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

from tfrec_xcat.export.recommend import RetrieveRankGraph
from tfrec_xcat.features.space import FeatureSpace
from tfrec_xcat.models.xcat import XcatModel
from tfrec_xcat.training.shipped import RetrieveRank

#: The retrieval request: ``serving_default`` and ``recommend`` of ``xcat_retrieval``.
REQUEST = [
    tf.TensorSpec([None], tf.string, name="user_id"),
    tf.TensorSpec([None, None], tf.string, name="history"),
    tf.TensorSpec([None], tf.int32, name="k"),
]


class _Untracked:
    """Holds the Keras model out of the SavedModel's object graph: the traced functions are what is saved,
    with the model's variables tracked directly (Keras would otherwise try to save the model as a Keras model)."""

    def __init__(self, model: XcatModel) -> None:
        self.model = model


def _table(keys: list[str]) -> tf.lookup.StaticHashTable:
    """string id → 1-based index; 0 for unknown ids and for the "" padding."""
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.range(1, len(keys) + 1, dtype=tf.int64))
    return tf.lookup.StaticHashTable(init, default_value=0)


class _UserQuery(tf.Module):
    """Shared by retrieval and ranking: request (user_id, history) → model indices → target query."""

    def __init__(self, model: XcatModel, space: FeatureSpace) -> None:
        super().__init__()
        self._held = _Untracked(model)
        self.model_variables = list(model.variables)
        self.users = _table([str(u) for u in space.users])
        self.items = _table([str(i) for i in space.items])
        self.item_category = tf.constant(space.item_category, tf.int32)
        self.stored_history = tf.Variable(space.history, trainable=False, name="stored_history")
        self.n_categories = len(space.categories)
        self.per_category = space.history_per_category
        self.target_category = space.category_index(space.target)

    def blocks(self, history: tf.Tensor) -> tf.Tensor:
        """(B, T) item indices, oldest first → per-category blocks of the last items, as the model reads them."""
        category = tf.gather(self.item_category, history)
        out = []
        for c in range(1, self.n_categories + 1):
            mine = (category == c) & (history > 0)
            later = tf.cumsum(tf.cast(mine, tf.int32), axis=1, reverse=True, exclusive=True)
            keep = mine & (later < self.per_category)
            slot = tf.where(keep, self.per_category - 1 - later, -1)
            onehot = tf.one_hot(slot, self.per_category, dtype=tf.int32)  # (B, T, H); all-zero where slot = -1
            out.append(tf.reduce_sum(onehot * history[:, :, None], axis=1))
        return tf.concat(out, axis=1)

    def resolve(self, user_id: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(user index, effective history blocks, whether the user is usable at all)."""
        users, effective, usable, _ = self.resolve_all(user_id, history)
        return users, effective, usable

    def resolve_all(self, user_id: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """As :meth:`resolve`, plus every item the user has: the whole request history, or, when the request
        has none, the stored history."""
        users = tf.cast(self.users.lookup(user_id), tf.int32)
        items = tf.cast(self.items.lookup(history), tf.int32)
        requested = self.blocks(items)
        has_request = tf.reduce_any(requested > 0, axis=1)
        stored = tf.gather(self.stored_history, users)
        effective = tf.where(has_request[:, None], requested, stored)
        usable = (users > 0) | tf.reduce_any(effective > 0, axis=1)
        owned = tf.concat(
            [items * tf.cast(has_request, tf.int32)[:, None], stored * tf.cast(~has_request, tf.int32)[:, None]], axis=1
        )
        return users, effective, usable, owned

    @property
    def model(self) -> XcatModel:
        return self._held.model

    def query(self, users: tf.Tensor, history: tf.Tensor) -> tf.Tensor:
        target = tf.fill(tf.shape(users), self.target_category)
        return self.model.user_tower({"user": users, "history": history, "target_category": target})


class RetrievalServable(_UserQuery):
    def __init__(self, model: XcatModel, space: FeatureSpace, retrieve_rank: RetrieveRank | None = None) -> None:
        super().__init__(model, space)
        target_items = space.items_of(space.target)
        self.target_vectors = tf.Variable(model.target_item_vectors(), trainable=False, name="target_vectors")
        self.target_ids = tf.Variable(
            np.asarray(space.items)[target_items - 1].astype(str), trainable=False, name="target_ids"
        )
        column = np.full(space.n_items + 1, -1, dtype=np.int32)
        column[target_items] = np.arange(len(target_items), dtype=np.int32)
        self.target_column = tf.Variable(column, trainable=False, name="target_column")
        popularity = space.item_popularity if space.item_popularity is not None else np.zeros(space.n_items + 1)
        self.popularity = tf.Variable(
            np.asarray(popularity, np.float32)[target_items], trainable=False, name="target_popularity"
        )
        self.n_target = len(target_items)
        self.wide = model.memorisation is not None
        if self.wide:  # C transposed (target column × model item), for one sparse-dense product per request
            counts = model.memorisation_counts.T.tocoo()
            order = np.lexsort((counts.col, counts.row))
            self.counts_indices = tf.Variable(
                np.stack([counts.row[order], counts.col[order]], axis=1).astype(np.int64),
                trainable=False,
                name="memorisation_indices",
            )
            self.counts_values = tf.Variable(
                counts.data[order].astype(np.float32), trainable=False, name="memorisation"
            )
            self.n_items = space.n_items
            self.target_items = tf.constant(target_items, tf.int32)
        self.retrieve_rank = None
        if retrieve_rank is not None:
            source_items = space.items_of(space.source)
            source_column = np.full(space.n_items + 1, -1, dtype=np.int32)
            source_column[source_items] = np.arange(len(source_items), dtype=np.int32)
            self.source_column = tf.Variable(source_column, trainable=False, name="source_column")
            self.retrieve_rank = RetrieveRankGraph(retrieve_rank, len(source_items), self.n_target)
            self.recommend = tf.function(self._recommend, input_signature=REQUEST)

    def wide_scores(self, history: tf.Tensor) -> tf.Tensor:
        """(B, n_target): alpha · log(1 + co-occurrence counts of each history's items), as the model scores."""
        found = tf.where(history > 0)
        items = tf.cast(tf.gather_nd(history, found), tf.int64)
        pairs = tf.stack([found[:, 0], items], axis=1)
        shape = tf.stack([tf.cast(tf.shape(history)[0], tf.int64), tf.constant(self.n_items + 1, tf.int64)])
        hot = tf.minimum(tf.scatter_nd(pairs, tf.ones_like(items, tf.float32), shape), 1.0)
        counts = tf.sparse.SparseTensor(self.counts_indices, self.counts_values, [self.n_target, self.n_items + 1])
        wide = tf.transpose(tf.sparse.sparse_dense_matmul(counts, hot, adjoint_b=True))
        return self.model.memorisation.alpha * tf.math.log1p(wide)

    def prior(self) -> tf.Tensor:
        """(n_target,) the learned item prior of the wide term."""
        return tf.gather(self.model.memorisation.prior.embeddings[:, 0], self.target_items)

    def scored_query(self, users: tf.Tensor, history: tf.Tensor) -> tf.Tensor:
        """The query whose dot product with the target vectors is the deep part of the score."""
        query = self.query(users, history)
        return query / self.model.spec.temperature if self.wide else query

    @tf.function(input_signature=REQUEST)
    def serve(self, user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        users, effective, usable, owned = self.resolve_all(user_id, history)
        scores = self.model_scores(users, effective)
        fallback = tf.broadcast_to(self.popularity[None, :], tf.shape(scores))
        scores = tf.where(usable[:, None], scores, fallback)
        # never recommend what the user has
        column = tf.gather(self.target_column, owned)
        seen = tf.where(column >= 0)
        rows = tf.cast(seen[:, 0], tf.int32)
        cols = tf.gather_nd(column, seen)
        scores = tf.tensor_scatter_nd_update(
            scores, tf.stack([rows, cols], axis=1), tf.fill(tf.shape(rows), tf.constant(-np.inf, tf.float32))
        )
        kk = tf.clip_by_value(tf.reduce_max(tf.concat([k, [1]], 0)), 1, self.n_target)
        top = tf.math.top_k(scores, k=kk)
        return {
            "item_ids": tf.gather(self.target_ids, top.indices),
            "scores": top.values,
            "popularity_fallback": tf.logical_not(usable),
        }

    def model_scores(self, users: tf.Tensor, effective: tf.Tensor) -> tf.Tensor:
        """(B, n_target) the two-tower's scores (query · item vectors, plus the wide term and prior)."""
        scores = tf.matmul(self.scored_query(users, effective), self.target_vectors, transpose_b=True)
        if self.wide:
            scores += self.wide_scores(effective) + self.prior()[None, :]
        return scores

    def columns_of(self, items: tf.Tensor, column: tf.Tensor, width: int, dtype: tf.DType) -> tf.Tensor:
        """(B, width) 1 where a row of ``items`` (model indices) holds an item of that ``column``, else 0."""
        cols = tf.gather(column, items)
        found = tf.where(cols >= 0)
        pairs = tf.stack([found[:, 0], tf.cast(tf.gather_nd(cols, found), tf.int64)], axis=1)
        shape = tf.stack([tf.cast(tf.shape(items)[0], tf.int64), tf.constant(width, tf.int64)])
        return tf.minimum(tf.scatter_nd(pairs, tf.ones([tf.shape(pairs)[0]], dtype), shape), 1)

    def _recommend(self, user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        """Signature ``recommend`` (``self.recommend``, made only when the run has the stage): what
        ``serving_default`` takes and returns, scored by the shipped ``transfer`` (retrieve → rank in this graph)."""
        assert self.retrieve_rank is not None
        users, effective, usable, owned = self.resolve_all(user_id, history)
        mine = self.columns_of(owned, self.target_column, self.n_target, tf.int32) > 0
        hot = self.columns_of(owned, self.source_column, self.retrieve_rank.n_source, tf.float64)
        scores = self.retrieve_rank.scores(self.model_scores(users, effective), hot, mine)
        fallback = tf.broadcast_to(tf.cast(self.popularity, tf.float64)[None, :], tf.shape(scores))
        scores = tf.where(usable[:, None], scores, fallback)
        scores = tf.where(mine, tf.constant(-np.inf, tf.float64), scores)  # never recommend what the user has
        kk = tf.clip_by_value(tf.reduce_max(tf.concat([k, [1]], 0)), 1, self.n_target)
        top = tf.math.top_k(scores, k=kk)
        return {
            "item_ids": tf.gather(self.target_ids, top.indices),
            "scores": tf.cast(top.values, tf.float32),
            "popularity_fallback": tf.logical_not(usable),
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None, None], tf.string, name="history"),
        ]
    )
    def user_query(self, user_id: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        """Signature ``query``: the target query vectors (for batch scoring), and whether each user is usable; a
        wide & deep model also returns ``wide`` [B, n_target], so score = query · vector + prior + wide."""
        users, effective, usable = self.resolve(user_id, history)
        out = {"query": self.scored_query(users, effective), "usable": usable}
        if self.wide:
            out["wide"] = self.wide_scores(effective)
        return out

    @tf.function(input_signature=[])
    def candidates(self) -> dict[str, tf.Tensor]:
        """Signature ``candidates``: every target item's id, vector and training popularity (and, for a wide & deep
        model, its learned ``prior``)."""
        out = {
            "item_ids": tf.identity(self.target_ids),
            "vectors": tf.identity(self.target_vectors),
            "popularity": tf.identity(self.popularity),
        }
        if self.wide:
            out["prior"] = self.prior()
        return out

    def signatures(self) -> dict[str, object]:
        out = {"serving_default": self.serve, "query": self.user_query, "candidates": self.candidates}
        if self.retrieve_rank is not None:
            out["recommend"] = self.recommend
        return out

    @property
    def warmup_signatures(self) -> tuple[str, ...]:
        """The signatures TF Serving warms up on load (they take the same inputs)."""
        return ("serving_default", "recommend") if self.retrieve_rank is not None else ("serving_default",)


class RankingServable(_UserQuery):
    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None, None], tf.string, name="history"),
            tf.TensorSpec([None, None], tf.string, name="candidates"),
        ]
    )
    def serve(self, user_id: tf.Tensor, history: tf.Tensor, candidates: tf.Tensor) -> dict[str, tf.Tensor]:
        users, effective, _ = self.resolve(user_id, history)
        query = self.query(users, effective)  # (B, d)
        items = tf.cast(self.items.lookup(candidates), tf.int32)  # (B, C)
        shape = tf.shape(items)
        vectors = self.model.embed_items(tf.reshape(items, [-1]))
        vectors = tf.reshape(vectors, [shape[0], shape[1], -1])
        q = tf.broadcast_to(query[:, None, :], tf.shape(vectors))
        logits = self.model.ranking_head(tf.concat([q, vectors, q * vectors], axis=-1))[..., 0]
        known = items > 0
        return {"scores": tf.where(known, logits, -1e9), "known": known}


class ItemTowerServable(tf.Module):
    def __init__(self, model: XcatModel, space: FeatureSpace) -> None:
        super().__init__()
        self._held = _Untracked(model)
        self.model_variables = list(model.variables)
        self.items = _table([str(i) for i in space.items])
        self.categories = _table(list(space.categories))
        self.vectorize = tf_keras.layers.TextVectorization(
            output_sequence_length=space.item_tokens.shape[1], vocabulary=space.vocabulary[2:]
        )

    @property
    def model(self) -> XcatModel:
        return self._held.model

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="item_id"),
            tf.TensorSpec([None], tf.string, name="category"),
            tf.TensorSpec([None], tf.string, name="text"),
        ]
    )
    def serve(self, item_id: tf.Tensor, category: tf.Tensor, text: tf.Tensor) -> dict[str, tf.Tensor]:
        features = {
            "item": tf.cast(self.items.lookup(item_id), tf.int32),
            "category": tf.cast(self.categories.lookup(category), tf.int32),
            "tokens": tf.cast(self.vectorize(text), tf.int32),
        }
        return {"embedding": self.model.item_tower(features)}


SERVABLES = {
    "xcat_retrieval": RetrievalServable,
    "xcat_ranking": RankingServable,
    "xcat_item_tower": ItemTowerServable,
}
