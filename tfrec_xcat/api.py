"""The public Python API: what the ``tfrec-xcat`` commands do, as functions of one :class:`Config` (or of the
folders they work on). Every command calls one of these, except ``serve`` and ``recommend``, which are the
serving package (:func:`tfrec_xcat.serving.server.serve`, :class:`tfrec_xcat.serving.client.RestClient`).

Example::

    from tfrec_xcat import api
    from tfrec_xcat.config import load_config

    config = load_config("my.toml")           # or load_config(None) for the synthetic shop
    metrics = api.run(config, "runs/demo", models=["cooccurrence", "transfer"])
    summary = api.tune(config, "runs/demo-tune")  # KerasTuner search of [tune]; best.toml in runs/demo-tune
    api.train(config, "runs/demo-train")
    api.export("runs/demo-train", "saved_models")
    api.reindex("saved_models", "new_items.csv", remove="discontinued.csv")  # catalogue refresh, no retraining
    manifest = api.score(config, "saved_models/xcat_retrieval", "runs/scores", k=100)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfrec_xcat.config import Config
from tfrec_xcat.pipeline import data_dir, load_data, split_data

if TYPE_CHECKING:
    from tfrec_xcat.export.reindex import ReindexResult

__all__ = [
    "data_dir",
    "export",
    "inspect_data",
    "load_data",
    "prepare_tfds",
    "reindex",
    "run",
    "score",
    "split_data",
    "synth",
    "train",
    "tune",
]


def run(config: Config, out: str | Path, models: list[str] | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Split per seed, fit every model, select on validation users, test once, write metrics.json and the report.

    Args:
        config: the run's configuration (``[run] seeds`` are the splits).
        out: the run directory; ``metrics.json``, ``report.md`` and ``report.html`` are written there.
        models: model names (see :data:`tfrec_xcat.recommender.MODELS`); default every model.
        progress: show a progress bar.

    Returns:
        The metrics written to ``out/metrics.json``.
    """
    from tfrec_xcat.experiment import run_experiment

    return run_experiment(config, out, models, progress=progress)


def train(config: Config, out: str | Path, *, strategy: Any = None, progress: bool = False) -> dict[str, Any]:
    """Fit the shipped ``transfer`` on the first seed's split (its two-tower resumable) and save it for export.

    Args:
        config: the configuration (``[model]``, ``[training]``, ``[ranker]``; ``[training] strategy`` for
            distribution).
        out: the run directory: ``model/`` (for :func:`export`), ``metrics.json``, ``work/`` (checkpoints, logs).
        strategy: a ``tf.distribute.Strategy`` made before any other TensorFlow op (default: from the config).
        progress: print a line per epoch of each two-tower stage (loss, examples/s, validation) and the parts
            chosen on stderr.

    Returns:
        The metrics written to ``out/metrics.json``.
    """
    from tfrec_xcat.train import run_training

    if strategy is None and config.training.strategy != "default":  # before any other TensorFlow op
        from tfrec_xcat.training.trainer import make_strategy

        strategy = make_strategy(config.training.strategy)
    return run_training(config, out, strategy=strategy, progress=progress)


