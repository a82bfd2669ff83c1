"""``tfrec-xcat score``: offline top-k for many users from the exported ``xcat_retrieval`` SavedModel.

When the model has the ``recommend`` signature (the shipped ``transfer``: retrieve → rank in the graph), users are
scored by it, a few hundred per call, so offline and online agree; it is exact (its own top-k over all target
items). Otherwise (or with ``--index scann``, which searches the two-tower's vectors) scores come from the
``query`` and ``candidates`` signatures, as ``serving_default`` computes them: users are encoded in large
batches; their top-k over all target items is found a block of users at a time with threshold pruning
(``top_k_blocked``), so the full users × items score matrix never exists. Items a user already has are excluded
(also those older than the ``MAX_HISTORY`` items sent to the model).
A user the model cannot place (unknown id, no known history) gets the target popularity list, as online.

Output: ``part-NNNNN.parquet`` shards (``user_id, rank, item_id, score``), each written whole then renamed into
place, and ``_SUCCESS`` (a JSON manifest with counts) at the end. Killed at any point, the same command finishes
the missing shards; the result is identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
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
import scipy.sparse as sp
from tqdm.auto import tqdm

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.errors import XcatError
from tfrec_xcat.export.loading import load_saved_model
from tfrec_xcat.scoring.index import Index, build_index, compare, exclusions_of

log = logging.getLogger(__name__)

MAX_HISTORY = 100


@dataclass
class Retrieval:
    """The exported model's pieces batch scoring needs."""

    path: str | Path  # a local folder, or a URL (gs://...) for Beam workers
    version: int
    query: Any  # signature: user_id [B], history [B, T] → query [B, d], usable [B]
    item_ids: np.ndarray  # [n] str
    vectors: np.ndarray  # [n, d] float32
    popularity: np.ndarray  # [n] float32
    column: dict[str, int] = field(default_factory=dict)  # item id → position in item_ids / vectors
    wide: bool = False  # a wide & deep model: vectors end with the item prior, queries get a 1 and a wide term
    loaded: Any = None  # the SavedModel object, which keeps the signatures' resources alive
    recommend: Any = None  # signature ``recommend`` (user_id, history, k → item_ids, scores, popularity_fallback)

    @property
    def signature(self) -> str:
        """What scores the users: ``recommend``, or ``query`` + ``candidates`` (the two-tower)."""
        return "recommend" if self.recommend is not None else "query+candidates"


def load_retrieval(model_dir: str | Path, version: int | None = None, *, recommend: bool = True) -> Retrieval:
    """The exported model's pieces (``recommend``: use its ``recommend`` signature when it has one)."""
    import tensorflow as tf

    from tfrec_xcat.export.writer import versions

    if is_url(model_dir):  # gs://..., read through TensorFlow's file systems (Beam workers)
        base = str(model_dir).rstrip("/")
        try:
            names = [n.rstrip("/") for n in tf.io.gfile.listdir(base)]
        except tf.errors.OpError as exc:
            raise XcatError(f"{base}: cannot list the model folder: {exc.message}") from None
        found = sorted(int(n) for n in names if n.isdigit())
    else:
        base = str(model_dir)
        found = versions(Path(model_dir))
    if not found:
        raise XcatError(f"{base}: no exported versions (run tfrec-xcat export first)")
    if version is None:
        version = found[-1]
    elif version not in found:
        raise XcatError(f"{base}: no version {version} (found {', '.join(map(str, found))})")
    where: str | Path = f"{base}/{version}" if is_url(base) else Path(base) / str(version)
    loaded = load_saved_model(str(where))
    if "query" not in loaded.signatures or "candidates" not in loaded.signatures:
        raise XcatError(f"{where}: not an xcat_retrieval model (no query/candidates signatures)")
    candidates = loaded.signatures["candidates"]()
    item_ids = decode(candidates["item_ids"].numpy())
    vectors = candidates["vectors"].numpy().astype(np.float32)
    wide = "prior" in candidates
    if wide:  # score = query · vector + prior + wide: the prior rides on an extra dimension
        vectors = np.concatenate([vectors, candidates["prior"].numpy().astype(np.float32)[:, None]], axis=1)
    return Retrieval(
        path=where,
        version=version,
        query=loaded.signatures["query"],
        item_ids=item_ids,
        vectors=vectors,
        wide=wide,
        popularity=candidates["popularity"].numpy().astype(np.float32),
        column={item: i for i, item in enumerate(item_ids)},
        loaded=loaded,
        recommend=loaded.signatures.get("recommend") if recommend else None,
    )


