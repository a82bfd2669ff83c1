"""What ``tfrec-xcat train`` keeps of the shipped ``transfer`` in ``RUN_DIR/model``, and reading it back for export.

The two-tower (the deep part, as :mod:`tfrec_xcat.export.artifacts` has always loaded it):

- ``weights.*``: the wide & deep two-tower's weights; ``spec.json``: the ``[model]`` settings it was trained with;
- ``space.npz``, ``space.json``, ``memorisation.npz``: its feature space. The two-tower trained without the
  pseudo cold-start users' target items, but it serves users with everything they have: the stored history table
  and the popularity are those of ALL training data.

The retrieve → rank stage (:class:`RetrieveRank`; absent in runs trained before it existed):

- ``transfer.json``: the final stage chosen on validation users (``deep``, ``wide``, ``fusion`` or ``ranker``), the
  ranker's candidates N per list, the fusion weight, the memorisation term's model and settings, the other
  memorisation families (in feature order), the names of the ranking features
  (:func:`~tfrec_xcat.training.hybrid.feature_names` as trained), the ranker's hidden widths and ensemble size;
- ``wide.npz``: the chosen memorisation matrix W (source items × target items, both in sorted-id order) fitted on
  all training users, ``wide_<family>.npz`` the W of each other family (at its best setting on validation), and
  ``counts.npz`` the raw source × target co-occurrence counts over the overlap training users, as
  ``scipy.sparse.save_npz`` writes them;
- ``transfer.npz``: ``popularity`` (training interactions per target item), ``tiebreak`` (the memorisation
  baseline's popularity tie-break) and, for the ranker stage, each ensemble member's weights ``member<m>_mean``,
  ``member<m>_variance`` (the feature normalisation), ``member<m>_kernel<l>`` and ``member<m>_bias<l>`` (the MLP:
  ReLU layers, then one linear output);
- the new-arrival slots' text profile (:class:`~tfrec_xcat.features.content.ContentIndex`; absent when the items
  have no text, or in runs trained before it): ``content.npz`` (``vocabulary``, ``idf``) and the term vectors of
  the source and the target items, ``content_source.npz`` / ``content_target.npz``; its settings in
  ``transfer.json``.
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
from tfrec_xcat.features.content import ContentIndex
from tfrec_xcat.features.space import save_space
from tfrec_xcat.models.ranking_spec import NEW_ITEM_WINDOW
from tfrec_xcat.pipeline import PreparedSeed

if TYPE_CHECKING:
    from tfrec_xcat.models.ranker import ListwiseRanker
    from tfrec_xcat.training.hybrid import Transfer

STAGE_FILE, WIDE_FILE, COUNTS_FILE, ARRAYS_FILE = "transfer.json", "wide.npz", "counts.npz", "transfer.npz"
CONTENT_FILE, CONTENT_SOURCE, CONTENT_TARGET = "content.npz", "content_source.npz", "content_target.npz"


def family_file(name: str) -> str:
    return f"wide_{name}.npz"


@dataclass
class RankerWeights:
    """One listwise ranker as plain arrays: ``(x - mean) / max(sqrt(variance), 1e-7)``, then ReLU layers of
    ``kernels[:-1]`` / ``biases[:-1]`` and a linear output (what :class:`~tfrec_xcat.models.ranker.ListwiseRanker`
    computes)."""

    mean: np.ndarray  # (F,) float32
    variance: np.ndarray  # (F,) float32
    kernels: list[np.ndarray]
    biases: list[np.ndarray]

    @classmethod
    def of(cls, ranker: ListwiseRanker) -> RankerWeights:
        layers = ranker.scorer.layers
        for i, layer in enumerate(layers):
            want = "linear" if i == len(layers) - 1 else "relu"
            if layer.activation.__name__ != want:
                raise XcatError(f"ranker layer {i} has activation {layer.activation.__name__}, expected {want}")
        return cls(
            mean=np.asarray(ranker.normalize.mean, np.float32).reshape(-1),
            variance=np.asarray(ranker.normalize.variance, np.float32).reshape(-1),
            kernels=[np.asarray(layer.kernel.numpy(), np.float32) for layer in layers],
            biases=[np.asarray(layer.bias.numpy(), np.float32) for layer in layers],
        )


@dataclass
class RetrieveRank:
    """The shipped scorer after the two-tower: how ``Transfer.score`` turns deep and wide scores into a ranking."""

    stage: str  # deep | wide | fusion | ranker
    fusion_weight: float  # fusion's weight on the standardised wide scores (also orders items outside the lists)
    weights: sp.csr_matrix  # W of the chosen memorisation term: source items × target items
    popularity: np.ndarray  # (n_target,) training interactions per target item
    tiebreak: np.ndarray  # (n_target,) the memorisation baseline's popularity tie-break (the wide stage adds it)
    features: list[str]  # the ranking features the ranker was trained on, in order
    others: dict[str, sp.csr_matrix] = field(default_factory=dict)  # the other families' W, in feature order
    counts: sp.csr_matrix | None = None  # raw co-occurrence counts, source × target (the cooc_max feature)
    candidates: int = 0  # N per first-stage list (ranker stage)
    hidden: list[int] = field(default_factory=list)  # the ranker's hidden widths
    members: list[RankerWeights] = field(default_factory=list)  # the ranker ensemble (ranker stage only)
    wide: dict[str, Any] = field(default_factory=dict)  # which memorisation term W is, and its settings
    new_item_slots: int = 0  # positions of the top new_item_window kept for new items (training.new_arrivals)
    new_item_window: int = NEW_ITEM_WINDOW
    new_item_order: str = "deep"  # what orders the slots' new items (runs saved before the text profile: deep)
    content: ContentIndex | None = None  # the slots' text profile


def retrieve_rank_of(model: Transfer) -> RetrieveRank:
    """The retrieve → rank part of a fitted :class:`~tfrec_xcat.training.hybrid.Transfer`."""
    signals = model.signals
    out = RetrieveRank(
        stage=model.stage,
        fusion_weight=float(signals.fusion_weight),
        weights=model.wide.weights.tocsr(),
        popularity=np.asarray(signals.popularity, np.float64),
        tiebreak=np.asarray(model.wide.tiebreak, np.float64).reshape(-1),
        features=list(signals.features),
        others={name: other.weights.tocsr() for name, other in signals.others.items()},
        counts=signals.counts.tocsr(),
        wide={k: v for k, v in model.choices["wide"].items() if k in ("model", "params")},
        new_item_slots=int(model.new_item_slots),
        new_item_window=int(model.new_item_window),
        new_item_order=str(model.new_item_order),
        content=model.content,
    )
    if model.stage == "ranker":
        n = int(model.stage_params["candidates"])
        members = model.rankers[n].members
        out.candidates, out.hidden = n, [int(layer.units) for layer in members[0].scorer.layers[:-1]]
        out.members = [RankerWeights.of(member) for member in members]
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
    for name, weights in part.others.items():
        sp.save_npz(directory / family_file(name), weights.tocsr(), compressed=True)
    if part.counts is not None:
        sp.save_npz(directory / COUNTS_FILE, part.counts.tocsr(), compressed=True)
    arrays: dict[str, np.ndarray] = {"popularity": part.popularity, "tiebreak": part.tiebreak}
    for m, member in enumerate(part.members):
        arrays[f"member{m}_mean"], arrays[f"member{m}_variance"] = member.mean, member.variance
        for layer, (kernel, bias) in enumerate(zip(member.kernels, member.biases, strict=True)):
            arrays[f"member{m}_kernel{layer}"], arrays[f"member{m}_bias{layer}"] = kernel, bias
    np.savez_compressed(directory / ARRAYS_FILE, **arrays)
    content = part.content
    if content is not None:
        np.savez_compressed(
            directory / CONTENT_FILE, vocabulary=np.asarray(content.vocabulary, dtype=str), idf=content.idf
        )
        sp.save_npz(directory / CONTENT_SOURCE, content.source_terms.tocsr(), compressed=True)
        sp.save_npz(directory / CONTENT_TARGET, content.target_terms.tocsr(), compressed=True)
    meta = {
        "stage": part.stage,
        "candidates": part.candidates,
        "fusion_weight": part.fusion_weight,
        "features": part.features,
        "others": list(part.others),
        "counts": part.counts is not None,
        "hidden": part.hidden,
        "members": len(part.members),
        "wide": part.wide,
        "new_item_slots": part.new_item_slots,
        "new_item_window": part.new_item_window,
        "new_item_order": part.new_item_order,
        "content": None
        if content is None
        else {
            "weighting": content.weighting,
            "sublinear_tf": content.sublinear_tf,
            "mean_length": content.mean_length,
            "profile": content.profile,
        },
    }
    (directory / STAGE_FILE).write_text(json.dumps(meta, indent=2, default=str))


def load_retrieve_rank(directory: Path) -> RetrieveRank | None:
    """The retrieve → rank part saved in ``directory``, or None for a run that has only the two-tower."""
    if not (directory / STAGE_FILE).is_file():
        return None
    meta = json.loads((directory / STAGE_FILE).read_text())
    if "members" not in meta or "others" not in meta:
        raise XcatError(
            f"{directory / STAGE_FILE}: written by an earlier tfrec-xcat (before the ranking stage had every "
            "memorisation family and an ensemble); run tfrec-xcat train again"
        )
    others = list(meta["others"])
    needed = [WIDE_FILE, ARRAYS_FILE, *map(family_file, others), *([COUNTS_FILE] if meta.get("counts") else [])]
    if meta.get("content"):
        needed += [CONTENT_FILE, CONTENT_SOURCE, CONTENT_TARGET]
    missing = [n for n in needed if not (directory / n).is_file()]
    if missing:
        raise XcatError(f"{directory}: {STAGE_FILE} without {', '.join(missing)}; run tfrec-xcat train again")
    arrays = np.load(directory / ARRAYS_FILE, allow_pickle=False)
    layers = len(meta["hidden"]) + 1
    members = [
        RankerWeights(
            mean=arrays[f"member{m}_mean"],
            variance=arrays[f"member{m}_variance"],
            kernels=[arrays[f"member{m}_kernel{i}"] for i in range(layers)],
            biases=[arrays[f"member{m}_bias{i}"] for i in range(layers)],
        )
        for m in range(int(meta["members"]))
    ]
    return RetrieveRank(
        stage=meta["stage"],
        fusion_weight=float(meta["fusion_weight"]),
        weights=sp.load_npz(directory / WIDE_FILE).tocsr(),
        popularity=arrays["popularity"].astype(np.float64),
        tiebreak=arrays["tiebreak"].astype(np.float64),
        features=list(meta["features"]),
        others={name: sp.load_npz(directory / family_file(name)).tocsr() for name in others},
        counts=sp.load_npz(directory / COUNTS_FILE).tocsr() if meta.get("counts") else None,
        candidates=int(meta["candidates"]),
        hidden=[int(w) for w in meta["hidden"]],
        members=members,
        wide=dict(meta.get("wide", {})),
        new_item_slots=int(meta.get("new_item_slots", 0)),  # runs saved before the slots have none
        new_item_window=int(meta.get("new_item_window", NEW_ITEM_WINDOW)),
        new_item_order=str(meta.get("new_item_order", "deep")),
        content=_load_content(directory, meta["content"]) if meta.get("content") else None,
    )


def _load_content(directory: Path, settings: dict[str, Any]) -> ContentIndex:
    arrays = np.load(directory / CONTENT_FILE, allow_pickle=False)
    return ContentIndex(
        vocabulary=[str(term) for term in arrays["vocabulary"]],
        weighting=str(settings["weighting"]),
        sublinear_tf=bool(settings["sublinear_tf"]),
        idf=arrays["idf"].astype(np.float64),
        mean_length=float(settings["mean_length"]),
        profile=str(settings["profile"]),
        source_terms=sp.load_npz(directory / CONTENT_SOURCE).tocsr(),
        target_terms=sp.load_npz(directory / CONTENT_TARGET).tocsr(),
    )
