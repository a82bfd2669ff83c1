"""Evaluate a scorer on a segment of a split, in user chunks, and aggregate over users and seeds.

A scorer is any callable ``rows -> scores`` (user rows of :class:`SplitMatrices` → dense users × all target
items). Items the user has in training are excluded from the ranking. Cold-start test users are also broken
down by the length of their source history. :func:`evaluate_new_items` ranks for the new-item segments twice: over
all target items, and among the new items only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from tfrec_xcat.evaluation.metrics import metric_names, rank_metrics
from tfrec_xcat.features.matrices import SplitMatrices

Scorer = Callable[[np.ndarray], np.ndarray]

HISTORY_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("1-2", 1, 2),
    ("3-5", 3, 5),
    ("6-10", 6, 10),
    (">10", 11, float("inf")),
)


#: The two rankings of a new-item segment: over ALL target items, and among the new items only.
NEW_ITEM_VIEWS = ("full", "among_new")


def segment_rows(m: SplitMatrices, segment: str) -> np.ndarray:
    """The users of ``segment`` that have ground truth there: the ones every metric of the segment averages over."""
    rows = m.segment_users[segment]
    return rows[np.asarray(m.truth[segment][rows].getnnz(axis=1)) > 0]


def _per_user(
    scorer: Scorer, m: SplitMatrices, segment: str, views: dict[str, np.ndarray | None], chunk: int
) -> dict[str, pd.DataFrame]:
    """Per-user metrics of ``scorer`` on ``segment`` for each view (target columns to rank; None = all), scoring
    each block of users once."""
    rows = segment_rows(m, segment)
    truth = m.truth[segment]
    parts: dict[str, list[pd.DataFrame]] = {view: [] for view in views}
    for start in range(0, len(rows), chunk):
        block = rows[start : start + chunk]
        scores = scorer(block)
        if scores.shape != (len(block), len(m.target_items)):
            raise ValueError(f"scorer returned shape {scores.shape}, expected {(len(block), len(m.target_items))}")
        exclude, relevant = m.target[block], truth[block]
        for view, cols in views.items():
            if cols is None:
                metrics = rank_metrics(scores, exclude, relevant)
            else:
                metrics = rank_metrics(scores[:, cols], exclude[:, cols], relevant[:, cols])
            parts[view].append(pd.DataFrame(metrics))
    out = {}
    for view, frames in parts.items():
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=metric_names())
        frame.insert(0, "user_row", rows[: len(frame)])
        frame.insert(1, "source_history", m.source_history_length(rows) if len(rows) else [])
        out[view] = frame
    return out


def evaluate_segment(scorer: Scorer, m: SplitMatrices, segment: str, chunk: int = 1024) -> pd.DataFrame:
    """Per-user metrics of ``scorer`` on ``segment`` (one row per user with ground truth)."""
    return _per_user(scorer, m, segment, {"full": None}, chunk)["full"]


def evaluate_new_items(scorer: Scorer, m: SplitMatrices, segment: str, chunk: int = 1024) -> dict[str, pd.DataFrame]:
    """Per-user metrics on a new-item segment (``new_items``, ``new_items_val``) in both :data:`NEW_ITEM_VIEWS`:
    ``full`` ranks ALL target items (can the model surface a new item at all?), ``among_new`` only the new ones."""
    if not len(m.new_item_cols):
        raise ValueError("the split has no new items (set [split] new_item_fraction > 0)")
    return _per_user(scorer, m, segment, {"full": None, "among_new": m.new_item_cols}, chunk)


def cold_start_validator(m: SplitMatrices, metric: str = "ndcg@10") -> Callable[[Scorer], float]:
    """``metric`` on cold-start VALIDATION users for a scorer: what model selection and early stopping use."""

    def validate(scorer: Scorer) -> float:
        return summarize(evaluate_segment(scorer, m, "cold_start_val"))[metric]

    return validate


def summarize(per_user: pd.DataFrame) -> dict[str, float]:
    """Mean of each metric over users, plus the number of users."""
    out = {name: float(per_user[name].mean()) if len(per_user) else 0.0 for name in metric_names()}
    out["users"] = len(per_user)
    return out


def by_history(per_user: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Metric means per source-history-length bucket."""
    out = {}
    for label, low, high in HISTORY_BUCKETS:
        part = per_user[(per_user["source_history"] >= low) & (per_user["source_history"] <= high)]
        out[label] = summarize(part)
    return out


def over_seeds(results: list[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation over seeds of each metric: ``name`` and ``name_std``."""
    out: dict[str, float] = {}
    for name in results[0]:
        values = np.array([r[name] for r in results], dtype=float)
        out[name] = float(values.mean())
        if name != "users":
            out[f"{name}_std"] = float(values.std())
    return out


def rating_errors(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray], m: SplitMatrices, heldout: pd.DataFrame
) -> dict[str, float]:
    """MAE and RMSE of predicted ratings on a segment's held-out (user, target item, rating) triples."""
    rows = m.users.get_indexer(heldout["user_id"])
    cols = m.target_items.get_indexer(heldout["item_id"])
    keep = (rows >= 0) & (cols >= 0)
    if not keep.any():
        return {}
    error = predict(rows[keep], cols[keep]) - heldout["rating"].to_numpy()[keep]
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}
