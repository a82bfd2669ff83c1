"""``tfrec-xcat score``: offline top-k for many users from the exported ``xcat_retrieval`` SavedModel.

Scores come from the SavedModel's ``query`` and ``candidates`` signatures, so offline and online agree. Users
are encoded in large batches; their top-k over all target items is found a block of users at a time with
threshold pruning (``top_k_blocked``), so the full users × items score matrix never exists. Items a user
already has are excluded.
A user the model cannot place (unknown id, no known history) gets the target popularity list, as online.

Output: ``part-NNNNN.parquet`` shards (``user_id, rank, item_id, score``), each written whole then renamed into
place, and ``_SUCCESS`` (a JSON manifest with counts) at the end. Killed at any point, the same command finishes
the missing shards; the result is identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.errors import XcatError

log = logging.getLogger(__name__)

MAX_HISTORY = 100


@dataclass
class Retrieval:
    """The exported model's pieces batch scoring needs."""

    path: Path
    version: int
    query: Any  # signature: user_id [B], history [B, T] → query [B, d], usable [B]
    item_ids: np.ndarray  # [n] str
    vectors: np.ndarray  # [n, d] float32
    popularity: np.ndarray  # [n] float32
    column: dict[str, int] = field(default_factory=dict)  # item id → position in item_ids / vectors
    loaded: Any = None  # the SavedModel object, which keeps the signatures' resources alive


def load_retrieval(model_dir: str | Path, version: int | None = None) -> Retrieval:
    import tensorflow as tf

    from tfrec_xcat.export.writer import versions

    model_dir = Path(model_dir)
    found = versions(model_dir)
    if not found:
        raise XcatError(f"{model_dir}: no exported versions (run tfrec-xcat export first)")
    if version is None:
        version = found[-1]
    elif version not in found:
        raise XcatError(f"{model_dir}: no version {version} (found {', '.join(map(str, found))})")
    loaded = tf.saved_model.load(str(model_dir / str(version)))
    if "query" not in loaded.signatures or "candidates" not in loaded.signatures:
        raise XcatError(f"{model_dir}/{version}: not an xcat_retrieval model (no query/candidates signatures)")
    candidates = loaded.signatures["candidates"]()
    item_ids = candidates["item_ids"].numpy().astype(str)
    return Retrieval(
        path=model_dir / str(version),
        version=version,
        query=loaded.signatures["query"],
        item_ids=item_ids,
        vectors=candidates["vectors"].numpy().astype(np.float32),
        popularity=candidates["popularity"].numpy().astype(np.float32),
        column={item: i for i, item in enumerate(item_ids)},
        loaded=loaded,
    )


