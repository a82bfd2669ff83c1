"""Every reader on small files written in its exact format (plain and gzipped), and every bad-input kind."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from tfrec_xcat.data.load import detect_format, load_shop
from tfrec_xcat.errors import DataError


def write(path: Path, text: str, *, gz: bool = False) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


ITEMS = "item_id,category,title,brand\ni1,Food,Green tea,Acme\ni2,Food,Black tea,Acme\nk1,Kitchen,Tea pot,Pots\n"


def neutral(tmp_path: Path, interactions: str, items: str = ITEMS, *, gz: bool = False) -> Path:
    write(tmp_path / "interactions.csv", interactions, gz=gz)
    write(tmp_path / "items.csv", items)
    return tmp_path


# ----------------------------------------------------------------------------------------------- neutral
@pytest.mark.parametrize("gz", [False, True])
def test_neutral_csv(tmp_path: Path, gz: bool) -> None:
    d = neutral(
        tmp_path,
        "user_id,item_id,category,position,extra\nu1,i1,Food,0,x\nu1,k1,Kitchen,1,y\nu2,i2,Food,0,z\n",
        gz=gz,
    )
    assert detect_format(d) == "neutral"
    shop = load_shop(d)
    assert len(shop.interactions) == 3
    assert shop.categories() == ["Food", "Kitchen"]
    assert shop.text_columns == ["title", "brand"]
    assert list(shop.overlap_users("Food", "Kitchen")) == ["u1"]
    assert shop.report.total() == 0
    assert shop.item_text().loc["k1"] == "Tea pot | Pots"


def test_neutral_parquet_with_ratings_and_timestamps(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "k1", "i2"],
            "category": ["Food", "Kitchen", "Food"],
            "timestamp": [20, 10, 5],
            "rating": [4.0, 5.0, 3.5],
        }
    )
    frame.to_parquet(tmp_path / "interactions.parquet")
    pd.read_csv(pd.io.common.StringIO(ITEMS)).to_parquet(tmp_path / "items.parquet")
    shop = load_shop(tmp_path, text_columns=["title"])
    assert shop.has_ratings and shop.has_timestamps
    assert shop.text_columns == ["title"]
    u1 = shop.interactions[shop.interactions.user_id == "u1"]
    # position follows the timestamp: k1 (t=10) before i1 (t=20)
    assert list(u1.sort_values("position").item_id) == ["k1", "i1"]
    assert shop.interactions.rating.dtype == "float32"


def test_neutral_unknown_text_column_is_named(tmp_path: Path) -> None:
    d = neutral(tmp_path, "user_id,item_id,category\nu1,i1,Food\n")
    with pytest.raises(DataError, match="description"):
        load_shop(d, text_columns=["description"])


def test_neutral_missing_required_column(tmp_path: Path) -> None:
    d = neutral(tmp_path, "user,item_id,category\nu1,i1,Food\n")
    with pytest.raises(DataError, match=r"interactions.csv: header lacks required column\(s\) user_id"):
        load_shop(d)


def test_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data directory not found"):
        load_shop(tmp_path / "nope")
    write(tmp_path / "interactions.csv", "user_id,item_id,category\nu1,i1,Food\n")
    with pytest.raises(DataError, match="no items file"):
        load_shop(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no known data layout"):
        load_shop(empty)


def test_unknown_category_is_one_line_error(tmp_path: Path) -> None:
    d = neutral(tmp_path, "user_id,item_id,category\nu1,i1,Food\n")
    with pytest.raises(DataError, match="unknown category 'Toys'.*known: Food"):
        load_shop(d, categories=["Toys"])


# ------------------------------------------------------------------------------------------ bad input
GOOD = [f"u{u},i{1 + u % 2},Food,{u}" for u in range(2000)] + [f"u{u},k1,Kitchen,{u + 5000}" for u in range(0, 2000, 3)]
HEADER = "user_id,item_id,category,position\n"


def dirty(tmp_path: Path, bad_lines: list[str], **kw: object) -> tuple[Path, int]:
    """Good rows with the bad ones placed after the first 10; returns the dir and the first bad line number."""
    lines = GOOD[:10] + bad_lines + GOOD[10:]
    return neutral(tmp_path, HEADER + "\n".join(lines) + "\n", **kw), 12


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        ("u9,i1", "malformed_line"),
        ("u9,i1,Food,1,extra", "malformed_line"),
        ('u9,"i1,Food,1', "malformed_line"),
        (",i1,Food,1", "missing_field"),
        ("u9, ,Food,1", "missing_field"),
        ("u9,i1,,1", "missing_field"),
        ("u9,i1,Food,first", "bad_position"),
        ("u9,i1,Food,1.5", "bad_position"),
        ("u1,i2,Food,77", "duplicate"),
    ],
)
def test_each_bad_kind_is_counted_with_file_and_line(tmp_path: Path, bad: str, kind: str) -> None:
    d, line = dirty(tmp_path, [bad])
    shop = load_shop(d, max_bad_fraction=0.01)
    assert shop.report.total(kind) == 1, shop.report.lines()
    assert shop.report.total() == 1
    (problem,) = shop.report.problems()
    assert problem.file.endswith("interactions.csv")
    assert problem.kind == kind
    if kind != "duplicate":
        assert problem.line == line
    # Nothing silently lost: rows read = rows kept + rows counted as dropped.
    assert shop.report.rows[problem.file] == len(shop.interactions) + shop.report.dropped(problem.file)


def test_bad_rating_and_timestamp(tmp_path: Path) -> None:
    rows = "user_id,item_id,category,rating,timestamp\n" + "".join(
        f"u{u},i1,Food,{u % 5 + 1},{1000 + u}\n" for u in range(300)
    )
    rows += "x1,i1,Food,five,1\nx2,i1,Food,nan,1\nx3,i1,Food,inf,1\nx4,i1,Food,4,yesterday\nx5,i1,Food,,1\n"
    shop = load_shop(neutral(tmp_path, rows), max_bad_fraction=0.1)
    counts = shop.report.by_kind()
    assert counts["bad_rating"] == 3
    assert counts["bad_timestamp"] == 1
    assert counts["missing_field"] == 1
    assert len(shop.interactions) == 300


def test_items_without_metadata_are_kept_and_counted(tmp_path: Path) -> None:
    d, _ = dirty(tmp_path, ["u5000,mystery,Food,1"])
    shop = load_shop(d, max_bad_fraction=0.01)
    assert shop.report.total("item_without_metadata") == 1
    assert "mystery" in set(shop.interactions.item_id)
    row = shop.items.set_index("item_id").loc["mystery"]
    assert row.category == "Food" and row.title == ""


def test_duplicate_item_rows(tmp_path: Path) -> None:
    d, _ = dirty(tmp_path, [])
    write(d / "items.csv", ITEMS + "i1,Food,Another title,Other\n")
    with pytest.raises(DataError, match=r"items.csv: 1 of 4 rows are bad .*items.csv:5: duplicate_item"):
        load_shop(d)
    shop = load_shop(d, max_bad_fraction=0.5)
    assert shop.report.total("duplicate_item") == 1
    assert shop.items.set_index("item_id").loc["i1"].title == "Green tea"


def test_too_many_bad_rows_is_a_clear_error(tmp_path: Path) -> None:
    d, _ = dirty(tmp_path, ["u9,i1"] * 10)
    with pytest.raises(DataError) as info:
        load_shop(d)  # default max_bad_fraction 0.001 of ~2,700 rows
    message = str(info.value)
    assert "interactions.csv" in message and "malformed_line 10" in message and ":12:" in message
    assert "max_bad_fraction=0.001" in message
    shop = load_shop(d, max_bad_fraction=0.01)
    assert shop.report.total("malformed_line") == 10


def test_empty_files(tmp_path: Path) -> None:
    d = neutral(tmp_path, "")
    with pytest.raises(DataError, match="interactions.csv: file is empty"):
        load_shop(d)
    d = neutral(tmp_path, HEADER)
    with pytest.raises(DataError, match="interactions.csv: no data rows"):
        load_shop(d)
    d = neutral(tmp_path, HEADER + "\n".join(GOOD) + "\n", items="")
    with pytest.raises(DataError, match="item_without_metadata"):
        load_shop(d)  # an empty metadata file leaves every item without metadata


def test_blank_lines_are_not_rows(tmp_path: Path) -> None:
    d = neutral(tmp_path, HEADER + "u1,i1,Food,0\n\n\nu2,i1,Food,0\n")
    shop = load_shop(d)
    assert len(shop.interactions) == 2 and shop.report.total() == 0


# ------------------------------------------------------------------------------------------ Amazon 2023
def amazon2023(tmp_path: Path, gz: bool) -> Path:
    food = [
        {
            "rating": 5.0,
            "title": "Great",
            "text": "yum",
            "asin": "A1x",
            "parent_asin": "A1",
            "user_id": "U1",
            "timestamp": 1588687728923,
            "helpful_vote": 0,
            "verified_purchase": True,
        },
        {"rating": 3.0, "asin": "A2", "parent_asin": "A2", "user_id": "U2", "timestamp": 1588687728000},
        {"rating": 4.0, "asin": "A2", "parent_asin": "A2", "user_id": "U1", "timestamp": 1588687720000},
    ]
    kitchen = [{"rating": 4.0, "asin": "K1", "parent_asin": "K1", "user_id": "U1", "timestamp": 1600000000000}]
    meta_food = [
        {
            "main_category": "Grocery",
            "title": "Tea",
            "features": ["Loose leaf", "Organic"],
            "description": ["Nice tea"],
            "store": "Acme",
            "categories": ["Grocery", "Tea"],
            "parent_asin": "A1",
            "details": {"Weight": "1 lb"},
        },
        {
            "main_category": "Grocery",
            "title": "Coffee",
            "features": [],
            "description": [],
            "store": None,
            "categories": [],
            "parent_asin": "A2",
        },
    ]
    meta_kitchen = [{"title": "Kettle", "store": "Pots", "parent_asin": "K1", "categories": ["Kitchen"]}]
    write(tmp_path / "Grocery_and_Gourmet_Food.jsonl", jsonl(food), gz=gz)
    write(tmp_path / "meta_Grocery_and_Gourmet_Food.jsonl", jsonl(meta_food), gz=gz)
    write(tmp_path / "Home_and_Kitchen.jsonl", jsonl(kitchen), gz=gz)
    write(tmp_path / "meta_Home_and_Kitchen.jsonl", jsonl(meta_kitchen), gz=gz)
    return tmp_path


@pytest.mark.parametrize("gz", [False, True])
def test_amazon2023(tmp_path: Path, gz: bool) -> None:
    d = amazon2023(tmp_path, gz)
    assert detect_format(d) == "amazon2023"
    shop = load_shop(d)
    assert shop.categories() == ["Grocery_and_Gourmet_Food", "Home_and_Kitchen"]
    assert set(shop.interactions.item_id) == {"A1", "A2", "K1"}  # parent_asin, not asin
    assert shop.has_ratings and shop.has_timestamps
    u1 = shop.interactions[shop.interactions.user_id == "U1"].sort_values("position")
    assert list(u1.item_id) == ["A2", "A1", "K1"]  # by timestamp
    items = shop.items.set_index("item_id")
    assert items.loc["A1", "features"] == "Loose leaf Organic"
    assert items.loc["A1", "title"] == "Tea"
    assert items.loc["K1", "category"] == "Home_and_Kitchen"
    assert shop.report.total() == 0
    # reading only the requested categories
    only = load_shop(d, categories=["Home_and_Kitchen"])
    assert only.categories() == ["Home_and_Kitchen"]
    with pytest.raises(DataError, match="no amazon2023 review file for category 'Toys'"):
        load_shop(d, categories=["Toys"])


def test_amazon2023_bad_lines(tmp_path: Path) -> None:
    d = amazon2023(tmp_path, gz=False)
    path = d / "Grocery_and_Gourmet_Food.jsonl"
    good = [{"rating": 5, "parent_asin": f"A{1 + i % 2}", "user_id": f"V{i}", "timestamp": i} for i in range(100)]
    path.write_text(
        path.read_text()
        + "{not json\n"
        + "[1, 2]\n"
        + json.dumps({"rating": "great", "parent_asin": "A1", "user_id": "U9", "timestamp": 1})
        + "\n"
        + json.dumps({"rating": 4, "parent_asin": "A1", "timestamp": 1})
        + "\n"
        + json.dumps({"rating": True, "parent_asin": "A1", "user_id": "U8", "timestamp": 1})
        + "\n"
        + jsonl(good)
    )
    shop = load_shop(d, max_bad_fraction=0.1)
    counts = shop.report.by_kind()
    assert counts["malformed_line"] == 2
    assert counts["bad_rating"] == 2
    assert counts["missing_field"] == 1
    assert counts["item_without_metadata"] == 0
    lines = sorted(p.line for p in shop.report.problems() if p.kind == "malformed_line")
    assert lines == [4, 5]


def test_amazon2023_missing_metadata_file(tmp_path: Path) -> None:
    d = amazon2023(tmp_path, gz=False)
    (d / "meta_Home_and_Kitchen.jsonl").unlink()
    with pytest.raises(DataError, match="no metadata file for category 'Home_and_Kitchen'"):
        load_shop(d)


# ------------------------------------------------------------------------------------------ Amazon 2018
@pytest.mark.parametrize("gz", [False, True])
def test_amazon2018(tmp_path: Path, gz: bool) -> None:
    reviews = [
        {
            "overall": 5.0,
            "verified": True,
            "reviewTime": "09 18, 2009",
            "reviewerID": "R1",
            "asin": "B1",
            "reviewerName": "x",
            "reviewText": "good",
            "summary": "ok",
            "unixReviewTime": 1253232000,
        },
        {"overall": 2.0, "reviewerID": "R2", "asin": "B1", "unixReviewTime": 1253232001},
    ]
    kitchen = [{"overall": 4.0, "reviewerID": "R1", "asin": "C1", "unixReviewTime": 1253232100}]
    write(tmp_path / "Grocery_and_Gourmet_Food_5.json", jsonl(reviews), gz=gz)
    write(tmp_path / "Home_and_Kitchen_5.json", jsonl(kitchen), gz=gz)
    write(
        tmp_path / "meta_Grocery_and_Gourmet_Food.json",
        jsonl(
            [
                {
                    "asin": "B1",
                    "title": "Tea",
                    "brand": "Acme",
                    "category": ["Grocery", "Tea"],
                    "description": ["Good tea"],
                }
            ]
        ),
        gz=gz,
    )
    # older dumps use Python literals rather than JSON
    write(tmp_path / "meta_Home_and_Kitchen.json", "{'asin': 'C1', 'title': 'Pot', 'brand': 'Pots'}\n", gz=gz)
    assert detect_format(tmp_path) == "amazon2018"
    shop = load_shop(tmp_path)
    assert shop.categories() == ["Grocery_and_Gourmet_Food", "Home_and_Kitchen"]
    assert list(shop.overlap_users("Grocery_and_Gourmet_Food", "Home_and_Kitchen")) == ["R1"]
    items = shop.items.set_index("item_id")
    assert items.loc["B1", "categories"] == "Grocery Tea" and items.loc["C1", "title"] == "Pot"
    assert shop.report.total() == 0


# ------------------------------------------------------------------------------------------ Amazon 2014
@pytest.mark.parametrize("gz", [False, True])
def test_amazon2014(tmp_path: Path, gz: bool) -> None:
    write(tmp_path / "ratings_Grocery_and_Gourmet_Food.csv", "A1,B1,5.0,1253232000\nA2,B1,4.0,1253232000\n", gz=gz)
    write(tmp_path / "ratings_Home_and_Kitchen.csv", "A1,C1,3.0,1253232001\nA1,C2,1.0,1253232002\n", gz=gz)
    assert detect_format(tmp_path) == "amazon2014"
    shop = load_shop(tmp_path)
    assert len(shop.interactions) == 4
    assert shop.text_columns == []
    assert shop.report.total() == 0  # no metadata in this format: items without it are not bad rows
    assert set(shop.items.item_id) == {"B1", "C1", "C2"}


def test_amazon2014_bad_rows(tmp_path: Path) -> None:
    good = "".join(f"A{i},B{i % 7},{i % 5 + 1}.0,{1000 + i}\n" for i in range(200))
    write(tmp_path / "ratings_Food.csv", good + "A1,B1\nA2,B2,great,1\nA1,B1,5.0,1000\n")
    shop = load_shop(tmp_path, max_bad_fraction=0.05)
    assert shop.report.by_kind()["malformed_line"] == 1
    assert shop.report.by_kind()["bad_rating"] == 1
    assert shop.report.by_kind()["duplicate"] == 1
    assert [p.line for p in shop.report.problems()] == [201, 202, 203]
