"""Non-neural baselines that every transfer model must beat, fitted on the same split (see ``REGISTRY``)."""

from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.baselines.cooccurrence import Cooccurrence
from tfrec_xcat.baselines.popularity import Popularity
from tfrec_xcat.baselines.ridge_map import RidgeMap

#: Every model that is not transfer: the matrix baselines above, and the neural ``target_only`` and ``emcdr``.
BASELINES = ("popularity", "cooccurrence", "ridge_map", "target_only", "emcdr")

REGISTRY: dict[str, type[MatrixBaseline]] = {
    "popularity": Popularity,
    "cooccurrence": Cooccurrence,
    "ridge_map": RidgeMap,
}

__all__ = ["BASELINES", "REGISTRY", "Cooccurrence", "MatrixBaseline", "Popularity", "RidgeMap"]
