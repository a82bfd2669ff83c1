"""The search (the ``[tune]`` config section): which values each hyperparameter may take, and how to search.

Every list is a KerasTuner ``Choice``; a list of one value fixes it. ``tower_layers`` lists layer-width lists.
Free of TensorFlow so configs load fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    optimizer: list[str] = field(default_factory=lambda: ["adam", "adagrad"])
    temperature: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2])
    pooling: list[str] = field(default_factory=lambda: ["mean", "attention", "gru"])
    grl_lambda_max: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    grl_weight: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3])
    mode: list[str] = field(default_factory=lambda: ["full", "partial", "frozen", "joint"])
    use_text: list[bool] = field(default_factory=lambda: [True, False])
    batch_size: list[int] = field(default_factory=lambda: [256, 512, 1024])
    cold_history_dropout: list[float] = field(default_factory=lambda: [0.5])

    def __post_init__(self) -> None:
        if self.tuner not in TUNERS:
            raise ValueError(f"tuner must be one of {', '.join(TUNERS)}, got {self.tuner!r}")
        if self.max_trials < 1:
            raise ValueError("max_trials must be at least 1")
        if self.max_minutes < 0:
            raise ValueError("max_minutes must be 0 (no budget) or positive")
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
