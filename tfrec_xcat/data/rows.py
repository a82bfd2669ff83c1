"""Row validation shared by every reader: required fields, numeric fields, duplicates, missing metadata.

Readers parse their own file formats and hand raw field values, with the file and line they came from, to a
:class:`RowCollector`. It checks them, counts every bad row in the :class:`ReadReport`, and finally assembles a
:class:`ShopData` in which duplicates are resolved and every interaction's item has a metadata row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tfrec_xcat.data.dataset import ShopData, finish_interactions
from tfrec_xcat.data.problems import ReadReport
from tfrec_xcat.data.vectors import ItemVectors, parse_vectors
from tfrec_xcat.errors import DataError

KEYS = ("user_id", "item_id", "category")
#: Item-frame column holding a vector column's cell per row: its vector, the message of what is bad, or None.
VECTOR_PREFIX = "_vector:"


def _blank_mask(values: pd.Series) -> pd.Series:
    """True where a value is missing: None, NaN, or a string of only white space."""
    if values.dtype != object:
        return values.isna()
    return values.isna() | values.astype(str).str.strip().eq("")


def text_value(value: Any) -> str:
    """Flatten a metadata value (string, number, list of strings, nested lists) into one line of text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, list | tuple):
        return " ".join(t for t in (text_value(v) for v in value) if t)
    if isinstance(value, Mapping):
        return " ".join(f"{k}: {text_value(v)}" for k, v in value.items())
    return " ".join(str(value).split())


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Floats (1.7e9, 1700000000.0) are taken as integers only up to here, where every integer is exact.
EXACT_FLOAT = 2**53


