"""``lazy_adam``: equal to Adam where every row gets a gradient; rows without one stay exactly as they were."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras

from tfrec_xcat.training.optimizers import LazyAdam


def _run(optimizer: tf_keras.optimizers.Optimizer, steps: list[np.ndarray], dense_too: bool = True) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    table = tf.Variable(rng.normal(size=(6, 3)).astype(np.float32))
    dense = tf.Variable(rng.normal(size=(3, 2)).astype(np.float32))
    for ids in steps:
        with tf.GradientTape() as tape:
            rows = tf.gather(table, tf.constant(ids))  # sparse gradient for the table
            loss = tf.reduce_sum(tf.square(rows @ dense - 1.0))
        grads = tape.gradient(loss, [table, dense])
        assert isinstance(grads[0], tf.IndexedSlices)
        optimizer.apply_gradients(zip(grads, [table, dense], strict=True))
    return [table.numpy(), dense.numpy()]


def test_equals_adam_when_every_row_is_touched() -> None:
    steps = [np.array([0, 1, 2, 3, 4, 5, 2, 2]), np.array([5, 4, 3, 2, 1, 0]), np.array([1, 0, 3, 2, 5, 4, 4])]
    lazy = _run(LazyAdam(0.05), steps)
    adam = _run(tf_keras.optimizers.Adam(0.05), steps)
    for a, b in zip(lazy, adam, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_untouched_rows_do_not_move() -> None:
    start = _run(LazyAdam(0.05), [])[0]
    steps = [np.array([0, 1]), np.array([1, 2]), np.array([0, 2, 2])]
    lazy = _run(LazyAdam(0.05), steps)[0]
    adam = _run(tf_keras.optimizers.Adam(0.05), steps)[0]
    np.testing.assert_array_equal(lazy[3:], start[3:])  # rows 3-5 never had a gradient
    assert not np.allclose(lazy[:3], start[:3])
    # plain Adam keeps moving row 0 on the step that does not look it up (its momentum is not zero): lazy does not
    assert not np.allclose(lazy[:3], adam[:3])
