"""``tfrec-xcat reindex``: a new ``xcat_retrieval`` version whose catalogue adds, replaces or drops items, without
retraining.

The newest ``xcat_retrieval`` version is loaded; its restored ``encoder`` (the user side, see
:class:`~tfrec_xcat.export.servables.RetrievalEncoder`) is kept as it is, and its catalogue variables (ids,
vectors, popularity, prior, co-occurrence rows) are read back and edited:

- a new item is embedded by the newest ``xcat_item_tower`` version with the same ``model_fingerprint`` (the same
  trained weights), from its category and text (its id is unknown to the model, as for any new item). It has no
  training interactions: popularity 0 and no co-occurrence row, so the memorisation term adds nothing for it; its
  prior is :func:`unseen_prior`;
- ``replace``: an item already in the catalogue gets the vector of its new text and keeps its popularity, prior
  and co-occurrence row (its interactions are still the model's);
- a removed item leaves every array, and its model item no longer maps to a row.

A version with the ``recommend`` signature (the retrieve → rank stage of ``transfer``) is republished with it:
the stage itself (chosen stage, ranker ensemble, the model's source items) is carried over unchanged, and its
catalogue columns are edited like the rest: a new item gets an empty column in every memorisation family's W and
in the co-occurrence counts, and popularity 0 (so the memorisation terms and the ranking stage's memorisation
features see nothing for it, while the deep score sees its vector); a replaced item keeps its columns; a removed
item's columns go, so it is never in a ``recommend`` answer. With the new-arrival slots' text profile in the stage,
an added or replaced item's text is vectorised with the stage's stored vocabulary and weights
(:meth:`~tfrec_xcat.features.content.ContentIndex.vectorize`), as the run vectorised the catalogue.

The new version is written by :func:`~tfrec_xcat.export.writer.write_version` (a hidden folder renamed into
place), numbered one above every version in the folder, so a server polling it switches from the complete old
version to the complete new one. Only stock TensorFlow ops, as in every export. ``xcat_ranking`` is not
republished: it scores candidates it knows by id, and reports a new item as not ``known``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec_xcat.data.neutral import read_item_file
from tfrec_xcat.errors import XcatError
from tfrec_xcat.export.loading import load_saved_model
from tfrec_xcat.export.recommend import StageSpec, columns_of, spec_of
from tfrec_xcat.export.servables import SERVABLES, Catalogue, CatalogueRetrieval
from tfrec_xcat.export.writer import next_version, versions, write_version
from tfrec_xcat.features.content import ContentIndex
from tfrec_xcat.models.ranking_spec import check_slots

log = logging.getLogger(__name__)

RETRIEVAL = "xcat_retrieval"
ITEM_TOWER = "xcat_item_tower"
EMBED_BATCH = 1024
#: Rows named in a one-line error, at most.
NAMED = 3


@dataclass
class ReindexResult:
    """What a reindex published."""

    path: Path  # the new version's folder
    version: int
    previous: int  # the version it was built from
    added: int
    replaced: int
    removed: int
    items: int  # catalogue size of the new version
    item_tower_version: int | None  # the version that embedded the new texts (None when nothing was embedded)
    new_item_prior: float | None  # the prior the added items got (wide & deep models)
    new_item_slots: int | None = None  # the recommend signature's new-arrival slots (None: no recommend)


def _text(values: np.ndarray) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _bytes(values: Any) -> np.ndarray:
    return np.array([str(v).encode("utf-8") for v in values], dtype=object)


def stage_spec_of(loaded: Any) -> StageSpec | None:
    """The retrieve → rank stage of a loaded ``xcat_retrieval`` version (None without ``recommend``)."""
    return spec_of(loaded.retrieve_rank) if hasattr(loaded, "retrieve_rank") else None


def catalogue_of(loaded: Any, where: Path) -> Catalogue:
    """The catalogue held by a loaded ``xcat_retrieval`` version (with the recommend stage's columns)."""
    needed = ("encoder", "target_ids", "target_vectors", "popularity", "target_column")
    if not all(hasattr(loaded, name) for name in needed) or not hasattr(loaded.encoder, "user_ids"):
        raise XcatError(
            f"{where}: exported before tfrec-xcat reindex existed (no encoder and catalogue in it); "
            "export the run again (tfrec-xcat export), then reindex"
        )
    catalogue = Catalogue(
        item_ids=_text(loaded.target_ids.numpy()),
        vectors=loaded.target_vectors.numpy().astype(np.float32),
        popularity=loaded.popularity.numpy().astype(np.float32),
        model_row=loaded.target_column.numpy().astype(np.int32),
    )
    if hasattr(loaded, "item_prior"):
        indices = loaded.counts_indices.numpy().reshape(-1, 2)
        shape = (len(catalogue.item_ids), len(catalogue.model_row))
        catalogue.prior = loaded.item_prior.numpy().astype(np.float32)
        catalogue.alpha = float(loaded.alpha.numpy())
        catalogue.counts = sp.coo_matrix((loaded.counts_values.numpy(), (indices[:, 0], indices[:, 1])), shape=shape)
    if hasattr(loaded, "retrieve_rank"):
        n_source = int(loaded.retrieve_rank.n_source.numpy())
        catalogue.rank = columns_of(loaded.retrieve_rank, len(catalogue.item_ids), n_source)
    return catalogue


def unseen_prior(catalogue: Catalogue) -> float:
    """The prior a new item gets: the mean learned prior of the catalogue items with the fewest training
    interactions (those with none, when there are: what the model learned for items it never saw as a positive).

    The learned prior follows popularity; a new item has no interactions, so it gets what the least popular items
    got rather than a neutral 0 or the average item's prior. Training gives the catalogue items it never saw this
    same kind of value (:meth:`~tfrec_xcat.models.xcat.XcatModel.settle_unseen_items`), and when the catalogue has
    such items (popularity 0) their prior is what a new item gets: exactly what the run gave them, even when the
    two-tower was trained on fewer interactions than the catalogue's popularity counts (the shipped ``transfer``).
    Items added by an earlier reindex (popularity 0) got this value, so reindexing again keeps it."""
    assert catalogue.prior is not None
    least = catalogue.popularity == catalogue.popularity.min()
    return float(catalogue.prior[least].mean())


def edit_catalogue(
    catalogue: Catalogue,
    added: dict[str, np.ndarray],
    replaced: dict[str, np.ndarray],
    removed: set[str],
    model_index: dict[str, int],
    content: ContentIndex | None = None,
    texts: dict[str, str] | None = None,
) -> tuple[Catalogue, float | None]:
    """The catalogue with ``removed`` ids dropped, ``replaced`` ids (id → vector) re-embedded and ``added`` ids
    (id → vector) appended; ``model_index`` maps added ids the model knows (an item re-added after a removal) to
    their model index, so a user who has them is still not recommended them. With a text profile ``content``, the
    added and replaced items' term vectors come from their ``texts`` (id → text). Returns it and the added items'
    prior (None without a wide term)."""
    keep = np.flatnonzero(~np.isin(catalogue.item_ids, list(removed)))
    ids = np.concatenate([catalogue.item_ids[keep], np.asarray(list(added), dtype=object)]).astype(object)
    new_ids = list(added)
    dim = catalogue.vectors.shape[1]
    vectors = np.concatenate([catalogue.vectors[keep], np.asarray([added[i] for i in new_ids]).reshape(-1, dim)])
    position = {item: row for row, item in enumerate(ids)}
    for item, vector in replaced.items():
        vectors[position[item]] = vector
    popularity = np.concatenate([catalogue.popularity[keep], np.zeros(len(new_ids), np.float32)])
    new_row = np.full(len(catalogue.item_ids), -1, np.int32)
    new_row[keep] = np.arange(len(keep), dtype=np.int32)
    model_row = np.where(catalogue.model_row >= 0, new_row[np.maximum(catalogue.model_row, 0)], -1).astype(np.int32)
    for item in new_ids:
        if model_index.get(item, 0) > 0:
            model_row[model_index[item]] = position[item]
    edited = Catalogue(ids, vectors.astype(np.float32), popularity.astype(np.float32), model_row)
    if catalogue.rank is not None:  # empty memorisation columns, popularity 0
        texts = texts or {}
        if content is None or catalogue.rank.content_terms is None:
            edited.rank = catalogue.rank.edited(keep, len(new_ids))
        else:  # the added and replaced items' term vectors, from their texts
            terms = content.vectorize([texts.get(i, "") for i in new_ids])
            edited.rank = catalogue.rank.edited(keep, len(new_ids), terms)
            if replaced:
                rows = edited.rank.content_terms.tolil()
                again = content.vectorize([texts.get(i, "") for i in replaced])
                for item, row in zip(replaced, again, strict=True):
                    rows[position[item]] = row
                edited.rank.content_terms = rows.tocsr()
    prior = None
    if catalogue.wide:
        assert catalogue.prior is not None and catalogue.counts is not None
        prior = unseen_prior(catalogue)
        edited.prior = np.concatenate([catalogue.prior[keep], np.full(len(new_ids), prior, np.float32)])
        edited.alpha = catalogue.alpha
        counts = catalogue.counts.tocsr()[keep]
        edited.counts = sp.vstack([counts, sp.csr_matrix((len(new_ids), counts.shape[1]), dtype=counts.dtype)]).tocoo()
    return edited, prior


def _one_line(problems: list[str], what: str) -> str:
    more = f" (and {len(problems) - NAMED} more)" if len(problems) > NAMED else ""
    return f"{'; '.join(problems[:NAMED])}{more}; {what}"


def _read(path: str | Path, *, with_category: bool, text_columns: list[str] | None) -> pd.DataFrame:
    """The rows of an items (or removal) file; any bad row is a one-line error naming its file and line."""
    rows, report = read_item_file(path, text_columns=text_columns, with_category=with_category)
    problems = report.problems()
    if problems:
        total = sum(n for counts in report.counts.values() for n in counts.values())
        listed = [str(p) for p in problems]
        raise XcatError(f"{_one_line(listed, f'{total} bad row(s) in {path}')}; nothing was published")
    return rows


def _item_tower(models: Path, fingerprint: str) -> tuple[Any, int]:
    """The newest ``xcat_item_tower`` version of the same trained weights as the catalogue."""
    found = versions(models / ITEM_TOWER)
    for version in reversed(found):
        loaded = load_saved_model(str(models / ITEM_TOWER / str(version)))
        if hasattr(loaded, "fingerprint") and loaded.fingerprint.numpy().decode() == fingerprint:
            return loaded, version
    raise XcatError(
        f"{models / ITEM_TOWER}: no version from the same training as {RETRIEVAL} "
        f"(versions {', '.join(map(str, found)) or 'none'}); export the run again"
    )


def embed(item_tower: Any, rows: pd.DataFrame) -> np.ndarray:
    """Item-tower vectors of ``rows`` (item_id, category, text). A model trained with precomputed item vectors
    (``[data] vector_columns``) embeds the new items without them (NaN: no vector), from id, category and text."""
    import tensorflow as tf

    serve = item_tower.signatures["serving_default"]
    vectors = serve.structured_input_signature[1].get("vectors")
    out = []
    for start in range(0, len(rows), EMBED_BATCH):
        part = rows.iloc[start : start + EMBED_BATCH]
        inputs = {
            "item_id": tf.constant(_bytes(part["item_id"])),
            "category": tf.constant(_bytes(part["category"])),
            "text": tf.constant(_bytes(part["text"])),
        }
        if vectors is not None:
            inputs["vectors"] = tf.fill([len(part), vectors.shape[1]], float("nan"))
        result = serve(**inputs)
        out.append(result["embedding"].numpy().astype(np.float32))
    return np.concatenate(out)


def warmup_of(version_dir: Path) -> dict[str, np.ndarray]:
    """The warm-up request of an earlier version (it fits the same encoder), or a minimal one."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    try:
        record = next(iter(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()))
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        if set(inputs) == {"user_id", "history", "k"}:
            return inputs
    except (StopIteration, tf.errors.OpError, ValueError):
        pass
    return {
        "user_id": np.array([b"unknown-user"], dtype=object),
        "history": np.array([[b""]], dtype=object),
        "k": np.array([10], np.int32),
    }


def _removals(dropping: pd.DataFrame, remove: str | Path, present: set[str], label: str) -> set[str]:
    unknown = [
        f"{remove}:{r.line}: item {r.item_id} is not in the catalogue"
        for r in dropping.itertuples()
        if r.item_id not in present
    ]
    if unknown:
        raise XcatError(
            _one_line(unknown, f"{len(unknown)} unknown id(s) in --remove ({label}); nothing was published")
        )
    return set(dropping["item_id"])


def _check_additions(
    adding: pd.DataFrame,
    items: str | Path,
    present: set[str],
    removed: set[str],
    category: str,
    *,
    replace: bool,
    label: str,
) -> pd.Series:
    """One-line errors for rows that cannot be added; returns which rows replace an item already there."""
    problems = [
        f"{items}:{r.line}: item {r.item_id} is in category {r.category!r}, not the catalogue's {category!r}"
        for r in adding.itertuples()
        if r.category != category
    ]
    if problems:
        raise XcatError(_one_line(problems, f"{label} ranks {category} items only; nothing was published"))
    both = [
        f"{items}:{r.line}: item {r.item_id} is also in --remove" for r in adding.itertuples() if r.item_id in removed
    ]
    if both:
        raise XcatError(_one_line(both, "an item cannot be added and removed at once; nothing was published"))
    existing = adding["item_id"].isin(present)
    if existing.any() and not replace:
        named = [
            f"{items}:{r.line}: item {r.item_id} is already in the catalogue" for r in adding[existing].itertuples()
        ]
        what = f"{int(existing.sum())} existing id(s) ({label}); --replace updates them; nothing was published"
        raise XcatError(_one_line(named, what))
    return existing


def _publish(module: CatalogueRetrieval, models: Path, warmup: dict[str, np.ndarray]) -> tuple[Path, int]:
    """Write ``module`` as the next version of ``xcat_retrieval`` (hidden folder, then one rename)."""
    version = next_version(models, list(SERVABLES))
    try:
        return write_version(module, models, RETRIEVAL, version, warmup), version
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise XcatError(
                f"{models / RETRIEVAL / str(version)} appeared while reindexing (another export or reindex); run again"
            ) from None
        raise XcatError(f"{models / RETRIEVAL}: cannot publish version {version}: {exc.strerror or exc}") from None


def _with_slots(spec: StageSpec | None, slots: int | None, label: str) -> StageSpec | None:
    """``spec`` with ``slots`` new-arrival slots (None: unchanged); a one-line error where it cannot have them."""
    if slots is None:
        return spec
    if spec is None:
        raise XcatError(
            f"--new-item-slots: {label} has no recommend signature (the slots order transfer's retrieve → rank "
            "stage; export a run trained with tfrec-xcat train); nothing was published"
        )
    try:
        check_slots(slots, spec.new_item_window)
    except ValueError as exc:
        raise XcatError(f"--new-item-slots: {exc}; nothing was published") from None
    return dataclasses.replace(spec, new_item_slots=int(slots))


def reindex(
    models: str | Path,
    items: str | Path | None = None,
    *,
    remove: str | Path | None = None,
    replace: bool = False,
    text_columns: list[str] | None = None,
    new_item_slots: int | None = None,
) -> ReindexResult:
    """Publish a new ``xcat_retrieval`` version: the newest one's catalogue with ``items`` added (or, with
    ``replace``, re-embedded) and the ids of ``remove`` dropped; ``new_item_slots`` sets the ``recommend``
    signature's new-arrival slots (:mod:`tfrec_xcat.training.new_arrivals`; None keeps them). See the module
    docstring. Every problem is a one-line :class:`XcatError`, raised before anything is written."""
    models = Path(models)
    if items is None and remove is None and new_item_slots is None:
        raise XcatError(
            "nothing to do: give --items FILE (items to add), --remove FILE (items to drop) and/or --new-item-slots N"
        )
    found = versions(models / RETRIEVAL)
    if not found:
        raise XcatError(f"{models / RETRIEVAL}: no exported versions (run tfrec-xcat export first)")
    previous = found[-1]
    where = models / RETRIEVAL / str(previous)
    adding = _read(items, with_category=True, text_columns=text_columns) if items is not None else None
    dropping = _read(remove, with_category=False, text_columns=[]) if remove is not None else None
    loaded = load_saved_model(str(where))
    catalogue = catalogue_of(loaded, where)
    encoder = loaded.encoder
    label = f"{RETRIEVAL} version {previous}"
    present = set(catalogue.item_ids)

    removed = _removals(dropping, remove, present, label) if dropping is not None and remove is not None else set()
    added: dict[str, np.ndarray] = {}
    replaced: dict[str, np.ndarray] = {}
    texts: dict[str, str] = {}
    tower_version = None
    if adding is not None and items is not None:
        category = encoder.catalogue_category.numpy().decode()
        existing = _check_additions(adding, items, present, removed, category, replace=replace, label=label)
        tower, tower_version = _item_tower(models, encoder.fingerprint.numpy().decode())
        vectors = embed(tower, adding)
        if vectors.shape[1] != catalogue.vectors.shape[1]:
            raise XcatError(
                f"{models / ITEM_TOWER} version {tower_version}: {vectors.shape[1]}-dimensional vectors, "
                f"the catalogue has {catalogue.vectors.shape[1]}"
            )
        for item, vector, old in zip(adding["item_id"], vectors, existing, strict=True):
            (replaced if old else added)[item] = vector
        texts = dict(zip(adding["item_id"], adding["text"].astype(str), strict=True))
    if len(present) - len(removed) + len(added) == 0:
        raise XcatError(f"--remove {remove}: would leave {RETRIEVAL} with no items; nothing was published")

    known = {item: i for i, item in enumerate(_text(encoder.item_ids.numpy()), start=1)} if added else {}
    spec = stage_spec_of(loaded)
    content = spec.content if spec is not None else None
    edited, prior = edit_catalogue(
        catalogue, added, replaced, removed, {i: known[i] for i in added if i in known}, content, texts
    )
    stage = _with_slots(spec, new_item_slots, label)
    module = CatalogueRetrieval(encoder, edited, stage)
    path, version = _publish(module, models, warmup_of(where))
    log.info("published %s (%d added, %d replaced, %d removed)", path, len(added), len(replaced), len(removed))
    return ReindexResult(
        path=path,
        version=version,
        previous=previous,
        added=len(added),
        replaced=len(replaced),
        removed=len(removed),
        items=len(edited.item_ids),
        item_tower_version=tower_version,
        new_item_prior=prior if added else None,
        new_item_slots=stage.new_item_slots if stage is not None else None,
    )