def top_k_blocked(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    exclude: tuple[np.ndarray, np.ndarray],
    block_bytes: int = 8 << 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of ``queries @ vectors.T`` per row, computed one block of rows at a time.

    A block's scores (at most ``block_bytes``) are the only score matrix that exists. Selection is threshold
    pruning: each row's threshold is a k-th-from-top score on a strided column sample, set so that about 2k
    columns clear it; only those are sorted. A row where fewer than k (or very many, e.g. most items excluded)
    clear it is sorted whole, so the result is always exact. ``exclude`` is (rows, cols) of scores to drop; ties
    go to the lower column. Returns (cols, scores), best first, with -inf scores where fewer than k items remain.
    """
    n, total = len(queries), len(vectors)
    k = min(k, total)
    cols_out = np.zeros((n, k), dtype=np.int64)
    scores_out = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or k == 0:
        return cols_out, scores_out
    ex_rows, ex_cols = (np.asarray(a, dtype=np.int64) for a in exclude)
    order = np.argsort(ex_rows, kind="stable")
    ex_rows, ex_cols = ex_rows[order], ex_cols[order]
    block = int(max(1, min(n, block_bytes // (4 * total))))
    stride = max(1, total // max(4 * k, 2048))
    sample = np.arange(0, total, stride)
    rank = min(len(sample), max(1, int(np.ceil(2 * k * len(sample) / total))))
    vt = np.ascontiguousarray(vectors.T)
    for start in range(0, n, block):
        stop = min(start + block, n)
        scores = queries[start:stop] @ vt
        lo, hi = np.searchsorted(ex_rows, [start, stop])
        scores[ex_rows[lo:hi] - start, ex_cols[lo:hi]] = -np.inf
        threshold = np.partition(scores[:, sample], len(sample) - rank, axis=1)[:, len(sample) - rank]
        passed = np.flatnonzero(scores >= threshold[:, None])  # row-major: rows ascending, columns ascending
        rows, cols = np.divmod(passed, total)
        counts = np.bincount(rows, minlength=stop - start)
        usual = (counts >= k) & (counts <= 16 * k)
        if usual.any():
            # the usual rows' candidates, left-aligned in a small padded matrix; a stable sort keeps the lower
            # column first among equal scores, and the -inf padding after every real candidate
            where = np.flatnonzero(usual)
            index = np.full(stop - start, -1)
            index[where] = np.arange(len(where))
            slot = np.arange(len(passed)) - np.repeat(np.cumsum(counts) - counts, counts)
            keep = usual[rows]
            width = int(counts[usual].max())
            cand_scores = np.full((len(where), width), -np.inf, dtype=np.float32)
            cand_cols = np.zeros((len(where), width), dtype=np.int64)
            cand_scores[index[rows[keep]], slot[keep]] = scores.ravel()[passed[keep]]
            cand_cols[index[rows[keep]], slot[keep]] = cols[keep]
            best = np.argsort(-cand_scores, axis=1, kind="stable")[:, :k]
            cols_out[start + where] = np.take_along_axis(cand_cols, best, 1)
            scores_out[start + where] = np.take_along_axis(cand_scores, best, 1)
        for row in np.flatnonzero(~usual):  # too few (or too many) above the sampled threshold: exact, whole row
            best_row = np.argsort(-scores[row], kind="stable")[:k]
            cols_out[start + row], scores_out[start + row] = best_row, scores[row, best_row]
    return cols_out, scores_out


def item_lists(data: ShopData) -> pd.Series:
    """Every user's items, all categories, oldest first (user id → list); built once per scoring run."""
    inter = data.interactions.sort_values(["user_id", "position"], kind="stable")
    return inter.groupby("user_id", sort=False)["item_id"].agg(list)


def histories(lists: pd.Series, users: np.ndarray) -> tuple[list[list[str]], list[np.ndarray]]:
    """Per user: the recent items the model reads (at most ``MAX_HISTORY``) and every item they have (for
    exclusion), from :func:`item_lists`. Unknown users get empty lists."""
    items = [lists.get(u, []) for u in users]
    return [h[-MAX_HISTORY:] for h in items], [np.asarray(h, dtype=object) for h in items]


def plan_key(users: np.ndarray, k: int, block: int, retrieval: Retrieval) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(users).encode())
    digest.update(f"|{k}|{block}|{retrieval.path.resolve()}".encode())
    return digest.hexdigest()[:16]


