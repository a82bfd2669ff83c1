"""Launcher of the Beam batch-scoring pipeline, which lives in the package (:mod:`tfrec_xcat.scoring.beam`) so
that workers can import it: this file parses the flags (the data flags are ``tfrec-xcat``'s own, from
:mod:`tfrec_xcat.options`) and runs the pipeline. See docs/scale.md.

    python pipelines/batch_scoring.py --model saved_models/xcat_retrieval --data DIR --users all --k 100 \\
        --out OUT [--config CONFIG.toml] [--runner DirectRunner|DataflowRunner|FlinkRunner|SparkRunner ...]

Any flag not listed here is a Beam pipeline option.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from tfrec_xcat.options import add_data_options, config_from_args, one_line_errors
from tfrec_xcat.scoring.beam import run_pipeline

PROG = "batch_scoring"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Batch scoring as an Apache Beam pipeline.")
    add_data_options(parser)
    parser.add_argument("--model", required=True, help="exported xcat_retrieval folder (local or URL)")
    parser.add_argument("--version", type=int, help="model version (default: the highest)")
    parser.add_argument("--users", default="all", help="'all' or a local file with one user id per line")
    parser.add_argument("--k", type=int, default=100, help="items per user (default 100)")
    parser.add_argument("--block", type=int, default=4096, help="users per shard")
    parser.add_argument("--index", choices=["brute", "scann"], default="brute", help="exact search or ScaNN")
    parser.add_argument("--out", required=True, help="output folder (local or URL such as gs://bucket/scores)")
    return parser


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the pipeline to completion; returns the manifest also written to ``OUT/_SUCCESS``."""
    args, beam_args = build_parser().parse_known_args(argv)
    manifest = run_pipeline(
        config_from_args(args),
        args.model,
        args.out,
        users=args.users,
        k=args.k,
        version=args.version,
        block=args.block,
        index=args.index,
        pipeline_args=beam_args,
    )
    if manifest["unknown_users"]:
        print(
            f"{manifest['unknown_users']:,} user(s) not in the data, scored by the cold-start/popularity path",
            file=sys.stderr,
        )
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: a problem the user can fix is one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")

    def command() -> int:
        run(argv)
        return 0

    return one_line_errors(PROG, command)


__all__ = ["build_parser", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
