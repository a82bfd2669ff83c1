"""Hyperparameters of the neural model (the ``[model]`` config section)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfrec_xcat.features.text_pretraining import METHODS as TEXT_PRETRAINING
from tfrec_xcat.validation import MAX_SEQUENCE, MAX_VOCAB, MAX_WIDTH, check_choice, check_each, check_number

POOLINGS = ("mean", "attention", "gru")


@dataclass
class ModelSpec:
    """Towers, tasks and domain adaptation. See the README's config section for what each does."""

    embedding_dim: int = 64
    tower_layers: list[int] = field(default_factory=lambda: [128])
    use_ids: bool = True  # item/user id embeddings
    use_text: bool = True  # item text features
    # "none" | "ppmi_svd": initialise the title-token embeddings from the catalogue's own titles (all categories):
    # co-occurrence within titles -> positive PMI -> truncated SVD (features.text_pretraining), then fine-tune
    text_pretraining: str = "none"
    use_vectors: bool = True  # project the items' precomputed vectors ([data] vector_columns), when there are any
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
    # + a learned item prior, trained jointly with the towers (features.memorisation; off for target_only)
    memorisation: bool = True
    memorisation_per_user: int = 1000  # largest co-occurrence scores kept per user
    # independent pairs of towers trained side by side (each its own loss, own initialisation); a score is their
    # mean, so the model is still one two-tower whose vectors are the members' concatenated (models.towers.
    # TowerEnsemble): export, serving, reindex and scoring see one user and one item vector of towers × dim
    towers: int = 2

    def __post_init__(self) -> None:
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("grl_schedule", self.grl_schedule, ("constant", "dann"))
        check_choice("text_pretraining", self.text_pretraining, TEXT_PRETRAINING)
        if not (self.use_ids or self.use_text):
            raise ValueError("use_ids and use_text cannot both be false: the item tower needs an input")
        check_number("embedding_dim", self.embedding_dim, ge=1, le=MAX_WIDTH, integer=True)
        check_number("text_dim", self.text_dim, ge=1, le=MAX_WIDTH, integer=True)
        if len(self.tower_layers) > 16:
            raise ValueError(f"tower_layers must list at most 16 layer widths, got {len(self.tower_layers)}")
        check_each("tower_layers", self.tower_layers, ge=1, le=MAX_WIDTH, integer=True)
        check_number("max_tokens", self.max_tokens, ge=1, le=MAX_SEQUENCE, integer=True)
        check_number("vocab_size", self.vocab_size, ge=1, le=MAX_VOCAB, integer=True)
        check_number("history_per_category", self.history_per_category, ge=1, le=MAX_SEQUENCE, integer=True)
        check_number("temperature", self.temperature, gt=0)
        for name in ("id_dropout", "cold_history_dropout"):
            check_number(name, getattr(self, name), ge=0, lt=1)
        for name in ("ranking_weight", "grl_weight", "grl_lambda_max"):
            check_number(name, getattr(self, name), ge=0)
        check_number("towers", self.towers, ge=1, le=8, integer=True)
        check_number("memorisation_per_user", self.memorisation_per_user, ge=1, le=1_000_000, integer=True)
