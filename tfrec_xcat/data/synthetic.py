"""A seeded synthetic multi-category shop with planted cross-category structure (the embedded default data).

Items belong to latent *taste clusters*; every cluster exists in every category. A user has one taste
distribution over clusters that drives their purchases in every category they shop in, so source history
genuinely predicts target behaviour. Titles are drawn from per-cluster vocabularies: a cluster's *theme* words
are shared across categories (so a content-based item tower can transfer) and each (category, cluster) also has
words of its own. Written in the neutral layout; ``scale`` multiplies the number of users (and so interactions).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tfrec_xcat.validation import check_each, check_number

MAX_USERS = 100_000_000
MAX_ITEMS = 10_000_000

SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of the generated shop. The defaults make the demo: 2 categories, 4,000 users."""

    seed: int = 0
    scale: float = 1.0
    n_users: int = 4000
    categories: tuple[str, ...] = ("Food", "Kitchen")
    items_per_category: tuple[int, ...] = (400, 700)
    n_clusters: int = 30
    taste_concentration: float = 0.05  # Dirichlet alpha: smaller = users focus on fewer clusters
    overlap_fraction: float = 0.35  # users active in every category
    single_category_weights: tuple[float, ...] = (0.3, 0.7)  # where the other users shop
    mean_interactions: float = 8.0  # per user and active category
    max_interactions: int = 60
    noise: float = 0.05  # share of purchases drawn from global popularity instead of taste
    with_ratings: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # free-form tags, part of the cache key

    def __post_init__(self) -> None:
        if len(self.categories) < 2:
            raise ValueError("a synthetic shop needs at least 2 categories")
        if len(self.items_per_category) != len(self.categories):
            raise ValueError("items_per_category needs one number per category")
        if len(self.single_category_weights) != len(self.categories):
            raise ValueError("single_category_weights needs one number per category")
        check_number("seed", self.seed, ge=0, integer=True)
        check_number("scale", self.scale, gt=0)
        check_number("n_users", self.n_users, ge=1, integer=True)
        if self.users > MAX_USERS:
            raise ValueError(f"n_users * scale must be <= {MAX_USERS:,}, got {self.users:,}")
        if len(set(self.categories)) != len(self.categories) or not all(c.strip() for c in self.categories):
            raise ValueError(f"categories must be distinct, non-empty names, got {list(self.categories)}")
        check_each("items_per_category", self.items_per_category, ge=1, le=MAX_ITEMS, integer=True)
        check_number("n_clusters", self.n_clusters, ge=1, le=10_000, integer=True)
        check_number("taste_concentration", self.taste_concentration, gt=0)
        check_number("overlap_fraction", self.overlap_fraction, ge=0, le=1)
        check_each("single_category_weights", self.single_category_weights, ge=0)
        if not sum(self.single_category_weights) > 0:
            raise ValueError("single_category_weights must not all be 0")
        check_number("mean_interactions", self.mean_interactions, ge=1)  # a geometric distribution's mean
        check_number("max_interactions", self.max_interactions, ge=1, integer=True)
        check_number("noise", self.noise, ge=0, le=1)

    @property
    def users(self) -> int:
        return max(1, round(self.n_users * self.scale))

    def key(self) -> str:
        """A short stable hash of the spec: the cache folder name."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _words(rng: np.random.Generator, n: int, taken: set[str], syllables: int = 3) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        word = "".join(rng.choice(SYLLABLES, size=syllables))
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def generate(spec: SyntheticSpec | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate ``(interactions, items)`` frames in the neutral layout."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    k = spec.n_clusters
    taken: set[str] = set()
    theme = [_words(rng, 5, taken) for _ in range(k)]

    item_rows = []
    cat_items: list[dict[str, np.ndarray]] = []
    for c, (cat, n_items) in enumerate(zip(spec.categories, spec.items_per_category, strict=True)):
        own = [_words(rng, 5, taken) for _ in range(k)]
        nouns = _words(rng, 6, taken, syllables=2)
        brands = [w.capitalize() for w in _words(rng, 25, taken, syllables=2)]
        cluster = rng.integers(0, k, size=n_items)
        # Zipf-like popularity within the category.
        popularity = 1.0 / np.arange(1, n_items + 1) ** 0.6
        rng.shuffle(popularity)
        prefix = "".join(ch for ch in cat.upper() if ch.isalnum())[:3] or f"C{c}"
        ids = np.array([f"{prefix}{i:05d}" for i in range(n_items)])
        for i in range(n_items):
            cl = cluster[i]
            words = [
                *rng.choice(theme[cl], size=rng.integers(1, 3), replace=False),
                *rng.choice(own[cl], size=rng.integers(1, 3), replace=False),
                rng.choice(nouns),
            ]
            item_rows.append((ids[i], cat, " ".join(words).capitalize(), rng.choice(brands)))
        cat_items.append({"ids": ids, "cluster": cluster, "popularity": popularity / popularity.sum()})

    n_cat = len(spec.categories)
    weights = np.asarray(spec.single_category_weights, dtype=float)
    weights = weights / weights.sum()
    rows_user, rows_item, rows_cat, rows_rating, rows_pos = [], [], [], [], []
    for u in range(spec.users):
        taste = rng.dirichlet(np.full(k, spec.taste_concentration))
        active = list(range(n_cat)) if rng.random() < spec.overlap_fraction else [int(rng.choice(n_cat, p=weights))]
        uid = f"u{u:07d}"
        bought_item: list[str] = []
        bought_cat: list[str] = []
        bought_rating: list[float] = []
        for c in active:
            info = cat_items[c]
            n_items = len(info["ids"])
            n = min(int(rng.geometric(1.0 / spec.mean_interactions)), spec.max_interactions, n_items)
            # Per-category taste: the shared taste, slightly perturbed.
            local = taste * np.exp(0.3 * rng.standard_normal(k))
            local /= local.sum()
            p = local[info["cluster"]] * info["popularity"]
            p = (1 - spec.noise) * p / p.sum() + spec.noise * info["popularity"]
            p /= p.sum()
            chosen = rng.choice(n_items, size=n, replace=False, p=p)
            affinity = local[info["cluster"][chosen]]
            ratings = np.clip(np.rint(2.0 + 3.0 * np.sqrt(affinity) + rng.normal(0, 0.7, size=n)), 1, 5)
            bought_item.extend(info["ids"][chosen])
            bought_cat.extend([spec.categories[c]] * n)
            bought_rating.extend(ratings.tolist())
        order = rng.permutation(len(bought_item))
        for pos, j in enumerate(order):
            rows_user.append(uid)
            rows_item.append(bought_item[j])
            rows_cat.append(bought_cat[j])
            rows_rating.append(bought_rating[j])
            rows_pos.append(pos)

    interactions = pd.DataFrame(
        {"user_id": rows_user, "item_id": rows_item, "category": rows_cat, "position": rows_pos}
    )
    if spec.with_ratings:
        interactions["rating"] = np.asarray(rows_rating, dtype=np.float32)
    items = pd.DataFrame(item_rows, columns=["item_id", "category", "title", "brand"])
    return interactions, items


def write_synthetic(directory: str | Path, spec: SyntheticSpec | None = None) -> Path:
    """Generate the shop and write it to ``directory`` in the neutral layout (atomically); return the path."""
    spec = spec or SyntheticSpec()
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    interactions, items = generate(spec)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        interactions.to_csv(tmp / "interactions.csv.gz", index=False)
        items.to_csv(tmp / "items.csv", index=False)
        (tmp / "spec.json").write_text(json.dumps(asdict(spec), indent=2, sort_keys=True))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def cache_root() -> Path:
    """Where generated data and prepared TFDS shards are cached (``$TFREC_XCAT_CACHE`` or the user cache)."""
    env = os.environ.get("TFREC_XCAT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tfrec-xcat"


def ensure_synthetic(spec: SyntheticSpec | None = None, root: str | Path | None = None) -> Path:
    """The directory of the synthetic shop for ``spec``, generated on first use and reused after."""
    spec = spec or SyntheticSpec()
    directory = Path(root or cache_root()) / "synthetic" / spec.key()
    if not (directory / "spec.json").is_file():
        write_synthetic(directory, spec)
    return directory
