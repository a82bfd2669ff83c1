"""``tfrec-xcat tune``: KerasTuner searches the transfer model's hyperparameters on cold-start VALIDATION users.

KerasTuner itself runs on Keras 3, the models on tf-keras: the tuner is a ``BaseTuner`` whose ``run_trial``
builds, trains (our trainer, our callbacks) and scores a trial and returns the objective, so no Keras-3 object
ever meets a tf-keras model. Test users are never loaded by the tuner's scoring. The search state lives in
``TUNE_DIR/keras_tuner``: re-running the same command continues it (``overwrite`` starts afresh), and a trial
cut short resumes from its own checkpoints in ``TUNE_DIR/trials/<id>``.

Outputs: ``trials.csv`` and ``trials.md`` (every trial: hyperparameters, objective, seconds, status),
``best.toml`` (a complete config that ``tfrec-xcat train --config`` and ``run --config`` accept as-is), and
``objective.png`` (objective by trial, with the best so far).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras_tuner as kt

from tfrec_xcat.tuning.spec import TuneSpec

if TYPE_CHECKING:
    from tfrec_xcat.config import Config
    from tfrec_xcat.pipeline import PreparedSeed

log = logging.getLogger(__name__)

OBJECTIVE = "cold_start_val_ndcg@10"
MODEL_KEYS = (
    "embedding_dim",
    "tower_layers",
    "temperature",
    "pooling",
    "grl_lambda_max",
    "grl_weight",
    "use_text",
    "cold_history_dropout",
)
TRAINING_KEYS = ("learning_rate", "optimizer", "mode", "batch_size")


def define(hp: kt.HyperParameters, spec: TuneSpec) -> dict[str, Any]:
    """Declare the search space on ``hp`` and return this trial's values (tower layers decoded)."""
    values: dict[str, Any] = {}
    for key in (*MODEL_KEYS, *TRAINING_KEYS):
        choices = getattr(spec, key)
        if key == "tower_layers":
            encoded = [",".join(map(str, c)) for c in choices]
            values[key] = [int(w) for w in hp.Choice(key, encoded).split(",") if w]
        elif isinstance(choices[0], bool):  # KerasTuner hands booleans back as 0/1
            values[key] = bool(hp.Choice(key, [int(c) for c in dict.fromkeys(choices)]))
        else:
            values[key] = hp.Choice(key, list(dict.fromkeys(choices)))
    return values


def trial_config(base: Config, values: dict[str, Any], epochs: int | None = None) -> Config:
    """``base`` with a trial's hyperparameters applied (each spec validates its values on construction)."""
    training = {k: values[k] for k in TRAINING_KEYS if k in values}
    if epochs is not None:
        training["epochs"] = epochs
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, **{k: values[k] for k in MODEL_KEYS if k in values}),
        training=dataclasses.replace(base.training, **training),
    )


class XcatTuner(kt.engine.base_tuner.BaseTuner):
    """Runs trials with tfrec-xcat's own trainer; reports the objective to the oracle."""

    def __init__(self, oracle: kt.Oracle, base: Config, spec: TuneSpec, prepared: PreparedSeed, **kwargs: Any):
        super().__init__(oracle=oracle, **kwargs)
        self.base, self.spec, self.prepared = base, spec, prepared
        self.started = time.monotonic()
        self.trials_run = 0

    def pre_create_trial(self) -> None:
        """Past ``max_minutes``, cap the oracle at the trials it has, so it stops instead of starting one more
        (every invocation runs at least one trial, so re-running with a budget always makes progress)."""
        super().pre_create_trial()
        budget = self.spec.max_minutes
        if budget and self.trials_run and time.monotonic() - self.started >= 60 * budget:
            print(f"time budget of {budget:g} minutes spent; no new trials", flush=True)
            self.oracle.max_trials = len(self.oracle.trials)

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        from tfrec_xcat.training.variants import train_two_tower

        self.trials_run += 1
        values = define(trial.hyperparameters, self.spec)
        epochs = trial.hyperparameters.values.get("tuner/epochs")
        config = trial_config(self.base, values, int(epochs) if epochs else None)
        prepared = self.prepared
        print(f"trial {trial.trial_id}: {values}", flush=True)
        started = time.perf_counter()
        workdir = Path(self.project_dir).parent / "trials" / trial.trial_id
        result = train_two_tower(prepared, config.model, config.training, workdir)
        best = max(result.history) if result.history else 0.0
        seconds = time.perf_counter() - started
        print(f"trial {trial.trial_id}: {OBJECTIVE} {best:.4f} in {seconds:.0f}s", flush=True)
        return {OBJECTIVE: best, "seconds": seconds}

    def on_trial_end(self, trial: kt.engine.trial.Trial) -> None:
        super().on_trial_end(trial)
        best = self.oracle.get_best_trials(1)
        if best and best[0].score is not None:
            print(f"best so far: trial {best[0].trial_id} {OBJECTIVE} {best[0].score:.4f}", flush=True)


