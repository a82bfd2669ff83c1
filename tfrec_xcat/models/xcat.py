"""``XcatModel``: the two-tower retrieval + ranking model with a gradient-reversal domain discriminator.

Each training example is (user, positive item, target category[, rating]). The user's history comes from the
training-only history table, without the positive item; with probability ``cold_history_dropout`` the example
also loses its target-category history, so the model learns to serve users who have only source history.

Tasks (weights in :class:`ModelSpec`):
- retrieval: ``tfrs.tasks.Retrieval``, in-batch softmax with temperature, log-Q correction, accidental hits removed;
- ranking: ``tfrs.tasks.Ranking`` with BCE on positives vs in-batch negatives, plus MSE on ratings when present;
- domain: a discriminator on item vectors behind a gradient-reversal layer, fed source and target items in equal
  numbers; its accuracy near 0.5 means the item representations of the two categories are aligned.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras

from tfrec_xcat.features.memorisation import memorisation_scores
from tfrec_xcat.features.space import FeatureSpace
from tfrec_xcat.models.layers import GradientReversal, Memorisation, grl_lambda, unseen_prior
from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.models.towers import ItemFeatures, ItemTower, TowerEnsemble, UserTower


class XcatModel(tfrs.Model):
    """Retrieval + ranking + domain adaptation over a :class:`FeatureSpace`."""

    def __init__(self, space: FeatureSpace, spec: ModelSpec, *, with_ratings: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.with_ratings = with_ratings
        n_cat = len(space.categories)
        vectors = spec.use_vectors and space.item_vectors is not None
        self.item_features = ItemFeatures(
            space.item_category,
            space.item_tokens,
            space.item_vectors if vectors else None,
            space.item_vector_mask if vectors else None,
            name="item_features",
        )

        def item_tower(name: str) -> ItemTower:
            return ItemTower(
                space.n_items,
                n_cat,
                len(space.vocabulary),
                spec,
                vector_columns=space.vector_columns if vectors else None,
                token_vectors=space.token_vectors,
                name=name,
            )

        if spec.towers == 1:
            self.item_tower = item_tower("item_tower")
            self.user_tower = UserTower(
                self.item_tower, self.item_features, space.n_users, n_cat, spec, name="user_tower"
            )
            self.item_towers = [self.item_tower]
        else:  # each user tower reads its own item tower; one concatenated vector per side (TowerEnsemble)
            self.item_towers = [item_tower(f"item_tower_{k}") for k in range(spec.towers)]
            users = [
                UserTower(tower, self.item_features, space.n_users, n_cat, spec, name=f"user_tower_{k}")
                for k, tower in enumerate(self.item_towers)
            ]
            self.item_tower = TowerEnsemble(self.item_towers, name="item_tower")
            self.user_tower = TowerEnsemble(users, scale=1.0 / spec.towers, name="user_tower")
        self.history_table = tf.constant(space.history, dtype=tf.int32)
        self.source_items = tf.constant(space.items_of(space.source), dtype=tf.int32)
        self.target_items = tf.constant(space.items_of(space.target), dtype=tf.int32)
        self.target_category_index = space.category_index(space.target)

        # Losses are summed here and divided by the GLOBAL number of examples in compute_loss: a mean over the
        # global batch, so task weights are comparable and gradients are right when replicas sum them.
        sum_ = tf_keras.losses.Reduction.SUM
        self.retrieval = tfrs.tasks.Retrieval(
            loss=tf_keras.losses.CategoricalCrossentropy(from_logits=True, reduction=sum_),
            temperature=spec.temperature,
            remove_accidental_hits=True,
        )
        self.ranking_head = tf_keras.Sequential(
            [tf_keras.layers.Dense(64, activation="relu"), tf_keras.layers.Dense(2)], name="ranking_head"
        )
        self.ranking = tfrs.tasks.Ranking(
            loss=tf_keras.losses.BinaryCrossentropy(from_logits=True, reduction=sum_),
            metrics=[tf_keras.metrics.AUC(from_logits=True, name="ranking_auc")],
        )
        self.rating = tfrs.tasks.Ranking(
            loss=tf_keras.losses.MeanSquaredError(reduction=sum_),
            metrics=[tf_keras.metrics.RootMeanSquaredError(name="rmse")],
        )
        self.grl = GradientReversal(0.0, name="grl")
        # steps in the current training stage; λ follows the stage's progress (set by the trainer)
        self.stage_steps = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="stage_steps")
        self.discriminator = (
            tf_keras.Sequential(
                [tf_keras.layers.Dense(64, activation="relu"), tf_keras.layers.Dense(1)], name="domain_discriminator"
            )
            if spec.grl and spec.grl_weight > 0  # a zero-weight discriminator would get no gradients
            else None
        )
        self.domain_accuracy = tf_keras.metrics.BinaryAccuracy(threshold=0.0, name="domain_accuracy")
        # wide & deep: a learned co-occurrence term + item prior added to the towers' logits
        self.memorisation = None
        self.memorisation_counts: sp.csr_matrix | None = None
        self.history_array = space.history
        if spec.memorisation:
            if space.memorisation is None:
                raise ValueError("ModelSpec.memorisation is on but the feature space has no memorisation counts")
            self.memorisation_counts = space.memorisation.tocsr()
            keys, values = np.zeros(0, np.int64), np.zeros(0, np.float32)
            if space.memorisation_train is not None:  # training: the leave-one-out scores, looked up per pair
                target_items = space.items_of(space.target)
                coo = space.memorisation_train.tocoo()
                keys = coo.row.astype(np.int64) * (space.n_items + 1) + target_items[coo.col].astype(np.int64)
                values = coo.data
            self.memorisation = Memorisation(keys, values, space.n_items, name="memorisation")
            self.retrieval_loss = tf_keras.losses.CategoricalCrossentropy(from_logits=True, reduction=sum_)

    def build_variables(self) -> None:
        """Create every weight by running each sub-network once (no task metrics are touched, so this is safe
        under any distribution strategy); needed before restoring checkpoints into the model."""
        users = tf.constant([1, 1], tf.int32)
        query = self.query(users, tf.fill([2], self.target_category_index))
        items = self.embed_items(tf.constant([1, 1], tf.int32))
        if self.memorisation is not None:
            self.memorisation(users, tf.constant([1, 1], tf.int32))
        self.ranking_head(tf.concat([query, items, query * items], axis=-1))
        if self.discriminator is not None:
            self.discriminator(items)
        self.built = True

    # ------------------------------------------------------------------------------------ helpers
    def user_history(
        self, users: tf.Tensor, positives: tf.Tensor | None, target: tf.Tensor, training: bool
    ) -> tf.Tensor:
        """The training-only history of each user, without the positive item (and maybe its target block)."""
        hist = tf.gather(self.history_table, tf.cast(users, tf.int32))
        if positives is not None:
            hist = tf.where(hist == tf.cast(positives, tf.int32)[:, None], 0, hist)
        if training and self.spec.cold_history_dropout > 0:
            drop = tf.random.uniform(tf.shape(users)) < self.spec.cold_history_dropout
            in_target = tf.gather(self.item_features.item_category, hist) == tf.cast(target, tf.int32)[:, None]
            hist = tf.where(drop[:, None] & in_target, 0, hist)
        return hist

    def query(
        self, users: tf.Tensor, target: tf.Tensor, positives: tf.Tensor | None = None, training: bool = False
    ) -> tf.Tensor:
        hist = self.user_history(users, positives, target, training)
        return self.user_tower({"user": users, "history": hist, "target_category": target}, training=training)

    def embed_items(self, items: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.item_tower(self.item_features(items), training=training)

    def ranking_logits(self, query: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """(click logit, rating) for query/item-vector pairs."""
        return self.ranking_head(tf.concat([query, items, query * items], axis=-1))

    # ------------------------------------------------------------------------------------- loss
    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        users, items = features["user"], features["item"]
        target = features["target_category"]
        query = self.query(users, target, positives=items, training=training)
        candidates = self.embed_items(items, training=training)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        per_example = 1.0 / (tf.cast(tf.shape(items)[0], tf.float32) * replicas)
        probability = features.get("sampling_probability") if self.spec.logq_correction else None
        # every member of a tower ensemble has its own retrieval loss, as if it were trained alone
        if isinstance(self.user_tower, TowerEnsemble):
            pairs = list(zip(self.user_tower.parts(query), self.item_tower.parts(candidates), strict=True))
        else:
            pairs = [(query, candidates)]
        wide = self.memorisation(users, items) if self.memorisation is not None else None
        loss = tf.constant(0.0)
        for member_query, member_candidates in pairs:
            if wide is None:
                loss += per_example * self.retrieval(
                    member_query,
                    member_candidates,
                    candidate_sampling_probability=probability,
                    candidate_ids=tf.cast(items, tf.int32),
                    compute_metrics=not training,
                )
                continue
            # the same in-batch softmax, with the wide term added to every (user, candidate) logit
            logits = tf.matmul(member_query, member_candidates, transpose_b=True) / self.spec.temperature + wide
            labels = tf.eye(tf.shape(logits)[0], tf.shape(logits)[1])
            if probability is not None:  # log-Q correction on the training logits only
                logits = tfrs.layers.loss.SamplingProbablityCorrection()(logits, probability)
            logits = tfrs.layers.loss.RemoveAccidentalHits()(labels, logits, tf.cast(items, tf.int32))
            loss += per_example * self.retrieval_loss(labels, logits)
        if self.spec.ranking_weight > 0:
            negatives = tf.roll(candidates, shift=1, axis=0)
            pos = self.ranking_logits(query, candidates)
            neg = self.ranking_logits(query, negatives)
            labels = tf.concat([tf.ones_like(pos[:, :1]), tf.zeros_like(neg[:, :1])], axis=0)
            rank_loss = 0.5 * self.ranking(labels, tf.concat([pos[:, :1], neg[:, :1]], axis=0))
            if self.with_ratings and "rating" in features:
                rank_loss += self.rating(tf.cast(features["rating"], tf.float32)[:, None], pos[:, 1:])
            loss += self.spec.ranking_weight * per_example * rank_loss
        if self.spec.grl and self.spec.grl_weight > 0:
            lam = None
            if training and self.optimizer is not None:
                progress = tf.cast(self.optimizer.iterations, tf.float32) / self.stage_steps
                lam = grl_lambda(progress, self.spec.grl_lambda_max, self.spec.grl_schedule)
            n = tf.maximum(tf.shape(items)[0] // 2, 1)
            src = tf.gather(self.source_items, tf.random.uniform([n], 0, tf.shape(self.source_items)[0], tf.int32))
            tgt = tf.gather(self.target_items, tf.random.uniform([n], 0, tf.shape(self.target_items)[0], tf.int32))
            vectors = self.embed_items(tf.concat([src, tgt], axis=0), training=training)
            logits = self.discriminator(self.grl(vectors, lam))
            labels = tf.concat([tf.zeros([n, 1]), tf.ones([n, 1])], axis=0)
            domain_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            self.domain_accuracy.update_state(labels, logits)
            loss += self.spec.grl_weight * domain_loss / replicas
        return loss

    def settle_unseen_items(self, counts: np.ndarray) -> int:
        """Score the items no training interaction reached as ``tfrec-xcat reindex`` scores a new item.

        ``counts`` (n_items + 1,) are the training interactions per model item index. An unseen item's id vector
        was never a positive's or a history item's (only the domain discriminator's samples reach it), so it gets
        the OOV row, which id dropout trains as "an item known by its content only" and which ``reindex`` gives an
        item the model does not know; an unseen target item's prior never moved from its zero initialisation,
        which sits above or below the learned priors by chance, so it gets the mean prior of the least popular
        seen target items (:func:`~tfrec_xcat.models.layers.unseen_prior`). Returns how many items were unseen."""
        counts = np.asarray(counts)
        if counts.shape != (self.item_towers[0].id_embedding.input_dim,):
            raise ValueError(f"counts must have one entry per model item index (OOV first), got shape {counts.shape}")
        unseen = np.flatnonzero(counts[1:] == 0) + 1
        if not len(unseen):
            return 0
        if self.spec.use_ids:
            for tower in self.item_towers:
                table = tower.id_embedding.embeddings
                values = table.numpy()
                values[unseen] = values[0]
                table.assign(values)
        if self.memorisation is not None:
            targets = self.target_items.numpy()
            table = self.memorisation.prior.embeddings
            values = table.numpy()
            values[targets[counts[targets] == 0], 0] = unseen_prior(values[targets, 0], counts[targets])
            table.assign(values)
        return len(unseen)

    # ---------------------------------------------------------------------------------- scoring
    def target_item_vectors(self, batch: int = 8192) -> np.ndarray:
        """Vectors of every target item (evaluator column order)."""
        items = self.target_items.numpy()
        return np.concatenate([self.embed_items(items[i : i + batch]).numpy() for i in range(0, len(items), batch)])

    def row_scorer(self, items: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
        """Scores for the evaluator: its user rows (model index - 1, see FeatureSpace) × every target item
        (``items``: the target item vectors, when already computed)."""
        items = self.target_item_vectors() if items is None else items

        if self.memorisation is None:

            def scores(rows: np.ndarray) -> np.ndarray:
                return self.user_vectors(np.asarray(rows, dtype=np.int32) + 1) @ items.T

            return scores

        def wide_and_deep(rows: np.ndarray) -> np.ndarray:
            users = np.asarray(rows, dtype=np.int32) + 1
            return self.user_vectors(users) @ items.T / self.spec.temperature + self.wide_scores(users)

        return wide_and_deep

    def wide_scores(self, users: np.ndarray) -> np.ndarray:
        """The memorisation term of users (model indices) for every target item, from their history (exact)."""
        assert self.memorisation is not None and self.memorisation_counts is not None
        alpha = float(self.memorisation.alpha.numpy())
        prior = self.memorisation.prior.embeddings.numpy()[self.target_items.numpy(), 0]
        counts = memorisation_scores(self.history_array[users], self.memorisation_counts).toarray()
        return alpha * np.log1p(counts) + prior

    def user_vectors(self, users: np.ndarray, batch: int = 2048) -> np.ndarray:
        """Target queries of users (model indices) from their full training history."""
        out = []
        for i in range(0, len(users), batch):
            u = tf.constant(users[i : i + batch], dtype=tf.int32)
            out.append(self.query(u, tf.fill(tf.shape(u), self.target_category_index)).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.spec.embedding_dim * self.spec.towers), np.float32)
