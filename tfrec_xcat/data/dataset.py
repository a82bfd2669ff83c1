"""The one representation every reader produces: interactions + item metadata (:class:`ShopData`).

``interactions`` has one row per (user, item): ``user_id``, ``item_id``, ``category`` and ``position`` (the
item's place in the user's history, oldest first, across all categories), plus ``timestamp``/``rating`` when
the source has them. ``items`` has one row per item: ``item_id``, ``category`` and the text columns;
``vectors`` holds, per configured vector column, the items' precomputed vectors (:mod:`tfrec_xcat.data.vectors`).
Ids and categories are strings. ``to_tf_dataset`` gives the same rows as a ``tf.data.Dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from tfrec_xcat.data.problems import ReadReport
from tfrec_xcat.data.vectors import ItemVectors
from tfrec_xcat.errors import DataError

if TYPE_CHECKING:
    import tensorflow as tf

INTERACTION_KEYS = ("user_id", "item_id", "category")
ITEM_KEYS = ("item_id", "category")


@dataclass
class ShopData:
    """Interactions and item metadata of a multi-category shop, with the report of what was bad in them."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    text_columns: list[str]
    report: ReadReport = field(default_factory=ReadReport)
    name: str = ""
    vectors: dict[str, ItemVectors] = field(default_factory=dict)  # vector column -> its items' vectors

    def __post_init__(self) -> None:
        missing = [c for c in (*INTERACTION_KEYS, "position") if c not in self.interactions.columns]
        if missing:
            raise ValueError(f"interactions lack columns {missing}")
        missing = [c for c in (*ITEM_KEYS, *self.text_columns) if c not in self.items.columns]
        if missing:
            raise ValueError(f"items lack columns {missing}")

    # ----------------------------------------------------------------------------------------- facts
    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions.columns

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions.columns

    def categories(self) -> list[str]:
        """Categories that have at least one interaction, sorted."""
        return sorted(self.interactions["category"].unique().tolist())

    def require_category(self, name: str) -> str:
        """Return ``name`` if the data has it, else raise a one-line error listing the known ones."""
        known = self.categories()
        if name not in known:
            raise DataError(f"unknown category {name!r} in {self.name or 'the data'}; known: {', '.join(known)}")
        return name

    def users_in(self, category: str) -> np.ndarray:
        """Sorted ids of the users with at least one interaction in ``category``."""
        frame = self.interactions
        return np.sort(frame.loc[frame["category"] == category, "user_id"].unique())

    def overlap_users(self, source: str, target: str) -> np.ndarray:
        """Sorted ids of the users active in both ``source`` and ``target``."""
        self.require_category(source)
        self.require_category(target)
        return np.intersect1d(self.users_in(source), self.users_in(target))

    def summary(self) -> dict[str, object]:
        """Counts per category and overall, for ``data inspect`` and reports."""
        inter = self.interactions
        per_cat = {}
        for cat in self.categories():
            rows = inter[inter["category"] == cat]
            per_cat[cat] = {
                "users": int(rows["user_id"].nunique()),
                "items": int((self.items["category"] == cat).sum()),
                "items_with_interactions": int(rows["item_id"].nunique()),
                "interactions": len(rows),
            }
        return {
            "users": int(inter["user_id"].nunique()),
            "items": len(self.items),
            "interactions": len(inter),
            "categories": per_cat,
            "text_columns": list(self.text_columns),
            "vector_columns": {name: v.dim for name, v in self.vectors.items()},
            "has_ratings": self.has_ratings,
            "has_timestamps": self.has_timestamps,
        }

    def item_text(self) -> pd.Series:
        """The item's text columns joined into one string per item (indexed by item_id)."""
        return join_text(self.items.set_index("item_id"), self.text_columns)

    # ---------------------------------------------------------------------------------------- tf.data
    def to_tf_dataset(self, frame: pd.DataFrame | None = None) -> tf.data.Dataset:
        """Interactions (or the given subset of them) as a ``tf.data.Dataset`` of feature dicts."""
        import tensorflow as tf

        frame = self.interactions if frame is None else frame
        features: dict[str, np.ndarray] = {
            "user_id": frame["user_id"].to_numpy(dtype=object).astype(bytes),
            "item_id": frame["item_id"].to_numpy(dtype=object).astype(bytes),
            "category": frame["category"].to_numpy(dtype=object).astype(bytes),
            "position": frame["position"].to_numpy(dtype=np.int64),
        }
        if "timestamp" in frame.columns:
            features["timestamp"] = frame["timestamp"].to_numpy(dtype=np.int64)
        if "rating" in frame.columns:
            features["rating"] = frame["rating"].to_numpy(dtype=np.float32)
        return tf.data.Dataset.from_tensor_slices(features)


def finish_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Give interactions canonical dtypes and a ``position`` column, ordered by user then position.

    Where the source has no ``position``, it is the rank of the timestamp within the user's history (ties and
    missing timestamps keep file order), or plain file order when there are no timestamps.
    """
    frame = frame.reset_index(drop=True)
    for col in INTERACTION_KEYS:
        frame[col] = frame[col].astype(str)
    if "position" not in frame.columns:
        frame["_order"] = np.arange(len(frame))
        keys = ["user_id", "timestamp", "_order"] if "timestamp" in frame.columns else ["user_id", "_order"]
        ordered = frame.sort_values(keys, kind="stable")
        frame.loc[ordered.index, "position"] = ordered.groupby("user_id", sort=False).cumcount().to_numpy()
        frame = frame.drop(columns="_order")
    frame["position"] = frame["position"].astype(np.int64)
    if "timestamp" in frame.columns:
        frame["timestamp"] = frame["timestamp"].astype(np.int64)
    if "rating" in frame.columns:
        frame["rating"] = frame["rating"].astype(np.float32)
    frame = frame.sort_values(["user_id", "position"], kind="stable").reset_index(drop=True)
    return frame


def join_text(items: pd.DataFrame, columns: list[str]) -> pd.Series:
    """The text columns of ``items`` joined into one string per row, as the item tower reads an item's text."""
    if not columns:
        return pd.Series("", index=items.index, dtype=object)
    parts = [items[c].fillna("").astype(str) for c in columns]
    text = parts[0]
    for p in parts[1:]:
        text = text.str.cat(p, sep=" | ")
    return text.str.strip(" |")
