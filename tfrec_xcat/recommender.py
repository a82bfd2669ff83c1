"""What a model in a run is, and every model a run can fit, by the name it has in metrics.json.

A :class:`Recommender` is fitted on one :class:`~tfrec_xcat.pipeline.PreparedSeed` and scores user rows against
all target items. ``grid`` lists the settings tried; the best on cold-start VALIDATION users wins. Matrix
baselines, the neural two-towers, EMCDR and the hybrid ``transfer`` all implement it.

:data:`MODELS` is the registry: name → (family, ``module:Class``). Classes are imported when a run asks for them,
so listing the names costs nothing and this module depends on no implementation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from tfrec_xcat.pipeline import PreparedSeed


class Recommender:
    """The one interface of every model: ``fit(prepared)``, then ``score(rows)``."""

    grid: ClassVar[list[dict[str, Any]]] = [{}]

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.history: list[float] = []  # per-epoch validation values, for models that train in epochs

    def fit(self, prepared: PreparedSeed) -> None:
        raise NotImplementedError

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores, ``len(rows)`` users × all target items (columns of ``prepared.m.target_items``)."""
        raise NotImplementedError


BASELINE, TRANSFER, ABLATION = "baseline", "transfer", "ablation"

#: Every model a run can fit: name → (family, implementation). Baselines are what transfer must beat.
MODELS: dict[str, tuple[str, str]] = {
    "popularity": (BASELINE, "tfrec_xcat.baselines.popularity:Popularity"),
    "cooccurrence": (BASELINE, "tfrec_xcat.baselines.cooccurrence:Cooccurrence"),
    "itemknn": (BASELINE, "tfrec_xcat.baselines.itemknn:ItemKnn"),
    "rp3beta": (BASELINE, "tfrec_xcat.baselines.rp3beta:Rp3Beta"),
    "ridge_map": (BASELINE, "tfrec_xcat.baselines.ridge_map:RidgeMap"),
    "content_knn": (BASELINE, "tfrec_xcat.baselines.content_knn:ContentKnn"),
    "target_only": (BASELINE, "tfrec_xcat.training.variants:TargetOnly"),
    "emcdr": (BASELINE, "tfrec_xcat.training.emcdr:Emcdr"),
    "transfer": (TRANSFER, "tfrec_xcat.training.hybrid:Transfer"),
    "transfer_deep": (ABLATION, "tfrec_xcat.training.variants:TransferDeep"),
    "transfer_wide_deep": (ABLATION, "tfrec_xcat.training.variants:TransferWideDeep"),
    "transfer_frozen": (ABLATION, "tfrec_xcat.training.variants:TransferFrozen"),
    "transfer_partial": (ABLATION, "tfrec_xcat.training.variants:TransferPartial"),
    "transfer_joint": (ABLATION, "tfrec_xcat.training.variants:TransferJoint"),
    "transfer_no_grl": (ABLATION, "tfrec_xcat.training.variants:TransferNoGrl"),
    "transfer_id_only": (ABLATION, "tfrec_xcat.training.variants:TransferIdOnly"),
}

BASELINES = tuple(name for name, (family, _) in MODELS.items() if family == BASELINE)


def model_class(name: str) -> type[Recommender]:
    """The implementation of a registered model."""
    module, _, attr = MODELS[name][1].partition(":")
    return getattr(importlib.import_module(module), attr)
