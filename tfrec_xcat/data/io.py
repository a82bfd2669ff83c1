"""Opening data files: plain or gzipped text, line by line with 1-based line numbers, and file lookup."""

from __future__ import annotations

import ast
import csv
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tfrec_xcat.errors import DataError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def open_text(path: Path) -> IO[str]:
    """Open ``path`` for reading text, transparently gunzipping ``*.gz``; a clear error if it can't be read."""
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
        return open(path, encoding="utf-8", errors="replace", newline="")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror or exc}") from None


def find_file(directory: Path, stems: list[str], suffixes: tuple[str, ...], *, required: bool) -> Path | None:
    """First existing ``directory/stem+suffix``; if ``required`` and none exists, a one-line error naming them."""
    for stem in stems:
        for suffix in suffixes:
            candidate = directory / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    if required:
        names = ", ".join(f"{s}{x}" for s in stems for x in suffixes)
        raise DataError(f"{directory}: no {stems[0]} file (looked for {names})")
    return None


def iter_csv(path: Path, *, delimiter: str = ",") -> Iterator[tuple[int, list[str] | None, str]]:
    """Yield ``(line, fields, error)`` per record; ``fields`` is None (and ``error`` set) for a broken record.

    ``line`` is the 1-based physical line on which the record starts. Gzip corruption ends the file with
    a DataError naming it, since nothing after it can be trusted.
    """
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        line = 1
        while True:
            start = line
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line = reader.line_num + 1
                yield start, None, f"broken CSV quoting: {exc}"
                continue
            except (OSError, EOFError) as exc:
                raise DataError(f"{path}: unreadable after line {start - 1}: {exc}") from None
            line = reader.line_num + 1
            if fields and "\x00" in "".join(fields):
                yield start, None, "line contains NUL bytes"
                continue
            yield start, fields, ""


def parse_json_object(text: str) -> dict[str, Any] | None:
    """Parse one JSON object (or, for older Amazon metadata dumps, a Python dict literal); None if neither."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        if not text.lstrip().startswith("{"):
            return None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            return None
    return value if isinstance(value, dict) else None


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """Yield ``(line, object, error)`` for each non-blank line of a JSON-lines file."""
    number = 0
    with open_text(path) as handle:
        try:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                obj = parse_json_object(text)
                if obj is None:
                    yield number, None, "not a JSON object"
                else:
                    yield number, obj, ""
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: unreadable after line {number}: {exc}") from None
