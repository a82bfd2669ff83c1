"""The three servables, as ``tf.Module``s whose ``serve`` function is the ``serving_default`` signature.

All take and return string ids, do their id lookups with stock hash tables, and use only stock TensorFlow ops
(exact brute-force top-k, no ScaNN), so stock TF Serving (CPU or GPU) loads them.

- ``RetrievalServable``: ``user_id`` [B] string (may be unknown), ``history`` [B, T] string (recent item ids of
  any category, oldest first, "" padding; unknown ids ignored), ``k`` [B] int32 (the batch uses the largest) →
  ``item_ids`` [B, K] string, ``scores`` [B, K] float32, ``popularity_fallback`` [B] bool. A known user with no
  request history is served from their stored training history; a user with neither a known id nor a usable
  history gets the target popularity list (and the flag). Items in the history are never recommended. It is a
  :class:`RetrievalEncoder` (the user side, saved as the ``encoder`` child) and a :class:`Catalogue` (the items
  it ranks, saved as variables), so ``tfrec-xcat reindex`` can publish a new catalogue around the same encoder.
  With the retrieve → rank stage of ``transfer`` (a run trained by ``tfrec-xcat train``), it also has the
  ``recommend`` signature: the same inputs and outputs, scored by the shipped ``transfer`` (the two-tower, the
  memorisation families, and the final stage chosen on validation: deep, wide, fusion or the ranking stage;
  :mod:`tfrec_xcat.export.recommend`). Its memorisation terms read every source item of the request history (or
  of the stored one when the request has none); their columns are catalogue arrays, which ``reindex`` edits.
- ``RankingServable``: ``user_id``, ``history`` as above, ``candidates`` [B, C] string → ``scores`` [B, C]
  (ranking logits; -1e9 for unknown candidates), ``known`` [B, C] bool.
- ``ItemTowerServable``: ``item_id`` [B], ``category`` [B], ``text`` [B] string → ``embedding`` [B, towers · d]: embeds
  any item, new ones from their category and text alone, for external ANN indexes (and ``reindex``). A model with
  precomputed item vectors (``[data] vector_columns``) also takes ``vectors`` [B, D] float32: the vector columns
  side by side in config order; a column whose values in a row are not all finite (e.g. NaN) means the item has no
  such vector. Without vectors the signature is exactly the three string inputs.

The retrieval encoder and the item tower carry ``model_fingerprint`` (a digest of the trained weights).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
import tf_keras

from tfrec_xcat.export.recommend import RankColumns, RetrieveRankGraph, StageSpec, stage_of
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


def model_fingerprint(model: XcatModel) -> str:
    """A short digest of the trained weights: the servables of one model carry it, so ``reindex`` can tell which
    ``xcat_item_tower`` version embeds items the way a ``xcat_retrieval`` version's catalogue was embedded."""
    digest = hashlib.sha256()
    for variable in sorted(model.variables, key=lambda v: v.name):
        digest.update(variable.name.encode())
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()[:20]


def _table(keys: list[str]) -> tf.lookup.StaticHashTable:
    """string id → 1-based index; 0 for unknown ids and for the "" padding."""
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.range(1, len(keys) + 1, dtype=tf.int64))
    return tf.lookup.StaticHashTable(init, default_value=0)


