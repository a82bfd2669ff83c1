"""The memorisation feature: how often a user's source items co-occur with each target item.

C[s, t] counts the overlap TRAINING users (active in both categories) who have source item s and target item t.
A user's memorisation score for t is ``Σ_{s ∈ H} C[s, t]`` over the source items H of the history the model
reads (the last ``history_per_category`` items per category, :func:`~tfrec_xcat.features.space.history_table`),
so training, evaluation, serving and batch scoring all compute it from the same history.

C is kept in model item indices (rows: any item, non-zero only for source items; columns: target items in the
evaluator's order). For training, the scores of every user are precomputed; a training user's scores for their
own target items include their own contribution to C, which is removed exactly (leave-one-out: one per source
item in H), so the model cannot learn to trust a count that a cold-start user would never have. Each user keeps
the ``per_user`` largest training scores (the exact scores are used everywhere else).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.features.matrices import SplitMatrices
from tfrec_xcat.features.sparse import top_k_per_row


def history_multi_hot(history: np.ndarray, n_items: int) -> sp.csr_matrix:
    """(users × n_items + 1) binary matrix of the items in each row of a history table (0 = padding dropped)."""
    rows = np.repeat(np.arange(history.shape[0]), history.shape[1])
    cols = history.ravel()
    keep = cols > 0
    out = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])), shape=(history.shape[0], n_items + 1)
    )
    out.data[:] = 1.0  # an item twice in a history counts once
    return out


def overlap_counts(m: SplitMatrices) -> sp.csr_matrix:
    """C in the matrices' own columns: ``n_source × n_target`` float64 counts over the overlap training users."""
    both = m.overlap_rows()
    return (m.source[both].T @ m.target[both]).tocsr().astype(np.float64)


def cooccurrence_counts(m: SplitMatrices, source_index: np.ndarray, n_items: int) -> sp.csr_matrix:
    """C in model item indices: ``(n_items + 1) × n_target`` float32; ``source_index`` maps the source columns of
    ``m`` to model item indices."""
    counts = overlap_counts(m).tocoo()
    return sp.csr_matrix(
        (counts.data.astype(np.float32), (source_index[counts.row], counts.col)), shape=(n_items + 1, counts.shape[1])
    )


def memorisation_scores(history: np.ndarray, counts: sp.csr_matrix) -> sp.csr_matrix:
    """Exact scores ``(rows of history) × n_target`` (no leave-one-out: for scoring users)."""
    return (history_multi_hot(history, counts.shape[0] - 1) @ counts).tocsr()


def training_scores(
    history: np.ndarray, counts: sp.csr_matrix, own_target: sp.csr_matrix, per_user: int, block: int = 4096
) -> sp.csr_matrix:
    """Leave-one-out scores of every user (rows of ``history``; ``own_target``: their target training items, same
    rows), the ``per_user`` largest of each row."""
    source_rows = np.asarray(counts.getnnz(axis=1) > 0)
    parts = []
    for start in range(0, history.shape[0], block):
        rows = slice(start, min(start + block, history.shape[0]))
        hot = history_multi_hot(history[rows], counts.shape[0] - 1)
        n_source = np.asarray(hot[:, source_rows].sum(axis=1)).ravel().astype(np.float32)
        scores = (hot @ counts).tocsr() - sp.diags(n_source) @ own_target[rows].astype(np.float32)
        scores = scores.tocsr()
        scores.data[scores.data < 0.5] = 0.0  # whole counts: what is left below 1 is a user's own contribution
        scores.eliminate_zeros()
        parts.append(top_k_per_row(scores, per_user))
    return sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, counts.shape[1]), dtype=np.float32)
