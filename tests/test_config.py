"""The config object: TOML in, validated, clear errors naming file/section/key, and TOML out again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tfrec_xcat.config import Config, load_config
from tfrec_xcat.errors import ConfigError


def test_defaults_and_synthetic_categories() -> None:
    config = load_config()
    assert config.data.path is None
    assert (config.source, config.target) == ("Food", "Kitchen")
    assert config.split.cold_start_fraction == 0.2
    assert config.data.max_bad_fraction == 0.001


def test_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[data]\npath = "x"\nsource = "A"\ntarget = "B"\n[split]\ncold_start_fraction = 0.3\n'
        '[synthetic]\ncategories = ["P", "Q"]\nitems_per_category = [10, 20]\n'
        "single_category_weights = [1, 1]\n[run]\nseeds = [0, 1, 2]\n"
    )
    config = load_config(path, {"data": {"target": "C", "source": None}})
    assert (config.source, config.target) == ("A", "C")
    assert config.split.cold_start_fraction == 0.3
    assert config.synthetic.categories == ("P", "Q")
    assert config.synthetic.single_category_weights == (1.0, 1.0)
    assert config.run.seeds == [0, 1, 2]


def test_pseudo_new_fraction_is_auto_or_a_share(tmp_path: Path) -> None:
    assert load_config(None).ranker.pseudo_new_fraction == 0.0
    assert load_config(None, {"ranker": {"pseudo_new_fraction": "auto"}}).ranker.pseudo_new_fraction == "auto"
    assert load_config(None, {"ranker": {"pseudo_new_fraction": 0}}).ranker.pseudo_new_fraction == 0.0
    path = tmp_path / "c.toml"
    path.write_text("[ranker]\npseudo_new_fraction = 0.05\n")
    config = load_config(path)
    assert config.ranker.pseudo_new_fraction == 0.05
    path.write_text(config.to_toml())
    assert load_config(path) == config


def test_round_trip(tmp_path: Path) -> None:
    config = load_config(None, {"data": {"source": "S", "text_columns": ["title"]}, "run": {"seeds": [4, 5]}})
    path = tmp_path / "again.toml"
    path.write_text(config.to_toml())
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[data]\nsorce = 'A'\n", r"c.toml.data: unknown key\(s\) sorce"),
        ("[dta]\n", r"unknown key\(s\) dta"),
        ("[split]\ncold_start_fraction = 'high'\n", r"split.cold_start_fraction: expected float, got 'high'"),
        ("[split]\ncold_start_fraction = 1.5\n", r"split: cold_start_fraction must be in \[0, 1\)"),
        ("[data]\nformat = 'xml'\n", "format must be one of"),
        ("[data]\nmax_bad_fraction = true\n", "expected float"),
        ("[run]\nseeds = []\n", "at least one seed"),
        ("[run]\nseeds = [1, 'a']\n", r"run.seeds\[1\]: expected int"),
        ("[data\n", "invalid TOML"),
        ("[ranker]\npseudo_new_fraction = 'many'\n", r"ranker: pseudo_new_fraction must be \"auto\" or in \[0, 1\)"),
        ("[ranker]\npseudo_new_fraction = 1.0\n", "pseudo_new_fraction must be"),
        ("[ranker]\npseudo_new_fraction = true\n", "pseudo_new_fraction"),
    ],
)
def test_bad_configs_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")


def test_real_data_needs_categories() -> None:
    config = Config()
    config.data.path = "somewhere"
    with pytest.raises(ConfigError, match="--source"):
        _ = config.source
