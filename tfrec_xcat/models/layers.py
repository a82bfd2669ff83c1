"""Small layers: gradient reversal (DANN) and its λ schedule, masked pooling."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tf_keras


@tf.custom_gradient
def reverse_gradient(x: tf.Tensor, lam: tf.Tensor) -> tuple[tf.Tensor, object]:
    """Identity forward; −λ·grad backward (and no gradient for λ)."""

    def grad(upstream: tf.Tensor) -> tuple[tf.Tensor, None]:
        return -lam * upstream, None

    return tf.identity(x), grad


class GradientReversal(tf_keras.layers.Layer):
    """Gradient-reversal layer. λ is the call's ``lam`` tensor (a schedule) or, if None, the fixed ``lam``."""

    def __init__(self, lam: float = 1.0, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.lam = tf.Variable(lam, trainable=False, dtype=tf.float32, name="grl_lambda")

    def call(self, x: tf.Tensor, lam: tf.Tensor | None = None) -> tf.Tensor:
        return reverse_gradient(x, tf.cast(self.lam if lam is None else lam, x.dtype))


def dann_lambda(progress: float, lam_max: float = 1.0, schedule: str = "dann") -> float:
    """λ at training progress ``p`` in [0, 1]: constant, or the DANN ramp 2/(1+e^(−10p))−1."""
    if schedule == "constant":
        return lam_max
    p = min(max(progress, 0.0), 1.0)
    return lam_max * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def grl_lambda(progress: tf.Tensor, lam_max: float, schedule: str) -> tf.Tensor:
    """In-graph :func:`dann_lambda` (progress is a float tensor)."""
    if schedule == "constant":
        return tf.constant(lam_max, tf.float32)
    p = tf.clip_by_value(progress, 0.0, 1.0)
    return lam_max * (2.0 / (1.0 + tf.exp(-10.0 * p)) - 1.0)


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 of ``values`` (B, T, D) where ``mask`` (B, T) is true; zeros where nothing is."""
    m = tf.cast(mask, values.dtype)[..., None]
    return tf.reduce_sum(values * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


def unseen_prior(prior: np.ndarray, popularity: np.ndarray) -> float:
    """The prior an item with no training interaction gets: the mean learned prior of the items with the fewest
    training interactions above none (of all of them when none has any).

    The learned prior follows popularity; an unseen item was never a positive, so it gets what the least popular
    items got rather than its untrained initial value or the average item's prior."""
    prior, popularity = np.asarray(prior, np.float64), np.asarray(popularity)
    if not len(prior):
        return 0.0
    seen = popularity > 0
    least = seen & (popularity == popularity[seen].min()) if seen.any() else np.ones(len(prior), bool)
    return float(prior[least].mean())


class Memorisation(tf_keras.layers.Layer):
    """The wide part of a wide & deep retrieval score: ``alpha · log(1 + c(u, i)) + prior(i)``.

    ``c(u, i)`` is a user's co-occurrence score for a target item (:mod:`tfrec_xcat.features.memorisation`),
    looked up in a stock hash table keyed by ``user · stride + item``; ``alpha`` and the per-item prior are
    learned with the towers. Items without a score (and every non-target item) get ``c = 0``.
    """

    def __init__(self, keys: np.ndarray, values: np.ndarray, n_items: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stride = n_items + 1
        if len(keys) == 0:  # a model loaded for export or scoring: no training table, one key that is never used
            keys, values = np.array([-1], np.int64), np.zeros(1, np.float32)
        init = tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.int64), tf.constant(np.log1p(values).astype(np.float32), tf.float32)
        )
        self.table = tf.lookup.StaticHashTable(init, default_value=0.0)
        self.alpha = self.add_weight(name="alpha", shape=(), initializer=tf_keras.initializers.Constant(1.0))
        self.prior = tf_keras.layers.Embedding(self.stride, 1, embeddings_initializer="zeros", name="item_prior")

    def call(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """(B,) users × (C,) items → (B, C) wide scores."""
        keys = tf.cast(users, tf.int64)[:, None] * self.stride + tf.cast(items, tf.int64)[None, :]
        return self.alpha * self.table.lookup(keys) + tf.transpose(self.prior(tf.cast(items, tf.int32)))
