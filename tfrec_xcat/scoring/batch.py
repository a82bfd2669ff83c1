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
from tfrec_xcat.scoring.index import Index, build_index, compare, exclusions_of

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


def item_lists(data: ShopData) -> pd.Series:
    """Every user's items, all categories, oldest first (user id → list); built once per scoring run."""
    inter = data.interactions.sort_values(["user_id", "position"], kind="stable")
    return inter.groupby("user_id", sort=False)["item_id"].agg(list)


def histories(lists: pd.Series, users: np.ndarray) -> tuple[list[list[str]], list[np.ndarray]]:
    """Per user: the recent items the model reads (at most ``MAX_HISTORY``) and every item they have (for
    exclusion), from :func:`item_lists`. Unknown users get empty lists."""
    items = [lists.get(u, []) for u in users]
    return [h[-MAX_HISTORY:] for h in items], [np.asarray(h, dtype=object) for h in items]


def plan_key(users: np.ndarray, k: int, block: int, retrieval: Retrieval, index: str = "brute") -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(users).encode())
    digest.update(f"|{k}|{block}|{retrieval.path.resolve()}|{retrieval.version}".encode())
    if index != "brute":
        digest.update(f"|{index}".encode())
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
    index: str = "brute",
) -> dict[str, Any]:
    """Score ``users`` into ``out`` (resumable); returns the manifest.

    ``index`` is ``brute`` (exact) or ``scann`` (approximate; its recall@k against exact search and its
    speed-up, measured on up to 1,000 of the first block's users, go into the manifest).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = plan_key(users, k, block, retrieval, index)
    plan = out / "_PLAN.json"
    if plan.is_file() and json.loads(plan.read_text())["key"] != key:
        raise XcatError(f"{out} holds scores of other users, k or model; use another --out or empty it")
    plan.write_text(json.dumps({"key": key, "users": len(users), "k": k, "block": block, "index": index}))
    searcher = build_index(index, retrieval.vectors, k)
    quality: dict[str, float] = {}
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
        table, fell_back, queries = score_block(retrieval, chunk, hist, owned, k, searcher)
        fallback += fell_back
        if index != "brute" and not quality and len(queries):
            quality = compare(searcher, retrieval.vectors, queries[:1000], k)
            log.warning(
                "%s: recall@%d %.3f against exact search on %d users, %.1fx its speed",
                index,
                k,
                quality["recall_at_k"],
                quality["sample_users"],
                quality["speedup"],
            )
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
        "index": index,
        "seconds_this_run": seconds,
    }
    if quality:
        manifest["index_quality"] = quality
    (out / "_SUCCESS").write_text(json.dumps(manifest, indent=2))
    return manifest


def score_block(
    retrieval: Retrieval,
    users: np.ndarray,
    hist: list[list[str]],
    owned: list[np.ndarray],
    k: int,
    index: Index | None = None,
) -> tuple[pa.Table, int, np.ndarray]:
    """Top-``k`` rows of one block of users (exact search unless ``index`` says otherwise); returns the table,
    how many took the popularity path, and the query vectors of the others."""
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
    index = index or build_index("brute", retrieval.vectors, k)
    top_cols, top_scores = index.top_k(queries, k, exclude)
    if (~usable).any():  # the popularity path, as the online model takes it
        sub = np.flatnonzero(~usable)
        pop_exclude = exclusions_of(exclude, sub, len(users))
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
    return table, int((~usable).sum()), queries[usable]


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
