"""New items: the new_items segments of a run, their two rankings, and the content_knn baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tfrec_xcat.baselines.content_knn import ContentKnn
from tfrec_xcat.baselines.popularity import Popularity
from tfrec_xcat.config import Config, load_config
from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.evaluation.evaluate import evaluate_new_items, evaluate_segment, summarize
from tfrec_xcat.experiment import Fitted, fit_and_evaluate, new_item_significance, run_experiment
from tfrec_xcat.features.content import max_profile, weigh
from tfrec_xcat.pipeline import PreparedSeed, load_data, prepare_seed

FRACTION = 0.2


def _config(shop: Path, fraction: float = FRACTION, seeds: tuple[int, ...] = (0,)) -> Config:
    return load_config(
        None,
        {
            "data": {"path": str(shop), "source": "Food", "target": "Kitchen"},
            "split": {"new_item_fraction": fraction},
            "run": {"seeds": list(seeds)},
        },
    )


@pytest.fixture(scope="module")
def prepared(small_shop_dir: Path) -> PreparedSeed:
    return prepare_seed(_config(small_shop_dir), 0)


def test_an_oracle_is_perfect_in_both_rankings(prepared: PreparedSeed) -> None:
    m = prepared.m
    views = evaluate_new_items(lambda rows: m.truth["new_items"][rows].toarray(), m, "new_items")
    assert set(views) == {"full", "among_new"}
    for frame in views.values():
        assert len(frame) == prepared.split.sizes()["new_items_users"] > 0
        assert np.allclose(frame["ndcg@10"], 1.0) and np.allclose(frame["recall@50"], 1.0)


def test_among_new_ranks_only_new_items(prepared: PreparedSeed) -> None:
    m = prepared.m
    # every old item above every new one: hopeless over all items, and irrelevant among new items only
    scores = np.ones(len(m.target_items))
    scores[m.new_item_cols] = np.linspace(0.5, 0.0, len(m.new_item_cols))
    views = evaluate_new_items(lambda rows: np.tile(scores, (len(rows), 1)), m, "new_items")
    assert views["full"]["recall@50"].max() == 0.0
    assert views["among_new"]["recall@50"].mean() > 0.5  # 24 new items: the top 50 hold them all
    assert views["among_new"]["recall@10"].mean() < 1.0  # but the order still matters


def test_without_new_items_there_is_no_segment(small_shop_dir: Path) -> None:
    plain = prepare_seed(_config(small_shop_dir, 0.0), 0)
    assert "new_items" not in plain.m.truth and len(plain.m.new_item_cols) == 0
    with pytest.raises(ValueError, match="new_item_fraction"):
        evaluate_new_items(lambda rows: np.zeros((len(rows), len(plain.m.target_items))), plain.m, "new_items")
    summary = fit_and_evaluate("popularity", plain).summary
    assert "new_items" not in summary and "new_items_val" not in summary


def test_content_knn_beats_popularity_on_new_items(prepared: PreparedSeed) -> None:
    pop = fit_and_evaluate("popularity", prepared).summary
    knn = fit_and_evaluate("content_knn", prepared).summary
    for view in ("full", "among_new"):
        assert knn["new_items"][view]["users"] == pop["new_items"][view]["users"] > 0
    # popularity cannot surface a new item (it has no training interaction); titles can
    assert knn["new_items"]["full"]["ndcg@10"] > 0.1 > pop["new_items"]["full"]["ndcg@10"]
    assert knn["new_items"]["full"]["recall@50"] > pop["new_items"]["full"]["recall@50"] + 0.2
    assert knn["new_items"]["among_new"]["ndcg@10"] > 1.5 * pop["new_items"]["among_new"]["ndcg@10"]
    # chosen on cold-start validation users only
    assert len(knn["selection"]) == len(ContentKnn.grid)
    assert all(set(s) == {"params", "cold_start_val_ndcg@10"} for s in knn["selection"])
    best = max(knn["selection"], key=lambda s: s["cold_start_val_ndcg@10"])
    assert best["params"] == knn["params"]
    assert knn["choices"]["vocabulary"] > 100


@pytest.mark.parametrize("profile", ["sum", "max"])
def test_content_knn_profiles_use_history_text(prepared: PreparedSeed, profile: str) -> None:
    model = ContentKnn(profile=profile)
    model.fit(prepared)
    rows = prepared.m.segment_users["cold_start_test"][:5]
    scores = model.score(rows)
    assert scores.shape == (5, len(prepared.m.target_items)) and np.isfinite(scores).all()
    assert (scores.max(axis=1) > 0.1).all()  # every cold user's source titles share words with some target item
    # the scores are cosines to the profile (plus a tiny popularity tie-break)
    assert scores.max() <= 1.0 + 1e-6


def test_max_profile_is_the_elementwise_maximum() -> None:
    rng = np.random.default_rng(0)
    vectors = sp.random(7, 11, density=0.4, random_state=1, format="csr")
    dense_history = (rng.random((4, 7)) < 0.4).astype(np.float32)
    dense_history[3] = 0  # a user without history, with a stored zero that is no history item
    pairs = sp.coo_matrix(dense_history)
    history = sp.csr_matrix((np.r_[pairs.data, 0.0], (np.r_[pairs.row, 3], np.r_[pairs.col, 2])), shape=(4, 7))
    assert history.nnz == pairs.nnz + 1
    got = max_profile(history, vectors).toarray()
    dense, hist = vectors.toarray(), history.toarray().astype(bool)
    want = np.array([dense[h].max(axis=0) if h.any() else np.zeros(11) for h in hist])
    np.testing.assert_allclose(got, want)


def _popularity_ranking(prepared: PreparedSeed, rows: np.ndarray) -> np.ndarray:
    pop = Popularity()
    pop.fit(prepared)
    return np.lexsort((np.arange(len(prepared.m.target_items)), -pop.score(rows)[0]))


@pytest.mark.parametrize("kind", ["no_text_columns", "empty_titles"])
def test_content_knn_without_titles_is_popularity(small_shop_dir: Path, kind: str) -> None:
    config = _config(small_shop_dir)
    shop = load_data(config)
    if kind == "no_text_columns":
        data = ShopData(shop.interactions, shop.items[["item_id", "category"]].copy(), [], name="no titles")
    else:
        items = shop.items.copy()
        items[shop.text_columns] = ""
        data = ShopData(shop.interactions, items, list(shop.text_columns), name="empty titles")
    prepared = prepare_seed(config, 0, data)
    model = ContentKnn()
    model.fit(prepared)
    assert model.choices == {"vocabulary": 0}
    rows = prepared.m.segment_users["cold_start_val"][:3]
    scores = model.score(rows)
    want = _popularity_ranking(prepared, rows)
    for row in scores:
        np.testing.assert_array_equal(np.lexsort((np.arange(len(row)), -row)), want)
    # and it still goes through a run's selection and evaluation
    val = summarize(evaluate_segment(model.score, prepared.m, "cold_start_val"))
    assert 0.0 <= val["ndcg@10"] <= 1.0


def test_content_knn_rejects_bad_settings(prepared: PreparedSeed) -> None:
    with pytest.raises(ValueError, match="content_knn profile"):
        ContentKnn(profile="mean").fit(prepared)
    with pytest.raises(ValueError, match="content_knn min_df"):
        ContentKnn(min_df=0).fit(prepared)


def test_run_reports_the_new_items_segment(small_shop_dir: Path, tmp_path: Path) -> None:
    config = _config(small_shop_dir, seeds=(0, 1))
    metrics = run_experiment(config, tmp_path, ["popularity", "content_knn"], progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["models"].keys() == metrics["models"].keys()
    sizes = metrics["split"]["sizes"]["0"]
    assert sizes["new_items"] == round(FRACTION * 120) and sizes["new_items_interactions"] > 0
    assert metrics["split"]["spec"]["new_item_fraction"] == FRACTION
    for result in metrics["models"].values():
        for segment in ("cold_start_test", "cold_start_val", "warm_test", "cold_start_test_by_history"):
            assert segment in result  # the existing keys stay
        for segment in ("new_items", "new_items_val"):
            for view in ("full", "among_new"):
                stats = result[segment][view]
                assert 0.0 <= stats["ndcg@10"] <= 1.0 and 0.0 <= stats["recall@50"] <= 1.0
                assert stats["ndcg@10_std"] >= 0.0 and stats["users"] > 0
    models = metrics["models"]
    assert models["content_knn"]["new_items"]["full"]["ndcg@10"] > models["popularity"]["new_items"]["full"]["ndcg@10"]
    assert "content_knn" in metrics["baselines"]
    md = (tmp_path / "report.md").read_text()
    assert "## New items: test users' held-out interactions" in md and "ndcg@10 (among new)" in md
    assert "| content_knn |" in md.split("## New items: test users")[1] and "New items: 24 target items" in md
    assert "New items: test users" in (tmp_path / "report.html").read_text()


def test_new_item_bootstrap_pairs_transfer_with_the_best_baseline_on_new_items() -> None:
    def fitted(values: list[float], new_ndcg: float | None) -> Fitted:
        per_user = pd.Series(values, index=[3, 5, 8])
        summary: dict = {"cold_start_test": {"ndcg@10": 0.1}}
        if new_ndcg is None:
            return Fitted(summary, per_user)
        summary["new_items"] = {"full": {"ndcg@10": new_ndcg}}
        return Fitted(summary, per_user, per_user)

    runs = {"transfer": fitted([0.5, 0.6, 0.7], 0.6), "content_knn": fitted([0.1, 0.2, 0.3], 0.2)}
    runs["popularity"] = fitted([0.0, 0.0, 0.0], 0.0)
    test = new_item_significance(runs, seed=0)
    assert test is not None and test["baseline"] == "content_knn" and test["ranking"] == "full"
    assert test["mean_diff"] == pytest.approx(0.4) and test["ci_low"] > 0
    assert new_item_significance({**runs, "transfer": fitted([0.5, 0.6, 0.7], None)}, seed=0) is None
    assert new_item_significance({"content_knn": runs["content_knn"]}, seed=0) is None


def test_bm25_weights_by_hand() -> None:
    # two documents: "a a b" and "b c"; N = 2, df = (1, 2, 1), lengths 3 and 2, mean 2.5
    counts = sp.csr_matrix(np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]]))
    k1, b = 1.2, 0.75
    idf = np.log1p((2 - np.array([1.0, 2.0, 1.0]) + 0.5) / (np.array([1.0, 2.0, 1.0]) + 0.5))
    want = np.zeros((2, 3))
    for d, length in enumerate((3.0, 2.0)):
        for t in range(3):
            tf = counts[d, t]
            if tf:
                want[d, t] = idf[t] * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / 2.5))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(weigh(counts, "bm25", idf, 2.5).toarray(), want)
    assert want[0, 0] / want[0, 1] < 2 * idf[0] / idf[1]  # a repeated word saturates


def test_content_knn_bm25_also_finds_new_items(prepared: PreparedSeed) -> None:
    model = ContentKnn(weighting="bm25", profile="sum")
    model.fit(prepared)
    views = evaluate_new_items(model.score, prepared.m, "new_items")
    assert views["full"]["ndcg@10"].mean() > 0.1
    with pytest.raises(ValueError, match="content_knn weighting"):
        ContentKnn(weighting="lsi").fit(prepared)


def test_unseen_items_are_scored_as_reindexed_new_items(prepared: PreparedSeed, tmp_path: Path) -> None:
    """After training, an item no training interaction reached (a new item of the split) has the OOV id vector and
    the least popular items' prior: its score is what ``reindex`` gives an item of the same content."""
    import tensorflow as tf

    from tfrec_xcat.models.layers import unseen_prior
    from tfrec_xcat.models.spec import ModelSpec
    from tfrec_xcat.training.spec import TrainSpec
    from tfrec_xcat.training.trainer import train

    spec = ModelSpec(embedding_dim=8, tower_layers=[16], text_dim=8, history_per_category=4, max_tokens=8)
    space, frame = prepared.training_inputs(spec, "full")
    result = train(
        space,
        frame,
        spec,
        TrainSpec(mode="full", source_epochs=1, epochs=1, batch_size=256),
        validate=prepared.validate_model,
        workdir=tmp_path,
    )
    model = result.model
    counts = np.bincount(space.item_index(frame["item_id"]), minlength=space.n_items + 1)
    new = space.item_index(prepared.split.new_items)
    assert len(new) and not counts[new].any()
    # the seen items keep exactly what training gave them (the last stage's weights, saved before settling)
    from tfrec_xcat.models.xcat import XcatModel

    trained = XcatModel(space, spec)
    trained.build_variables()
    trained.load_weights(str(tmp_path / "stages" / "target" / "weights")).expect_partial()
    seen = np.flatnonzero(counts > 0)
    assert len(model.item_towers) == spec.towers
    for tower, before in zip(model.item_towers, trained.item_towers, strict=True):  # every member's id table
        ids = tower.id_embedding.embeddings.numpy()
        np.testing.assert_array_equal(ids[new], np.repeat(ids[:1], len(new), axis=0))
        np.testing.assert_array_equal(ids[seen], before.id_embedding.embeddings.numpy()[seen])
        assert not np.allclose(before.id_embedding.embeddings.numpy()[new], ids[0])  # were not OOV
    trained_prior = trained.memorisation.prior.embeddings.numpy()[:, 0]
    np.testing.assert_array_equal(model.memorisation.prior.embeddings.numpy()[seen, 0], trained_prior[seen])
    with pytest.raises(ValueError, match="one entry per model item"):
        model.settle_unseen_items(counts[1:])
    # the item tower embeds a new item exactly as it embeds the same content under the unknown id
    features = model.item_features(tf.constant(new))
    as_unknown = model.item_tower({**features, "item": tf.zeros_like(features["item"])}).numpy()
    np.testing.assert_allclose(model.embed_items(tf.constant(new)).numpy(), as_unknown, atol=1e-6)
    targets = space.items_of(space.target)
    prior = model.memorisation.prior.embeddings.numpy()[:, 0]
    expected = unseen_prior(prior[targets], counts[targets])
    least = targets[(counts[targets] > 0) & (counts[targets] == counts[targets][counts[targets] > 0].min())]
    assert expected == pytest.approx(prior[least].mean(), rel=1e-5)
    np.testing.assert_allclose(prior[new], expected, rtol=1e-5)


def test_unseen_prior_by_hand() -> None:
    from tfrec_xcat.models.layers import unseen_prior

    assert unseen_prior(np.array([5.0, 1.0, 2.0, 9.0]), np.array([0, 3, 1, 1])) == pytest.approx(5.5)
    assert unseen_prior(np.array([1.0, 3.0]), np.array([0, 0])) == pytest.approx(2.0)  # nothing seen: all
    assert unseen_prior(np.zeros(0), np.zeros(0)) == 0.0