class _UserSide(tf.Module):
    """Model indices (user, history) → effective history, usability, owned items and the target query."""

    def __init__(self, model: XcatModel, space: FeatureSpace) -> None:
        super().__init__()
        self._held = _Untracked(model)
        self.model_variables = list(model.variables)
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

    def resolve_indices(self, users: tf.Tensor, items: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """(user index, effective history blocks, whether the user is usable at all, every item the user has: the
        whole request history, or, when the request has none, the stored history)."""
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


class _UserQuery(_UserSide):
    """Shared by ranking: request (user_id, history) → model indices → target query."""

    def __init__(self, model: XcatModel, space: FeatureSpace) -> None:
        super().__init__(model, space)
        self.users = _table([str(u) for u in space.users])
        self.items = _table([str(i) for i in space.items])

    def resolve(self, user_id: tf.Tensor, history: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(user index, effective history blocks, whether the user is usable at all)."""
        users = tf.cast(self.users.lookup(user_id), tf.int32)
        items = tf.cast(self.items.lookup(history), tf.int32)
        users, effective, usable, _ = self.resolve_indices(users, items)
        return users, effective, usable


class RetrievalEncoder(_UserSide):
    """The catalogue-independent half of ``xcat_retrieval``, saved as its ``encoder`` child: model indices of the
    request → the scored query, whether the user is usable, the history blocks the wide term reads and the model
    items the user has. It holds the id vocabularies as variables (``user_ids``, ``item_ids``: index - 1 → id) and
    no hash table: the retrieval module around it builds its id tables from them, so ``tfrec-xcat reindex`` carries
    the encoder into a new version unchanged, with nothing restored-and-resaved that would grow each time."""

    def __init__(self, model: XcatModel, space: FeatureSpace) -> None:
        super().__init__(model, space)
        self.wide = model.memorisation is not None
        self.user_ids = tf.Variable(np.asarray(space.users).astype(str), trainable=False, name="user_ids")
        self.item_ids = tf.Variable(np.asarray(space.items).astype(str), trainable=False, name="item_ids")
        self.fingerprint = tf.Variable(model_fingerprint(model), trainable=False, name="model_fingerprint")
        self.catalogue_category = tf.Variable(space.target, trainable=False, name="catalogue_category")

    def scored_query(self, users: tf.Tensor, history: tf.Tensor) -> tf.Tensor:
        """The query whose dot product with the item vectors is the deep part of the score."""
        query = self.query(users, history)
        return query / self.model.spec.temperature if self.wide else query

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32, name="users"),
            tf.TensorSpec([None, None], tf.int32, name="items"),
        ]
    )
    def encode(self, users: tf.Tensor, items: tf.Tensor) -> dict[str, tf.Tensor]:
        users, effective, usable, owned = self.resolve_indices(users, items)
        return {"query": self.scored_query(users, effective), "usable": usable, "history": effective, "owned": owned}


@dataclass
class Catalogue:
    """What ``xcat_retrieval`` ranks, one row per item: ids, vectors, training popularity, for a wide & deep
    model the learned prior and the co-occurrence rows of the memorisation term, and with the ``recommend``
    signature the retrieve → rank stage's columns (every memorisation family's W, the raw counts, popularity)."""

    item_ids: np.ndarray  # [n] str
    vectors: np.ndarray  # [n, d] float32
    popularity: np.ndarray  # [n] float32: training interactions
    model_row: np.ndarray  # [n_items + 1] int32: model item index → row, -1 for none (what a user has is excluded)
    prior: np.ndarray | None = None  # [n] float32
    alpha: float | None = None
    counts: sp.coo_matrix | None = None  # [n, n_items + 1]: co-occurrence of each row's item with each model item
    rank: RankColumns | None = None  # the recommend signature's catalogue half

    @property
    def wide(self) -> bool:
        return self.prior is not None

    @classmethod
    def from_model(cls, model: XcatModel, space: FeatureSpace) -> Catalogue:
        """Every target item of the trained model."""
        target_items = space.items_of(space.target)
        model_row = np.full(space.n_items + 1, -1, dtype=np.int32)
        model_row[target_items] = np.arange(len(target_items), dtype=np.int32)
        popularity = space.item_popularity if space.item_popularity is not None else np.zeros(space.n_items + 1)
        catalogue = cls(
            item_ids=np.asarray(space.items)[target_items - 1].astype(str),
            vectors=model.target_item_vectors(),
            popularity=np.asarray(popularity, np.float32)[target_items],
            model_row=model_row,
        )
        if model.memorisation is not None:
            catalogue.prior = model.memorisation.prior.embeddings.numpy()[target_items, 0].astype(np.float32)
            catalogue.alpha = float(model.memorisation.alpha.numpy())
            catalogue.counts = model.memorisation_counts.T.tocoo()  # (n_target, n_items + 1)
        return catalogue


class CatalogueRetrieval(tf.Module):
    """``xcat_retrieval``: an encoder (a :class:`RetrievalEncoder`, or the restored ``encoder`` of an earlier
    version) and a :class:`Catalogue`, held as variables that ``tfrec-xcat reindex`` reads back."""

    def __init__(self, encoder: Any, catalogue: Catalogue, stage: StageSpec | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.users = _table([v.decode("utf-8") for v in encoder.user_ids.numpy()])
        self.items = _table([v.decode("utf-8") for v in encoder.item_ids.numpy()])
        self.target_ids = tf.Variable(catalogue.item_ids.astype(str), trainable=False, name="target_ids")
        self.target_vectors = tf.Variable(catalogue.vectors.astype(np.float32), trainable=False, name="target_vectors")
        self.popularity = tf.Variable(
            catalogue.popularity.astype(np.float32), trainable=False, name="target_popularity"
        )
        self.target_column = tf.Variable(catalogue.model_row.astype(np.int32), trainable=False, name="target_column")
        self.catalogue_rows = _table([str(i) for i in catalogue.item_ids])
        self.n_target = len(catalogue.item_ids)
        self.n_items = len(catalogue.model_row) - 1
        self.wide = catalogue.wide
        if self.wide:  # C (catalogue row × model item), for one sparse-dense product per request
            assert catalogue.prior is not None and catalogue.alpha is not None and catalogue.counts is not None
            counts = catalogue.counts.tocoo()
            order = np.lexsort((counts.col, counts.row))
            self.counts_indices = tf.Variable(
                np.stack([counts.row[order], counts.col[order]], axis=1).astype(np.int64).reshape(-1, 2),
                trainable=False,
                name="memorisation_indices",
            )
            self.counts_values = tf.Variable(
                counts.data[order].astype(np.float32), trainable=False, name="memorisation"
            )
            self.item_prior = tf.Variable(catalogue.prior.astype(np.float32), trainable=False, name="item_prior")
            self.alpha = tf.Variable(np.float32(catalogue.alpha), trainable=False, name="memorisation_alpha")
        self.has_recommend = stage is not None
        if stage is not None:
            if catalogue.rank is None:
                raise ValueError("a retrieve → rank stage without its catalogue columns")
            self.retrieve_rank = RetrieveRankGraph(stage, catalogue.rank, self.n_target)
            self.recommend = tf.function(self._recommend, input_signature=REQUEST)

    def encode(self, user_id: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        """The encoder's view of a request (string ids looked up here, unknown ones as 0)."""
        users = tf.cast(self.users.lookup(user_id), tf.int32)
        items = tf.cast(self.items.lookup(history), tf.int32)
        return self.encoder.encode(users, items)

    def wide_scores(self, history: tf.Tensor) -> tf.Tensor:
        """(B, n_target): alpha · log(1 + co-occurrence counts of each history's items), as the model scores."""
        found = tf.where(history > 0)
        items = tf.cast(tf.gather_nd(history, found), tf.int64)
        pairs = tf.stack([found[:, 0], items], axis=1)
        shape = tf.stack([tf.cast(tf.shape(history)[0], tf.int64), tf.constant(self.n_items + 1, tf.int64)])
        hot = tf.minimum(tf.scatter_nd(pairs, tf.ones_like(items, tf.float32), shape), 1.0)
        counts = tf.sparse.SparseTensor(self.counts_indices, self.counts_values, [self.n_target, self.n_items + 1])
        wide = tf.transpose(tf.sparse.sparse_dense_matmul(counts, hot, adjoint_b=True))
        return self.alpha * tf.math.log1p(wide)

    def model_scores(self, user: dict[str, tf.Tensor]) -> tf.Tensor:
        """(B, n_target) the two-tower's scores (query · item vectors, plus the wide term and prior)."""
        scores = tf.matmul(user["query"], self.target_vectors, transpose_b=True)
        if self.wide:
            scores += self.wide_scores(user["history"]) + self.item_prior[None, :]
        return scores

    def owned_columns(self, user: dict[str, tf.Tensor], history: tf.Tensor) -> tf.Tensor:
        """(B, 2) catalogue (row, column) pairs the user has: their model items, and any catalogue id the request
        names (an item a reindex added, unknown to the model)."""
        requested = tf.cast(self.catalogue_rows.lookup(history), tf.int32) - 1
        column = tf.concat([tf.gather(self.target_column, user["owned"]), requested], axis=1)
        seen = tf.where(column >= 0)
        return tf.stack([tf.cast(seen[:, 0], tf.int32), tf.gather_nd(column, seen)], axis=1)

    @tf.function(input_signature=REQUEST)
    def serve(self, user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        user = self.encode(user_id, history)
        usable = user["usable"]
        scores = self.model_scores(user)
        fallback = tf.broadcast_to(self.popularity[None, :], tf.shape(scores))
        scores = tf.where(usable[:, None], scores, fallback)
        # never recommend what the user has (model items), nor any catalogue item the request names
        cells = self.owned_columns(user, history)
        scores = tf.tensor_scatter_nd_update(
            scores, cells, tf.fill(tf.shape(cells)[:1], tf.constant(-np.inf, tf.float32))
        )
        kk = tf.clip_by_value(tf.reduce_max(tf.concat([k, [1]], 0)), 1, self.n_target)
        top = tf.math.top_k(scores, k=kk)
        return {
            "item_ids": tf.gather(self.target_ids, top.indices),
            "scores": top.values,
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
        user = self.encode(user_id, history)
        out = {"query": user["query"], "usable": user["usable"]}
        if self.wide:
            out["wide"] = self.wide_scores(user["history"])
        return out

    @tf.function(input_signature=[])
    def candidates(self) -> dict[str, tf.Tensor]:
        """Signature ``candidates``: every catalogue item's id, vector and training popularity (and, for a wide &
        deep model, its learned ``prior``)."""
        out = {
            "item_ids": tf.identity(self.target_ids),
            "vectors": tf.identity(self.target_vectors),
            "popularity": tf.identity(self.popularity),
        }
        if self.wide:
            out["prior"] = tf.identity(self.item_prior)
        return out

    def _recommend(self, user_id: tf.Tensor, history: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        """Signature ``recommend`` (``self.recommend``, made only with a retrieve → rank stage): what
        ``serving_default`` takes and returns, scored by the shipped ``transfer`` (retrieve → rank in this graph)."""
        stage = self.retrieve_rank
        user = self.encode(user_id, history)
        usable = user["usable"]
        cells = self.owned_columns(user, history)
        batch = tf.shape(user_id, out_type=tf.int64)[0]
        mine = tf.scatter_nd(
            tf.cast(cells, tf.int64), tf.ones(tf.shape(cells)[:1], tf.int32), tf.stack([batch, self.n_target])
        )
        mine = mine > 0
        # the user's source items, multi-hot over W's rows
        source = tf.gather(stage.source_column, user["owned"])
        found = tf.where(source >= 0)
        pairs = tf.stack([found[:, 0], tf.cast(tf.gather_nd(source, found), tf.int64)], axis=1)
        hot = tf.scatter_nd(pairs, tf.ones(tf.shape(pairs)[:1], tf.float64), tf.stack([batch, stage.spec.n_source]))
        hot = tf.minimum(hot, 1.0)
        scores = stage.scores(self.model_scores(user), hot, mine)
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

    def signatures(self) -> dict[str, object]:
        out = {"serving_default": self.serve, "query": self.user_query, "candidates": self.candidates}
        if self.has_recommend:
            out["recommend"] = self.recommend
        return out

    @property
    def warmup_signatures(self) -> tuple[str, ...]:
        """The signatures TF Serving warms up on load (they take the same inputs)."""
        return ("serving_default", "recommend") if self.has_recommend else ("serving_default",)


class RetrievalServable(CatalogueRetrieval):
    """``xcat_retrieval`` of a trained model: its encoder and every target item (and, with ``retrieve_rank``,
    the ``recommend`` signature)."""

    def __init__(self, model: XcatModel, space: FeatureSpace, retrieve_rank: RetrieveRank | None = None) -> None:
        catalogue = Catalogue.from_model(model, space)
        stage = None
        if retrieve_rank is not None:
            stage, catalogue.rank = stage_of(retrieve_rank, space)
        super().__init__(RetrievalEncoder(model, space), catalogue, stage)


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
        self.fingerprint = tf.Variable(model_fingerprint(model), trainable=False, name="model_fingerprint")
        self.vectorize = tf_keras.layers.TextVectorization(
            output_sequence_length=space.item_tokens.shape[1], vocabulary=space.vocabulary[2:]
        )
        self.vector_dims = tuple(model.item_tower.vector_columns.values())
        inputs = [
            tf.TensorSpec([None], tf.string, name="item_id"),
            tf.TensorSpec([None], tf.string, name="category"),
            tf.TensorSpec([None], tf.string, name="text"),
        ]
        if self.vector_dims:  # the signature gains the vectors input only when the model has vectors
            vectors = tf.TensorSpec([None, sum(self.vector_dims)], tf.float32, name="vectors")
            self.serve = tf.function(self._serve_vectors, input_signature=[*inputs, vectors])
        else:
            self.serve = tf.function(self._serve, input_signature=inputs)

    @property
    def model(self) -> XcatModel:
        return self._held.model

    def features(self, item_id: tf.Tensor, category: tf.Tensor, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {
            "item": tf.cast(self.items.lookup(item_id), tf.int32),
            "category": tf.cast(self.categories.lookup(category), tf.int32),
            "tokens": tf.cast(self.vectorize(text), tf.int32),
        }

    def _serve(self, item_id: tf.Tensor, category: tf.Tensor, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"embedding": self.model.item_tower(self.features(item_id, category, text))}

    def _serve_vectors(
        self, item_id: tf.Tensor, category: tf.Tensor, text: tf.Tensor, vectors: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        blocks, masks, start = [], [], 0
        for dim in self.vector_dims:  # per column: all finite = the item has this vector, else zeros and mask 0
            block = vectors[:, start : start + dim]
            start += dim
            present = tf.reduce_all(tf.math.is_finite(block), axis=1)
            blocks.append(tf.where(present[:, None], block, tf.zeros_like(block)))
            masks.append(tf.cast(present, tf.float32))
        features = self.features(item_id, category, text)
        features["vectors"] = tf.concat(blocks, axis=1)
        features["vector_mask"] = tf.stack(masks, axis=1)
        return {"embedding": self.model.item_tower(features)}


SERVABLES = {
    "xcat_retrieval": RetrievalServable,
    "xcat_ranking": RankingServable,
    "xcat_item_tower": ItemTowerServable,
}
