"""Integer-indexed sparse views of a cold-start split, for the matrix baselines and the evaluator.

Users are indexed over everyone in the data (cold-start users included: they have source history), items over
the catalog of each category (items with no training interaction included, so rankings cover ALL target items).
When the split has new items, ``truth`` and ``segment_users`` also hold the new-item segments (``new_items``,
``new_items_val``: held-out interactions with new items only) and ``new_item_cols`` their target columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.split import NEW_ITEM_SEGMENTS, ColdStartSplit


def _csr(frame: pd.DataFrame, users: pd.Index, items: pd.Index) -> sp.csr_matrix:
    rows = users.get_indexer(frame["user_id"])
    cols = items.get_indexer(frame["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    data = np.ones(int(keep.sum()), dtype=np.float32)
    return sp.csr_matrix((data, (rows[keep], cols[keep])), shape=(len(users), len(items)), dtype=np.float32)


@dataclass
class SplitMatrices:
    """Binary user × item matrices of the training interactions in source and target, and the held-out truth."""

    users: pd.Index
    source_items: pd.Index
    target_items: pd.Index
    source: sp.csr_matrix  # training interactions, users × source items
    target: sp.csr_matrix  # training interactions, users × target items
    truth: dict[str, sp.csr_matrix]  # per segment: users × target items held out
    segment_users: dict[str, np.ndarray]  # per segment: row indices into ``users``
    new_item_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # sorted target columns

    @classmethod
    def from_split(cls, data: ShopData, split: ColdStartSplit) -> SplitMatrices:
        users = pd.Index(np.sort(data.interactions["user_id"].unique()))
        items = data.items
        source_items = pd.Index(np.sort(items.loc[items["category"] == split.source, "item_id"].to_numpy()))
        target_items = pd.Index(np.sort(items.loc[items["category"] == split.target, "item_id"].to_numpy()))
        train = split.train
        truth = {seg: _csr(frame, users, target_items) for seg, frame in split.heldout.items()}
        segment_users = {seg: users.get_indexer(u) for seg, u in split.users.items()}
        new_cols = target_items.get_indexer(split.new_items)
        new_cols = np.sort(new_cols[new_cols >= 0]).astype(np.int64)
        if len(split.new_items):
            for seg in NEW_ITEM_SEGMENTS:
                truth[seg] = _csr(split.new_item_truth(seg), users, target_items)
                segment_users[seg] = users.get_indexer(split.new_item_users(seg))
        return cls(
            users=users,
            source_items=source_items,
            target_items=target_items,
            source=_csr(train[train["category"] == split.source], users, source_items),
            target=_csr(train[train["category"] == split.target], users, target_items),
            truth=truth,
            segment_users=segment_users,
            new_item_cols=new_cols,
        )

    def overlap_rows(self) -> np.ndarray:
        """Training users with both source and target training interactions (what transfer is learned on)."""
        return np.flatnonzero((self.source.getnnz(axis=1) > 0) & (self.target.getnnz(axis=1) > 0))

    def source_history_length(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.source[rows].getnnz(axis=1))
