"""``transfer``: generalisation (the two towers) + memorisation (an item-to-item term) + a learned ranking stage.

The two-tower model generalises across items (its recall@50 is well above co-occurrence) but cannot keep the
exact source-item → target-item links that co-occurrence memorises; the two signals are complementary. This
model combines them by design, and decides on the run's own cold-start VALIDATION users how much of each to use:

1. **Pseudo cold-start users.** A seeded ``pseudo_cold_fraction`` of the overlap TRAINING users lose their target
   interactions, exactly as cold-start users do; those interactions become the ranking stage's labels. Nothing of
   the validation or test users is ever a label.
2. **Deep retrieval**: the wide & deep transfer two-tower (:mod:`tfrec_xcat.training.variants`), trained on the
   remaining training data, epochs chosen on validation users.
3. **Memorisation (wide)**: a source-item → target-item matrix W, the best of ``[ranker] wide`` (co-occurrence,
   item-kNN, RP3β, each with its own knobs) on validation users; the ranking stage's training lists use W from the
   remaining data, everything that is scored uses W from all training data.
4. **Candidates**: the top N of the deep list ∪ the top N of the wide list (N from ``[ranker] candidates``).
   ``[ranker] pseudo_new_fraction`` > 0 (off by default) makes a seeded share of the target items new in the
   reduced data, so the ranking stage also learns from labels on items known by their content only.
5. **Ranking stage**: a TFRS ranking model scores each candidate from cross features (deep score and rank,
   memorisation score, rank and support, log popularity, history length), trained listwise (softmax over the
   candidate list) on the pseudo cold-start users only; epochs by early stopping on validation users.
6. **Choice**: the final scorer is the best on validation users of deep only, memorisation only, fusion
   (per-user standardised deep + w · standardised wide, w from ``[ranker] fusion_weights``) and the ranking
   stage, so the model falls back to what works on data where one signal is weak.
7. **New-arrival slots** (``[ranker] new_item_slots``, off by default): a shop's exposure policy on top of the
   final scorer (:mod:`tfrec_xcat.training.new_arrivals`); the parts in :meth:`Transfer.ablations` stay without.
   The text profile that orders the slots' new items (``[ranker] new_item_order``) is fitted with every run whose
   items have text, so ``reindex --new-item-slots`` can turn the slots on for an exported version later.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tfrec_xcat.baselines.base import MatrixBaseline
from tfrec_xcat.baselines.cooccurrence import Cooccurrence
from tfrec_xcat.baselines.itemknn import ItemKnn
from tfrec_xcat.baselines.rp3beta import Rp3Beta
from tfrec_xcat.evaluation.evaluate import segment_rows
from tfrec_xcat.evaluation.metrics import list_ndcg
from tfrec_xcat.features.content import GRID as CONTENT_GRID
from tfrec_xcat.features.content import ContentIndex
from tfrec_xcat.features.matrices import SplitMatrices
from tfrec_xcat.features.memorisation import overlap_counts
from tfrec_xcat.models.ranking_spec import NEW_ITEM_WINDOW, RankerSpec
from tfrec_xcat.pipeline import SELECTION_METRIC, PreparedSeed
from tfrec_xcat.recommender import Recommender
from tfrec_xcat.training.new_arrivals import reserve, slot_order
from tfrec_xcat.training.variants import NeuralModel, TransferWideDeep

log = logging.getLogger(__name__)

WIDE_MODELS: dict[str, type[MatrixBaseline]] = {"cooccurrence": Cooccurrence, "itemknn": ItemKnn, "rp3beta": Rp3Beta}
PSEUDO_COLD = "pseudo_cold"
BASE_FEATURES = (
    "deep",
    "deep_gap",
    "deep_rank",
    "wide_rel",
    "wide_log",
    "wide_rank",
    "support",
    "popularity",
    "source_history",
    "cooc_max",
)
#: per memorisation family other than the chosen one: its score relative to the user's best, and its rank
OTHER_FEATURES = ("rel", "rank")


def feature_names(others: list[str]) -> tuple[str, ...]:
    """The ranking stage's features, in order, given the memorisation families beside the chosen one."""
    return BASE_FEATURES + tuple(f"{name}_{part}" for name in others for part in OTHER_FEATURES)


