"""``lazy_adam``: Adam whose sparse (embedding) updates touch only the rows in the batch.

tf-keras' Adam turns an embedding's sparse gradient into dense work: every step it decays the moments of every
row and rewrites the whole table. With id embeddings for every user and item that dense work dominates a CPU
step. Here a sparse gradient updates the moments and weights of the rows it names and leaves the others as
they are (the usual "lazy" Adam); dense gradients take tf-keras' own Adam update.
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras


class LazyAdam(tf_keras.optimizers.Adam):
    """Adam with row-wise updates for ``tf.IndexedSlices`` gradients (embedding tables)."""

    def update_step(self, gradient: tf.Tensor | tf.IndexedSlices, variable: tf.Variable) -> None:
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        key = self._var_key(variable)
        m = self._momentums[self._index_dict[key]]
        v = self._velocities[self._index_dict[key]]
        rows, position = tf.unique(gradient.indices)  # a row looked up twice in the batch is updated once
        grad = tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(rows)[0])
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * grad
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(grad)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))
        return None
