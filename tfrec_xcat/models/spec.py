"""Hyperparameters of the neural model (the ``[model]`` config section)."""

from __future__ import annotations

from dataclasses import dataclass, field

POOLINGS = ("mean", "attention", "gru")


@dataclass
class ModelSpec:
    """Towers, tasks and domain adaptation. See the README's config section for what each does."""

    embedding_dim: int = 64
    tower_layers: list[int] = field(default_factory=lambda: [128])
    use_ids: bool = True  # item/user id embeddings
    use_text: bool = True  # item text features
    text_dim: int = 64
    max_tokens: int = 16
    vocab_size: int = 20000
    history_per_category: int = 20
    pooling: str = "attention"
    temperature: float = 0.05
    logq_correction: bool = True
    id_dropout: float = 0.1  # chance an item/user id is replaced by OOV in training (content path learns)
    cold_history_dropout: float = 0.5  # chance a training example loses its target-category history
    ranking_weight: float = 0.1  # weight of the ranking task(s)
    grl: bool = True  # gradient-reversal domain discriminator on item representations
    grl_weight: float = 0.1
    grl_lambda_max: float = 1.0
    grl_schedule: str = "dann"  # "constant" or "dann": 2/(1+exp(-10p))-1
    grl_on_users: bool = False
    # memorisation (wide) term: score += alpha · log(1 + co-occurrence of the user's source items with the item)
    # + a learned item prior, trained jointly with the towers (the hybrid ``transfer`` turns it on)
    memorisation: bool = False
    memorisation_per_user: int = 1000  # largest co-occurrence scores kept per user

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.grl_schedule not in ("constant", "dann"):
            raise ValueError(f"grl_schedule must be 'constant' or 'dann', got {self.grl_schedule!r}")
        if not (self.use_ids or self.use_text):
            raise ValueError("use_ids and use_text cannot both be false: the item tower needs an input")
        for name in ("id_dropout", "cold_history_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.embedding_dim <= 0 or self.temperature <= 0:
            raise ValueError("embedding_dim and temperature must be positive")
