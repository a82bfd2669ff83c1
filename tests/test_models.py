"""Towers, gradient reversal, the cold-start path (no leak), checkpoint resume: small models on the small shop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfrec_xcat.data.load import load_shop
from tfrec_xcat.data.split import make_split
from tfrec_xcat.features.matrices import SplitMatrices
from tfrec_xcat.features.space import build_feature_space
from tfrec_xcat.models.layers import GradientReversal, dann_lambda, grl_lambda
from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.models.xcat import XcatModel
from tfrec_xcat.training.spec import TrainSpec
from tfrec_xcat.training.trainer import train

# the towers alone (the memorisation term needs the counts a PreparedSeed builds: tests/test_hybrid.py)
SPEC = ModelSpec(
    embedding_dim=16, tower_layers=[32], text_dim=16, history_per_category=8, max_tokens=8, memorisation=False
)


@pytest.fixture(scope="module")
def setup(small_shop_dir: Path):
    shop = load_shop(small_shop_dir)
    split = make_split(shop, "Food", "Kitchen", seed=0)
    m = SplitMatrices.from_split(shop, split)
    space = build_feature_space(shop, split, m, history_per_category=8, max_tokens=8)
    return shop, split, m, space


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_sign_and_scale(lam: float) -> None:
    layer = GradientReversal(lam)
    x = tf.Variable([[1.0, -2.0, 3.0]])
    w = tf.constant([[0.5, 1.5, -2.0]])
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(layer(x) * w)
    np.testing.assert_allclose(layer(x).numpy(), x.numpy())  # identity forward
    np.testing.assert_allclose(tape.gradient(y, x).numpy(), -lam * w.numpy(), rtol=1e-6)  # -λ·grad backward


def test_dann_schedule() -> None:
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + np.exp(-10)) - 1)
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)
    assert dann_lambda(0.0, 0.7, "constant") == 0.7
    for p in (0.0, 0.25, 0.5, 1.0, 1.5):
        assert float(grl_lambda(tf.constant(p), 0.8, "dann")) == pytest.approx(dann_lambda(p, 0.8), rel=1e-5)


def test_towers_accept_unseen_users_and_items(setup) -> None:
    _, _, _, space = setup
    model = XcatModel(space, SPEC)
    # a new item: unknown id (0), known category, tokens of a title never seen
    tokens = np.zeros((2, space.item_tokens.shape[1]), np.int32)
    tokens[0, :3] = [5, 6, 7]
    tokens[1, :3] = [8, 9, 10]
    vectors = model.item_tower(
        {"item": tf.constant([0, 0]), "category": tf.constant([2, 2]), "tokens": tf.constant(tokens)}
    ).numpy()
    assert np.all(np.isfinite(vectors))
    # every member's part is a unit vector (a tower ensemble concatenates its members' item vectors)
    for part in np.split(vectors, SPEC.towers, axis=1):
        np.testing.assert_allclose(np.linalg.norm(part, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])  # content alone tells new items apart
    # an unknown user with an empty history, and one whose history has unknown items only
    query = model.user_tower(
        {
            "user": tf.constant([0, 0]),
            "history": tf.zeros((2, space.history.shape[1]), tf.int32),
            "target_category": tf.constant([2, 2]),
        }
    ).numpy()
    assert np.all(np.isfinite(query))


def test_history_table_holds_no_cold_target_items(setup) -> None:
    _shop, split, _m, space = setup
    cold = space.user_index(split.cold_start_users)
    target = space.category_index("Kitchen")
    categories = space.item_category[space.history[cold]]
    assert not np.any(categories == target), "a cold-start user's target items leaked into the history table"
    # and their source history is there
    assert np.all((categories == space.category_index("Food")).sum(axis=1) > 0)


def _small_train(space, frame, workdir, epochs=2, validate=None, seed=0, callbacks=None, **training):
    spec = TrainSpec(batch_size=128, epochs=epochs, source_epochs=1, patience=5, **training)
    return train(
        space,
        frame,
        SPEC,
        spec,
        validate=validate or (lambda model: 0.0),
        workdir=workdir,
        seed=seed,
        callbacks=callbacks,
    )


def test_cold_start_queries_ignore_held_out_target_data(setup, tmp_path: Path) -> None:
    """Changing cold users' held-out target interactions must not change their target queries."""
    shop, split, _m, space = setup
    result = _small_train(space, split.train, tmp_path / "a", epochs=1)
    users = space.user_index(split.users["cold_start_test"])
    before = result.model.user_vectors(users)

    # Perturb the data: cold test users get different target items. Rebuild everything from the new data.
    inter = shop.interactions.copy()
    kitchen = np.sort(shop.items.loc[shop.items.category == "Kitchen", "item_id"].to_numpy())
    mask = inter.user_id.isin(split.users["cold_start_test"]) & (inter.category == "Kitchen")
    inter.loc[mask, "item_id"] = np.roll(kitchen, 7)[: mask.sum()] if mask.sum() <= len(kitchen) else kitchen[0]
    inter = inter.drop_duplicates(["user_id", "item_id"])
    shop2 = type(shop)(interactions=inter, items=shop.items, text_columns=shop.text_columns, name="perturbed")
    split2 = make_split(shop2, "Food", "Kitchen", seed=0)
    assert np.array_equal(split2.users["cold_start_test"], split.users["cold_start_test"])
    m2 = SplitMatrices.from_split(shop2, split2)
    space2 = build_feature_space(shop2, split2, m2, history_per_category=8, max_tokens=8)
    model2 = XcatModel(space2, SPEC)
    model2.compute_loss(
        {"user": tf.constant([1, 2]), "item": tf.constant([1, 2]), "target_category": tf.constant([1, 1])}
    )
    model2.set_weights(result.model.get_weights())
    after = model2.user_vectors(space2.user_index(split.users["cold_start_test"]))
    np.testing.assert_allclose(before, after, atol=1e-6)


