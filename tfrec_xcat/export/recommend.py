"""The retrieve → rank stage of the shipped ``transfer`` as a graph: from the two-tower's scores to the final
ranking, exactly as ``Transfer.score`` computes it in NumPy (:mod:`tfrec_xcat.training.hybrid`).

It has two halves, so ``tfrec-xcat reindex`` can edit the catalogue around the same stage:

- :class:`StageSpec`, what does not depend on the catalogue: the chosen stage, the fusion weight, the candidates
  N, the ranking features and memorisation families, the model's source items, the ranker ensemble's weights;
- :class:`RankColumns`, one row per catalogue item: its column of every memorisation family's W and of the raw
  co-occurrence counts (source items × this item), its popularity feature and the wide stage's tie-break. A new
  item has empty columns and popularity 0 (no training interactions: no memorisation); a removed item's row goes.

Given a batch's deep scores (the wide & deep two-tower), the user's source items (multi-hot) and their own
catalogue items, :meth:`RetrieveRankGraph.scores` returns the (B, T) scores of the chosen stage:

- ``deep``: the two-tower's scores;
- ``wide``: the memorisation term ``multi-hot source history × W`` (one sparse-dense product) plus the popularity
  tie-break its baseline adds;
- ``fusion``: standardised deep + w · standardised log1p(wide);
- ``ranker``: the candidate lists and their features (:mod:`tfrec_xcat.export.ranking_features`: every family's
  scores, the strongest co-occurrence link), each ensemble member's normalisation + MLP, their mean logit; then
  the candidates by that logit and every other item by its fused score - 1e4.

With ``[ranker] new_item_slots`` > 0, :func:`reserve_graph` then gives positions ``window - slots + 1 .. window``
to the user's best new items (popularity 0: the catalogue items no training interaction reached, and every item
``reindex`` adds), as :func:`tfrec_xcat.training.new_arrivals.reserve` does in-process, in the order of
:func:`slot_order_graph`: the two-tower's score, the cosine of the item's text with the user's text profile
(:class:`~tfrec_xcat.features.content.ContentIndex`: the source items' term vectors are in the stage, each
catalogue item's in its row, so ``reindex`` vectorises a new item's text with the stored vocabulary), or both.

The user's own items are -inf in every stage (never recommended). Scores are float64 (the NumPy precision of
wide and fusion; deep and ranker are float32 values), so the ordering is the in-process one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from tfrec_xcat.export.ranking_features import candidate_lists, check_features, fused, max_link
from tfrec_xcat.features.content import ContentIndex
from tfrec_xcat.features.space import FeatureSpace
from tfrec_xcat.models.ranking_spec import NEW_ITEM_WINDOW, check_slots
from tfrec_xcat.training.shipped import RankerWeights, RetrieveRank

OUTSIDE_LISTS = 1e4  # Transfer._ranked_scores: items outside the candidate lists sit this far below any logit
EPSILON = 1e-7  # the Keras Normalization layer's floor on the standard deviation


@dataclass
class StageSpec:
    """The catalogue-independent half of the stage (see the module docstring)."""

    stage: str  # deep | wide | fusion | ranker
    fusion_weight: float
    candidates: int  # N per first-stage list (ranker stage)
    features: list[str]  # the ranking features, in order (ranker stage)
    families: list[str]  # memorisation families held as columns: the chosen one first, then the others
    source_column: np.ndarray  # [n_items + 1] int32: model item index → source column of W, -1 for none
    n_source: int
    members: list[RankerWeights]
    new_item_slots: int = 0  # positions of the top new_item_window kept for new items (new_arrivals)
    new_item_window: int = NEW_ITEM_WINDOW
    new_item_order: str = "deep"  # mix | deep | content (new_arrivals.slot_order)
    # the text profile's vocabulary, weighting and source items' term vectors (its target_terms are unused: each
    # catalogue item's are in RankColumns.content_terms); None when the items have no text
    content: ContentIndex | None = None


@dataclass
class RankColumns:
    """The catalogue half: one row per catalogue item (see the module docstring)."""

    memorisation: list[sp.csr_matrix]  # per family of StageSpec.families: (n_rows, n_source) W columns
    counts: sp.csr_matrix  # (n_rows, n_source) raw co-occurrence counts (empty unless the stage is ranker)
    log_popularity: np.ndarray  # (n_rows,) float64: log1p(popularity) / max(log1p(max training popularity), 1)
    tiebreak: np.ndarray  # (n_rows,) float64: the wide stage's popularity tie-break
    content_terms: sp.csr_matrix | None = None  # (n_rows, V): each item's text term vector (StageSpec.content)

    def edited(self, keep: np.ndarray, added: int, added_terms: sp.csr_matrix | None = None) -> RankColumns:
        """The rows ``keep`` (in that order), then ``added`` new items: empty columns, popularity 0, and (with a
        text profile) the term vectors ``added_terms`` of their texts."""

        def rows(matrix: sp.csr_matrix, new: sp.csr_matrix | None = None) -> sp.csr_matrix:
            new = sp.csr_matrix((added, matrix.shape[1]), dtype=matrix.dtype) if new is None else new
            return sp.vstack([matrix.tocsr()[keep], new], format="csr")

        zeros = np.zeros(added, np.float64)
        return RankColumns(
            memorisation=[rows(w) for w in self.memorisation],
            counts=rows(self.counts),
            log_popularity=np.concatenate([self.log_popularity[keep], zeros]),
            tiebreak=np.concatenate([self.tiebreak[keep], zeros]),
            content_terms=None if self.content_terms is None else rows(self.content_terms, added_terms),
        )


def stage_of(part: RetrieveRank, space: FeatureSpace) -> tuple[StageSpec, RankColumns]:
    """The two halves of a trained run's retrieve → rank stage, its catalogue being every target item."""
    source_items = space.items_of(space.source)
    n_source, n_target = len(source_items), len(space.items_of(space.target))
    if part.weights.shape != (n_source, n_target):
        raise ValueError(
            f"the memorisation matrix is {part.weights.shape}, the feature space has {n_source} source × "
            f"{n_target} target items: the run's files do not belong together"
        )
    source_column = np.full(space.n_items + 1, -1, dtype=np.int32)
    source_column[source_items] = np.arange(n_source, dtype=np.int32)
    ranker = part.stage == "ranker"
    families: dict[str, sp.csr_matrix] = {}  # the chosen family first (the wide and fusion stages read it)
    if part.stage != "deep":
        families[str(part.wide.get("model", "wide"))] = part.weights
    if ranker:
        n_features = part.members[0].kernels[0].shape[0] if part.members else 0
        check_features(part.features, list(part.others), n_features)
        families.update(part.others)
    counts = part.counts if ranker and part.counts is not None else sp.csr_matrix((n_source, n_target))
    pop = np.asarray(part.popularity, np.float64)
    spec = StageSpec(
        stage=part.stage,
        fusion_weight=float(part.fusion_weight),
        candidates=int(part.candidates),
        features=list(part.features) if ranker else [],
        families=list(families),
        source_column=source_column,
        n_source=n_source,
        members=list(part.members) if ranker else [],
        new_item_slots=int(part.new_item_slots),
        new_item_window=int(part.new_item_window),
        new_item_order=str(part.new_item_order),
        content=part.content,
    )
    content = part.content
    if content is not None and content.source_terms.shape[0] != n_source:
        raise ValueError(f"the text profile has {content.source_terms.shape[0]} source items, the model {n_source}")
    columns = RankColumns(
        memorisation=[w.T.tocsr() for w in families.values()],
        counts=counts.T.tocsr(),
        log_popularity=np.log1p(pop) / max(np.log1p(pop.max(initial=0.0)), 1.0),
        tiebreak=np.asarray(part.tiebreak, np.float64),
        content_terms=None if content is None else content.target_terms.tocsr(),
    )
    return spec, columns