def pseudo_cold_split(
    prepared: PreparedSeed, fraction: float, new_fraction: float = 0.0
) -> tuple[PreparedSeed, np.ndarray]:
    """``prepared`` with a seeded ``fraction`` of the overlap training users made cold-start: their target training
    interactions leave ``train`` and become the held-out segment ``pseudo_cold``; returns their matrix rows.

    With ``new_fraction`` > 0, that share of the target items still trained on become pseudo new items: every
    training interaction they have left leaves ``train`` too (the pseudo cold-start users' interactions with them
    stay labels), so the ranking stage learns from items it meets as it will meet new ones: no memorisation, no
    popularity, content-only vectors."""
    m, split = prepared.m, prepared.split
    overlap = m.overlap_rows()
    rng = np.random.default_rng([prepared.seed, 7919])
    n = max(round(fraction * len(overlap)), 1) if len(overlap) > 1 else 0
    rows = np.sort(rng.choice(overlap, size=n, replace=False)) if n else np.zeros(0, dtype=np.int64)
    users = np.asarray(m.users[rows])
    train = split.train
    in_target = train["category"] == split.target
    moved = in_target & train["user_id"].isin(users)
    dropped = np.zeros(len(train), dtype=bool)
    if new_fraction > 0:
        trained = np.sort(train.loc[in_target & ~moved, "item_id"].astype(str).unique())
        k = round(new_fraction * len(trained))
        new_items = np.random.default_rng([prepared.seed, 7920]).choice(trained, size=k, replace=False) if k else []
        dropped = (in_target & ~moved & train["item_id"].astype(str).isin(set(new_items))).to_numpy()
    reduced = dataclasses.replace(
        split,
        train=train.loc[~moved & ~dropped].reset_index(drop=True),
        heldout={**split.heldout, PSEUDO_COLD: train.loc[moved].reset_index(drop=True)},
        users={**split.users, PSEUDO_COLD: users},
    )
    return prepared.with_split(reduced).in_workdir("deep"), rows


#: the most ``"auto"`` takes: the deep model keeps at least half of the target items' data
MAX_AUTO_NEW = 0.5


def unseen_share(prepared: PreparedSeed) -> float:
    """``pseudo_new_fraction = "auto"``: the share of the cold-start VALIDATION users' held-out interactions that
    fall on target items with no training interaction but with a text to know them by, i.e. how often a relevant
    item is one only its content can place. Unseen items without any text (books in the movie/book data) are left
    out: every model scores them alike, so simulating them teaches the ranker nothing and costs training data."""
    m = prepared.m
    truth = m.truth.get("cold_start_val")
    if truth is None or not truth.nnz:
        return 0.0
    text = prepared.data.item_text().reindex(m.target_items).fillna("").astype(str).str.strip()
    placeable = (popularity_of(m) == 0) & text.astype(bool).to_numpy()
    return min(float(placeable[truth.tocoo().col].mean()), MAX_AUTO_NEW)


def standardize(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (rows with no spread become 0)."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return np.divide(scores - mean, std, out=np.zeros_like(scores), where=std > 0)


def order_of(scores: np.ndarray) -> np.ndarray:
    """Columns of every row, highest score first; ties by column (as ``tf.math.top_k`` orders them, so the
    exported graph picks the same candidates)."""
    return np.argsort(-scores, axis=1, kind="stable")


def ranks_of(order: np.ndarray) -> np.ndarray:
    """0-based rank of every column within its row, from :func:`order_of`."""
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(order.shape[1])[None, :].repeat(len(order), 0), axis=1)
    return out


def ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of every column within its row (highest score = 0; ties by column)."""
    return ranks_of(order_of(scores))


def top_n(scores: np.ndarray, n: int) -> np.ndarray:
    """Columns of the ``n`` highest scores per row, best first; ties by column."""
    return order_of(scores)[:, : min(n, scores.shape[1])]


@dataclasses.dataclass
class Lists:
    """Candidate lists of a block of users: columns, features and mask (users × L), as the ranker reads them."""

    columns: np.ndarray  # (U, L) target columns
    features: np.ndarray  # (U, L, F) float32
    mask: np.ndarray  # (U, L) bool: a real, distinct candidate
    fallback: np.ndarray  # (U, T) first-stage fused scores, for items outside the lists
    first_rank: np.ndarray  # (U, L) a candidate's best 0-based rank in the deep and the wide list

    def within(self, n: int) -> Lists:
        """The lists a first stage of ``n`` per list proposes: the candidates ranked below ``n`` in either list
        (the top ``n`` of each list are among the top ``m`` of it for any ``m >= n``)."""
        return dataclasses.replace(self, mask=self.mask & (self.first_rank < n))


def relative(scores: np.ndarray) -> np.ndarray:
    """Scores divided by each row's largest (0 where a row has no positive score)."""
    top = scores.max(axis=1, keepdims=True)
    return np.divide(scores, top, out=np.zeros_like(scores), where=top > 0)


def max_per_history(source: sp.csr_matrix, counts: sp.csr_matrix, columns: np.ndarray) -> np.ndarray:
    """(U, L): for each user (a row of ``source``) and candidate column, the largest ``counts[s, column]`` over the
    user's source items s (0 for an empty history)."""
    out = np.zeros(columns.shape, dtype=np.float64)
    for u in range(source.shape[0]):
        items = source.indices[source.indptr[u] : source.indptr[u + 1]]
        if len(items):
            out[u] = counts[items][:, columns[u]].max(axis=0).toarray().ravel()
    return out


