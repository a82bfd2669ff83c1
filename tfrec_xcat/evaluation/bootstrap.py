"""Paired bootstrap of a per-user metric difference between two models on the same users.

Both models are scored on the same test users; the per-user differences are resampled with replacement
``resamples`` times (seeded), and the interval is the percentile interval of the resampled mean differences.
"""

from __future__ import annotations

import numpy as np


def paired_bootstrap(
    ours: np.ndarray, theirs: np.ndarray, *, resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean difference ``ours - theirs``, relative lift (ours / theirs - 1) and its ``level`` interval.

    ``ours`` and ``theirs`` are per-user values of one metric, aligned user by user."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape or ours.ndim != 1:
        raise ValueError(f"paired values must be two 1-d arrays of one length, got {ours.shape} and {theirs.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = len(ours)
    if n == 0:
        return {"mean_diff": 0.0, "rel_lift": 0.0, "ci_low": 0.0, "ci_high": 0.0, "users": 0, "resamples": 0}
    diff = ours - theirs
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):  # blocks keep memory at 256 × n indices
        stop = min(start + 256, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0
    base = float(theirs.mean())
    return {
        "mean_diff": float(diff.mean()),
        "rel_lift": float(ours.mean() / base - 1.0) if base > 0 else float("inf"),
        "ci_low": float(np.quantile(means, tail)),
        "ci_high": float(np.quantile(means, 1.0 - tail)),
        "users": n,
        "resamples": resamples,
    }
