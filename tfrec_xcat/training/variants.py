"""The neural two-tower models of a run: the transfer two-tower, its ablations, and the ``target_only`` baseline.

Each is the same :class:`XcatModel` trained by :func:`train` with a few settings changed from the configured
``[model]`` and ``[training]`` sections (its ``model_overrides`` / ``training_overrides``); all select epochs on
cold-start validation users only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.pipeline import PreparedSeed
from tfrec_xcat.recommender import Recommender
from tfrec_xcat.training.spec import TrainSpec

if TYPE_CHECKING:
    from tfrec_xcat.training.trainer import TrainResult


def train_two_tower(
    prepared: PreparedSeed, model_spec: ModelSpec, train_spec: TrainSpec, workdir: str | Path, **kwargs: Any
) -> TrainResult:
    """Train an :class:`~tfrec_xcat.models.xcat.XcatModel` of ``model_spec`` on ``prepared`` as ``train_spec``
    says, stopping on its cold-start validation users (``kwargs``: the trainer's strategy, progress, callbacks)."""
    from tfrec_xcat.training.trainer import train

    space, frame = prepared.training_inputs(model_spec, train_spec.mode)
    return train(
        space,
        frame,
        model_spec,
        train_spec,
        validate=prepared.validate_model,
        workdir=workdir,
        seed=prepared.seed,
        with_ratings=prepared.data.has_ratings,
        **kwargs,
    )


class NeuralModel(Recommender):
    """A two-tower model trained on the split; scores = user query · target item vectors."""

    model_overrides: ClassVar[dict[str, Any]] = {}
    training_overrides: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.trainer_options: dict[str, Any] = {}  # the trainer's strategy / progress (``tfrec-xcat train``)

    def specs(self, prepared: PreparedSeed) -> tuple[ModelSpec, TrainSpec]:
        """The configured specs with this variant's (and this grid point's) overrides applied."""
        model = dataclasses.replace(prepared.config.model, **self.model_overrides, **self.params.get("model", {}))
        training = {**self.training_overrides, **self.params.get("training", {})}
        return model, dataclasses.replace(prepared.config.training, **training)

    def fit(self, prepared: PreparedSeed) -> None:
        model_spec, train_spec = self.specs(prepared)
        result = train_two_tower(
            prepared, model_spec, train_spec, prepared.workdir or "runs/work", **self.trainer_options
        )
        self.model, self.space, self.model_spec = result.model, result.space, model_spec
        self.item_vectors = self.model.target_item_vectors()
        self._scores = self.model.row_scorer(self.item_vectors)
        self.history = result.history
        self.train_info = dataclasses.asdict(model_spec) | {"training": dataclasses.asdict(train_spec)}
        self.examples_per_second = result.examples_per_second
        self.stages = result.stages

    def score(self, rows: np.ndarray) -> np.ndarray:
        return self._scores(rows)

    def predict_ratings(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Predicted ratings of (user row, target column) pairs from the ranking model's rating head."""
        users, inverse = np.unique(np.asarray(rows, dtype=np.int32) + 1, return_inverse=True)
        queries = self.model.user_vectors(users)[inverse]
        items = self.item_vectors[np.asarray(cols)]
        out = self.model.ranking_logits(queries, items).numpy()
        return out[:, 1]


class TransferDeep(NeuralModel):
    """Ablation: the transfer two-tower without its memorisation term (source stage, then full fine-tuning)."""

    model_overrides: ClassVar[dict[str, Any]] = {"memorisation": False}
    training_overrides: ClassVar[dict[str, Any]] = {"mode": "full"}


class TransferWideDeep(NeuralModel):
    """The transfer two-tower with the jointly trained memorisation term (the retrieval stage of ``transfer``;
    the exported ``xcat_retrieval`` serves it alone as ``serving_default``)."""

    model_overrides: ClassVar[dict[str, Any]] = {"memorisation": True}
    training_overrides: ClassVar[dict[str, Any]] = {"mode": "full"}


class TransferFrozen(NeuralModel):
    """Ablation: the source-trained item tower is fixed in the target stage."""

    training_overrides: ClassVar[dict[str, Any]] = {"mode": "frozen"}


class TransferPartial(NeuralModel):
    """Ablation: only the top item-tower layers fine-tune on the target."""

    training_overrides: ClassVar[dict[str, Any]] = {"mode": "partial"}


class TransferJoint(NeuralModel):
    """Ablation: both categories trained together, per-category query heads."""

    training_overrides: ClassVar[dict[str, Any]] = {"mode": "joint"}


class TransferNoGrl(NeuralModel):
    """Ablation: no gradient-reversal domain discriminator."""

    model_overrides: ClassVar[dict[str, Any]] = {"grl": False}
    training_overrides: ClassVar[dict[str, Any]] = {"mode": "full"}


class TransferIdOnly(NeuralModel):
    """Ablation: no content features (id + category only: no text, no precomputed vectors)."""

    model_overrides: ClassVar[dict[str, Any]] = {"use_text": False, "use_vectors": False}
    training_overrides: ClassVar[dict[str, Any]] = {"mode": "full"}


class TargetOnly(NeuralModel):
    """Baseline: the same two-tower trained on target data only (what transfer adds); no source, so no
    memorisation term."""

    model_overrides: ClassVar[dict[str, Any]] = {"memorisation": False}
    training_overrides: ClassVar[dict[str, Any]] = {"mode": "target_only"}