def score_users(
    retrieval: Retrieval,
    data: ShopData,
    users: np.ndarray,
    out: str | Path,
    *,
    k: int = 100,
    block: int = 4096,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``users`` into ``out`` (resumable); returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = plan_key(users, k, block, retrieval)
    plan = out / "_PLAN.json"
    if plan.is_file() and json.loads(plan.read_text())["key"] != key:
        raise XcatError(f"{out} holds scores of other users, k or model; use another --out or empty it")
    plan.write_text(json.dumps({"key": key, "users": len(users), "k": k, "block": block}))
    shards = (len(users) + block - 1) // block
    started = time.perf_counter()
    bar = tqdm(total=len(users), unit="user", disable=not progress, desc="scoring")
    fallback = 0
    lists = item_lists(data)
    for shard in range(shards):
        path = out / f"part-{shard:05d}.parquet"
        chunk = users[shard * block : (shard + 1) * block]
        if path.is_file():  # finished before an interruption
            bar.update(len(chunk))
            continue
        hist, owned = histories(lists, chunk)
        table, fell_back = score_block(retrieval, chunk, hist, owned, k)
        fallback += fell_back
        write_shard(table, out, shard)
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - started
    manifest = {
        "users": len(users),
        "k": k,
        "rows": sum(pq.ParquetFile(out / f"part-{s:05d}.parquet").metadata.num_rows for s in range(shards)),
        "shards": shards,
        "popularity_fallback_users_this_run": fallback,
        "model": str(retrieval.path),
        "seconds_this_run": seconds,
    }
    (out / "_SUCCESS").write_text(json.dumps(manifest, indent=2))
    return manifest


def score_block(
    retrieval: Retrieval, users: np.ndarray, hist: list[list[str]], owned: list[np.ndarray], k: int
) -> tuple[pa.Table, int]:
    """Top-``k`` rows of one block of users; returns the table and how many took the popularity path."""
    column = retrieval.column
    width = max(1, max(len(h) for h in hist))
    padded = np.array([h + [""] * (width - len(h)) for h in hist], dtype=object).astype(bytes)
    result = retrieval.query(user_id=np.asarray(users, dtype=object).astype(bytes), history=padded)
    queries = result["query"].numpy().astype(np.float32)
    usable = result["usable"].numpy()
    rows, cols = [], []
    for r, items in enumerate(owned):
        c = [column[i] for i in items if i in column]
        rows.extend([r] * len(c))
        cols.extend(c)
    exclude = (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
    top_cols, top_scores = top_k_blocked(queries, retrieval.vectors, k, exclude)
    if (~usable).any():  # the popularity path, as the online model takes it
        sub = np.flatnonzero(~usable)
        inside = np.isin(exclude[0], sub)
        remap = {r: i for i, r in enumerate(sub)}
        pop_exclude = (np.asarray([remap[r] for r in exclude[0][inside]], dtype=np.int64), exclude[1][inside])
        pop = np.tile(retrieval.popularity, (len(sub), 1))
        top_cols[sub], top_scores[sub] = _popularity_topk(pop, k, pop_exclude)
    kk = top_cols.shape[1]
    table = pa.table(
        {
            "user_id": pa.array(np.repeat(np.asarray(users, dtype=object), kk).astype(str)),
            "rank": pa.array(np.tile(np.arange(1, kk + 1, dtype=np.int32), len(users))),
            "item_id": pa.array(retrieval.item_ids[top_cols.ravel()]),
            "score": pa.array(top_scores.ravel().astype(np.float32)),
        }
    )
    return table, int((~usable).sum())


def write_shard(table: pa.Table, out: Path, shard: int) -> Path:
    """Write one shard whole, then rename it into place (a reader never sees half a shard)."""
    path = out / f"part-{shard:05d}.parquet"
    tmp = out / f".part-{shard:05d}.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def _popularity_topk(pop: np.ndarray, k: int, exclude: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    scores = pop.copy()
    scores[exclude[0], exclude[1]] = -np.inf
    k = min(k, scores.shape[1])
    order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores), axis=1)[:, :k]
    return order, np.take_along_axis(scores, order, 1)


def read_users(spec: str, data: ShopData) -> tuple[np.ndarray, list[str]]:
    """``all`` → every user in the data; else a file of one user id per line. Returns (users, unknown ones)."""
    known = np.sort(data.interactions["user_id"].unique())
    if spec == "all":
        return known, []
    path = Path(spec)
    if not path.is_file():
        raise XcatError(f"{path}: users file not found (or pass --users all)")
    users = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    users = list(dict.fromkeys(u for u in users if u))
    if not users:
        raise XcatError(f"{path}: no user ids in it")
    unknown = sorted(set(users) - set(known))
    return np.asarray(users, dtype=object), unknown
