"""Title-token embeddings pretrained on the catalogue's own titles: PPMI + truncated SVD, then fine-tuned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.conftest import SMALL_CONFIG
from tfrec_xcat.config import load_config
from tfrec_xcat.errors import ConfigError
from tfrec_xcat.features.text_pretraining import (
    INIT_LIMIT,
    positive_pmi,
    pretrained_token_table,
    title_cooccurrence,
)
from tfrec_xcat.models.xcat import XcatModel
from tfrec_xcat.pipeline import PreparedSeed, prepare_seed
from tfrec_xcat.training.variants import train_two_tower


def _cosines(table: np.ndarray) -> np.ndarray:
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    return unit @ unit.T


def test_tokens_of_the_same_titles_end_up_close() -> None:
    # two topics: 2 = red, 3 = apple, 4 = cherry; 5 = steel, 6 = pan, 7 = pot (0 = padding, 1 = [UNK])
    titles = np.array([[2, 3, 0], [2, 4, 0], [3, 4, 1], [5, 6, 0], [5, 7, 0], [6, 7, 0], [2, 3, 4], [5, 6, 7]])
    cos = _cosines(pretrained_token_table(titles, 8, 2, seed=0))  # rank 2: one direction per topic
    for a, b in ((2, 3), (3, 4), (5, 6), (6, 7)):
        for unrelated in (5, 6, 7) if a < 5 else (2, 3, 4):
            assert cos[a, b] > cos[a, unrelated] + 0.5, (a, b, unrelated)


@pytest.fixture(scope="module")
def prepared(small_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedSeed:
    config = {name: dict(values) for name, values in SMALL_CONFIG.items()}
    config["data"] = {"path": str(small_shop_dir), "source": "Food", "target": "Kitchen"}
    config["model"].update(text_pretraining="ppmi_svd", memorisation=False)
    return prepare_seed(load_config(None, config), 0, workdir=tmp_path_factory.mktemp("pretraining"))


def test_synthetic_titles_related_tokens_closer(prepared: PreparedSeed) -> None:
    """On the synthetic shop (titles drawn from per-cluster vocabularies, every category): tokens that share
    titles are much closer than tokens that never do, and most tokens' nearest neighbour shares a title."""
    spec = prepared.config.model
    space = prepared.feature_space(spec)
    table = prepared.token_table(spec)
    assert table is not None and table.shape == (len(space.vocabulary) + 2, spec.text_dim)
    counts = title_cooccurrence(space.item_tokens, table.shape[0]).toarray()
    cos = _cosines(table)
    frequent = np.flatnonzero(counts.sum(axis=1) >= 10)
    sub, together = cos[np.ix_(frequent, frequent)], counts[np.ix_(frequent, frequent)]
    off = ~np.eye(len(frequent), dtype=bool)
    related, unrelated = sub[(together >= 2) & off], sub[(together == 0) & off]
    assert len(related) > 100 and len(unrelated) > 100
    assert related.mean() > unrelated.mean() + 0.3
    np.fill_diagonal(sub, -np.inf)
    neighbour = sub.argmax(axis=1)
    assert np.mean(together[np.arange(len(frequent)), neighbour] > 0) > 0.8


def test_deterministic_scaled_and_random_where_there_is_no_signal() -> None:
    rng = np.random.default_rng(3)
    titles = rng.integers(0, 40, size=(300, 6))
    titles[:, 0] = 1  # [UNK] everywhere: never learnt from
    a = pretrained_token_table(titles, 50, 8, seed=5)
    np.testing.assert_array_equal(a, pretrained_token_table(titles, 50, 8, seed=5))
    assert not np.array_equal(a[40:], pretrained_token_table(titles, 50, 8, seed=6)[40:])
    assert a.dtype == np.float32
    # learnt rows spread as the default initialiser does; the others (padding, [UNK], unseen ids) are its draws
    assert np.sqrt(np.mean(a[2:40] ** 2)) == pytest.approx(INIT_LIMIT / np.sqrt(3), rel=1e-4)
    assert np.abs(a[[0, 1, *range(40, 50)]]).max() <= INIT_LIMIT
    initializer = tf_keras.layers.Embedding(3, 2).embeddings_initializer
    assert (initializer.minval, initializer.maxval) == (-INIT_LIMIT, INIT_LIMIT)


def test_positive_pmi_by_hand() -> None:
    titles = np.array([[2, 3], [2, 3], [2, 4], [5, 6]])
    counts = title_cooccurrence(titles, 7)
    assert counts[2, 3] == 2 and counts[3, 2] == 2 and counts[2, 2] == 0 and counts[2, 5] == 0
    pmi = positive_pmi(counts, smoothing=1.0).toarray()
    total = counts.sum()
    p = counts.toarray() / total
    want = np.log(p[5, 6] / (p[5].sum() * p[:, 6].sum()))
    assert pmi[5, 6] == pytest.approx(want) and want > 0
    assert (pmi >= 0).all()


def test_the_option_initialises_the_tower_and_trains_end_to_end(prepared: PreparedSeed, tmp_path: Path) -> None:
    spec = prepared.config.model
    space, _ = prepared.training_inputs(spec, "full")
    assert space.token_vectors is prepared.token_table(spec)  # built once per seed and text setting
    model = XcatModel(space, spec)
    model.build_variables()
    for tower in model.item_towers:  # every member of the tower ensemble starts from the table
        np.testing.assert_allclose(tower.token_embedding.embeddings.numpy(), space.token_vectors)
    plain, _ = prepared.training_inputs(dataclasses.replace(spec, text_pretraining="none"), "full")
    assert plain.token_vectors is None
    no_text, _ = prepared.training_inputs(dataclasses.replace(spec, use_text=False), "full")
    assert no_text.token_vectors is None

    result = train_two_tower(prepared, spec, prepared.config.training, tmp_path)
    assert result.history and np.isfinite(result.history).all()
    for tower in result.model.item_towers:
        assert not np.allclose(tower.token_embedding.embeddings.numpy(), space.token_vectors)  # fine-tuned
    vectors = result.model.target_item_vectors()
    assert np.isfinite(vectors).all()
    for part in np.split(vectors, spec.towers, axis=1):  # each member's item vector is a unit vector
        assert np.allclose(np.linalg.norm(part, axis=1), 1.0, atol=1e-5)
    assert tf.reduce_all(tf.math.is_finite(result.model.user_vectors(np.array([1, 2], np.int32)))).numpy()


@pytest.mark.parametrize("value", ["word2vec", "", "PPMI_SVD"])
def test_bad_value_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.model: text_pretraining must be one of none, ppmi_svd"):
        load_config(None, {"model": {"text_pretraining": value}})
    assert load_config(None).model.text_pretraining == "none"