def tune(config: Config, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """KerasTuner search of the ``[tune]`` space on cold-start validation NDCG@10 (re-running continues it).

    Args:
        config: the base configuration and the search (``[tune]``).
        out: the tune directory: trials.csv/md, best.toml, objective.png, the search state.
        overwrite: start the search afresh.

    Returns:
        ``{"trials": n, "best": {"trial", objective, "values"} or None}``.
    """
    from tfrec_xcat.pipeline import prepare_seed
    from tfrec_xcat.tuning.tuner import tune as run_tune

    prepared = prepare_seed(config, config.run.seeds[0])  # the tuner only ever scores its validation users
    return run_tune(config, prepared, out, overwrite=overwrite)


def export(run_dir: str | Path, out: str | Path) -> dict[str, Path]:
    """Write a trained run (:func:`train`) as TF Serving SavedModels (stock ops only) under ``out``; the shipped
    ``transfer`` is the ``recommend`` signature of ``xcat_retrieval``.

    Args:
        run_dir: the directory :func:`train` wrote.
        out: the models folder (``out/<name>/<version>/``, plus ``models.config``).

    Returns:
        ``{servable name: version directory}``.
    """
    from tfrec_xcat.export.exporter import export as run_export

    return run_export(run_dir, out)


def reindex(
    models: str | Path,
    items: str | Path | None = None,
    *,
    remove: str | Path | None = None,
    replace: bool = False,
    text_columns: list[str] | None = None,
    new_item_slots: int | None = None,
) -> ReindexResult:
    """Publish a new ``xcat_retrieval`` version whose catalogue adds ``items`` and drops ``remove``, without
    retraining (``tfrec-xcat reindex``): new items are embedded by the exported ``xcat_item_tower``; the version
    appears atomically, so a server polling ``models`` switches to it whole.

    Args:
        models: the models folder :func:`export` wrote (``models/xcat_retrieval/<version>/``).
        items: a CSV/Parquet file of items to add, in the layout of ``items.csv`` (``item_id``, ``category``: the
            catalogue's category, and text columns).
        remove: a CSV/Parquet file with an ``item_id`` column: items to drop (each must be in the catalogue).
        replace: re-embed items of ``items`` that are already in the catalogue (else they are an error).
        text_columns: the text columns of ``items`` to use (default all but ``item_id`` and ``category``).
        new_item_slots: the ``recommend`` signature's new-arrival slots from this version on (positions
            ``window - slots + 1 .. window`` go to never-bought items; 0 turns them off; None keeps them).

    Returns:
        A :class:`tfrec_xcat.export.reindex.ReindexResult`: the new version and its folder, the version it was
        built from, how many items were added, replaced and removed, the catalogue size, and the prior the new
        items got.
    """
    from tfrec_xcat.export.reindex import reindex as run_reindex

    return run_reindex(
        models, items, remove=remove, replace=replace, text_columns=text_columns, new_item_slots=new_item_slots
    )


def score(
    config: Config,
    model: str | Path,
    out: str | Path,
    *,
    users: str = "all",
    k: int = 100,
    version: int | None = None,
    block: int = 4096,
    index: str = "brute",
    progress: bool = True,
) -> dict[str, Any]:
    """Offline top-k of many users from an exported ``xcat_retrieval`` (same scores as online), resumable: with
    its ``recommend`` signature when it has one, else with the two-tower's ``query``/``candidates``.

    Args:
        config: where the users' histories come from (``[data]``).
        model: the exported retrieval model folder.
        out: the output folder of Parquet shards ``user_id, rank, item_id, score`` and ``_SUCCESS``.
        users: ``"all"`` or a file with one user id per line.
        k: items per user.
        version: the model version (default the highest).
        block: users per shard.
        index: ``"brute"`` (exact) or ``"scann"`` (the optional extra; its recall is measured).
        progress: show a progress bar.

    Returns:
        The manifest written to ``out/_SUCCESS``, plus ``unknown_users`` (how many ids were not in the data and
        took the cold-start/popularity path) and ``unknown_sample`` (the first few).
    """
    from tfrec_xcat.scoring.batch import check_settings, load_retrieval, read_users, score_users

    check_settings(k, block)  # before the data is read: a bad k or block is one line at once
    data = load_data(config)
    ids, unknown = read_users(users, data)
    retrieval = load_retrieval(model, version)
    manifest = score_users(retrieval, data, ids, out, k=k, block=block, progress=progress, index=index)
    manifest["unknown_users"] = len(unknown)
    manifest["unknown_sample"] = unknown[:5]
    return manifest


def synth(config: Config, out: str | Path) -> Path:
    """Write the synthetic shop of ``[synthetic]`` in the neutral layout (``tfrec-xcat data synth``).

    Args:
        config: the generator's settings (``[synthetic]``: users, items per category, seed, scale).
        out: the output directory (``interactions.csv.gz``, ``items.csv``).

    Returns:
        The directory written.
    """
    from tfrec_xcat.data.synthetic import write_synthetic

    return write_synthetic(out, config.synthetic)


def inspect_data(config: Config, *, seed: int = 0, with_split: bool = True) -> dict[str, Any]:
    """Counts, overlap, split sizes and bad rows of the configured data (``tfrec-xcat data inspect``).

    Args:
        config: the data to read (``[data]``) and the split (``[split]``).
        seed: the split seed.
        with_split: also report the split's sizes (needs source and target).

    Returns:
        A JSON-ready summary.
    """
    from tfrec_xcat.data.inspect import inspect_shop

    data = load_data(config, log_problems=False)
    source = target = None
    if with_split and (config.data.path is None or (config.data.source and config.data.target)):
        source, target = config.source, config.target
    return inspect_shop(data, source, target, config.split, seed)


def prepare_tfds(config: Config, *, seed: int = 0, cache: str | Path | None = None) -> dict[str, Any]:
    """Prepare (or reuse) the TFDS shards of the configured data and split (``tfrec-xcat data prepare``).

    Args:
        config: the data and split.
        seed: the split seed.
        cache: the cache directory (default ``$TFREC_XCAT_CACHE``).

    Returns:
        ``{"interactions": builder, "items": builder}``; ``builder.data_dir_root`` (the same for both) is the
        ``data_dir`` that ``tfds.builder("xcat_shop/interactions", data_dir=...)`` loads them by name from.
    """
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
