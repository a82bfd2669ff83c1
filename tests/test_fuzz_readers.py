"""Fuzzed files: every reader either returns data whose row accounting adds up, or a DataError naming the
file; never an unhandled exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfrec_xcat.data.load import load_shop
from tfrec_xcat.errors import DataError

FIELD = st.one_of(
    st.sampled_from(["u1", "u2", "i1", "k1", "Food", "Kitchen", "", " ", "3", "4.5", "x", "nan", "-1", '"', '""']),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
)
LINE = st.one_of(
    st.lists(FIELD, min_size=0, max_size=6).map(",".join),
    st.text(max_size=30),
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(directory: Path, names: list[str]) -> None:
    try:
        shop = load_shop(directory, max_bad_fraction=1.0, log_problems=False)
    except DataError as exc:
        assert any(n in str(exc) for n in names) or str(directory) in str(exc), str(exc)
        return
    report = shop.report
    review_files = [f for f in report.rows if "items" not in f and "meta_" not in f]
    # Nothing silently lost: every interaction row read was kept or counted as dropped.
    kept_or_dropped = len(shop.interactions) + sum(report.dropped(f) for f in review_files)
    assert kept_or_dropped == sum(report.rows[f] for f in review_files)


@SETTINGS
@given(
    lines=st.lists(LINE, max_size=20),
    header=st.sampled_from(["user_id,item_id,category", "user_id,item_id,category,rating,position", "", "a,b"]),
)
def test_fuzzed_neutral_csv(lines: list[str], header: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "interactions.csv").write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
        (d / "items.csv").write_text("item_id,category,title\ni1,Food,Tea\nk1,Kitchen,Pot\n", encoding="utf-8")
        _check(d, ["interactions.csv", "items.csv"])


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)
REVIEW = st.fixed_dictionaries(
    {},
    optional={"user_id": JSON_VALUE, "parent_asin": JSON_VALUE, "rating": JSON_VALUE, "timestamp": JSON_VALUE},
)


@SETTINGS
@given(
    reviews=st.lists(st.one_of(REVIEW.map(json.dumps), st.text(max_size=20)), max_size=15),
    metas=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {}, optional={"parent_asin": JSON_VALUE, "title": JSON_VALUE, "features": JSON_VALUE}
            ).map(json.dumps),
            st.text(max_size=20),
        ),
        max_size=5,
    ),
)
def test_fuzzed_amazon2023(reviews: list[str], metas: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "Food.jsonl").write_text("\n".join(reviews) + "\n", encoding="utf-8")
        (d / "meta_Food.jsonl").write_text("\n".join(metas) + "\n", encoding="utf-8")
        _check(d, ["Food.jsonl"])
