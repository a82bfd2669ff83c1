"""The new-arrival slots' order (:func:`tfrec_xcat.training.new_arrivals.slot_order`) and the text profile behind
it (:class:`tfrec_xcat.features.content.ContentIndex`): a new text vectorised later equals the catalogue's vector
of the same text, and the stock-op twins (``content_graph``, ``slot_order_graph``) equal the NumPy rules on
generated term matrices, histories and score matrices (empty histories and rows, ties, -inf cells)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrec_xcat.config import load_config
from tfrec_xcat.errors import ConfigError
from tfrec_xcat.export.recommend import CsrRows, content_graph, slot_order_graph
from tfrec_xcat.features.content import GRID, ContentIndex
from tfrec_xcat.training.new_arrivals import reserve, slot_order

SOURCE = pd.Series(["organic green tea", "dark roast coffee beans", "green tea matcha powder", ""])
TARGET = pd.Series(["ceramic tea pot", "coffee grinder burr", "glass tea cups set", "steel whisk", "tea kettle"])


@pytest.mark.parametrize("params", GRID)
def test_a_text_vectorised_later_equals_the_catalogue_vector(params: dict) -> None:
    index = ContentIndex.build(SOURCE, TARGET, params)
    assert index is not None and index.n_terms > 0
    again = index.vectorize(TARGET).toarray()
    np.testing.assert_allclose(again, index.target_terms.toarray(), rtol=1e-12, atol=1e-15)
    # a new text: known words keep their weights' proportions, unknown words are dropped, nothing known → empty
    new = index.vectorize(["green coffee gadget", "zzz unknown"]).toarray()
    assert new[0].sum() > 0 and np.isclose(np.linalg.norm(new[0]), 1.0) and not new[1].any()


def test_no_text_gives_no_index() -> None:
    assert ContentIndex.build(pd.Series(["", " "]), pd.Series([""]), {}) is None


def csr(matrix: sp.csr_matrix) -> CsrRows:
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    return CsrRows(
        tf.constant(matrix.indptr, tf.int64), tf.constant(matrix.indices, tf.int64), tf.constant(matrix.data)
    )


@st.composite
def profiles(draw: st.DrawFn) -> tuple[ContentIndex, np.ndarray, np.ndarray]:
    n_source, n_target, n_terms, users = (draw(st.integers(1, 6)) for _ in range(4))
    weights = st.sampled_from([0.0, 0.0, 0.3, 1.0, 2.5])  # mostly empty rows, repeated weights

    def terms(rows: int) -> sp.csr_matrix:
        dense = np.array(draw(st.lists(weights, min_size=rows * n_terms, max_size=rows * n_terms)))
        matrix = sp.csr_matrix(dense.reshape(rows, n_terms))
        return sp.csr_matrix(matrix.multiply(1.0 / np.maximum(sp.linalg.norm(matrix, axis=1), 1e-300)[:, None]))

    index = ContentIndex(
        vocabulary=[f"t{i}" for i in range(n_terms)],
        weighting="bm25",
        sublinear_tf=False,
        idf=np.ones(n_terms),
        mean_length=1.0,
        profile=draw(st.sampled_from(["sum", "max"])),
        source_terms=terms(n_source),
        target_terms=terms(n_target),
    )
    hot = np.array(draw(st.lists(st.booleans(), min_size=users * n_source, max_size=users * n_source)))
    owned = np.array(draw(st.lists(st.booleans(), min_size=users * n_target, max_size=users * n_target)))
    return index, hot.reshape(users, n_source), owned.reshape(users, n_target)


@settings(max_examples=120, deadline=None)
@given(profiles())
def test_content_graph_equals_the_numpy_profile(case: tuple[ContentIndex, np.ndarray, np.ndarray]) -> None:
    index, hot, owned = case
    want = index.scores(sp.csr_matrix(hot.astype(np.float64)), sp.csr_matrix(owned.astype(np.float64))).toarray()
    got = content_graph(
        csr(index.source_terms),
        csr(index.target_terms),
        index.profile,
        index.n_terms,
        tf.constant(hot.astype(np.float64)),
        tf.constant(owned),
    ).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_slot_order_known_answer() -> None:
    # items 0-1 known, 2-5 new; deep prefers 2, the text profile 5; the mix of z-scores picks 4 (good at both)
    deep = np.array([[9.0, 8.0, 3.0, 1.0, 2.5, 0.0]])
    content = np.array([[0.9, 0.0, 0.0, 0.1, 0.6, 0.8]])
    new = np.array([False, False, True, True, True, True])
    scores = np.array([[9.0, 8.0, 1.0, 1.0, 1.0, 1.0]])
    first = {
        order: int(np.argsort(-reserve(scores, slot_order(deep, content, new, order), new, 1, 3))[0, 2])
        for order in ("deep", "content", "mix")
    }
    assert first == {"deep": 2, "content": 5, "mix": 4}
    # a cold-start user (no target history): mix orders by the two-tower alone
    cold = slot_order(deep, content, new, "mix", warm=np.array([False]))
    assert int(np.argsort(-reserve(scores, cold, new, 1, 3))[0, 2]) == 2
    np.testing.assert_array_equal(slot_order(deep, None, new, "mix"), deep)  # without a text profile: deep


@st.composite
def orders(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, np.ndarray]:
    users, items = draw(st.integers(1, 4)), draw(st.integers(1, 12))
    cells = users * items
    deep = draw(st.lists(st.sampled_from([-np.inf, -2.0, 0.0, 0.5, 3.0]), min_size=cells, max_size=cells))
    content = draw(st.lists(st.sampled_from([0.0, 0.0, 0.2, 0.7, 1.0]), min_size=cells, max_size=cells))
    new = np.array(draw(st.lists(st.booleans(), min_size=items, max_size=items)))
    order = draw(st.sampled_from(["mix", "deep", "content"]))
    warm = np.array(draw(st.lists(st.booleans(), min_size=users, max_size=users)))
    return np.array(deep).reshape(users, items), np.array(content).reshape(users, items), new, order, warm


@settings(max_examples=150, deadline=None)
@given(orders())
def test_slot_order_graph_equals_numpy(case: tuple[np.ndarray, np.ndarray, np.ndarray, str, np.ndarray]) -> None:
    deep, content, new, order, warm = case
    want = slot_order(deep, content, new, order, warm)
    got = slot_order_graph(tf.constant(deep), tf.constant(content), tf.constant(new), order, tf.constant(warm))
    got = got.numpy()
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12, atol=1e-12)
    if order != "deep":  # only the new items a user can get are ordered
        assert not np.isfinite(want[:, ~new]).any() or order == "content"
        assert not np.isfinite(want[~np.isfinite(deep)]).any()
    if order == "mix":  # a cold-start row is ordered as the two-tower orders it
        for u in np.flatnonzero(~warm):
            finite = np.isfinite(want[u])
            ranked = np.lexsort((np.arange(len(new))[finite], -want[u][finite]))
            assert (np.diff(deep[u][finite][ranked]) <= 0).all()


def test_new_item_order_config_errors_name_the_key() -> None:
    assert load_config(None, {}).ranker.new_item_order == "mix"
    assert load_config(None, {"ranker": {"new_item_order": "deep"}}).ranker.new_item_order == "deep"
    with pytest.raises(ConfigError, match=r"ranker.*new_item_order must be one of mix, deep, content"):
        load_config(None, {"ranker": {"new_item_order": "bm25"}})
