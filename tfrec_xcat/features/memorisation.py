"""The memorisation feature: how often each user's source items co-occur with each target item.

C = Sᵀ T counts, over overlap TRAINING users (active in both categories), the users who have source item s and
target item t. A user's memorisation score for t is ``Σ_{s ∈ source history} C[s, t]``. For a user who is
part of C, the score of their own target items includes their own contribution; it is removed exactly
(leave-one-out: ``|source history|`` per own target item), so the model cannot learn to trust a count that a
cold-start user would never have. Each user keeps the ``per_user`` largest scores (a sparse row).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.features.matrices import SplitMatrices
from tfrec_xcat.features.sparse import top_k_per_row


def cooccurrence_counts(m: SplitMatrices) -> sp.csr_matrix:
    """C[s, t]: overlap training users with source item s and target item t (float32)."""
    both = m.overlap_rows()
    return (m.source[both].T @ m.target[both]).tocsr().astype(np.float32)


def memorisation_scores(
    m: SplitMatrices, counts: sp.csr_matrix, per_user: int = 1000, block: int = 4096
) -> sp.csr_matrix:
    """(users × target items) leave-one-out memorisation scores, the ``per_user`` largest of each row."""
    own = m.target.astype(np.float32)
    history = np.asarray(m.source.getnnz(axis=1), dtype=np.float32)
    parts = []
    for start in range(0, m.source.shape[0], block):
        rows = slice(start, min(start + block, m.source.shape[0]))
        scores = (m.source[rows].astype(np.float32) @ counts).tocsr()
        scores = scores - sp.diags(history[rows]) @ own[rows]  # a user's own contribution to C (zero if not in C)
        scores.data[scores.data < 0.5] = 0.0  # counts are whole numbers: what is left below 1 is nothing
        scores.eliminate_zeros()
        parts.append(top_k_per_row(scores, per_user))
    return sp.vstack(parts).tocsr() if parts else sp.csr_matrix((0, counts.shape[1]), dtype=np.float32)
