"""The cold-start split: determinism, fractions, the leak check, and that cold users keep their source history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrec_xcat.data.load import load_shop
from tfrec_xcat.data.split import LeakError, SplitSpec, make_split


@pytest.fixture(scope="module")
def shop(small_shop_dir: Path):
    return load_shop(small_shop_dir)


def test_same_seed_same_split_and_different_seed_differs(shop) -> None:
    a = make_split(shop, "Food", "Kitchen", seed=3)
    b = make_split(shop, "Food", "Kitchen", seed=3)
    c = make_split(shop, "Food", "Kitchen", seed=4)
    for seg in a.users:
        np.testing.assert_array_equal(a.users[seg], b.users[seg])
    pd.testing.assert_frame_equal(a.train, b.train)
    assert not np.array_equal(a.users["cold_start_test"], c.users["cold_start_test"])


def test_split_is_stable_across_machines(shop) -> None:
    # PCG64 and sorted ids make the split a pure function of the data and seed; pin a fingerprint of it.
    split = make_split(shop, "Food", "Kitchen", seed=0)
    again = make_split(load_shop(shop.name), "Food", "Kitchen", seed=0)
    assert list(split.users["cold_start_test"][:5]) == list(again.users["cold_start_test"][:5])


def test_fractions_and_disjoint_users(shop) -> None:
    spec = SplitSpec(cold_start_fraction=0.2, cold_start_val_fraction=0.1, warm_test_fraction=0.1)
    split = make_split(shop, "Food", "Kitchen", spec, seed=0)
    n = len(split.overlap_users)
    assert len(split.users["cold_start_test"]) == round(0.2 * n)
    assert len(split.users["cold_start_val"]) == round(0.1 * n)
    assert not set(split.users["cold_start_test"]) & set(split.users["cold_start_val"])
    assert set(split.users["cold_start_test"]) <= set(split.overlap_users)
    assert not set(split.users["warm_test"]) & set(split.cold_start_users)
    assert split.heldout["warm_test"].groupby("user_id").size().eq(1).all()


def test_cold_users_lose_only_target_interactions(shop) -> None:
    split = make_split(shop, "Food", "Kitchen", seed=1)
    inter = shop.interactions
    cold = split.cold_start_users
    cold_rows = inter[inter.user_id.isin(cold)]
    train_cold = split.train[split.train.user_id.isin(cold)]
    assert (train_cold.category == "Food").all()
    assert len(train_cold) == (cold_rows.category == "Food").sum()
    held = pd.concat([split.heldout["cold_start_test"], split.heldout["cold_start_val"]])
    assert len(held) == (cold_rows.category == "Kitchen").sum()
    # every interaction is in exactly one place
    assert len(split.train) + sum(len(f) for f in split.heldout.values()) == len(inter)


def test_leak_check_catches_a_planted_leak(shop) -> None:
    split = make_split(shop, "Food", "Kitchen", seed=0)
    split.check_no_leak()
    leaked = split.heldout["cold_start_test"].iloc[[0]]
    split.train = pd.concat([split.train, leaked], ignore_index=True)
    with pytest.raises(LeakError, match="cold_start_test"):
        split.check_no_leak()


def test_bad_split_specs() -> None:
    with pytest.raises(ValueError, match="cold_start_fraction"):
        SplitSpec(cold_start_fraction=1.5)
    with pytest.raises(ValueError, match="below 1"):
        SplitSpec(cold_start_fraction=0.6, cold_start_val_fraction=0.5)


# ------------------------------------------------------------------------------------------------ new items
NEW = SplitSpec(new_item_fraction=0.2)


def test_new_item_fraction_off_changes_nothing(shop) -> None:
    plain, off = make_split(shop, "Food", "Kitchen", seed=2), make_split(shop, "Food", "Kitchen", SplitSpec(), seed=2)
    assert len(off.new_items) == 0 and off.withheld is None
    pd.testing.assert_frame_equal(plain.train, off.train)
    assert "new_items" not in off.sizes()


def test_new_items_are_seeded_and_stable(shop) -> None:
    a = make_split(shop, "Food", "Kitchen", NEW, seed=0)
    b = make_split(load_shop(shop.name), "Food", "Kitchen", NEW, seed=0)
    c = make_split(shop, "Food", "Kitchen", NEW, seed=1)
    np.testing.assert_array_equal(a.new_items, b.new_items)
    pd.testing.assert_frame_equal(a.train, b.train)
    assert set(a.new_items) != set(c.new_items)
    # a pure function of data and seed (PCG64, sorted ids): pin it so a change of the draw is noticed
    assert list(a.new_items[:4]) == ["KIT00000", "KIT00005", "KIT00007", "KIT00011"]


def test_new_items_lose_training_but_keep_heldout(shop) -> None:
    base = make_split(shop, "Food", "Kitchen", seed=0)
    split = make_split(shop, "Food", "Kitchen", NEW, seed=0)
    interacted = shop.interactions.loc[shop.interactions.category == "Kitchen", "item_id"].nunique()
    assert len(split.new_items) == round(0.2 * interacted)
    assert set(split.new_items) <= set(shop.items.loc[shop.items.category == "Kitchen", "item_id"])
    assert not split.train["item_id"].isin(split.new_items).any()
    # users and ground truth are those of the split without new items; only training loses rows
    for seg in base.users:
        np.testing.assert_array_equal(base.users[seg], split.users[seg])
        pd.testing.assert_frame_equal(base.heldout[seg], split.heldout[seg])
    assert len(split.train) + len(split.withheld) == len(base.train)
    assert split.withheld["item_id"].isin(split.new_items).all()
    # the new-item segments: held-out interactions with new items of test users and of validation users
    test_truth = split.new_item_truth("new_items")
    assert len(test_truth) > 0 and test_truth["item_id"].isin(split.new_items).all()
    held_test = pd.concat([split.heldout["cold_start_test"], split.heldout["warm_test"]])
    assert len(test_truth) == held_test["item_id"].isin(split.new_items).sum()
    val_truth = split.new_item_truth("new_items_val")
    assert set(val_truth["user_id"]) <= set(split.users["cold_start_val"])
    sizes = split.sizes()
    assert sizes["new_items"] == len(split.new_items) and sizes["new_items_interactions"] == len(test_truth)


def test_leak_check_catches_a_new_item_in_training(shop) -> None:
    split = make_split(shop, "Food", "Kitchen", NEW, seed=0)
    split.check_no_leak()
    # a training interaction of a new item by a user who never held it out: only the new-item rule catches it
    planted = split.withheld.iloc[[0]]
    split.train = pd.concat([split.train, planted], ignore_index=True)
    with pytest.raises(LeakError, match=f"new item {planted.item_id.iloc[0]}"):
        split.check_no_leak()


def test_matrices_carry_the_new_item_segments(shop) -> None:
    from tfrec_xcat.features.matrices import SplitMatrices

    split = make_split(shop, "Food", "Kitchen", NEW, seed=0)
    m = SplitMatrices.from_split(shop, split)
    np.testing.assert_array_equal(m.target_items[m.new_item_cols], split.new_items)
    assert m.target[:, m.new_item_cols].nnz == 0
    assert m.truth["new_items"].nnz == len(split.new_item_truth("new_items"))
    outside = np.setdiff1d(np.arange(len(m.target_items)), m.new_item_cols)
    assert m.truth["new_items"][:, outside].nnz == 0
    assert m.truth["new_items"].multiply(m.truth["cold_start_test"]).nnz > 0


def test_bad_new_item_fraction() -> None:
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="new_item_fraction"):
            SplitSpec(new_item_fraction=bad)
    from tfrec_xcat.config import load_config
    from tfrec_xcat.errors import ConfigError

    with pytest.raises(ConfigError, match=r"split.*new_item_fraction must be >= 0 and < 1, got 1.5"):
        load_config(None, {"split": {"new_item_fraction": 1.5}})
    assert load_config(None, {"split": {"new_item_fraction": 0.1}}).split.new_item_fraction == 0.1
