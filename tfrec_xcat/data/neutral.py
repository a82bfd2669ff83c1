"""Reader for the neutral layout: ``interactions.csv[.gz]|.parquet`` + ``items.csv[.gz]|.parquet``.

``interactions``: ``user_id,item_id,category`` and optionally ``position``, ``timestamp``, ``rating``; other
columns are allowed and ignored. ``items``: ``item_id,category`` plus any columns; all of them but the keys and
the vector columns are text columns unless ``text_columns`` names a subset. ``vector_columns`` names list-of-float
columns of ``items.parquet`` (precomputed embeddings, :mod:`tfrec_xcat.data.vectors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from tfrec_xcat.data.dataset import ShopData, join_text
from tfrec_xcat.data.io import find_file, is_blank, iter_csv
from tfrec_xcat.data.problems import ReadReport
from tfrec_xcat.data.rows import RowCollector
from tfrec_xcat.errors import DataError

SUFFIXES = (".csv", ".csv.gz", ".parquet")
OPTIONAL_INTERACTION_COLUMNS = ("position", "timestamp", "rating")


def is_neutral(directory: Path) -> bool:
    """Whether ``directory`` holds a neutral-layout interactions file."""
    return find_file(directory, ["interactions"], SUFFIXES, required=False) is not None


def _columns(
    path: Path, report: ReadReport, wanted: list[str] | None = None, arrow: tuple[str, ...] = ()
) -> tuple[list[str], list[int], dict[str, Any]]:
    """Read ``path`` into its header, each good row's line number, and one list of raw values per column.

    Only the columns in ``wanted`` (all when None) are kept; Parquet columns named in ``arrow`` stay Arrow arrays
    (vectors are checked without becoming Python lists). Malformed CSV lines are counted and skipped; a file with
    no header line is counted as ``empty_file`` and gives an empty header.
    """
    name = str(path)
    if path.name.endswith(".parquet"):
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
        header = table.column_names
        _unique(path, header, wanted)
        keep = [c for c in header if wanted is None or c in wanted]
        report.add_rows(name, table.num_rows)
        columns = {c: table.column(c) if c in arrow else table.column(c).to_pylist() for c in keep}
        return header, list(range(1, table.num_rows + 1)), columns

    records = iter_csv(path, header=True)
    first = next(records, None)
    while first is not None and first.value is not None and is_blank(first.value):
        first = next(records, None)  # blank lines before the header
    if first is None:
        report.add("empty_file", name, 0, "no header line")
        return [], [], {}
    if first.value is None:
        raise DataError(f"{path}:{first.line}: the header line is unreadable: {first.error}")
    header = [h.strip().lstrip("\ufeff") for h in first.value]
    _unique(path, header, wanted)
    keep = [(i, c) for i, c in enumerate(header) if wanted is None or c in wanted]
    lines: list[int] = []
    columns: dict[str, list[Any]] = {c: [] for _, c in keep}
    appenders = [(i, columns[c].append) for i, c in keep]
    width = len(header)
    rows = 0
    for line, _end, fields, kind, error in records:
        if fields is None:
            rows += 1
            report.add(kind, name, line, error)
        elif len(fields) != width:
            if is_blank(fields):
                continue  # a blank line is not a row
            rows += 1
            report.add("malformed_line", name, line, f"{len(fields)} fields where the header has {width}")
        else:
            rows += 1
            lines.append(line)
            for i, append in appenders:
                append(fields[i])
    report.add_rows(name, rows)
    return header, lines, columns


def _unique(path: Path, header: list[str], wanted: list[str] | None) -> None:
    """A column that is read and named twice is ambiguous: a one-line error naming it and its positions."""
    seen: dict[str, int] = {}
    for i, column in enumerate(header, start=1):
        if wanted is not None and column not in wanted:
            continue
        if column in seen:
            raise DataError(f"{path}: the header names column {column!r} twice (columns {seen[column]} and {i})")
        seen[column] = i


def _require(path: Path, header: list[str], needed: tuple[str, ...]) -> None:
    missing = [c for c in needed if c not in header]
    if missing:
        raise DataError(f"{path}: header lacks required column(s) {', '.join(missing)} (it has: {', '.join(header)})")


def read_neutral(
    directory: Path,
    *,
    text_columns: list[str] | None = None,
    vector_columns: list[str] | None = None,
    max_bad_fraction: float = 0.001,
) -> ShopData:
    """Read a neutral-layout data set from ``directory``."""
    vectors = tuple(vector_columns or ())
    report = ReadReport(max_bad_fraction=max_bad_fraction)
    inter_path = find_file(directory, ["interactions"], SUFFIXES, required=True)
    items_path = find_file(directory, ["items"], SUFFIXES, required=True)
    assert inter_path is not None and items_path is not None

    wanted = ["user_id", "item_id", "category", *OPTIONAL_INTERACTION_COLUMNS]
    header, lines, columns = _columns(inter_path, report, wanted)
    if not header:
        raise DataError(f"{inter_path}: file is empty")
    _require(inter_path, header, ("user_id", "item_id", "category"))
    present = {c: c in header for c in OPTIONAL_INTERACTION_COLUMNS}
    collector = RowCollector(
        report,
        with_rating=present["rating"],
        with_timestamp=present["timestamp"],
        with_position=present["position"],
    )
    if report.rows[str(inter_path)] == 0:
        report.add("empty_file", str(inter_path), 0, "no data rows")
        raise DataError(f"{inter_path}: no data rows")
    collector.add_interactions(str(inter_path), lines, columns)

    if vectors and not items_path.name.endswith(".parquet"):
        raise DataError(
            f"{items_path}: vector column(s) {', '.join(vectors)} are read from items.parquet only (a CSV field "
            "holds no list of floats)"
        )
    header, lines, columns = _columns(items_path, report, arrow=vectors)
    collector.metadata_files.append(str(items_path))
    if header:
        _require(items_path, header, ("item_id", "category"))
        absent = [c for c in vectors if c not in header]
        if absent:
            raise DataError(f"{items_path}: no vector column(s) {', '.join(absent)} (it has: {', '.join(header)})")
        available = [c for c in header if c not in ("item_id", "category", *vectors)]
        unknown = [c for c in text_columns or [] if c not in available]
        if unknown:
            raise DataError(f"{items_path}: no text column(s) {', '.join(unknown)} (it has: {', '.join(available)})")
        texts = {c: columns[c] for c in (available if text_columns is None else text_columns)}
        collector.add_items(
            str(items_path), lines, columns["item_id"], columns["category"], texts, {c: columns[c] for c in vectors}
        )
        if report.rows[str(items_path)] == 0:
            report.add("empty_file", str(items_path), 0, "no data rows")
    return collector.build(text_columns=text_columns, name=str(directory))


def read_item_file(
    path: str | Path, *, text_columns: list[str] | None = None, with_category: bool = True
) -> tuple[pd.DataFrame, ReadReport]:
    """One item file on its own, in the layout of ``items.csv[.gz]|.parquet`` (``item_id``, ``category``, text
    columns; ``with_category=False``: only ``item_id`` is needed), e.g. for ``tfrec-xcat reindex``.

    Returns the good rows (``item_id``, ``category``, ``text``: the text columns joined as the model reads them,
    ``line``: 1-based line, or row for Parquet) and the report of the bad ones (``malformed_line``,
    ``bad_encoding``, ``missing_field``, ``duplicate_item``, ``empty_file``), each with its file and line. A
    missing file, a missing required column or an unknown text column is a one-line :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if not path.name.endswith(SUFFIXES):
        raise DataError(f"{path}: not a CSV (.csv, .csv.gz) or Parquet (.parquet) file")
    report = ReadReport(max_bad_fraction=0.0)
    header, lines, columns = _columns(path, report)
    if not header:
        raise DataError(f"{path}: file is empty")
    _require(path, header, ("item_id", "category") if with_category else ("item_id",))
    available = [c for c in header if c not in ("item_id", "category")]
    unknown = [c for c in text_columns or [] if c not in available]
    if unknown:
        raise DataError(f"{path}: no text column(s) {', '.join(unknown)} (it has: {', '.join(available)})")
    chosen = available if text_columns is None else text_columns
    collector = RowCollector(report)
    category = columns["category"] if with_category else None
    collector.add_items(str(path), lines, columns["item_id"], category, {c: columns[c] for c in chosen})
    if report.rows[str(path)] == 0:
        report.add("empty_file", str(path), 0, "no data rows")
    rows = collector.item_rows()
    return (
        pd.DataFrame(
            {
                "item_id": rows["item_id"].astype(str),
                "category": rows["category"].astype(str),
                "text": join_text(rows, chosen).astype(str),
                "line": rows["_line"].astype("int64"),
            }
        ),
        report,
    )
