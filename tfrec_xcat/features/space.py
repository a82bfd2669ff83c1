"""Integer feature space shared by the neural towers: vocabularies, item feature tables, user history table.

Index 0 is OOV/padding everywhere. Users are indexed in the order of :class:`SplitMatrices` (row + 1), items in
sorted-id order (+ 1), so the evaluator's rows and columns map to model indices without lookups. Item text is
tokenised once with a ``TextVectorization`` adapted on the item texts (content only, no interactions). The history
table holds, per user and per category, the last ``history_per_category`` items of the TRAINING split only: a
cold-start user's held-out target items can never be in it. Precomputed item vectors (``[data] vector_columns``)
become one table, the columns side by side in config order, with a mask per column (0 where an item has none).

This module owns the feature space's whole life: :func:`build_feature_space` makes it from a split,
:func:`training_view` restricts it to what a training mode may see, :func:`save_space` / :func:`load_space` write
it beside a trained model's weights and read it back for export.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.split import ColdStartSplit
from tfrec_xcat.features.matrices import SplitMatrices


@dataclass
class FeatureSpace:
    """Everything the towers need, as NumPy arrays (index 0 = OOV / padding)."""

    users: pd.Index  # user ids; model index = position + 1
    items: pd.Index  # item ids; model index = position + 1
    categories: list[str]  # model index = position + 1
    item_category: np.ndarray  # (n_items + 1,) int32
    item_tokens: np.ndarray  # (n_items + 1, max_tokens) int32
    vocabulary: list[str]  # token vocabulary ("" = padding, "[UNK]" = 1)
    history: np.ndarray  # (n_users + 1, n_categories * history_per_category) int32, per-category blocks
    history_per_category: int
    source: str
    target: str
    item_popularity: np.ndarray | None = None  # (n_items + 1,) training interactions per item
    # memorisation (features.memorisation), when the model uses it: C in model item indices
    # ((n_items + 1) × n_target), and the leave-one-out training scores ((n_users + 1) × n_target; not saved)
    memorisation: sp.csr_matrix | None = None
    memorisation_train: sp.csr_matrix | None = None
    # precomputed item vectors: column -> length (feature order), the (n_items + 1, total length) float32 table
    # (zeros where an item has no vector) and the (n_items + 1, n_columns) float32 mask (1 where it has one)
    vector_columns: dict[str, int] = field(default_factory=dict)
    item_vectors: np.ndarray | None = None
    item_vector_mask: np.ndarray | None = None
    # the initial title-token embedding table, when pretrained (features.text_pretraining; not saved: the trained
    # weights replace it)
    token_vectors: np.ndarray | None = None

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def category_index(self, name: str) -> int:
        return self.categories.index(name) + 1

    def item_index(self, ids: np.ndarray | pd.Series | list[str]) -> np.ndarray:
        """Model indices of item ids (0 for unknown ids)."""
        return (self.items.get_indexer(pd.Index(ids)) + 1).astype(np.int32)

    def user_index(self, ids: np.ndarray | pd.Series | list[str]) -> np.ndarray:
        """Model indices of user ids (0 for unknown ids)."""
        return (self.users.get_indexer(pd.Index(ids)) + 1).astype(np.int32)

    def items_of(self, category: str) -> np.ndarray:
        """Model indices of every item in ``category``, in sorted-id order (the evaluator's column order)."""
        return np.flatnonzero(self.item_category == self.category_index(category)).astype(np.int32)


def tokenize(texts: list[str], max_tokens: int, vocab_size: int) -> tuple[np.ndarray, list[str]]:
    """Adapt a ``TextVectorization`` on ``texts`` and return their token ids and the vocabulary.

    Memoised: a run builds the feature space of the same item texts for every model and seed, and each fresh
    layer's ``adapt`` traces a new tf.function (TensorFlow warns of retracing from the fifth)."""
    tokens, vocabulary = _tokenize(tuple(texts), max_tokens, vocab_size)
    return tokens.copy(), list(vocabulary)


@functools.lru_cache(maxsize=4)
def _tokenize(texts: tuple[str, ...], max_tokens: int, vocab_size: int) -> tuple[np.ndarray, tuple[str, ...]]:
    import tensorflow as tf
    import tf_keras

    layer = tf_keras.layers.TextVectorization(max_tokens=vocab_size, output_sequence_length=max_tokens)
    layer.adapt(tf.data.Dataset.from_tensor_slices(list(texts)).batch(4096))
    tokens = layer(tf.constant(texts)).numpy().astype(np.int32) if texts else np.zeros((0, max_tokens), np.int32)
    return tokens, tuple(layer.get_vocabulary())


def history_table(
    train: pd.DataFrame, users: pd.Index, items: pd.Index, categories: list[str], per_category: int
) -> np.ndarray:
    """(n_users + 1, n_categories * per_category) item indices: each user's last training items per category,
    oldest first within a block, right-aligned, 0-padded."""
    table = np.zeros((len(users) + 1, len(categories) * per_category), dtype=np.int32)
    frame = train[["user_id", "item_id", "category", "position"]].sort_values(["user_id", "position"], kind="stable")
    from_end = frame.groupby(["user_id", "category"], sort=False).cumcount(ascending=False).to_numpy()
    keep = from_end < per_category
    frame = frame.loc[keep]
    rows = users.get_indexer(frame["user_id"]) + 1
    block = pd.Index(categories).get_indexer(frame["category"])
    cols = block * per_category + (per_category - 1 - from_end[keep])
    ok = (rows > 0) & (block >= 0)
    table[rows[ok], cols[ok]] = items.get_indexer(frame["item_id"].to_numpy()[ok]) + 1
    return table


def vector_table(data: ShopData, items: pd.Index) -> tuple[dict[str, int], np.ndarray | None, np.ndarray | None]:
    """``(column lengths, table, mask)`` of the data's item vectors for ``items`` (row 0 = OOV: zeros, mask 0);
    ``({}, None, None)`` when the data has none."""
    if not data.vectors:
        return {}, None, None
    lookups = [v.lookup(items) for v in data.vectors.values()]
    table = np.zeros((len(items) + 1, sum(v.dim for v in data.vectors.values())), dtype=np.float32)
    mask = np.zeros((len(items) + 1, len(lookups)), dtype=np.float32)
    table[1:] = np.concatenate([vectors for vectors, _ in lookups], axis=1)
    mask[1:] = np.stack([found for _, found in lookups], axis=1)
    return {name: v.dim for name, v in data.vectors.items()}, table, mask


def build_feature_space(
    data: ShopData,
    split: ColdStartSplit,
    m: SplitMatrices,
    *,
    history_per_category: int = 20,
    max_tokens: int = 16,
    vocab_size: int = 20000,
) -> FeatureSpace:
    """The feature space of one split (history from ``split.train`` only)."""
    items = pd.Index(np.sort(data.items["item_id"].to_numpy()))
    categories = data.categories()
    item_frame = data.items.set_index("item_id").loc[items]
    item_category = np.zeros(len(items) + 1, dtype=np.int32)
    item_category[1:] = pd.Index(categories).get_indexer(item_frame["category"]) + 1
    text = data.item_text().loc[items].fillna("").tolist()
    tokens, vocabulary = tokenize(text, max_tokens, vocab_size)
    item_tokens = np.zeros((len(items) + 1, max_tokens), dtype=np.int32)
    item_tokens[1:] = tokens
    vector_columns, item_vectors, item_vector_mask = vector_table(data, items)
    return FeatureSpace(
        users=m.users,
        items=items,
        categories=categories,
        item_category=item_category,
        item_tokens=item_tokens,
        vocabulary=vocabulary,
        history=history_table(split.train, m.users, items, categories, history_per_category),
        history_per_category=history_per_category,
        source=split.source,
        target=split.target,
        item_popularity=np.bincount(items.get_indexer(split.train["item_id"]) + 1, minlength=len(items) + 1).astype(
            np.float32
        ),
        vector_columns=vector_columns,
        item_vectors=item_vectors,
        item_vector_mask=item_vector_mask,
    )


def training_view(space: FeatureSpace, train_frame: pd.DataFrame, mode: str) -> tuple[FeatureSpace, pd.DataFrame]:
    """The feature space and interactions a training mode sees: ``target_only`` sees no source data at all, so
    its history table is rebuilt from target interactions only; every other mode sees everything."""
    if mode != "target_only":
        return space, train_frame
    frame = train_frame[train_frame["category"] == space.target]
    history = history_table(frame, space.users, space.items, space.categories, space.history_per_category)
    return dataclasses.replace(space, history=history), frame


def save_space(space: FeatureSpace, directory: Path) -> None:
    """Write the feature space (vocabularies, item tables, history table) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    vectors = {}
    if space.item_vectors is not None:
        vectors = {"item_vectors": space.item_vectors, "item_vector_mask": space.item_vector_mask}
    np.savez_compressed(
        directory / "space.npz",
        users=np.asarray(space.users, dtype=object).astype(str),
        items=np.asarray(space.items, dtype=object).astype(str),
        item_category=space.item_category,
        item_tokens=space.item_tokens,
        history=space.history,
        item_popularity=space.item_popularity,
        **vectors,
    )
    if space.memorisation is not None:
        sp.save_npz(directory / "memorisation.npz", space.memorisation.tocsr())
    meta = {
        "categories": space.categories,
        "vocabulary": space.vocabulary,
        "history_per_category": space.history_per_category,
        "source": space.source,
        "target": space.target,
        "vector_columns": [[name, dim] for name, dim in space.vector_columns.items()],
    }
    (directory / "space.json").write_text(json.dumps(meta))


def load_space(directory: Path) -> FeatureSpace:
    """The feature space :func:`save_space` wrote into ``directory``."""
    arrays = np.load(directory / "space.npz", allow_pickle=False)
    meta = json.loads((directory / "space.json").read_text())
    return FeatureSpace(
        users=pd.Index(arrays["users"].astype(object)),
        items=pd.Index(arrays["items"].astype(object)),
        categories=list(meta["categories"]),
        item_category=arrays["item_category"],
        item_tokens=arrays["item_tokens"],
        vocabulary=list(meta["vocabulary"]),
        history=arrays["history"],
        history_per_category=int(meta["history_per_category"]),
        source=meta["source"],
        target=meta["target"],
        item_popularity=arrays.get("item_popularity"),
        memorisation=sp.load_npz(directory / "memorisation.npz").tocsr()
        if (directory / "memorisation.npz").is_file()
        else None,
        vector_columns={str(name): int(dim) for name, dim in meta.get("vector_columns", [])},
        item_vectors=arrays.get("item_vectors"),
        item_vector_mask=arrays.get("item_vector_mask"),
    )
