"""Command-line data options, shared by ``tfrec-xcat`` and the Beam launcher so both read the same Config."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from tfrec_xcat.config import Config, load_config
from tfrec_xcat.errors import XcatError


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """The data options every data-reading command takes (declared once, here)."""
    parser.add_argument("--config", help="TOML config file (command-line flags override it)")
    parser.add_argument("--data", help="data directory (default: the synthetic embedded shop)")
    parser.add_argument("--format", dest="data_format", help="auto, neutral, amazon2023, amazon2018, amazon2014")
    parser.add_argument("--source", help="source category (the one the shop knows its users in)")
    parser.add_argument("--target", help="target category (the one to recommend in)")
    parser.add_argument("--text-columns", help="comma-separated item text columns (default: all)")
    parser.add_argument("--max-bad-fraction", type=float, help="bad rows allowed per file (default 0.001)")


def config_from_args(args: argparse.Namespace) -> Config:
    """The :class:`Config` of ``--config`` with the data flags applied over it."""
    text = args.text_columns.split(",") if getattr(args, "text_columns", None) else None
    return load_config(
        args.config,
        {
            "data": {
                "path": args.data,
                "format": args.data_format,
                "source": args.source,
                "target": args.target,
                "text_columns": text,
                "max_bad_fraction": args.max_bad_fraction,
            }
        },
    )


def one_line_errors(prog: str, command: Callable[[], int]) -> int:
    """Run ``command``: a problem the user can fix (:class:`XcatError`) is one line on stderr and exit code 2;
    an interrupt is exit code 130."""
    try:
        return int(command() or 0)
    except XcatError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
