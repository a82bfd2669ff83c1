"""Opening data files: plain or gzipped text, line by line with 1-based line numbers, and file lookup."""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import sys
from collections import deque
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


MAX_RECORD_LINES = 50


def _parse_record(text: str, delimiter: str) -> tuple[list[str] | None, str]:
    if '"' not in text:
        return text.rstrip("\r\n").split(delimiter), ""
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return None, f"broken CSV quoting: {exc}"
    if len(rows) != 1:
        return None, "broken CSV quoting"
    return rows[0], ""


def iter_csv(path: Path, *, delimiter: str = ",") -> Iterator[tuple[int, list[str] | None, str]]:
    """Yield ``(line, fields, error)`` per record; ``fields`` is None (and ``error`` set) for a broken record.

    ``line`` is the 1-based physical line on which the record starts. A quoted field may span lines, but a
    record whose quotes are still open after ``MAX_RECORD_LINES`` lines (or at the end of the file) is broken:
    it is reported at its first line and reading resumes on the next line, so one stray quote cannot swallow
    the rest of the file. Gzip corruption ends the file with a DataError naming it.
    """
    pending: deque[tuple[int, str]] = deque()
    with open_text(path) as handle:
        numbered = enumerate(handle, start=1)

        def pull() -> tuple[int, str] | None:
            if pending:
                return pending.popleft()
            try:
                return next(numbered, None)
            except (OSError, EOFError) as exc:
                raise DataError(f"{path}: unreadable: {exc}") from None

        while (first := pull()) is not None:
            start, text = first
            if "\x00" in text:
                yield start, None, "line contains NUL bytes"
                continue
            if text.count('"') % 2 == 0:
                fields, error = _parse_record(text, delimiter)
                yield start, fields, error
                continue
            parts = [first]
            while len(parts) < MAX_RECORD_LINES:
                nxt = pull()
                if nxt is None:
                    break
                parts.append(nxt)
                if sum(t.count('"') for _, t in parts) % 2 == 0:
                    break
            if sum(t.count('"') for _, t in parts) % 2 == 0:
                fields, error = _parse_record("".join(t for _, t in parts), delimiter)
                yield start, fields, error
            else:
                yield start, None, "unterminated quoted field"
                pending.extendleft(reversed(parts[1:]))


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
