"""The cold-start split protocol: which users are held out, and which of their interactions are ground truth.

Overlap users (active in both ``source`` and ``target``) are shuffled with a seeded generator; the first
``cold_start_fraction`` of them are cold-start TEST users and the next ``cold_start_val_fraction`` cold-start
VALIDATION users. All their ``target`` interactions leave training and become ground truth; their other
interactions stay. Optionally the last ``target`` interaction of a seeded ``warm_test_fraction`` of the remaining
users with at least two ``target`` interactions is held out as the warm test set. Same seed, same split: users
are sorted before shuffling and NumPy's PCG64 stream is the same on every platform.

New items (``new_item_fraction`` > 0): a seeded share of the ``target`` items that have interactions (sorted, then
shuffled like the users) loses every TRAINING interaction; those are withheld (in no segment), and the item
becomes "new": only its content is known. The held-out interactions with new items stay in the cold-start and
warm ground truth, and :meth:`ColdStartSplit.new_item_truth` gives them as a segment of their own. Users and
their held-out interactions are the same as with ``new_item_fraction = 0``: new items are chosen after the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.validation import check_number

log = logging.getLogger(__name__)

SEGMENTS = ("cold_start_test", "cold_start_val", "warm_test")
#: The new-item segments: held-out interactions with new items of TEST users (cold-start test and warm test
#: together; reported once) and of cold-start VALIDATION users.
NEW_ITEM_SEGMENTS = {"new_items": ("cold_start_test", "warm_test"), "new_items_val": ("cold_start_val",)}


class LeakError(AssertionError):
    """A held-out (user, target item) pair is in the training data."""


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of the split (see the module docstring)."""

    cold_start_fraction: float = 0.2
    cold_start_val_fraction: float = 0.1
    warm_test_fraction: float = 0.1
    new_item_fraction: float = 0.0  # share of target items with no training interaction (0 = off)

    def __post_init__(self) -> None:
        check_number("new_item_fraction", self.new_item_fraction, ge=0, lt=1)
        for name in ("cold_start_fraction", "cold_start_val_fraction", "warm_test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.cold_start_fraction + self.cold_start_val_fraction >= 1.0:
            raise ValueError("cold_start_fraction + cold_start_val_fraction must be below 1")


@dataclass
class ColdStartSplit:
    """Training interactions (every category) and the held-out target interactions of each segment."""

    source: str
    target: str
    seed: int
    train: pd.DataFrame
    heldout: dict[str, pd.DataFrame]
    users: dict[str, np.ndarray]
    overlap_users: np.ndarray
    new_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # sorted target item ids
    withheld: pd.DataFrame | None = None  # training interactions removed because their item is new

    @property
    def cold_start_users(self) -> np.ndarray:
        """Cold-start test and validation users together: nobody may train on their target interactions."""
        return np.union1d(self.users["cold_start_test"], self.users["cold_start_val"])

    def truth(self, segment: str) -> dict[str, np.ndarray]:
        """Ground truth of a segment: user id → held-out target item ids."""
        frame = self.heldout[segment]
        return {u: g.to_numpy() for u, g in frame.groupby("user_id", sort=True)["item_id"]}

    def new_item_truth(self, segment: str) -> pd.DataFrame:
        """The held-out interactions with new items of a new-item segment (see :data:`NEW_ITEM_SEGMENTS`)."""
        frames = [self.heldout[s] for s in NEW_ITEM_SEGMENTS[segment]]
        frame = pd.concat(frames, ignore_index=True)
        return frame.loc[frame["item_id"].isin(self.new_items)].reset_index(drop=True)

    def new_item_users(self, segment: str) -> np.ndarray:
        """The users of a new-item segment: every user of its segments (those without new items carry no truth)."""
        return np.sort(np.concatenate([self.users[s] for s in NEW_ITEM_SEGMENTS[segment]]))

    def check_no_leak(self) -> None:
        """Raise :class:`LeakError` if any held-out (user, target item) pair, any target interaction of a
        cold-start user, or any interaction of a new item is in the training data."""
        train_pairs = self.train[["user_id", "item_id"]]
        for segment, frame in self.heldout.items():
            hit = frame[["user_id", "item_id"]].merge(train_pairs, on=["user_id", "item_id"])
            if len(hit):
                row = hit.iloc[0]
                raise LeakError(f"{segment}: held-out pair ({row.user_id}, {row.item_id}) is in training")
        cold_target = self.train[
            (self.train["category"] == self.target) & self.train["user_id"].isin(self.cold_start_users)
        ]
        if len(cold_target):
            raise LeakError(f"cold-start user {cold_target.iloc[0].user_id} has target interactions in training")
        new = self.train[self.train["item_id"].isin(self.new_items)]
        if len(new):
            row = new.iloc[0]
            raise LeakError(f"new item {row.item_id} has a training interaction (user {row.user_id})")

    def sizes(self) -> dict[str, int]:
        """Users and interactions per segment, and the size of the training set."""
        out = {"overlap_users": len(self.overlap_users), "train_interactions": len(self.train)}
        for segment in SEGMENTS:
            out[f"{segment}_users"] = len(self.users[segment])
            out[f"{segment}_interactions"] = len(self.heldout[segment])
        if len(self.new_items):
            out["new_items"] = len(self.new_items)
            out["new_items_withheld_interactions"] = 0 if self.withheld is None else len(self.withheld)
            for segment in NEW_ITEM_SEGMENTS:
                truth = self.new_item_truth(segment)
                out[f"{segment}_users"] = int(truth["user_id"].nunique())
                out[f"{segment}_interactions"] = len(truth)
        return out


def _pick(users: np.ndarray, fractions: list[float], rng: np.random.Generator) -> list[np.ndarray]:
    order = users[rng.permutation(len(users))]
    out, start = [], 0
    for fraction in fractions:
        n = round(fraction * len(users))
        out.append(np.sort(order[start : start + n]))
        start += n
    return out


def pick_new_items(data: ShopData, target: str, fraction: float, seed: int) -> np.ndarray:
    """The sorted ids of ``round(fraction * n)`` target items, drawn (seeded) from the ``n`` catalog target items
    that have at least one interaction: the same on every machine for the same data and seed."""
    inter, items = data.interactions, data.items
    interacted = inter.loc[inter["category"] == target, "item_id"].unique()
    catalog = items.loc[items["category"] == target, "item_id"].to_numpy()
    candidates = np.intersect1d(interacted.astype(str), catalog.astype(str)).astype(object)
    (new,) = _pick(candidates, [fraction], np.random.default_rng([seed, 3]))
    if fraction > 0 and not len(new):
        log.warning("new_item_fraction = %g of %d %s items rounds to no new item", fraction, len(candidates), target)
    return new


def make_split(
    data: ShopData, source: str, target: str, spec: SplitSpec | None = None, seed: int = 0
) -> ColdStartSplit:
    """Split ``data`` for transfer from ``source`` to ``target`` (see the module docstring); leak-checked."""
    spec = spec or SplitSpec()
    if source == target:
        raise ValueError(f"source and target must differ (both are {source!r})")
    overlap = data.overlap_users(source, target)
    test_users, val_users = _pick(
        overlap, [spec.cold_start_fraction, spec.cold_start_val_fraction], np.random.default_rng([seed, 1])
    )
    inter = data.interactions
    is_target = (inter["category"] == target).to_numpy()
    in_test = inter["user_id"].isin(test_users).to_numpy() & is_target
    in_val = inter["user_id"].isin(val_users).to_numpy() & is_target
    heldout = {
        "cold_start_test": inter.loc[in_test].reset_index(drop=True),
        "cold_start_val": inter.loc[in_val].reset_index(drop=True),
    }
    train = inter.loc[~(in_test | in_val)]

    # Warm test: the last target interaction of some training users who have at least two.
    target_train = train.loc[train["category"] == target]
    counts = target_train.groupby("user_id").size()
    eligible = np.sort(counts.index[counts >= 2].to_numpy())
    (warm_users,) = _pick(eligible, [spec.warm_test_fraction], np.random.default_rng([seed, 2]))
    last = (
        target_train.loc[target_train["user_id"].isin(warm_users)]
        .sort_values(["user_id", "position"], kind="stable")
        .groupby("user_id", sort=True)
        .tail(1)
    )
    heldout["warm_test"] = last.reset_index(drop=True)
    train = train.drop(index=last.index)

    # New items: a seeded share of the target items with interactions loses its training interactions.
    new_items = pick_new_items(data, target, spec.new_item_fraction, seed)
    is_new = train["item_id"].isin(new_items).to_numpy()
    withheld = train.loc[is_new].reset_index(drop=True) if len(new_items) else None
    train = train.loc[~is_new].reset_index(drop=True)

    split = ColdStartSplit(
        source=source,
        target=target,
        seed=seed,
        train=train,
        heldout=heldout,
        users={"cold_start_test": test_users, "cold_start_val": val_users, "warm_test": warm_users},
        overlap_users=overlap,
        new_items=new_items,
        withheld=withheld,
    )
    split.check_no_leak()
    return split
