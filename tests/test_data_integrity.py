"""Issue 15, items 9-11: every physical line is read or reported with its number; invalid UTF-8 is reported,
never repaired; integers are exact or bad; a duplicated header column is one clear error.

The parser properties generate file STRUCTURE (quoting, embedded newlines, inch marks, stray quotes, line
endings, blank lines, undecodable bytes), not only field values.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfrec_xcat.data.io import iter_csv, iter_json_lines
from tfrec_xcat.data.load import load_shop
from tfrec_xcat.errors import DataError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER = "user_id,item_id,category,note\n"

# ------------------------------------------------------------------------------------- structure strategies
CHARS = st.sampled_from(['"', ",", "\n", "\r\n", "\r", " ", "a", "b", "é", "12", "'", "\t", "x y"])
FIELD = st.lists(CHARS, max_size=5).map("".join)
ROW = st.lists(FIELD, min_size=3, max_size=3)


def _csv_line(fields: list[str], terminator: str) -> bytes:
    out = io.StringIO()
    # with "\r\n" as its terminator csv.writer quotes every field holding \r or \n (with "\n" it leaves a
    # lone \r unquoted: a line end to any reader); then the chosen terminator replaces it
    csv.writer(out, lineterminator="\r\n").writerow(fields)
    return (out.getvalue()[:-2] + terminator).encode()


# A physical piece of a file: a properly quoted row, a raw row with inch marks, a stray opening quote,
# an undecodable line, a blank line.
PIECE = st.one_of(
    st.tuples(st.just("row"), ROW, st.sampled_from(["\n", "\r\n", "\r"])),
    st.tuples(
        st.just("inch"), st.lists(st.sampled_from(['12" pan', 'a"b"c', "5'2\"", "plain"]), min_size=3, max_size=3)
    ),
    st.tuples(st.just("stray"), st.sampled_from(['"open,b,c', 'a,"never closed,c', 'a,b,"'])),
    st.tuples(st.just("bytes"), st.sampled_from([b"caf\xe9,b,c", b"\xff\xfe,b,c", b"a,\xc3,c", b"a,b,\xed\xa0\x80"])),
    st.tuples(st.just("blank"), st.sampled_from(["", "   "])),
)


def _render(pieces: list[tuple]) -> tuple[bytes, list[tuple[int, int, list[str] | None, str]]]:
    """The file's bytes and, per piece, (first line, last line, expected fields or None, kind)."""
    data, expected, line = b"", [], 1
    for piece in pieces:
        kind = piece[0]
        if kind == "row":
            raw = _csv_line(piece[1], piece[2])
            fields = piece[1]
        elif kind == "inch":
            raw, fields = (",".join(piece[1]) + "\n").encode(), piece[1]
        elif kind == "stray":
            raw, fields = (piece[1] + "\n").encode(), None
        elif kind == "bytes":
            raw, fields = piece[1] + b"\n", None
        else:
            raw, fields = (piece[1] + "\n").encode(), [piece[1]]
            if data.endswith(b"\r"):  # a lone \r then \n would be one \r\n line end: keep the blank line apart
                raw, fields = b" " + raw, [" " + piece[1]]
        # a line ends with \n, \r\n or a lone \r, inside a quoted field too
        n = len(re.findall(rb"\r\n|\r|\n", raw))
        expected.append((line, line + n - 1, fields, kind))
        data += raw
        line += n
    return data, expected


def _records(data: bytes, suffix: str = ".csv", **kw: object) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(data)
        return list(iter_csv(path, **kw))


@SETTINGS
@given(st.lists(PIECE, max_size=25))
def test_every_physical_line_is_in_exactly_one_record(pieces: list[tuple]) -> None:
    data, expected = _render(pieces)
    records = _records(data, width=3)
    covered = [n for r in records for n in range(r.line, r.end + 1)]
    total = expected[-1][1] if expected else 0
    assert covered == list(range(1, total + 1))  # in order, none skipped, none twice
    for r in records:
        assert (r.value is None) == bool(r.kind) and (r.value is None or r.kind == "")
        assert r.value is not None or r.line == r.end  # a bad record is one line: the rest is re-read
    bad_bytes = {first for first, _, _, kind in expected if kind == "bytes"}
    assert bad_bytes <= {r.line for r in records if r.kind == "bad_encoding"}


