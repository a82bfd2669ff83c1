"""``popularity``: every user gets the target items ranked by training interactions."""

from __future__ import annotations

import numpy as np

from tfrec_xcat.baselines.base import FitContext, MatrixBaseline


class Popularity(MatrixBaseline):
    def fit(self, ctx: FitContext) -> None:
        m = ctx.m
        self.counts = np.asarray(m.target.sum(axis=0)).ravel().astype(np.float64)

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.counts, (len(rows), 1))
