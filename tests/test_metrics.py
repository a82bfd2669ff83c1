"""Each metric against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tfrec_xcat.evaluation.metrics import list_ndcg, rank_metrics


def test_hand_computed_single_user() -> None:
    # 60 items; scores make the ranking 0, 1, 2, ...; relevant: items 1 and 12; item 0 is excluded (training).
    scores = -np.arange(60, dtype=float)[None, :]
    exclude = np.zeros((1, 60))
    exclude[0, 0] = 1
    truth = np.zeros((1, 60))
    truth[0, [1, 12]] = 1
    m = rank_metrics(scores, exclude, truth)
    # after excluding item 0, item 1 is at rank 1 and item 12 at rank 12
    assert m["recall@10"][0] == pytest.approx(0.5)
    assert m["recall@20"][0] == pytest.approx(1.0)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@10"][0] == pytest.approx(1 / idcg)
    assert m["ndcg@20"][0] == pytest.approx((1 + 1 / math.log2(13)) / idcg)
    assert m["hitrate@10"][0] == 1.0
    assert m["mrr"][0] == pytest.approx(1.0)


def test_mrr_and_misses() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    truth = np.array([[0, 0, 1, 0], [0, 0, 0, 0]])
    m = rank_metrics(scores, np.zeros_like(scores), truth)
    assert m["mrr"][0] == pytest.approx(1 / 3)
    assert m["ndcg@10"][0] == pytest.approx(1 / math.log2(4))
    assert m["recall@10"][1] == 0 and m["mrr"][1] == 0  # no ground truth: zero, not NaN


def test_ties_break_by_item_index() -> None:
    scores = np.zeros((1, 100))
    truth = np.zeros((1, 100))
    truth[0, 99] = 1
    m = rank_metrics(scores, np.zeros_like(scores), truth)
    assert m["recall@50"][0] == 0 and m["mrr"][0] == pytest.approx(1 / 100)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),  # users
    st.integers(12, 40),  # items
    st.integers(10, 24),  # list length
    st.integers(0, 10_000),
    st.booleans(),  # integer scores: many ties
)
def test_list_ndcg_equals_the_full_ranking(users: int, items: int, length: int, seed: int, ties: bool) -> None:
    """NDCG@10 of the lists alone equals rank_metrics' NDCG@10 of a full ranking that puts every list candidate
    first (ties, duplicates in a list, excluded and relevant items outside the lists included)."""
    rng = np.random.default_rng(seed)
    length = min(length, items)
    columns = np.stack([rng.choice(items, size=length, replace=False) for _ in range(users)])
    mask = np.ones(columns.shape, dtype=bool)
    duplicate = rng.random(columns.shape) < 0.1
    columns[:, 1:] = np.where(duplicate[:, 1:], columns[:, :-1], columns[:, 1:])
    mask[:, 1:] &= ~duplicate[:, 1:]
    exclude = sp.csr_matrix(rng.random((users, items)) < 0.1)
    owned = np.take_along_axis(exclude.toarray(), columns, axis=1)
    mask &= ~owned
    for u in range(users):  # top up lists that fell short with fresh items (masked ones stay in place)
        free = [c for c in range(items) if c not in set(columns[u][mask[u]]) and not exclude[u, c]]
        for slot in np.flatnonzero(~mask[u])[: max(10 - int(mask[u].sum()), 0)]:
            if free:
                columns[u, slot], mask[u, slot] = free.pop(), True
    assume(mask.sum(axis=1).min() >= 10)
    truth = sp.csr_matrix(rng.random((users, items)) < 0.15)
    scores = (
        rng.integers(0, 4, columns.shape).astype(np.float32) if ties else rng.random(columns.shape).astype(np.float32)
    )
    full = np.where(rng.random((users, items)) < 0.5, -1e4, -1e4 - 1.0).astype(np.float32)  # everything else below
    user = np.broadcast_to(np.arange(users)[:, None], columns.shape)
    full[user[mask], columns[mask]] = scores[mask]
    expected = rank_metrics(full, exclude, truth)["ndcg@10"]
    np.testing.assert_allclose(list_ndcg(columns, scores, mask, truth, exclude), expected, atol=1e-12)


def test_list_ndcg_needs_long_enough_lists() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        list_ndcg(
            np.zeros((1, 5), int), np.zeros((1, 5)), np.ones((1, 5), bool), sp.csr_matrix((1, 5)), sp.csr_matrix((1, 5))
        )
