"""The second stage of ``transfer`` (the ``[ranker]`` config section): retrieve → rank, and what it is chosen from.

Free of TensorFlow so configs load fast. Every list is a set of choices that a run decides between on its own
cold-start VALIDATION users, so a first run on new data gets the benefit without per-dataset constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDE = ("cooccurrence", "itemknn", "rp3beta")
STAGES = ("deep", "wide", "fusion", "ranker")
NEW_ITEM_ORDERS = ("mix", "deep", "content")  # what orders the new items that fill the new-arrival slots
NEW_ITEM_WINDOW = 10  # the default top positions new-arrival slots are counted in (also of exports made before them)


def check_slots(slots: int, window: int) -> None:
    """Raise ValueError unless ``0 <= new_item_slots < new_item_window``."""
    if window < 1:
        raise ValueError(f"new_item_window must be at least 1, got {window}")
    if not 0 <= slots < window:
        raise ValueError(f"new_item_slots must be in [0, new_item_window = {window}), got {slots}")


@dataclass
class RankerSpec:
    """Retrieve → rank settings (see :mod:`tfrec_xcat.training.hybrid`)."""

    # share of overlap TRAINING users made pseudo cold-start (their target items become the ranker's labels and
    # leave the deep model's and the memorisation term's training data)
    pseudo_cold_fraction: float = 0.15
    # share of the target items still trained on that become pseudo new items for the ranker's training lists
    # (every remaining training interaction of theirs leaves the reduced data); "auto": the share of the cold-start
    # validation users' held-out items that have no training interaction but a text (training.hybrid.unseen_share).
    # Off by default: measured on Food→Kitchen with 10% new items, "auto" (0.10) cost the deep model's training data
    # (cold-start test NDCG@10 0.0465 → 0.0438) and still put no new item in a top 10 (docs/results.md, session 5)
    pseudo_new_fraction: float | str = 0.0
    candidates: list[int] = field(default_factory=lambda: [50, 100, 200])  # N per first-stage list
    wide: list[str] = field(default_factory=lambda: list(WIDE))  # memorisation terms to choose from
    fusion_weights: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    epochs: int = 30
    patience: int = 4
    learning_rate: float = 0.003
    ensemble: int = 5  # rankers trained from different seeds whose logits are averaged
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # what the final scorer may be
    # new-arrival slots (training.new_arrivals): positions new_item_window - new_item_slots + 1 .. new_item_window
    # go to the user's best items with no training interaction (by the two-tower's score), in run, score and the
    # exported recommend signature. A shop's exposure policy, not a choice made on validation: off by default,
    # because every slot costs cold-start NDCG@10 (Food→Kitchen with 10% new items: 0.0452 → 0.0441 for one slot;
    # docs/results.md, session 8)
    new_item_slots: int = 0
    new_item_window: int = NEW_ITEM_WINDOW
    # which new items fill the slots (training.new_arrivals.slot_order): "mix" (default) the two-tower's score for
    # cold-start users, and for users with target history the sum of the two-tower's and the text profile's
    # per-user z-scores over the new items; "deep" the two-tower's alone; "content" the text profile's alone (the
    # content_knn cosine, its setting chosen on cold-start validation users). docs/results.md, session 9
    new_item_order: str = "mix"

    def __post_init__(self) -> None:
        if not 0.0 < self.pseudo_cold_fraction < 1.0:
            raise ValueError(f"pseudo_cold_fraction must be in (0, 1), got {self.pseudo_cold_fraction}")
        if self.pseudo_new_fraction != "auto" and not (
            isinstance(self.pseudo_new_fraction, (int, float))
            and not isinstance(self.pseudo_new_fraction, bool)
            and 0.0 <= self.pseudo_new_fraction < 1.0
        ):
            raise ValueError(f'pseudo_new_fraction must be "auto" or in [0, 1), got {self.pseudo_new_fraction!r}')
        if not self.candidates or any(n < 1 for n in self.candidates):
            raise ValueError(f"candidates must list positive sizes, got {self.candidates}")
        for name, allowed in (("wide", WIDE), ("stages", STAGES)):
            values = getattr(self, name)
            bad = [v for v in values if v not in allowed]
            if not values or bad:
                raise ValueError(f"{name} must list some of {', '.join(allowed)}, got {values}")
        if not self.fusion_weights or any(not w > 0 for w in self.fusion_weights):
            raise ValueError(f"fusion_weights must list positive weights, got {self.fusion_weights}")
        if not self.hidden or any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden must list positive widths, got {self.hidden}")
        for name in ("epochs", "patience", "ensemble"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_slots(self.new_item_slots, self.new_item_window)
        if self.new_item_order not in NEW_ITEM_ORDERS:
            raise ValueError(f"new_item_order must be one of {', '.join(NEW_ITEM_ORDERS)}, got {self.new_item_order!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
