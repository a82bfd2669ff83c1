"""``tfrec-xcat run`` end to end on the small synthetic shop: metrics.json contract, report, honest selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfrec_xcat.cli import main
from tfrec_xcat.config import load_config
from tfrec_xcat.experiment import run_experiment
from tfrec_xcat.report import verdict


@pytest.fixture(scope="module")
def run_dir(small_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    args = [
        "run",
        "--data",
        str(small_shop_dir),
        "--source",
        "Food",
        "--target",
        "Kitchen",
        "--out",
        str(out),
        "--seeds",
        "0,1",
        "--quiet",
        "--models",
        "popularity,cooccurrence,ridge_map",
    ]
    assert main(args) == 0
    return out


def test_metrics_contract(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["source"] == "Food" and metrics["target"] == "Kitchen" and metrics["seeds"] == [0, 1]
    assert set(metrics["models"]) == {"popularity", "cooccurrence", "ridge_map"}
    for result in metrics["models"].values():
        for segment in ("cold_start_test", "cold_start_val", "warm_test"):
            stats = result[segment]
            for name in ("ndcg@10", "ndcg@20", "ndcg@50", "recall@10", "recall@20", "recall@50", "hitrate@10", "mrr"):
                assert 0.0 <= stats[name] <= 1.0
                assert stats[f"{name}_std"] >= 0.0
        assert result["train_seconds"] >= 0 and result["examples_per_second"] > 0
        assert set(result["cold_start_test_by_history"]) == {"1-2", "3-5", "6-10", ">10"}
    # the planted structure: transfer baselines beat popularity on cold-start users
    models = metrics["models"]
    assert (
        models["cooccurrence"]["cold_start_test"]["ndcg@10"] > 1.5 * models["popularity"]["cold_start_test"]["ndcg@10"]
    )


def test_report_files(run_dir: Path) -> None:
    for name in ("report.md", "report.html", "models.svg", "history.svg"):
        assert (run_dir / name).stat().st_size > 0, name
    md = (run_dir / "report.md").read_text()
    assert "Best on cold-start test NDCG@10" in md and "| cooccurrence |" in md
    assert "<table>" in (run_dir / "report.html").read_text()


def test_selection_uses_validation_only(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ridge = metrics["models"]["ridge_map"]
    for params, selection in zip(ridge["params"], ridge["selection"], strict=True):
        best = max(selection, key=lambda s: s["cold_start_val_ndcg@10"])
        assert best["params"] == params
        assert all(set(s) == {"params", "cold_start_val_ndcg@10"} for s in selection)  # no test numbers used


def test_unknown_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--out", str(tmp_path), "--models", "popularity,magic", "--quiet"]) == 2
    assert "unknown model(s) magic" in capsys.readouterr().err


def test_verdict_names_the_winner_and_margin() -> None:
    metrics = {
        "models": {
            "popularity": {"cold_start_test": {"ndcg@10": 0.01}},
            "cooccurrence": {"cold_start_test": {"ndcg@10": 0.04}},
            "transfer": {"cold_start_test": {"ndcg@10": 0.05}},
        }
    }
    text = verdict(metrics)
    assert "**transfer** (0.0500)" in text and "cooccurrence (0.0400)" in text and "+25.0%" in text


def test_api_matches_cli(small_shop_dir: Path, tmp_path: Path, run_dir: Path) -> None:
    config = load_config(
        None, {"data": {"path": str(small_shop_dir), "source": "Food", "target": "Kitchen"}, "run": {"seeds": [0, 1]}}
    )
    metrics = run_experiment(config, tmp_path, ["cooccurrence"], progress=False)
    cli = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["models"]["cooccurrence"]["cold_start_test"] == cli["models"]["cooccurrence"]["cold_start_test"]
