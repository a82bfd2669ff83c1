"""Top-k item search over the target item vectors: exact (``brute``) or approximate (``scann``, optional extra).

``brute`` is the default and what the exported TF Serving model does: scores for a block of users at a time,
selected by threshold pruning, never the whole users × items matrix. ``scann`` builds a ScaNN index over the
item vectors for in-process batch scoring (TF Serving has no ScaNN op); ``compare`` measures its recall@k
against brute force and its speed-up on a sample of real queries, so its approximation is never silent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.errors import XcatError

log = logging.getLogger(__name__)

INDEXES = ("brute", "scann")


class Index(Protocol):
    name: str

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        exclude: tuple[np.ndarray, np.ndarray],
        add: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(cols, scores) of each query's best ``k`` items by ``queries @ vectors.T + add``, best first, excluding
        (rows, cols) of ``exclude``."""
        ...


def top_k_blocked(
    queries: np.ndarray,
    vectors: np.ndarray,
    k: int,
    exclude: tuple[np.ndarray, np.ndarray],
    block_bytes: int = 8 << 20,
    add: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of ``queries @ vectors.T`` per row, computed one block of rows at a time.

    A block's scores (at most ``block_bytes``) are the only score matrix that exists. Selection is threshold
    pruning: each row's threshold is a k-th-from-top score on a strided column sample, set so that about 2k
    columns clear it; only those are sorted. A row where fewer than k (or very many, e.g. most items excluded)
    clear it is sorted whole, so the result is always exact. ``exclude`` is (rows, cols) of scores to drop; ties
    go to the lower column. ``add`` (rows × columns, sparse) is added to the scores before selection (a wide &
    deep model's memorisation term). Returns (cols, scores), best first, with -inf scores where fewer than k items
    remain.
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
        if add is not None:
            extra = add[start:stop].tocoo()
            np.add.at(scores, (extra.row, extra.col), extra.data)  # duplicates add up, as in a sparse sum
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


def exclusions_of(exclude: tuple[np.ndarray, np.ndarray], rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, cols) of ``exclude`` that fall in ``rows`` (sorted, of ``n``), renumbered 0.. along ``rows``."""
    ex_rows, ex_cols = (np.asarray(a, dtype=np.int64) for a in exclude)
    inside = np.isin(ex_rows, rows)
    remap = np.full(n, -1, dtype=np.int64)
    remap[rows] = np.arange(len(rows))
    return remap[ex_rows[inside]], ex_cols[inside]


@dataclass
class BruteForce:
    """Exact top-k: ``top_k_blocked`` over all items."""

    vectors: np.ndarray
    name: str = "brute"

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        exclude: tuple[np.ndarray, np.ndarray],
        add: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return top_k_blocked(queries, self.vectors, k, exclude, add=add)


class Scann:
    """Approximate top-k with a ScaNN tree + asymmetric-hashing index, re-scored exactly before the final cut.

    ScaNN cannot exclude per-user items, so each query asks for k plus its number of excluded items and the
    excluded ones are dropped afterwards; a query with very many exclusions is answered by brute force.
    """

    name = "scann"

    def __init__(self, vectors: np.ndarray, k: int, *, leaves: int | None = None, search_fraction: float = 0.1):
        try:
            import scann
        except ImportError as exc:
            raise XcatError(
                "--index scann needs the optional ScaNN extra: pip install 'tfrec-xcat[scann]' (scann==1.4.2)"
            ) from exc
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        total = len(self.vectors)
        self.leaves = leaves or max(1, int(np.sqrt(total)))
        self.leaves_to_search = max(1, int(np.ceil(search_fraction * self.leaves)))
        self.reorder = max(4 * k, 256)
        builder = scann.scann_ops_pybind.builder(self.vectors, k, "dot_product")
        if total >= 1000:  # a tree only pays off beyond a few thousand items
            # k-means++ from ScaNN's fixed clustering seed: the same index on every build (random initialisation
            # gave recall@20 0.90-0.95 from one build to the next on the same vectors; k-means++ 0.968 every time)
            builder = builder.tree(self.leaves, self.leaves_to_search, training_sample_size=total, random_init=False)
        dims_per_block = 2 if self.vectors.shape[1] % 2 == 0 else 1
        builder = builder.score_ah(dims_per_block, anisotropic_quantization_threshold=0.2).reorder(self.reorder)
        started = time.perf_counter()
        self.searcher = builder.build()
        self.build_seconds = time.perf_counter() - started
        self.exact = BruteForce(self.vectors)

    def top_k(
        self,
        queries: np.ndarray,
        k: int,
        exclude: tuple[np.ndarray, np.ndarray],
        add: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if add is not None:
            return self.top_k_with_additions(queries, k, exclude, add)
        n, total = len(queries), len(self.vectors)
        k = min(k, total)
        ex_rows, ex_cols = (np.asarray(a, dtype=np.int64) for a in exclude)
        per_row = np.bincount(ex_rows, minlength=n) if n else np.zeros(0, np.int64)
        cols_out = np.zeros((n, k), dtype=np.int64)
        scores_out = np.full((n, k), -np.inf, dtype=np.float32)
        heavy = per_row > 4 * k
        extra = int(per_row[~heavy].max()) if (~heavy).any() else 0
        ask = min(total, k + extra)
        light = np.flatnonzero(~heavy)
        exact_rows = list(np.flatnonzero(heavy))
        if len(light):
            found, found_scores = self.searcher.search_batched_parallel(
                np.ascontiguousarray(queries[light], dtype=np.float32),
                final_num_neighbors=ask,
                pre_reorder_num_neighbors=max(self.reorder, ask),
            )
            found = np.asarray(found, dtype=np.int64).reshape(len(light), -1)
            found_scores = np.asarray(found_scores, dtype=np.float32).reshape(len(light), -1)
            banned = np.isin(light[:, None] * total + found, ex_rows * total + ex_cols)
            allowed = ~banned & (found >= 0)
            enough = allowed.sum(axis=1) >= k
            exact_rows.extend(light[~enough].tolist())
            # the first k allowed hits of each row that has enough, in ScaNN's order (best first)
            rank = np.cumsum(allowed, axis=1)
            pick = allowed & (rank <= k) & enough[:, None]
            rows_ok = light[enough]
            cols_out[rows_ok] = found[pick].reshape(-1, k)
            scores_out[rows_ok] = found_scores[pick].reshape(-1, k)
        if exact_rows:
            rows = np.asarray(sorted(exact_rows))
            sub = exclusions_of((ex_rows, ex_cols), rows, n)
            cols_out[rows], scores_out[rows] = self.exact.top_k(queries[rows], k, sub)
        return cols_out, scores_out

    def top_k_with_additions(
        self, queries: np.ndarray, k: int, exclude: tuple[np.ndarray, np.ndarray], add: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of ``queries @ vectors.T + add``: ScaNN's top-k by the dot product, joined with every column that
        ``add`` touches, all re-scored exactly. A column outside both has nothing added and a dot product below
        ScaNN's k-th, so the answer is as good as ScaNN's own."""
        n, total = len(queries), len(self.vectors)
        k = min(k, total)
        found, _ = self.top_k(queries, k, exclude)
        add = add.tocsr()
        ex_rows, ex_cols = (np.asarray(a, dtype=np.int64) for a in exclude)
        cols_out = np.zeros((n, k), dtype=np.int64)
        scores_out = np.full((n, k), -np.inf, dtype=np.float32)
        for row in range(n):
            extra = add.indices[add.indptr[row] : add.indptr[row + 1]]
            cols = np.union1d(found[row], extra)
            cols = cols[~np.isin(cols, ex_cols[ex_rows == row])]
            scores = self.vectors[cols] @ queries[row] + np.asarray(add[row, cols].todense()).ravel()
            best = np.lexsort((cols, -scores))[:k]
            cols_out[row, : len(best)], scores_out[row, : len(best)] = cols[best], scores[best]
        return cols_out, scores_out


def build_index(kind: str, vectors: np.ndarray, k: int) -> Index:
    """The ``--index`` of ``tfrec-xcat score``."""
    if kind == "brute":
        return BruteForce(vectors)
    if kind == "scann":
        return Scann(vectors, k)
    raise XcatError(f"--index must be one of {', '.join(INDEXES)}, got {kind!r}")


def compare(index: Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> dict[str, float]:
    """Recall@k of ``index`` against exact search on ``queries``, and its speed-up (wall time, same queries)."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    exact = BruteForce(vectors)
    started = time.perf_counter()
    truth, _ = exact.top_k(queries, k, empty)
    exact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found, _ = index.top_k(queries, k, empty)
    index_seconds = time.perf_counter() - started
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(truth, found, strict=True))
    recall = hits / max(1, truth.size)
    return {
        "sample_users": len(queries),
        "recall_at_k": recall,
        "exact_seconds": exact_seconds,
        "index_seconds": index_seconds,
        "speedup": exact_seconds / max(index_seconds, 1e-9),
    }
