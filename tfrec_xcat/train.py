"""Training the shipped ``transfer`` as one job (``tfrec-xcat train``, ``api.train``).

Fits :class:`~tfrec_xcat.training.hybrid.Transfer` on the first seed's split as ``run`` does (the wide & deep
two-tower, the memorisation term, the ranking stage, the final stage chosen on cold-start validation users),
evaluates its scorer (cold-start validation, cold-start test once at the end, warm test), and writes into RUN_DIR:
``config.toml``, ``metrics.json`` (the run contract, one model), ``model/`` (what ``tfrec-xcat export`` reads: the
two-tower's weights and feature space and the retrieve → rank stage, see :mod:`tfrec_xcat.training.shipped`),
``work/`` (the two-tower's per-epoch checkpoints, crash backup, TensorBoard logs). Running it again after a crash
resumes the two-tower. ``[training] strategy`` picks ``default``, ``mirrored`` or ``multi_worker`` (TF_CONFIG says
the cluster). This module parses no flags: the CLI does.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from tfrec_xcat.config import Config
from tfrec_xcat.evaluation.evaluate import by_history, evaluate_segment, summarize
from tfrec_xcat.pipeline import metrics_header, prepare_seed

log = logging.getLogger(__name__)


def worker_index() -> int:
    """This process's index in a multi-worker cluster (0 = chief, also when there is no TF_CONFIG)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return int(config.get("task", {}).get("index", 0))


def warn_overridden(config: Config, overrides: dict[str, Any]) -> None:
    """One warning per configured setting the shipped two-tower replaces (its ``model_overrides`` and
    ``training_overrides``): ``train`` trains what ``run`` calls ``transfer``."""
    for section in (config.model, config.training):
        for key, value in overrides.items():
            if hasattr(section, key) and getattr(section, key) != value:
                log.warning(
                    "train ships transfer: its two-tower uses %s = %r, not the configured %r",
                    key,
                    value,
                    getattr(section, key),
                )


def run_training(config: Config, out: str | Path, *, strategy: Any = None, progress: bool = False) -> dict[str, Any]:
    """Fit, evaluate and save the shipped ``transfer``; returns the metrics written to ``out/metrics.json``
    (``progress``: a line per epoch of each two-tower stage, and the stages chosen, on stderr)."""
    from tfrec_xcat.training.hybrid import Transfer
    from tfrec_xcat.training.shipped import save_shipped

    out = Path(out)
    index = worker_index()
    workdir = out / "work" if index == 0 else out / "work" / f"worker-{index}"
    out.mkdir(parents=True, exist_ok=True)
    seed = config.run.seeds[0]
    prepared = prepare_seed(config, seed, workdir=workdir)
    deep = Transfer.deep_class
    warn_overridden(config, {**deep.model_overrides, **deep.training_overrides})
    started = time.perf_counter()
    model = Transfer()
    model.deep_workdir = workdir  # the two-tower's checkpoints where train has always kept them
    model.trainer_options = {"strategy": strategy, "progress": progress}
    model.fit(prepared)
    train_seconds = time.perf_counter() - started
    m = prepared.m
    test = evaluate_segment(model.score, m, "cold_start_test")
    metrics = {
        **metrics_header(config, [seed]),
        "models": {
            "transfer": {
                "cold_start_val": summarize(evaluate_segment(model.score, m, "cold_start_val")),
                "cold_start_test": summarize(test),
                "warm_test": summarize(evaluate_segment(model.score, m, "warm_test")),
                "cold_start_test_by_history": by_history(test),
                "train_seconds": train_seconds,
                "examples_per_second": model.examples_per_second,
                "history": model.history,
                "stages": model.deep.stages,
                "stage": {"name": model.stage, **model.stage_params},
                "choices": model.choices,
            }
        },
    }
    if index == 0:
        (out / "config.toml").write_text(config.to_toml())
        save_shipped(model, prepared, out / "model")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    else:
        model.deep.model.save_weights(str(workdir / "final" / "weights"))
    return metrics


if __name__ == "__main__":  # ``python -m tfrec_xcat.train ...`` is ``tfrec-xcat train ...``
    import sys

    from tfrec_xcat.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