def test_checkpoint_resume_continues_from_saved_epoch(setup, tmp_path: Path) -> None:
    _, split, _, space = setup

    class CrashMidEpoch(tf_keras.callbacks.Callback):
        """Dies in the middle of the target stage's second epoch, like a killed process."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.model.optimizer.iterations.numpy() > 0 and self.epoch == 1 and batch == 3 and self.stage:
                raise RuntimeError("simulated crash")

    crash = CrashMidEpoch()
    crash.stage = False

    def validate(model) -> float:
        crash.stage = True  # only the target stage validates: arm the crash there
        return 0.0

    with pytest.raises(RuntimeError, match="simulated crash"):
        _small_train(space, split.train, tmp_path, epochs=4, validate=validate, callbacks=[crash])
    assert (tmp_path / "backup" / "target").exists()
    assert (tmp_path / "checkpoints" / "target" / "epoch-001.index").exists()

    seen: list[int] = []

    def count(model) -> float:
        seen.append(1)
        return float(len(seen))

    result = _small_train(space, split.train, tmp_path, epochs=4, validate=count)
    # the source stage had finished; target epoch 1 had finished: the rerun does target epochs 2..4 only
    assert result.stages["source"]["epochs_run"] == 0
    assert result.stages["target"]["epochs_run"] == 3
    assert len(seen) == 3


def test_changed_settings_do_not_reuse_stale_work(setup, tmp_path: Path) -> None:
    _, split, _, space = setup
    _small_train(space, split.train, tmp_path, epochs=1)
    assert (tmp_path / "stages" / "target" / "done.json").is_file()
    again = _small_train(space, split.train, tmp_path, epochs=1, learning_rate=0.01)
    assert again.stages["target"]["epochs_run"] == 1  # trained, not restored


def test_emcdr_mapping_honours_the_training_section(small_shop_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EMCDR's mapping stage trains with the [training] optimizer, learning rate and batch size (it hard-coded
    Adam(0.001) and batches of 256)."""
    from tfrec_xcat.config import load_config
    from tfrec_xcat.pipeline import prepare_seed
    from tfrec_xcat.training.emcdr import Emcdr

    config = load_config(
        None,
        {
            "data": {"path": str(small_shop_dir), "source": "Food", "target": "Kitchen"},
            "model": {"embedding_dim": 8},
            "training": {"optimizer": "sgd", "learning_rate": 0.0123, "batch_size": 48},
        },
    )
    seen: list[tuple[str, float, int]] = []

    class Stop(Exception):
        pass

    def mapping_fit(self: tf_keras.Sequential, *args: object, **kwargs: object) -> None:
        seen.append((type(self.optimizer).__name__, float(self.optimizer.learning_rate.numpy()), kwargs["batch_size"]))
        raise Stop  # the first fit of the mapping says all there is to see

    monkeypatch.setattr(tf_keras.Sequential, "fit", mapping_fit)
    with pytest.raises(Stop):
        Emcdr(epochs=1).fit(prepare_seed(config, 0))
    ((optimizer, learning_rate, batch_size),) = seen
    assert optimizer == "SGD" and learning_rate == pytest.approx(0.0123) and batch_size == 48


