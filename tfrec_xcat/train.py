"""``tfrec-xcat train --config FILE --out RUN_DIR`` and ``python -m tfrec_xcat.train`` (one code path).

Trains the configured transfer model on the first seed's split, evaluates it (cold-start validation, cold-start
test once at the end, warm test), and writes into RUN_DIR: ``config.toml``, ``metrics.json`` (the run contract,
one model), ``model/`` (weights + feature space, what ``tfrec-xcat export`` reads), ``work/`` (per-epoch
checkpoints, crash backup, TensorBoard logs). Re-running the same command after a crash resumes.
``[training] strategy`` picks ``default``, ``mirrored`` or ``multi_worker`` (TF_CONFIG says the cluster).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfrec_xcat.config import Config

log = logging.getLogger(__name__)


def worker_index() -> int:
    """This process's index in a multi-worker cluster (0 = chief, also when there is no TF_CONFIG)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return int(config.get("task", {}).get("index", 0))


def save_space(space: Any, directory: Path) -> None:
    """Write the feature space (vocabularies, item tables, history table) next to the weights."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        directory / "space.npz",
        users=np.asarray(space.users, dtype=object).astype(str),
        items=np.asarray(space.items, dtype=object).astype(str),
        item_category=space.item_category,
        item_tokens=space.item_tokens,
        history=space.history,
        item_popularity=space.item_popularity,
    )
    meta = {
        "categories": space.categories,
        "vocabulary": space.vocabulary,
        "history_per_category": space.history_per_category,
        "source": space.source,
        "target": space.target,
    }
    (directory / "space.json").write_text(json.dumps(meta))


def run_training(config: Config, out: str | Path, *, strategy: Any = None, progress: bool = False) -> dict[str, Any]:
    """Train, evaluate and save the configured model; returns the metrics written to ``out/metrics.json``
    (``progress``: a line per epoch of each stage on stderr)."""
    from tfrec_xcat.api import load_data, split_data
    from tfrec_xcat.evaluation.evaluate import by_history, cold_start_validator, evaluate_segment, summarize
    from tfrec_xcat.features.matrices import SplitMatrices
    from tfrec_xcat.training.trainer import feature_space, train, training_view

    out = Path(out)
    index = worker_index()
    workdir = out / "work" if index == 0 else out / "work" / f"worker-{index}"
    out.mkdir(parents=True, exist_ok=True)
    seed = config.run.seeds[0]
    data = load_data(config)
    split = split_data(config, data, seed)
    m = SplitMatrices.from_split(data, split)
    spec = config.model
    space = feature_space(data, split, m, spec)
    space, frame = training_view(space, split.train, config.training.mode)
    on_validation = cold_start_validator(m)

    def validate(model: Any) -> float:
        return on_validation(model.row_scorer())

    started = time.perf_counter()
    result = train(
        space,
        frame,
        spec,
        config.training,
        validate=validate,
        workdir=workdir,
        seed=seed,
        with_ratings=data.has_ratings,
        strategy=strategy,
        progress=progress,
    )
    scorer = result.model.row_scorer()
    test = evaluate_segment(scorer, m, "cold_start_test")
    metrics = {
        "data": str(config.data.path) if config.data.path else "synthetic",
        "source": split.source,
        "target": split.target,
        "seeds": [seed],
        "models": {
            "transfer": {
                "cold_start_val": summarize(evaluate_segment(scorer, m, "cold_start_val")),
                "cold_start_test": summarize(test),
                "warm_test": summarize(evaluate_segment(scorer, m, "warm_test")),
                "cold_start_test_by_history": by_history(test),
                "train_seconds": time.perf_counter() - started,
                "examples_per_second": result.examples_per_second,
                "history": result.history,
                "stages": result.stages,
            }
        },
    }
    if index == 0:
        (out / "config.toml").write_text(config.to_toml())
        result.model.save_weights(str(out / "model" / "weights"))
        save_space(space, out / "model")
        (out / "model" / "spec.json").write_text(json.dumps(dataclasses.asdict(spec)))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    else:
        result.model.save_weights(str(workdir / "final" / "weights"))
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file")
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--data", help="data directory (default: the synthetic shop)")
    parser.add_argument("--source", help="source category")
    parser.add_argument("--target", help="target category")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")


def command(args: argparse.Namespace) -> int:
    from tfrec_xcat.config import load_config

    config = load_config(args.config, {"data": {"path": args.data, "source": args.source, "target": args.target}})
    strategy = None
    if config.training.strategy != "default":  # before any other TensorFlow op, as collectives require
        from tfrec_xcat.training.trainer import make_strategy

        strategy = make_strategy(config.training.strategy)
    metrics = run_training(config, args.out, strategy=strategy, progress=not getattr(args, "quiet", False))
    result = metrics["models"]["transfer"]
    print(
        f"cold-start val NDCG@10 {result['cold_start_val']['ndcg@10']:.4f}, "
        f"cold-start test NDCG@10 {result['cold_start_test']['ndcg@10']:.4f}, "
        f"{result['examples_per_second']:,.0f} examples/s; wrote {args.out}"
    )
    work = Path(args.out) / "work"
    print(f"per-epoch checkpoints: {work / 'checkpoints'}/<stage>/; model for export: {Path(args.out) / 'model'}")
    print(f"TensorBoard logs: {work / 'tensorboard'} (tensorboard --logdir {work / 'tensorboard'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from tfrec_xcat.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
