"""``tfrec-xcat run``: data → cold-start split per seed → every model → evaluation → metrics.json + report.

Honest evaluation: each model's hyperparameters (its ``grid``) are chosen on cold-start VALIDATION users only;
the chosen setting is then scored once on the cold-start test users and the warm test users. Per seed, a paired
bootstrap compares ``transfer`` with the best baseline on the same cold-start test users.

With ``[split] new_item_fraction`` > 0 every model is also scored on the new-item segments (``new_items``: test
users' held-out interactions with new items; ``new_items_val``: the same for validation users), ranked over all
target items (``full``) and among new items only (``among_new``). These are reported, never used for selection;
``transfer`` gets a second paired bootstrap on ``new_items`` (full ranking) against the best baseline there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from tfrec_xcat.config import Config
from tfrec_xcat.data.split import NEW_ITEM_SEGMENTS
from tfrec_xcat.errors import ConfigError
from tfrec_xcat.evaluation.bootstrap import paired_bootstrap
from tfrec_xcat.evaluation.evaluate import (
    NEW_ITEM_VIEWS,
    by_history,
    evaluate_new_items,
    evaluate_segment,
    over_seeds,
    rating_errors,
    summarize,
)
from tfrec_xcat.pipeline import SELECTION_METRIC, PreparedSeed, load_data, metrics_header, prepare_seed
from tfrec_xcat.recommender import BASELINES, MODELS, TRANSFER, model_class

log = logging.getLogger(__name__)

DEFAULT_MODELS = tuple(MODELS)


def _check_models(models: list[str]) -> None:
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; available: {', '.join(MODELS)}")


@dataclasses.dataclass
class Fitted:
    """One model's results on one seed, and its per-user cold-start test values (for the bootstrap)."""

    summary: dict[str, Any]
    per_user_test: pd.Series  # headline metric by user row
    per_user_new_items: pd.Series | None = None  # headline metric on the new_items segment (full ranking)


def fit_and_evaluate(name: str, prepared: PreparedSeed) -> Fitted:
    """Fit every setting of ``name``'s grid, keep the best on cold-start validation, test it once."""
    cls = model_class(name)
    m, n_train = prepared.m, len(prepared.split.train)
    best: tuple[Any, dict[str, float], dict[str, Any]] | None = None
    selection = []
    started = time.perf_counter()
    fit_seconds = 0.0
    for params in cls.grid:
        model = cls(**params)
        t0 = time.perf_counter()
        model.fit(prepared)
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
    new_items: dict[str, dict[str, dict[str, float]]] = {}
    per_user_new = None
    if len(m.new_item_cols):  # reported once for the chosen setting; selection above saw none of it
        for segment in NEW_ITEM_SEGMENTS:
            views = evaluate_new_items(model.score, m, segment)
            new_items[segment] = {view: summarize(frame) for view, frame in views.items()}
            if segment == "new_items":
                per_user_new = views["full"].set_index("user_row")[SELECTION_METRIC]
    if prepared.data.has_ratings and hasattr(model, "predict_ratings"):
        for segment, stats in summaries.items():
            stats.update(rating_errors(model.predict_ratings, m, prepared.split.heldout[segment]))
    ablations = {}
    if hasattr(model, "ablations"):  # a composite model: each of its parts as fitted inside it
        for part, scorer in model.ablations().items():
            ablations[part] = {
                "cold_start_val": summarize(evaluate_segment(scorer, m, "cold_start_val")),
                "cold_start_test": summarize(evaluate_segment(scorer, m, "cold_start_test")),
            }
            for segment in NEW_ITEM_SEGMENTS if len(m.new_item_cols) else ():  # can each part surface new items?
                ablations[part][segment] = summarize(evaluate_new_items(scorer, m, segment)["full"])
    summary = {
        "params": params,
        "selection": selection,
        **summaries,
        "cold_start_test_by_history": by_history(test),
        "train_seconds": fit_seconds,
        "examples_per_second": getattr(model, "examples_per_second", None)
        or n_train * len(cls.grid) / max(fit_seconds, 1e-9),
        "wall_seconds": time.perf_counter() - started,
        "history": list(model.history),
        "choices": getattr(model, "choices", None),
        "ablations": ablations,
        **new_items,
    }
    return Fitted(summary, test.set_index("user_row")[SELECTION_METRIC], per_user_new)


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
    if any(r["choices"] for r in per_seed):
        out["choices"] = [r["choices"] for r in per_seed]
    if per_seed[0]["ablations"]:
        out["ablations"] = {
            part: {
                segment: over_seeds([r["ablations"][part][segment] for r in per_seed])
                for segment in per_seed[0]["ablations"][part]
            }
            for part in per_seed[0]["ablations"]
        }
    if all("bootstrap" in r for r in per_seed):
        out["bootstrap"] = [r["bootstrap"] for r in per_seed]
    for segment in NEW_ITEM_SEGMENTS:
        if all(segment in r for r in per_seed):
            out[segment] = {view: over_seeds([r[segment][view] for r in per_seed]) for view in NEW_ITEM_VIEWS}
    if all("new_items_bootstrap" in r for r in per_seed):
        out["new_items_bootstrap"] = [r["new_items_bootstrap"] for r in per_seed]
    return out