def test_tower_ensemble_is_one_two_tower_scoring_the_members_mean(setup) -> None:
    """``towers = 2``: one user and one item vector of 2 × dim whose dot product is the mean of the two members'
    own scores; the members start apart and each learns from its own loss; unseen items settle in every member."""
    import dataclasses

    _, split, _, space = setup
    spec = dataclasses.replace(SPEC, towers=2)
    model = XcatModel(space, spec)
    model.build_variables()
    items = tf.constant(space.items_of(space.target)[:5])
    users = tf.constant([1, 2, 3])
    target = tf.fill([3], model.target_category_index)
    query, vectors = model.query(users, target), model.embed_items(items)
    assert query.shape == (3, 2 * spec.embedding_dim) and vectors.shape == (5, 2 * spec.embedding_dim)
    hist = model.user_history(users, None, target, False)
    features = {"user": users, "history": hist, "target_category": target}
    members = [
        tf.matmul(user(features), item(model.item_features(items)), transpose_b=True)
        for user, item in zip(model.user_tower.members, model.item_tower.members, strict=True)
    ]
    np.testing.assert_allclose(
        tf.matmul(query, vectors, transpose_b=True).numpy(), (members[0] + members[1]).numpy() / 2, atol=1e-6
    )
    assert not np.allclose(members[0].numpy(), members[1].numpy())  # two initialisations, not one model twice
    parts = model.user_tower.parts(query)
    np.testing.assert_allclose(np.linalg.norm(parts[0].numpy(), axis=1), 1.0, rtol=1e-5)  # each its own unit query
    # each member learns: the loss reaches every member's weights
    batch = split.train[split.train["category"] == "Kitchen"].head(64)
    features = {
        "user": tf.constant(space.user_index(batch["user_id"])),
        "item": tf.constant(space.item_index(batch["item_id"])),
        "target_category": tf.fill([len(batch)], model.target_category_index),
        "sampling_probability": tf.fill([len(batch)], 0.01),
    }
    kernels = [tower.project.kernel for tower in model.item_towers]
    with tf.GradientTape() as tape:
        loss = model.compute_loss(features, training=True)
    for gradient in tape.gradient(loss, kernels):
        assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0
    counts = np.ones(space.n_items + 1, np.int64)
    counts[items.numpy()[:2]] = 0
    assert model.settle_unseen_items(counts) == 2
    for tower in model.item_towers:
        ids = tower.id_embedding.embeddings.numpy()
        np.testing.assert_array_equal(ids[items.numpy()[:2]], np.stack([ids[0], ids[0]]))