def _variable(value: np.ndarray, name: str, dtype: tf.DType) -> tf.Variable:
    return tf.Variable(tf.constant(np.asarray(value), dtype), trainable=False, name=name)


def reserve_graph(scores: tf.Tensor, deep: tf.Tensor, new: tf.Tensor, slots: int, window: int) -> tf.Tensor:
    """:func:`tfrec_xcat.training.new_arrivals.reserve` in stock TensorFlow ops: (B, T) float64 ``scores``, the
    two-tower's (B, T) ``deep`` scores and the (T,) bool ``new`` mask; ``slots`` and ``window`` are fixed when
    the graph is traced."""
    check_slots(slots, window)
    if slots == 0:
        return scores
    width = tf.shape(scores)[1]
    head_n = tf.minimum(window - slots, width)
    take = tf.minimum(slots, width)
    head = tf.math.top_k(scores, k=head_n)
    batch = tf.shape(scores)[0]
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(head.indices))
    cells = tf.stack([rows, head.indices], axis=-1)
    in_head = tf.scatter_nd(cells, tf.ones_like(head.indices), tf.shape(scores)) > 0
    finite_head = tf.reduce_min(tf.where(tf.math.is_finite(head.values), head.values, math.inf), axis=1)
    low = tf.where(tf.math.is_finite(finite_head), finite_head, tf.zeros_like(finite_head))
    minus_inf = tf.constant(-math.inf, tf.float64)
    eligible = new[None, :] & ~in_head & tf.math.is_finite(scores)
    candidates = tf.where(eligible, tf.cast(deep, tf.float64), minus_inf)
    picks = tf.math.top_k(candidates, k=take)
    out = tf.where(in_head, scores, scores - float(slots + 1))
    values = low[:, None] - 1.0 - tf.cast(tf.range(take), tf.float64)[None, :]
    valid = tf.where(tf.math.is_finite(picks.values))  # (M, 2): batch row, slot
    pick_rows = tf.cast(valid[:, 0], tf.int32)
    targets = tf.stack([pick_rows, tf.gather_nd(picks.indices, valid)], axis=1)
    return tf.tensor_scatter_nd_update(out, targets, tf.gather_nd(values, valid))