def make_oracle(spec: TuneSpec, epochs: int) -> kt.Oracle:
    objective = kt.Objective(OBJECTIVE, direction="max")
    if spec.tuner == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(objective, max_trials=spec.max_trials, seed=spec.seed)
    if spec.tuner == "hyperband":
        return kt.oracles.HyperbandOracle(objective, max_epochs=max(epochs, 2), seed=spec.seed, hyperband_iterations=1)
    return kt.oracles.RandomSearchOracle(objective, max_trials=spec.max_trials, seed=spec.seed)


def trial_rows(oracle: kt.Oracle) -> list[dict[str, Any]]:
    rows = []
    for trial_id, trial in sorted(oracle.trials.items()):
        metrics = trial.metrics
        row = {
            "trial": trial_id,
            "status": trial.status,
            OBJECTIVE: metrics.get_best_value(OBJECTIVE) if metrics.exists(OBJECTIVE) else None,
            "seconds": metrics.get_best_value("seconds") if metrics.exists("seconds") else None,
        }
        row.update({k: v for k, v in trial.hyperparameters.values.items()})
        rows.append(row)
    return rows


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "seconds":
        return f"{value:.0f}"
    if key == OBJECTIVE:
        return f"{value:.4f}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_outputs(out: Path, oracle: kt.Oracle, base: Config, spec: TuneSpec) -> dict[str, Any]:
    rows = trial_rows(oracle)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "trials.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(k, r.get(k)) for k in keys) + " |")
    (out / "trials.md").write_text(
        "# Trials\n\nObjective: cold-start validation NDCG@10 (higher is better).\n\n" + "\n".join(lines) + "\n"
    )
    best = oracle.get_best_trials(1)
    summary: dict[str, Any] = {"trials": len(rows), "best": None}
    if best and best[0].score is not None:
        hp = best[0].hyperparameters
        values = define(hp, spec)
        epochs = hp.values.get("tuner/epochs")
        config = trial_config(base, values, int(epochs) if epochs else None)
        (out / "best.toml").write_text(
            f"# best of {len(rows)} trials: {OBJECTIVE} {best[0].score:.4f} "
            f"(trial {best[0].trial_id})\n" + config.to_toml()
        )
        summary["best"] = {"trial": best[0].trial_id, OBJECTIVE: best[0].score, "values": values}
    _plot(out, rows)
    return summary


def _plot(out: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [r[OBJECTIVE] for r in rows if r[OBJECTIVE] is not None]
    if not scores:
        return
    best = [max(scores[: i + 1]) for i in range(len(scores))]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(range(1, len(scores) + 1), scores, "o", label="trial")
    ax.plot(range(1, len(scores) + 1), best, "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("cold-start val NDCG@10")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "objective.png", dpi=110)
    plt.close(fig)


def tune(config: Config, prepared: PreparedSeed, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Run (or continue) the search configured in ``config.tune`` on ``prepared`` (its validation users only);
    write the outputs into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = config.tune
    oracle = make_oracle(spec, config.training.epochs)
    tuner = XcatTuner(
        oracle, config, spec, prepared, directory=str(out), project_name="keras_tuner", overwrite=overwrite
    )
    tuner.search()
    return write_outputs(out, tuner.oracle, config, spec)
