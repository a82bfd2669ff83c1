"""New-arrival slots (:mod:`tfrec_xcat.training.new_arrivals`): a known answer, the rule's properties on generated
score matrices (ties, -inf cells, fewer new items than slots), the stock-op twin equal to the NumPy rule, and the
config key's errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrec_xcat.config import load_config
from tfrec_xcat.errors import ConfigError
from tfrec_xcat.export.recommend import reserve_graph
from tfrec_xcat.training.new_arrivals import reserve


def order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")


def test_known_answer() -> None:
    # items 0-5 known, 6-8 new; the final stage ranks the known ones first, the deep model prefers new item 8
    scores = np.array([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 1.0, 2.0, 3.0]])
    deep = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.9]])
    new = np.array([False] * 6 + [True] * 3)
    out = reserve(scores, deep, new, slots=2, window=5)
    # positions 1-3 as ranked, 4-5 the best new items by deep, then the rest in their order
    assert order(out)[0].tolist() == [0, 1, 2, 8, 7, 3, 4, 5, 6]
    assert reserve(scores, deep, new, slots=0, window=5).tolist() == scores.tolist()


def test_a_new_item_already_in_the_head_stays_and_owned_items_are_never_picked() -> None:
    scores = np.array([[5.0, 9.0, -np.inf, 1.0, 0.0]])  # new item 1 is ranked first on its own merits
    deep = np.array([[0.0, 0.0, 9.0, 0.5, 0.1]])  # new item 2 would win the slot but the user has it (-inf)
    new = np.array([False, True, True, True, True])
    out = reserve(scores, deep, new, slots=1, window=2)
    assert order(out)[0][:3].tolist() == [1, 3, 0]
    assert out[0, 2] == -np.inf


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    users = draw(st.integers(1, 4))
    items = draw(st.integers(1, 30))
    window = draw(st.integers(1, 12))
    slots = draw(st.integers(0, window - 1))
    levels = st.sampled_from([-np.inf, -1e4, -3.0, 0.0, 0.5, 2.0, 7.0])  # ties and unreachable items on purpose
    scores = np.array(draw(st.lists(levels, min_size=users * items, max_size=users * items))).reshape(users, items)
    deep = np.array(
        draw(st.lists(st.sampled_from([-2.0, 0.0, 1.0, 3.0]), min_size=users * items, max_size=users * items))
    ).reshape(users, items)
    new = np.array(draw(st.lists(st.booleans(), min_size=items, max_size=items)))
    return scores, deep, new, slots, window


@settings(max_examples=150, deadline=None)
@given(cases())
def test_rule_properties_and_graph_twin(case: tuple[np.ndarray, np.ndarray, np.ndarray, int, int]) -> None:
    scores, deep, new, slots, window = case
    out = reserve(scores, deep, new, slots, window)
    head_n = min(window - slots, scores.shape[1])
    for u in range(len(scores)):
        before, after = order(scores[u : u + 1])[0], order(out[u : u + 1])[0]
        head = before[:head_n]
        assert after[:head_n].tolist() == head.tolist()  # the head keeps its items and their order
        eligible = [c for c in range(scores.shape[1]) if new[c] and c not in head and np.isfinite(scores[u, c])]
        want = sorted(eligible, key=lambda c: (-deep[u, c], c))[:slots]
        assert after[head_n : head_n + len(want)].tolist() == want  # then the best new items by the deep score
        rest = [c for c in before if c not in set(head) | set(want)]
        assert after[head_n + len(want) :].tolist() == rest  # then the rest, in its order
        assert np.array_equal(np.isfinite(out[u]), np.isfinite(scores[u]))  # nothing unreachable becomes reachable
    got = reserve_graph(tf.constant(scores), tf.constant(deep, tf.float32), tf.constant(new), slots, window).numpy()
    np.testing.assert_array_equal(got, out)


def test_config_errors_name_the_key() -> None:
    assert load_config(None, {"ranker": {"new_item_slots": 3}}).ranker.new_item_slots == 3
    with pytest.raises(ConfigError, match=r"ranker.*new_item_slots must be in \[0, new_item_window = 10\)"):
        load_config(None, {"ranker": {"new_item_slots": 10}})
    with pytest.raises(ConfigError, match=r"ranker.*new_item_window must be at least 1"):
        load_config(None, {"ranker": {"new_item_window": 0}})
    with pytest.raises(ConfigError, match=r"ranker.*new_item_slots"):
        load_config(None, {"ranker": {"new_item_slots": -1}})