def significance(fitted: dict[str, Fitted], seed: int) -> dict[str, Any] | None:
    """Paired bootstrap of ``transfer`` against the best baseline of this seed (best on cold-start TEST, the
    strictest comparison), on the headline metric over the same cold-start test users."""
    baselines = [name for name in fitted if name in BASELINES]
    if TRANSFER not in fitted or not baselines:
        return None
    best = max(baselines, key=lambda name: fitted[name].summary["cold_start_test"][SELECTION_METRIC])
    ours = fitted[TRANSFER].per_user_test
    theirs = fitted[best].per_user_test.reindex(ours.index)
    interval = paired_bootstrap(ours.to_numpy(), theirs.to_numpy(), seed=seed)
    return {"seed": seed, "baseline": best, "metric": SELECTION_METRIC, **interval}


def new_item_significance(fitted: dict[str, Fitted], seed: int) -> dict[str, Any] | None:
    """Paired bootstrap of ``transfer`` against the best baseline of this seed on the ``new_items`` segment (full
    ranking, headline metric, the same test users)."""
    baselines = [name for name in fitted if name in BASELINES and fitted[name].per_user_new_items is not None]
    if TRANSFER not in fitted or fitted[TRANSFER].per_user_new_items is None or not baselines:
        return None
    best = max(baselines, key=lambda name: fitted[name].summary["new_items"]["full"][SELECTION_METRIC])
    ours = fitted[TRANSFER].per_user_new_items
    theirs = fitted[best].per_user_new_items.reindex(ours.index)
    if not len(ours):
        return None
    interval = paired_bootstrap(ours.to_numpy(), theirs.to_numpy(), seed=seed)
    return {"seed": seed, "baseline": best, "metric": SELECTION_METRIC, "ranking": "full", **interval}


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
        prepared = prepare_seed(config, seed, data, workdir=out / "work" / f"seed{seed}")
        splits[str(seed)] = prepared.split.sizes()
        bar.update()
        fitted: dict[str, Fitted] = {}
        for name in models:
            bar.set_description(f"seed {seed}: {name}")
            fitted[name] = fit_and_evaluate(name, prepared.in_workdir(name))
            results[name].append(fitted[name].summary)
            value = fitted[name].summary["cold_start_test"][SELECTION_METRIC]
            log.info("seed %s %s: cold-start test %s %.4f", seed, name, SELECTION_METRIC, value)
            bar.update()
        test = significance(fitted, seed)
        if test is not None:
            results[TRANSFER][-1]["bootstrap"] = test
            log.info(
                "seed %s: transfer - %s = %+.4f [%.4f, %.4f]",
                seed,
                test["baseline"],
                test["mean_diff"],
                test["ci_low"],
                test["ci_high"],
            )
        test = new_item_significance(fitted, seed)
        if test is not None:
            results[TRANSFER][-1]["new_items_bootstrap"] = test
    bar.set_description("report")
    metrics = {
        **metrics_header(config, seeds),
        "split": {"spec": dataclasses.asdict(config.split), "sizes": splits},
        "baselines": [name for name in models if name in BASELINES],
        "models": {name: aggregate(per_seed) for name, per_seed in results.items()},
        "config": config.to_dict(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    write_report(metrics, out)
    bar.close()
    return metrics
