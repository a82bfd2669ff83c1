"""The neural models through ``tfrec-xcat run`` on the small shop: every variant trains, validates and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfrec_xcat.config import load_config
from tfrec_xcat.experiment import run_experiment
from tfrec_xcat.recommender import MODELS
from tfrec_xcat.report import verdict

SMALL_MODEL = {"embedding_dim": 16, "tower_layers": [32], "text_dim": 16, "history_per_category": 8, "max_tokens": 8}


@pytest.fixture(scope="module")
def metrics(small_shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    config = load_config(
        None,
        {
            "data": {"path": str(small_shop_dir), "source": "Food", "target": "Kitchen"},
            "model": SMALL_MODEL,
            "training": {"batch_size": 128, "epochs": 3, "source_epochs": 1, "patience": 1},
        },
    )
    names = [n for n in MODELS if n not in ("popularity", "ridge_map", "content_knn")]
    out = tmp_path_factory.mktemp("neural")
    run_experiment(config, out, names, progress=False)
    return json.loads((out / "metrics.json").read_text())


def test_every_neural_variant_runs(metrics: dict) -> None:
    expected = {
        "transfer",
        "transfer_wide_deep",
        "transfer_deep",
        "transfer_frozen",
        "transfer_partial",
        "transfer_joint",
        "transfer_no_grl",
        "transfer_id_only",
        "target_only",
        "emcdr",
        "cooccurrence",
        "itemknn",
        "rp3beta",
    }
    assert set(metrics["models"]) == expected
    for name, result in metrics["models"].items():
        assert 0 <= result["cold_start_test"]["ndcg@10"] <= 1, name
        if MODELS[name][0] != "baseline" or name in ("target_only", "emcdr"):
            assert result["history"], f"{name} recorded no validation curve"
        if name.startswith("transfer") or name == "target_only":  # the shop has ratings: the rating head is scored
            assert 0 < result["cold_start_test"]["mae"] <= result["cold_start_test"]["rmse"] < 5
            assert result["examples_per_second"] > 0


def test_transfer_uses_the_source(metrics: dict) -> None:
    """Source history is what makes cold users predictable: transfer must beat the target-only model."""
    models = metrics["models"]
    assert models["transfer"]["cold_start_val"]["ndcg@10"] > models["target_only"]["cold_start_val"]["ndcg@10"]
    assert "Best on cold-start test" in verdict(metrics)
    transfer = models["transfer"]
    assert set(transfer["ablations"]) >= {"deep", "wide", "fusion"}
    chosen = transfer["choices"][0]["chosen"]
    assert chosen["stage"] in {"deep", "wide", "fusion", "ranker"}
    # the chosen part is the one with the best validation value, and transfer's validation value is its value
    best_part = max(transfer["ablations"].values(), key=lambda a: a["cold_start_val"]["ndcg@10"])
    assert transfer["cold_start_val"]["ndcg@10"] == pytest.approx(best_part["cold_start_val"]["ndcg@10"], abs=1e-9)
    (interval,) = transfer["bootstrap"]
    assert (
        interval["baseline"] in metrics["baselines"]
        and interval["ci_low"] <= interval["mean_diff"] <= interval["ci_high"]
    )
