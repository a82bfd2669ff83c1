"""The public Python API: what every ``tfrec-xcat`` command does, as functions of one :class:`Config`.

Example::

    from tfrec_xcat.api import run, train, export
    from tfrec_xcat.config import load_config

    config = load_config("my.toml")           # or load_config(None) for the synthetic shop
    metrics = run(config, "runs/demo", models=["cooccurrence", "transfer"])
    train(config, "runs/demo-train")
    export("runs/demo-train", "saved_models")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfrec_xcat.config import Config
from tfrec_xcat.pipeline import data_dir, load_data, split_data

__all__ = [
    "data_dir",
    "export",
    "inspect_data",
    "load_data",
    "prepare_tfds",
    "run",
    "score",
    "split_data",
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
    from tfrec_xcat.scoring.batch import load_retrieval, read_users, score_users

    data = load_data(config)
    ids, unknown = read_users(users, data)
    retrieval = load_retrieval(model, version)
    manifest = score_users(retrieval, data, ids, out, k=k, block=block, progress=progress, index=index)
    manifest["unknown_users"] = len(unknown)
    manifest["unknown_sample"] = unknown[:5]
    return manifest


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
        ``{"interactions": builder, "items": builder}``.
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
