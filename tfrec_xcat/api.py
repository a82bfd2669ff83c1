"""The Python API behind every CLI command: each function takes a :class:`~tfrec_xcat.config.Config`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfrec_xcat.config import Config
from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.load import load_shop
from tfrec_xcat.data.split import ColdStartSplit, make_split
from tfrec_xcat.data.synthetic import ensure_synthetic


def data_dir(config: Config) -> Path:
    """The configured data directory, or the synthetic embedded default (generated on first use)."""
    if config.data.path is None:
        return ensure_synthetic(config.synthetic)
    return Path(config.data.path)


def load_data(config: Config, *, log_problems: bool = True) -> ShopData:
    """Read the configured data; source and target (when set) must be among its categories."""
    wanted = [c for c in (config.data.source, config.data.target) if c]
    return load_shop(
        data_dir(config),
        fmt=config.data.format,
        categories=wanted or None,
        text_columns=config.data.text_columns,
        max_bad_fraction=config.data.max_bad_fraction,
        log_problems=log_problems,
    )


def split_data(config: Config, data: ShopData, seed: int) -> ColdStartSplit:
    """The cold-start split of ``data`` for the configured source and target."""
    return make_split(data, config.source, config.target, config.split, seed=seed)


def inspect_data(config: Config, *, seed: int = 0, with_split: bool = True) -> dict[str, Any]:
    """Counts, overlap, split sizes and bad rows of the configured data (``tfrec-xcat data inspect``)."""
    from tfrec_xcat.data.inspect import inspect_shop

    data = load_data(config, log_problems=False)
    source = target = None
    if with_split and (config.data.path is None or (config.data.source and config.data.target)):
        source, target = config.source, config.target
    return inspect_shop(data, source, target, config.split, seed)


def prepare_tfds(config: Config, *, seed: int = 0, cache: str | Path | None = None) -> dict[str, Any]:
    """Prepare (or reuse) the TFDS shards of the configured data and split (``tfrec-xcat data prepare``)."""
    from tfrec_xcat.data.tfds_builder import prepare

    return prepare(
        data_dir(config),
        source=config.source,
        target=config.target,
        seed=seed,
        split=config.split,
        data_format=config.data.format,
        text_columns=config.data.text_columns,
        max_bad_fraction=config.data.max_bad_fraction,
        cache=cache,
    )
