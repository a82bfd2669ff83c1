"""One entry point for every supported layout: detect the format of a directory and read it."""

from __future__ import annotations

import logging
from pathlib import Path

from tfrec_xcat.data.amazon import LAYOUTS, discover, read_amazon
from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.neutral import is_neutral, read_neutral
from tfrec_xcat.errors import DataError

log = logging.getLogger(__name__)

FORMATS = ("auto", "neutral", *LAYOUTS)


def detect_format(directory: Path) -> str:
    """Name the layout of ``directory`` (neutral first, then Amazon 2023, 2018, 2014)."""
    if not directory.exists():
        raise DataError(f"{directory}: data directory not found")
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    if is_neutral(directory):
        return "neutral"
    for name, layout in LAYOUTS.items():
        if discover(directory, layout):
            return name
    raise DataError(
        f"{directory}: no known data layout (expected interactions.csv[.gz]|.parquet + items.*, "
        "<Category>.jsonl[.gz], <Category>_5.json[.gz] or ratings_<Category>.csv)"
    )


def load_shop(
    directory: str | Path,
    *,
    fmt: str = "auto",
    categories: list[str] | None = None,
    text_columns: list[str] | None = None,
    vector_columns: list[str] | None = None,
    max_bad_fraction: float = 0.001,
    log_problems: bool = True,
) -> ShopData:
    """Read the data set in ``directory``; ``categories`` limits (and checks) which categories are read;
    ``vector_columns`` names list-of-float item columns (neutral layout, ``items.parquet`` only).

    Every problem row is counted in ``data.report`` and logged; too many raise :class:`DataError`.
    """
    directory = Path(directory)
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(directory)
    elif not directory.is_dir():
        raise DataError(f"{directory}: data directory not found")
    if vector_columns and fmt != "neutral":
        raise DataError(f"{directory}: vector columns are read from the neutral layout's items.parquet, not {fmt}")
    if fmt == "neutral":
        data = read_neutral(
            directory, text_columns=text_columns, vector_columns=vector_columns, max_bad_fraction=max_bad_fraction
        )
        for cat in categories or []:
            data.require_category(cat)
    else:
        data = read_amazon(
            directory,
            LAYOUTS[fmt],
            categories=categories,
            text_columns=text_columns,
            max_bad_fraction=max_bad_fraction,
        )
    if log_problems:
        data.report.log()
    return data
