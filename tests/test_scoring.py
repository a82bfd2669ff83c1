"""Batch scoring: equals the online model, chunked top-k is exact, resume after a kill is identical, unknown
users are scored by the popularity path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SMALL_CONFIG
from tfrec_xcat.api import load_data
from tfrec_xcat.config import load_config
from tfrec_xcat.scoring import batch
from tfrec_xcat.scoring.batch import load_retrieval, read_users, score_users
from tfrec_xcat.scoring.index import top_k_blocked


@pytest.fixture(scope="module")
def setup(exported: Path):
    data = load_data(load_config(None, SMALL_CONFIG))
    return load_retrieval(exported / "xcat_retrieval"), data


def _expected_top_k(q: np.ndarray, v: np.ndarray, k: int, exclude) -> tuple[np.ndarray, np.ndarray]:
    full = q @ v.T
    full[exclude] = -np.inf
    expected = np.argsort(-full, axis=1, kind="stable")[:, : min(k, len(v))]
    return expected, np.take_along_axis(full, expected, 1)


def test_blocked_top_k_is_exact() -> None:
    rng = np.random.default_rng(0)
    q, v = rng.normal(size=(37, 8)).astype(np.float32), rng.normal(size=(1000, 8)).astype(np.float32)
    exclude = (np.array([5, 0, 0]), np.array([10, 3, 999]))
    cols, scores = top_k_blocked(q, v, 25, exclude, block_bytes=4 * 1000 * 6)  # blocks of 6 users
    expected, values = _expected_top_k(q, v, 25, exclude)
    np.testing.assert_array_equal(cols, expected)
    np.testing.assert_allclose(scores, values, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    users=st.integers(1, 12),
    items=st.integers(1, 300),
    k=st.integers(1, 40),
    levels=st.integers(1, 4),
    block=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    excluded=st.integers(0, 400),
)
def test_blocked_top_k_matches_a_full_sort(users, items, k, levels, block, seed, excluded) -> None:
    """Ties (few distinct values), rows with most items excluded and k above the item count all stay exact."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-levels, levels + 1, size=(users, 3)).astype(np.float32)
    v = rng.integers(-levels, levels + 1, size=(items, 3)).astype(np.float32)
    rows, cols = rng.integers(0, users, excluded), rng.integers(0, items, excluded)
    got_cols, got_scores = top_k_blocked(q, v, k, (rows, cols), block_bytes=4 * items * block)
    expected, values = _expected_top_k(q, v, k, (rows, cols))
    np.testing.assert_array_equal(got_scores, values)
    finite = np.isfinite(values)
    np.testing.assert_array_equal(got_cols[finite], expected[finite])


@pytest.mark.parametrize("signature", ["recommend", "serving_default"])
def test_offline_equals_online(setup, exported: Path, tmp_path: Path, signature: str) -> None:
    """``score`` uses the model's ``recommend`` signature when it has one, else the two-tower's query and
    candidates signatures: either way it equals that signature online."""
    _, data = setup
    retrieval = load_retrieval(exported / "xcat_retrieval", recommend=signature == "recommend")
    assert retrieval.signature == ("recommend" if signature == "recommend" else "query+candidates")
    users = np.sort(data.interactions.user_id.unique())[:50]
    manifest = score_users(retrieval, data, users, tmp_path, k=10, progress=False)
    assert manifest["signature"] == retrieval.signature
    offline = pd.read_parquet(tmp_path)
    hist, _ = batch.histories(batch.item_lists(data), users)
    width = max(len(h) for h in hist)
    padded = np.array([h + [""] * (width - len(h)) for h in hist], dtype=object).astype(bytes)
    online = retrieval.loaded.signatures[signature](
        user_id=tf.constant(users.astype(bytes)), history=tf.constant(padded), k=tf.constant([10] * len(users))
    )
    ids = online["item_ids"].numpy().astype(str)
    for i, user in enumerate(users):
        got = offline[offline.user_id == user].sort_values("rank").item_id.tolist()
        assert got == ids[i].tolist(), user


