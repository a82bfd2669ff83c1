"""Readers for the public Amazon Reviews dumps: 2023 (JSON lines), 2018 (JSON lines), 2014 (ratings CSV).

Each dump has one review file per category (plus, for 2023 and 2018, a ``meta_<Category>`` file of item
metadata); the category of an item is the name of the file it came from.

- ``amazon2023``: ``<Cat>.jsonl[.gz]`` (user_id, parent_asin or asin, rating, timestamp) and
  ``meta_<Cat>.jsonl[.gz]`` (title, main_category, categories, store, features, description).
- ``amazon2018``: ``<Cat>_5.json[.gz]`` or ``<Cat>.json[.gz]`` (reviewerID, asin, overall, unixReviewTime) and
  ``meta_<Cat>.json[.gz]`` (title, brand, category, description).
- ``amazon2014``: ``ratings_<Cat>.csv[.gz]`` (user,item,rating,timestamp; no header); metadata optional, as 2018
  (Python-literal lines, as the 2014 dump has them, are accepted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.io import is_blank, iter_csv, iter_json_lines
from tfrec_xcat.data.problems import ReadReport
from tfrec_xcat.data.rows import RowCollector
from tfrec_xcat.errors import DataError


@dataclass(frozen=True)
class Layout:
    """How one Amazon dump names its files and fields."""

    name: str
    review_patterns: tuple[str, ...]  # regexes with one group: the category
    meta_names: tuple[str, ...]  # format strings taking the category
    user: str
    items: tuple[str, ...]  # first present wins
    rating: str
    timestamp: str
    meta_item: tuple[str, ...]
    text_fields: tuple[str, ...]  # text column names
    renamed: tuple[tuple[str, str], ...] = ()  # (column, JSON key) where they differ

    def key(self, column: str) -> str:
        """The JSON key a text column is read from."""
        return dict(self.renamed).get(column, column)


AMAZON_2023 = Layout(
    name="amazon2023",
    review_patterns=(r"^(?!meta_)(.+)\.jsonl(?:\.gz)?$",),
    meta_names=("meta_{}.jsonl", "meta_{}.jsonl.gz"),
    user="user_id",
    items=("parent_asin", "asin"),
    rating="rating",
    timestamp="timestamp",
    meta_item=("parent_asin", "asin"),
    text_fields=("title", "main_category", "categories", "store", "features", "description"),
)

AMAZON_2018 = Layout(
    name="amazon2018",
    review_patterns=(r"^(?!meta_)(.+)_5\.json(?:\.gz)?$", r"^(?!meta_)(?!.+_5\.json)(.+)\.json(?:\.gz)?$"),
    meta_names=("meta_{}.json", "meta_{}.json.gz"),
    user="reviewerID",
    items=("asin",),
    rating="overall",
    timestamp="unixReviewTime",
    meta_item=("asin",),
    text_fields=("title", "brand", "categories", "description"),
    renamed=(("categories", "category"),),  # "category" is the key column here
)

AMAZON_2014 = Layout(
    name="amazon2014",
    review_patterns=(r"^ratings_(.+)\.csv(?:\.gz)?$",),
    meta_names=("meta_{}.json", "meta_{}.json.gz"),
    user="user",
    items=("item",),
    rating="rating",
    timestamp="timestamp",
    meta_item=("asin",),
    text_fields=("title", "brand", "categories", "description"),
)

LAYOUTS = {layout.name: layout for layout in (AMAZON_2023, AMAZON_2018, AMAZON_2014)}


def discover(directory: Path, layout: Layout) -> dict[str, Path]:
    """Map each category found in ``directory`` to its review file (the first pattern that matches wins)."""
    found: dict[str, Path] = {}
    names = sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
    for pattern in layout.review_patterns:
        for name in names:
            match = re.match(pattern, name)
            if match and match.group(1) not in found:
                found[match.group(1)] = directory / name
    return found


def _first(obj: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = obj.get(key)
        if value is not None and value != "":
            return value
    return None


def _scalar(value: Any) -> Any:
    """An id must be a string or a number; anything else (list, dict, bool) counts as missing."""
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else None


def _read_reviews(path: Path, category: str, layout: Layout, collector: RowCollector, report: ReadReport) -> None:
    name = str(path)
    lines: list[int] = []
    cols: dict[str, list[Any]] = {k: [] for k in ("user_id", "item_id", "category", "rating", "timestamp")}
    rows = 0
    if layout is AMAZON_2014:
        for line, _end, fields, kind, error in iter_csv(path, width=4):
            if fields is not None and is_blank(fields):
                continue
            rows += 1
            if fields is None:
                report.add(kind, name, line, error)
                continue
            if len(fields) != 4:
                report.add("malformed_line", name, line, f"{len(fields)} fields where user,item,rating,timestamp has 4")
                continue
            lines.append(line)
            for key, value in zip(("user_id", "item_id", "rating", "timestamp"), fields, strict=True):
                cols[key].append(value)
            cols["category"].append(category)
    else:
        for line, _end, obj, kind, error in iter_json_lines(path):
            rows += 1
            if obj is None:
                report.add(kind, name, line, error)
                continue
            lines.append(line)
            cols["user_id"].append(_scalar(obj.get(layout.user)))
            cols["item_id"].append(_scalar(_first(obj, layout.items)))
            cols["category"].append(category)
            cols["rating"].append(obj.get(layout.rating))
            cols["timestamp"].append(obj.get(layout.timestamp))
    report.add_rows(name, rows)
    if rows == 0:
        report.add("empty_file", name, 0, "no data rows")
        return
    collector.add_interactions(name, lines, cols)


def _read_meta(
    path: Path, category: str, layout: Layout, collector: RowCollector, report: ReadReport, fields: list[str]
) -> None:
    name = str(path)
    collector.metadata_files.append(name)
    lines: list[int] = []
    ids: list[Any] = []
    texts: dict[str, list[Any]] = {f: [] for f in fields}
    rows = 0
    for line, _end, obj, kind, error in iter_json_lines(path):
        rows += 1
        if obj is None:
            report.add(kind, name, line, error)
            continue
        lines.append(line)
        ids.append(_scalar(_first(obj, layout.meta_item)))
        for f in fields:
            texts[f].append(obj.get(layout.key(f)))
    report.add_rows(name, rows)
    if rows == 0:
        report.add("empty_file", name, 0, "no data rows")
        return
    collector.add_items(name, lines, ids, [category] * len(ids), texts)


def read_amazon(
    directory: Path,
    layout: Layout,
    *,
    categories: list[str] | None = None,
    text_columns: list[str] | None = None,
    max_bad_fraction: float = 0.001,
) -> ShopData:
    """Read the review (and metadata) files of ``categories`` (all found, when None) from ``directory``."""
    found = discover(directory, layout)
    if not found:
        raise DataError(f"{directory}: no {layout.name} review files found")
    wanted = sorted(found) if categories is None else list(dict.fromkeys(categories))
    for cat in wanted:
        if cat not in found:
            raise DataError(
                f"{directory}: no {layout.name} review file for category {cat!r} "
                f"(found categories: {', '.join(sorted(found))})"
            )
    fields = list(layout.text_fields) if text_columns is None else list(text_columns)
    unknown = [f for f in fields if f not in layout.text_fields]
    if unknown:
        raise DataError(
            f"{layout.name} metadata has no text field(s) {', '.join(unknown)} "
            f"(it has: {', '.join(layout.text_fields)})"
        )
    report = ReadReport(max_bad_fraction=max_bad_fraction)
    collector = RowCollector(report, with_rating=True, with_timestamp=True)
    for cat in wanted:
        _read_reviews(found[cat], cat, layout, collector, report)
        meta = next(
            (directory / m.format(cat) for m in layout.meta_names if (directory / m.format(cat)).is_file()),
            None,
        )
        if meta is not None:
            _read_meta(meta, cat, layout, collector, report, fields)
        elif layout is not AMAZON_2014:
            raise DataError(
                f"{directory}: no metadata file for category {cat!r} (looked for "
                f"{' or '.join(m.format(cat) for m in layout.meta_names)})"
            )
    if not collector.metadata_files:
        fields = []
    return collector.build(text_columns=fields, name=str(directory))
