"""``emcdr``: EMCDR-style baseline (Man et al., IJCAI 2017), built from TFRS parts.

1. Per-category embeddings: an ID-only two-tower (``tfrs.tasks.Retrieval``, in-batch softmax) trained separately
   on the source and on the target training interactions.
2. A mapping MLP from a user's source vector to their target vector, fitted (MSE) on overlap training users.
Both stages train with the ``[training]`` optimizer, learning rate and batch size (``[model]``: dimension and
temperature).
3. A cold-start user's target query is the mapped source vector; scores are its dot products with target items.
The mapping's training length is chosen on cold-start validation users.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.pipeline import PreparedSeed
from tfrec_xcat.recommender import Recommender
from tfrec_xcat.training.spec import TrainSpec
from tfrec_xcat.training.trainer import make_optimizer


class _IdTwoTower(tfrs.Model):
    def __init__(self, n_users: int, n_items: int, dim: int, temperature: float) -> None:
        super().__init__()
        self.users = tf_keras.layers.Embedding(n_users, dim)
        self.items = tf_keras.layers.Embedding(n_items, dim)
        self.task = tfrs.tasks.Retrieval(
            loss=tf_keras.losses.CategoricalCrossentropy(from_logits=True), temperature=temperature
        )

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        u = tf.math.l2_normalize(self.users(features["user"]), axis=-1)
        i = tf.math.l2_normalize(self.items(features["item"]), axis=-1)
        return self.task(u, i, compute_metrics=False)


def category_embeddings(
    frame: pd.DataFrame,
    users: pd.Index,
    items: pd.Index,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    epochs: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised (user, item) embeddings of one category's interactions (dimension, temperature, batch size,
    optimizer and learning rate from the configured ``[model]`` and ``[training]``)."""
    tf_keras.utils.set_random_seed(seed)
    model = _IdTwoTower(len(users), len(items), model_spec.embedding_dim, temperature=model_spec.temperature)
    model.compile(optimizer=make_optimizer(train_spec))
    batch = train_spec.batch_size
    feats = {
        "user": users.get_indexer(frame["user_id"]).astype(np.int32),
        "item": items.get_indexer(frame["item_id"]).astype(np.int32),
    }
    ds = tf.data.Dataset.from_tensor_slices(feats).shuffle(len(frame), seed=seed).batch(batch).prefetch(2)
    model.fit(ds, epochs=epochs, verbose=0)
    normalize = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)  # noqa: E731
    return normalize(model.users.embeddings.numpy()), normalize(model.items.embeddings.numpy())


class Emcdr(Recommender):
    grid: ClassVar[list[dict[str, Any]]] = [{}]

    def fit(self, prepared: PreparedSeed) -> None:
        model_spec, train_spec = prepared.config.model, prepared.config.training
        dim = model_spec.embedding_dim
        epochs = int(self.params.get("epochs", 8))
        m, split = prepared.m, prepared.split
        train = split.train
        users = m.users
        self.user_source, _ = category_embeddings(
            train[train["category"] == split.source],
            users,
            m.source_items,
            model_spec,
            train_spec,
            epochs,
            prepared.seed,
        )
        user_target, self.item_target = category_embeddings(
            train[train["category"] == split.target],
            users,
            m.target_items,
            model_spec,
            train_spec,
            epochs,
            prepared.seed + 1,
        )
        both = m.overlap_rows()
        tf_keras.utils.set_random_seed(prepared.seed)
        self.mapping = tf_keras.Sequential(
            [tf_keras.layers.Dense(2 * dim, activation="tanh"), tf_keras.layers.Dense(dim)], name="emcdr_mapping"
        )
        self.mapping.compile(optimizer=make_optimizer(train_spec), loss="mse")  # [training] optimizer, learning rate
        x, y = self.user_source[both], user_target[both]
        best, best_weights, stale = -np.inf, None, 0
        for _ in range(30):  # up to 300 epochs, validated every 10
            self.mapping.fit(x, y, epochs=10, batch_size=train_spec.batch_size, verbose=0)
            value = prepared.validate(self.score)
            self.history.append(value)
            if value > best:
                best, best_weights, stale = value, self.mapping.get_weights(), 0
            else:
                stale += 1
                if stale >= 2:
                    break
        if best_weights is not None:
            self.mapping.set_weights(best_weights)

    def score(self, rows: np.ndarray) -> np.ndarray:
        query = self.mapping(self.user_source[rows], training=False).numpy()
        return query @ self.item_target.T