def new_z_graph(scores: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """:func:`tfrec_xcat.training.new_arrivals.new_z`: (B, T) float64 per-row z-scores over the finite cells of
    the ``new`` columns, -inf elsewhere."""
    cells = new[None, :] & tf.math.is_finite(scores)
    count = tf.maximum(tf.reduce_sum(tf.cast(cells, tf.float64), axis=1, keepdims=True), 1.0)
    values = tf.where(cells, scores, tf.zeros_like(scores))
    mean = tf.reduce_sum(values, axis=1, keepdims=True) / count
    spread = tf.where(cells, values - mean, tf.zeros_like(scores))
    std = tf.sqrt(tf.reduce_sum(spread * spread, axis=1, keepdims=True) / count)
    z = tf.where(std > 0, spread / tf.where(std > 0, std, 1.0), tf.zeros_like(spread))
    return tf.where(cells, z, tf.constant(-math.inf, tf.float64))


def slot_order_graph(
    deep: tf.Tensor, content: tf.Tensor | None, new: tf.Tensor, order: str, warm: tf.Tensor | None = None
) -> tf.Tensor:
    """:func:`tfrec_xcat.training.new_arrivals.slot_order` in stock TensorFlow ops ((B, T) float64; ``warm``:
    (B,) bool)."""
    if order == "deep" or content is None:
        return deep
    content = tf.where(tf.math.is_finite(deep), content, tf.constant(-math.inf, tf.float64))
    if order == "content":
        return content
    text = new_z_graph(content, new)
    if warm is not None:
        text = tf.where(warm[:, None], text, tf.zeros_like(text))
    return new_z_graph(deep, new) + text


def _csr_variables(module: tf.Module, prefix: str, matrix: sp.csr_matrix) -> None:
    matrix = sp.csr_matrix(matrix, dtype=np.float64)
    matrix.sort_indices()
    setattr(module, f"{prefix}_indptr", _variable(matrix.indptr, f"{prefix}_indptr", tf.int64))
    setattr(module, f"{prefix}_indices", _variable(matrix.indices, f"{prefix}_indices", tf.int64))
    setattr(module, f"{prefix}_values", _variable(matrix.data, f"{prefix}_values", tf.float64))


def _csr_of(loaded: object, prefix: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """The CSR matrix :func:`_csr_variables` stored under ``prefix`` in a loaded module."""
    parts = (getattr(loaded, f"{prefix}_{part}").numpy() for part in ("values", "indices", "indptr"))
    return sp.csr_matrix(tuple(parts), shape=shape)


class CsrRows(NamedTuple):
    """A CSR matrix as three tensors (int64 indptr and column indices, float64 values)."""

    indptr: tf.Tensor
    indices: tf.Tensor
    values: tf.Tensor


def _csr_rows(module: object, prefix: str) -> CsrRows:
    return CsrRows(*(getattr(module, f"{prefix}_{part}") for part in CsrRows._fields))


def _terms_of(rows: CsrRows, pairs: tf.Tensor, n_terms: int) -> tuple[tf.Tensor, tf.Tensor]:
    """For (M, 2) (user, item row) ``pairs``: the flat keys ``user · n_terms + term`` and the weights of every
    term of each item's row of ``rows``."""
    items = pairs[:, 1]
    positions = tf.ragged.range(tf.gather(rows.indptr, items), tf.gather(rows.indptr, items + 1))
    at = positions.flat_values
    user = tf.gather(pairs[:, 0], positions.value_rowids())
    return user * n_terms + tf.gather(rows.indices, at), tf.gather(rows.values, at)


def content_graph(
    source: CsrRows, target: CsrRows, profile: str, n_terms: int, hot: tf.Tensor, owned: tf.Tensor
) -> tf.Tensor:
    """:meth:`tfrec_xcat.features.content.ContentIndex.scores` in stock TensorFlow ops: (B, T) float64 cosines of
    each user's text profile (the source items of the (B, S) multi-hot ``hot`` and the catalogue items of the
    (B, T) bool ``owned``, each once) with every catalogue item; ``source`` / ``target`` hold the (S, V) and
    (T, V) L2-normalised term vectors, ``profile`` is ``sum`` or ``max``."""
    batch = tf.shape(hot, out_type=tf.int64)[0]
    n_target = tf.shape(target.indptr, out_type=tf.int64)[0] - 1
    source_keys, source_values = _terms_of(source, tf.where(hot > 0), n_terms)
    target_keys, target_values = _terms_of(target, tf.where(owned), n_terms)
    keys = tf.concat([source_keys, target_keys], axis=0)
    values = tf.concat([source_values, target_values], axis=0)
    cells = batch * n_terms
    if profile == "sum":
        vector = tf.math.unsorted_segment_sum(values, keys, cells)
    else:  # max; a cell no term reaches gets the lowest float
        vector = tf.maximum(tf.math.unsorted_segment_max(values, keys, cells), 0.0)
    vector = tf.reshape(vector, tf.stack([batch, n_terms]))
    norm = tf.sqrt(tf.reduce_sum(vector * vector, axis=1, keepdims=True))
    vector = vector / tf.where(norm > 0, norm, 1.0)
    rows = tf.ragged.row_splits_to_segment_ids(target.indptr, out_type=tf.int64)
    terms = tf.sparse.SparseTensor(
        tf.stack([rows, target.indices], axis=1), target.values, tf.stack([n_target, n_terms])
    )
    return tf.transpose(tf.sparse.sparse_dense_matmul(terms, vector, adjoint_b=True))


class RetrieveRankGraph(tf.Module):
    """The chosen final stage of ``transfer`` over (B, T) deep scores; its variables hold both halves, so
    :func:`spec_of` and :func:`columns_of` read them back from a loaded version."""

    def __init__(self, spec: StageSpec, columns: RankColumns, n_target: int) -> None:
        super().__init__()
        if spec.stage == "ranker":
            check_features(spec.features, spec.families[1:], spec.members[0].kernels[0].shape[0])
        self.spec, self.n_target = spec, n_target
        self.stage_name = tf.Variable(spec.stage, trainable=False, name="stage")
        self.fusion_weight = tf.Variable(float(spec.fusion_weight), dtype=tf.float64, trainable=False, name="fusion")
        self.candidates = tf.Variable(int(spec.candidates), dtype=tf.int32, trainable=False, name="candidates")
        self.features = tf.Variable(tf.constant(spec.features, tf.string, [len(spec.features)]), trainable=False)
        self.families = tf.Variable(tf.constant(spec.families, tf.string, [len(spec.families)]), trainable=False)
        self.source_column = _variable(spec.source_column, "source_column", tf.int32)
        self.n_source = tf.Variable(int(spec.n_source), dtype=tf.int32, trainable=False, name="n_source")
        self.new_item_slots = tf.Variable(int(spec.new_item_slots), dtype=tf.int32, trainable=False, name="slots")
        self.new_item_window = tf.Variable(int(spec.new_item_window), dtype=tf.int32, trainable=False, name="window")
        self.n_members = tf.Variable(len(spec.members), dtype=tf.int32, trainable=False, name="members")
        self.n_layers = tf.Variable(
            len(spec.members[0].kernels) if spec.members else 0, dtype=tf.int32, trainable=False, name="layers"
        )
        for m, member in enumerate(spec.members):
            setattr(self, f"member{m}_mean", _variable(member.mean, f"member{m}_mean", tf.float32))
            setattr(self, f"member{m}_variance", _variable(member.variance, f"member{m}_variance", tf.float32))
            for i, (kernel, bias) in enumerate(zip(member.kernels, member.biases, strict=True)):
                setattr(self, f"member{m}_kernel{i}", _variable(kernel, f"member{m}_kernel{i}", tf.float32))
                setattr(self, f"member{m}_bias{i}", _variable(bias, f"member{m}_bias{i}", tf.float32))
        # the catalogue half: each family's W columns (catalogue row × source item, for one sparse-dense product
        # with the multi-hot history), the counts as CSR rows, the per-item arrays
        if len(columns.memorisation) != len(spec.families):
            raise ValueError(f"{len(columns.memorisation)} memorisation families' columns for {spec.families}")
        for f, matrix in enumerate(columns.memorisation):
            coo = matrix.tocoo()
            order = np.lexsort((coo.col, coo.row))
            indices = np.stack([coo.row[order], coo.col[order]], axis=1).astype(np.int64).reshape(-1, 2)
            setattr(self, f"family{f}_indices", _variable(indices, f"family{f}_indices", tf.int64))
            setattr(self, f"family{f}_values", _variable(coo.data[order], f"family{f}_values", tf.float64))
        _csr_variables(self, "counts", columns.counts)
        self.log_popularity = _variable(columns.log_popularity, "log_popularity", tf.float64)
        self.tiebreak = _variable(columns.tiebreak, "wide_tiebreak", tf.float64)
        self.new_item_order = tf.Variable(spec.new_item_order, trainable=False, name="new_item_order")
        content = spec.content
        if content is not None:
            if columns.content_terms is None or columns.content_terms.shape != (n_target, content.n_terms):
                raise ValueError(f"a text profile of {content.n_terms} terms without every catalogue item's vector")
            self.content_vocabulary = tf.Variable(
                tf.constant(content.vocabulary, tf.string, [content.n_terms]), trainable=False
            )
            self.content_idf = _variable(content.idf, "content_idf", tf.float64)
            self.content_weighting = tf.Variable(content.weighting, trainable=False, name="content_weighting")
            self.content_profile = tf.Variable(content.profile, trainable=False, name="content_profile")
            self.content_sublinear = tf.Variable(bool(content.sublinear_tf), trainable=False, name="content_sublinear")
            self.content_mean_length = tf.Variable(
                float(content.mean_length), dtype=tf.float64, trainable=False, name="content_mean_length"
            )
            _csr_variables(self, "content_source", content.source_terms)
            _csr_variables(self, "content_target", columns.content_terms)

    def _product(self, family: int, hot: tf.Tensor, *, support: bool = False) -> tf.Tensor:
        """(B, T) ``hot @ W_family`` (``support``: with every stored link as 1, as ``Signals.support_matrix``)."""
        indices, values = getattr(self, f"family{family}_indices"), getattr(self, f"family{family}_values")
        values = tf.ones_like(values) if support else values
        matrix = tf.sparse.SparseTensor(indices, values, [self.n_target, self.spec.n_source])
        return tf.transpose(tf.sparse.sparse_dense_matmul(matrix, hot, adjoint_b=True))

    def logits(self, features: tf.Tensor) -> tf.Tensor:
        """(B, L) the ensemble's mean logit of (B, L, F) float32 features (each member as ``ListwiseRanker``)."""
        total = None
        for m, member in enumerate(self.spec.members):
            x = (features - getattr(self, f"member{m}_mean")) / tf.maximum(
                tf.sqrt(getattr(self, f"member{m}_variance")), EPSILON
            )
            layers = len(member.kernels)
            for i in range(layers):
                x = tf.tensordot(x, getattr(self, f"member{m}_kernel{i}"), [[2], [0]])
                x = tf.nn.bias_add(x, getattr(self, f"member{m}_bias{i}"))
                if i < layers - 1:
                    x = tf.nn.relu(x)
            logit = x[..., 0]
            total = logit if total is None else total + logit
        assert total is not None
        return total / len(self.spec.members)

    def scores(self, deep: tf.Tensor, hot: tf.Tensor, owned: tf.Tensor) -> tf.Tensor:
        """(B, T) float64 final scores from the two-tower's (B, T) ``deep`` scores, the (B, n_source) float64
        multi-hot source history ``hot`` and the (B, T) bool ``owned`` catalogue items: the chosen stage's, then
        the new-arrival slots (if any)."""
        staged = self.stage_scores(deep, hot, owned)
        spec = self.spec
        if not spec.new_item_slots:
            return staged
        new = tf.equal(self.log_popularity, 0.0)
        deep = tf.where(owned, tf.constant(-math.inf, tf.float64), tf.cast(deep, tf.float64))
        content = (
            self.content_scores(hot, owned) if spec.content is not None and spec.new_item_order != "deep" else None
        )
        warm = tf.reduce_any(owned, axis=1)  # the user has items of the target category
        order = slot_order_graph(deep, content, new, spec.new_item_order, warm)
        return reserve_graph(staged, order, new, spec.new_item_slots, spec.new_item_window)

    def content_scores(self, hot: tf.Tensor, owned: tf.Tensor) -> tf.Tensor:
        """(B, T) float64 text-profile cosines (:func:`content_graph` of the stored term vectors)."""
        content = self.spec.content
        assert content is not None
        source, target = _csr_rows(self, "content_source"), _csr_rows(self, "content_target")
        return content_graph(source, target, content.profile, content.n_terms, hot, owned)

    def stage_scores(self, deep: tf.Tensor, hot: tf.Tensor, owned: tf.Tensor) -> tf.Tensor:
        """(B, T) float64 scores of the chosen stage (see :meth:`scores`)."""
        stage = self.spec.stage
        minus_inf = tf.constant(-math.inf, tf.float64)
        deep = tf.where(owned, minus_inf, tf.cast(deep, tf.float64))
        if stage == "deep":
            return deep
        wide = tf.where(owned, minus_inf, self._product(0, hot))
        if stage == "wide":
            return wide + self.tiebreak[None, :]
        fusion = fused(deep, wide, self.spec.fusion_weight)
        if stage == "fusion":
            return fusion
        support = self._product(0, hot, support=True)
        others = {name: self._product(f, hot) for f, name in enumerate(self.spec.families[1:], start=1)}
        history = tf.reduce_sum(hot, axis=1)

        def link(columns: tf.Tensor) -> tf.Tensor:
            return max_link(*_csr_rows(self, "counts"), hot, columns)

        columns, mask, features = candidate_lists(
            deep, wide, support, others, link, self.log_popularity, history, self.spec.candidates
        )
        logits = self.logits(features)  # (B, L) float32
        fallback = tf.cast(fusion, tf.float32)
        outside = tf.where(tf.math.is_finite(fallback), fallback - OUTSIDE_LISTS, -math.inf)
        where = tf.where(mask)  # (M, 2): batch row, list position
        rows = tf.cast(where[:, 0], tf.int32)
        cells = tf.stack([rows, tf.gather_nd(columns, where)], axis=1)
        ranked = tf.tensor_scatter_nd_update(outside, cells, tf.gather_nd(logits, where))
        return tf.cast(ranked, tf.float64)


def _text(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def spec_of(loaded: object) -> StageSpec:
    """The :class:`StageSpec` held by a loaded version's ``retrieve_rank`` child."""
    members, layers = int(loaded.n_members.numpy()), int(loaded.n_layers.numpy())

    def array(name: str) -> np.ndarray:
        return getattr(loaded, name).numpy()

    return StageSpec(
        stage=loaded.stage_name.numpy().decode("utf-8"),
        fusion_weight=float(loaded.fusion_weight.numpy()),
        candidates=int(loaded.candidates.numpy()),
        features=_text(loaded.features.numpy()),
        families=_text(loaded.families.numpy()),
        source_column=array("source_column").astype(np.int32),
        n_source=int(loaded.n_source.numpy()),
        # versions written before the new-arrival slots have none
        new_item_slots=int(loaded.new_item_slots.numpy()) if hasattr(loaded, "new_item_slots") else 0,
        new_item_window=int(loaded.new_item_window.numpy()) if hasattr(loaded, "new_item_window") else NEW_ITEM_WINDOW,
        new_item_order=loaded.new_item_order.numpy().decode() if hasattr(loaded, "new_item_order") else "deep",
        content=_content_of(loaded),
        members=[
            RankerWeights(
                mean=array(f"member{m}_mean"),
                variance=array(f"member{m}_variance"),
                kernels=[array(f"member{m}_kernel{i}") for i in range(layers)],
                biases=[array(f"member{m}_bias{i}") for i in range(layers)],
            )
            for m in range(members)
        ],
    )


def _content_of(loaded: object) -> ContentIndex | None:
    """The text profile of a loaded stage (its ``target_terms`` empty: they are the catalogue's columns)."""
    if not hasattr(loaded, "content_vocabulary"):  # no text profile, or written before it
        return None
    vocabulary = _text(loaded.content_vocabulary.numpy())
    return ContentIndex(
        vocabulary=vocabulary,
        weighting=loaded.content_weighting.numpy().decode(),
        sublinear_tf=bool(loaded.content_sublinear.numpy()),
        idf=loaded.content_idf.numpy().astype(np.float64),
        mean_length=float(loaded.content_mean_length.numpy()),
        profile=loaded.content_profile.numpy().decode(),
        source_terms=_csr_of(loaded, "content_source", (int(loaded.n_source.numpy()), len(vocabulary))),
        target_terms=sp.csr_matrix((0, len(vocabulary))),
    )


def columns_of(loaded: object, n_rows: int, n_source: int) -> RankColumns:
    """The :class:`RankColumns` held by a loaded version's ``retrieve_rank`` child (``n_rows`` catalogue items)."""
    shape = (n_rows, n_source)
    families = []
    for f in range(len(loaded.families.numpy())):
        indices = getattr(loaded, f"family{f}_indices").numpy().reshape(-1, 2)
        values = getattr(loaded, f"family{f}_values").numpy()
        families.append(sp.csr_matrix((values, (indices[:, 0], indices[:, 1])), shape=shape))
    content_terms = None
    if hasattr(loaded, "content_vocabulary"):
        content_terms = _csr_of(loaded, "content_target", (n_rows, len(loaded.content_vocabulary.numpy())))
    return RankColumns(
        memorisation=families,
        counts=_csr_of(loaded, "counts", shape),
        log_popularity=loaded.log_popularity.numpy().astype(np.float64),
        tiebreak=loaded.tiebreak.numpy().astype(np.float64),
        content_terms=content_terms,
    )
