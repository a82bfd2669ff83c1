"""Issue 15, items 14-15: user mistakes end in ONE line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfrec_xcat.cli import build_parser, main


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("tfrec-xcat: error: ") and "Traceback" not in err, err
    return lines[-1]


def test_seeds_that_are_not_integers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--seeds", "0,a", "--out", str(tmp_path / "run")]) == 2
    assert "--seeds: 'a' is not an integer" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_source_equal_to_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--source", "Food", "--target", "Food", "--out", str(tmp_path / "run")]) == 2
    assert "source and target must be different categories" in _one_line(capsys)


def test_failed_run_is_one_line_and_leaves_no_empty_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,item_id,category\n" + "u1,i1\n" * 5)
    (data / "items.csv").write_text("item_id,category\ni1,Food\n")
    out = tmp_path / "run"
    args = ["run", "--data", str(data), "--source", "Food", "--target", "Kitchen", "--out", str(out), "--quiet"]
    assert main(args) == 2
    assert "interactions.csv" in _one_line(capsys)
    assert not out.exists()
    out.mkdir()  # a folder the user made is left alone
    assert main(args) == 2 and out.is_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_recommend_without_a_server_says_it_waits(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["recommend", "--user", "u"]).wait <= 10
    server = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    assert main(["recommend", "--server", server, "--user", "u", "--wait", "1"]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert f"waiting up to 1 s for {server}" in err
    assert err.strip().splitlines()[-1].startswith(f"tfrec-xcat: error: no answer from {server}")
    assert "Traceback" not in err


@pytest.fixture()
def listener() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("flag", ["--rest-port", "--grpc-port"])
def test_serve_on_a_busy_port_is_one_line(
    listener: int, flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "--grpc-port" if flag == "--rest-port" else "--rest-port"
    args = ["serve", "--models", str(tmp_path), flag, str(listener), other, str(_free_port())]
    assert main(args) == 2
    line = _one_line(capsys)
    assert f"127.0.0.1:{listener} ({flag})" in line and "in use" in line
