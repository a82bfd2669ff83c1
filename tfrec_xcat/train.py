"""Training the configured transfer two-tower as one job (``tfrec-xcat train``, ``api.train``).

Trains on the first seed's split, evaluates (cold-start validation, cold-start test once at the end, warm test),
and writes into RUN_DIR: ``config.toml``, ``metrics.json`` (the run contract, one model), ``model/`` (weights +
feature space, what ``tfrec-xcat export`` reads), ``work/`` (per-epoch checkpoints, crash backup, TensorBoard
logs). Running it again after a crash resumes. ``[training] strategy`` picks ``default``, ``mirrored`` or
``multi_worker`` (TF_CONFIG says the cluster). This module parses no flags: the CLI does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from tfrec_xcat.config import Config
from tfrec_xcat.evaluation.evaluate import by_history, evaluate_segment, summarize
from tfrec_xcat.features.space import save_space
from tfrec_xcat.pipeline import metrics_header, prepare_seed

log = logging.getLogger(__name__)


def worker_index() -> int:
    """This process's index in a multi-worker cluster (0 = chief, also when there is no TF_CONFIG)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return int(config.get("task", {}).get("index", 0))


def run_training(config: Config, out: str | Path, *, strategy: Any = None, progress: bool = False) -> dict[str, Any]:
    """Train, evaluate and save the configured model; returns the metrics written to ``out/metrics.json``
    (``progress``: a line per epoch of each stage on stderr)."""
    from tfrec_xcat.training.variants import train_two_tower

    out = Path(out)
    index = worker_index()
    workdir = out / "work" if index == 0 else out / "work" / f"worker-{index}"
    out.mkdir(parents=True, exist_ok=True)
    seed = config.run.seeds[0]
    prepared = prepare_seed(config, seed, workdir=workdir)
    started = time.perf_counter()
    result = train_two_tower(
        prepared,
        config.model,
        config.training,
        workdir,
        strategy=strategy,
        progress=progress,
    )
    scorer = result.model.row_scorer()
    m = prepared.m
    test = evaluate_segment(scorer, m, "cold_start_test")
    metrics = {
        **metrics_header(config, [seed]),
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
        save_space(result.space, out / "model")
        (out / "model" / "spec.json").write_text(json.dumps(dataclasses.asdict(config.model)))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    else:
        result.model.save_weights(str(workdir / "final" / "weights"))
    return metrics


if __name__ == "__main__":  # ``python -m tfrec_xcat.train ...`` is ``tfrec-xcat train ...``
    import sys

    from tfrec_xcat.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
