"""Precomputed item vectors: list-of-float columns of the item metadata (image or text embeddings made elsewhere).

:func:`parse_vectors` checks one column's raw values. Every value must be a list of finite numbers, all of one
length: the column's most common one. A null value is a *missing* vector (the item has none); anything else that
is not such a list is *bad*, with a message naming what is wrong. Arrow list columns (what Parquet gives) are
checked without turning them into Python lists; other values (wrong types, plain Python lists) row by row.

:class:`ItemVectors` holds one column's good vectors by item id and gives, for any items, the zero-filled matrix
and the mask of the items that have a vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class ParsedVectors:
    """One column's values, row by row: the vectors of the good rows and what is wrong with the others."""

    matrix: np.ndarray  # (n_rows, dim) float32; zero rows where not ``ok``
    ok: np.ndarray  # (n_rows,) bool
    missing: np.ndarray  # (n_rows,) bool: null values
    problems: dict[int, str]  # row position -> what is wrong (bad rows only)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])


@dataclass(frozen=True)
class ItemVectors:
    """The vectors of one column for the items that have a good one (``matrix`` row i belongs to ``ids[i]``)."""

    ids: pd.Index
    matrix: np.ndarray  # (len(ids), dim) float32

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def lookup(self, items: Sequence[str] | pd.Index | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, mask)`` of ``items``: their vectors (zeros where an item has none) and whether it has one."""
        position = self.ids.get_indexer(pd.Index(items))
        found = position >= 0
        out = np.zeros((len(position), self.dim), dtype=np.float32)
        out[found] = self.matrix[position[found]]
        return out, found


def _common_length(lengths: np.ndarray) -> int:
    """The most common positive length (ties: the one seen first); 0 when there is none."""
    lengths = lengths[lengths > 0]
    if not len(lengths):
        return 0
    values, first, counts = np.unique(lengths, return_index=True, return_counts=True)
    best = np.flatnonzero(counts == counts.max())
    return int(values[best[np.argmin(first[best])]])


def _is_numeric_list(kind: pa.DataType) -> bool:
    lists = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if not lists:
        return False
    value = kind.value_type
    return pa.types.is_integer(value) or pa.types.is_floating(value)


def _from_arrow(name: str, array: pa.Array) -> ParsedVectors:
    """Vectorised check of an Arrow list array of numbers."""
    n = len(array)
    missing = array.is_null().to_numpy(zero_copy_only=False).astype(bool)
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = np.asarray(pc.list_flatten(array).to_numpy(zero_copy_only=False), dtype=np.float64)
    parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False).astype(np.int64)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(values) & (np.abs(values) <= np.finfo(np.float32).max)
    not_finite = np.bincount(parents[~finite], minlength=n) > 0
    dim = _common_length(lengths[~missing])
    ok = ~missing & (lengths == dim) & ~not_finite & (dim > 0)
    matrix = np.zeros((n, dim), dtype=np.float32)
    matrix[ok] = values[ok[parents]].reshape(-1, dim)
    problems: dict[int, str] = {}
    for row in np.flatnonzero(~ok & ~missing):
        if lengths[row] == 0:
            problems[int(row)] = f"{name} is an empty list"
        elif lengths[row] != dim:
            problems[int(row)] = f"{name} has {lengths[row]} values where the column's vectors have {dim}"
        else:
            where = values[parents == row]
            first = int(np.flatnonzero(~np.isfinite(where) | (np.abs(where) > np.finfo(np.float32).max))[0])
            problems[int(row)] = f"{name} holds {float(where[first])} at position {first}, not a finite float32 number"
    return ParsedVectors(matrix, ok, missing, problems)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def _row(value: Any) -> np.ndarray | str | None:
    """One Python value: its float vector, None when null, or what is wrong with it."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if not isinstance(value, list | tuple | np.ndarray) or isinstance(value, str):
        return f"is not a list of numbers: {str(value)[:40]!r}"
    other = next((v for v in value if not _is_number(v)), None)
    if other is not None or any(v is None for v in value):
        return f"is not a list of numbers: it holds {str(other)[:40]!r}"
    vector = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(vector) | (np.abs(vector) > np.finfo(np.float32).max)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        return f"holds {float(vector[first])} at position {first}, not a finite float32 number"
    if not len(vector):
        return "is an empty list"
    return vector


def _from_python(name: str, values: Sequence[Any]) -> ParsedVectors:
    """Row-by-row check of values of any type."""
    rows = [_row(v) for v in values]
    n = len(rows)
    missing = np.array([r is None for r in rows], dtype=bool)
    lengths = np.array([len(r) if isinstance(r, np.ndarray) else 0 for r in rows], dtype=np.int64)
    dim = _common_length(lengths)
    ok = lengths == dim
    ok &= lengths > 0
    matrix = np.zeros((n, dim), dtype=np.float32)
    problems: dict[int, str] = {}
    for i, r in enumerate(rows):
        if isinstance(r, str):
            problems[i] = f"{name} {r}"
        elif isinstance(r, np.ndarray) and ok[i]:
            matrix[i] = r
        elif isinstance(r, np.ndarray):
            problems[i] = f"{name} has {len(r)} values where the column's vectors have {dim}"
    return ParsedVectors(matrix, ok, missing, problems)


def parse_vectors(name: str, values: pa.ChunkedArray | pa.Array | Sequence[Any]) -> ParsedVectors:
    """Check the values of vector column ``name`` (see the module docstring)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if _is_numeric_list(values.type):
            return _from_arrow(name, values)
        values = values.to_pylist()
    return _from_python(name, list(values))