class Signals:
    """Deep and memorisation scores of users, and the candidate lists with their ranking features.

    ``wide`` is the chosen memorisation term (it proposes candidates and enters the fusion); ``others`` are the
    other memorisation families, each at its best setting on validation, as extra ranking features; ``counts`` are
    the raw co-occurrence counts (for the strongest single link of the history to a candidate)."""

    block = 256  # users per block when building lists (the dense users × items temporaries stay small)

    def __init__(
        self,
        deep: Any,
        wide: MatrixBaseline,
        exclude: sp.csr_matrix,
        popularity: np.ndarray,
        source_history: np.ndarray,
        fusion_weight: float = 1.0,
        *,
        others: dict[str, MatrixBaseline] | None = None,
        counts: sp.csr_matrix | None = None,
    ) -> None:
        self.deep, self.wide, self.exclude = deep, wide, exclude
        self.others = dict(others or {})
        self.counts = (counts if counts is not None else wide.weights).tocsr()
        self.popularity = popularity
        self.log_pop = np.log1p(popularity) / max(np.log1p(popularity.max()), 1.0)
        self.source_history = source_history
        self.support_matrix = wide.weights.copy().tocsr()
        self.support_matrix.data[:] = 1.0
        self.fusion_weight = fusion_weight
        self.features = feature_names(list(self.others))

    def scores(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        deep = np.asarray(self.deep.score(rows), dtype=np.float64)
        wide = self.memorised(self.wide, rows)
        owned = self.exclude[rows].toarray().astype(bool)
        deep[owned] = -np.inf
        wide[owned] = -np.inf
        return deep, wide

    def memorised(self, model: MatrixBaseline, rows: np.ndarray) -> np.ndarray:
        return np.asarray((model.source[rows] @ model.weights).todense(), dtype=np.float64)

    def fused(self, deep: np.ndarray, wide: np.ndarray, weight: float) -> np.ndarray:
        finite = np.isfinite(deep)
        d = standardize(np.where(finite, deep, 0.0))
        w = standardize(np.where(finite, np.log1p(np.maximum(wide, 0.0)), 0.0))
        return np.where(finite, d + weight * w, -np.inf)

    def lists(self, rows: np.ndarray, n: int) -> Lists:
        """The candidate lists of ``rows`` with the features named by ``self.features``, in that order.

        The exported ``recommend`` signature computes the same in TensorFlow
        (:mod:`tfrec_xcat.export.ranking_features`); a change here needs the same change there (the parity test
        of ``tests/test_recommend.py`` fails until both agree)."""
        rows = np.asarray(rows)
        parts = [self._lists(rows[i : i + self.block], n) for i in range(0, len(rows), self.block)]
        if not parts:
            return self._lists(rows, n)
        return Lists(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Lists)))

    def _lists(self, rows: np.ndarray, n: int) -> Lists:
        deep, wide = self.scores(rows)
        others = {name: self.memorised(model, rows) for name, model in self.others.items()}
        for other in others.values():
            other[~np.isfinite(deep)] = -np.inf
        deep_order, wide_order = order_of(deep), order_of(wide)
        n = min(n, deep.shape[1])
        both = np.concatenate([deep_order[:, :n], wide_order[:, :n]], axis=1)
        both.sort(axis=1)
        mask = np.ones(both.shape, dtype=bool)
        mask[:, 1:] = both[:, 1:] != both[:, :-1]
        idx = np.arange(len(rows))[:, None]
        mask &= np.isfinite(deep[idx, both])
        wide_f = np.where(np.isfinite(wide), wide, 0.0)
        deep_f = np.where(np.isfinite(deep), deep, -1.0)
        log_items = np.log(max(deep.shape[1], 2))
        deep_rank, wide_rank = ranks_of(deep_order)[idx, both], ranks_of(wide_order)[idx, both]
        d, w = deep_f[idx, both], wide_f[idx, both]
        source = self.wide.source[rows]
        support = np.asarray((source @ self.support_matrix).todense())[idx, both]
        columns = [
            d,
            d - deep_f.max(axis=1, keepdims=True),
            np.log1p(deep_rank) / log_items,
            relative(wide_f)[idx, both],
            np.log1p(np.maximum(w, 0.0)),
            np.log1p(wide_rank) / log_items,
            np.log1p(support),
            self.log_pop[both],
            np.broadcast_to(np.log1p(self.source_history[rows])[:, None], both.shape),
            np.log1p(max_per_history(source, self.counts, both)),
        ]
        for other in others.values():
            columns.append(relative(np.where(np.isfinite(other), other, 0.0))[idx, both])
            columns.append(np.log1p(ranks(other)[idx, both]) / log_items)
        feats = np.stack(columns, axis=-1).astype(np.float32)
        fallback = self.fused(deep, wide, self.fusion_weight).astype(np.float32)
        return Lists(both, feats, mask, fallback, np.minimum(deep_rank, wide_rank))


def popularity_of(m: SplitMatrices) -> np.ndarray:
    """Training interactions per target item."""
    return np.asarray(m.target.sum(axis=0)).ravel().astype(np.float64)


def labels_of(lists: Lists, truth: sp.csr_matrix) -> np.ndarray:
    """1 where a candidate is one of the user's held-out items."""
    return (np.take_along_axis(truth.toarray(), lists.columns, axis=1) > 0) & lists.mask