def integers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of integers exactly: returns ``(values as int64, bad mask)``.

    Integer text (``"-12"``, ``" 1700000000 "``) and integer numbers are exact within the int64 range;
    other numbers (``"1.7e9"``, 3.0) must be whole and at most 2**53 in size, so no value is rounded or wraps
    (``1e300`` is bad, not INT64_MIN). Booleans, blanks and anything else are bad.
    """
    n = len(raw)
    values = np.zeros(n, dtype=np.int64)
    if raw.dtype.kind in "iu":
        ok = (raw >= INT64_MIN).to_numpy() & (raw <= INT64_MAX).to_numpy()
        values[ok] = raw.to_numpy()[ok]
        return values, ~ok
    if raw.dtype.kind == "f":
        floats = raw.to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(floats) & (np.abs(floats) <= EXACT_FLOAT) & (floats == np.floor(floats))
        values[ok] = floats[ok].astype(np.int64)
        return values, ~ok
    text = raw.astype(str).str.strip()
    short = text.str.fullmatch(r"[+-]?[0-9]{1,18}").to_numpy(dtype=bool)  # fits int64: vectorised
    if short.any():
        values[short] = text[short].astype(np.int64).to_numpy()
    ok = short.copy()
    objects = raw.to_numpy(dtype=object)
    for i in np.flatnonzero(~short):
        value = objects[i]
        if isinstance(value, bool):
            continue
        if isinstance(value, str):
            stripped = value.strip()
            if _INTEGER_TEXT(stripped):
                number: int | float = int(stripped)
            elif "_" in stripped:  # float() would read "1_000" as 1000.0
                continue
            else:
                try:
                    number = float(stripped)
                except ValueError:
                    continue
        elif isinstance(value, int | float | np.integer | np.floating):
            number = value.item() if isinstance(value, np.generic) else value
        else:
            continue
        if isinstance(number, float):
            if not (math.isfinite(number) and abs(number) <= EXACT_FLOAT and number.is_integer()):
                continue
            number = int(number)
        if INT64_MIN <= number <= INT64_MAX:
            values[i], ok[i] = number, True
    return values, ~ok


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+").fullmatch


class RowCollector:
    """Accumulates validated interaction and item rows from one or more files of one data set.

    Readers hand over whole columns of raw values per file (with each row's line number); validation is
    vectorised, and only bad rows are visited one by one, to be reported.
    """

    def __init__(
        self,
        report: ReadReport,
        *,
        with_rating: bool = False,
        with_timestamp: bool = False,
        with_position: bool = False,
    ) -> None:
        self.report = report
        self.optional = [
            name
            for name, on in (
                ("rating", with_rating),
                ("timestamp", with_timestamp),
                ("position", with_position),
            )
            if on
        ]
        self._files: list[str] = []
        self._inter: list[pd.DataFrame] = []
        self._items: list[pd.DataFrame] = []
        self._vector_dims: dict[str, dict[str, int]] = {}  # vector column -> file -> its vectors' length
        self.metadata_files: list[str] = []

    def _file_index(self, file: str) -> int:
        if file not in self._files:
            self._files.append(file)
        return self._files.index(file)

    def _reject(self, frame: pd.DataFrame, bad: pd.Series, kind: str, file: str, message: Any) -> pd.DataFrame:
        """Count the rows flagged in ``bad`` as ``kind`` and return the others."""
        if not bad.any():
            return frame
        for line, value in zip(frame.loc[bad, "_line"], frame.loc[bad, "_value"], strict=True):
            self.report.add(kind, file, int(line), message(value))
        return frame.loc[~bad].copy()

    def _required(self, frame: pd.DataFrame, names: list[str], file: str) -> pd.DataFrame:
        for name in names:
            frame["_value"] = frame[name]
            frame = self._reject(
                frame,
                _blank_mask(frame[name]),
                "missing_field",
                file,
                lambda _v, n=name: f"{n} is missing or empty",
            )
        return frame

    def _numeric(self, frame: pd.DataFrame, name: str, kind: str, file: str, *, integer: bool) -> pd.DataFrame:
        frame["_value"] = frame[name]
        if integer:
            values, bad = integers(frame[name])
            what = "an integer in the 64-bit range"
        else:
            raw = frame[name]
            if raw.dtype == object:  # parse text (and reject JSON booleans, which would pass as 0/1)
                raw = raw.astype(str).str.strip()
            floats = pd.to_numeric(raw, errors="coerce").astype(float).to_numpy()
            values, bad = floats, ~np.isfinite(floats)
            what = "a number"
        frame = self._reject(
            frame,
            pd.Series(bad, index=frame.index),
            kind,
            file,
            lambda v: f"{name} {str(v)[:40]!r} is not {what}",
        )
        frame[name] = values[~bad]
        return frame

    # ------------------------------------------------------------------------------- interactions
    def add_interactions(self, file: str, lines: Sequence[int], columns: Mapping[str, Sequence[Any]]) -> int:
        """Validate the interaction rows read from ``file``; keep the good ones, count the bad ones.

        ``columns`` holds ``user_id``, ``item_id``, ``category`` and the optional columns this collector was
        made with, all of the same length as ``lines``. Returns how many rows were kept.
        """
        frame = pd.DataFrame({name: list(columns[name]) for name in (*KEYS, *self.optional)})
        frame["_line"] = np.asarray(lines, dtype=np.int64)
        frame = self._required(frame, [*KEYS, *self.optional], file)
        kinds = {"rating": "bad_rating", "timestamp": "bad_timestamp", "position": "bad_position"}
        for name in self.optional:
            frame = self._numeric(frame, name, kinds[name], file, integer=name != "rating")
        for name in KEYS:
            frame[name] = frame[name].astype(str).str.strip()
        frame["_file"] = self._file_index(file)
        self._inter.append(frame.drop(columns="_value"))
        return len(frame)

    # -------------------------------------------------------------------------------------- items
    def add_items(
        self,
        file: str,
        lines: Sequence[int],
        item_id: Sequence[Any],
        category: Sequence[Any] | None,
        texts: Mapping[str, Sequence[Any]],
        vectors: Mapping[str, Any] | None = None,
    ) -> int:
        """Validate metadata rows from ``file``; ``texts`` maps text-column name to its raw values, ``vectors``
        vector-column name to its raw values (an Arrow array or a sequence; see :mod:`tfrec_xcat.data.vectors`).
        Without ``category`` (a list of ids only, e.g. items to remove) the category is "" and not required."""
        frame = pd.DataFrame({"item_id": list(item_id), "category": list(category) if category is not None else ""})
        frame["_line"] = np.asarray(lines, dtype=np.int64)
        for name, values in texts.items():
            frame[name] = [text_value(v) for v in values]
        for name, values in (vectors or {}).items():
            parsed = parse_vectors(name, values)
            self._vector_dims.setdefault(name, {})[file] = parsed.dim
            cells: list[Any] = [None] * len(frame)
            for i in np.flatnonzero(parsed.ok):
                cells[i] = parsed.matrix[i]
            for i, message in parsed.problems.items():
                cells[i] = message
            frame[VECTOR_PREFIX + name] = pd.Series(cells, index=frame.index, dtype=object)
        frame = self._required(frame, ["item_id"] if category is None else ["item_id", "category"], file)
        for name in ("item_id", "category"):
            frame[name] = frame[name].astype(str).str.strip()
        frame["_file"] = self._file_index(file)
        self._items.append(frame.drop(columns="_value"))
        return len(frame)

    # ----------------------------------------------------------------------------------- assemble
    def _drop_duplicates(self, frame: pd.DataFrame, keys: list[str], kind: str, what: str) -> pd.DataFrame:
        dup = frame.duplicated(keys, keep="first").to_numpy()
        if dup.any():
            bad = frame.loc[dup]
            idents = bad[keys].astype(str).agg(", ".join, axis=1)
            for f, line, ident in zip(bad["_file"], bad["_line"], idents, strict=True):
                self.report.add(kind, self._files[int(f)], int(line), f"{what} ({ident}) seen before")
        return frame.loc[~dup]

    def item_rows(self) -> pd.DataFrame:
        """The item rows validated so far on their own (no interactions needed), with ``_file`` and ``_line``;
        a repeated item_id is counted as ``duplicate_item`` and its first row kept."""
        if not self._items:
            return pd.DataFrame({"item_id": [], "category": [], "_file": [], "_line": []})
        items = pd.concat(self._items, ignore_index=True)
        return self._drop_duplicates(items, ["item_id"], "duplicate_item", "item").reset_index(drop=True)

    def build(self, *, text_columns: list[str] | None, name: str) -> ShopData:
        """Assemble the :class:`ShopData`: drop counted duplicates, add rows for items without metadata."""
        inter = pd.concat(self._inter, ignore_index=True) if self._inter else pd.DataFrame()
        if inter.empty:
            for file in list(self.report.rows):
                self.report.check(file)
            raise DataError(f"{name}: no usable interaction rows")
        inter = self._drop_duplicates(inter, ["user_id", "item_id"], "duplicate", "user, item")

        items = (
            pd.concat(self._items, ignore_index=True)
            if self._items
            else pd.DataFrame({"item_id": [], "category": [], "_file": [], "_line": []})
        )
        items = self._drop_duplicates(items, ["item_id"], "duplicate_item", "item")
        vectors = self._item_vectors(items, name)
        internal = ("item_id", "category", "_file", "_line")
        available = [c for c in items.columns if c not in internal and not c.startswith(VECTOR_PREFIX)]
        if text_columns is None:
            text_columns = available
        else:
            unknown = [c for c in text_columns if c not in available]
            if unknown and self.metadata_files:
                raise DataError(
                    f"{name}: text column(s) {', '.join(unknown)} not in the item metadata "
                    f"(it has: {', '.join(available) or 'no text columns'})"
                )
            text_columns = [c for c in text_columns if c in available]

        # Interactions whose item has no metadata row: kept, with an item row of empty text, and counted once
        # per item (at its first interaction) when the data set has metadata at all.
        first = inter.drop_duplicates("item_id")
        lacking = first.loc[~first["item_id"].isin(items["item_id"])]
        if len(lacking):
            if self.metadata_files:
                for f, line, item in zip(lacking["_file"], lacking["_line"], lacking["item_id"], strict=True):
                    message = f"item {item} has no metadata row"
                    self.report.add("item_without_metadata", self._files[int(f)], int(line), message)
            filler = pd.DataFrame({"item_id": lacking["item_id"], "category": lacking["category"]})
            items = pd.concat([items, filler], ignore_index=True)
        items = items[["item_id", "category", *text_columns]].copy()
        for col in text_columns:
            items[col] = items[col].fillna("").astype(str)
        items = items.sort_values(["category", "item_id"], kind="stable").reset_index(drop=True)

        for file in list(self.report.rows):
            self.report.check(file)
        keep = [c for c in inter.columns if not c.startswith("_")]
        return ShopData(
            interactions=finish_interactions(inter[keep]),
            items=items,
            text_columns=list(text_columns),
            report=self.report,
            name=name,
            vectors=vectors,
        )

    def _item_vectors(self, items: pd.DataFrame, name: str) -> dict[str, ItemVectors]:
        """Each vector column's good vectors by item; its bad and missing cells counted with file and line."""
        out: dict[str, ItemVectors] = {}
        for column, dims in self._vector_dims.items():
            lengths = sorted({d for d in dims.values() if d > 0})
            if len(lengths) > 1:
                per_file = ", ".join(f"{f}: {d}" for f, d in dims.items())
                raise DataError(f"{name}: vector column {column} has vectors of different lengths ({per_file})")
            cells = items[VECTOR_PREFIX + column].to_numpy(dtype=object)
            good = np.array([isinstance(c, np.ndarray) for c in cells], dtype=bool)
            for f, line, cell in zip(items["_file"], items["_line"], cells, strict=True):
                if isinstance(cell, str):
                    self.report.add("bad_vector", self._files[int(f)], int(line), cell)
                elif not isinstance(cell, np.ndarray):  # None, or NaN for rows of a file without the column
                    self.report.add("missing_vector", self._files[int(f)], int(line), f"{column} is null")
            if not lengths:
                for file in dims:
                    self.report.check(file)  # too many bad vectors: that error, with the kinds and lines
                raise DataError(f"{', '.join(dims)}: vector column {column} holds no usable vector")
            matrix = np.stack(cells[good]).astype(np.float32) if good.any() else np.zeros((0, lengths[0]), np.float32)
            out[column] = ItemVectors(pd.Index(items["item_id"].to_numpy()[good]), matrix)
        return out
