"""Shared fixtures: a small synthetic shop, and the real data set where it is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tfrec_xcat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)
from tfrec_xcat.data.synthetic import SyntheticSpec, write_synthetic

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("TFREC_XCAT_REAL_DATA", REPO.parent / "shared" / "data" / "amazon-food-kitchen"))

SMALL = SyntheticSpec(n_users=400, items_per_category=(80, 120), n_clusters=15)


@pytest.fixture(scope="session")
def small_shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shop in the neutral layout (400 users, 2 categories)."""
    return write_synthetic(tmp_path_factory.mktemp("shop") / "small", SMALL)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Amazon Food/Kitchen data; tests using it skip where it is absent."""
    if not (REAL_DATA / "interactions.csv.gz").is_file():
        pytest.skip(f"real data not found at {REAL_DATA} (set TFREC_XCAT_REAL_DATA to its directory)")
    return REAL_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write into the user's cache from tests."""
    monkeypatch.setenv("TFREC_XCAT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
