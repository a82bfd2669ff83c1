"""One owner of a seed's pipeline: data → cold-start split → matrices → feature space → validator.

Every command that trains or evaluates (``run``, ``train``, ``tune``, the benchmarks) builds its inputs here and
nowhere else, as ``RankingTask.build_inputs`` does in tensorflow/models' ``official/recommendation/ranking``:

    data = load_data(config)
    prepared = prepare_seed(config, seed, data)          # split, matrices, validator
    space = prepared.feature_space()                     # the towers' integer features (cached)
    model.fit(prepared)                                  # any :class:`~tfrec_xcat.recommender.Recommender`

A :class:`PreparedSeed` carries the one typed :class:`~tfrec_xcat.config.Config` all the way down; models read
their ``[model]``/``[training]``/``[ranker]`` sections from it, never from an untyped dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec_xcat.config import Config
from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.load import load_shop
from tfrec_xcat.data.split import ColdStartSplit, make_split
from tfrec_xcat.data.synthetic import ensure_synthetic
from tfrec_xcat.evaluation.evaluate import Scorer, cold_start_validator
from tfrec_xcat.features.matrices import SplitMatrices
from tfrec_xcat.features.memorisation import cooccurrence_counts, training_scores
from tfrec_xcat.features.space import FeatureSpace, build_feature_space, training_view
from tfrec_xcat.features.text_pretraining import pretrained_token_table
from tfrec_xcat.models.spec import ModelSpec

#: The metric that selects every model's settings and stops every neural model, on cold-start VALIDATION users.
SELECTION_METRIC = "ndcg@10"


def data_dir(config: Config) -> Path:
    """The configured data directory, or the synthetic embedded default (generated on first use)."""
    if config.data.path is None:
        return ensure_synthetic(config.synthetic)
    return Path(config.data.path)


def load_data(config: Config, *, log_problems: bool = True) -> ShopData:
    """Read the configured data; source and target (when set) must be among its categories."""
    wanted = [c for c in (config.data.source, config.data.target) if c]
    return load_shop(
        data_dir(config),
        fmt=config.data.format,
        categories=wanted or None,
        text_columns=config.data.text_columns,
        vector_columns=config.data.vector_columns,
        max_bad_fraction=config.data.max_bad_fraction,
        log_problems=log_problems,
    )


def split_data(config: Config, data: ShopData, seed: int) -> ColdStartSplit:
    """The cold-start split of ``data`` for the configured source and target."""
    return make_split(data, config.source, config.target, config.split, seed=seed)


@dataclass
class PreparedSeed:
    """One seed's inputs, as every model fits on them (see the module docstring)."""

    config: Config
    data: ShopData
    split: ColdStartSplit
    m: SplitMatrices
    seed: int
    workdir: Path | None = None  # where a model may write checkpoints and logs
    _spaces: dict[tuple[int, int, int], FeatureSpace] = field(default_factory=dict, repr=False)
    _token_tables: dict[tuple[int, int, int, str], np.ndarray] = field(default_factory=dict, repr=False)

    def validate(self, scorer: Scorer) -> float:
        """The selection metric of ``scorer`` on cold-start VALIDATION users (never test users)."""
        return cold_start_validator(self.m, SELECTION_METRIC)(scorer)

    def validate_model(self, model: Any) -> float:
        """:meth:`validate` of a trained two-tower (:class:`~tfrec_xcat.models.xcat.XcatModel`): early stopping."""
        return self.validate(model.row_scorer())

    def feature_space(self, spec: ModelSpec | None = None) -> FeatureSpace:
        """The towers' feature space of this split for ``spec`` (default: the configured ``[model]``), built once
        per history/text setting."""
        spec = spec or self.config.model
        key = (spec.history_per_category, spec.max_tokens, spec.vocab_size)
        if key not in self._spaces:
            self._spaces[key] = build_feature_space(
                self.data,
                self.split,
                self.m,
                history_per_category=spec.history_per_category,
                max_tokens=spec.max_tokens,
                vocab_size=spec.vocab_size,
            )
        return self._spaces[key]

    def token_table(self, spec: ModelSpec) -> np.ndarray | None:
        """The initial title-token embedding table ``spec.text_pretraining`` asks for (None: the layer's own random
        one), learnt from every item's title, all categories, built once per text setting."""
        if not spec.use_text or spec.text_pretraining == "none":
            return None
        key = (spec.max_tokens, spec.vocab_size, spec.text_dim, spec.text_pretraining)
        if key not in self._token_tables:
            space = self.feature_space(spec)
            rows = len(space.vocabulary) + 2  # the item tower's token embedding rows
            self._token_tables[key] = pretrained_token_table(space.item_tokens, rows, spec.text_dim, seed=self.seed)
        return self._token_tables[key]

    def training_inputs(self, spec: ModelSpec, mode: str) -> tuple[FeatureSpace, pd.DataFrame]:
        """The feature space and training interactions a two-tower of ``spec`` trains on in ``mode`` (with the
        pretrained token table when ``spec.text_pretraining`` asks for one, and the memorisation counts and
        leave-one-out training scores when ``spec.memorisation`` is on)."""
        space, frame = training_view(self.feature_space(spec), self.split.train, mode)
        space = dataclasses.replace(space, token_vectors=self.token_table(spec))
        if not spec.memorisation:
            return space, frame
        counts = cooccurrence_counts(self.m, space.item_index(self.m.source_items), space.n_items)
        own = sp.vstack([sp.csr_matrix((1, self.m.target.shape[1]), dtype=np.float32), self.m.target]).tocsr()
        train_scores = training_scores(space.history, counts, own, spec.memorisation_per_user)
        return dataclasses.replace(space, memorisation=counts, memorisation_train=train_scores), frame

    def in_workdir(self, *parts: str) -> PreparedSeed:
        """The same inputs with a work directory below this one (or below ``runs/work`` when there is none)."""
        return dataclasses.replace(self, workdir=(self.workdir or Path("runs/work")).joinpath(*parts))

    def with_split(self, split: ColdStartSplit) -> PreparedSeed:
        """The same run on another split of the same data (e.g. more users made cold-start)."""
        return dataclasses.replace(
            self, split=split, m=SplitMatrices.from_split(self.data, split), _spaces={}, _token_tables={}
        )


def prepare_seed(config: Config, seed: int, data: ShopData | None = None, workdir: Path | None = None) -> PreparedSeed:
    """Split ``data`` (loaded from the config when not given) for ``seed`` and build its matrices."""
    data = load_data(config) if data is None else data
    split = split_data(config, data, seed)
    return PreparedSeed(config, data, split, SplitMatrices.from_split(data, split), seed, workdir)


def metrics_header(config: Config, seeds: list[int]) -> dict[str, Any]:
    """The part of every ``metrics.json`` that says what was run on what."""
    return {
        "data": str(config.data.path) if config.data.path else "synthetic",
        "source": config.source,
        "target": config.target,
        "seeds": list(seeds),
    }


__all__ = [
    "SELECTION_METRIC",
    "PreparedSeed",
    "data_dir",
    "load_data",
    "metrics_header",
    "prepare_seed",
    "split_data",
]
