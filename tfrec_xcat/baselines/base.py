"""What a model in a run is: fitted on one seed's split (a :class:`FitContext`), it scores users against all
target items. ``grid`` lists the settings tried; the best on cold-start VALIDATION users wins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.split import ColdStartSplit
from tfrec_xcat.features.matrices import SplitMatrices


@dataclass
class FitContext:
    """Everything a model may learn from: the data, one seed's split and its matrices, and model settings."""

    data: ShopData
    split: ColdStartSplit
    m: SplitMatrices
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. the neural model / training config
    workdir: Path | None = None  # where a model may write checkpoints and logs
    validate: Callable[[Callable[[np.ndarray], np.ndarray]], float] | None = None  # scorer → cold-start val NDCG@10


class MatrixBaseline:
    """Base class of every model in a run."""

    grid: ClassVar[list[dict[str, Any]]] = [{}]

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.history: list[float] = []  # per-epoch validation NDCG@10, for neural models

    def fit(self, ctx: FitContext) -> None:
        raise NotImplementedError

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores, ``len(rows)`` users × all target items."""
        raise NotImplementedError
