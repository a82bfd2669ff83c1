"""``tfrec-xcat export --run RUN_DIR --out saved_models/``: the three servables of a trained run (``xcat_retrieval``
with the ``recommend`` signature when the run has the retrieve → rank stage of ``transfer``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from tfrec_xcat.export.artifacts import load_stage, load_trained
from tfrec_xcat.export.servables import SERVABLES, RetrievalServable
from tfrec_xcat.export.writer import next_version, publish_set, recover, write_server_configs, write_version

log = logging.getLogger(__name__)


def warmup_inputs(space: Any, *, with_vectors: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """A small, valid request per servable (two users: one known, one unknown), for TF Serving warm-up;
    ``with_vectors``: the item tower takes the items' precomputed vectors too."""
    user = str(space.users[0])
    target = np.asarray(space.items)[space.items_of(space.target)[:3] - 1].astype(str)
    source = np.asarray(space.items)[space.items_of(space.source)[:2] - 1].astype(str)
    history = np.array([[source[0], source[1]], ["", ""]], dtype=object).astype(bytes)
    item_tower: dict[str, np.ndarray] = {
        "item_id": target[:2].astype(bytes),
        "category": np.array([space.target] * 2).astype(bytes),
        "text": np.array([b"stainless steel pan", b""]),
    }
    if with_vectors:  # the stored vectors of those items
        item_tower["vectors"] = space.item_vectors[space.item_index(target[:2])].astype(np.float32)
    return {
        "xcat_retrieval": {
            "user_id": np.array([user, "unknown-user"]).astype(bytes),
            "history": history,
            "k": np.array([10, 10], np.int32),
        },
        "xcat_ranking": {
            "user_id": np.array([user, "unknown-user"]).astype(bytes),
            "history": history,
            "candidates": np.array([target, target]).astype(bytes),
        },
        "xcat_item_tower": item_tower,
    }


def export(run_dir: str | Path, out: str | Path, *, names: list[str] | None = None) -> dict[str, Path]:
    """Export the trained model of ``run_dir``; returns ``{servable name: version path}``.

    Every servable is written and staged before any is published, so a kill while writing publishes nothing; the
    set is then renamed into place, and a kill among those renames is completed by the next export's
    :func:`recover`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for message in recover(out):
        log.warning("%s", message)
    model, space, _ = load_trained(run_dir)
    stage = load_stage(run_dir)
    names = names or list(SERVABLES)
    version = next_version(out, names)
    inputs = warmup_inputs(space, with_vectors=bool(model.item_tower.vector_columns))
    for name in names:
        module = RetrievalServable(model, space, stage) if name == "xcat_retrieval" else SERVABLES[name](model, space)
        staged = write_version(module, out, name, version, inputs[name], publish=False)
        log.info("staged %s", staged)
    written = publish_set(out, names, version)
    for path in written.values():
        log.info("wrote %s", path)
    write_server_configs(out, list(SERVABLES))
    return written
