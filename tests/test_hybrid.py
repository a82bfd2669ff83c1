"""The memorisation baselines, the paired bootstrap and the hybrid ``transfer`` (pseudo cold-start users, ranker)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrec_xcat.baselines.cooccurrence import Cooccurrence
from tfrec_xcat.baselines.itemknn import ItemKnn
from tfrec_xcat.baselines.rp3beta import Rp3Beta
from tfrec_xcat.config import load_config
from tfrec_xcat.evaluation.bootstrap import paired_bootstrap
from tfrec_xcat.features.memorisation import memorisation_scores
from tfrec_xcat.features.sparse import top_k_per_row
from tfrec_xcat.pipeline import PreparedSeed, prepare_seed
from tfrec_xcat.training.hybrid import PSEUDO_COLD, Transfer, pseudo_cold_split

SMALL_MODEL = {"embedding_dim": 16, "tower_layers": [32], "text_dim": 16, "history_per_category": 8, "max_tokens": 8}
QUICK_TRAINING = {"batch_size": 128, "epochs": 2, "source_epochs": 1, "patience": 1}


def small_transfer(shop: Path, workdir: Path, ranker_epochs: int) -> PreparedSeed:
    """The small shop's Food → Kitchen seed 0 with a small, quick transfer."""
    config = load_config(
        None,
        {
            "data": {"path": str(shop), "source": "Food", "target": "Kitchen"},
            "model": SMALL_MODEL,
            "training": QUICK_TRAINING,
            "ranker": {"candidates": [20], "epochs": ranker_epochs, "fusion_weights": [1.0], "ensemble": 2},
        },
    )
    return prepare_seed(config, 0, workdir=workdir)


@pytest.fixture(scope="module")
def ctx(small_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedSeed:
    return small_transfer(small_shop_dir, tmp_path_factory.mktemp("hybrid"), ranker_epochs=3)


# ----------------------------------------------------------------------------------------- baselines
def test_rp3beta_at_zero_is_cooccurrence(ctx: PreparedSeed) -> None:
    raw = Cooccurrence(normalize="none")
    raw.fit(ctx)
    walk = Rp3Beta(alpha=0.0, beta=0.0)
    walk.fit(ctx)
    np.testing.assert_allclose(walk.weights.toarray(), raw.weights.toarray())


def test_itemknn_cosine_by_hand(ctx: PreparedSeed) -> None:
    model = ItemKnn(alpha=0.5, shrink=0.0, neighbours=10**6)
    model.fit(ctx)
    both = ctx.m.overlap_rows()
    s, t = ctx.m.source[both].toarray(), ctx.m.target[both].toarray()
    norms = np.sqrt(s.sum(0))[:, None] * np.sqrt(t.sum(0))[None, :]
    expected = np.divide(s.T @ t, norms, out=np.zeros((s.shape[1], t.shape[1])), where=norms > 0)
    np.testing.assert_allclose(model.weights.toarray(), expected, rtol=1e-6)
    scores = model.score(np.arange(5))
    assert scores.shape == (5, len(ctx.m.target_items))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 30),
    st.integers(0, 6),
    st.integers(0, 10_000),
)
def test_top_k_per_row_keeps_the_largest(rows: int, cols: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((rows, cols)) < 0.4, rng.integers(1, 5, (rows, cols)).astype(float), 0.0)
    kept = top_k_per_row(sp.csr_matrix(dense), k).toarray()
    for r in range(rows):
        nz = np.flatnonzero(dense[r])
        assert np.count_nonzero(kept[r]) == min(k, len(nz))
        if len(nz) > k and k > 0:  # nothing dropped is larger than anything kept
            assert dense[r][kept[r] == 0].max() <= kept[r][kept[r] > 0].min()


# ----------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_known_answer() -> None:
    ours = np.array([0.5, 0.5, 0.5, 0.5] * 50)
    theirs = np.array([0.25, 0.25, 0.25, 0.25] * 50)
    result = paired_bootstrap(ours, theirs, resamples=1000)
    assert result["mean_diff"] == pytest.approx(0.25)
    assert result["rel_lift"] == pytest.approx(1.0)
    assert result["ci_low"] == pytest.approx(0.25) and result["ci_high"] == pytest.approx(0.25)  # no spread


def test_bootstrap_interval_covers_zero_for_noise() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(2000), rng.random(2000)
    result = paired_bootstrap(a, b, resamples=2000, seed=3)
    assert result["ci_low"] < 0 < result["ci_high"]
    # a normal approximation of the same interval: the percentile interval is close to it
    half = 1.96 * (a - b).std() / np.sqrt(len(a))
    assert result["ci_high"] - result["ci_low"] == pytest.approx(2 * half, rel=0.1)


