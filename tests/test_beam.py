"""The Beam pipeline (DirectRunner) writes exactly the local command's shards, also to a non-local file system
(an in-memory ``mem://`` Beam file system registered here), and gives one line for bad input."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("apache_beam", reason="the beam extra is not installed (pip install 'tfrec-xcat[beam]')")

from apache_beam.io.filesystem import FileMetadata, FileSystem

from pipelines.batch_scoring import main as beam_main
from pipelines.batch_scoring import run as run_beam
from tests.conftest import SMALL_CONFIG
from tfrec_xcat.api import data_dir
from tfrec_xcat.config import load_config
from tfrec_xcat.data.load import load_shop
from tfrec_xcat.scoring.batch import load_retrieval, read_users, score_users


class MemoryFileSystem(FileSystem):
    """``mem://`` paths held in a dict, like an object store: no folders, rename is a move of a key. Every path
    it is handed is recorded, so a test can check none was mangled (``mem:/x`` from pathlib)."""

    files: ClassVar[dict[str, bytes]] = {}
    seen: ClassVar[list[str]] = []

    @classmethod
    def scheme(cls) -> str:
        return "mem"

    def _saw(self, *paths: str) -> None:
        self.seen.extend(paths)

    def join(self, basepath: str, *paths: str) -> str:
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path: str) -> None:
        self._saw(path)

    def has_dirs(self) -> bool:
        return False

    def _list(self, dir_or_prefix: str) -> Any:
        self._saw(dir_or_prefix)
        for path, data in list(self.files.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data), 0.0)

    def create(self, path: str, mime_type: str = "", compression_type: str = "") -> io.BytesIO:
        self._saw(path)
        files = self.files

        class Upload(io.BytesIO):
            def close(self) -> None:
                if not self.closed:
                    files[path] = self.getvalue()
                super().close()

        return Upload()

    def open(self, path: str, mime_type: str = "", compression_type: str = "") -> io.BytesIO:
        self._saw(path)
        if path not in self.files:
            raise OSError(f"{path}: no such object")
        return io.BytesIO(self.files[path])

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        for s, d in zip(source_file_names, destination_file_names, strict=True):
            self._saw(s, d)
            self.files[d] = self.files[s]

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        for s, d in zip(source_file_names, destination_file_names, strict=True):
            self._saw(s, d)
            self.files[d] = self.files.pop(s)

    def exists(self, path: str) -> bool:
        self._saw(path)
        return path in self.files

    def size(self, path: str) -> int:
        return len(self.files[path])

    def last_updated(self, path: str) -> float:
        return 0.0

    def checksum(self, path: str) -> str:
        return str(len(self.files[path]))

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, len(self.files[path]), 0.0)

    def delete(self, paths: list[str]) -> None:
        for path in paths:
            self._saw(path)
            self.files.pop(path, None)


@pytest.fixture(scope="module")
def local(exported: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The local command's shards for 150 users and a ghost, k=10, blocks of 40."""
    data_path = data_dir(load_config(None, SMALL_CONFIG))
    data = load_shop(data_path)
    tmp = tmp_path_factory.mktemp("beam")
    users_file = tmp / "users.txt"
    users = np.sort(data.interactions.user_id.unique())
    users_file.write_text("\n".join([*users[:150], "ghost"]) + "\n")
    model = exported / "xcat_retrieval"
    out = tmp / "local"
    chosen, _ = read_users(str(users_file), data)
    score_users(load_retrieval(model), data, chosen, out, k=10, block=40, progress=False)
    args = ["--model", str(model), "--data", str(data_path), "--users", str(users_file), "--k", "10", "--block", "40"]
    return {"out": out, "args": args, "names": sorted(p.name for p in out.glob("part-*.parquet"))}


def test_beam_equals_local(local: dict[str, Any], tmp_path: Path) -> None:
    beam_out = tmp_path / "beam"
    run_beam([*local["args"], "--out", str(beam_out), "--runner", "DirectRunner"])
    names = local["names"]
    assert names == sorted(p.name for p in beam_out.glob("part-*.parquet")) and len(names) == 4
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(local["out"] / name), pd.read_parquet(beam_out / name))
    assert (beam_out / "_SUCCESS").is_file()
    assert "ghost" in set(pd.read_parquet(beam_out).user_id)


def test_beam_to_a_non_local_file_system(local: dict[str, Any]) -> None:
    """Issue 15 item 16: pathlib made gs://B/x into gs:/B/x; the output goes through Beam's FileSystems."""
    MemoryFileSystem.files.clear()
    MemoryFileSystem.seen.clear()
    out = "mem://bucket/scores"
    run_beam([*local["args"], "--out", out, "--runner", "DirectRunner"])
    files = MemoryFileSystem.files
    assert sorted(files) == sorted([*(f"{out}/{n}" for n in local["names"]), f"{out}/_PLAN.json", f"{out}/_SUCCESS"])
    for name in local["names"]:
        got = pd.read_parquet(io.BytesIO(files[f"{out}/{name}"]))
        pd.testing.assert_frame_equal(pd.read_parquet(local["out"] / name), got)
    assert MemoryFileSystem.seen and all(p.startswith(f"{out}/") or p == out for p in MemoryFileSystem.seen)

    # a re-run skips finished shards and scores a damaged one again
    files[f"{out}/{local['names'][1]}"] = b""
    kept = files[f"{out}/{local['names'][0]}"]
    MemoryFileSystem.seen.clear()
    run_beam([*local["args"], "--out", out, "--runner", "DirectRunner"])
    assert files[f"{out}/{local['names'][0]}"] is kept
    got = pd.read_parquet(io.BytesIO(files[f"{out}/{local['names'][1]}"]))
    pd.testing.assert_frame_equal(pd.read_parquet(local["out"] / local["names"][1]), got)
    assert not [p for p in files if ".tmp-" in p]

    # another plan's shards are never mixed in: one line, exit 2
    code = beam_main([*local["args"][:-2], "--block", "30", "--out", out, "--runner", "DirectRunner"])
    assert code == 2


def test_bad_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,item_id,category,item_id\nu1,i1,Food,i2\n")
    (data / "items.csv").write_text("item_id,category\ni1,Food\n")
    code = beam_main(["--model", str(tmp_path / "none"), "--data", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("batch_scoring: error: ") and "twice" in err
    assert beam_main(["--model", "m", "--out", str(tmp_path / "o"), "--k", "-5"]) == 2
    assert "--k must be" in capsys.readouterr().err


def test_model_from_a_url(local: dict[str, Any], exported: Path) -> None:
    """A model folder named by URL (TensorFlow's in-memory ram:// here, gs:// on Dataflow) is listed and loaded
    as such, never through pathlib."""
    import os

    import tensorflow as tf

    source = exported / "xcat_retrieval"
    for root, _, names in os.walk(source):
        rel = Path(root).relative_to(source).as_posix()
        target = "ram://models/xcat_retrieval" + ("" if rel == "." else f"/{rel}")
        tf.io.gfile.makedirs(target)
        for name in names:
            tf.io.gfile.copy(os.path.join(root, name), f"{target}/{name}", overwrite=True)
    args = list(local["args"])
    args[args.index("--model") + 1] = "ram://models/xcat_retrieval"
    out = "mem://bucket/from-ram"
    run_beam([*args, "--out", out, "--runner", "DirectRunner"])
    for name in local["names"]:
        got = pd.read_parquet(io.BytesIO(MemoryFileSystem.files[f"{out}/{name}"]))
        pd.testing.assert_frame_equal(pd.read_parquet(local["out"] / name), got)