def encode(values: list[Any]) -> np.ndarray:
    """Strings (or nested lists of them) as a UTF-8 bytes array for a string tensor (numpy's ``astype(bytes)``
    is ASCII only and fails on any other id)."""
    return np.array(
        [
            [str(v).encode("utf-8") for v in row] if isinstance(row, list) else str(row).encode("utf-8")
            for row in values
        ],
        dtype=object,
    )


def decode(values: np.ndarray) -> np.ndarray:
    """A string tensor's bytes as a str array (UTF-8)."""
    return np.array(
        [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.ravel()], dtype=object
    ).reshape(values.shape)


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a file system by scheme (``gs://bucket/x``) rather than a local path."""
    return "://" in str(location)


def check_settings(k: int, block: int) -> None:
    """One clear line for a ``k`` or ``block`` that cannot work."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise XcatError(f"--k must be a positive number of items, got {k}")
    if isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise XcatError(f"--block must be a positive number of users per shard, got {block}")


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
    where = retrieval.path if is_url(retrieval.path) else Path(retrieval.path).resolve()
    digest.update(f"|{k}|{block}|{where}|{retrieval.version}".encode())
    if index != "brute":
        digest.update(f"|{index}".encode())
    if retrieval.recommend is not None:
        digest.update(b"|recommend")
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
    check_settings(k, block)
    out = Path(out)
    if index != "brute" and retrieval.recommend is not None:
        log.warning("--index %s searches the two-tower's vectors: the recommend signature is not used", index)
        retrieval = dataclasses.replace(retrieval, recommend=None)
    key = plan_key(users, k, block, retrieval, index)
    claim_output(out, key, {"users": len(users), "k": k, "block": block, "index": index})
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
        if finished(path, len(chunk)):  # finished before an interruption
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
        "signature": retrieval.signature,
        "index": index,
        "seconds_this_run": seconds,
    }
    if quality:
        manifest["index_quality"] = quality
    write_atomically(out / "_SUCCESS", json.dumps(manifest, indent=2).encode())
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
    how many took the popularity path, and the query vectors of the others (none with ``recommend``)."""
    column = retrieval.column
    width = max(1, max(len(h) for h in hist))
    padded = encode([h + [""] * (width - len(h)) for h in hist])
    ids = encode(list(users))
    if retrieval.recommend is not None and (index is None or index.name == "brute"):
        top_cols, top_scores, usable = recommend_block(retrieval, ids, padded, hist, owned, k)
        return _table(retrieval, users, top_cols, top_scores), int((~usable).sum()), np.zeros((0, 0), np.float32)
    add = None
    if retrieval.wide:  # the wide term is dense per call: a few hundred users at a time
        parts = [
            retrieval.query(user_id=ids[i : i + 256], history=padded[i : i + 256]) for i in range(0, len(ids), 256)
        ]
        queries = np.concatenate([p["query"].numpy() for p in parts]).astype(np.float32)
        queries = np.concatenate([queries, np.ones((len(queries), 1), np.float32)], axis=1)
        usable = np.concatenate([p["usable"].numpy() for p in parts])
        add = sp.vstack([sp.csr_matrix(p["wide"].numpy()) for p in parts]).tocsr()
    else:
        result = retrieval.query(user_id=ids, history=padded)
        queries = result["query"].numpy().astype(np.float32)
        usable = result["usable"].numpy()
    rows, cols = [], []
    for r, items in enumerate(owned):
        c = [column[i] for i in items if i in column]
        rows.extend([r] * len(c))
        cols.extend(c)
    exclude = (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
    index = index or build_index("brute", retrieval.vectors, k)
    top_cols, top_scores = index.top_k(queries, k, exclude, add=add)
    if (~usable).any():  # the popularity path, as the online model takes it
        sub = np.flatnonzero(~usable)
        pop_exclude = exclusions_of(exclude, sub, len(users))
        pop = np.tile(retrieval.popularity, (len(sub), 1))
        top_cols[sub], top_scores[sub] = _popularity_topk(pop, k, pop_exclude)
    return _table(retrieval, users, top_cols, top_scores), int((~usable).sum()), queries[usable]


def _table(retrieval: Retrieval, users: np.ndarray, top_cols: np.ndarray, top_scores: np.ndarray) -> pa.Table:
    kk = top_cols.shape[1]
    return pa.table(
        {
            "user_id": pa.array([str(u) for u in np.repeat(np.asarray(users, dtype=object), kk)], pa.string()),
            "rank": pa.array(np.tile(np.arange(1, kk + 1, dtype=np.int32), len(users))),
            "item_id": pa.array(list(retrieval.item_ids[top_cols.ravel()]), pa.string()),
            "score": pa.array(top_scores.ravel().astype(np.float32)),
        }
    )


def recommend_block(
    retrieval: Retrieval,
    ids: np.ndarray,
    padded: np.ndarray,
    hist: list[list[str]],
    owned: list[np.ndarray],
    k: int,
    calls: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cols, scores, usable) of a block from the ``recommend`` signature, ``calls`` users per call. The graph
    excludes the items of the history it is sent; a user's older items are excluded here, from a few more
    answers asked for (as many as the most such items in the call)."""
    column, n_items = retrieval.column, len(retrieval.item_ids)
    kk = min(k, n_items)
    cols_out = np.zeros((len(ids), kk), np.int64)
    scores_out = np.full((len(ids), kk), -np.inf, np.float32)
    usable = np.ones(len(ids), bool)
    for start in range(0, len(ids), calls):
        stop = min(start + calls, len(ids))
        older = [
            {column[i] for i in owned[r] if i in column} - {column[i] for i in hist[r] if i in column}
            for r in range(start, stop)
        ]
        ask = min(kk + max(map(len, older)), n_items)
        width = max(1, max(len(h) for h in hist[start:stop]))
        reply = retrieval.recommend(
            user_id=ids[start:stop], history=padded[start:stop, :width], k=np.full(stop - start, ask, np.int32)
        )
        got = np.asarray([[column[i] for i in row] for row in decode(reply["item_ids"].numpy())], np.int64)
        scores = reply["scores"].numpy().astype(np.float32)
        usable[start:stop] = ~reply["popularity_fallback"].numpy()
        for r, drop in enumerate(older):
            keep = ~np.isin(got[r], list(drop)) if drop else np.ones(len(got[r]), bool)
            order = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])[:kk]
            cols_out[start + r] = got[r][order]
            scores_out[start + r] = np.where(keep[order], scores[r][order], -np.inf)
    return cols_out, scores_out, usable


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes | pa.Table) -> Path:
    """Write ``path`` whole (bytes, or a table as Parquet) to a temporary file, fsync it, rename it into place
    and fsync the folder: after a crash the file is either absent or complete, never empty or half written."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            if isinstance(data, pa.Table):
                pq.write_table(data, handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise XcatError(f"{path}: cannot write: {exc.strerror or exc}") from None
    _fsync_dir(path.parent)
    return path


def write_shard(table: pa.Table, out: Path, shard: int) -> Path:
    """Write one shard whole, then rename it into place (a reader never sees half a shard)."""
    return write_atomically(out / f"part-{shard:05d}.parquet", table)


def finished(path: Path, users: int) -> bool:
    """Whether shard ``path`` was completed by an earlier run; an unreadable one (e.g. zero bytes, from a
    writer without fsync) is logged and scored again."""
    if not path.is_file():
        return False
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # pyarrow raises several types for a damaged file
        log.warning("%s: unreadable (%s); scoring this shard again", path, exc)
        return False
    if users and meta.num_rows == 0:
        log.warning("%s: no rows; scoring this shard again", path)
        return False
    return True


def claim_output(out: Path, key: str, settings: dict[str, Any]) -> None:
    """Create ``out`` and record the run's plan in ``out/_PLAN.json``.

    A plan of other users, k or model is refused only when shards of it exist: a run that failed before
    writing any shard (or a damaged plan beside no shards) does not block the corrected re-run.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise XcatError(f"--out {out}: exists and is not a folder") from None
    except OSError as exc:
        raise XcatError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise XcatError(f"--out {out}: exists and is not a folder")
    plan = out / "_PLAN.json"
    if plan.is_file():
        try:
            old = json.loads(plan.read_text(encoding="utf-8"))["key"]
        except (OSError, ValueError, KeyError, TypeError):
            old = None
        shards = any(out.glob("part-*.parquet"))
        if old != key and shards:
            why = "holds scores of other users, k or model" if old else "has shards but an unreadable _PLAN.json"
            raise XcatError(f"{out} {why}; use another --out or empty it")
        if old != key:
            log.warning("%s: replacing the plan of an earlier run that wrote no shard", plan)
    write_atomically(plan, json.dumps({"key": key, **settings}).encode())


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
    users = []
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            users.append(raw.decode("utf-8").strip().lstrip("\ufeff"))
        except UnicodeDecodeError:
            raise XcatError(f"{path}:{number}: not valid UTF-8: {raw[:40]!r}") from None
    users = list(dict.fromkeys(u for u in users if u))
    if not users:
        raise XcatError(f"{path}: no user ids in it")
    unknown = sorted(set(users) - set(known))
    return np.asarray(users, dtype=object), unknown
