"""Opening data files: plain or gzipped, line by line with 1-based line numbers, and file lookup.

Files are read as bytes and each physical line (ending in ``\\n``) is decoded as UTF-8 on its own, so a line
that is not valid UTF-8 is reported (``bad_encoding``, with its number) instead of being silently repaired.
Every physical line is accounted for: it is part of a record that is yielded, or it is yielded as bad.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import re
import sys
import zlib
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from tfrec_xcat.errors import DataError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

#: A quoted field may span at most this many physical lines; past that, its first line is reported as broken.
MAX_RECORD_LINES = 50


class Record(NamedTuple):
    """One record of a data file: the physical lines ``line``..``end`` (1-based, inclusive).

    ``value`` is the parsed record (CSV fields or a JSON object); None when the record is bad, and then
    ``kind`` (``malformed_line`` or ``bad_encoding``) and ``error`` say why. A bad record is always one line.
    """

    line: int
    end: int
    value: Any
    kind: str
    error: str


def open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for reading bytes, transparently gunzipping ``*.gz``; a clear error if it can't be read."""
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rb")
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc.strerror or exc}") from None


#: A lone carriage return also ends a line (old Mac files; Python's text mode and ``csv`` do the same).
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")


def iter_lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """Yield ``(line, text, error)`` for every physical line (ended by ``\\n``, ``\\r\\n`` or a lone ``\\r``);
    ``text`` is None when the line is not UTF-8.

    A UTF-8 byte-order mark at the start of the file is dropped. Gzip corruption ends the file with a
    DataError naming it and the last good line.
    """
    number = 0
    with open_binary(path) as handle:
        lines = iter(handle)
        while True:
            try:
                raw = next(lines, None)
            except (OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{path}: unreadable after line {number}: {exc}") from None
            if raw is None:
                return
            if number == 0 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            body = raw[:-2] if raw.endswith(b"\r\n") else raw  # CRLF files: no split needed (the usual case)
            pieces = [p for p in _LONE_CR.split(raw) if p] if b"\r" in body else [raw]
            for piece in pieces:
                number += 1
                try:
                    yield number, piece.decode("utf-8"), ""
                except UnicodeDecodeError as exc:
                    bad = piece[exc.start : exc.end]
                    yield number, None, f"not valid UTF-8: byte(s) {bad!r} at column {exc.start + 1}"


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


def is_blank(fields: list[str]) -> bool:
    """Whether a parsed CSV line is a blank line (not a row)."""
    return len(fields) <= 1 and not "".join(fields).strip()


def iter_csv(path: Path, *, delimiter: str = ",", width: int | None = None, header: bool = False) -> Iterator[Record]:
    """Yield one :class:`Record` per CSV record (its fields as a list of strings) or per bad line.

    Quoting follows RFC 4180 (Python's ``csv`` in strict mode): a quote opens a quoted field only at the start
    of a field, so an inch mark inside a field (``12" pan``) is an ordinary character. A quoted field may span
    lines; such a multi-line record is accepted only if it parses and (when ``width`` is known, or taken from
    the first record with ``header=True``) has ``width`` fields. Otherwise only its first line is reported and
    reading resumes on the next line, so one stray quote cannot swallow other lines.
    """
    pending: deque[tuple[int, str | None, str]] = deque()
    lines = iter_lines(path)

    def pull() -> tuple[int, str | None, str] | None:
        return pending.popleft() if pending else next(lines, None)

    while (first := pull()) is not None:
        start, text, error = first
        if text is None:
            yield Record(start, start, None, "bad_encoding", error)
            continue
        if "\x00" in text:
            yield Record(start, start, None, "malformed_line", "line contains NUL bytes")
            continue
        if '"' not in text:
            fields = text.rstrip("\r\n").split(delimiter)
            if header and width is None and not is_blank(fields):
                width = len(fields)
            yield Record(start, start, fields, "", "")
            continue
        taken = [first]

        def feed(text: str = text, taken: list[tuple[int, str | None, str]] = taken) -> Iterator[str]:
            yield text
            while len(taken) < MAX_RECORD_LINES:
                nxt = pull()
                if nxt is None:
                    return
                if nxt[1] is None or "\x00" in nxt[1]:
                    pending.appendleft(nxt)
                    return
                taken.append(nxt)
                yield nxt[1]

        why = ""
        try:
            fields = next(csv.reader(feed(), delimiter=delimiter, strict=True), [])
        except csv.Error as exc:
            fields, why = None, f"broken CSV quoting: {exc}"
        end = taken[-1][0]
        if fields is not None and len(taken) > 1 and width is not None and len(fields) != width:
            fields, why = None, f"a quoted field spanning lines {start}-{end} gives {len(fields)} fields, not {width}"
        if fields is None:
            if len(taken) > 1:
                if why.startswith("broken CSV quoting: unexpected end of data"):
                    why = f"quoted field not closed (looked ahead to line {end})"
                pending.extendleft(reversed(taken[1:]))
            yield Record(start, start, None, "malformed_line", why)
            continue
        if header and width is None and not is_blank(fields):
            width = len(fields)
        yield Record(start, end, fields, "", "")


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


def iter_json_lines(path: Path) -> Iterator[Record]:
    """Yield one :class:`Record` per non-blank line of a JSON-lines file (the object, or why it is bad)."""
    for number, text, error in iter_lines(path):
        if text is None:
            yield Record(number, number, None, "bad_encoding", error)
            continue
        if not text.strip():
            continue
        obj = parse_json_object(text)
        if obj is None:
            yield Record(number, number, None, "malformed_line", "not a JSON object")
        else:
            yield Record(number, number, obj, "", "")
