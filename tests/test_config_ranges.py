"""Issue 15, item 13: every config value is checked at load, and the error names the file, section and key;
a NaN loss stops training with a clear error and nothing saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfrec_xcat import cli
from tfrec_xcat.config import load_config
from tfrec_xcat.errors import ConfigError, XcatError

NAN, INF = float("nan"), float("inf")

BAD = [
    ("training", "learning_rate", NAN, "learning_rate must be a finite number"),
    ("training", "learning_rate", 0.0, "learning_rate must be > 0"),
    ("training", "learning_rate", INF, "learning_rate must be a finite number"),
    ("training", "batch_size", 10**9, "batch_size must be >= 2 and <= 16384"),
    ("training", "batch_size", 1, "batch_size must be >= 2"),
    ("training", "epochs", 0, "epochs must be >= 1"),
    ("training", "source_epochs", -1, "source_epochs must be >= 0"),
    ("training", "patience", -2, "patience must be >= 0"),
    ("training", "verbose", 7, "verbose must be >= 0 and <= 2"),
    ("model", "temperature", NAN, "temperature must be a finite number"),
    ("model", "temperature", 0.0, "temperature must be > 0"),
    ("model", "tower_layers", [0], r"tower_layers\[0\] must be >= 1"),
    ("model", "tower_layers", [64, -3], r"tower_layers\[1\] must be >= 1"),
    ("model", "history_per_category", 0, "history_per_category must be >= 1"),
    ("model", "history_per_category", -4, "history_per_category must be >= 1"),
    ("model", "vocab_size", 0, "vocab_size must be >= 1"),
    ("model", "embedding_dim", -8, "embedding_dim must be >= 1"),
    ("model", "text_dim", 0, "text_dim must be >= 1"),
    ("model", "max_tokens", 0, "max_tokens must be >= 1"),
    ("model", "id_dropout", NAN, "id_dropout must be a finite number"),
    ("model", "grl_weight", -0.1, "grl_weight must be >= 0"),
    ("model", "ranking_weight", NAN, "ranking_weight must be a finite number"),
    ("synthetic", "overlap_fraction", 2.0, "overlap_fraction must be >= 0 and <= 1"),
    ("synthetic", "n_users", -5, "n_users must be >= 1"),
    ("synthetic", "n_users", 10**12, "n_users \\* scale must be <="),
    ("synthetic", "items_per_category", [400, -1], r"items_per_category\[1\] must be >= 1"),
    ("synthetic", "n_clusters", 0, "n_clusters must be >= 1"),
    ("synthetic", "noise", NAN, "noise must be a finite number"),
    ("synthetic", "mean_interactions", 0.5, "mean_interactions must be >= 1"),
    ("synthetic", "scale", NAN, "scale must be a finite number"),
    ("synthetic", "seed", -1, "seed must be >= 0"),
    ("split", "cold_start_fraction", NAN, "cold_start_fraction must be in"),
    ("data", "max_bad_fraction", NAN, "max_bad_fraction must be a finite number"),
    ("run", "seeds", [-1], r"seeds\[0\] must be >= 0"),
    ("tune", "learning_rate", [0.01, NAN], r"learning_rate\[1\] must be a finite number"),
    ("tune", "tower_layers", [[64], [0]], r"tower_layers\[1\]\[0\] must be >= 1"),
    ("tune", "batch_size", [10**9], r"batch_size\[0\] must be >= 2 and <= 16384"),
    ("tune", "optimizer", ["adam", "rmsprop"], r"optimizer\[1\] must be one of"),
    ("tune", "max_minutes", NAN, "max_minutes must be a finite number"),
]


@pytest.mark.parametrize(("section", "key", "value", "message"), BAD)
def test_each_bad_value_names_its_key(section: str, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^config\.{section}: {message}"):
        load_config(None, {section: {key: value}})


def test_toml_nan_names_file_section_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[training]\nlearning_rate = nan\n[model]\ntemperature = 0.1\n")
    with pytest.raises(ConfigError, match=rf"^{path}\.training: learning_rate must be a finite number, got nan$"):
        load_config(path)
    code = cli.main(["run", "--config", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "learning_rate" in err


def test_source_equal_to_target() -> None:
    with pytest.raises(ConfigError, match="source and target must be different categories, got 'Food' for both"):
        load_config(None, {"data": {"path": "x", "source": "Food", "target": "Food"}})
    with pytest.raises(ConfigError, match="got 'Food' for both"):  # the synthetic default target is Kitchen
        load_config(None, {"data": {"target": "Food"}})


def test_nan_loss_stops_training_and_saves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tf_keras

    from tests.conftest import SMALL_CONFIG
    from tfrec_xcat.train import run_training
    from tfrec_xcat.training import trainer

    config = load_config(None, SMALL_CONFIG)
    # a learning rate that slipped past the config checks (train's two-tower re-checks its settings, so the NaN
    # goes in where the optimizer is made)
    monkeypatch.setattr(trainer, "make_optimizer", lambda spec: tf_keras.optimizers.Adam(NAN))
    with pytest.raises(XcatError, match=r"training stage .*: the loss became nan at epoch 1, batch 2; stopped"):
        run_training(config, tmp_path)
    assert not (tmp_path / "model").exists() and not (tmp_path / "metrics.json").exists()
