"""What a matrix baseline is: fit on a split's training matrices, score users against all target items."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tfrec_xcat.features.matrices import SplitMatrices


class MatrixBaseline:
    """Base class. ``grid`` lists the hyperparameter settings tried; the best on cold-start VALIDATION wins."""

    grid: ClassVar[list[dict[str, Any]]] = [{}]

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, m: SplitMatrices) -> None:
        raise NotImplementedError

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores, ``len(rows)`` users × all target items."""
        raise NotImplementedError
