"""The ``tfrec-xcat data`` commands, through ``main()`` as a user calls them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfrec_xcat.cli import main


def test_inspect_synthetic_dir(small_shop_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "inspect", "--data", str(small_shop_dir), "--source", "Food", "--target", "Kitchen"]) == 0
    out = capsys.readouterr().out
    assert "overlap users (Food & Kitchen)" in out
    assert "cold_start_test" in out and "bad rows" in out and "none" in out


def test_inspect_json(small_shop_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "inspect", "--data", str(small_shop_dir), "--source", "Food", "--target", "Kitchen", "--json"]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["users"] == 400
    assert info["split"]["cold_start_test_users"] == round(0.2 * info["overlap_users"]["Food|Kitchen"])


def test_inspect_default_is_the_synthetic_shop(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "inspect", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["users"] == 4000 and info["source"] == "Food" and info["target"] == "Kitchen"


def test_bad_input_exits_nonzero_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "interactions.csv").write_text("user_id,item_id,category\n" + "u1,i1\n" * 5 + "u1,i1,Food\n")
    (tmp_path / "items.csv").write_text("item_id,category,title\ni1,Food,Tea\n")
    assert main(["data", "inspect", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tfrec-xcat: error: ") and "interactions.csv" in err and "malformed_line 5" in err
    assert "\n" not in err and "Traceback" not in err


def test_unknown_category_and_missing_dir(small_shop_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "inspect", "--data", str(small_shop_dir), "--source", "Toys", "--target", "Food"]) == 2
    assert "unknown category 'Toys'" in capsys.readouterr().err
    assert main(["data", "inspect", "--data", "/no/such/dir"]) == 2
    assert "/no/such/dir: data directory not found" in capsys.readouterr().err


def test_strict_flags_bad_rows(tmp_path: Path, small_shop_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "items.csv").write_text((small_shop_dir / "items.csv").read_text())
    import gzip

    with gzip.open(small_shop_dir / "interactions.csv.gz", "rt") as handle:
        rows = handle.read()
    (tmp_path / "interactions.csv").write_text(rows + "broken,line\n")
    assert main(["data", "inspect", "--data", str(tmp_path), "--max-bad-fraction", "0.01"]) == 0
    assert "malformed_line" in capsys.readouterr().out
    assert main(["data", "inspect", "--data", str(tmp_path), "--max-bad-fraction", "0.01", "--strict"]) == 1


def test_synth_writes_neutral_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--scale", "0.05"]) == 0
    assert (tmp_path / "s" / "interactions.csv.gz").is_file() and (tmp_path / "s" / "items.csv").is_file()
    assert "200 users" in capsys.readouterr().out
