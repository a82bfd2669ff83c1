"""Each metric against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfrec_xcat.evaluation.metrics import rank_metrics


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
