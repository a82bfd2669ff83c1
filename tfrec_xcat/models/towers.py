"""The two towers. One item tower (trained on the source first) embeds every item, in candidates and histories.

``ItemTower``: item id (OOV-safe, index 0) + category + mean of title-token embeddings (+ a dense projection of
the item's precomputed vectors and their mask, when the feature space has any) → MLP → L2-normalised vector. With
the id replaced by 0 it embeds a new item from its content alone. The token embeddings may start from a pretrained
table (:mod:`tfrec_xcat.features.text_pretraining`).

``UserTower``: user id (OOV-safe) + the user's history in every category, each history item encoded by the SAME
item tower plus an embedding of its category, pooled by mean, attention (query = the target category) or a GRU,
→ MLP → one output head per target category → L2-normalised query. A user with only source history still gets a
target query: that is the cold-start path.

``TowerEnsemble``: K such towers side by side, their outputs concatenated (the user side scaled by 1/K), so the
dot product of a user and an item vector is the members' mean score: an ensemble that is still one two-tower.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

from tfrec_xcat.models.layers import masked_mean
from tfrec_xcat.models.spec import ModelSpec


def _mlp(widths: list[int], name: str) -> tf_keras.Sequential:
    return tf_keras.Sequential([tf_keras.layers.Dense(w, activation="relu") for w in widths], name=name)


class ItemFeatures(tf_keras.layers.Layer):
    """Item index → its features (category, tokens, and vectors with their mask when given), from fixed tables.

    The vector tables are non-trainable variables rather than constants: they can be large, and a SavedModel
    keeps variables out of its graph."""

    def __init__(
        self,
        item_category: np.ndarray,
        item_tokens: np.ndarray,
        item_vectors: np.ndarray | None = None,
        item_vector_mask: np.ndarray | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(trainable=False, **kwargs)
        self.item_category = tf.constant(item_category, dtype=tf.int32)
        self.item_tokens = tf.constant(item_tokens, dtype=tf.int32)
        self.item_vectors = self.item_vector_mask = None
        if item_vectors is not None:
            if item_vector_mask is None:
                raise ValueError("item vectors need their mask")
            self.item_vectors = tf.Variable(item_vectors, dtype=tf.float32, trainable=False, name="item_vectors")
            self.item_vector_mask = tf.Variable(
                item_vector_mask, dtype=tf.float32, trainable=False, name="item_vector_mask"
            )

    def call(self, items: tf.Tensor) -> dict[str, tf.Tensor]:
        items = tf.cast(items, tf.int32)
        out = {
            "item": items,
            "category": tf.gather(self.item_category, items),
            "tokens": tf.gather(self.item_tokens, items),
        }
        if self.item_vectors is not None:
            out["vectors"] = tf.gather(self.item_vectors, items)
            out["vector_mask"] = tf.gather(self.item_vector_mask, items)
        return out


class ItemTower(tf_keras.Model):
    """Item features → normalised ``embedding_dim`` vector (see the module docstring)."""

    def __init__(
        self,
        n_items: int,
        n_categories: int,
        vocab_size: int,
        spec: ModelSpec,
        *,
        vector_columns: dict[str, int] | None = None,
        token_vectors: np.ndarray | None = None,
        **kwargs: object,
    ) -> None:
        """``vector_columns``: the feature space's vector columns and lengths (fed as ``vectors`` + ``vector_mask``);
        ``token_vectors``: a pretrained initial token table, (vocab_size + 2, text_dim)."""
        super().__init__(**kwargs)
        self.spec = spec
        self.id_embedding = tf_keras.layers.Embedding(n_items + 1, spec.embedding_dim, name="item_id")
        self.category_embedding = tf_keras.layers.Embedding(n_categories + 1, 16, name="item_category")
        init: str | tf_keras.initializers.Initializer = "uniform"
        if token_vectors is not None:
            expected = (vocab_size + 2, spec.text_dim)
            if token_vectors.shape != expected:
                raise ValueError(f"pretrained token table has shape {token_vectors.shape}, expected {expected}")
            init = tf_keras.initializers.Constant(token_vectors)
        self.token_embedding = tf_keras.layers.Embedding(
            vocab_size + 2, spec.text_dim, embeddings_initializer=init, name="item_tokens"
        )
        self.vector_columns = dict(vector_columns or {}) if spec.use_vectors else {}
        self.vector_projection = (
            tf_keras.layers.Dense(spec.embedding_dim, name="item_vectors") if self.vector_columns else None
        )
        self.hidden = _mlp(spec.tower_layers, "item_hidden")
        self.project = tf_keras.layers.Dense(spec.embedding_dim, name="item_out")

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        items = tf.cast(features["item"], tf.int32)
        if training and self.spec.id_dropout > 0:
            keep = tf.random.uniform(tf.shape(items)) >= self.spec.id_dropout
            items = tf.where(keep, items, tf.zeros_like(items))
        parts = [self.category_embedding(features["category"])]
        if self.spec.use_ids:
            parts.append(self.id_embedding(items))
        if self.spec.use_text:
            tokens = tf.cast(features["tokens"], tf.int32)
            parts.append(masked_mean(self.token_embedding(tokens), tokens > 0))
        if self.vector_projection is not None:
            parts.append(self.vector_projection(tf.cast(features["vectors"], tf.float32)))
            parts.append(tf.cast(features["vector_mask"], tf.float32))
        x = self.hidden(tf.concat(parts, axis=-1))
        return tf.math.l2_normalize(self.project(x), axis=-1)

    def top_layers(self) -> list[tf_keras.layers.Layer]:
        """The layers a ``partial`` transfer fine-tunes: the last hidden layer and the output projection."""
        return [*self.hidden.layers[-1:], self.project]


class UserTower(tf_keras.Model):
    """(user, history, target category) → normalised query (see the module docstring)."""

    def __init__(
        self,
        item_tower: ItemTower,
        item_features: ItemFeatures,
        n_users: int,
        n_categories: int,
        spec: ModelSpec,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.item_tower = item_tower
        self.item_features = item_features
        self.n_categories = n_categories
        d = spec.embedding_dim
        self.user_embedding = tf_keras.layers.Embedding(n_users + 1, d, name="user_id")
        self.history_category = tf_keras.layers.Embedding(n_categories + 1, d, name="history_category")
        self.target_category = tf_keras.layers.Embedding(n_categories + 1, d, name="target_category")
        if spec.pooling == "attention":
            self.attention_query = tf_keras.layers.Dense(d, name="attention_query")
        elif spec.pooling == "gru":
            self.gru = tf_keras.layers.GRU(d, name="history_gru")
        self.hidden = _mlp(spec.tower_layers, "user_hidden")
        self.heads = tf_keras.layers.Dense(d * n_categories, name="per_category_heads")

    def encode_history(self, history: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """Encode history item indices (B, T) with the shared item tower, each item once: (B, T, d), mask."""
        flat = tf.reshape(history, [-1])
        unique, position = tf.unique(flat)
        vectors = self.item_tower(self.item_features(unique), training=training)
        encoded = tf.reshape(tf.gather(vectors, position), [tf.shape(history)[0], tf.shape(history)[1], -1])
        categories = tf.gather(self.item_features.item_category, history)
        return encoded + self.history_category(categories), history > 0

    def pool(self, encoded: tf.Tensor, mask: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        if self.spec.pooling == "mean":
            return masked_mean(encoded, mask)
        if self.spec.pooling == "gru":
            return self.gru(encoded, mask=mask)
        query = self.attention_query(self.target_category(target))  # (B, d)
        logits = tf.einsum("btd,bd->bt", encoded, query) / tf.sqrt(float(self.spec.embedding_dim))
        logits = tf.where(mask, logits, tf.fill(tf.shape(logits), -1e9))
        weights = tf.nn.softmax(logits, axis=-1) * tf.cast(mask, logits.dtype)
        return tf.einsum("bt,btd->bd", weights, encoded)

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users = tf.cast(features["user"], tf.int32)
        history = tf.cast(features["history"], tf.int32)
        target = tf.cast(features["target_category"], tf.int32)
        encoded, mask = self.encode_history(history, training=training)
        pooled = self.pool(encoded, mask, target)
        count = tf.math.log1p(tf.reduce_sum(tf.cast(mask, tf.float32), axis=1, keepdims=True))
        parts = [pooled, self.target_category(target), count]
        if self.spec.use_ids:
            if training and self.spec.id_dropout > 0:
                users = tf.where(tf.random.uniform(tf.shape(users)) >= self.spec.id_dropout, users, 0)
            parts.append(self.user_embedding(users))
        x = self.hidden(tf.concat(parts, axis=-1))
        heads = tf.reshape(self.heads(x), [-1, self.n_categories, self.spec.embedding_dim])
        query = tf.gather(heads, tf.maximum(target - 1, 0), batch_dims=1)
        return tf.math.l2_normalize(query, axis=-1)


class TowerEnsemble(tf_keras.Model):
    """K item towers or K user towers as one: ``concat(member outputs) · scale``. With the user side at
    ``scale = 1/K`` and the item side at 1, a user · item dot product is the mean of the members' dot products."""

    def __init__(self, members: list[tf_keras.Model], scale: float = 1.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if not members:
            raise ValueError("a tower ensemble needs at least one member")
        self.members = list(members)
        self.scale = float(scale)

    @property
    def vector_columns(self) -> dict[str, int]:
        return self.members[0].vector_columns  # every member reads the same item features

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        out = tf.concat([member(features, training=training) for member in self.members], axis=-1)
        return out * self.scale if self.scale != 1.0 else out

    def parts(self, vectors: tf.Tensor) -> list[tf.Tensor]:
        """Each member's own (unscaled) output from this ensemble's output."""
        unscaled = vectors / self.scale if self.scale != 1.0 else vectors
        return tf.split(unscaled, len(self.members), axis=-1)
