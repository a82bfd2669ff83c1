"""The ranking stage: a TFRS ranking model that re-orders a user's candidate list from cross features.

Input: per user a list of L candidates with F features each (``[U, L, F]``) and a mask of real candidates;
output: one logit per candidate. Trained listwise: a softmax over each user's candidate list against the
normalised relevance labels (``tfrs.tasks.Ranking`` with a categorical cross-entropy), so the loss is about the
order within a list, not absolute click probabilities.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

MASKED = -1e9


class ListwiseRanker(tfrs.Model):
    """MLP scorer over candidate features, trained with a listwise softmax loss."""

    def __init__(self, hidden: list[int], n_features: int, seed: int = 0) -> None:
        super().__init__()
        tf_keras.utils.set_random_seed(seed)
        self.n_features = n_features
        self.normalize = tf_keras.layers.Normalization(axis=-1, name="feature_norm")
        self.scorer = tf_keras.Sequential(
            [*(tf_keras.layers.Dense(w, activation="relu") for w in hidden), tf_keras.layers.Dense(1)],
            name="candidate_scorer",
        )
        self.task = tfrs.tasks.Ranking(loss=tf_keras.losses.CategoricalCrossentropy(from_logits=True))

    def call(self, features: tf.Tensor) -> tf.Tensor:
        return self.scorer(self.normalize(features))[..., 0]

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        logits = self(inputs["features"], training=training)
        logits = tf.where(inputs["mask"], logits, MASKED)
        labels = tf.cast(inputs["labels"], tf.float32)
        labels = labels / tf.maximum(tf.reduce_sum(labels, axis=1, keepdims=True), 1.0)
        return self.task(labels=labels, predictions=logits, compute_metrics=False)

    def predict_lists(self, features: np.ndarray, batch: int = 1024) -> np.ndarray:
        out = [self(tf.constant(features[i : i + batch])).numpy() for i in range(0, len(features), batch)]
        return np.concatenate(out) if out else np.zeros(features.shape[:2], np.float32)


class RankerEnsemble:
    """Several listwise rankers trained alike from different seeds; a candidate's logit is their mean (the ranking
    stage learns from a few hundred users, so one ranker's order varies with its seed)."""

    def __init__(self, members: list[ListwiseRanker]) -> None:
        self.members = members

    def predict_lists(self, features: np.ndarray, batch: int = 1024) -> np.ndarray:
        return np.mean([member.predict_lists(features, batch) for member in self.members], axis=0)


def fit_listwise(
    ranker: ListwiseRanker,
    features: np.ndarray,
    labels: np.ndarray,
    mask: np.ndarray,
    *,
    epochs: int,
    patience: int,
    learning_rate: float,
    validate: Callable[[], float],
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[float, int]:
    """Train ``ranker`` epoch by epoch, keep the weights of the best ``validate()``; returns (best, its epoch)."""
    ranker.normalize.adapt(features[mask])
    ranker.compile(optimizer=tf_keras.optimizers.Adam(learning_rate))
    data = tf.data.Dataset.from_tensor_slices({"features": features, "labels": labels.astype(np.float32), "mask": mask})
    data = data.shuffle(len(features), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    best, best_epoch, best_weights, wait = -np.inf, 0, None, 0
    for epoch in range(1, epochs + 1):
        ranker.fit(data, epochs=1, verbose=0)
        value = float(validate())
        if value > best:
            best, best_epoch, best_weights, wait = value, epoch, ranker.get_weights(), 0
        else:
            wait += 1
            if wait >= patience:
                break
    if best_weights is not None:
        ranker.set_weights(best_weights)
    return best, best_epoch
