"""Precomputed item vectors: read from items.parquet (bad ones reported by row), carried by the feature space,
projected by the item tower."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from tests.conftest import VECTOR_COLUMN, VECTOR_DIM
from tfrec_xcat.config import load_config
from tfrec_xcat.data.load import load_shop
from tfrec_xcat.data.split import make_split
from tfrec_xcat.data.vectors import parse_vectors
from tfrec_xcat.errors import ConfigError, DataError
from tfrec_xcat.features.matrices import SplitMatrices
from tfrec_xcat.features.space import build_feature_space, load_space, save_space
from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.models.xcat import XcatModel

INTERACTIONS = "user_id,item_id,category\n" + "".join(f"u{u},i{u % 4},Food\nu{u},k{u % 3},Kitchen\n" for u in range(20))
IDS = [f"i{i}" for i in range(4)] + [f"k{i}" for i in range(3)]
CATEGORIES = ["Food"] * 4 + ["Kitchen"] * 3


def shop(tmp_path: Path, vectors: list | pa.Array, *, items_without: int = 0) -> Path:
    """A tiny neutral shop whose items.parquet has a vector column ``emb`` (the last ``items_without`` items
    have no metadata row at all)."""
    (tmp_path / "interactions.csv").write_text(INTERACTIONS)
    n = len(IDS) - items_without
    table = pa.table(
        {
            "item_id": IDS[:n],
            "category": CATEGORIES[:n],
            "title": [f"title {i}" for i in IDS[:n]],
            "emb": vectors if isinstance(vectors, pa.Array) else pa.array(vectors[:n]),
        }
    )
    pq.write_table(table, tmp_path / "items.parquet")
    return tmp_path


GOOD = [[float(i), 1.0, -0.5] for i in range(len(IDS))]


def test_good_vectors_are_read_by_item(tmp_path: Path) -> None:
    data = load_shop(shop(tmp_path, GOOD), vector_columns=["emb"])
    assert data.report.total() == 0
    assert data.text_columns == ["title"]  # a vector column is not text
    vectors, found = data.vectors["emb"].lookup(["k1", "i2", "nope"])
    np.testing.assert_array_equal(vectors, [[5.0, 1.0, -0.5], [2.0, 1.0, -0.5], [0.0, 0.0, 0.0]])
    assert found.tolist() == [True, True, False]
    assert data.summary()["vector_columns"] == {"emb": 3}


def test_without_vector_columns_nothing_changes(tmp_path: Path) -> None:
    data = load_shop(shop(tmp_path, GOOD))
    assert data.vectors == {}
    assert "emb" in data.text_columns  # as before: every other column is text


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([1.0, 2.0], "emb has 2 values where the column's vectors have 3"),  # ragged
        ([1.0, float("nan"), 2.0], "emb holds nan at position 1"),
        ([1.0, 2.0, float("inf")], "emb holds inf at position 2"),
        ([], "emb is an empty list"),
    ],
)
def test_bad_vectors_are_reported_with_file_and_row(tmp_path: Path, bad: list, message: str) -> None:
    vectors = [*GOOD[:2], bad, *GOOD[3:]]
    d = shop(tmp_path, vectors)
    with pytest.raises(DataError, match=r"items.parquet: 1 of 7 rows are bad .*bad_vector 1 .*items.parquet:3: bad_v"):
        load_shop(d, vector_columns=["emb"])  # counted against max_bad_fraction
    data = load_shop(d, vector_columns=["emb"], max_bad_fraction=0.2)
    (problem,) = data.report.problems()
    assert (problem.kind, problem.line) == ("bad_vector", 3)
    assert problem.file.endswith("items.parquet") and message in problem.message
    # the item is kept (its title too), with a zero vector and mask 0
    assert "i2" in set(data.items.item_id)
    vectors_of, found = data.vectors["emb"].lookup(["i2", "i3"])
    assert found.tolist() == [False, True] and not vectors_of[0].any()


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["0.1,0.2,0.3"] * len(IDS)),  # text, not a list
        pa.array([[True, False, True]] * len(IDS)),  # booleans
        pa.array([["a", "b", "c"]] * len(IDS)),  # strings
        pa.array([[[1.0], [2.0], [3.0]]] * len(IDS)),  # nested
    ],
)
def test_wrong_types_are_bad_vectors_by_row(tmp_path: Path, column: pa.Array) -> None:
    d = shop(tmp_path, column)
    with pytest.raises(DataError, match=r"7 of 7 rows are bad .*bad_vector 7 .*items.parquet:1: bad_vector: emb is"):
        load_shop(d, vector_columns=["emb"])


def test_a_wrong_type_among_good_rows(tmp_path: Path) -> None:
    """A Python-level column (the row-by-row path) mixing lists, a string and an integer list."""
    parsed = parse_vectors("emb", [[1.0, 2.0], "oops", None, [3, 4], [1.0, None]])
    assert parsed.ok.tolist() == [True, False, False, True, False]
    assert parsed.missing.tolist() == [False, False, True, False, False]
    assert set(parsed.problems) == {1, 4} and "not a list of numbers" in parsed.problems[1]
    np.testing.assert_array_equal(parsed.matrix, [[1, 2], [0, 0], [0, 0], [3, 4], [0, 0]])


def test_arrow_and_python_paths_agree() -> None:
    values = [[1.0, 2.0], None, [1.0], [np.nan, 2.0], [5.0, 6.0], [1e39, 0.0]]
    arrow = parse_vectors("emb", pa.chunked_array([pa.array(values[:3]), pa.array(values[3:])]))
    python = parse_vectors("emb", values)
    for a, b in ((arrow.ok, python.ok), (arrow.missing, python.missing), (arrow.matrix, python.matrix)):
        np.testing.assert_array_equal(a, b)
    assert set(arrow.problems) == set(python.problems) == {2, 3, 5}


def test_nulls_and_items_without_metadata_get_zeros_and_mask_0(tmp_path: Path) -> None:
    vectors = [GOOD[0], None, *GOOD[2:]]
    data = load_shop(shop(tmp_path, vectors, items_without=1), vector_columns=["emb"], max_bad_fraction=0.1)
    counts = data.report.by_kind()
    assert counts["missing_vector"] == 1 and counts["item_without_metadata"] == 1
    (missing,) = [p for p in data.report.problems() if p.kind == "missing_vector"]
    assert missing.line == 2 and missing.file.endswith("items.parquet")
    split = make_split(data, "Food", "Kitchen", seed=0)
    space = build_feature_space(data, split, SplitMatrices.from_split(data, split), max_tokens=4)
    assert space.vector_columns == {"emb": 3}
    rows = space.item_index(["i0", "i1", "k2"])  # good, null, no metadata row
    assert space.item_vector_mask[rows, 0].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_array_equal(space.item_vectors[rows[0]], GOOD[0])
    assert not space.item_vectors[rows[1:]].any() and not space.item_vectors[0].any()


def test_missing_vectors_do_not_count_against_max_bad_fraction(tmp_path: Path) -> None:
    data = load_shop(shop(tmp_path, [GOOD[0], *[None] * 6]), vector_columns=["emb"])
    assert data.report.total("missing_vector") == 6
    assert len(data.vectors["emb"].ids) == 1


def test_vector_columns_are_parquet_and_neutral_only(tmp_path: Path) -> None:
    d = shop(tmp_path, GOOD)
    with pytest.raises(DataError, match=r"no vector column\(s\) img \(it has: item_id, category, title, emb\)"):
        load_shop(d, vector_columns=["img"])
    pd.read_parquet(d / "items.parquet").drop(columns="emb").to_csv(d / "items.csv", index=False)
    (d / "items.parquet").unlink()
    with pytest.raises(DataError, match="items.csv: vector column.* read from items.parquet only"):
        load_shop(d, vector_columns=["emb"])
    with pytest.raises(DataError, match="neutral layout's items.parquet, not amazon2018"):
        load_shop(d, fmt="amazon2018", vector_columns=["emb"])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"vector_columns": ["emb", "emb"]}, "config.data: vector_columns must be distinct"),
        ({"vector_columns": ["title"], "text_columns": ["title"]}, "config.data: vector_columns: 'title' is also"),
        ({"vector_columns": ["item_id"]}, "config.data: vector_columns: 'item_id' cannot be"),
        ({"vector_columns": "emb"}, "config.data.vector_columns: expected a list"),
    ],
)
def test_vector_columns_config(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, {"data": data})
    assert load_config(None).data.vector_columns == []


# --------------------------------------------------------------------------------- feature space and tower
SPEC = ModelSpec(
    embedding_dim=16, tower_layers=[32], text_dim=16, history_per_category=8, max_tokens=8, memorisation=False
)


@pytest.fixture(scope="module")
def vector_space(vector_shop_dir: Path):
    data = load_shop(vector_shop_dir, vector_columns=[VECTOR_COLUMN])
    split = make_split(data, "Food", "Kitchen", seed=0)
    return build_feature_space(data, split, SplitMatrices.from_split(data, split), history_per_category=8, max_tokens=8)


def test_space_save_load_round_trip(vector_space, tmp_path: Path) -> None:
    save_space(vector_space, tmp_path)
    back = load_space(tmp_path)
    assert back.vector_columns == {VECTOR_COLUMN: VECTOR_DIM}
    np.testing.assert_array_equal(back.item_vectors, vector_space.item_vectors)
    np.testing.assert_array_equal(back.item_vector_mask, vector_space.item_vector_mask)
    assert back.item_vectors.dtype == np.float32 and back.item_vectors.shape == (vector_space.n_items + 1, VECTOR_DIM)
    assert 0 < back.item_vector_mask[1:].mean() < 1  # some items have none


def test_space_without_vectors_round_trips_without_them(small_shop_dir: Path, tmp_path: Path) -> None:
    data = load_shop(small_shop_dir)
    split = make_split(data, "Food", "Kitchen", seed=0)
    save_space(build_feature_space(data, split, SplitMatrices.from_split(data, split), max_tokens=8), tmp_path)
    back = load_space(tmp_path)
    assert back.vector_columns == {} and back.item_vectors is None and back.item_vector_mask is None


def test_item_tower_output_changes_with_the_vector(vector_space) -> None:
    model = XcatModel(vector_space, SPEC)
    items = vector_space.items_of("Kitchen")[:4]
    features = model.item_features(tf.constant(items))
    assert features["vectors"].shape == (4, VECTOR_DIM) and features["vector_mask"].shape == (4, 1)
    before = model.item_tower(features).numpy()
    changed = dict(features, vectors=features["vectors"] + 1.0)
    after = model.item_tower(changed).numpy()
    assert np.all(np.abs(before - after).max(axis=1) > 1e-4)  # every item's vector moved it
    masked = dict(features, vector_mask=tf.zeros_like(features["vector_mask"]))
    assert not np.allclose(model.item_tower(masked).numpy(), before)  # the mask is an input too
    for tower in model.item_towers:
        assert tower.get_layer("item_vectors").kernel.shape == (VECTOR_DIM, SPEC.embedding_dim)


def test_use_vectors_off_ignores_them(vector_space) -> None:
    import dataclasses

    model = XcatModel(vector_space, dataclasses.replace(SPEC, use_vectors=False))
    assert all(tower.vector_projection is None for tower in model.item_towers)
    assert "vectors" not in model.item_features(tf.constant([1]))