@SETTINGS
@given(st.lists(PIECE.filter(lambda p: p[0] != "stray"), max_size=25))
def test_without_stray_quotes_every_row_comes_back_exactly(pieces: list[tuple]) -> None:
    data, expected = _render(pieces)
    got = [(r.line, r.end, r.value, r.kind) for r in _records(data, width=3)]
    want = [(first, last, fields, "bad_encoding" if kind == "bytes" else "") for first, last, fields, kind in expected]
    assert got == want


@SETTINGS
@given(st.lists(PIECE, max_size=25), st.booleans())
def test_gzip_reads_the_same_records(pieces: list[tuple], _unused: bool) -> None:
    import gzip

    data, _ = _render(pieces)
    assert _records(gzip.compress(data), ".csv.gz", width=3) == _records(data, width=3)


JSON_PIECE = st.one_of(
    st.dictionaries(st.sampled_from(["user_id", "é", 'q"']), st.text(max_size=4), max_size=2).map(
        lambda d: json.dumps(d, ensure_ascii=False).encode()
    ),
    st.sampled_from([b"{broken", b"[1, 2]", b"", b"   ", b'{"a": "caf\xe9"}', b"\xff", b"{'py': 1}"]),
)


@SETTINGS
@given(st.lists(JSON_PIECE, max_size=25), st.sampled_from([b"\n", b"\r\n"]))
def test_json_lines_every_line_is_read_or_reported(pieces: list[bytes], newline: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jsonl"
        path.write_bytes(b"".join(p + newline for p in pieces))
        records = list(iter_json_lines(path))
    blank = {i for i, p in enumerate(pieces, start=1) if not p.strip()}
    assert [r.line for r in records] == [i for i in range(1, len(pieces) + 1) if i not in blank]
    for r, piece in zip(records, [p for p in pieces if p.strip()], strict=True):
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            assert r.kind == "bad_encoding"
        else:
            assert r.kind in ("", "malformed_line") and (r.value is None) == (r.kind != "")


def _neutral(tmp_path: Path, interactions: bytes, items: bytes | None = None) -> Path:
    (tmp_path / "interactions.csv").write_bytes(interactions)
    (tmp_path / "items.csv").write_bytes(items or b"item_id,category,title\ni1,Food,Tea\ni2,Food,Pan\n")
    return tmp_path


def test_inch_marks_lose_no_row(tmp_path: Path) -> None:
    """Two unmatched quotes 40 lines apart used to join 41 rows into one malformed_line."""
    rows = [f"u{n},i{1 + n % 2},Food,plain" for n in range(60)]
    rows[4] = 'u4,i1,Food,12" pan'
    rows[44] = 'u44,i1,Food,8" lid'
    shop = load_shop(_neutral(tmp_path, (HEADER + "\n".join(rows) + "\n").encode()), log_problems=False)
    assert len(shop.interactions) == 60 and shop.report.total() == 0


def test_inch_mark_in_every_title_is_kept(tmp_path: Path) -> None:
    items = "item_id,category,title\n" + "".join(f'i{n},Food,{n}" pan\n' for n in range(40))
    inter = HEADER + "".join(f"u{n},i{n},Food,x\n" for n in range(40))
    shop = load_shop(_neutral(tmp_path, inter.encode(), items.encode()), log_problems=False)
    assert shop.report.total() == 0
    assert sorted(shop.items.title) == sorted(f'{n}" pan' for n in range(40))


def test_stray_opening_quote_costs_one_line(tmp_path: Path) -> None:
    rows = [f"u{n},i1,Food,x" for n in range(30)]
    rows[3] = 'u3,i1,Food,"unclosed'
    shop = load_shop(_neutral(tmp_path, (HEADER + "\n".join(rows) + "\n").encode()), max_bad_fraction=0.1)
    (problem,) = shop.report.problems()
    assert (problem.kind, problem.line) == ("malformed_line", 5)
    assert len(shop.interactions) == 29


def test_invalid_utf8_is_reported_not_merged(tmp_path: Path) -> None:
    body = HEADER.encode() + b"".join(f"u{n},i1,Food,x\n".encode() for n in range(30))
    body += b"caf\xe9,i1,Food,x\ncaf\xe8,i1,Food,x\n"
    shop = load_shop(_neutral(tmp_path, body), max_bad_fraction=0.1, log_problems=False)
    problems = shop.report.problems()
    assert [(p.kind, p.line) for p in problems] == [("bad_encoding", 32), ("bad_encoding", 33)]
    assert "interactions.csv:32: bad_encoding" in str(problems[0])
    assert shop.report.total("duplicate") == 0 and len(shop.interactions) == 30


def test_invalid_utf8_in_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(json.dumps({"a": 1}).encode() + b"\n" + b'{"user_id": "caf\xe9"}\n\n{"b": 2}\n')
    got = [(r.line, r.kind) for r in iter_json_lines(path)]
    assert got == [(1, ""), (2, "bad_encoding"), (4, "")]


def test_bom_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    body = b"\xef\xbb\xbf" + HEADER.encode() + b"u1,i1,Food,x\n"
    assert len(load_shop(_neutral(tmp_path, body), log_problems=False).interactions) == 1


@pytest.mark.parametrize(
    ("value", "good"),
    [
        ("1e300", False),
        ("-1e300", False),
        ("9223372036854775808", False),
        ("1e19", False),
        ("1_000", False),
        ("9223372036854775807", True),
        ("1700000000123456789", True),
        ("1.7e9", True),
        ("  42 ", True),
        ("1.5", False),
    ],
)
def test_timestamps_are_exact_or_bad(tmp_path: Path, value: str, good: bool) -> None:
    head = "user_id,item_id,category,timestamp\n"
    rows = "".join(f"u{n},i1,Food,{n}\n" for n in range(30)) + f"x,i1,Food,{value}\n"
    shop = load_shop(_neutral(tmp_path, (head + rows).encode()), max_bad_fraction=0.1, log_problems=False)
    assert shop.report.total("bad_timestamp") == (0 if good else 1)
    if good:
        stored = shop.interactions.set_index("user_id").loc["x", "timestamp"]
        assert stored == int(float(value)) if "e" in value else stored == int(value)


def test_duplicated_header_column_is_one_clear_error(tmp_path: Path) -> None:
    d = _neutral(tmp_path, b"user_id,item_id,category,item_id\nu1,i1,Food,i2\n")
    with pytest.raises(
        DataError, match=r"interactions.csv: the header names column 'item_id' twice \(columns 2 and 4\)"
    ):
        load_shop(d)
    d = _neutral(tmp_path, HEADER.encode() + b"u1,i1,Food,x\n", b"item_id,category,title,title\ni1,Food,a,b\n")
    with pytest.raises(DataError, match="items.csv: the header names column 'title' twice"):
        load_shop(d)
    # a repeated column that is not read is harmless
    d = _neutral(tmp_path, b"user_id,item_id,category,note,note\nu1,i1,Food,a,b\n")
    assert len(load_shop(d, log_problems=False).interactions) == 1


def test_old_mac_line_ends(tmp_path: Path) -> None:
    """A lone \\r ends a line, as in Python's text mode: reading bytes must not join such a file into one line."""
    inter = b"user_id,item_id,category\r" + b"".join(f"u{n},i1,Food\r".encode() for n in range(20))
    shop = load_shop(_neutral(tmp_path, inter, b"item_id,category,title\r\ni1,Food,Tea\r\n"), log_problems=False)
    assert len(shop.interactions) == 20 and shop.report.total() == 0
