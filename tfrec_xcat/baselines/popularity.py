"""``popularity``: every user gets the target items ranked by training interactions."""

from __future__ import annotations

import numpy as np

from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.pipeline import PreparedSeed


class Popularity(MatrixBaseline):
    def fit(self, prepared: PreparedSeed) -> None:
        m = prepared.m
        self.counts = np.asarray(m.target.sum(axis=0)).ravel().astype(np.float64)

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(rows), 1))
