"""What ``tfrec-xcat train`` keeps of the shipped ``transfer`` in ``RUN_DIR/model``, and reading it back for export.

The two-tower (the deep part, as :mod:`tfrec_xcat.export.artifacts` has always loaded it):

- ``weights.*``: the wide & deep two-tower's weights; ``spec.json``: the ``[model]`` settings it was trained with;
- ``space.npz``, ``space.json``, ``memorisation.npz``: its feature space. The two-tower trained without the
  pseudo cold-start users' target items, but it serves users with everything they have: the stored history table
  and the popularity are those of ALL training data.

The retrieve → rank stage (:class:`RetrieveRank`; absent in runs trained before it existed):

- ``transfer.json``: the final stage chosen on validation users (``deep``, ``wide``, ``fusion`` or ``ranker``), the
  ranker's candidates N per list, the fusion weight, the memorisation term's model and settings, the names of the
  ranking features (:data:`~tfrec_xcat.training.hybrid.FEATURES` as trained) and the ranker's hidden widths;
- ``wide.npz``: the memorisation matrix W (source items × target items, both in sorted-id order) fitted on all
  training users, as ``scipy.sparse.save_npz`` writes it;
- ``transfer.npz``: ``popularity`` (training interactions per target item) and, for the ranker stage, its weights
  ``ranker_0``, ``ranker_1``, ... in ``get_weights`` order (the Normalization layer's mean, variance and count, then
  the MLP's kernels and biases).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.errors import XcatError
from tfrec_xcat.features.space import save_space
from tfrec_xcat.pipeline import PreparedSeed

if TYPE_CHECKING:
    from tfrec_xcat.models.ranker import ListwiseRanker
    from tfrec_xcat.training.hybrid import Transfer

STAGE_FILE, WIDE_FILE, ARRAYS_FILE = "transfer.json", "wide.npz", "transfer.npz"


@dataclass
class RetrieveRank:
    """The shipped scorer after the two-tower: how ``Transfer.score`` turns deep and wide scores into a ranking."""

    stage: str  # deep | wide | fusion | ranker
    fusion_weight: float  # fusion's weight on the standardised wide scores (also orders items outside the lists)
    weights: sp.csr_matrix  # W: source items × target items
    popularity: np.ndarray  # (n_target,) training interactions per target item
    features: list[str]  # the ranking features the ranker was trained on, in order
    candidates: int = 0  # N per first-stage list (ranker stage)
    hidden: list[int] = field(default_factory=list)  # the ranker's hidden widths
    ranker_weights: list[np.ndarray] = field(default_factory=list)  # ranker stage only
    wide: dict[str, Any] = field(default_factory=dict)  # which memorisation term W is, and its settings

    def ranker(self) -> ListwiseRanker:
        """The trained ranking stage, rebuilt from its weights."""
        import tensorflow as tf

        from tfrec_xcat.models.ranker import ListwiseRanker

        if self.stage != "ranker" or not self.ranker_weights:
            raise XcatError(f"the shipped stage is {self.stage!r}: no ranker was saved")
        ranker = ListwiseRanker(self.hidden, n_features=len(self.features))
        ranker(tf.zeros([1, len(self.features)], tf.float32))  # builds the layers as adapt + fit did
        ranker.set_weights(self.ranker_weights)
        ranker.normalize.finalize_state()  # the layer's mean/variance tensors from the restored weights
        return ranker


def retrieve_rank_of(model: Transfer) -> RetrieveRank:
    """The retrieve → rank part of a fitted :class:`~tfrec_xcat.training.hybrid.Transfer`."""
    from tfrec_xcat.training.hybrid import FEATURES

    out = RetrieveRank(
        stage=model.stage,
        fusion_weight=float(model.signals.fusion_weight),
        weights=model.wide.weights.tocsr(),
        popularity=np.asarray(model.signals.popularity, np.float64),
        features=list(FEATURES),
        wide={k: v for k, v in model.choices["wide"].items() if k in ("model", "params")},
    )
    if model.stage == "ranker":
        n = int(model.stage_params["candidates"])
        ranker = model.rankers[n]
        out.candidates, out.hidden = n, [int(layer.units) for layer in ranker.scorer.layers[:-1]]
        out.ranker_weights = [np.asarray(w) for w in ranker.get_weights()]
    return out


def save_shipped(model: Transfer, prepared: PreparedSeed, directory: Path) -> None:
    """Write a fitted ``transfer`` (fitted on ``prepared``) into ``directory`` (see the module docstring)."""
    deep = model.deep
    full = prepared.feature_space(deep.model_spec)
    space = dataclasses.replace(deep.space, history=full.history, item_popularity=full.item_popularity)
    directory.mkdir(parents=True, exist_ok=True)
    deep.model.save_weights(str(directory / "weights"))
    save_space(space, directory)
    (directory / "spec.json").write_text(json.dumps(dataclasses.asdict(deep.model_spec)))
    save_retrieve_rank(retrieve_rank_of(model), directory)


def save_retrieve_rank(part: RetrieveRank, directory: Path) -> None:
    sp.save_npz(directory / WIDE_FILE, part.weights.tocsr(), compressed=True)
    arrays = {"popularity": part.popularity, **{f"ranker_{i}": w for i, w in enumerate(part.ranker_weights)}}
    np.savez_compressed(directory / ARRAYS_FILE, **arrays)
    meta = {
        "stage": part.stage,
        "candidates": part.candidates,
        "fusion_weight": part.fusion_weight,
        "features": part.features,
        "hidden": part.hidden,
        "ranker_weights": len(part.ranker_weights),
        "wide": part.wide,
    }
    (directory / STAGE_FILE).write_text(json.dumps(meta, indent=2, default=str))


def load_retrieve_rank(directory: Path) -> RetrieveRank | None:
    """The retrieve → rank part saved in ``directory``, or None for a run that has only the two-tower."""
    if not (directory / STAGE_FILE).is_file():
        return None
    missing = [n for n in (WIDE_FILE, ARRAYS_FILE) if not (directory / n).is_file()]
    if missing:
        raise XcatError(f"{directory}: {STAGE_FILE} without {', '.join(missing)}; run tfrec-xcat train again")
    meta = json.loads((directory / STAGE_FILE).read_text())
    arrays = np.load(directory / ARRAYS_FILE, allow_pickle=False)
    return RetrieveRank(
        stage=meta["stage"],
        fusion_weight=float(meta["fusion_weight"]),
        weights=sp.load_npz(directory / WIDE_FILE).tocsr(),
        popularity=arrays["popularity"].astype(np.float64),
        features=list(meta["features"]),
        candidates=int(meta["candidates"]),
        hidden=[int(w) for w in meta["hidden"]],
        ranker_weights=[arrays[f"ranker_{i}"] for i in range(int(meta["ranker_weights"]))],
        wide=dict(meta.get("wide", {})),
    )
