"""Full-ranking metrics over ALL target items (no sampled negatives), excluding each user's training items.

``rank_metrics`` takes a score matrix (users × target items), a mask of items to exclude, and the held-out
items of each user; it returns per-user Recall@k, NDCG@k (binary relevance, ideal DCG over min(|truth|, k)),
HitRate@10 and MRR (1 / rank of the best-ranked relevant item in the full ranking). Ties are broken by item
index, so results are deterministic.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

KS = (10, 20, 50)


def metric_names() -> list[str]:
    return [*(f"recall@{k}" for k in KS), *(f"ndcg@{k}" for k in KS), "hitrate@10", "mrr"]


def rank_metrics(
    scores: np.ndarray, exclude: sp.csr_matrix | np.ndarray, truth: sp.csr_matrix
) -> dict[str, np.ndarray]:
    """Per-user metrics (arrays of length n_users) for one block of users."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    n_users, n_items = scores.shape
    excl = exclude.toarray() if sp.issparse(exclude) else np.asarray(exclude)
    rel = truth.toarray().astype(bool) if sp.issparse(truth) else np.asarray(truth, dtype=bool)
    rel &= ~excl.astype(bool)
    scores[excl.astype(bool)] = -np.inf
    kmax = min(max(KS), n_items)
    # top-kmax by score, ties by lower item index: sort on (-score, index) within the partitioned candidates
    part = (
        np.argpartition(-scores, kmax - 1, axis=1)[:, :kmax]
        if kmax < n_items
        else np.tile(np.arange(n_items), (n_users, 1))
    )
    part_scores = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -part_scores), axis=1)
    top = np.take_along_axis(part, order, 1)
    hits = np.take_along_axis(rel, top, 1)
    n_rel = rel.sum(1)
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    out: dict[str, np.ndarray] = {}
    for k in KS:
        kk = min(k, kmax)
        h = hits[:, :kk]
        out[f"recall@{k}"] = np.divide(h.sum(1), n_rel, out=np.zeros(n_users), where=n_rel > 0)
        dcg = (h * discounts[:kk]).sum(1)
        ideal = np.cumsum(discounts[:kk])[np.clip(np.minimum(n_rel, kk) - 1, 0, None)]
        out[f"ndcg@{k}"] = np.where(n_rel > 0, dcg / ideal, 0.0)
    out["hitrate@10"] = (hits[:, : min(10, kmax)].sum(1) > 0).astype(float)
    # MRR: rank of the best relevant item = 1 + items scored strictly higher (+ equal ones with lower index)
    best = np.where(rel, scores, -np.inf)
    best_item = np.argmax(best, axis=1)
    best_score = best[np.arange(n_users), best_item]
    higher = (scores > best_score[:, None]).sum(1)
    ties = ((scores == best_score[:, None]) & (np.arange(n_items)[None, :] < best_item[:, None])).sum(1)
    out["mrr"] = np.where(n_rel > 0, 1.0 / (1 + higher + ties), 0.0)
    return out


def list_ndcg(
    columns: np.ndarray,
    scores: np.ndarray,
    mask: np.ndarray,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix,
    k: int = 10,
) -> np.ndarray:
    """Per-user NDCG@k of a ranking that puts every candidate of a user's list above every other item: the
    candidates are ``columns[u][mask[u]]``, ordered by ``scores`` (ties by lower column, as :func:`rank_metrics`
    breaks them); ``truth`` and ``exclude`` are the users' rows. Equal to ``rank_metrics``' NDCG@k of such a
    ranking, without scoring the items outside the lists. Every list needs at least ``k`` candidates (else its
    top k would reach outside it)."""
    if int(mask.sum(axis=1).min(initial=k)) < k:
        raise ValueError(f"every list needs at least {k} candidates for NDCG@{k} of the lists alone")
    rel = truth.toarray().astype(bool) & ~exclude.toarray().astype(bool)
    n_rel = rel.sum(axis=1)
    hits_all = np.take_along_axis(rel, columns, axis=1) & mask
    keyed = np.where(mask, -np.asarray(scores, dtype=np.float64), np.inf)
    order = np.lexsort((columns, keyed), axis=1)[:, :k]
    hits = np.take_along_axis(hits_all, order, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits * discounts).sum(1)
    ideal = np.cumsum(discounts)[np.clip(np.minimum(n_rel, k) - 1, 0, None)]
    return np.where(n_rel > 0, dcg / ideal, 0.0)
