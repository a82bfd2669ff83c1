"""Batch scoring as an Apache Beam pipeline (``pip install 'tfrec-xcat[beam]'``): the shards of
``tfrec-xcat score``, for when one machine is not enough. Its command line is the launcher
``pipelines/batch_scoring.py`` (docs/scale.md); this module holds the pipeline, :func:`run_pipeline`.

The driver reads the data with the same :class:`~tfrec_xcat.config.Config` as ``tfrec-xcat score`` and batches
the users into that command's shards; each shard is one element. Workers load the SavedModel once
(``DoFn.setup``), score a shard with the very code of the local command, and write it whole then rename it into
place, so the output is identical to ``score``'s and a re-run skips finished shards.

Paths: ``out`` (and ``model``) may be URLs (``gs://bucket/x``): the output goes through Beam's ``FileSystems`` and
the model through TensorFlow's file systems; they are never turned into ``pathlib`` paths (which would make
``gs://b/x`` into ``gs:/b/x``). A local ``out`` is written with fsync before each rename. This module lives in
the package so that workers can import it once the package is installed on them (``--setup_file
./pyproject.toml``, see docs/scale.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from tfrec_xcat.config import Config
from tfrec_xcat.errors import XcatError
from tfrec_xcat.scoring.batch import (
    check_settings,
    claim_output,
    finished,
    histories,
    is_url,
    item_lists,
    load_retrieval,
    plan_key,
    read_users,
    score_block,
    write_atomically,
    write_shard,
)
from tfrec_xcat.scoring.index import build_index

log = logging.getLogger(__name__)

Element = tuple[int, list[str], list[list[str]], list[list[str]]]


# ------------------------------------------------------------------------------------ output locations
def shard_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def _read(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


def _write(path: str, data: bytes | pa.Table) -> None:
    """Write ``path`` whole through Beam's file systems: to a uniquely named temporary object, then renamed
    (an object store's rename is a copy; a reader never sees a partial shard under the final name)."""
    folder, name = FileSystems.split(path)
    tmp = FileSystems.join(folder, f".{name}.tmp-{uuid.uuid4().hex}")
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        if isinstance(data, pa.Table):
            pq.write_table(data, handle)
        else:
            handle.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])


def shard_done(out: str, shard: int, users: int) -> bool:
    """Whether an earlier run finished this shard (an unreadable or empty one is scored again)."""
    if not is_url(out):
        return finished(Path(out) / shard_name(shard), users)
    path = FileSystems.join(out, shard_name(shard))
    if not FileSystems.exists(path):
        return False
    try:
        rows = pq.ParquetFile(io.BytesIO(_read(path))).metadata.num_rows
    except Exception as exc:  # pyarrow raises several types for a damaged file
        log.warning("%s: unreadable (%s); scoring this shard again", path, exc)
        return False
    return rows > 0 or users == 0


def save_shard(table: pa.Table, out: str, shard: int) -> None:
    if is_url(out):
        _write(FileSystems.join(out, shard_name(shard)), table)
    else:
        write_shard(table, Path(out), shard)


def save_file(out: str, name: str, text: str) -> None:
    if is_url(out):
        _write(FileSystems.join(out, name), text.encode())
    else:
        write_atomically(Path(out) / name, text.encode())


def claim(out: str, key: str, settings: dict[str, Any]) -> None:
    """As :func:`~tfrec_xcat.scoring.batch.claim_output` (the same rules), for a URL too."""
    if not is_url(out):
        claim_output(Path(out), key, settings)
        return
    with contextlib.suppress(OSError):  # exists (object stores have no folders to create)
        FileSystems.mkdirs(out)
    plan = FileSystems.join(out, "_PLAN.json")
    if FileSystems.exists(plan):
        try:
            old = json.loads(_read(plan))["key"]
        except (OSError, ValueError, KeyError, TypeError):
            old = None
        shards = FileSystems.match([FileSystems.join(out, "part-*.parquet")])[0].metadata_list
        if old != key and shards:
            why = "holds scores of other users, k or model" if old else "has shards but an unreadable _PLAN.json"
            raise XcatError(f"{out} {why}; use another --out or empty it")
    _write(plan, json.dumps({"key": key, **settings}).encode())


# ------------------------------------------------------------------------------------------- the DoFn
class ScoreShard(beam.DoFn):
    """Scores one shard of users; the model is loaded (and its item index built) once per worker."""

    def __init__(self, model: str, version: int, k: int, out: str, index: str = "brute") -> None:
        self.model, self.version, self.k, self.out, self.index_kind = model, version, k, out, index
        self.retrieval: Any = None
        self.index: Any = None

    def setup(self) -> None:
        self.retrieval = load_retrieval(self.model, self.version)
        self.index = build_index(self.index_kind, self.retrieval.vectors, self.k)

    def process(self, element: Element) -> Iterator[dict[str, Any]]:
        shard, users, hist, owned = element
        if shard_done(self.out, shard, len(users)):  # finished by an earlier run
            yield {"shard": shard, "users": len(users), "fallback": 0, "skipped": True}
            return
        table, fallback, _ = score_block(
            self.retrieval,
            np.asarray(users, dtype=object),
            hist,
            [np.asarray(o, dtype=object) for o in owned],
            self.k,
            self.index,
        )
        save_shard(table, self.out, shard)
        yield {"shard": shard, "users": len(users), "fallback": fallback, "skipped": False}


def shards(data: Any, users: np.ndarray, block: int) -> list[Element]:
    out = []
    lists = item_lists(data)
    for shard in range((len(users) + block - 1) // block):
        chunk = users[shard * block : (shard + 1) * block]
        hist, owned = histories(lists, chunk)
        out.append((shard, [str(u) for u in chunk], hist, [list(map(str, o)) for o in owned]))
    return out


# ------------------------------------------------------------------------------------------ the pipeline
def run_pipeline(
    config: Config,
    model: str | Path,
    out: str | Path,
    *,
    users: str = "all",
    k: int = 100,
    version: int | None = None,
    block: int = 4096,
    index: str = "brute",
    pipeline_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Score ``users`` of the configured data into ``out`` with a Beam pipeline, to completion (the shards of
    :func:`tfrec_xcat.api.score`; the same arguments, plus ``pipeline_args``: Beam pipeline options such as
    ``--runner DataflowRunner``).

    Returns:
        The manifest also written to ``OUT/_SUCCESS`` (``unknown_users``: ids not in the data, scored by the
        cold-start/popularity path).
    """
    from tfrec_xcat.pipeline import load_data

    check_settings(k, block)  # before the data is read
    out = str(out)
    data = load_data(config)
    ids, unknown = read_users(users, data)
    retrieval = load_retrieval(model, version)  # fails early, and fixes the version for every worker
    key = plan_key(ids, k, block, retrieval, index)
    claim(out, key, {"users": len(ids), "k": k, "block": block, "index": index})
    elements = shards(data, ids, block)
    location = str(model) if is_url(model) else str(Path(model).resolve())
    with beam.Pipeline(options=PipelineOptions(list(pipeline_args))) as pipeline:
        (
            pipeline
            | "Shards" >> beam.Create(elements)
            | "Reshuffle" >> beam.Reshuffle()  # spread shards over workers
            | "Score" >> beam.ParDo(ScoreShard(location, retrieval.version, k, out, index))
        )
    manifest = {
        "users": len(ids),
        "k": k,
        "shards": len(elements),
        "unknown_users": len(unknown),
        "model": str(retrieval.path),
        "runner": "beam",
    }
    save_file(out, "_SUCCESS", json.dumps(manifest, indent=2))
    return manifest
