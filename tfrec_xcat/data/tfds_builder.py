"""A TFDS builder that prepares any supported data directory into versioned TFRecord shards.

``XcatShop`` is a manual_dir-style ``GeneratorBasedBuilder``: the data directory is the manual dir, and the
builder config says how to read it (format, text columns, bad-row budget) and how to split it (source, target,
seed, fractions). Two tables, two configs:

- ``interactions``: splits ``train``, ``cold_start_val``, ``cold_start_test``, ``warm_test`` (the cold-start
  protocol of :mod:`tfrec_xcat.data.split`; with ``new_item_fraction`` > 0, ``train`` holds no interaction of the
  new items and the held-out splits are unchanged); features ``user_id``, ``item_id``, ``category``, ``position``,
  ``timestamp`` (-1 where the source has none), ``rating`` (NaN where the source has none).
- ``items``: split ``catalog``; features ``item_id``, ``category``, ``text`` (the text columns joined).

This is an export format: the cold-start split as versioned TFRecord shards for other TensorFlow tools. The
project's own trainer does not read it (it builds the same split in memory, :mod:`tfrec_xcat.pipeline`).

Prepared shards live under ``<cache>/tfds/<input fingerprint>/<options digest>/xcat_shop/<table>/1.0.0``: the
fingerprint hashes the content of every file in the data directory, so a changed input gets a fresh preparation
and an unchanged one is reused; the options digest keeps differently-split preparations apart.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from tfrec_xcat.data.load import load_shop
from tfrec_xcat.data.split import SEGMENTS, SplitSpec, make_split
from tfrec_xcat.data.synthetic import cache_root

INTERACTION_SPLITS = ("train", *SEGMENTS)


@dataclasses.dataclass
class XcatShopConfig(tfds.core.BuilderConfig):
    """How to read and split the manual dir. ``table`` is ``interactions`` or ``items``."""

    table: str = "interactions"
    data_format: str = "auto"
    source: str = ""
    target: str = ""
    seed: int = 0
    cold_start_fraction: float = 0.2
    cold_start_val_fraction: float = 0.1
    warm_test_fraction: float = 0.1
    text_columns: tuple[str, ...] | None = None
    max_bad_fraction: float = 0.001
    new_item_fraction: float = 0.0

    def options(self) -> dict[str, Any]:
        """The fields that change what is generated (everything but TFDS's own bookkeeping). ``new_item_fraction``
        is left out while it is 0, so preparations made before it existed keep their folder."""
        own = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in own}
        if not out["new_item_fraction"]:
            del out["new_item_fraction"]
        return out


def options_digest(**options: Any) -> str:
    """A short digest of the reading and split options: differently-split preparations live in different folders."""
    probe = XcatShopConfig(name="probe", table="interactions", **options)
    return hashlib.sha256(json.dumps(probe.options(), sort_keys=True).encode()).hexdigest()[:10]


@functools.lru_cache(maxsize=4)
def _read(manual_dir: str, fingerprint: str, reader: str) -> Any:
    """Read the manual dir once per process for both tables (keyed by content fingerprint)."""
    opts = json.loads(reader)
    return load_shop(
        manual_dir,
        fmt=opts["data_format"],
        text_columns=list(opts["text_columns"]) if opts["text_columns"] is not None else None,
        max_bad_fraction=opts["max_bad_fraction"],
    )


class XcatShop(tfds.core.GeneratorBasedBuilder):
    """Interactions and item metadata of a multi-category shop, split for cold-start transfer."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}  # noqa: RUF012 (TFDS's own class attribute)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass the data directory (neutral layout or an Amazon Reviews 2014/2018/2023 dump) as manual_dir."
    )
    BUILDER_CONFIGS = [  # noqa: RUF012 (TFDS's own class attribute)
        XcatShopConfig(name="interactions", table="interactions"),
        XcatShopConfig(name="items", table="items"),
    ]

    def __init__(self, *, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """``options``: how to read and split (the fields of :class:`XcatShopConfig`); the config itself is named
        plainly (``interactions`` / ``items``), so ``tfds.builder("xcat_shop/interactions", data_dir=...)`` finds a
        preparation by name; the options live in the folder (``prepare``) and in the dataset's metadata."""
        self._options = dict(options or {})
        super().__init__(**kwargs)

    @property
    def settings(self) -> XcatShopConfig:
        """The builder config with this preparation's options applied."""
        return dataclasses.replace(self.builder_config, **self._options) if self._options else self.builder_config

    def _info(self) -> tfds.core.DatasetInfo:
        cfg: XcatShopConfig = self.settings
        if cfg.table == "items":
            features = tfds.features.FeaturesDict(
                {"item_id": tfds.features.Text(), "category": tfds.features.Text(), "text": tfds.features.Text()}
            )
        else:
            features = tfds.features.FeaturesDict(
                {
                    "user_id": tfds.features.Text(),
                    "item_id": tfds.features.Text(),
                    "category": tfds.features.Text(),
                    "position": np.int64,
                    "timestamp": np.int64,
                    "rating": np.float32,
                }
            )
        return self.dataset_info_from_configs(
            features=features,
            description=__doc__.split("\n\n")[0],
            metadata=tfds.core.MetadataDict(options=json.dumps(cfg.options(), sort_keys=True)),
        )

    def _shop(self, manual_dir: Path) -> Any:
        cfg: XcatShopConfig = self.settings
        reader = {k: cfg.options()[k] for k in ("data_format", "text_columns", "max_bad_fraction")}
        return _read(str(manual_dir), fingerprint(manual_dir), json.dumps(reader, sort_keys=True))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        cfg: XcatShopConfig = self.settings
        shop = self._shop(Path(dl_manager.manual_dir))
        if cfg.table == "items":
            return {"catalog": self._generate_examples(shop)}
        spec = SplitSpec(
            cfg.cold_start_fraction, cfg.cold_start_val_fraction, cfg.warm_test_fraction, cfg.new_item_fraction
        )
        shop.require_category(cfg.source)
        shop.require_category(cfg.target)
        split = make_split(shop, cfg.source, cfg.target, spec, seed=cfg.seed)
        frames = {"train": split.train, **split.heldout}
        return {name: self._generate_examples(frames[name]) for name in INTERACTION_SPLITS}

    def _generate_examples(self, rows: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        """Items from a shop (``items`` table) or interactions from a frame (``interactions`` table)."""
        if self.builder_config.table == "items":
            return self._generate_items(rows)
        return self._generate_interactions(rows)

    def _generate_items(self, shop: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        text = shop.item_text()
        for item_id, category in zip(shop.items["item_id"], shop.items["category"], strict=True):
            yield item_id, {"item_id": item_id, "category": category, "text": text.loc[item_id]}

    def _generate_interactions(self, frame: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        n = len(frame)
        timestamp = frame["timestamp"].to_numpy() if "timestamp" in frame else np.full(n, -1, dtype=np.int64)
        rating = frame["rating"].to_numpy() if "rating" in frame else np.full(n, np.nan, dtype=np.float32)
        columns = zip(
            frame["user_id"], frame["item_id"], frame["category"], frame["position"], timestamp, rating, strict=True
        )
        for user, item, category, position, ts, r in columns:
            yield (
                f"{user}\t{item}",
                {
                    "user_id": user,
                    "item_id": item,
                    "category": category,
                    "position": int(position),
                    "timestamp": int(ts),
                    "rating": float(r),
                },
            )


def fingerprint(directory: Path) -> str:
    """SHA-256 over the names and contents of the regular files directly in ``directory``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def prepare(
    data_dir: str | Path,
    *,
    source: str,
    target: str,
    seed: int = 0,
    split: SplitSpec | None = None,
    data_format: str = "auto",
    text_columns: list[str] | None = None,
    max_bad_fraction: float = 0.001,
    cache: str | Path | None = None,
) -> dict[str, tfds.core.DatasetBuilder]:
    """Prepare (or reuse) both tables of ``data_dir``; returns ``{"interactions": builder, "items": builder}``.

    ``builder.as_dataset(split="train")`` then gives the training interactions as a ``tf.data`` pipeline; later,
    ``tfds.builder("xcat_shop/interactions", data_dir=builder.data_dir_root)`` finds the same data by name (after
    ``import tfrec_xcat.data.tfds_builder``, which registers the builder).
    """
    data_dir = Path(data_dir).resolve()
    split = split or SplitSpec()
    root = Path(cache or cache_root()) / "tfds" / fingerprint(data_dir)
    options = {
        "data_format": data_format,
        "source": source,
        "target": target,
        "seed": seed,
        "cold_start_fraction": split.cold_start_fraction,
        "cold_start_val_fraction": split.cold_start_val_fraction,
        "warm_test_fraction": split.warm_test_fraction,
        "new_item_fraction": split.new_item_fraction,
        "text_columns": tuple(text_columns) if text_columns is not None else None,
        "max_bad_fraction": max_bad_fraction,
    }
    root = root / options_digest(**options)
    builders = {}
    for table in ("interactions", "items"):
        builder = XcatShop(config=table, data_dir=str(root), options=options)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(data_dir), try_download_gcs=False)
        )
        builders[table] = builder
    return builders
