"""Issue 15, item 12: ``score`` on non-ASCII ids, stale or damaged plans and shards, and bad settings.

A stand-in for the exported model (same signature contract: UTF-8 bytes in, query vectors and a usable flag
out) keeps these tests fast; tests/test_scoring.py runs the real SavedModel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfrec_xcat import cli
from tfrec_xcat.data.dataset import ShopData, finish_interactions
from tfrec_xcat.data.problems import ReadReport
from tfrec_xcat.errors import XcatError
from tfrec_xcat.scoring.batch import Retrieval, read_users, score_users


class _Tensor:
    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def numpy(self) -> np.ndarray:
        return self.value


def _query(user_id: np.ndarray, history: np.ndarray) -> dict[str, _Tensor]:
    # like a string tensor: every element must be bytes (UTF-8), never str
    assert all(isinstance(u, bytes) for u in user_id) and all(isinstance(h, bytes) for h in history.ravel())
    seeds = [sum(u) for u in user_id]
    queries = np.array([np.random.default_rng(s).normal(size=4) for s in seeds], dtype=np.float32)
    usable = np.array([not u.startswith(b"ghost") for u in user_id])
    return {"query": _Tensor(queries), "usable": _Tensor(usable)}


def _retrieval(tmp_path: Path) -> Retrieval:
    ids = np.array(["ü1", "i2", "i3", "i4", "i5", "日本"], dtype=object)
    return Retrieval(
        path=tmp_path / "model" / "1",
        version=1,
        query=_query,
        item_ids=ids,
        vectors=np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32),
        popularity=np.arange(len(ids), dtype=np.float32),
        column={item: i for i, item in enumerate(ids)},
    )


def _data() -> ShopData:
    inter = pd.DataFrame(
        {
            "user_id": ["Zoë", "Zoë", "user-日本", "ascii"],
            "item_id": ["ü1", "i2", "日本", "i3"],
            "category": ["Kitchen"] * 4,
        }
    )
    items = pd.DataFrame({"item_id": ["ü1", "i2", "i3", "i4", "i5", "日本"], "category": ["Kitchen"] * 6})
    return ShopData(finish_interactions(inter), items, [], ReadReport(), "test")


USERS = np.array(["Zoë", "user-日本", "ascii", "ghost-ö"], dtype=object)
# ASCII users with ASCII histories: the tests of plans, shards and settings fail on their own subject only
PLAIN = np.array(["ascii", "ghost-1", "nobody", "ghost-2"], dtype=object)


def test_non_ascii_user_and_item_ids_are_scored(tmp_path: Path) -> None:
    manifest = score_users(_retrieval(tmp_path), _data(), USERS, tmp_path / "out", k=3, block=2, progress=False)
    frame = pd.read_parquet(tmp_path / "out")
    assert manifest["rows"] == 12 and set(frame.user_id) == set(USERS)
    zoe = frame[frame.user_id == "Zoë"]
    assert not {"ü1", "i2"} & set(zoe.item_id)  # owned items are excluded, matched through UTF-8
    assert "日本" not in set(frame[frame.user_id == "user-日本"].item_id)


def test_failed_run_does_not_block_the_corrected_rerun(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "_PLAN.json").write_text(json.dumps({"key": "from-a-run-that-crashed", "users": 9}))
    score_users(_retrieval(tmp_path), _data(), PLAIN, out, k=3, block=2, progress=False)
    assert len(pd.read_parquet(out)) == 12
    # but shards of another plan are never mixed in
    with pytest.raises(XcatError, match="holds scores of other users, k or model"):
        score_users(_retrieval(tmp_path), _data(), PLAIN[:2], out, k=3, block=2, progress=False)


def test_empty_plan_and_zero_byte_shard(tmp_path: Path) -> None:
    out = tmp_path / "out"
    score_users(_retrieval(tmp_path), _data(), PLAIN, out, k=3, block=2, progress=False)
    expected = pd.read_parquet(out / "part-00001.parquet")
    (out / "part-00001.parquet").write_bytes(b"")  # a crash between write and rename without fsync
    score_users(_retrieval(tmp_path), _data(), PLAIN, out, k=3, block=2, progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "part-00001.parquet"), expected)
    (out / "_PLAN.json").write_text("")
    with pytest.raises(XcatError, match="has shards but an unreadable _PLAN.json; use another --out"):
        score_users(_retrieval(tmp_path), _data(), PLAIN, out, k=3, block=2, progress=False)
    for shard in out.glob("part-*"):
        shard.unlink()
    score_users(_retrieval(tmp_path), _data(), PLAIN, out, k=3, block=2, progress=False)
    assert not list(out.glob(".*tmp"))


@pytest.mark.parametrize(
    ("k", "block", "message"), [(-5, 2, "--k must be"), (0, 2, "--k must be"), (3, 0, "--block must be")]
)
def test_bad_k_or_block(tmp_path: Path, k: int, block: int, message: str) -> None:
    with pytest.raises(XcatError, match=message):
        score_users(_retrieval(tmp_path), _data(), PLAIN, tmp_path / "out", k=k, block=block, progress=False)


def test_unwritable_out(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for out, message in ((tmp_path / "file", "exists and is not a folder"), (tmp_path / "file" / "sub", "--out")):
        with pytest.raises(XcatError, match=message):
            score_users(_retrieval(tmp_path), _data(), PLAIN, out, k=3, block=2, progress=False)


def test_users_file_with_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_bytes("Zoë\n".encode() + b"caf\xe9\n")
    with pytest.raises(XcatError, match=r"users.txt:2: not valid UTF-8"):
        read_users(str(users), _data())
    users.write_bytes("Zoë\nuser-日本\n".encode())
    assert list(read_users(str(users), _data())[0]) == ["Zoë", "user-日本"]


@pytest.mark.parametrize(("flag", "value"), [("--k", "-5"), ("--block", "0")])
def test_cli_bad_k_block_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    code = cli.main(["score", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and flag in err
