"""Shared fixtures: a small synthetic shop, and the real data set where it is present."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import tfrec_xcat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)
from tfrec_xcat.data.synthetic import SyntheticSpec, write_synthetic

# Never write into the user's cache from tests (set before any fixture, session-scoped ones included).
os.environ["TFREC_XCAT_CACHE"] = tempfile.mkdtemp(prefix="tfrec-xcat-test-cache-")

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("TFREC_XCAT_REAL_DATA", REPO.parent / "shared" / "data" / "amazon-food-kitchen"))

SMALL = SyntheticSpec(n_users=400, items_per_category=(80, 120), n_clusters=15)


@pytest.fixture(scope="session")
def small_shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic shop in the neutral layout (400 users, 2 categories)."""
    return write_synthetic(tmp_path_factory.mktemp("shop") / "small", SMALL)


#: The vector column of :func:`vector_shop_dir` and its length.
VECTOR_COLUMN, VECTOR_DIM = "img_emb", 6


@pytest.fixture(scope="session")
def vector_shop_dir(small_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small shop with ``items.parquet`` holding a list-of-float column ``img_emb`` (every 10th item has
    none: a null), as precomputed image embeddings would be."""
    import shutil

    import numpy as np
    import pandas as pd

    out = tmp_path_factory.mktemp("vector-shop") / "small"
    out.mkdir()
    shutil.copy(small_shop_dir / "interactions.csv.gz", out / "interactions.csv.gz")
    items = pd.read_csv(small_shop_dir / "items.csv")
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(len(items), VECTOR_DIM)).astype(np.float32)
    items[VECTOR_COLUMN] = [None if i % 10 == 3 else v.tolist() for i, v in enumerate(vectors)]
    items.to_parquet(out / "items.parquet")
    return out


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Amazon Food/Kitchen data; tests using it skip where it is absent."""
    if not (REAL_DATA / "interactions.csv.gz").is_file():
        pytest.skip(f"real data not found at {REAL_DATA} (set TFREC_XCAT_REAL_DATA to its directory)")
    return REAL_DATA


SMALL_CONFIG = {
    "synthetic": {
        "n_users": SMALL.n_users,
        "items_per_category": list(SMALL.items_per_category),
        "n_clusters": SMALL.n_clusters,
    },
    # one pair of towers here (quick); the shipped default (two) is what tests/test_recommend.py and the vector
    # export of tests/test_export.py train, export and compare
    "model": {
        "embedding_dim": 16,
        "tower_layers": [32],
        "text_dim": 16,
        "history_per_category": 8,
        "max_tokens": 8,
        "towers": 1,
    },
    "training": {"batch_size": 128, "epochs": 1, "source_epochs": 1},
    # transfer's ranking stage, kept small
    "ranker": {"candidates": [20], "epochs": 3, "fusion_weights": [1.0], "ensemble": 2},
}


def small_config_toml(**overrides: dict) -> str:
    """SMALL_CONFIG as a TOML config file's text, each section updated with ``overrides[section]``."""
    from tfrec_xcat.config import dump_toml

    sections = {name: dict(values) for name, values in SMALL_CONFIG.items()}
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    return dump_toml(sections)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfrec_xcat.config import load_config
    from tfrec_xcat.train import run_training

    run = tmp_path_factory.mktemp("trained")
    run_training(load_config(None, SMALL_CONFIG), run)
    return run


@pytest.fixture(scope="session")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tfrec_xcat.export.exporter import export

    out = tmp_path_factory.mktemp("saved_models")
    export(trained, out)
    return out
