"""The Beam pipeline (DirectRunner) writes exactly the local command's shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("apache_beam", reason="the beam extra is not installed (pip install 'tfrec-xcat[beam]')")

from pipelines.batch_scoring import run as run_beam
from tests.conftest import SMALL_CONFIG
from tfrec_xcat.api import data_dir
from tfrec_xcat.config import load_config
from tfrec_xcat.data.load import load_shop
from tfrec_xcat.scoring.batch import load_retrieval, read_users, score_users


def test_beam_equals_local(exported: Path, tmp_path: Path) -> None:
    data_path = data_dir(load_config(None, SMALL_CONFIG))
    data = load_shop(data_path)
    users_file = tmp_path / "users.txt"
    users = np.sort(data.interactions.user_id.unique())
    users_file.write_text("\n".join([*users[:150], "ghost"]) + "\n")
    model = exported / "xcat_retrieval"

    local = tmp_path / "local"
    chosen, _ = read_users(str(users_file), data)
    score_users(load_retrieval(model), data, chosen, local, k=10, block=40, progress=False)
    beam_out = tmp_path / "beam"
    run_beam(
        [
            "--model",
            str(model),
            "--data",
            str(data_path),
            "--users",
            str(users_file),
            "--k",
            "10",
            "--block",
            "40",
            "--out",
            str(beam_out),
            "--runner",
            "DirectRunner",
        ]
    )

    names = sorted(p.name for p in local.glob("part-*.parquet"))
    assert names == sorted(p.name for p in beam_out.glob("part-*.parquet")) and len(names) == 4
    for name in names:
        pd.testing.assert_frame_equal(pd.read_parquet(local / name), pd.read_parquet(beam_out / name))
    assert (beam_out / "_SUCCESS").is_file()
    assert "ghost" in set(pd.read_parquet(beam_out).user_id)
