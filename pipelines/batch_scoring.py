"""Launcher of the Beam batch-scoring pipeline, which lives in the package (:mod:`tfrec_xcat.scoring.beam`) so
that workers can import it. See docs/scale.md.

    python pipelines/batch_scoring.py --model saved_models/xcat_retrieval --data DIR --users all --k 100 \\
        --out OUT [--runner DirectRunner|DataflowRunner|FlinkRunner|SparkRunner ...]
"""

from __future__ import annotations

import sys

from tfrec_xcat.scoring.beam import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
