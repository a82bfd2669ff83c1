"""The neural models of a run: the transfer model, its ablations, and the ``target_only`` baseline.

Each is the same :class:`XcatModel` trained by :func:`train` with a few settings changed from the configured
``[model]`` and ``[training]`` sections; all select epochs on cold-start validation users only.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from tfrec_xcat.baselines.base import FitContext, MatrixBaseline
from tfrec_xcat.models.spec import ModelSpec
from tfrec_xcat.training.spec import TrainSpec


def specs(settings: dict[str, Any], model: dict[str, Any], training: dict[str, Any]) -> tuple[ModelSpec, TrainSpec]:
    """The configured specs with a variant's overrides applied."""
    base_model = {**settings.get("model", {}), **model}
    base_training = {**settings.get("training", {}), **training}
    return ModelSpec(**base_model), TrainSpec(**base_training)


class NeuralModel(MatrixBaseline):
    """A two-tower model trained on the split; scores = user query · target item vectors."""

    model_overrides: ClassVar[dict[str, Any]] = {}
    training_overrides: ClassVar[dict[str, Any]] = {}

    def fit(self, ctx: FitContext) -> None:
        from tfrec_xcat.training.trainer import feature_space, train, training_view

        model_spec, train_spec = specs(
            ctx.settings,
            {**self.model_overrides, **self.params.get("model", {})},
            {**self.training_overrides, **self.params.get("training", {})},
        )
        space = feature_space(ctx.data, ctx.split, ctx.m, model_spec)
        space, train_frame = training_view(space, ctx.split.train, train_spec.mode)
        self.space = space
        assert ctx.validate is not None, "neural models need a validation callable"

        def validate(model: Any) -> float:
            return ctx.validate(model.row_scorer())

        result = train(
            space,
            train_frame,
            model_spec,
            train_spec,
            validate=validate,
            workdir=ctx.workdir or "runs/work",
            seed=ctx.seed,
            with_ratings=ctx.data.has_ratings,
        )
        self.model = result.model
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


def variant(
    name: str, model: dict[str, Any] | None = None, training: dict[str, Any] | None = None, doc: str = ""
) -> type[NeuralModel]:
    return type(
        name, (NeuralModel,), {"model_overrides": model or {}, "training_overrides": training or {}, "__doc__": doc}
    )


TRANSFER_DEFAULT: dict[str, Any] = {"mode": "full"}

VARIANTS: dict[str, type[NeuralModel]] = {
    "transfer": variant("Transfer", training=TRANSFER_DEFAULT, doc="The default transfer model."),
    "transfer_frozen": variant("TransferFrozen", training={"mode": "frozen"}),
    "transfer_partial": variant("TransferPartial", training={"mode": "partial"}),
    "transfer_full": variant("TransferFull", training={"mode": "full"}),
    "transfer_joint": variant("TransferJoint", training={"mode": "joint"}),
    "transfer_no_grl": variant("TransferNoGrl", model={"grl": False}, training=TRANSFER_DEFAULT),
    "transfer_id_only": variant("TransferIdOnly", model={"use_text": False}, training=TRANSFER_DEFAULT),
    "target_only": variant(
        "TargetOnly", training={"mode": "target_only"}, doc="Same two-tower, target data only: what transfer adds."
    ),
}
