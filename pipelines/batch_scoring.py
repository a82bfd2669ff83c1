"""Batch scoring as an Apache Beam pipeline (``pip install 'tfrec-xcat[beam]'``): the same shards as
``tfrec-xcat score``, for when one machine is not enough.

    python pipelines/batch_scoring.py --model saved_models/xcat_retrieval --data DIR --users all --k 100 \\
        --out OUT_DIR [--runner DirectRunner|DataflowRunner|FlinkRunner|SparkRunner ...]

Users are batched into the local command's shards; each shard is one element. Workers load the SavedModel once
(``DoFn.setup``), score a shard with the very code of the local command, and write it whole then rename it into
place, so the output is identical to ``tfrec-xcat score``'s, and a re-run skips finished shards. Any other flag
is a Beam pipeline option. See docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from tfrec_xcat.data.load import load_shop
from tfrec_xcat.scoring.batch import (
    histories,
    item_lists,
    load_retrieval,
    plan_key,
    read_users,
    score_block,
    write_shard,
)
from tfrec_xcat.scoring.index import build_index


class ScoreShard(beam.DoFn):
    """Scores one shard of users; the model is loaded (and its item index built) once per worker."""

    def __init__(self, model: str, version: int | None, k: int, out: str, index: str = "brute") -> None:
        self.model, self.version, self.k, self.out, self.index_kind = model, version, k, out, index
        self.retrieval: Any = None
        self.index: Any = None

    def setup(self) -> None:
        self.retrieval = load_retrieval(self.model, self.version)
        self.index = build_index(self.index_kind, self.retrieval.vectors, self.k)

    def process(self, element: tuple[int, list[str], list[list[str]], list[list[str]]]) -> Any:
        shard, users, hist, owned = element
        out = Path(self.out)
        if (out / f"part-{shard:05d}.parquet").is_file():  # finished by an earlier run
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
        write_shard(table, out, shard)
        yield {"shard": shard, "users": len(users), "fallback": fallback, "skipped": False}


def shards(data: Any, users: np.ndarray, block: int) -> list[tuple[int, list[str], list[list[str]], list[list[str]]]]:
    out = []
    lists = item_lists(data)
    for shard in range((len(users) + block - 1) // block):
        chunk = users[shard * block : (shard + 1) * block]
        hist, owned = histories(lists, chunk)
        out.append((shard, [str(u) for u in chunk], hist, [list(map(str, o)) for o in owned]))
    return out


def run(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", type=int)
    parser.add_argument("--data", required=True)
    parser.add_argument("--format", default="auto")
    parser.add_argument("--users", default="all")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--index", choices=["brute", "scann"], default="brute")
    parser.add_argument("--out", required=True)
    args, beam_args = parser.parse_known_args(argv)

    data = load_shop(args.data, fmt=args.format)
    users, unknown = read_users(args.users, data)
    if unknown:
        print(f"{len(unknown):,} user(s) not in the data, scored by the cold-start/popularity path", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    retrieval = load_retrieval(args.model, args.version)
    key = plan_key(users, args.k, args.block, retrieval, args.index)
    plan = out / "_PLAN.json"
    if plan.is_file() and json.loads(plan.read_text())["key"] != key:
        raise SystemExit(f"{out} holds scores of other users, k or model; use another --out or empty it")
    settings = {"key": key, "users": len(users), "k": args.k, "block": args.block, "index": args.index}
    plan.write_text(json.dumps(settings))
    elements = shards(data, users, args.block)
    with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
        (
            pipeline
            | "Shards" >> beam.Create(elements)
            | "Reshuffle" >> beam.Reshuffle()  # spread shards over workers
            | "Score" >> beam.ParDo(ScoreShard(args.model, args.version, args.k, args.out, args.index))
        )
    manifest = {
        "users": len(users),
        "k": args.k,
        "shards": len(elements),
        "unknown_users": len(unknown),
        "model": str(retrieval.path),
        "runner": "beam",
    }
    (out / "_SUCCESS").write_text(json.dumps(manifest, indent=2))
    return manifest


if __name__ == "__main__":
    run()
