"""How to train (the ``[training]`` config section); free of TensorFlow so configs load fast."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("frozen", "partial", "full", "joint", "target_only")
OPTIMIZERS = ("adam", "lazy_adam", "adagrad", "sgd")
STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclass
class TrainSpec:
    """How to train (the ``[training]`` config section)."""

    mode: str = "full"
    batch_size: int = 512
    learning_rate: float = 0.003
    optimizer: str = "adam"
    source_epochs: int = 3
    epochs: int = 12  # maximum epochs of the target (or joint) stage
    patience: int = 2
    strategy: str = "default"
    deterministic: bool = False  # tf op determinism: bit-identical runs, slower
    verbose: int = 0  # Keras progress: 0 silent, 1 progress bar, 2 one line per epoch

    def __post_init__(self) -> None:
        for name, allowed in (("mode", MODES), ("optimizer", OPTIMIZERS), ("strategy", STRATEGIES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.batch_size < 2 or self.learning_rate <= 0 or self.epochs < 1 or self.source_epochs < 0:
            raise ValueError("batch_size >= 2, learning_rate > 0, epochs >= 1 and source_epochs >= 0 are required")
