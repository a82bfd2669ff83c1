"""Counting and reporting bad input rows, so that nothing is dropped without being said.

Every reader feeds a :class:`ReadReport`. Each problem has a *kind* (one of :data:`KINDS`), a file and a line
(1-based; for Parquet, the 1-based row), and a short message. All problems are counted; the first few of each
kind per file are kept verbatim for the report. :meth:`ReadReport.check` turns too many bad rows in one file
into a :class:`~tfrec_xcat.errors.DataError` that names the file, the kinds and the first offending lines.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tfrec_xcat.errors import DataError

log = logging.getLogger(__name__)

#: Problem kinds. Rows with any of these are dropped (and counted), except ``item_without_metadata``,
#: whose interactions are kept (the item gets empty text), ``bad_vector`` and ``missing_vector``, whose items are
#: kept with a zero vector and mask 0, and ``empty_file``, which concerns a whole file.
KINDS: dict[str, str] = {
    "malformed_line": "line cannot be parsed (wrong number of fields, broken quoting or JSON)",
    "bad_encoding": "line is not valid UTF-8 (it is not repaired: two different ids must not become one)",
    "missing_field": "a required field is absent or empty",
    "bad_rating": "rating is not a finite number",
    "bad_timestamp": "timestamp is not an integer in the 64-bit range",
    "bad_position": "position is not an integer in the 64-bit range",
    "duplicate": "(user, item) pair already seen; the first occurrence is kept",
    "duplicate_item": "item_id already described by an earlier metadata row; the first is kept",
    "item_without_metadata": "an interaction's item has no metadata row; kept with empty text",
    "bad_vector": "a vector column's value is not a list of finite numbers of the column's length; the item is "
    "kept with a zero vector (mask 0)",
    "missing_vector": "a vector column's value is null; the item is kept with a zero vector (mask 0); not counted "
    "against max_bad_fraction",
    "empty_file": "the file holds no data rows",
}

#: Kinds that concern a whole file or repair a row rather than drop it.
NOT_DROPPED = frozenset({"item_without_metadata", "bad_vector", "missing_vector", "empty_file"})

#: Repaired rows that still count against ``max_bad_fraction`` (a missing vector is an item without one: normal).
REPAIRED_BUT_BAD = frozenset({"item_without_metadata", "bad_vector"})

#: How many problems of one kind per file are kept verbatim.
EXAMPLES_KEPT = 5


@dataclass(frozen=True)
class Problem:
    """One bad row: where it is and what is wrong with it."""

    kind: str
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class ReadReport:
    """Per-file row counts and per-kind problem counts for one data set."""

    max_bad_fraction: float = 0.001
    rows: Counter[str] = field(default_factory=Counter)
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[tuple[str, str], list[Problem]] = field(default_factory=lambda: defaultdict(list))

    def add_rows(self, file: str, n: int) -> None:
        """Record that ``n`` data rows (good or bad) were read from ``file``."""
        self.rows[file] += n

    def add(self, kind: str, file: str, line: int, message: str) -> None:
        """Count one problem; keep it verbatim if it is among the first of its kind in its file."""
        if kind not in KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.counts[file][kind] += 1
        kept = self.examples[(file, kind)]
        if len(kept) < EXAMPLES_KEPT:
            kept.append(Problem(kind, file, line, message))

    def dropped(self, file: str | None = None) -> int:
        """Rows dropped because of a problem (in one file, or in all)."""
        files = [file] if file is not None else list(self.counts)
        return sum(n for f in files for k, n in self.counts[f].items() if k not in NOT_DROPPED)

    def total(self, kind: str | None = None) -> int:
        """All problems (of one kind, or of every kind) over all files."""
        return sum(n for c in self.counts.values() for k, n in c.items() if kind is None or k == kind)

    def by_kind(self) -> dict[str, int]:
        """Problem counts per kind over all files, every kind listed (zeros included)."""
        out = dict.fromkeys(KINDS, 0)
        for c in self.counts.values():
            for k, n in c.items():
                out[k] += n
        return out

    def problems(self) -> list[Problem]:
        """The problems kept verbatim, ordered by file and line."""
        return sorted((p for ps in self.examples.values() for p in ps), key=lambda p: (p.file, p.line))

    def lines(self) -> list[str]:
        """Human-readable report: one line per (file, kind) with a count and the first lines."""
        out = []
        for file in sorted(self.counts):
            for kind, n in sorted(self.counts[file].items()):
                first = ", ".join(str(p.line) for p in self.examples[(file, kind)] if p.line > 0)
                where = f" (first at line {first})" if first else ""
                out.append(f"{file}: {n:,} {kind}{where}: {KINDS[kind]}")
        return out

    def log(self) -> None:
        """Log every counted problem kind and its first examples at WARNING level."""
        for line in self.lines():
            log.warning(line)
        for p in self.problems():
            log.info("  %s", p)

    def check(self, file: str, *, fraction_of: int | None = None) -> None:
        """Raise :class:`DataError` if the dropped rows of ``file`` exceed ``max_bad_fraction``.

        ``fraction_of`` overrides the denominator (defaults to the rows read from the file).
        """
        total = fraction_of if fraction_of is not None else self.rows[file]
        bad = self.dropped(file) + sum(self.counts[file].get(kind, 0) for kind in REPAIRED_BUT_BAD)
        if total <= 0 or bad == 0:
            return
        if bad / total > self.max_bad_fraction:
            kinds = "; ".join(
                f"{k} {n:,} (e.g. {self.examples[(file, k)][0]})"
                for k, n in sorted(self.counts[file].items())
                if k not in ("empty_file", "missing_vector")
            )
            raise DataError(
                f"{file}: {bad:,} of {total:,} rows are bad ({bad / total:.2%}), more than "
                f"max_bad_fraction={self.max_bad_fraction:g}: {kinds}"
            )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary: rows per file, counts per file and kind, the kept examples."""
        return {
            "rows": dict(self.rows),
            "problems": {f: dict(c) for f, c in self.counts.items() if c},
            "examples": [str(p) for p in self.problems()],
        }