def test_bootstrap_rejects_unpaired() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


# ----------------------------------------------------------------------------------------- hybrid
def test_pseudo_cold_users_leave_training(ctx: PreparedSeed) -> None:
    reduced, rows = pseudo_cold_split(ctx, 0.2)
    users = reduced.split.users[PSEUDO_COLD]
    assert len(rows) == len(users) > 0
    assert set(ctx.m.users[rows]) == set(users)
    train = reduced.split.train
    assert not ((train["category"] == ctx.split.target) & train["user_id"].isin(users)).any()
    # drawn from overlap TRAINING users only: never a validation or test user
    assert not set(users) & set(ctx.split.cold_start_users)
    assert reduced.m.target[rows].nnz == 0 and reduced.m.truth[PSEUDO_COLD][rows].nnz == ctx.m.target[rows].nnz
    # nothing else moved
    assert len(ctx.split.train) - len(train) == ctx.m.target[rows].nnz


def test_ranker_never_sees_validation_or_test_users(ctx: PreparedSeed, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every list the ranking stage is TRAINED on belongs to a pseudo cold-start (training) user."""
    from tfrec_xcat.training import hybrid

    rows_of: dict[int, np.ndarray] = {}  # the users of every list built, by its columns (restrictions share them)
    real_lists = hybrid.Signals.lists

    def spy(self: hybrid.Signals, rows: np.ndarray, n: int) -> hybrid.Lists:
        out = real_lists(self, rows, n)
        rows_of[id(out.columns)] = np.asarray(rows)
        return out

    real_train = hybrid.Transfer._train_ranker
    labelled: list[np.ndarray] = []

    def spy_train(self, spec, lists, *args):  # type: ignore[no-untyped-def]
        labelled.append(rows_of[id(lists.columns)])
        return real_train(self, spec, lists, *args)

    monkeypatch.setattr(hybrid.Signals, "lists", spy)
    monkeypatch.setattr(hybrid.Transfer, "_train_ranker", spy_train)
    model = Transfer()
    model.fit(ctx)
    assert labelled, "the ranking stage was not trained"
    held_out = set(ctx.m.segment_users["cold_start_val"]) | set(ctx.m.segment_users["cold_start_test"])
    for rows in labelled:
        assert not set(rows.tolist()) & held_out
    assert model.stage in {"deep", "wide", "fusion", "ranker"}
    assert set(model.ablations()) >= {"deep", "wide", "fusion", "ranker"}
    scores = model.score(ctx.m.segment_users["cold_start_test"][:7])
    assert scores.shape == (7, len(ctx.m.target_items)) and np.isfinite(scores).all()


# ----------------------------------------------------------------------------------------- memorisation
def test_memorisation_leaves_each_user_out(ctx: PreparedSeed) -> None:
    """A training user's score for their own target item counts every OTHER overlap user, never themselves; a
    cold-start user's score is the plain sum over the source items of the history the model reads."""
    spec = dataclasses.replace(ctx.config.model, memorisation=True, memorisation_per_user=10**6)
    space, _ = ctx.training_inputs(spec, "full")
    m = ctx.m
    s, t = m.source.toarray(), m.target.toarray()
    source_model = space.item_index(m.source_items)
    both = m.overlap_rows()
    train = space.memorisation_train.toarray()
    for row in both[:25]:
        in_history = np.isin(source_model, space.history[row + 1])
        others = both[both != row]
        expected = in_history.astype(float) @ (s[others].T @ t[others])
        np.testing.assert_allclose(train[row + 1], expected, atol=1e-4)
    cold = m.segment_users["cold_start_val"][:10]
    exact = memorisation_scores(space.history[cold + 1], space.memorisation).toarray()
    hot = np.stack([np.isin(source_model, space.history[r + 1]) for r in cold]).astype(float)
    np.testing.assert_allclose(exact, hot @ (s[both].T @ t[both]), atol=1e-4)
    np.testing.assert_allclose(train[cold + 1], exact, atol=1e-4)  # nothing of theirs to leave out


def test_memorisation_keeps_the_largest_per_user(ctx: PreparedSeed) -> None:
    full_spec = dataclasses.replace(ctx.config.model, memorisation=True, memorisation_per_user=10**6)
    full = ctx.training_inputs(full_spec, "full")[0].memorisation_train.toarray()
    kept = ctx.training_inputs(dataclasses.replace(full_spec, memorisation_per_user=3), "full")[0]
    kept = kept.memorisation_train.toarray()
    assert (np.count_nonzero(kept, axis=1) <= 3).all()
    for row in np.flatnonzero(np.count_nonzero(full, axis=1) > 3)[:20]:
        assert np.sort(kept[row][kept[row] > 0])[::-1].tolist() == np.sort(full[row])[::-1][:3].tolist()


def test_wide_and_deep_scores_in_graph_equal_numpy(ctx: PreparedSeed) -> None:
    """The hash-table lookup the model trains with gives the scores the evaluator (and export) use."""
    import tensorflow as tf

    from tfrec_xcat.training.variants import TransferWideDeep

    model = TransferWideDeep()
    model.fit(ctx.in_workdir("wide-deep"))
    xcat = model.model
    rows = ctx.m.segment_users["cold_start_test"][:6]
    dense = model.score(rows)
    users = tf.constant(rows + 1, tf.int32)
    target = xcat.target_items
    graph = (
        tf.matmul(
            xcat.query(users, tf.fill([len(rows)], xcat.target_category_index)),
            xcat.embed_items(target),
            transpose_b=True,
        )
        / xcat.spec.temperature
        + xcat.memorisation(users, target)
    ).numpy()
    np.testing.assert_allclose(dense, graph, rtol=1e-4, atol=1e-4)
    assert float(xcat.memorisation.alpha.numpy()) != 1.0  # learned, not left at its initial value


def test_transfer_without_target_titles(small_shop_dir: Path, tmp_path: Path) -> None:
    """As on Movies→Books (books have no titles): target items known by id alone still train, rank and score."""
    shop = tmp_path / "untitled"
    shop.mkdir()
    (shop / "interactions.csv.gz").write_bytes((small_shop_dir / "interactions.csv.gz").read_bytes())
    items = pd.read_csv(small_shop_dir / "items.csv")
    kitchen = items["category"] == "Kitchen"
    items.loc[kitchen, ["title", "brand"]] = ""
    items.to_csv(shop / "items.csv", index=False)
    prepared = small_transfer(shop, tmp_path / "work", ranker_epochs=2)
    space = prepared.feature_space()
    target = space.items_of(space.target)
    assert not space.item_tokens[target].any(), "the target items should have no title tokens"
    model = Transfer()
    model.fit(prepared)
    rows = prepared.m.segment_users["cold_start_test"]
    scores = model.score(rows[:9])
    assert scores.shape == (9, len(prepared.m.target_items)) and np.isfinite(scores).all()
    assert prepared.validate(model.score) > 0.0


def test_pseudo_new_items_leave_training_but_stay_labels(ctx: PreparedSeed) -> None:
    reduced, rows = pseudo_cold_split(ctx, 0.2, new_fraction=0.25)
    plain, same_rows = pseudo_cold_split(ctx, 0.2)
    np.testing.assert_array_equal(rows, same_rows)  # the same pseudo cold-start users with or without
    target = ctx.split.target
    before = set(plain.split.train.loc[plain.split.train["category"] == target, "item_id"])
    after = set(reduced.split.train.loc[reduced.split.train["category"] == target, "item_id"])
    gone = before - after
    assert after <= before and len(gone) == round(0.25 * len(before))
    # every training interaction of a pseudo new item left; nothing else did; the labels are untouched
    kept = plain.split.train[~plain.split.train["item_id"].isin(gone)]
    assert len(reduced.split.train) == len(kept)
    pd.testing.assert_frame_equal(reduced.split.heldout[PSEUDO_COLD], plain.split.heldout[PSEUDO_COLD])
    assert reduced.split.heldout[PSEUDO_COLD]["item_id"].isin(gone).any()  # some labels are pseudo new items
    again, _ = pseudo_cold_split(ctx, 0.2, new_fraction=0.25)
    assert set(again.split.train["item_id"]) == set(reduced.split.train["item_id"])  # seeded


def test_auto_pseudo_new_share_counts_unseen_items_with_text(small_shop_dir: Path) -> None:
    from tfrec_xcat.training.hybrid import popularity_of, unseen_share

    config = load_config(
        None,
        {
            "data": {"path": str(small_shop_dir), "source": "Food", "target": "Kitchen"},
            "split": {"new_item_fraction": 0.2},
        },
    )
    prepared = prepare_seed(config, 0)
    m = prepared.m
    truth = m.truth["cold_start_val"].tocoo()
    unseen = popularity_of(m) == 0
    assert unseen_share(prepared) == pytest.approx(unseen[truth.col].mean()) and unseen_share(prepared) > 0
    # without any item text nothing can place an unseen item: nothing to simulate
    data = prepared.data
    blank = data.items.assign(**{column: "" for column in data.text_columns})
    bare = dataclasses.replace(prepared, data=dataclasses.replace(data, items=blank))
    assert unseen_share(bare) == 0.0
