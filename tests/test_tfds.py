"""The TFDS builder: declared features, the split as TFDS splits, cache reuse and invalidation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from tfrec_xcat.data.load import load_shop
from tfrec_xcat.data.split import SplitSpec, make_split
from tfrec_xcat.data.tfds_builder import prepare


def test_prepare_reuse_and_invalidate(small_shop_dir: Path, tmp_path: Path) -> None:
    tfds.disable_progress_bar()
    data = tmp_path / "data"
    shutil.copytree(small_shop_dir, data)
    cache = tmp_path / "cache"
    builders = prepare(data, source="Food", target="Kitchen", seed=0, cache=cache)
    inter, items = builders["interactions"], builders["items"]

    split = make_split(load_shop(data), "Food", "Kitchen", seed=0)
    splits = inter.info.splits
    assert splits["train"].num_examples == len(split.train)
    for segment, frame in split.heldout.items():
        assert splits[segment].num_examples == len(frame)
    assert items.info.splits["catalog"].num_examples == 200

    batch = next(iter(inter.as_dataset(split="cold_start_test", batch_size=10_000)))
    assert set(batch) == {"user_id", "item_id", "category", "position", "timestamp", "rating"}
    assert {c.decode() for c in batch["category"].numpy()} == {"Kitchen"}
    held = set(zip(split.heldout["cold_start_test"].user_id, split.heldout["cold_start_test"].item_id, strict=True))
    got = {(u.decode(), i.decode()) for u, i in zip(batch["user_id"].numpy(), batch["item_id"].numpy(), strict=True)}
    assert got == held

    # unchanged input: same folder, nothing regenerated
    stamp = Path(inter.data_dir, "dataset_info.json").stat().st_mtime_ns
    again = prepare(data, source="Food", target="Kitchen", seed=0, cache=cache)
    assert again["interactions"].data_dir == inter.data_dir
    assert Path(inter.data_dir, "dataset_info.json").stat().st_mtime_ns == stamp

    # changed input: a new preparation elsewhere
    with open(data / "items.csv", "a") as handle:
        handle.write("NEW00001,Food,A new tea,Acme\n")
    changed = prepare(data, source="Food", target="Kitchen", seed=0, cache=cache)
    assert changed["items"].data_dir != items.data_dir
    assert changed["items"].info.splits["catalog"].num_examples == 201

    # another seed is another folder
    other = prepare(data, source="Food", target="Kitchen", seed=1, cache=cache)
    assert other["interactions"].data_dir != changed["interactions"].data_dir

    # by name, as any TFDS user would load it
    by_name = tfds.builder("xcat_shop/interactions", data_dir=other["interactions"].data_dir_root)
    assert by_name.info.splits["train"].num_examples == other["interactions"].info.splits["train"].num_examples
    first = next(iter(by_name.as_dataset(split="cold_start_test", batch_size=10_000)))
    assert set(first) == {"user_id", "item_id", "category", "position", "timestamp", "rating"}


def test_new_items_never_reach_the_train_shards(small_shop_dir: Path, tmp_path: Path) -> None:
    tfds.disable_progress_bar()
    spec = SplitSpec(new_item_fraction=0.2)
    plain = prepare(small_shop_dir, source="Food", target="Kitchen", seed=0, cache=tmp_path)["interactions"]
    builder = prepare(small_shop_dir, source="Food", target="Kitchen", seed=0, split=spec, cache=tmp_path)
    inter = builder["interactions"]
    assert inter.data_dir != plain.data_dir  # another split, another preparation
    split = make_split(load_shop(small_shop_dir), "Food", "Kitchen", spec, seed=0)
    assert inter.info.splits["train"].num_examples == len(split.train)
    assert plain.info.splits["train"].num_examples == len(split.train) + len(split.withheld)
    for segment, frame in split.heldout.items():
        assert inter.info.splits[segment].num_examples == len(frame)
    batch = next(iter(inter.as_dataset(split="train", batch_size=100_000)))
    trained = {i.decode() for i in batch["item_id"].numpy()}
    assert not trained & set(split.new_items)


def test_data_prepare_prints_the_data_dir_tfds_loads_by_name(
    small_shop_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed data_dir is the ROOT tfds.builder needs (on the versioned folder it loads with empty splits)."""
    from tfrec_xcat.cli import main

    tfds.disable_progress_bar()
    args = ["data", "prepare", "--data", str(small_shop_dir), "--source", "Food", "--target", "Kitchen"]
    assert main([*args, "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    (printed,) = [line.removeprefix("data_dir: ") for line in out.splitlines() if line.startswith("data_dir: ")]
    split = make_split(load_shop(small_shop_dir), "Food", "Kitchen", seed=0)
    inter = tfds.builder("xcat_shop/interactions", data_dir=printed)
    assert inter.info.splits["train"].num_examples == len(split.train) > 0
    for segment, frame in split.heldout.items():
        assert inter.info.splits[segment].num_examples == len(frame)
    assert tfds.builder("xcat_shop/items", data_dir=printed).info.splits["catalog"].num_examples == 200
    assert f'data_dir="{printed}"' in out and "xcat_shop/interactions: train " in out
