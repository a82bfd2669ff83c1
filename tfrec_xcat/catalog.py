"""Every model a run can fit, by the name it has in metrics.json."""

from __future__ import annotations

from tfrec_xcat.baselines import REGISTRY as MATRIX_BASELINES
from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.training.emcdr import Emcdr
from tfrec_xcat.training.variants import VARIANTS

MODELS: dict[str, type[MatrixBaseline]] = {**MATRIX_BASELINES, "emcdr": Emcdr, **VARIANTS}
