"""The search (the ``[tune]`` config section): which values each hyperparameter may take, and how to search.

Every list is a KerasTuner ``Choice``; a list of one value fixes it. ``tower_layers`` lists layer-width lists.
Free of TensorFlow so configs load fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tfrec_xcat.models.spec import POOLINGS
from tfrec_xcat.training.spec import MODES, OPTIMIZERS
from tfrec_xcat.validation import MAX_BATCH, MAX_WIDTH, check_choice, check_each, check_number

TUNERS = ("random", "bayesian", "hyperband")


@dataclass
class TuneSpec:
    tuner: str = "random"
    max_trials: int = 20
    max_minutes: float = 0.0  # wall-time budget of one invocation: no new trial starts after it (0 = none)
    # (each invocation still runs at least one trial)
    seed: int = 0
    embedding_dim: list[int] = field(default_factory=lambda: [32, 64, 128])
    tower_layers: list[list[int]] = field(default_factory=lambda: [[128], [256], [256, 128]])
    learning_rate: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01])
    optimizer: list[str] = field(default_factory=lambda: ["lazy_adam", "adam", "adagrad"])
    temperature: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    pooling: list[str] = field(default_factory=lambda: ["mean", "attention", "gru"])
    grl_lambda_max: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    grl_weight: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3])
    mode: list[str] = field(default_factory=lambda: ["full", "partial", "frozen", "joint"])
    use_text: list[bool] = field(default_factory=lambda: [True, False])
    batch_size: list[int] = field(default_factory=lambda: [256, 512, 1024])
    cold_history_dropout: list[float] = field(default_factory=lambda: [0.5])

    def __post_init__(self) -> None:
        check_choice("tuner", self.tuner, TUNERS)
        check_number("max_trials", self.max_trials, ge=1, le=1_000_000, integer=True)
        check_number("max_minutes", self.max_minutes, ge=0)
        check_number("seed", self.seed, ge=0, integer=True)
        for name in (
            "embedding_dim",
            "tower_layers",
            "learning_rate",
            "optimizer",
            "temperature",
            "pooling",
            "grl_lambda_max",
            "grl_weight",
            "mode",
            "use_text",
            "batch_size",
            "cold_history_dropout",
        ):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one value")
        check_each("embedding_dim", self.embedding_dim, ge=1, le=MAX_WIDTH, integer=True)
        for i, layers in enumerate(self.tower_layers):
            check_each(f"tower_layers[{i}]", layers, ge=1, le=MAX_WIDTH, integer=True)
        check_each("learning_rate", self.learning_rate, gt=0, le=10)
        check_each("temperature", self.temperature, gt=0)
        check_each("grl_lambda_max", self.grl_lambda_max, ge=0)
        check_each("grl_weight", self.grl_weight, ge=0)
        check_each("batch_size", self.batch_size, ge=2, le=MAX_BATCH, integer=True)
        check_each("cold_history_dropout", self.cold_history_dropout, ge=0, lt=1)
        for i, value in enumerate(self.optimizer):
            check_choice(f"optimizer[{i}]", value, OPTIMIZERS)
        for i, value in enumerate(self.pooling):
            check_choice(f"pooling[{i}]", value, POOLINGS)
        for i, value in enumerate(self.mode):
            check_choice(f"mode[{i}]", value, MODES)
