"""``tfrec-xcat tune``: a 3-trial KerasTuner search on the small shop; interrupting and re-running resumes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import small_config_toml
from tfrec_xcat.cli import main
from tfrec_xcat.config import load_config
from tfrec_xcat.tuning import tuner as tuner_module

CONFIG = small_config_toml(
    model={"embedding_dim": 16, "tower_layers": [32]},
    tune={"max_trials": 3, "embedding_dim": [8, 16], "tower_layers": [[16], [32]], "batch_size": [128]},
)


def read_trials(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv") as handle:
        return list(csv.DictReader(handle))


def test_search_interrupt_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tune.toml"
    config.write_text(CONFIG)
    out = tmp_path / "tune"

    original = tuner_module.XcatTuner.run_trial
    calls = {"n": 0}

    def interrupted(self, trial, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("interrupted during the second trial")
        return original(self, trial, *args, **kwargs)

    monkeypatch.setattr(tuner_module.XcatTuner, "run_trial", interrupted)
    assert main(["tune", "--config", str(config), "--out", str(out)]) == 130  # Ctrl-C: exit code 130
    monkeypatch.setattr(tuner_module.XcatTuner, "run_trial", original)

    ran: list[str] = []

    def counting(self, trial, *args, **kwargs):
        ran.append(trial.trial_id)
        return original(self, trial, *args, **kwargs)

    monkeypatch.setattr(tuner_module.XcatTuner, "run_trial", counting)
    assert main(["tune", "--config", str(config), "--out", str(out)]) == 0
    trials = read_trials(out)
    assert len(trials) == 3
    assert all(t["status"] == "COMPLETED" for t in trials)
    assert "0" not in ran  # the finished first trial was not run again
    assert len(ran) == 2
    for name in ("trials.md", "objective.png", "best.toml"):
        assert (out / name).stat().st_size > 0
    # best.toml is a complete config that train and run accept as-is
    best = load_config(out / "best.toml")
    scores = [float(t["cold_start_val_ndcg@10"]) for t in trials]
    assert f"{max(scores):.4f}" in (out / "best.toml").read_text().splitlines()[0]
    assert best.model.embedding_dim in (8, 16)
    assert best.training.epochs == 1


def test_time_budget_stops_starting_trials(tmp_path: Path) -> None:
    config = tmp_path / "tune.toml"
    config.write_text(CONFIG)
    out = tmp_path / "tune"
    # a budget spent during the first trial: that trial finishes, no second one starts
    assert main(["tune", "--config", str(config), "--out", str(out), "--max-minutes", "0.0001"]) == 0
    trials = read_trials(out)
    assert len(trials) == 1 and trials[0]["status"] == "COMPLETED"
    assert (out / "best.toml").is_file()
