"""How to train (the ``[training]`` config section); free of TensorFlow so configs load fast."""

from __future__ import annotations

from dataclasses import dataclass

from tfrec_xcat.validation import MAX_BATCH, check_choice, check_number

MODES = ("frozen", "partial", "full", "joint", "target_only")
OPTIMIZERS = ("adam", "lazy_adam", "adagrad", "sgd")
STRATEGIES = ("default", "mirrored", "multi_worker")


@dataclass
class TrainSpec:
    """How to train (the ``[training]`` config section)."""

    mode: str = "full"
    batch_size: int = 512
    learning_rate: float = 0.003
    optimizer: str = "lazy_adam"  # Adam with row-wise embedding updates: 2× the throughput (docs/results.md, session 6)
    source_epochs: int = 3
    epochs: int = 12  # maximum epochs of the target (or joint) stage
    patience: int = 2
    strategy: str = "default"
    deterministic: bool = False  # tf op determinism: bit-identical runs, slower
    verbose: int = 0  # Keras progress: 0 silent, 1 progress bar, 2 one line per epoch

    def __post_init__(self) -> None:
        for name, allowed in (("mode", MODES), ("optimizer", OPTIMIZERS), ("strategy", STRATEGIES)):
            check_choice(name, getattr(self, name), allowed)
        check_number("batch_size", self.batch_size, ge=2, le=MAX_BATCH, integer=True)
        check_number("learning_rate", self.learning_rate, gt=0, le=10)
        check_number("epochs", self.epochs, ge=1, le=10_000, integer=True)
        check_number("source_epochs", self.source_epochs, ge=0, le=10_000, integer=True)
        check_number("patience", self.patience, ge=0, integer=True)
        check_number("verbose", self.verbose, ge=0, le=2, integer=True)
