"""New-arrival slots: positions of the top ``window`` kept for items no one has interacted with yet.

A ranking trained to maximise NDCG puts an item with memorisation evidence and popularity above any new item for
nearly every user (docs/results.md, sessions 5 and 8): left to itself, ``transfer`` never shows a product a shop
has just added, however well its content path places it among the other new items. This policy is the shop's
decision to give new items exposure (``[ranker] new_item_slots``, off by default): the first ``window - slots``
positions stay as the final stage ranks them; the next ``slots`` go to the user's best new items; then everything
else, in its order. :func:`slot_order` ranks the new items (``[ranker] new_item_order``): by the two-tower's score
(its content path is all it knows of a new item), by the cosine of the item's text with the user's text profile
(:class:`~tfrec_xcat.features.content.ContentIndex`), or, by default (``mix``), by the two-tower's score for a
cold-start user and by the sum of the two as per-user z-scores over the new items for a user with history in the
target category. A cold-start user's profile holds only source-category words, which a target item's title rarely
shares (Food→Kitchen, 5 slots, new-item NDCG@10 of the cold-start test users: 0.0052 by the two-tower, 0.0019 by
the text profile; of the warm ones 0.0014 and 0.0185: docs/results.md, session 9); the cold-start validation users
agree on every run measured.

"New" is a catalogue item with no training interaction (popularity 0): in ``run`` the items the split withheld or
no one bought, in an exported model the items ``reindex`` added too. :func:`reserve` is the NumPy rule;
:func:`tfrec_xcat.export.recommend.reserve_graph` computes the same with stock TensorFlow ops (parity test:
``tests/test_new_arrivals.py``), and :func:`tfrec_xcat.export.recommend.slot_order_graph` the order. Ties are
broken by column, as ``tf.math.top_k`` breaks them.
"""

from __future__ import annotations

import numpy as np

from tfrec_xcat.models.ranking_spec import check_slots


def new_z(scores: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(U, T) per-row z-scores of ``scores`` over the finite cells of the ``new`` columns (population standard
    deviation; 0 where a row has no spread there); -inf in every other cell."""
    scores = np.asarray(scores, np.float64)
    cells = new[None, :] & np.isfinite(scores)
    count = cells.sum(axis=1, keepdims=True)
    values = np.where(cells, scores, 0.0)
    mean = values.sum(axis=1, keepdims=True) / np.maximum(count, 1)
    spread = np.where(cells, values - mean, 0.0)
    std = np.sqrt((spread**2).sum(axis=1, keepdims=True) / np.maximum(count, 1))
    z = np.divide(spread, std, out=np.zeros_like(spread), where=std > 0)
    return np.where(cells, z, -np.inf)


def slot_order(
    deep: np.ndarray, content: np.ndarray | None, new: np.ndarray, order: str = "mix", warm: np.ndarray | None = None
) -> np.ndarray:
    """(U, T) the scores :func:`reserve` picks the slots' new items by: ``deep`` (the two-tower's (U, T) scores,
    -inf: not eligible), ``content`` (the (U, T) text-profile cosines, None when the items have no text), or
    (``order = "mix"``) per-row z-scores over the new items of deep, plus those of content in the rows of
    ``warm`` ((U,) bool: the users with target-category history; None: every row). Without content: deep."""
    deep = np.asarray(deep, np.float64)
    if order == "deep" or content is None:
        return deep
    content = np.where(np.isfinite(deep), np.asarray(content, np.float64), -np.inf)
    if order == "content":
        return content
    text = new_z(content, new)
    if warm is not None:
        text = np.where(np.asarray(warm, bool)[:, None], text, 0.0)
    return new_z(deep, new) + text


def reserve(scores: np.ndarray, deep: np.ndarray, new: np.ndarray, slots: int, window: int) -> np.ndarray:
    """(U, T) float64 scores whose order puts the ``slots`` best new items (by ``deep``, or any order of
    :func:`slot_order`) at positions ``window - slots + 1 .. window`` of every row.

    ``scores`` are the final stage's (U, T) scores (-inf: never recommended), ``deep`` the (U, T) scores the new
    items are picked by, ``new`` a (T,) bool mask. The ``window - slots`` best items keep their scores (the head);
    the new items picked get ``h - 1 - j`` (h: the head's lowest finite score, j: 0 for the best new item); every
    other item moves down by ``slots + 1``, below the last slot and in its own order. A row with fewer new items
    than slots fills what it can; a new item the user cannot get (-inf) is never picked."""
    check_slots(slots, window)
    scores = np.asarray(scores, dtype=np.float64)
    if slots == 0 or not len(scores):
        return scores
    rows = np.arange(len(scores))[:, None]
    width = scores.shape[1]
    head_n = min(window - slots, width)
    head_cols = np.argsort(-scores, axis=1, kind="stable")[:, :head_n]
    head = np.zeros(scores.shape, dtype=bool)
    head[rows, head_cols] = True
    head_values = scores[rows, head_cols]
    finite_head = np.where(np.isfinite(head_values), head_values, np.inf).min(axis=1)
    low = np.where(np.isfinite(finite_head), finite_head, 0.0)
    candidates = np.where(new[None, :] & ~head & np.isfinite(scores), np.asarray(deep, np.float64), -np.inf)
    take = min(slots, width)
    picks = np.argsort(-candidates, axis=1, kind="stable")[:, :take]
    valid = np.isfinite(candidates[rows, picks])
    out = np.where(head, scores, scores - (slots + 1))
    values = low[:, None] - 1.0 - np.arange(take)[None, :]
    r, j = np.nonzero(valid)
    out[r, picks[r, j]] = values[r, j]
    return out
