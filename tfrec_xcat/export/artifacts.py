"""Loading a trained run's model (``RUN_DIR/model``) back: feature space, spec and weights of the two-tower, and
the retrieve → rank stage of ``transfer`` (:mod:`tfrec_xcat.training.shipped` says what is in the folder)."""

from __future__ import annotations

import json
from pathlib import Path

from tfrec_xcat.errors import XcatError
from tfrec_xcat.features.space import FeatureSpace, load_space
from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.models.xcat import XcatModel
from tfrec_xcat.training.shipped import RetrieveRank, load_retrieve_rank


def load_trained(run_dir: str | Path) -> tuple[XcatModel, FeatureSpace, ModelSpec]:
    """The trained model of ``tfrec-xcat train --out RUN_DIR``, ready to serve."""
    directory = Path(run_dir) / "model"
    needed = ["space.npz", "space.json", "spec.json", "weights.index"]
    missing = [n for n in needed if not (directory / n).is_file()]
    if missing:
        raise XcatError(f"{directory}: not a trained model (missing {', '.join(missing)}); run tfrec-xcat train first")
    space = load_space(directory)
    values = json.loads((directory / "spec.json").read_text())
    values.setdefault("towers", 1)  # written before tower ensembles: one pair of towers
    spec = ModelSpec(**values)
    model = XcatModel(space, spec)
    model.build_variables()
    model.load_weights(str(directory / "weights")).expect_partial()
    return model, space, spec


def load_stage(run_dir: str | Path) -> RetrieveRank | None:
    """The retrieve → rank stage of ``tfrec-xcat train --out RUN_DIR`` (None for a run with the two-tower only)."""
    return load_retrieve_rank(Path(run_dir) / "model")