def test_resume_after_kill_is_identical(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    retrieval, data = setup
    users = np.sort(data.interactions.user_id.unique())
    whole = tmp_path / "whole"
    score_users(retrieval, data, users, whole, k=7, block=64, progress=False)

    resumed = tmp_path / "resumed"
    original = batch.pq.write_table
    calls = {"n": 0}

    def dying(table, where, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            original(table.slice(0, 5), where)  # a half-written temporary file, as a kill leaves it
            raise KeyboardInterrupt("killed")
        return original(table, where, *args, **kwargs)

    monkeypatch.setattr(batch.pq, "write_table", dying)
    with pytest.raises(KeyboardInterrupt):
        score_users(retrieval, data, users, resumed, k=7, block=64, progress=False)
    monkeypatch.setattr(batch.pq, "write_table", original)
    assert not (resumed / "_SUCCESS").exists()
    score_users(retrieval, data, users, resumed, k=7, block=64, progress=False)
    a = pd.read_parquet(sorted(whole.glob("part-*.parquet")))
    b = pd.read_parquet(sorted(resumed.glob("part-*.parquet")))
    pd.testing.assert_frame_equal(a, b)
    assert a.user_id.nunique() == len(users) and len(a) == 7 * len(users)
    for name in sorted(p.name for p in whole.glob("part-*.parquet")):
        assert (whole / name).read_bytes() == (resumed / name).read_bytes()


def test_unknown_users_take_the_popularity_path(setup, tmp_path: Path) -> None:
    retrieval, data = setup
    users_file = tmp_path / "users.txt"
    users_file.write_text("u0000001\nghost-1\n\nghost-2\nu0000001\n")
    users, unknown = read_users(str(users_file), data)
    assert list(users) == ["u0000001", "ghost-1", "ghost-2"] and unknown == ["ghost-1", "ghost-2"]
    manifest = score_users(retrieval, data, users, tmp_path / "out", k=5, progress=False)
    assert manifest["popularity_fallback_users_this_run"] == 2
    out = pd.read_parquet(tmp_path / "out")
    ghost = out[out.user_id == "ghost-1"].item_id.tolist()
    expected = retrieval.item_ids[np.lexsort((np.arange(len(retrieval.popularity)), -retrieval.popularity))[:5]]
    assert ghost == expected.tolist()
    assert out.user_id.nunique() == 3  # nobody dropped


def test_scann_index_is_close_to_exact_and_respects_exclusions() -> None:
    pytest.importorskip("scann", reason="the optional scann extra is not installed")
    from tfrec_xcat.scoring.index import Scann, compare

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 16))
    v = (centres[rng.integers(0, 40, 3000)] + 0.5 * rng.normal(size=(3000, 16))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = (centres[rng.integers(0, 40, 300)] + 0.5 * rng.normal(size=(300, 16))).astype(np.float32)
    index = Scann(v, 20)
    quality = compare(index, v, q, 20)
    assert quality["recall_at_k"] >= 0.9, quality
    exact, _ = _expected_top_k(q, v, 20, (np.zeros(0, int), np.zeros(0, int)))
    rows = np.repeat(np.arange(300), 5)
    cols = exact[:, :5].ravel()  # ban each user's five best items
    rows = np.concatenate([rows, np.full(2000, 7)])  # and user 7 most items: answered exactly
    cols = np.concatenate([cols, np.arange(2000)])
    got, scores = index.top_k(q, 20, (rows, cols))
    banned = set(zip(rows.tolist(), cols.tolist(), strict=True))
    assert not any((r, int(c)) in banned for r in range(300) for c in got[r])
    banned_7 = np.unique(cols[rows == 7])
    want_7, _ = _expected_top_k(q[7:8], v, 20, (np.zeros(len(banned_7), int), banned_7))
    np.testing.assert_array_equal(got[7], want_7[0])
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_score_with_scann_reports_its_recall(setup, tmp_path: Path) -> None:
    pytest.importorskip("scann", reason="the optional scann extra is not installed")
    retrieval, data = setup
    retrieval = dataclasses.replace(retrieval, recommend=None)  # ScaNN searches the two-tower: compare with it
    users = np.sort(data.interactions.user_id.unique())[:300]
    manifest = score_users(retrieval, data, users, tmp_path / "scann", k=10, progress=False, index="scann")
    assert manifest["index"] == "scann"
    assert manifest["index_quality"]["recall_at_k"] >= 0.9
    exact = score_users(retrieval, data, users, tmp_path / "exact", k=10, progress=False)
    got, want = pd.read_parquet(tmp_path / "scann"), pd.read_parquet(tmp_path / "exact")
    assert len(got) == len(want) == exact["rows"]
    assert set(got.user_id) == set(users)
    overlap = len(got.merge(want, on=["user_id", "item_id"])) / len(want)
    assert overlap >= 0.9


def test_non_ascii_user_ids_with_the_real_model(setup, tmp_path: Path) -> None:
    """Issue 15 item 12: numpy's astype(bytes) is ASCII only; ids go to the model as UTF-8."""
    retrieval, data = setup
    known = np.sort(data.interactions.user_id.unique())[:3]
    users = np.array([*known, "Zoë", "用户"], dtype=object)
    manifest = score_users(retrieval, data, users, tmp_path, k=5, progress=False)
    frame = pd.read_parquet(tmp_path)
    assert manifest["rows"] == 25 and set(frame.user_id) == set(users)


@settings(max_examples=40, deadline=None)
@given(
    users=st.integers(1, 10),
    items=st.integers(1, 200),
    k=st.integers(1, 30),
    block=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    boosted=st.integers(0, 300),
)
def test_blocked_top_k_with_a_sparse_addition(users, items, k, block, seed, boosted) -> None:
    """A wide & deep model's memorisation term, added sparsely per block, gives the top-k of the dense sum."""
    rng = np.random.default_rng(seed)
    q = rng.integers(-2, 3, size=(users, 3)).astype(np.float32)
    v = rng.integers(-2, 3, size=(items, 3)).astype(np.float32)
    add = sp.csr_matrix(
        (
            rng.integers(1, 4, boosted).astype(np.float32),
            (rng.integers(0, users, boosted), rng.integers(0, items, boosted)),
        ),
        shape=(users, items),
    )
    rows, cols = rng.integers(0, users, 5), rng.integers(0, items, 5)
    got_cols, got_scores = top_k_blocked(q, v, k, (rows, cols), block_bytes=4 * items * block, add=add)
    dense = q @ v.T + add.toarray()
    expected, values = _expected_top_k(dense, np.eye(items, dtype=np.float32), k, (rows, cols))
    np.testing.assert_array_equal(got_scores, values.astype(np.float32))
    finite = np.isfinite(values)
    np.testing.assert_array_equal(got_cols[finite], expected[finite])


def test_scann_with_a_sparse_addition_keeps_every_boosted_item() -> None:
    """ScaNN finds dot-product neighbours; items the memorisation term boosts join them and are re-scored, so a
    strongly boosted item is never missed (and an excluded one never returned)."""
    pytest.importorskip("scann")
    from tfrec_xcat.scoring.index import Scann

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 8)).astype(np.float32)
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    boosted = rng.integers(0, 400, size=20)
    add = sp.csr_matrix((np.full(20, 1e3, np.float32), (np.arange(20), boosted)), shape=(20, 400))
    exclude = (np.array([0]), np.array([boosted[0]]))
    cols, scores = Scann(vectors, 10).top_k(queries, 10, exclude, add=add)
    assert boosted[0] not in cols[0]
    assert (cols[1:, 0] == boosted[1:]).all()
    exact = queries @ vectors.T + add.toarray()
    np.testing.assert_allclose(scores[1:, 0], exact[np.arange(1, 20), boosted[1:]], rtol=1e-5)


def test_cli_score_is_api_score(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tfrec-xcat score`` parses its flags and calls :func:`tfrec_xcat.api.score`, which does the work."""
    from tests.conftest import small_config_toml
    from tfrec_xcat import api, cli

    calls: list[dict] = []
    real = api.score

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "score", spy)
    config = tmp_path / "small.toml"
    config.write_text(small_config_toml())
    data = load_data(load_config(config))
    users = tmp_path / "users.txt"
    users.write_text("\n".join([*np.sort(data.interactions.user_id.unique())[:20], "ghost"]) + "\n")
    model = str(exported / "xcat_retrieval")
    args = ["score", "--config", str(config), "--model", model, "--users", str(users), "--k", "5", "--quiet"]
    assert cli.main([*args, "--out", str(tmp_path / "out")]) == 0
    out, err = capsys.readouterr()
    assert len(calls) == 1 and calls[0]["k"] == 5 and calls[0]["users"] == str(users)
    assert "scored 21 users" in out and "1 user(s) not in the data" in err and "ghost" in err
    assert (tmp_path / "out" / "_SUCCESS").is_file()
