"""``tfrec-xcat run``: data → cold-start split per seed → every model → evaluation → metrics.json + report.

Honest evaluation: each model's hyperparameters (its ``grid``) are chosen on cold-start VALIDATION users only;
the chosen setting is then scored once on the cold-start test users and the warm test users.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tfrec_xcat.api import load_data, split_data
from tfrec_xcat.baselines.base import FitContext
from tfrec_xcat.catalog import MODELS as REGISTRY
from tfrec_xcat.config import Config
from tfrec_xcat.errors import ConfigError
from tfrec_xcat.evaluation.evaluate import (
    by_history,
    cold_start_validator,
    evaluate_segment,
    over_seeds,
    rating_errors,
    summarize,
)
from tfrec_xcat.features.matrices import SplitMatrices

log = logging.getLogger(__name__)

DEFAULT_MODELS = tuple(REGISTRY)
SELECTION_METRIC = "ndcg@10"


def _check_models(models: list[str]) -> None:
    unknown = [m for m in models if m not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; available: {', '.join(REGISTRY)}")


def fit_and_evaluate(name: str, ctx: FitContext) -> dict[str, Any]:
    """Fit every setting of ``name``'s grid, keep the best on cold-start validation, test it once."""
    cls = REGISTRY[name]
    m, n_train = ctx.m, len(ctx.split.train)
    best: tuple[Any, dict[str, float], dict[str, Any]] | None = None
    selection = []
    started = time.perf_counter()
    fit_seconds = 0.0
    for params in cls.grid:
        model = cls(**params)
        t0 = time.perf_counter()
        model.fit(ctx)
        fit_seconds += time.perf_counter() - t0
        val = summarize(evaluate_segment(model.score, m, "cold_start_val"))
        selection.append({"params": params, "cold_start_val_" + SELECTION_METRIC: val[SELECTION_METRIC]})
        if best is None or val[SELECTION_METRIC] > best[1][SELECTION_METRIC]:
            best = (model, val, params)
    assert best is not None
    model, val, params = best
    test = evaluate_segment(model.score, m, "cold_start_test")
    warm = evaluate_segment(model.score, m, "warm_test")
    summaries = {"cold_start_val": dict(val), "cold_start_test": summarize(test), "warm_test": summarize(warm)}
    if ctx.data.has_ratings and hasattr(model, "predict_ratings"):
        for segment, stats in summaries.items():
            stats.update(rating_errors(model.predict_ratings, m, ctx.split.heldout[segment]))
    return {
        "params": params,
        "selection": selection,
        **summaries,
        "cold_start_test_by_history": by_history(test),
        "train_seconds": fit_seconds,
        "examples_per_second": getattr(model, "examples_per_second", None)
        or n_train * len(cls.grid) / max(fit_seconds, 1e-9),
        "wall_seconds": time.perf_counter() - started,
        "history": list(model.history),
    }


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One model's results over seeds: metric means and stds per segment and history bucket."""
    out: dict[str, Any] = {}
    for segment in ("cold_start_test", "cold_start_val", "warm_test"):
        out[segment] = over_seeds([r[segment] for r in per_seed])
    buckets = per_seed[0]["cold_start_test_by_history"]
    out["cold_start_test_by_history"] = {
        b: over_seeds([r["cold_start_test_by_history"][b] for r in per_seed]) for b in buckets
    }
    for key in ("train_seconds", "examples_per_second"):
        out[key] = sum(r[key] for r in per_seed) / len(per_seed)
    out["params"] = [r["params"] for r in per_seed]
    out["history"] = per_seed[0]["history"]
    out["selection"] = [r["selection"] for r in per_seed]
    return out


def run_experiment(
    config: Config, out: str | Path, models: list[str] | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Run every model on every seed's split; write ``metrics.json`` and the report into ``out``."""
    from tfrec_xcat.report import write_report

    models = list(models or DEFAULT_MODELS)
    _check_models(models)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(config.run.seeds)
    bar = tqdm(total=1 + len(seeds) * (1 + len(models)), desc="load data", disable=not progress, unit="step")
    data = load_data(config)
    bar.update()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    splits = {}
    for seed in seeds:
        bar.set_description(f"seed {seed}: split")
        split = split_data(config, data, seed)
        splits[str(seed)] = split.sizes()
        m = SplitMatrices.from_split(data, split)
        bar.update()
        for name in models:
            bar.set_description(f"seed {seed}: {name}")
            ctx = FitContext(
                data=data,
                split=split,
                m=m,
                seed=seed,
                settings=config.to_dict(),
                workdir=out / "work" / f"seed{seed}" / name,
                validate=cold_start_validator(m, SELECTION_METRIC),
            )
            results[name].append(fit_and_evaluate(name, ctx))
            log.info(
                "seed %s %s: cold-start test %s %.4f",
                seed,
                name,
                SELECTION_METRIC,
                results[name][-1]["cold_start_test"][SELECTION_METRIC],
            )
            bar.update()
    bar.set_description("report")
    metrics = {
        "data": str(config.data.path) if config.data.path else "synthetic",
        "source": config.source,
        "target": config.target,
        "seeds": seeds,
        "split": {"spec": dataclasses.asdict(config.split), "sizes": splits},
        "models": {name: aggregate(per_seed) for name, per_seed in results.items()},
        "config": config.to_dict(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    write_report(metrics, out)
    bar.close()
    return metrics