class Transfer(Recommender):
    """The shipped ``transfer`` model (see the module docstring)."""

    grid: ClassVar[list[dict[str, Any]]] = [{}]
    deep_class: ClassVar[type[NeuralModel]] = TransferWideDeep

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        # ``tfrec-xcat train`` sets these: where the two-tower checkpoints (default ``<workdir>/deep``), and the
        # trainer's ``strategy`` / ``progress``
        self.deep_workdir: Path | None = None
        self.trainer_options: dict[str, Any] = {}
        self.new_item_slots, self.new_item_window, self.new_item_order = 0, NEW_ITEM_WINDOW, "mix"
        self.content: ContentIndex | None = None  # the slots' text profile (None: no item text, or order "deep")

    def _say(self, text: str) -> None:
        log.info("%s", text)
        if self.trainer_options.get("progress"):
            from tfrec_xcat.training.progress import say

            say(f"[transfer] {text}")

    def fit(self, prepared: PreparedSeed) -> None:
        spec = prepared.config.ranker
        self.new_item_slots, self.new_item_window = spec.new_item_slots, spec.new_item_window
        self.new_item_order = spec.new_item_order
        new_fraction = unseen_share(prepared) if spec.pseudo_new_fraction == "auto" else spec.pseudo_new_fraction
        reduced, pseudo_rows = pseudo_cold_split(prepared, spec.pseudo_cold_fraction, float(new_fraction))
        if self.deep_workdir is not None:
            reduced = dataclasses.replace(reduced, workdir=self.deep_workdir)
        m = prepared.m
        choices: dict[str, Any] = {"pseudo_new_fraction": float(new_fraction)}

        # wide: each memorisation family at its best setting on validation, fitted on the reduced data; the best
        # family is the memorisation term, the others are ranking features
        families: dict[str, tuple[float, MatrixBaseline, dict[str, Any]]] = {}
        for name in spec.wide:
            cls = WIDE_MODELS[name]
            for params in cls.grid:
                model = cls(**params)
                model.fit(reduced)
                value = prepared.validate(model.score)
                if name not in families or value > families[name][0]:
                    families[name] = (value, model, params)
        wide_name = max(families, key=lambda name: families[name][0])
        # each again on ALL training users, for scoring: on sparse data every overlap user counts
        full: dict[str, MatrixBaseline] = {}
        for name, (_, _, params) in families.items():
            full[name] = WIDE_MODELS[name](**params)
            full[name].fit(prepared)
        wide, reduced_wide, wide_params = full[wide_name], families[wide_name][1], families[wide_name][2]
        wide_val = prepared.validate(wide.score)
        choices["wide"] = {"model": wide_name, "params": wide_params, "val": wide_val}
        choices["wide_families"] = {name: {"params": p, "val": v} for name, (v, _, p) in families.items()}
        self._say(f"memorisation term: {wide_name} {wide_params} (cold-start val NDCG@10 {wide_val:.4f})")
        others = [name for name in families if name != wide_name]
        counts = {key: overlap_counts(p.m) for key, p in (("reduced", reduced), ("full", prepared))}

        # deep: the transfer two-tower on the reduced data
        deep = self.deep_class()
        deep.trainer_options = self.trainer_options
        deep.fit(reduced)
        self.deep, self.wide = deep, wide
        self.history = list(deep.history)
        self.examples_per_second = getattr(deep, "examples_per_second", None)
        deep_val = prepared.validate(deep.score)
        choices["deep"] = {"val": deep_val}

        history = np.asarray(m.source.getnnz(axis=1))
        # the ranking stage learns from the pseudo cold-start users' lists as the reduced data shows them, and
        # scores everyone else with the signals of all training data
        train_signals = Signals(
            deep,
            reduced_wide,
            reduced.m.target,
            popularity_of(reduced.m),
            history,
            others={name: families[name][1] for name in others},
            counts=counts["reduced"],
        )
        signals = Signals(
            deep,
            wide,
            m.target,
            popularity_of(m),
            history,
            others={name: full[name] for name in others},
            counts=counts["full"],
        )
        self.signals = signals

        # fusion: weight on validation
        best: tuple[float, str, dict[str, Any]] = (deep_val if "deep" in spec.stages else -np.inf, "deep", {})
        if "wide" in spec.stages and wide_val > best[0]:
            best = (wide_val, "wide", {})
        if "fusion" in spec.stages:
            fusion = {w: prepared.validate(lambda rows, w=w: self._fused_scores(rows, w)) for w in spec.fusion_weights}
            choices["fusion"] = {str(k): v for k, v in fusion.items()}
            signals.fusion_weight = max(fusion, key=fusion.__getitem__)  # also orders items outside the lists
            if fusion[signals.fusion_weight] > best[0]:
                best = (fusion[signals.fusion_weight], "fusion", {"weight": signals.fusion_weight})

        # ranking stage: per candidate size, trained on pseudo cold-start users
        self.rankers: dict[int, Any] = {}
        if "ranker" in spec.stages and reduced.m.truth[PSEUDO_COLD].nnz:
            truth = reduced.m.truth[PSEUDO_COLD]
            ranker_choices = {}
            # the lists of the largest N once; a smaller N keeps the candidates its first stage proposes
            longest = max(spec.candidates)
            train_all = train_signals.lists(pseudo_rows, longest)
            val_all = self._validation_lists(prepared, longest)
            for n in spec.candidates:
                train_lists = train_all.within(n)
                labels = labels_of(train_lists, truth[pseudo_rows])
                validate = self._list_validator(prepared, n, val_all)
                ranker, value, epochs = self._train_ranker(
                    spec, train_lists, labels, prepared, signals.features, validate
                )
                if ranker is None:
                    continue
                self.rankers[n] = ranker
                ranker_choices[str(n)] = {"val": value, "epochs": epochs, "train_users": int(labels.any(1).sum())}
                if value > best[0]:
                    best = (value, "ranker", {"candidates": n})
            choices["ranker"] = ranker_choices
        self.stage, self.stage_params = best[1], best[2]
        choices["chosen"] = {"stage": self.stage, **self.stage_params, "val": best[0]}
        if self.new_item_order != "deep":
            self.content, choices["content"] = self._fit_content(prepared)
        self.choices = choices
        self._say(f"final scorer: {self.stage} {self.stage_params} (cold-start val NDCG@10 {best[0]:.4f})")

    def _fit_content(self, prepared: PreparedSeed) -> tuple[ContentIndex | None, dict[str, Any]]:
        """The slots' text profile: ``content_knn``'s index at its best setting on cold-start validation users
        (None when no item has a usable text)."""
        from tfrec_xcat.baselines.content_knn import ContentKnn

        best: tuple[float, ContentIndex | None, dict[str, Any]] = (-np.inf, None, {})
        for params in CONTENT_GRID:
            model = ContentKnn(**params)
            model.fit(prepared)
            if model.index is None:
                return None, {"params": None}
            value = prepared.validate(model.score)
            if value > best[0]:
                best = (value, model.index, params)
        self._say(f"new-arrival slots' text profile: {best[2]} (cold-start val NDCG@10 {best[0]:.4f})")
        return best[1], {"params": best[2], "val": best[0]}

    def content_scores(self, rows: np.ndarray) -> np.ndarray | None:
        """(U, T) cosines of the users' text profiles (their training history in both categories, each item
        once) with every target item; None without a text profile."""
        if self.content is None:
            return None
        source = (self.wide.source[rows] != 0).astype(np.float64)
        target = (self.signals.exclude[rows] != 0).astype(np.float64)
        return self.content.scores(source, target).toarray()

    def _fused_scores(self, rows: np.ndarray, weight: float) -> np.ndarray:
        deep, wide = self.signals.scores(rows)
        return np.where(np.isfinite(deep), self.signals.fused(deep, wide, weight), -1e9)

    def _train_ranker(
        self,
        spec: RankerSpec,
        lists: Lists,
        labels: np.ndarray,
        prepared: PreparedSeed,
        features: tuple[str, ...],
        validate: Callable[[Any], float],
    ) -> tuple[Any, float, list[int]]:
        from tfrec_xcat.models.ranker import ListwiseRanker, RankerEnsemble, fit_listwise

        keep = labels.any(axis=1)  # lists without a held-out item carry no listwise signal
        if not keep.any():
            return None, -np.inf, []
        members, epochs = [], []
        for member in range(spec.ensemble):
            seed = prepared.seed * 1000 + member
            ranker = ListwiseRanker(spec.hidden, n_features=len(features), seed=seed)
            _, best_epoch = fit_listwise(
                ranker,
                lists.features[keep],
                labels[keep],
                lists.mask[keep],
                epochs=spec.epochs,
                patience=spec.patience,
                learning_rate=spec.learning_rate,
                validate=lambda ranker=ranker: validate(ranker),
                seed=seed,
            )
            members.append(ranker)
            epochs.append(best_epoch)
        ensemble = RankerEnsemble(members)
        value = validate(ensemble)
        return ensemble, value, epochs

    def _validation_lists(self, prepared: PreparedSeed, n: int) -> tuple[np.ndarray, Lists]:
        """The cold-start validation users with ground truth (as the evaluator takes them) and their lists."""
        rows = segment_rows(prepared.m, "cold_start_val")
        return rows, self.signals.lists(rows, n)

    def _list_validator(
        self, prepared: PreparedSeed, n: int, validation: tuple[np.ndarray, Lists]
    ) -> Callable[[Any], float]:
        """The selection metric of a ranker over ``n`` candidates per list on cold-start validation users
        (:meth:`PreparedSeed.validate` of :meth:`_ranked_scores`), from the validation users' lists of
        :meth:`_validation_lists` (of ``n`` or more), computed on the lists alone when every list is long enough
        for that to be exact (:func:`~tfrec_xcat.evaluation.metrics.list_ndcg`)."""
        m = prepared.m
        truth = m.truth["cold_start_val"]
        rows, lists = validation[0], validation[1].within(n)
        exact = SELECTION_METRIC == "ndcg@10" and int(lists.mask.sum(axis=1).min(initial=10)) >= 10
        cache = {rows.tobytes(): lists}

        def validate(ranker: Any) -> float:
            if not exact:
                return prepared.validate(lambda block: self._ranked_scores(block, ranker, n, cache))
            logits = ranker.predict_lists(lists.features)
            per_user = list_ndcg(lists.columns, logits, lists.mask, truth[rows], m.target[rows])
            return float(per_user.mean()) if len(per_user) else 0.0

        return validate

    def _ranked_scores(
        self, rows: np.ndarray, ranker: Any, n: int, cache: dict[bytes, Lists] | None = None
    ) -> np.ndarray:
        key = np.asarray(rows).tobytes()
        if cache is not None and key in cache:
            lists = cache[key]
        else:
            lists = self.signals.lists(rows, n)
            if cache is not None:
                cache[key] = lists
        logits = ranker.predict_lists(lists.features)
        scores = np.where(np.isfinite(lists.fallback), lists.fallback - 1e4, -1e9)
        user = np.broadcast_to(np.arange(len(rows))[:, None], lists.columns.shape)
        scores[user[lists.mask], lists.columns[lists.mask]] = logits[lists.mask]
        return scores

    def ablations(self) -> dict[str, Any]:
        """A scorer per part, for the report's ablation table (each part as fitted inside this model)."""
        parts: dict[str, Any] = {"deep": self.deep.score, "wide": self.wide.score}
        if "fusion" in self.choices:
            parts["fusion"] = lambda rows: self._fused_scores(rows, self.signals.fusion_weight)
        if self.rankers:
            n = int(max(self.choices["ranker"].items(), key=lambda kv: kv[1]["val"])[0])
            parts["ranker"] = lambda rows: self._ranked_scores(rows, self.rankers[n], n)
        return parts

    def score(self, rows: np.ndarray) -> np.ndarray:
        staged = self._stage_scores(rows)
        if not self.new_item_slots:
            return staged
        # the deep stage's scores are the two-tower's already
        deep = np.array(staged if self.stage == "deep" else self.deep.score(rows), np.float64)
        # the user's own items first leave the ranking and the slots' order (as the exported graph has them)
        owned = self.signals.exclude[rows].toarray() > 0
        staged = np.asarray(staged, np.float64).copy()
        staged[owned] = -np.inf
        deep[owned] = -np.inf
        new = self.signals.popularity == 0
        warm = owned.any(axis=1)  # users with target-category history (the exported graph: owned items)
        order = slot_order(deep, self.content_scores(rows), new, self.new_item_order, warm)
        return reserve(staged, order, new, self.new_item_slots, self.new_item_window)

    def _stage_scores(self, rows: np.ndarray) -> np.ndarray:
        if self.stage == "deep":
            return self.deep.score(rows)
        if self.stage == "wide":
            return self.wide.score(rows)
        if self.stage == "fusion":
            return self._fused_scores(rows, self.signals.fusion_weight)
        n = self.stage_params["candidates"]
        return self._ranked_scores(rows, self.rankers[n], n)

    def predict_ratings(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The deep model's rating head (the ranking stage orders items; it does not predict stars)."""
        return self.deep.predict_ratings(rows, cols)
